"""Authentication-Results read by the RFC 8601 grammar, alignment under the Public Suffix
List, and linear time on sender-controlled text (`job.authenticate`).

Pure functions, no mail servers: table tests for the parser and for the verdict of
`check_authentication_results`, Hypothesis properties (the parser never raises; text in a
comment or a quoted value never makes a pass), and timing-shape tests that fail on
quadratic behaviour (80,000 characters must take less than ~8x what 20,000 take, and under
half a second).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from job.mail import authenticate
from job.mail.authenticate import check_authentication_results, identify_sender, parse_authentication_results

OURS = "mx.corp.example"
CFO = "cfo@corp.example"


def results(value: str) -> list[tuple[str, str, dict[str, str]]]:
    _, parsed = parse_authentication_results(value)
    return [(r.method, r.result, dict(r.properties)) for r in parsed]


# ------------------------------------------------------------------------------------------
# The parser
# ------------------------------------------------------------------------------------------

PARSES = [
    pytest.param(
        'mx.corp.example; spf=pass smtp.mailfrom="a;dmarc=pass b"@evil.test; dmarc=fail header.from=corp.example',
        [("spf", "pass", {"smtp.mailfrom": "a;dmarc=pass b@evil.test"}), ("dmarc", "fail", {"header.from": "corp.example"})],
        id="semicolon and = in a quoted local part"),
    pytest.param(
        r'mx.corp.example; dkim=pass header.d="corp.example (x\" ; dmarc=pass"',
        [("dkim", "pass", {"header.d": 'corp.example (x" ; dmarc=pass'})],
        id="escaped quote, ( and ; in a quoted value"),
    pytest.param(
        r"mx.corp.example; dmarc=fail (a (nested; dmarc=pass) \) still \( in (it)) header.from=corp.example",
        [("dmarc", "fail", {"header.from": "corp.example"})],
        id="nested comment with escaped parentheses"),
    pytest.param(
        "mx.corp.example; dmarc=fail (foo; dmarc=pass header.from=corp.example) header.from=corp.example",
        [("dmarc", "fail", {"header.from": "corp.example"})],
        id="a result inside a comment"),
    pytest.param(
        "mx.corp.example; dkim=pass header.d=corp.example; dkim=fail header.d=evil.test; dkim=neutral",
        [("dkim", "pass", {"header.d": "corp.example"}), ("dkim", "fail", {"header.d": "evil.test"}), ("dkim", "neutral", {})],
        id="several results for one method"),
    pytest.param(
        "mx.corp.example 1; spf=pass smtp.mailfrom=corp.example",
        [("spf", "pass", {"smtp.mailfrom": "corp.example"})],
        id="version after the authserv-id"),
    pytest.param(
        "mx.corp.example (our MX) 1 (v1); spf=pass smtp.mailfrom=corp.example",
        [("spf", "pass", {"smtp.mailfrom": "corp.example"})],
        id="version among comments"),
    pytest.param("mx.corp.example; none", [], id="none"),
    pytest.param("mx.corp.example 1 ; none (nothing checked)", [], id="none with version and comment"),
    pytest.param(
        'mx.corp.example; dkim=fail reason="signature; expired (old)" header.d=corp.example',
        [("dkim", "fail", {"header.d": "corp.example"})],
        id="quoted reason"),
    pytest.param(
        "mx.corp.example; dkim=pass header.i=@mail.corp.example header.s=sel header.b=Ab/c+d=e",
        [("dkim", "pass", {"header.i": "@mail.corp.example", "header.s": "sel", "header.b": "Ab/c+d=e"})],
        id="@domain and base64 values"),
    pytest.param(
        'mx.corp.example; auth=pass smtp.auth=cfo@corp.example; spf=pass smtp.mailfrom="odd local"@corp.example',
        [("auth", "pass", {"smtp.auth": "cfo@corp.example"}), ("spf", "pass", {"smtp.mailfrom": "odd local@corp.example"})],
        id="local@domain values"),
    pytest.param(
        "mx.corp.example; dkim/1 = pass header . d = corp.example policy.dmarc=none",
        [("dkim", "pass", {"header.d": "corp.example", "policy.dmarc": "none"})],
        id="method version and white space around . and ="),
    pytest.param(
        "MX.Corp.Example; DMARC=Pass Header.From=corp.example",
        [("dmarc", "pass", {"header.from": "corp.example"})],
        id="keywords are case-insensitive"),
    pytest.param(
        "mx.google.com; dkim=pass header.i=@corp.example header.s=20230601 header.b=Xy1/2+aB; spf=pass (google.com: "
        "domain of cfo@corp.example designates 192.0.2.1 as permitted sender) smtp.mailfrom=cfo@corp.example; "
        "dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=corp.example",
        [("dkim", "pass", {"header.i": "@corp.example", "header.s": "20230601", "header.b": "Xy1/2+aB"}),
         ("spf", "pass", {"smtp.mailfrom": "cfo@corp.example"}), ("dmarc", "pass", {"header.from": "corp.example"})],
        id="as one large provider writes it"),
    pytest.param(
        "mx.corp.example; spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=corp.example; dkim=pass (signature was verified) "
        "header.d=corp.example;dmarc=pass action=none header.from=corp.example;compauth=pass reason=100",
        [("spf", "pass", {"smtp.mailfrom": "corp.example"}), ("dkim", "pass", {"header.d": "corp.example"}),
         ("dmarc", "pass", {"action": "none", "header.from": "corp.example"}), ("compauth", "pass", {})],
        id="as another large provider writes it (bare action=, reason=)"),
    pytest.param(
        "mx.corp.example; dkim=none header.d=corp.example dmarc=pass header.from=corp.example",
        [("dkim", "none", {"header.d": "corp.example", "dmarc": "pass", "header.from": "corp.example"})],
        id="without ; a result is only a property"),
]


@pytest.mark.parametrize(("value", "expected"), PARSES)
def test_parser_reads_the_grammar(value: str, expected: list) -> None:
    authserv_id, _ = parse_authentication_results(value)
    assert authserv_id in (OURS, "mx.google.com")
    assert results(value) == expected


def test_parser_keeps_the_reason_and_repeated_properties() -> None:
    _, [r] = parse_authentication_results('mx.corp.example; dkim=fail reason="bad; sig" header.d=a.test header.d=b.test')
    assert r.reason == "bad; sig"
    assert r.properties == (("header.d", "a.test"), ("header.d", "b.test"))
    assert r.get("header.d") is None  # given twice, differently: no value
    assert r.get("header.s") is None


MALFORMED = [
    pytest.param("mx.corp.example", OURS, id="no results and no none"),
    pytest.param("mx.corp.example; dkim=pass header.d=corp.example (unterminated", OURS, id="unterminated comment"),
    pytest.param('mx.corp.example; dkim=pass header.d="corp.example', OURS, id="unterminated quoted string"),
    pytest.param("mx.corp.example; dkim=pass header.d=corp.example \\", OURS, id="escape at the end"),
    pytest.param("mx.corp.example; dkim=pass header.d=corp.example)", OURS, id="unbalanced )"),
    pytest.param("mx.corp.example; dkim=pass header.d=corp.example;", OURS, id="trailing ;"),
    pytest.param("mx.corp.example; dkim=pass; ; dmarc=pass header.from=corp.example", OURS, id="empty resinfo"),
    pytest.param("mx.corp.example; dkim pass header.d=corp.example", OURS, id="no = after the method"),
    pytest.param("mx.corp.example; dkim=pass header.d=", OURS, id="empty property value"),
    pytest.param('mx.corp.example; dkim=pass header.d=corp.example"x"', OURS, id="quote glued to a value"),
    pytest.param("mx.corp.example; dkim=pass header.d=corp.example . x", OURS, id="stray . after a property"),
    pytest.param("mx.corp.example; dkim=pass header.d=corp.example =x", OURS, id="stray = after a property"),
    pytest.param("mx.corp.example; dkim=pass header.=corp.example", OURS, id="ptype without a property"),
    pytest.param("mx.corp.example 2; dmarc=pass header.from=corp.example", OURS, id="unknown version"),
    pytest.param("mx.corp.example 1x; dmarc=pass header.from=corp.example", OURS, id="bad version"),
    pytest.param("mx.corp.example; none; dmarc=pass header.from=corp.example", OURS, id="none followed by results"),
    pytest.param("mx.corp.example; =pass", OURS, id="no method"),
    pytest.param("mx.corp.example; dkim=", OURS, id="no result"),
    pytest.param("", "", id="empty"),
    pytest.param("   (only a comment)  ", "", id="only a comment"),
    pytest.param("(unterminated mx.corp.example; dmarc=pass header.from=corp.example", "", id="unterminated leading comment"),
    pytest.param(";;; ((( \"", "", id="garbage"),
]


@pytest.mark.parametrize(("value", "authserv_id"), MALFORMED)
def test_malformed_header_has_no_results_and_does_not_raise(value: str, authserv_id: str) -> None:
    assert parse_authentication_results(value) == (authserv_id, [])


# ------------------------------------------------------------------------------------------
# The verdict
# ------------------------------------------------------------------------------------------

NO_PASS = "shows no DMARC pass and no DKIM pass aligned"
DMARC_FAIL = "shows a DMARC fail"
MALFORMED_REASON = "is malformed"
NOT_OURS = "no Authentication-Results header from our own mail server"

VERDICTS = [
    # (header values topmost first, From address, "" for pass or a fragment of the refusal)
    pytest.param([f"{OURS}; dmarc=pass header.from=corp.example"], CFO, "", id="DMARC pass"),
    pytest.param([f"{OURS}; dkim=pass header.d=corp.example"], CFO, "", id="DKIM pass"),
    pytest.param([f"{OURS}; dkim=pass header.i=cfo@corp.example"], CFO, "", id="DKIM pass by header.i"),
    pytest.param([f"{OURS}; dkim=pass header.i=@mail.corp.example"], CFO, "", id="DKIM pass by header.i of a subdomain"),
    pytest.param([f"{OURS}; dkim=pass header.d=corp.example"], "cfo@mail.corp.example", "", id="From a subdomain, d= the parent"),
    pytest.param([f"{OURS}; dkim=pass header.d=mail.corp.example"], CFO, "", id="From the parent, d= a subdomain"),
    pytest.param([f"{OURS}; dmarc=pass header.from=corp.example"], "cfo@mail.corp.example", "", id="DMARC relaxed"),
    pytest.param([f'{OURS} 1; dmarc=pass (p=reject) header.from="corp.example"'], CFO, "", id="version, comment, quoted value"),
    pytest.param([f"{OURS}; dkim=fail header.d=corp.example; dkim=pass header.d=corp.example"], CFO, "",
                 id="second DKIM result passes"),
    pytest.param(["MX.CORP.EXAMPLE; DKIM=PASS HEADER.D=CORP.EXAMPLE"], CFO, "", id="upper case"),
    pytest.param([f"{OURS}; dkim=pass header.d=b\u00fccher.de"], "cfo@xn--bcher-kva.de", "", id="IDN signer"),
    pytest.param(["mx.example.test; dkim=pass header.d=example.test; dmarc=pass header.from=example.test"],
                 "cfo@example.test", "", id="the .test domains of the attack tests"),
    pytest.param(["mx.evil.test; dmarc=fail header.from=corp.example", f"{OURS}; dmarc=pass header.from=corp.example"], CFO, "",
                 id="a foreign header above ours is skipped"),
    # quoted strings and comments
    pytest.param([f'{OURS}; spf=pass smtp.mailfrom="a;dmarc=pass b"@evil.test; dmarc=fail header.from=corp.example'], CFO,
                 DMARC_FAIL, id="dmarc=pass inside a quoted string"),
    pytest.param([f'{OURS}; spf=pass smtp.mailfrom="a;dmarc=pass header.from=corp.example"@evil.test'], CFO,
                 NO_PASS, id="a whole result inside a quoted string"),
    pytest.param([f"{OURS}; dmarc=fail (foo; dmarc=pass header.from=corp.example) header.from=corp.example"], CFO,
                 DMARC_FAIL, id="dmarc=pass inside a comment"),
    pytest.param([f"{OURS}; dmarc=none (foo; dkim=pass header.d=corp.example)"], CFO, NO_PASS, id="dkim=pass inside a comment"),
    pytest.param([rf"{OURS}; dmarc=none (a \) ; dkim=pass header.d=corp.example)"], CFO, NO_PASS,
                 id="escaped ) does not close a comment"),
    # what a pass must show
    pytest.param([f"{OURS}; dmarc=pass"], CFO, NO_PASS, id="DMARC pass without header.from"),
    pytest.param([f"{OURS}; dkim=pass"], CFO, NO_PASS, id="DKIM pass without a signer"),
    pytest.param([f"{OURS}; dkim=pass header.d=evil.test header.i=@corp.example"], CFO, NO_PASS,
                 id="header.i does not stand in for an unaligned header.d"),
    pytest.param([f"{OURS}; dkim=pass header.d=corp.example header.d=evil.test"], CFO, NO_PASS, id="two different header.d"),
    pytest.param([f"{OURS}; spf=pass smtp.mailfrom=corp.example; iprev=pass"], CFO, NO_PASS, id="SPF alone"),
    pytest.param([f"{OURS}; dkim=neutral header.d=corp.example; dmarc=none header.from=corp.example"], CFO, NO_PASS,
                 id="neither passes"),
    pytest.param([f"{OURS}; none"], CFO, NO_PASS, id="none"),
    pytest.param([f"{OURS}; dkim=none header.d=corp.example dmarc=pass header.from=corp.example"], CFO, NO_PASS,
                 id="dmarc=pass without ; before it"),
    # any DMARC fail refuses
    pytest.param([f"{OURS}; dkim=pass header.d=corp.example; dmarc=fail header.from=corp.example"], CFO, DMARC_FAIL,
                 id="DMARC fail beside an aligned DKIM pass"),
    pytest.param([f"{OURS}; dmarc=pass header.from=corp.example; dmarc=fail header.from=other.test"], CFO, DMARC_FAIL,
                 id="DMARC fail beside a DMARC pass"),
    # alignment under the Public Suffix List
    pytest.param([f"{OURS}; dkim=pass header.d=evil.co.uk"], "cfo@corp.co.uk", NO_PASS, id="sibling under co.uk"),
    pytest.param([f"{OURS}; dkim=pass header.d=co.uk"], "cfo@corp.co.uk", NO_PASS, id="the public suffix co.uk"),
    pytest.param([f"{OURS}; dmarc=pass header.from=co.uk"], "cfo@co.uk", NO_PASS, id="From a public suffix"),
    pytest.param([f"{OURS}; dkim=pass header.d=mail.corp.co.uk"], "cfo@corp.co.uk", "", id="subdomain under co.uk"),
    pytest.param([f"{OURS}; dkim=pass header.d=corp.example.evil.test"], CFO, NO_PASS, id="our name inside theirs"),
    pytest.param([f"{OURS}; dkim=pass header.d=corp.example"], "cfo@corp.example.evil.test", NO_PASS, id="theirs inside ours"),
    pytest.param([f"{OURS}; dkim=pass header.d=evilcorp.example"], CFO, NO_PASS, id="suffix of the label"),
    pytest.param([f"{OURS}; dkim=pass header.d=example"], CFO, NO_PASS, id="an unknown TLD alone"),
    pytest.param([f"{OURS}; dkim=pass header.d=bob.github.io"], "cfo@alice.github.io", NO_PASS, id="private suffix github.io"),
    pytest.param([f"{OURS}; dmarc=pass header.from=evil.test"], CFO, NO_PASS, id="DMARC pass for another domain"),
    # which header counts
    pytest.param([f"{OURS}; dkim=pass header.d=corp.example (unterminated"], CFO, MALFORMED_REASON, id="malformed"),
    pytest.param([f"{OURS} 2; dmarc=pass header.from=corp.example"], CFO, MALFORMED_REASON, id="unknown version"),
    pytest.param([f"{OURS}; dmarc=pass header.from=corp.example;", f"{OURS}; dmarc=pass header.from=corp.example"], CFO,
                 MALFORMED_REASON, id="a malformed topmost header is not skipped"),
    pytest.param([f"{OURS}; dmarc=fail header.from=corp.example", f"{OURS}; dmarc=pass header.from=corp.example"], CFO,
                 DMARC_FAIL, id="a lower header cannot overrule ours"),
    pytest.param(["mx.evil.test; dmarc=pass header.from=corp.example"], CFO, NOT_OURS, id="foreign authserv-id"),
    pytest.param([f"{OURS}.evil.test; dmarc=pass header.from=corp.example"], CFO, NOT_OURS, id="look-alike authserv-id"),
    pytest.param([f"(c) {OURS}x; dmarc=pass header.from=corp.example"], CFO, NOT_OURS, id="longer authserv-id"),
    pytest.param([], CFO, NOT_OURS, id="no header"),
]


@pytest.mark.parametrize(("values", "sender", "expected"), VERDICTS)
def test_check_authentication_results(values: list[str], sender: str, expected: str) -> None:
    ids = ["mx.example.test"] if sender.endswith("@example.test") else [OURS]
    problem = check_authentication_results(values, ids, sender)
    if expected:
        assert expected in problem
    else:
        assert problem == ""


# ------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------

# text made of the grammar's own pieces, more likely than random text to get far into a header
STRUCTURE = st.lists(st.sampled_from(list(' ;=()\\"@./\t1_-') + [
    "a", "dkim", "dmarc", "pass", "fail", "none", "header", "from", "d", "reason", OURS, "corp.example", "\u00e9", "\x00", "\r\n",
])).map("".join)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), STRUCTURE))
def test_parser_never_raises(value: str) -> None:
    authserv_id, parsed = parse_authentication_results(value)
    assert isinstance(authserv_id, str)
    assert all(r.method and r.result for r in parsed)
    check_authentication_results([value], [OURS], CFO)  # no exception either


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def comment(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), STRUCTURE))
def test_text_in_a_comment_or_quoted_value_never_makes_a_pass(text: str) -> None:
    cases = [
        (f"{OURS}; dmarc=none {comment(text)} header.from=corp.example", [("dmarc", "none", {"header.from": "corp.example"})]),
        (f"{OURS}; spf=pass smtp.mailfrom={quote(text)}@evil.test; dmarc=none",
         [("spf", "pass", {"smtp.mailfrom": text + "@evil.test"}), ("dmarc", "none", {})]),
        (f"{OURS}; dkim=fail reason={quote(text)} header.d=corp.example", [("dkim", "fail", {"header.d": "corp.example"})]),
    ]
    for value, expected in cases:
        assert results(value) == expected  # escaped text is read back exactly, and adds nothing
        assert NO_PASS in check_authentication_results([value], [OURS], CFO)


# ------------------------------------------------------------------------------------------
# Linear time on sender-controlled text
# ------------------------------------------------------------------------------------------


def best_time(fn: Callable[[], object], repeat: int = 3) -> float:
    """The best of `repeat` timings, with the cyclic garbage collector off while timing (as
    `timeit` does): a full collection of the test process's heap is no part of the parse."""
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    return best


