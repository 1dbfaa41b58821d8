"""Who sent a reply, and can we believe it: pure checks on a received message's headers.

Three layers, all failing closed: the sender's identity (one From address, compared by
addr-spec only, IDNA-normalized, with no display-name or encoded-word tricks and no
Sender that points elsewhere); the reply token (checked by `poll` against the database);
and, when configured, the receiving server's `Authentication-Results`: only the topmost
header from one of our own authserv-ids counts. It is read by the RFC 8601 grammar (quoted
strings, nested comments, versions, `none`, `reason=`, `ptype.property=value`); a header
that does not parse yields no results (and, when it is ours, is refused rather than
skipped). It must show no `dmarc=fail` at all, and a DMARC pass (`header.from`) or a DKIM
pass (`header.d`, else the domain of `header.i`) aligned with the From domain in DMARC's
relaxed mode: the same organizational domain under the Public Suffix List.

Everything here reads sender-controlled text in linear time: a character scanner, no
backtracking regular expressions, and From/Sender headers longer than
`MAX_ADDRESS_HEADER` characters are refused before the standard library parses them.
"""

from __future__ import annotations

import email
import email.policy
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from publicsuffixlist import PublicSuffixList

__all__ = ["header_end", "Identity", "normalize_address", "identify_sender", "check_authentication_results", "parse_authentication_results"]

# A From or Sender header holds one address; RFC 5322 lines stop at 998 characters. Longer
# values are refused unparsed: the standard library's address parser is quadratic on some
# shapes (tens of seconds for 80,000 quote characters).
MAX_ADDRESS_HEADER = 2000
# An encoded word inside a quoted display name breaks RFC 2047, but QQ Mail, Naver, ukr.net and
# others write names that way: '"=?utf-8?B?64uk64KY?=" <controller@example.com>'. Tolerated
# beside an angle address only; the decoded name is still checked for another address.
TOLERATED_DEFECTS = frozenset({"encoded word inside quoted string", "missing trailing whitespace after encoded-word"})


@dataclass(frozen=True, slots=True)
class Identity:
    address: str  # normalized addr-spec, "" when it could not be established
    problem: str  # why the sender cannot be trusted, "" when the identity is sound


def normalize_address(address: str) -> str | None:
    """local@domain with the domain IDNA-encoded and everything lower-cased; None if invalid."""
    address = address.strip()
    if address.count("@") != 1:
        return None
    local, domain = address.split("@")
    if not local or not domain or any(c.isspace() or c in '<>,;:"()[]\\' for c in local + domain):
        return None
    try:
        ascii_domain = domain.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return f"{local.lower()}@{ascii_domain.lower()}"


def _raw_headers(raw: bytes, name: str) -> list[str]:
    """A header's values as sent (unfolded), 8-bit UTF-8 (RFC 6532) decoded, bad bytes replaced."""
    field = re.compile(re.escape(name.encode("ascii")) + rb"[ \t]*:", re.IGNORECASE)  # also obsolete "From :"
    values = []
    for line in header_lines(raw):
        match = field.match(line)
        if match:
            values.append(" ".join(line[match.end() :].decode("utf-8", "replace").split()))
    return values


def header_end(raw: bytes) -> int:
    """Where the header block ends: the first empty line, whatever the line endings."""
    match = re.search(rb"\r?\n\r?\n", raw)
    return match.start() if match else len(raw)


def header_lines(raw: bytes) -> list[bytes]:
    """The header block as sent, one line per field (folded lines unfolded)."""
    return re.sub(rb"\r?\n[ \t]+", b" ", raw[: header_end(raw)]).splitlines()


def _parse_address_header(name: str, value: str):
    try:
        return email.policy.default.header_factory(name, value)
    except Exception:
        return None


_DISPLAY_SEPARATORS = str.maketrans({c: " " for c in "<>\"'()"})


