"""Moving mail: the outgoing side (maildir outbox or SMTP) and the incoming side (maildir
inbox or IMAP). The only module that talks to mail servers; every call has a timeout.

Maildir is the embedded default: `<maildir>/outbox` receives each complete outgoing
message (as SMTP would have sent it); `poll` reads `<maildir>/inbox/new` and moves what it
has processed to `inbox/cur`. In `smtp` mode mail goes out with aiosmtplib (STARTTLS or
implicit TLS) and replies are read with aioimaplib (IMAPS, or plain IMAP on loopback).
"""

from __future__ import annotations

import asyncio
import ipaddress
import mailbox
import os
import re
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from job.config import ImapSettings, MailSettings, ServerSettings, SmtpSettings
from job.errors import ConfigError, MailError

__all__ = ["Outgoing", "Received", "send_messages", "open_inbox", "MaildirInbox", "ImapInbox"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    key: int  # the row in the messages table
    raw: bytes
    sender: str
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Received:
    key: str  # maildir key, or the IMAP UID as text
    raw: bytes
    uid: int = 0
    uidvalidity: int = 0


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_context(server: ServerSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cafile) if server.cafile else None)


def _credentials(server: ServerSettings, what: str) -> tuple[str | None, str | None]:
    password = server.password()
    if password is None:
        return None, None
    if server.tls == "none" and not _is_loopback(server.host) and not server.allow_plaintext_password:
        raise ConfigError(
            f"mail.{what}: refusing to send a password without TLS to {server.host}:{server.port}; "
            f"set tls, or allow_plaintext_password = true if you really mean it"
        )
    return server.username or None, password


# ----------------------------------------------------------------------------- sending


async def send_messages(settings: MailSettings, messages: Sequence[Outgoing]) -> dict[int, str | None]:
    """Send each message; return {key: None on success, or the one-line error}."""
    if not messages:
        return {}
    if settings.transport == "maildir":
        return _write_outbox(settings.maildir / "outbox", messages)
    return await _send_smtp(settings.smtp, messages)


def _write_outbox(folder: Path, messages: Sequence[Outgoing]) -> dict[int, str | None]:
    results: dict[int, str | None] = {}
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        box = mailbox.Maildir(str(folder), create=True)
    except OSError as exc:
        error = f"{folder}: cannot open the outbox maildir: {exc.strerror or exc}"
        return {m.key: error for m in messages}
    for message in messages:
        try:
            box.add(message.raw)  # written to tmp/ then renamed into new/: never half a message
            results[message.key] = None
        except OSError as exc:
            results[message.key] = f"{folder}: {exc.strerror or exc}"
    return results


async def _send_smtp(server: SmtpSettings, messages: Sequence[Outgoing]) -> dict[int, str | None]:
    """Send over up to `server.connections` connections at once, the messages dealt out in
    turn: a relay's round trips per message, not our work, are what a large batch waits on
    (a poll answering a thousand replies sends a thousand confirmations)."""
    lanes = [list(messages[i :: server.connections]) for i in range(min(server.connections, len(messages)))]
    if len(lanes) == 1:
        return await _send_smtp_lane(server, lanes[0])
    results: dict[int, str | None] = {}
    for found in await asyncio.gather(*(_send_smtp_lane(server, lane) for lane in lanes)):
        results.update(found)
    return results


async def _send_smtp_lane(server: ServerSettings, messages: Sequence[Outgoing]) -> dict[int, str | None]:
    """Send the messages in order over one connection; {key: None, or the one-line error}."""
    import aiosmtplib

    where = f"SMTP {server.host}:{server.port}"
    username, password = _credentials(server, "smtp")
    client = aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        use_tls=server.tls == "tls",
        start_tls=server.tls == "starttls",
        tls_context=_tls_context(server) if server.tls != "none" else None,
        timeout=server.timeout,
        username=username,
        password=password,
    )
    results: dict[int, str | None] = {}
    try:
        await client.connect()
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        error = f"{where}: cannot connect: {_one_line(exc)}"
        return {m.key: error for m in messages}
    try:
        for message in messages:
            try:
                await client.sendmail(message.sender, list(message.recipients), message.raw, timeout=server.timeout)
                results[message.key] = None
            except aiosmtplib.SMTPRecipientsRefused as exc:
                results[message.key] = f"{where}: recipients refused: {_one_line(exc)}"
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                results[message.key] = f"{where}: {_one_line(exc)}"
                if not client.is_connected:
                    break
    finally:
        try:
            await client.quit(timeout=server.timeout)
        except Exception:
            client.close()
    for message in messages:
        results.setdefault(message.key, f"{where}: connection lost before sending")
    return results


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