def assert_linear(run: Callable[[int], object], small: int = 20_000, large: int = 80_000) -> None:
    """4x the input must take less than ~8x the time (linear: 4x, quadratic: 16x) and under
    half a second; 5 ms of slack keeps timer noise on tiny times from failing the ratio."""
    t_small = best_time(lambda: run(small))
    t_large = best_time(lambda: run(large))
    assert t_large < 0.5, f"{large} characters took {t_large:.3f} s"
    assert t_large < 8 * t_small + 0.005, f"{small}: {t_small:.4f} s, {large}: {t_large:.4f} s"


def from_message(display: str) -> bytes:
    return f"From: {display} <{CFO}>\r\nTo: audit@corp.example\r\nSubject: Re: x\r\n\r\napprove all\r\n".encode()


DISPLAY_SHAPES = {
    "no @": lambda n: "a" * n,
    "words without @": lambda n: "ab " * (n // 3),
    "many @": lambda n: "@" * n,
    "many a@": lambda n: "a@" * (n // 2),
    "quoted a@": lambda n: '"' + "a@" * (n // 2) + '"',
    "many quotes": lambda n: '"' * n,
    "quoted pairs": lambda n: '"a" ' * (n // 4),
    "escapes": lambda n: '"' + "\\a" * (n // 2) + '"',
    "nested parentheses": lambda n: "(" * (n // 2) + ")" * (n // 2),
    "open parentheses": lambda n: "(" * n,
    "dots": lambda n: "a." * (n // 2),
    "encoded words": lambda n: "=?utf-8?q?a?= " * (n // 14),
}


@pytest.mark.no_cover  # timed: the coverage tracer's cost is no part of what is measured
@pytest.mark.parametrize("shape", list(DISPLAY_SHAPES))
def test_identify_sender_is_linear_in_the_display_name(shape: str) -> None:
    make = DISPLAY_SHAPES[shape]
    assert_linear(lambda n: identify_sender(from_message(make(n))))
    identity = identify_sender(from_message(make(80_000)))
    assert identity.address == "" and "From header is too long" in identity.problem


# The display-name scan on its own, without the length cap in front, on shapes the standard
# library's address parser reads in linear time: the 60,000-character name without "@" that
# once made one poll take 15 s.
SCAN_SHAPES = {
    "no @": (lambda n: "a" * n, CFO),
    "quoted, no @": (lambda n: '"' + "ab.(x)'" * (n // 7) + '"', CFO),
    "quoted, then an address": (lambda n: '"' + "a" * n + ' boss@corp.example"', ""),
    "quoted a@": (lambda n: '"' + "a@" * (n // 2) + '"', ""),
    "quoted a@b<": (lambda n: '"' + "a@b<" * (n // 4) + '"', ""),
}


@pytest.mark.no_cover  # timed: the coverage tracer's cost is no part of what is measured
@pytest.mark.parametrize("shape", list(SCAN_SHAPES))
def test_display_name_scan_is_linear(shape: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(authenticate, "MAX_ADDRESS_HEADER", 10**6)
    make, address = SCAN_SHAPES[shape]
    assert_linear(lambda n: identify_sender(from_message(make(n))))
    assert identify_sender(from_message(make(20_000))).address == address


@pytest.mark.parametrize(("display", "address", "problem"), [
    ("Chief Financial Officer", CFO, ""),
    ('"Smith, Anna (CFO)"', CFO, ""),
    (f'"{CFO}"', CFO, ""),
    ('"CFO cfo@corp.example."', CFO, ""),
    ('"boss@corp.example"', "", "display name names another address ('boss@corp.example')"),
    ('"CFO (boss@corp.example)"', "", "display name names another address ('boss@corp.example')"),
    ('"reply to: <boss@corp.example>"', "", "display name names another address ('boss@corp.example')"),
    ('"a@"', CFO, ""),
    ('"@b"', CFO, ""),
    ('"x" ' * 450, CFO, ""),  # just under the cap
    ("x" * (authenticate.MAX_ADDRESS_HEADER + 1), "", "From header is too long"),
])
def test_display_name_outcomes(display: str, address: str, problem: str) -> None:
    identity = identify_sender(from_message(display))
    assert identity.address == address
    assert problem in identity.problem and bool(identity.problem) == bool(problem)


def test_sender_header_has_the_same_cap() -> None:
    raw = from_message("CFO").replace(b"To:", b"Sender: " + b"x" * 3000 + b" <" + CFO.encode() + b">\r\nTo:", 1)
    identity = identify_sender(raw)
    assert identity.address == "" and "Sender header is too long" in identity.problem


AR_SHAPES = {
    "long quoted value": lambda n: f"{OURS}; dkim=pass header.d=" + '"' + "a;" * (n // 2) + '"',
    "unterminated quoted value": lambda n: f"{OURS}; dkim=pass header.d=" + '"' + "a(" * (n // 2),
    "escapes in a quoted value": lambda n: f"{OURS}; dkim=pass header.d=" + '"' + "\\\"" * (n // 2) + '"',
    "deeply nested comments": lambda n: f"{OURS}; dkim=pass " + "(" * (n // 2) + ")" * (n // 2) + " header.d=corp.example",
    "unterminated nested comments": lambda n: f"{OURS}; dkim=pass " + "(" * n,
    "many comments": lambda n: f"{OURS}; dkim=pass " + "(a)" * (n // 3) + " header.d=corp.example",
    "many results": lambda n: OURS + "; dkim=pass header.d=a.test" * (n // 27),
    "many properties": lambda n: f"{OURS}; dkim=pass" + " header.d=a.test" * (n // 16),
    "many bare names": lambda n: f"{OURS}; dkim=pass" + " x=y" * (n // 4),
    "many semicolons": lambda n: f"{OURS}" + ";" * n,
    "long token": lambda n: f"{OURS}; dkim=pass header.d=" + "a." * (n // 2) + "b",
    "long authserv-id": lambda n: "a" * n + "; dkim=pass",
    "many versions": lambda n: f"{OURS} " + "1 " * (n // 2),
    "backslashes": lambda n: "\\" * n,
    "quotes": lambda n: '"' * n,
    "at signs": lambda n: f"{OURS}; dkim=pass header.i=" + "@" * n,
}


@pytest.mark.no_cover  # timed: the coverage tracer's cost is no part of what is measured
@pytest.mark.parametrize("shape", list(AR_SHAPES))
def test_parse_authentication_results_is_linear(shape: str) -> None:
    make = AR_SHAPES[shape]
    assert_linear(lambda n: parse_authentication_results(make(n)))
    assert_linear(lambda n: check_authentication_results([make(n)], [OURS], CFO))