def _addresses_in_display_name(display: str) -> list[str]:
    """Words of a display name that look like an address (an "@" with text on both sides);
    words are split at white space and at < > " ' ( ). One pass, linear in the length."""
    return [word for word in display.translate(_DISPLAY_SEPARATORS).split() if "@" in word[1:-1]]


def _single_address(raw_values: Sequence[str], name: str) -> tuple[str | None, str]:
    """(normalized address, problem) for a header that must hold exactly one address."""
    if len(raw_values) != 1:
        return None, f"{len(raw_values)} {name} headers; exactly one is required"
    raw = raw_values[0]
    if len(raw) > MAX_ADDRESS_HEADER:
        return None, f"{name} header is too long ({len(raw)} characters; at most {MAX_ADDRESS_HEADER})"
    parsed_header = _parse_address_header(name, raw)
    addresses: Sequence[Any] = getattr(parsed_header, "addresses", ()) if parsed_header is not None else ()
    if len(addresses) != 1:
        return None, f"{name} holds {len(addresses)} addresses; exactly one is required"
    defects = [str(d) for d in getattr(parsed_header, "defects", ())]
    if any(d not in TOLERATED_DEFECTS for d in defects) or (defects and "<" not in raw):
        return None, f"{name} header is malformed"
    entry = addresses[0]
    angle = raw[raw.rfind("<") :] if "<" in raw else raw
    if "=?" in angle:
        return None, f"{name} hides its address in an encoded word"
    normalized = normalize_address(entry.addr_spec)
    if normalized is None:
        return None, f"{name} address {entry.addr_spec!r} is not a valid address"
    for candidate in _addresses_in_display_name(entry.display_name or ""):
        if normalize_address(candidate.strip(".,;:")) != normalized:
            return None, f"{name} display name names another address ({candidate!r}) than the real one"
    return normalized, ""


def identify_sender(raw: bytes) -> Identity:
    """The one address this message is from, or the reason it cannot be trusted."""
    try:
        raw_from = _raw_headers(raw, "From")
        raw_sender = _raw_headers(raw, "Sender")
    except Exception:
        return Identity("", "the From header cannot be parsed")
    address, problem = _single_address(raw_from, "From")
    if problem:
        return Identity("", problem)
    if raw_sender:
        sender, problem = _single_address(raw_sender, "Sender")
        if problem:
            return Identity("", problem)
        if sender != address:
            return Identity("", f"Sender {sender} differs from From {address}")
    return Identity(address or "", "")


# ------------------------------------------------------------------------------------------
# Authentication-Results (RFC 8601)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthResult:
    method: str  # lower-case, without its version ("dkim", "dmarc", ...)
    result: str  # lower-case ("pass", "fail", ...)
    properties: tuple[tuple[str, str], ...] = ()  # ("header.d", "corp.example"), ... in order; names lower-case
    reason: str = ""

    def get(self, name: str) -> str | None:
        """The property's value; None when it is missing or given twice with different values."""
        values = {v for k, v in self.properties if k == name}
        return values.pop() if len(values) == 1 else None


class _Malformed(Exception):
    pass


_WSP = frozenset(" \t\r\n")
_TSPECIALS = frozenset('()<>@,;:\\"/[]?=')  # RFC 2045: not in a token
_PVALUE_STOP = frozenset(' \t\r\n();"\\')  # an unquoted property value runs up to one of these


