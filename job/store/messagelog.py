"""What is stored of a message: the copy without reply tokens, and its hashes for the audit log.

A reply token is a password: whoever holds one can answer as the approver it was issued to
(with sender authentication off, from any mail server). So the database keeps none. Its
`request_tokens` keep the sha256 of each token (one-way: a token is 128 random bits, so the
hash gives nothing to guess from), replies are matched by hashing what they carry, and every
message is stored with each token it holds replaced by a marker: incoming mail when it is
recorded, outgoing mail once the relay took it (until then the outbox needs the bytes it
will send). `binding` is what the audit log records of a stored row (`messagecheck`).
"""

from __future__ import annotations

from collections.abc import Iterable

from job.mail.message import hash_token
from job.mail.redact import redact_message, token_candidates
from job.store.messagecheck import fields_sha256, raw_sha256, read_fields

__all__ = ["issued_tokens", "tokens_in", "stored_copy", "binding"]

LOOKUP_BATCH = 500


def issued_tokens(conn, candidates: Iterable[str]) -> set[str]:
    """Those of `candidates` that are tokens we issued (live, revoked or retired alike)."""
    by_hash = {hash_token(c): c for c in candidates}
    hashes = list(by_hash)
    found: set[str] = set()
    for i in range(0, len(hashes), LOOKUP_BATCH):
        chunk = hashes[i : i + LOOKUP_BATCH]
        marks = ",".join("?" * len(chunk))
        found.update(by_hash[h] for (h,) in conn.execute(f"SELECT token_hash FROM request_tokens WHERE token_hash IN ({marks})", chunk))
    return found


def tokens_in(conn, raw: bytes) -> set[str]:
    """Every token we issued that this message holds, wherever and however it is written."""
    return issued_tokens(conn, token_candidates(raw))


def stored_copy(conn, raw: bytes) -> bytes:
    """The message as the database keeps it: each token it holds replaced by a marker."""
    return redact_message(raw, tokens_in(conn, raw))


def binding(conn, row_id: int, *, exact: bytes, stored: bytes) -> dict:
    """The audit log's record of a stored `messages` row: the sha256 of the message's exact
    bytes, of the stored copy, and of the row's recorded fields."""
    return {
        "messages_row": row_id,
        "sha256": raw_sha256(exact),
        "stored_sha256": raw_sha256(stored),
        "fields_sha256": fields_sha256(read_fields(conn, row_id)),
    }