# ----------------------------------------------------------------------------- receiving


def open_inbox(settings: MailSettings) -> MaildirInbox | ImapInbox:
    if settings.transport == "maildir":
        return MaildirInbox(settings.maildir / "inbox")
    return ImapInbox(settings.imap)


class MaildirInbox:
    """Replies dropped into `<maildir>/inbox/new`; processed ones move to `inbox/cur`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = f"maildir:{folder}"

    async def __aenter__(self) -> MaildirInbox:
        try:
            for sub in ("new", "cur", "tmp"):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MailError(f"{self.folder}: cannot open the inbox maildir: {exc.strerror or exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def fetch(self, last_uid: int = 0, uidvalidity: int = 0, retry: Sequence[str] = ()) -> AsyncIterator[Received]:
        """Every message in new/, oldest first (failed ones stay there and come again)."""
        new = self.folder / "new"
        paths = [p for p in new.iterdir() if p.is_file() and not p.name.startswith(".")]
        for path in sorted(paths, key=lambda p: (p.stat().st_mtime_ns, p.name)):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue  # taken by someone else meanwhile
            yield Received(key=path.name, raw=raw)

    async def mark_all_done(self, items: Sequence[Received]) -> None:
        for item in items:
            await self.mark_done(item)

    async def mark_done(self, item: Received) -> None:
        source = self.folder / "new" / item.key
        target = self.folder / "cur" / (item.key.split(":", 1)[0] + ":2,S")
        try:
            os.replace(source, target)
        except FileNotFoundError:
            pass  # already moved by an earlier, interrupted poll

    async def move_aside(self, item: Received, folder: str) -> str:
        """Move a message that keeps failing into a sibling maildir; return where it went."""
        target = self.folder.parent / folder
        for sub in ("new", "cur", "tmp"):
            (target / sub).mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self.folder / "new" / item.key, target / "new" / item.key)
        except FileNotFoundError:
            pass
        return str(target)


class ImapInbox:
    """Replies in an IMAP folder, fetched by UID above a stored watermark."""

    def __init__(self, server: ImapSettings) -> None:
        self.server = server
        self.name = f"imap:{server.host}:{server.port}/{server.folder}"
        self.client: Any = None  # an aioimaplib client once entered (the library ships no types)
        self.uidvalidity = 0

    @property
    def where(self) -> str:
        return f"IMAP {self.server.host}:{self.server.port}"

    async def _call(self, what: str, coro):  # every step bounded by the configured timeout
        try:
            response = await asyncio.wait_for(coro, timeout=self.server.timeout)
        except TimeoutError:
            raise MailError(f"{self.where}: {what} timed out after {self.server.timeout:g}s") from None
        except (OSError, ssl.SSLError) as exc:
            raise MailError(f"{self.where}: {what} failed: {_one_line(exc)}") from exc
        except Exception as exc:  # aioimaplib raises plain exceptions for protocol failures
            raise MailError(f"{self.where}: {what} failed: {_one_line(exc)}") from exc
        if getattr(response, "result", "OK") != "OK":
            detail = b" ".join(line for line in response.lines if isinstance(line, (bytes, bytearray))).decode("utf-8", "replace")
            raise MailError(f"{self.where}: {what} refused: {_one_line(Exception(detail))}")
        return response

    async def __aenter__(self) -> ImapInbox:
        import aioimaplib

        username, password = _credentials(self.server, "imap")
        if self.server.tls == "tls":
            self.client = aioimaplib.IMAP4_SSL(
                host=self.server.host, port=self.server.port, ssl_context=_tls_context(self.server), timeout=self.server.timeout
            )
        else:
            self.client = aioimaplib.IMAP4(host=self.server.host, port=self.server.port, timeout=self.server.timeout)
        await self._call("connect", self.client.wait_hello_from_server())
        if username is None:
            raise ConfigError("mail.imap: username and password_env are required to read replies over IMAP")
        await self._call("login", self.client.login(username, password))
        response = await self._call(f"select {self.server.folder}", self.client.select(self.server.folder))
        for line in response.lines:
            text = line.decode("utf-8", "replace") if isinstance(line, (bytes, bytearray)) else str(line)
            match = re.search(r"\[UIDVALIDITY (\d+)\]", text)
            if match:
                self.uidvalidity = int(match.group(1))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            try:
                await asyncio.wait_for(self.client.logout(), timeout=self.server.timeout)
            except Exception:
                pass

    async def fetch(self, last_uid: int = 0, uidvalidity: int = 0, retry: Sequence[str] = ()) -> AsyncIterator[Received]:
        """Messages with a UID above `last_uid` (all of them when UIDVALIDITY changed), plus
        the UIDs in `retry`, fetched in batches with one command each."""
        start = last_uid + 1 if uidvalidity == self.uidvalidity else 1
        response = await self._call("search", self.client.uid_search(f"UID {start}:*", charset=None))
        uids: set[int] = set()
        for line in response.lines:
            if isinstance(line, (bytes, bytearray)):
                uids.update(int(tok) for tok in line.split() if tok.isdigit())
        wanted = sorted({u for u in uids if u >= start} | {int(k) for k in retry if k.isdigit() and uidvalidity == self.uidvalidity})
        for i in range(0, len(wanted), FETCH_BATCH):
            batch = wanted[i : i + FETCH_BATCH]
            response = await self._call(
                f"fetch {len(batch)} message(s)", self.client.uid("fetch", ",".join(map(str, batch)), "(UID BODY.PEEK[])")
            )
            for uid, raw in _fetched(response.lines):
                yield Received(key=str(uid), raw=raw, uid=uid, uidvalidity=self.uidvalidity)

    async def mark_done(self, item: Received) -> None:
        await self.mark_all_done([item])

    async def mark_all_done(self, items: Sequence[Received]) -> None:
        """Flag processed messages \\Seen, in one command per batch."""
        for i in range(0, len(items), FETCH_BATCH * 4):
            uids = ",".join(str(item.uid) for item in items[i : i + FETCH_BATCH * 4])
            await self._call(f"store UIDs {uids[:40]}", self.client.uid("store", uids, "+FLAGS", r"(\Seen)"))

    async def move_aside(self, item: Received, folder: str) -> str:
        """Move a message that keeps failing into another folder (created when missing)."""
        response = await asyncio.wait_for(self.client.create(folder), timeout=self.server.timeout)
        if response.result != "OK" and not any(
            b"ALREADYEXISTS" in bytes(line) for line in response.lines if isinstance(line, (bytes, bytearray))
        ):
            raise MailError(f"{self.where}: cannot create folder {folder!r}")
        await self._call(f"move UID {item.uid} to {folder}", self.client.uid("move", str(item.uid), folder))
        return f"{self.server.folder} -> {folder}"


FETCH_BATCH = 50


def _fetched(lines: Sequence[object]) -> list[tuple[int, bytes]]:
    """(uid, raw) pairs from a UID FETCH response: a head line naming the UID, then the literal."""
    found: list[tuple[int, bytes]] = []
    uid = None
    for line in lines:
        if isinstance(line, bytearray):
            if uid is not None:
                found.append((uid, bytes(line)))
            uid = None
        elif isinstance(line, bytes):
            match = re.search(rb"\bUID (\d+)", line)
            if match and b"FETCH" in line:
                uid = int(match.group(1))
    return found