class _Scanner:
    """A cursor over one header value. It only moves forward and never backtracks: parsing
    reads each character once, so the time is linear in the length of the value."""

    __slots__ = ("end", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.end = text, 0, len(text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.end else ""

    def at_end(self) -> bool:
        return self.pos >= self.end

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _Malformed(f"expected {char!r} at {self.pos}")
        self.pos += 1

    def cfws(self) -> bool:
        """Skip white space and (nested, escaped) comments; True if anything was skipped."""
        text, i, end = self.text, self.pos, self.end
        start = i
        while i < end:
            c = text[i]
            if c in _WSP:
                i += 1
            elif c == "(":
                depth, i = 1, i + 1
                while depth:
                    if i >= end:
                        raise _Malformed("unterminated comment")
                    c = text[i]
                    if c == "\\":
                        if i + 1 >= end:
                            raise _Malformed("escape at the end")
                        i += 2
                        continue
                    depth += (c == "(") - (c == ")")
                    i += 1
            else:
                break
        self.pos = i
        return i > start

    def _run(self, accept) -> str:
        text, i, end = self.text, self.pos, self.end
        start = i
        while i < end and accept(text[i]):
            i += 1
        self.pos = i
        return text[start:i]

    def keyword(self) -> str:
        """Letters, digits, "-" and "_" (RFC 8601 Keyword), lower-cased; "" if none."""
        return self._run(lambda c: c.isascii() and (c.isalnum() or c in "-_")).lower()

    def digits(self) -> str:
        return self._run(lambda c: "0" <= c <= "9")

    def token(self) -> str:
        """An RFC 2045 token (non-ASCII letters allowed, RFC 6532)."""
        return self._run(lambda c: c > " " and c != "\x7f" and c not in _TSPECIALS)

    def quoted_string(self) -> str:
        """The content of a quoted string starting here, escapes resolved."""
        self.expect('"')
        text, i, end = self.text, self.pos, self.end
        out = []
        while True:
            if i >= end:
                raise _Malformed("unterminated quoted string")
            c = text[i]
            if c == '"':
                break
            if c == "\\":
                if i + 1 >= end:
                    raise _Malformed("escape at the end")
                i += 1
                c = text[i]
            out.append(c)
            i += 1
        self.pos = i + 1
        return "".join(out)

    def value(self) -> str:
        """RFC 2045 value: a token or a quoted string."""
        if self.peek() == '"':
            return self.quoted_string()
        token = self.token()
        if not token:
            raise _Malformed(f"expected a value at {self.pos}")
        return token

    def pvalue(self) -> str:
        """A property value: a quoted string, [local-part] "@" domain (the local part maybe
        quoted), or a dot-atom. Unquoted values run to white space, a comment or ";", so
        base64 fragments (header.b=ab/c+d=) read as one value."""
        if self.peek() == '"':
            quoted = self.quoted_string()
            if self.peek() != "@":
                return quoted
            return quoted + self._run(lambda c: c not in _PVALUE_STOP)
        run = self._run(lambda c: c not in _PVALUE_STOP)
        if not run:
            raise _Malformed(f"expected a property value at {self.pos}")
        return run


def _parse_resinfos(s: _Scanner) -> list[AuthResult]:
    """What follows the authserv-id: [version] ("; none" / 1*resinfo)."""
    s.cfws()
    if "0" <= s.peek() <= "9":
        version = s.digits()
        if version.lstrip("0") != "1":
            raise _Malformed(f"unknown version {version}")
        if not (s.cfws() or s.at_end() or s.peek() == ";"):
            raise _Malformed("version not followed by ';'")
    results: list[AuthResult] = []
    while True:
        s.cfws()
        if s.at_end():
            break
        s.expect(";")
        s.cfws()
        method = s.keyword()
        if not method:
            raise _Malformed(f"expected a method at {s.pos}")
        s.cfws()
        if method == "none" and not results and s.at_end():
            return []  # no-result
        if s.peek() == "/":  # method version
            s.pos += 1
            s.cfws()
            if not s.digits():
                raise _Malformed("expected a method version")
            s.cfws()
        s.expect("=")
        s.cfws()
        result = s.keyword()
        if not result:
            raise _Malformed(f"expected a result at {s.pos}")
        properties: list[tuple[str, str]] = []
        reason = None
        while True:
            spaced = s.cfws()
            if s.at_end() or s.peek() == ";":
                break
            if not spaced:
                raise _Malformed(f"unexpected {s.peek()!r} at {s.pos}")
            name = s.keyword()
            if not name:
                raise _Malformed(f"expected reason or a property at {s.pos}")
            s.cfws()
            if s.peek() == ".":  # ptype "." property
                s.pos += 1
                s.cfws()
                prop = s.keyword()
                if not prop:
                    raise _Malformed(f"expected a property name at {s.pos}")
                name = f"{name}.{prop}"
                s.cfws()
            s.expect("=")
            s.cfws()
            if name == "reason":
                text = s.pvalue()
                reason = text if reason is None else reason
            else:  # ptype.property, or a bare name some servers add (action=none): kept, never structure
                properties.append((name, s.pvalue()))
        results.append(AuthResult(method, result, tuple(properties), reason or ""))
    if not results:
        raise _Malformed("no results and no 'none'")
    return results


def _parse(value: str) -> tuple[str, list[AuthResult], bool]:
    """(authserv-id, results, malformed). Never raises; a malformed header has no results,
    but keeps its authserv-id when that much could be read."""
    s = _Scanner(value)
    try:
        s.cfws()
        authserv_id = s.value().lower()
    except _Malformed:
        return "", [], True
    try:
        return authserv_id, _parse_resinfos(s), False
    except _Malformed:
        return authserv_id, [], True


def parse_authentication_results(value: str) -> tuple[str, list[AuthResult]]:
    """(authserv-id, results) of one Authentication-Results header value (RFC 8601).

    Never raises: a value that does not follow the grammar yields no results (the
    authserv-id is still returned when it could be read)."""
    authserv_id, results, _ = _parse(value)
    return authserv_id, results


@functools.cache
def _public_suffix_list() -> PublicSuffixList:
    return PublicSuffixList()  # the bundled list; names it does not know take the default rule "*"


def _organizational_domain(domain: str) -> str | None:
    """The registrable domain (public suffix plus one label), IDNA-encoded and lower-case;
    None for a public suffix itself or an invalid name."""
    domain = domain.strip().rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    labels = domain.split(".")
    if (
        len(labels) < 2
        or len(domain) > 253
        or any(not label or len(label) > 63 or not all(c.isalnum() or c in "-_" for c in label) for label in labels)
    ):
        return None
    return _public_suffix_list().privatesuffix(domain)


def _aligned(domain: str | None, from_domain: str) -> bool:
    """DMARC relaxed alignment: both have the same organizational domain (of `domain`, the part
    after an "@" if it holds one)."""
    if not domain:
        return False
    org = _organizational_domain(domain.rpartition("@")[2])
    return org is not None and org == _organizational_domain(from_domain)


def check_authentication_results(values: Sequence[str], authserv_ids: Sequence[str], from_address: str) -> str:
    """ "" if our own server vouches for the From domain, else why not."""
    ours = {a.lower() for a in authserv_ids}
    from_domain = from_address.rpartition("@")[2].lower()
    for value in values:  # topmost first: the one our own server added last
        authserv_id, results, malformed = _parse(value)
        if authserv_id not in ours:
            continue
        if malformed:
            return f"Authentication-Results from {authserv_id} is malformed; it is not read"
        if any(r.method == "dmarc" and r.result == "fail" for r in results):
            return f"Authentication-Results from {authserv_id} shows a DMARC fail"
        for r in results:
            if r.result != "pass":
                continue
            if r.method == "dmarc" and _aligned(r.get("header.from"), from_domain):
                return ""
            if r.method == "dkim":
                signer = r.get("header.d")
                if signer is None and not any(k == "header.d" for k, _ in r.properties):
                    signer = r.get("header.i")  # its domain: _aligned reads what follows the "@"
                if _aligned(signer, from_domain):
                    return ""
        return f"Authentication-Results from {authserv_id} shows no DMARC pass and no DKIM pass aligned with {from_domain}"
    return "no Authentication-Results header from our own mail server (" + ", ".join(sorted(ours)) + ")"
