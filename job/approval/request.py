"""The approval request: which items it lists, the email each approver gets, and its tokens.

Pure composition over data the caller gives it; `run` records the result and `outbox`
sends it. Each approver gets their own copy with their own reply token, carried in the
`Reply-To` plus-address and written once more at the foot of the body (so a reply that
quotes it carries it through servers without plus-addressing). Our `Message-ID` never
holds it: Message-IDs are repeated by every reply and kept by every server and by the
audit log. Only a hash of each token is stored, and the copy's `plain` text is the one to
store: its token replaced by a marker (`raw` is what is sent).

However many items are flagged it is one email: the body lists the first `max_listed`
items (the caller ranks them by risk, then amount) and, when there are more, every item
is in an attached CSV with its number, so "approve 51-400" or an id from the file works.
A list too big to attach (`max_attachment_bytes`, zipped) is left out and the email says
how to get it (`audit items`); its numbers and ids work in replies all the same.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO, NamedTuple

from job.ledger.ingest import format_amount, format_amount_display
from job.mail.message import compose, hash_token, message_id_for, new_token, render, reply_address_for, safe_filename, sanitize_text
from job.mail.redact import redact_text

__all__ = [
    "RequestItem",
    "ApproverCopy",
    "build_request_copies",
    "item_view",
    "write_items_csv",
    "attachment_name",
    "items_attachment",
    "csv_attachment",
    "fit_attachment",
    "CSV_FIELDS",
    "FORMULA_START",
    "PLAIN_NUMBER",
    "safe_cell",
]

CSV_FIELDS = ("no", "id", "date", "vendor", "amount", "currency", "memo", "reasons", "note")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # spreadsheets run cells that start like this
# ... but a plain decimal number (an amount such as -12.50, or +3) is read as the number it is
PLAIN_NUMBER = r"[+-]?[0-9]+(?:\.[0-9]+)?"
_PLAIN_NUMBER = re.compile(PLAIN_NUMBER)
CSV_CHUNK = 20_000  # items turned into CSV rows at a time
ZIP_ABOVE_BYTES = 5_000_000  # a bigger CSV is attached zipped (about a tenth of the size)

MEMO_LIMIT = 200
VENDOR_LIMIT = 80


class RequestItem(NamedTuple):  # a tuple: a request may hold hundreds of thousands
    no: int
    txn_id: str
    date: str
    vendor: str
    amount_minor: int
    currency: str
    memo: str
    reasons: tuple[str, ...]
    note: str


@dataclass(frozen=True, slots=True)
class ApproverCopy:
    approver: str
    token_hash: str
    message_id: str
    subject: str
    plain: str  # the plain text as stored: the token replaced by a marker
    raw: bytes  # the message as sent, token included


def item_view(item: RequestItem) -> dict[str, object]:
    """One item as templates show it: ledger text flattened and bounded, amounts exact."""
    return {
        "no": item.no,
        "id": sanitize_text(item.txn_id, 60),
        "date": item.date,
        "vendor": sanitize_text(item.vendor, VENDOR_LIMIT),
        "amount": format_amount_display(item.amount_minor, item.currency),
        "currency": item.currency,
        "memo": sanitize_text(item.memo, MEMO_LIMIT),
        "reasons": sanitize_text("; ".join(item.reasons), 500),
        "note": sanitize_text(item.note, 500),
    }


def request_subject(total: int, run_id: int) -> str:
    if not total:
        return f"Ledger audit run {run_id}: nothing flagged, sign-off requested"
    return f"Ledger audit run {run_id}: {total:,} transaction{'s' if total != 1 else ''} need{'s' if total == 1 else ''} your approval"


def safe_cell(text: str) -> str:
    """A CSV cell a spreadsheet never runs as a formula: text that starts with one of
    `FORMULA_START` gets a leading apostrophe, unless it is a plain number (`PLAIN_NUMBER`).
    Nothing else changes."""
    if text.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def _cell(text: str) -> str:
    """Ledger text for a spreadsheet cell: flattened, and never read as a formula."""
    return safe_cell(sanitize_text(text))


def write_items_csv(out: IO[str], items: Iterable[RequestItem], *, bom: bool = True) -> None:
    """Every item, numbered as in replies, with exact amounts; a BOM first (unless `bom` is
    false, for standard output), so spreadsheets read UTF-8. This is the one writer of the
    items CSV: the request's attachment, reminders and `audit items` all use it. `items`
    may be a generator: it is read a chunk at a time, and nothing is held but the distinct
    texts."""
    if bom:
        out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    cells: dict[str, str] = {}  # vendors, reasons and notes repeat: clean each text once

    def cell(text: str) -> str:
        value = cells.get(text)
        if value is None:
            value = cells[text] = _cell(text)
        return value

    items = iter(items)
    while chunk := list(itertools.islice(items, CSV_CHUNK)):
        if len(cells) > 200_000:
            cells.clear()
        numbers, ids, dates, vendors, amounts, currencies, memos, reasons, notes = zip(*chunk)
        writer.writerows(
            zip(
                numbers,
                map(safe_cell, ids),
                dates,
                map(cell, vendors),
                map(format_amount, amounts, currencies),
                currencies,
                map(cell, memos),
                map(cell, map("; ".join, reasons)),
                map(cell, notes),
            )
        )


def attachment_name(ledger_names: Sequence[str], run_id: int) -> str:
    """flagged-items-<ledger>.csv for one ledger, flagged-items-run-<id>.csv for several."""
    if len(ledger_names) == 1:
        return safe_filename(f"flagged-items-{PurePath(ledger_names[0]).stem}.csv")
    return f"flagged-items-run-{run_id}.csv"


def items_attachment(name: str, items: Iterable[RequestItem]) -> tuple[str, str | bytes]:
    """`attachment` for items written as they come (a spooled file, not a string, when large)."""

    def write(spool: IO[bytes]) -> None:
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        write_items_csv(text, items)
        text.flush()
        text.detach()

    return csv_attachment(name, write)


def csv_attachment(name: str, write: Callable[[IO[bytes]], None]) -> tuple[str, str | bytes]:
    """`attachment` for a CSV that `write` writes (UTF-8 bytes), spooled to disk when large."""
    with tempfile.SpooledTemporaryFile(max_size=ZIP_ABOVE_BYTES, mode="w+b") as spool:
        write(spool)
        size = spool.tell()
        spool.seek(0)
        if size <= ZIP_ABOVE_BYTES:
            return name, spool.read().decode("utf-8")
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            with archive.open(name, "w", force_zip64=True) as member:
                shutil.copyfileobj(spool, member, 1 << 20)
        return name + ".zip", out.getvalue()


def fit_attachment(attachment: tuple[str, str | bytes] | None, limit: int) -> tuple[tuple[str, str | bytes] | None, int]:
    """(the attachment, 0) when it is at most `limit` bytes, else (None, its size): a mail
    relay refuses a message over its size limit, every night again, and base64 makes an
    attachment a third bigger in the message."""
    if attachment is None:
        return None, 0
    data = attachment[1]
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8"))
    return (attachment, 0) if size <= limit else (None, size)


def format_size(size: int) -> str:
    """A size as people read it: 68.2 MB, 20 kB."""
    return f"{size / 1e6:,.1f} MB" if size >= 1_000_000 else f"{max(1, round(size / 1e3)):,} kB"


def build_request_copies(
    *,
    request_id: str,
    run_id: int,
    listed: Sequence[RequestItem],
    total: int,
    attachment: tuple[str, str | bytes] | None,
    approvers: Sequence[str],
    auto_approved: int,
    ledger_names: Sequence[str],
    reviewer: str,
    summary: str,
    from_address: str,
    reply_address: str,
    notice: str = "",
    subject: str | None = None,
    thread: Callable[[str], Sequence[str]] | None = None,
    withheld: int = 0,
    withheld_limit: int = 0,
) -> list[ApproverCopy]:
    """One message per approver, each with a fresh token, listing `listed` (the first items)
    of `total`, with `attachment` (from `items_attachment`) when there are more; or, when
    `fit_attachment` left it out (`withheld`: its size; `withheld_limit`: the limit), a
    note that `audit items` exports it.

    `notice` heads a reminder or escalation; `thread(approver)` names the Message-IDs the
    copy follows up, so mail clients keep it in the approver's original thread.
    """
    subject = sanitize_text(subject, 200) if subject else request_subject(total, run_id)
    views = [item_view(i) for i in listed]
    more = total - len(views)
    attachments = [attachment] if attachment is not None and more > 0 else []
    domain = from_address.rpartition("@")[2]
    names = ", ".join(sanitize_text(n, 120) for n in ledger_names) or "no new ledger"
    copies = []
    for approver in approvers:
        token = new_token()
        message_id = message_id_for(domain)
        address = reply_address_for(reply_address, token)
        plain, html = render(
            "request",
            heading=subject,
            run_id=run_id,
            request_id=request_id,
            items=views,
            total=total,
            more=more,
            attachment=attachments[0][0] if attachments else "",
            withheld=format_size(withheld) if withheld and more > 0 else "",
            withheld_limit=format_size(withheld_limit),
            auto_approved=auto_approved,
            ledger_names=names,
            reviewer=reviewer,
            summary=sanitize_text(summary, 1000),
            notice=sanitize_text(notice, 500),
            reply_address=address,
        )
        follows = list(thread(approver)) if thread else []
        msg = compose(
            sender=from_address,
            to=[approver],
            subject=subject,
            plain=plain,
            html=html,
            message_id=message_id,
            reply_to=address,
            in_reply_to=follows[-1] if follows else None,
            references=follows,
            extra_headers={"X-Audit-Request": request_id},
            attachments=attachments,
        )
        copies.append(ApproverCopy(approver, hash_token(token), message_id, subject, redact_text(plain, {token}), msg.as_bytes()))
    return copies
