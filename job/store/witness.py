"""Heads of the audit log kept outside the database, read back to check the chain against them.

Someone with write access to `audit.db` can drop the triggers and re-hash the whole chain, so
that it verifies on its own. Copies of the head that left the database catch that: every
confirmation and witness notice says "audit log head <hash> at event <n>", and every report
manifest holds `audit_log_head` and `audit_log_head_event`. `collect_heads` reads them from a
manifest, a folder (manifests, `.eml` files, a maildir), or an mbox; `audit verify --witness
PATH` then checks that each is the chain's row at its recorded position (a head copied before
positions were recorded, anywhere in the chain).
"""

from __future__ import annotations

import json
import mailbox
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from job.errors import InputError
from job.mail.message import read_inbound

__all__ = ["collect_heads", "Head", "HEAD_TEXT"]

HEAD_TEXT = re.compile(r"audit log head ([0-9a-f]{64})(?: at event (\d+))?")


class Head(NamedTuple):
    where: str  # the file, and the message in it
    hash: str
    position: int | None  # the event's id; None in copies made before positions were recorded


def collect_heads(path: Path) -> list[Head]:
    """Every head in `path`, once each; InputError when there is none."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    heads = list(dict.fromkeys(_heads_in(path)))
    if not heads:
        raise InputError(f"{path}: no audit log head found (give report manifests, saved emails, a maildir or an mbox)")
    return heads


def _heads_in(path: Path) -> Iterator[Head]:
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            if child.name.endswith(".json") or child.suffix == ".eml" or child.parent.name in ("new", "cur"):
                yield from _heads_in_file(child)
        return
    yield from _heads_in_file(path)


def _heads_in_file(path: Path) -> Iterator[Head]:
    if path.name.endswith(".json"):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            head, position = manifest.get("audit_log_head", ""), manifest.get("audit_log_head_event")
        except (ValueError, AttributeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not a report manifest ({exc.__class__.__name__})") from exc
        if re.fullmatch(r"[0-9a-f]{64}", str(head)):
            yield Head(str(path), head, position if isinstance(position, int) and not isinstance(position, bool) else None)
        return
    raw = path.read_bytes()
    if raw.startswith(b"From "):  # an mbox of saved mail
        for n, message in enumerate(mailbox.mbox(str(path)), 1):
            yield from _heads_in_message(f"{path} message {n}", message.as_bytes())
        return
    yield from _heads_in_message(str(path), raw)


def _heads_in_message(where: str, raw: bytes) -> Iterator[Head]:
    inbound = read_inbound(raw)
    for head, position in HEAD_TEXT.findall(inbound.plain or ""):
        yield Head(f"{where} ({inbound.message_id})", head, int(position) if position else None)
