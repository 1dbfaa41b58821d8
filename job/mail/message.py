"""Composing outgoing mail and reading the parts of incoming mail that matter.

Pure functions: no network, no database. Everything from the ledger or from a reply that
ends up in a header goes through `sanitize_header`, so no text can inject a header.
Templates are jinja2 files in `templates/`: plain text and an autoescaped HTML alternative.
"""

from __future__ import annotations

import base64
import email
import email.charset
import email.generator
import email.header
import email.policy
import email.utils
import hashlib
import io
import re
import secrets
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from job.mail.authenticate import header_end, header_lines, identify_sender

__all__ = [
    "new_token",
    "hash_token",
    "reply_address_for",
    "message_id_for",
    "sanitize_header",
    "sanitize_text",
    "compose",
    "safe_filename",
    "render",
    "Inbound",
    "read_inbound",
    "find_tokens",
    "templates_dir",
]

TOKEN_BYTES = 16  # 128 random bits


def new_token() -> str:
    """A reply token: 128 random bits in lower-case base32 (mail servers may fold case)."""
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii").rstrip("=").lower()


def hash_token(token: str) -> str:
    """What is stored of a token: its sha256, one-way (128 random bits cannot be guessed back
    from it); a reply's token is checked by hashing it the same way."""
    return hashlib.sha256(token.lower().encode("ascii", "replace")).hexdigest()


def reply_address_for(reply_address: str, token: str) -> str:
    local, _, domain = reply_address.partition("@")
    local = local.split("+", 1)[0]
    return f"{local}+{token}@{domain}"


def message_id_for(domain: str, kind: str = "req") -> str:
    """A fresh Message-ID of ours: 96 random bits, never a reply token. Message-IDs are
    public (every server logs them, every reply repeats them, the audit log keeps them), so
    a token in one would be a token at rest; replies carry the token in the reply address."""
    return f"<{kind}.{secrets.token_hex(12)}@{domain}>"


TOKEN_RE = re.compile(r"\+([a-z2-7]{26})@", re.IGNORECASE)


def find_tokens(*texts: str) -> list[str]:
    """Every reply token in the given texts, in order: the token of each plus-address
    (`local+<token>@domain`), in the recipient headers or quoted in the body."""
    found: list[str] = []
    for value in texts:
        for match in TOKEN_RE.finditer(value or ""):
            token = match.group(1).lower()
            if token not in found:
                found.append(token)
    return found


