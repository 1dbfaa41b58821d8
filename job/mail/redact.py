"""Reply tokens kept out of what is stored: find them in a message, replace them with a marker.

Pure functions, no database. A reply token is 26 characters of base32 (`message.new_token`).
`token_candidates` lists every string of that shape a message carries where a token could
hide: its text as sent (quoted-printable soft line breaks joined, base64 lines left out), its
header values with encoded words decoded, and its parts decoded from base64 or
quoted-printable (an attached message or file included, up to `MAX_DECODED_PART`). The caller keeps those that hash to a token it issued and hands them to
`redact_message`, which replaces each wherever it appears, in any case, with `REDACTED`,
then reads the result the same ways again: a token still found (in an encoded part or
header) gets that part rewritten decoded, and a message that still holds one keeps only its
redacted header block and a note. What comes out never holds any of the tokens.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import email.generator
import email.header
import email.policy
import io
import re
from collections.abc import Collection, Iterator

from job.mail.message import Inbound

__all__ = ["REDACTED", "token_candidates", "redact_message", "redact_text", "redact_inbound", "holds_tokens", "holds_text"]

REDACTED = "[reply token redacted]"
TOKEN_LENGTH = 26
LONG_RUN = 64  # a longer run of token letters is checked at its two ends only
MAX_DECODED_PART = 2_000_000  # larger parts are files (a large request's list), never a place a token is written

_RUN = re.compile(r"[A-Za-z2-7]{26,}")
_SOFT_BREAK = re.compile(r"=\r?\n")
_BASE64_LINE = re.compile(r"^[A-Za-z0-9+/]{40,}={0,2}\r?$", re.MULTILINE)
_ENCODINGS = ("base64", "quoted-printable")
_CONTENT_FIELD = re.compile(rb"(?i)(content-type|content-transfer-encoding|mime-version)[ \t]*:")
_BYTES = email.policy.compat32.clone(linesep="\r\n", max_line_length=0)


def _raw_view(raw: bytes) -> str:
    """The message as sent, soft line breaks joined and base64 lines left out (attachments)."""
    return _BASE64_LINE.sub("", _SOFT_BREAK.sub("", raw.decode("latin-1")))


def _decoded_header(value: object) -> str:
    text = str(value)
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except Exception:  # a malformed encoded word: its raw text is in the raw view already
        return text


def _decoded_payload(part: email.message.Message) -> bytes | None:
    """A part's body decoded from base64 or quoted-printable (None if not encoded, or too
    large to be text someone wrote or quoted)."""
    if part.is_multipart():
        return None
    if str(part.get("Content-Transfer-Encoding", "")).strip().lower() not in _ENCODINGS:
        return None
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return None
    return payload if isinstance(payload, bytes) and len(payload) <= MAX_DECODED_PART else None


def _parse(raw: bytes) -> email.message.Message | None:
    try:
        return email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception:  # the raw view still covers it
        return None


def _views(raw: bytes) -> Iterator[str]:
    """Every text in which a token could be read from this message."""
    yield _raw_view(raw)
    msg = _parse(raw)
    if msg is None:
        return
    for part in msg.walk():
        try:
            items = part.items()
        except Exception:
            items = []
        for _, value in items:
            if "=?" in str(value):
                yield _decoded_header(value)
        payload = _decoded_payload(part)
        if payload is not None:
            yield payload.decode("latin-1")


def token_candidates(raw: bytes) -> set[str]:
    """Every token-shaped string in the message (lower-cased): each 26-letter window of each
    run of base32 letters (only the two ends of a run longer than `LONG_RUN`)."""
    found: set[str] = set()
    for view in _views(raw):
        for match in _RUN.finditer(view):
            run = match.group(0).lower()
            if len(run) > LONG_RUN:
                found.update((run[:TOKEN_LENGTH], run[-TOKEN_LENGTH:]))
            else:
                found.update(run[i : i + TOKEN_LENGTH] for i in range(len(run) - TOKEN_LENGTH + 1))
    return found


def holds_tokens(raw: bytes, tokens: Collection[str]) -> set[str]:
    """Which of `tokens` the message still holds, read every way `token_candidates` reads it."""
    wanted = {t.lower() for t in tokens}
    if not wanted:
        return set()
    left: set[str] = set()
    for view in _views(raw):
        lowered = view.lower()
        left.update(t for t in wanted if t in lowered)
    return left


def _text_pattern(tokens: Collection[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(t) for t in sorted(tokens)), re.IGNORECASE)


def redact_text(text: str, tokens: Collection[str]) -> str:
    """`text` with every token replaced by `REDACTED`."""
    if not tokens or not text:
        return text
    return _text_pattern(tokens).sub(REDACTED, text)


def redact_inbound(inbound: Inbound, tokens: Collection[str]) -> Inbound:
    """A received message as it is stored and answered: every text of it, and its bytes,
    without `tokens` (what decides who may answer is read from the original first)."""
    if not tokens:
        return inbound

    def clean(text: str) -> str:
        return redact_text(text, tokens)

    return dataclasses.replace(
        inbound,
        message_id=clean(inbound.message_id),
        from_addresses=tuple(clean(a) for a in inbound.from_addresses),
        sender=clean(inbound.sender),
        to=tuple(clean(a) for a in inbound.to),
        subject=clean(inbound.subject),
        in_reply_to=clean(inbound.in_reply_to),
        references=clean(inbound.references),
        plain=clean(inbound.plain) if inbound.plain is not None else None,
        html=clean(inbound.html) if inbound.html is not None else None,
        raw=redact_message(inbound.raw, tokens),
        identity=clean(inbound.identity),
        identity_problem=clean(inbound.identity_problem),
        auth_results=tuple(clean(a) for a in inbound.auth_results),
    )


def _bytes_pattern(tokens: Collection[str]) -> re.Pattern[bytes]:
    # a token may be cut by a quoted-printable soft line break anywhere
    spelled = [rb"(?:=\r?\n)?".join(re.escape(bytes([c])) for c in t.encode("ascii")) for t in sorted(tokens)]
    return re.compile(b"|".join(spelled), re.IGNORECASE)


def redact_message(raw: bytes, tokens: Collection[str]) -> bytes:
    """The message with every one of `tokens` replaced by `REDACTED` (see the module's doc)."""
    tokens = {t.lower() for t in tokens}
    if not tokens:
        return raw
    redacted = _bytes_pattern(tokens).sub(REDACTED.encode("ascii"), raw)
    left = holds_tokens(redacted, tokens)
    if left:
        redacted = _rewrite_parts(redacted, tokens)
        left = holds_tokens(redacted, tokens)
    if left:
        redacted = _header_only(redacted, tokens)
    return redacted


def _rewrite_parts(raw: bytes, tokens: set[str]) -> bytes:
    """Encoded headers and text parts that hold a token, rewritten decoded and redacted."""
    msg = _parse(raw)
    if msg is None:
        return raw
    pattern = _bytes_pattern(tokens)
    for part in msg.walk():
        for name, value in list(part.items()):
            decoded = _decoded_header(value)
            if decoded != str(value) and holds_text(decoded, tokens):
                cleaned = redact_text(decoded, tokens)
                # The stub types header values as str only; the compat32 policy takes a Header.
                value_out = cleaned if cleaned.isascii() else email.header.Header(cleaned, "utf-8", header_name=name)
                part.replace_header(name, value_out)  # type: ignore[arg-type]
        payload = _decoded_payload(part)
        if payload is not None and holds_text(payload.decode("latin-1"), tokens):
            del part["Content-Transfer-Encoding"]
            part["Content-Transfer-Encoding"] = "base64"
            part.set_payload(base64.encodebytes(pattern.sub(REDACTED.encode("ascii"), payload)).decode("ascii"))
    out = io.BytesIO()
    try:
        email.generator.BytesGenerator(out, policy=_BYTES).flatten(msg)
    except Exception:
        return raw
    return out.getvalue()


def holds_text(text: str, tokens: Collection[str]) -> bool:
    lowered = text.lower()
    return any(t in lowered for t in tokens)


def _header_only(raw: bytes, tokens: set[str]) -> bytes:
    """The last resort: the header lines that hold no token, and a note instead of the body."""
    match = re.search(rb"\r?\n\r?\n", raw)
    head = raw[: match.start()] if match else raw
    fields = re.split(rb"\r?\n(?![ \t])", head)
    kept = [
        f
        for f in fields
        if not _CONTENT_FIELD.match(f) and not holds_text(_decoded_header(f.decode("latin-1")), tokens) and not holds_tokens(f, tokens)
    ]
    note = b"[message body withheld: it carried a reply token in a form that could not be redacted in place]\r\n"
    out = b"\r\n".join([*kept, b"Content-Type: text/plain; charset=us-ascii"]) + b"\r\n\r\n" + note
    return out if not holds_tokens(out, tokens) else note
