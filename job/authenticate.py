"""Who sent a reply, and can we believe it: pure checks on a received message's headers.

Three layers, all failing closed: the sender's identity (one From address, compared by
addr-spec only, IDNA-normalized, with no display-name or encoded-word tricks and no
Sender that points elsewhere); the reply token (checked by `poll` against the database);
and, when configured, the receiving server's `Authentication-Results`: only the topmost
header from one of our own authserv-ids counts, and it must show DMARC pass or a DKIM
pass aligned with the From domain.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["header_end", "Identity", "normalize_address", "identify_sender", "check_authentication_results", "parse_authentication_results"]


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
    if not local or not domain or any(c.isspace() or c in "<>,;:\"()[]\\" for c in local + domain):
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
            values.append(" ".join(line[match.end():].decode("utf-8", "replace").split()))
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


def _single_address(raw_values: Sequence[str], parsed_header, name: str) -> tuple[str | None, str]:
    """(normalized address, problem) for a header that must hold exactly one address."""
    if len(raw_values) != 1:
        return None, f"{len(raw_values)} {name} headers; exactly one is required"
    raw = raw_values[0]
    addresses = getattr(parsed_header, "addresses", ()) if parsed_header is not None else ()
    if len(addresses) != 1:
        return None, f"{name} holds {len(addresses)} addresses; exactly one is required"
    if getattr(parsed_header, "defects", None):
        return None, f"{name} header is malformed"
    entry = addresses[0]
    angle = raw[raw.rfind("<") :] if "<" in raw else raw
    if "=?" in angle:
        return None, f"{name} hides its address in an encoded word"
    normalized = normalize_address(entry.addr_spec)
    if normalized is None:
        return None, f"{name} address {entry.addr_spec!r} is not a valid address"
    display = entry.display_name or ""
    for candidate in re.findall(r"[^\s<>\"'()]+@[^\s<>\"'()]+", display):
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
    parsed_from = _parse_address_header("From", raw_from[0]) if len(raw_from) == 1 else None
    address, problem = _single_address(raw_from, parsed_from, "From")
    if problem:
        return Identity("", problem)
    if raw_sender:
        parsed_sender = _parse_address_header("Sender", raw_sender[0]) if len(raw_sender) == 1 else None
        sender, problem = _single_address(raw_sender, parsed_sender, "Sender")
        if problem:
            return Identity("", problem)
        if sender != address:
            return Identity("", f"Sender {sender} differs from From {address}")
    return Identity(address or "", "")


@dataclass(frozen=True, slots=True)
class AuthResult:
    method: str
    result: str
    properties: dict[str, str]


def _strip_comments(text: str) -> str:
    out, depth = [], 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def parse_authentication_results(value: str) -> tuple[str, list[AuthResult]]:
    """(authserv-id, results) of one Authentication-Results header value (RFC 8601)."""
    parts = [p.strip() for p in _strip_comments(" ".join(value.split())).split(";")]
    authserv_id = parts[0].split()[0].lower() if parts and parts[0].split() else ""
    results = []
    for part in parts[1:]:
        tokens = part.split()
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        props = {}
        for token in tokens[1:]:
            key, eq, val = token.partition("=")
            if eq and "." in key:
                props[key.lower()] = val.strip('"').lower()
        results.append(AuthResult(method.lower().split("/")[0], result.lower(), props))
    return authserv_id, results


def _aligned(domain: str, from_domain: str) -> bool:
    domain = domain.lstrip("@").rstrip(".").lower()
    if "." not in domain:
        return False
    return from_domain == domain or from_domain.endswith("." + domain)


def check_authentication_results(values: Sequence[str], authserv_ids: Sequence[str], from_address: str) -> str:
    """"" if our own server vouches for the From domain, else why not."""
    ours = {a.lower() for a in authserv_ids}
    from_domain = from_address.rpartition("@")[2].lower()
    for value in values:  # topmost first: the one our own server added last
        authserv_id, results = parse_authentication_results(value)
        if authserv_id not in ours:
            continue
        for r in results:
            if r.method == "dmarc" and r.result == "pass":
                header_from = r.properties.get("header.from", from_domain)
                if _aligned(header_from, from_domain) or header_from == from_domain:
                    return ""
            if r.method == "dkim" and r.result == "pass":
                signer = r.properties.get("header.d") or r.properties.get("header.i", "").rpartition("@")[2]
                if signer and _aligned(signer, from_domain):
                    return ""
        return f"Authentication-Results from {authserv_id} shows no DMARC pass and no DKIM pass aligned with {from_domain}"
    return "no Authentication-Results header from our own mail server (" + ", ".join(sorted(ours)) + ")"