def sanitize_text(text: str, limit: int | None = None) -> str:
    """Ledger or reply text made safe to show: control and bidi characters become spaces."""
    if text.isascii() and text.isprintable():  # nothing to replace: only the spacing to fold
        flat = " ".join(text.split())
        return flat if limit is None or len(flat) <= limit else flat[: limit - 1] + "…"
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\n\t" or cat in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co"):
            out.append(" ")
        else:
            out.append(ch)
    flat = " ".join("".join(out).split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat


def sanitize_header(text: str, limit: int = 200) -> str:
    """One header line: no CR, LF or other control characters, bounded length."""
    return sanitize_text(text, limit)


def templates_dir() -> Path:
    """The jinja2 templates: inside the installed package, else the checkout's `templates/`."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "templates", package.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("templates folder not found beside the package")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(name: str, **values: Any) -> tuple[str, str]:
    """Render `<name>.txt.j2` and `<name>.html.j2`; return (plain, html)."""
    env = _environment()
    return env.get_template(f"{name}.txt.j2").render(**values), env.get_template(f"{name}.html.j2").render(**values)


class Composed:
    """An outgoing message: its Message-ID, its subject and its bytes as SMTP sends them."""

    __slots__ = ("headers", "raw")

    def __init__(self, headers: dict[str, str], raw: bytes) -> None:
        self.headers = headers
        self.raw = raw

    def __getitem__(self, name: str) -> str:
        return self.headers[name]

    def as_bytes(self) -> bytes:
        return self.raw


_UTF8_QP = email.charset.Charset("utf-8")
_UTF8_QP.body_encoding = email.charset.QP
_SMTP_BYTES = email.policy.compat32.clone(linesep="\r\n", max_line_length=78)


def _text_part(text: str, subtype: str) -> MIMEText:
    # The stub types the charset as a name only; MIMEText hands it to set_payload, which takes a Charset.
    return MIMEText(text, subtype, _UTF8_QP)  # type: ignore[arg-type]


def compose(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    plain: str,
    html: str | None,
    message_id: str,
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: Iterable[str] = (),
    extra_headers: Mapping[str, str] | None = None,
    date: str | None = None,
    attachments: Sequence[tuple[str, str | bytes]] = (),
) -> Composed:
    """A complete RFC 5322 message, as SMTP would send it, marked as automatic mail.

    Every header value is sanitized to one line; a non-ASCII subject is RFC 2047-encoded.
    `attachments` are (file name, CSV text sent as UTF-8, or the bytes of a zip file);
    names go through `safe_filename`.
    """
    headers: dict[str, str] = {
        "From": sanitize_header(sender),
        "To": sanitize_header(", ".join(to), 2000),
        "Subject": sanitize_header(subject),
        "Date": date or email.utils.formatdate(localtime=False, usegmt=True),
        "Message-ID": sanitize_header(message_id),
    }
    if reply_to:
        headers["Reply-To"] = sanitize_header(reply_to)
    if in_reply_to:
        headers["In-Reply-To"] = sanitize_header(in_reply_to, 1000)
    refs = [sanitize_header(r, 1000) for r in references if r]
    if refs:
        headers["References"] = " ".join(refs[-20:])
    headers["Auto-Submitted"] = "auto-generated"
    headers["X-Auto-Response-Suppress"] = "All"
    for key, value in (extra_headers or {}).items():
        headers[key] = sanitize_header(value)
    msg: MIMEBase
    if html is None:
        msg = _text_part(plain, "plain")
    else:
        msg = MIMEMultipart("alternative")
        msg.attach(_text_part(plain, "plain"))
        msg.attach(_text_part(html, "html"))
    if attachments:
        body, msg = msg, MIMEMultipart("mixed")
        msg.attach(body)
        for filename, data in attachments:
            part: MIMEBase
            if isinstance(data, bytes):
                part = MIMEApplication(data, "zip")
            else:
                part = MIMEText(data, "csv", "utf-8")  # base64: CSV lines may be long
            part.add_header("Content-Disposition", "attachment", filename=safe_filename(filename))
            msg.attach(part)
    for name, value in headers.items():
        if value.isascii():
            msg[name] = value
        else:
            # The stub types header values as str only; the compat32 policy takes a Header.
            msg[name] = email.header.Header(value, "utf-8", header_name=name)  # type: ignore[assignment]
    buffer = io.BytesIO()
    email.generator.BytesGenerator(buffer, policy=_SMTP_BYTES).flatten(msg)
    return Composed(headers, buffer.getvalue())


def safe_filename(name: str, limit: int = 80) -> str:
    """A file name any mail client and file system takes: ASCII letters, digits, '.', '-', '_'."""
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    if ext.lower() == "zip" and "." in stem:  # keep "x.csv.zip" a zipped CSV
        stem, _, inner = stem.rpartition(".")
        ext = re.sub(r"[^A-Za-z0-9]+", "", inner)[:8] + ".zip"
    clean = re.sub(r"[^A-Za-z0-9_-]+", "-", unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()).strip("-_.")
    ext = ext if ext.endswith(".zip") else re.sub(r"[^A-Za-z0-9]+", "", ext)[:8]
    clean = (clean or "attachment")[: limit - len(ext) - 1]
    return f"{clean}.{ext}" if dot and ext else clean


@dataclass(frozen=True, slots=True)
class Inbound:
    """The parts of a received message the poller needs."""

    message_id: str
    from_addresses: tuple[str, ...]
    sender: str
    to: tuple[str, ...]
    subject: str
    in_reply_to: str
    references: str
    plain: str | None
    html: str | None
    auto_reason: str  # why this is an automatic message (auto-reply, bounce), or ""
    raw: bytes
    identity: str = ""  # the one normalized From address, when it can be trusted as written
    identity_problem: str = ""  # why it cannot
    auth_results: tuple[str, ...] = ()  # Authentication-Results values, topmost first


def _decode(value: object) -> str:
    """A raw header value with its encoded words decoded; never raises."""
    text = str(value)
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except Exception:  # a malformed encoded word: keep the raw text
        return text


def _header(msg: email.message.Message, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # a header the parser cannot decode
        return ""
    return sanitize_header(_decode(value), 2000) if value is not None else ""


def _addresses(msg: email.message.Message, name: str) -> tuple[str, ...]:
    try:
        values = msg.get_all(name) or []
    except Exception:
        return ()
    pairs = email.utils.getaddresses([_decode(v) for v in values])
    return tuple(addr.strip().lower() for _, addr in pairs if addr and "@" in addr)


def _part_text(part: email.message.Message) -> str | None:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return None
    if not isinstance(payload, bytes):  # decode=True gives the bytes of a leaf part, or None
        return None
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, errors="replace")
    except (LookupError, UnicodeError, TypeError, ValueError):  # an unknown or unusable charset
        text = payload.decode("utf-8", errors="replace")
    if part.get_content_type() == "text/plain" and _param(part, "format").lower() == "flowed":
        text = unflow(text, delsp=_param(part, "delsp").lower() == "yes")
    return text


def _param(part: email.message.Message, name: str) -> str:
    """The value of a Content-Type parameter, "" when absent (an RFC 2231 one decoded)."""
    value = part.get_param(name)
    if isinstance(value, tuple):
        return email.utils.collapse_rfc2231_value(value)
    return value or ""


def unflow(text: str, *, delsp: bool = False) -> str:
    """Join the soft line breaks of a format=flowed body (RFC 3676), as the approver saw it.

    A line ending in a space continues on the next line of the same quote depth; with
    DelSp=yes that space is removed. Space-stuffing is undone; "-- " stays a signature line.
    """
    out: list[str] = []
    current: list[str] = []
    current_depth = -1
    for raw_line in text.splitlines():
        depth = len(raw_line) - len(raw_line.lstrip(">"))
        line = raw_line[depth:]
        if line.startswith(" "):
            line = line[1:]  # space-stuffed
        if current and depth != current_depth:  # a soft break never crosses quote depths
            out.append(">" * current_depth + ("" if not current_depth else " ") + "".join(current))
            current = []
        flowed = line.endswith(" ") and line != "-- "
        if flowed and delsp:
            line = line[:-1]
        current.append(line)
        current_depth = depth
        if not flowed:
            out.append(">" * depth + ("" if not depth else " ") + "".join(current))
            current = []
    if current:
        out.append(">" * current_depth + ("" if not current_depth else " ") + "".join(current))
    return "\n".join(out)


def _is_file(part: email.message.Message) -> bool:
    """A part that is a file rather than the message body: an attachment, or one with a name."""
    try:
        if part.get_content_disposition() == "attachment" or part.get_filename() is not None:
            return True
        return part.get_param("name") is not None
    except Exception:  # a header too malformed to read: not the body
        return True


def _own_parts(part: email.message.Message) -> Iterator[email.message.Message]:
    """The message's own leaf parts: never inside an attached or forwarded message or a file."""
    if part.get_content_maintype() == "message" or _is_file(part):
        return
    if part.is_multipart():
        payload = part.get_payload()
        for sub in payload if isinstance(payload, list) else ():
            if isinstance(sub, email.message.Message):  # always, in a parsed multipart
                yield from _own_parts(sub)
        return
    yield part


def _body_parts(msg: email.message.Message) -> tuple[str | None, str | None]:
    """The plain and HTML text of the body: every inline part of each kind, in order, as a mail
    client shows them one after another (not only the first)."""
    plains: list[str] = []
    htmls: list[str] = []
    for part in _own_parts(msg):
        ctype = part.get_content_type()
        if ctype in ("text/plain", "text/html"):
            text = _part_text(part)
            if text is not None:
                (plains if ctype == "text/plain" else htmls).append(text)
    return ("\n".join(plains) if plains else None), ("\n".join(htmls) if htmls else None)


TRACE_HEADERS = re.compile(
    rb"^(received|return-path|delivered-to|x-original-to|authentication-results|dkim-signature"
    rb"|arc-[a-z-]+|x-spam[a-z-]*)[ \t]*:",
    re.IGNORECASE,
)


def content_id(raw: bytes) -> str:
    """A stand-in Message-ID from the content, leaving out the headers servers add in transit,
    so the same message delivered twice is recognised."""
    end = header_end(raw)
    kept = b"\n".join(sorted(line.rstrip() for line in header_lines(raw) if line.strip() and not TRACE_HEADERS.match(line)))
    body = b"\n".join(line.rstrip() for line in raw[end:].splitlines())
    return "<sha256." + hashlib.sha256(kept + b"\n\n" + body.strip()).hexdigest() + "@no-message-id>"


def detect_automatic(msg: email.message.Message, from_addresses: Sequence[str]) -> str:
    """Why this message is an auto-reply or bounce ("" if a person wrote it)."""
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if _header(msg, name):
            return f"{name} header"
    precedence = _header(msg, "Precedence").lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    if msg.get_content_type() == "multipart/report":
        return "delivery report (multipart/report)"
    for addr in from_addresses:
        local = addr.split("@", 1)[0]
        if local in ("mailer-daemon", "postmaster"):
            return f"sent by {local}"
    if not from_addresses and _header(msg, "Return-Path") in ("<>", ""):
        return "no sender (bounce)"
    return ""


def read_inbound(raw: bytes) -> Inbound:
    """Parse a raw message; never raises on malformed mail."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)  # lenient, and fast: headers stay raw
    message_id = _header(msg, "Message-ID")
    if not message_id:
        message_id = content_id(raw)
    from_addresses = _addresses(msg, "From")
    identity = identify_sender(raw)
    plain, html = _body_parts(msg)
    return Inbound(
        message_id=message_id,
        from_addresses=from_addresses,
        sender=(_addresses(msg, "Sender") or ("",))[0],
        to=_addresses(msg, "To") + _addresses(msg, "Cc") + _addresses(msg, "Delivered-To"),
        subject=_header(msg, "Subject"),
        in_reply_to=_header(msg, "In-Reply-To"),
        references=_header(msg, "References"),
        plain=plain,
        html=html,
        auto_reason=detect_automatic(msg, from_addresses),
        raw=raw,
        identity=identity.address,
        identity_problem=identity.problem,
        auth_results=tuple(_all_headers(msg, "Authentication-Results")),
    )


def _all_headers(msg: email.message.Message, name: str) -> list[str]:
    try:
        return [" ".join(_decode(v).split()) for v in (msg.get_all(name) or [])]
    except Exception:
        return []
