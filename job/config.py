"""Settings: where they come from, their defaults, and the commented file `audit init` writes.

Precedence: `--config PATH`, else `$AUDIT_CONFIG`, else `./audit.toml`, else the built-in
defaults. Relative paths in a config file resolve against that file's folder. Secrets are
never stored here: the config names the environment variable that holds them.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from job.errors import ConfigError

__all__ = [
    "Config",
    "Policy",
    "StructuringRule",
    "DuplicateRule",
    "RoundAmountRule",
    "UserRule",
    "RequestSettings",
    "BUILTIN_CODES",
    "MailSettings",
    "ServerSettings",
    "ModelSettings",
    "LedgerSettings",
    "SenderAuth",
    "Reminders",
    "parse_duration",
    "format_duration",
    "SENDER_AUTH_OFF_WARNING",
    "load_config",
    "build_config",
    "find_config_path",
    "DEFAULT_CONFIG_TEXT",
]

APPROVAL_MODES = ("always", "flagged", "never")
DEFAULT_VAGUE_TERMS = ("confidential", "misc", "miscellaneous", "various", "sundry")
# Reason codes of the built-in rules (and the agent's); a user rule may not take one of these names.
BUILTIN_CODES = ("large_amount", "vague_memo", "unfamiliar_vendor", "structuring", "duplicate_payment", "round_amount", "agent_concern")
RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class StructuringRule:
    """Several payments to one vendor, each just under the approval threshold, within a few days."""

    enabled: bool = True
    min_payments: int = 3
    window_days: int = 7  # calendar days, first to last inclusive (7 = at most 6 days apart)
    band_fraction: Decimal = Decimal("0.9")  # each payment at least this share of the threshold


@dataclass(frozen=True, slots=True)
class DuplicateRule:
    """The same vendor and amount again, at most `window_days` apart (earlier runs included)."""

    enabled: bool = True
    window_days: int = 3


@dataclass(frozen=True, slots=True)
class RoundAmountRule:
    """An amount that is a whole multiple of `multiple` (in the transaction's currency).

    Off by default: rent, retainers and licences are often round, so on most ledgers this
    rule mostly adds work; turn it on where round payments are unusual.
    """

    enabled: bool = False
    multiple: Decimal = Decimal("1000")


@dataclass(frozen=True, slots=True)
class UserRule:
    """A rule from the policy file: a SQL condition on one transaction, with its reason."""

    name: str  # the reason code
    when: str  # e.g. "amount > 5000 AND vendor LIKE '%Consult%'"
    reason: str
    key: str = ""  # where it is in the config, e.g. "policy.rules[1]"


@dataclass(frozen=True, slots=True)
class Policy:
    amount_threshold: Decimal = Decimal("10000.00")
    vague_memo_terms: tuple[str, ...] = DEFAULT_VAGUE_TERMS
    known_vendors: tuple[str, ...] = ()
    known_vendors_file: Path | None = None
    approval_mode: str = "flagged"
    structuring: StructuringRule = field(default_factory=StructuringRule)
    duplicates: DuplicateRule = field(default_factory=DuplicateRule)
    round_amounts: RoundAmountRule = field(default_factory=RoundAmountRule)
    rules: tuple[UserRule, ...] = ()


SMTP_CONNECTIONS = 3  # many submission services allow 3 connections at once per client


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 0
    username: str = ""
    password_env: str = ""
    password_file: Path | None = None
    tls: str = "starttls"
    folder: str = "INBOX"
    timeout: float = 30.0
    cafile: Path | None = None
    allow_plaintext_password: bool = False
    connections: int = 1  # SMTP: messages are sent over this many connections at once

    def password(self) -> str | None:
        """The password from the environment variable or file the config names, else None."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").strip("\r\n")
            except OSError as exc:
                raise ConfigError(f"{self.password_file}: cannot read the password file: {exc.strerror or exc}") from None
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(f"environment variable {self.password_env} (named by password_env) is not set")
        return value

    def __repr__(self) -> str:  # never show secrets, only where they come from
        return (
            f"ServerSettings(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password_env={self.password_env!r}, tls={self.tls!r})"
        )


@dataclass(frozen=True, slots=True)
class MailSettings:
    transport: str = "maildir"
    maildir: Path = Path("var/mail")
    from_address: str = "audit@example.com"
    reply_address: str = "audit@example.com"
    failed_folder: str = "audit-failed"
    max_attempts: int = 3
    refusal_interval: int = 86400  # seconds: at most one refusal answer per address and request in this time
    smtp: ServerSettings = field(default_factory=lambda: ServerSettings(port=587, tls="starttls", connections=SMTP_CONNECTIONS))
    imap: ServerSettings = field(default_factory=lambda: ServerSettings(port=993, tls="tls"))


@dataclass(frozen=True, slots=True)
class ModelSettings:
    model: str = ""
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    batch_size: int = 25
    timeout: float = 60.0
    max_retries: int = 2
    concurrency: int = 2  # model calls in flight at once

    @property
    def offline(self) -> bool:
        return not self.model

    def describe(self) -> str:
        """The reviewer's name as reports and emails show it."""
        if self.offline:
            return "built-in offline reviewer"
        return f"model {self.model} at {self.base_url or 'the OpenAI API'}"


@dataclass(frozen=True, slots=True)
class LedgerSettings:
    source: str = "ledger"
    columns: dict[str, str] = field(default_factory=dict)
    default_currency: str = "USD"
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    decimal_separator: str = "."
    thousands_separator: str = ","
    large_file_bytes: int = 1_000_000  # a file this big or bigger shows a progress line (on a terminal) while read


@dataclass(frozen=True, slots=True)
class RequestSettings:
    max_listed: int = 50  # items shown in an email; every item is in the attached CSV when there are more
    max_attachment_bytes: int = 7_000_000  # a bigger (zipped) CSV is left out; `audit items` exports it


@dataclass(frozen=True, slots=True)
class Reminders:
    """Seconds after a request was sent; None turns a step off."""

    remind_after: int | None = 24 * 3600
    escalate_after: int | None = 72 * 3600
    escalation_addresses: tuple[str, ...] = ()
    expire_after: int | None = 7 * 86400


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int | None:
    """'90m', '24h', '7d', '2w' -> seconds; '' or 'off' -> None. Raises ValueError."""
    text = text.strip().lower()
    if text in ("", "off", "never"):
        return None

    match = re.fullmatch(r"(\d+)\s*([smhdw])", text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"not a duration like '24h' or '7d': {text!r}")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def format_duration(seconds: int) -> str:
    """Seconds as `parse_duration` reads them, in the largest whole unit: 86400 -> '1d'."""
    for unit, size in sorted(DURATION_UNITS.items(), key=lambda u: -u[1]):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class SenderAuth:
    authserv_ids: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.authserv_ids)


SENDER_AUTH_OFF_WARNING = (
    "sender authentication is off ([sender_auth] authserv_ids is empty): replies are trusted on their From address and reply token alone"
)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None = None
    db: Path = Path("audit.db")
    policy: Policy = field(default_factory=Policy)
    approvers: tuple[str, ...] = ("controller@example.com",)
    mail: MailSettings = field(default_factory=MailSettings)
    llm: ModelSettings = field(default_factory=ModelSettings)
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    sender_auth: SenderAuth = field(default_factory=SenderAuth)
    request: RequestSettings = field(default_factory=RequestSettings)
    reminders: Reminders = field(default_factory=Reminders)
    witness_addresses: tuple[str, ...] = ()  # [audit]: who gets the log's head after each run and poll that recorded something


def find_config_path(explicit: str | os.PathLike | None) -> Path | None:
    """The config file to read, by precedence; None means built-in defaults."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    env = os.environ.get("AUDIT_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"{path}: config file named by AUDIT_CONFIG not found")
        return path
    local = Path("audit.toml")
    return local if local.is_file() else None


def load_config(explicit: str | os.PathLike | None = None, *, db: str | os.PathLike | None = None) -> Config:
    """Read the config by precedence and return validated settings with absolute paths."""
    path = find_config_path(explicit)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from exc
    base = path.resolve().parent if path is not None else Path.cwd()
    config = build_config(data, base=base, where=str(path or "defaults"))
    config = _replace(config, path=path.resolve() if path else None)
    if db is not None:
        config = _replace(config, db=Path(db).resolve())
    return config


def _replace(obj: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(obj, **changes)


class _Section:
    """Reads one TOML table, refusing unknown keys and wrong types with the key's full name."""

    def __init__(self, data: Any, name: str, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: [{name}] must be a table")
        self.data = dict(data)
        self.name = name
        self.where = where

    def key(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: {self.key(key)}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in self.data:
            return default
        value = self.data.pop(key)
        if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(key, f"expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.fail(key, f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(key, list, None)
        if value is None:
            return default
        if not all(isinstance(v, str) for v in value):
            raise self.fail(key, "expected a list of strings")
        return tuple(value)

    def table(self, key: str) -> _Section:
        return _Section(self.data.pop(key, {}), self.key(key), self.where)

    def integer(self, key: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        value = self.get(key, int, default)
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be at most {maximum}")
        return value

    def decimal(self, key: str, default: str) -> Decimal:
        """A decimal written as a string ("10000.00") or an integer; never a float."""
        raw = self.get(key, (str, int), default)
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            raise self.fail(key, f"not a decimal amount: {raw!r}") from None
        if not value.is_finite():
            raise self.fail(key, "must be a finite amount")
        return value

    def finish(self) -> None:
        if self.data:
            unknown = ", ".join(sorted(self.key(k) for k in self.data))
            raise ConfigError(f"{self.where}: unknown setting {unknown}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", bool: "true or false", dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _path(base: Path, value: str | None) -> Path | None:
    if not value:
        return None
    p = Path(value).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def build_config(data: dict[str, Any], *, base: Path, where: str) -> Config:
    """Validate a parsed TOML document into a Config (pure: no files are read)."""
    top = _Section(data, "", where)
    db = _path(base, top.get("db", str, "audit.db"))
    if db is None:
        raise top.fail("db", "must name the audit database file")

    pol = top.table("policy")
    raw_threshold = pol.get("amount_threshold", (str, int), "10000.00")
    try:
        threshold = Decimal(str(raw_threshold))
    except InvalidOperation:
        raise pol.fail("amount_threshold", f"not a decimal amount: {raw_threshold!r}") from None
    if not threshold.is_finite() or threshold < 0:
        raise pol.fail("amount_threshold", "must be a non-negative amount")
    mode = pol.get("approval_mode", str, "flagged").lower()
    if mode not in APPROVAL_MODES:
        raise pol.fail("approval_mode", f"must be one of {', '.join(APPROVAL_MODES)}, got {mode!r}")
    policy = Policy(
        amount_threshold=threshold,
        vague_memo_terms=tuple(t.lower() for t in pol.strings("vague_memo_terms", DEFAULT_VAGUE_TERMS)),
        known_vendors=pol.strings("known_vendors", ()),
        known_vendors_file=_path(base, pol.get("known_vendors_file", str, "")),
        approval_mode=mode,
        structuring=_read_structuring(pol.table("structuring")),
        duplicates=_read_duplicates(pol.table("duplicates")),
        round_amounts=_read_round_amounts(pol.table("round_amounts")),
        rules=_read_user_rules(pol),
    )
    pol.finish()

    appr = top.table("approvers")
    approvers = tuple(a.strip() for a in appr.strings("addresses", ("controller@example.com",)))
    appr.finish()
    if not approvers:
        raise ConfigError(f"{where}: approvers.addresses: at least one approver is required")
    approvers = _addresses(appr, "addresses", approvers)

    mail_t = top.table("mail")
    transport = mail_t.get("transport", str, "maildir").lower()
    if transport not in ("maildir", "smtp"):
        raise mail_t.fail("transport", f"must be 'maildir' or 'smtp', got {transport!r}")
    smtp = _read_server(
        mail_t.table("smtp"), default_port=587, default_tls="starttls", tls_choices=("starttls", "tls", "none"), base=base, sending=True
    )
    imap = _read_server(mail_t.table("imap"), default_port=993, default_tls="tls", tls_choices=("tls", "none"), base=base)
    try:
        refusal_interval = parse_duration(mail_t.get("refusal_interval", str, "1d"))
    except ValueError as exc:
        raise mail_t.fail("refusal_interval", str(exc)) from None
    if refusal_interval is None:  # answering every forged message would let anyone flood an approver
        raise mail_t.fail("refusal_interval", "cannot be turned off; give a duration like '1h' or '1d'")
    mail = MailSettings(
        transport=transport,
        maildir=_path(base, mail_t.get("maildir", str, "var/mail")),
        from_address=mail_t.get("from_address", str, "audit@example.com"),
        reply_address=mail_t.get("reply_address", str, "audit@example.com"),
        failed_folder=mail_t.get("failed_folder", str, "audit-failed"),
        max_attempts=mail_t.get("max_attempts", int, 3),
        refusal_interval=refusal_interval,
        smtp=smtp,
        imap=imap,
    )
    mail_t.finish()
    if mail.maildir is None:
        raise ConfigError(f"{where}: mail.maildir: must name a folder")
    if not mail.failed_folder.strip() or any(c in mail.failed_folder for c in "/\\\r\n*%"):
        raise ConfigError(f"{where}: mail.failed_folder: must be a plain folder name, got {mail.failed_folder!r}")
    if mail.max_attempts < 1:
        raise ConfigError(f"{where}: mail.max_attempts: must be at least 1")
    for key, value in (("from_address", mail.from_address), ("reply_address", mail.reply_address)):
        if value.count("@") != 1 or any(c in value for c in "<>,; \r\n\"'"):
            raise ConfigError(f"{where}: mail.{key}: not a plain address: {value!r}")

    llm_t = top.table("llm")
    llm = ModelSettings(
        model=llm_t.get("model", str, ""),
        base_url=llm_t.get("base_url", str, ""),
        api_key_env=llm_t.get("api_key_env", str, "OPENAI_API_KEY"),
        batch_size=llm_t.get("batch_size", int, 25),
        timeout=float(llm_t.get("timeout", (int, float), 60.0)),
        max_retries=llm_t.integer("max_retries", 2, minimum=0),
        concurrency=llm_t.integer("concurrency", 2, minimum=1, maximum=MAX_CONCURRENCY),
    )
    llm_t.finish()
    if llm.batch_size < 1:
        raise ConfigError(f"{where}: llm.batch_size: must be at least 1")

    led = top.table("ledger")
    columns = led.get("columns", dict, {})
    if not all(isinstance(v, str) for v in columns.values()):
        raise led.fail("columns", "expected a table of strings (canonical name = header in the file)")
    ledger = LedgerSettings(
        source=led.get("source", str, "ledger"),
        columns=dict(columns),
        default_currency=led.get("default_currency", str, "USD").upper(),
        date_formats=led.strings("date_formats", ("%Y-%m-%d",)),
        decimal_separator=(decimal := led.get("decimal_separator", str, ".")),
        thousands_separator=led.get("thousands_separator", str, "." if decimal == "," else ","),
        large_file_bytes=led.integer("large_file_bytes", 1_000_000, minimum=0),
    )
    led.finish()
    auth_t = top.table("sender_auth")
    sender_auth = SenderAuth(authserv_ids=tuple(a.strip().lower() for a in auth_t.strings("authserv_ids", ()) if a.strip()))
    auth_t.finish()
    audit_t = top.table("audit")
    witness_addresses = _addresses(audit_t, "witness_addresses", audit_t.strings("witness_addresses", ()))
    audit_t.finish()
    req_t = top.table("request")
    request = RequestSettings(
        max_listed=req_t.integer("max_listed", 50, minimum=1, maximum=10_000),
        max_attachment_bytes=req_t.integer("max_attachment_bytes", 7_000_000, minimum=0),
    )
    req_t.finish()
    rem_t = top.table("reminders")
    durations = {}
    for key, default in (("remind_after", "24h"), ("escalate_after", "72h"), ("expire_after", "7d")):
        try:
            durations[key] = parse_duration(rem_t.get(key, str, default))
        except ValueError as exc:
            raise rem_t.fail(key, str(exc)) from None
    escalation = _addresses(rem_t, "escalation_addresses", rem_t.strings("escalation_addresses", ()))
    rem_t.finish()
    reminders = Reminders(escalation_addresses=escalation, **durations)
    top.finish()
    return Config(
        db=db,
        policy=policy,
        approvers=approvers,
        mail=mail,
        llm=llm,
        ledger=ledger,
        sender_auth=sender_auth,
        request=request,
        reminders=reminders,
        witness_addresses=witness_addresses,
    )


def _read_structuring(sec: _Section) -> StructuringRule:
    fraction = sec.decimal("band_fraction", "0.9")
    if not 0 < fraction <= 1:
        raise sec.fail("band_fraction", f"must be above 0 and at most 1, got {fraction}")
    rule = StructuringRule(
        enabled=sec.get("enabled", bool, True),
        min_payments=sec.integer("min_payments", 3, minimum=2),
        window_days=sec.integer("window_days", 7, minimum=1, maximum=366),
        band_fraction=fraction,
    )
    sec.finish()
    return rule


def _read_duplicates(sec: _Section) -> DuplicateRule:
    rule = DuplicateRule(enabled=sec.get("enabled", bool, True), window_days=sec.integer("window_days", 3, minimum=0, maximum=366))
    sec.finish()
    return rule


def _read_round_amounts(sec: _Section) -> RoundAmountRule:
    multiple = sec.decimal("multiple", "1000")
    if multiple <= 0:
        raise sec.fail("multiple", f"must be above 0, got {multiple}")
    rule = RoundAmountRule(enabled=sec.get("enabled", bool, False), multiple=multiple)
    sec.finish()
    return rule


def _read_user_rules(pol: _Section) -> tuple[UserRule, ...]:
    """[[policy.rules]] tables; the expressions themselves are checked by `job.rules` before a run."""
    entries = pol.get("rules", list, [])
    rules: list[UserRule] = []
    for number, entry in enumerate(entries, 1):
        sec = _Section(entry, f"{pol.key('rules')}[{number}]", pol.where)
        name = sec.get("name", str, "").strip()
        if not RULE_NAME.fullmatch(name):
            raise sec.fail("name", f"must be a short lower-case code like 'consulting_large' (a-z, 0-9, _), got {name!r}")
        if name in BUILTIN_CODES:
            raise sec.fail("name", f"{name!r} is the code of a built-in rule; choose another name")
        if any(r.name == name for r in rules):
            raise sec.fail("name", f"{name!r} is used by two rules")
        when = sec.get("when", str, "").strip()
        if not when:
            raise sec.fail("when", "must be a condition, e.g. \"amount > 5000 AND vendor LIKE '%Consult%'\"")
        reason = " ".join(sec.get("reason", str, "").split())
        if not reason:
            raise sec.fail("reason", "must say why the rule flags a transaction (it is shown to the approver)")
        sec.finish()
        rules.append(UserRule(name=name, when=when, reason=reason, key=sec.name))
    return tuple(rules)


def _addresses(sec: _Section, key: str, given) -> tuple[str, ...]:
    """Plain addresses, normalized (`authenticate.normalize_address`), each once, in order."""
    from job.mail.authenticate import normalize_address

    found = []
    for address in given:
        value = normalize_address(address)
        if value is None:
            raise sec.fail(key, f"not a plain address: {address!r}")
        found.append(value)
    return tuple(dict.fromkeys(found))


def _read_server(
    sec: _Section, *, default_port: int, default_tls: str, tls_choices: tuple[str, ...], base: Path, sending: bool = False
) -> ServerSettings:
    tls = sec.get("tls", str, default_tls).lower()
    if tls not in tls_choices:
        raise sec.fail("tls", f"must be one of {', '.join(tls_choices)}, got {tls!r}")
    port = sec.get("port", int, default_port)
    if not 0 < port < 65536:
        raise sec.fail("port", f"not a port number: {port}")
    settings = ServerSettings(
        host=sec.get("host", str, "127.0.0.1"),
        port=port,
        username=sec.get("username", str, ""),
        password_env=sec.get("password_env", str, ""),
        password_file=_path(base, sec.get("password_file", str, "")),
        tls=tls,
        folder=sec.get("folder", str, "INBOX"),
        timeout=float(sec.get("timeout", (int, float), 30.0)),
        cafile=_path(base, sec.get("cafile", str, "")),
        allow_plaintext_password=sec.get("allow_plaintext_password", bool, False),
        connections=sec.integer("connections", SMTP_CONNECTIONS, minimum=1, maximum=20) if sending else 1,
    )
    sec.finish()
    return settings


DEFAULT_CONFIG_TEXT = """\
# audit.toml: settings for the nightly ledger audit.
# Every setting is shown with its default. Relative paths resolve against this file's folder.
# Secrets never go here: name the environment variable that holds them (password_env, api_key_env).

db = "audit.db"                      # the SQLite audit log

[policy]
amount_threshold = "10000.00"        # flag amounts strictly above this (10000.00 is not flagged)
vague_memo_terms = ["confidential", "misc", "miscellaneous", "various", "sundry"]  # whole words, any case
known_vendors = []                   # vendors that are never "unfamiliar"
known_vendors_file = ""              # e.g. "vendors.csv": one vendor per line (a "vendor" header is allowed)
                                     # vendors seen in earlier ledgers count as known too
approval_mode = "flagged"            # always  : send a request every run, even with nothing flagged
                                     # flagged : send a request only when something is flagged
                                     # never   : send nothing; flagged items are recorded as held

[policy.structuring]                 # reason code structuring
enabled = true
min_payments = 3                     # this many payments or more to one vendor ...
window_days = 7                      # ... within this many calendar days (7 = first and last at most 6 days apart) ...
band_fraction = "0.9"                # ... each from this share of amount_threshold up to amount_threshold itself
                                     # (payments of earlier runs count too)

[policy.duplicates]                  # reason code duplicate_payment
enabled = true
window_days = 3                      # same vendor, currency and amount as an earlier payment at most this many days
                                     # apart, in this run or an earlier one; the earlier payment is named

[policy.round_amounts]               # reason code round_amount
enabled = false                      # off by default: rent, retainers and licences are often round
multiple = "1000"                    # a non-zero whole multiple of this (1,000.00, 25,000.00, ...; refunds too)

# Rules of your own: a SQL condition on one transaction, evaluated by the rule engine. Columns:
# id, date (a date: compare with DATE '2026-11-01'), amount (exact decimal), currency, vendor,
# memo, account. Operators, LIKE/ILIKE, IN, BETWEEN, CASE and scalar functions (lower, abs, ...)
# work; subqueries, other tables, aggregates and window functions are refused. The name is the
# reason code.
# [[policy.rules]]
# name = "consulting_large"
# when = "amount > 5000 AND vendor ILIKE '%consult%'"
# reason = "large consulting payment: check the statement of work"

[approvers]
addresses = ["controller@example.com"]   # who receives requests and whose replies count

[ledger]
source = "ledger"                    # name of the system the exports come from; (source, id) is unique
default_currency = "USD"             # used when the file has no currency column
date_formats = ["%Y-%m-%d"]          # tried in order; a date two formats read differently is refused
decimal_separator = "."
thousands_separator = ","
large_file_bytes = 1000000           # a file this big or bigger shows a progress line on a terminal while read
                                     # (polars); smaller files row by row, which starts faster
# [ledger.columns]                   # map canonical names to the headers your export uses
# id = "Reference"
# amount = "Amount (USD)"

[mail]
transport = "maildir"                # maildir | smtp  (smtp = send with SMTP, read replies with IMAP)
maildir = "var/mail"                 # outgoing mail in <maildir>/outbox, replies read from <maildir>/inbox
from_address = "audit@example.com"
reply_address = "audit@example.com"  # replies go to <local>+<token>@<domain>
failed_folder = "audit-failed"       # a reply that fails max_attempts times is moved here (IMAP folder,
max_attempts = 3                     # or a maildir beside <maildir>/inbox), with the error recorded
refusal_interval = "1d"              # a refused reply from an approver's address is answered at most once per
                                     # address and request (or no request) in this time ("90m", "24h", "7d"),
                                     # so forged mail cannot flood them; every refusal is still recorded

[mail.smtp]
host = "127.0.0.1"
port = 587
username = ""
password_env = ""                    # name of the environment variable holding the password
password_file = ""                   # or a file holding it (e.g. a mounted secret); wins over password_env
tls = "starttls"                     # starttls | tls | none
timeout = 30                         # seconds, for every network step
cafile = ""                          # extra CA bundle (PEM) to trust, e.g. for a private relay
allow_plaintext_password = false     # allow sending a password without TLS to a non-loopback host
connections = 3                      # messages go out over this many connections at once (1 to 20);
                                     # many submission services allow 3 per client

[mail.imap]
host = "127.0.0.1"
port = 993
username = ""
password_env = ""
password_file = ""
tls = "tls"                          # tls | none
folder = "INBOX"
timeout = 30
cafile = ""
allow_plaintext_password = false

[llm]
model = ""                           # empty = the built-in offline reviewer (no key, no network)
base_url = ""                        # any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM)
api_key_env = "OPENAI_API_KEY"       # environment variable holding the key
batch_size = 25                      # flagged items per model call; only flagged items are ever sent
concurrency = 2                      # model calls in flight at once
timeout = 60                         # seconds per model call
max_retries = 2                      # retries on 429 and 5xx, with growing pauses (Retry-After is honoured)

[request]
max_listed = 50                      # the request email lists the most important items (most rule findings, then
                                     # largest amount) up to this many; when there are more, every item, numbered,
                                     # is in the attached CSV, and replies may use any number or id from it.
                                     # Confirmations list at most this many decisions and pending items too.
max_attachment_bytes = 7000000       # that CSV (zipped above 5 MB) is attached up to this size; base64 makes it
                                     # a third bigger in the message, and relays refuse mail over their limit
                                     # (often 10 MB). A bigger list is left out and the email says how to get
                                     # it: `audit items REQUEST_ID`. Replies may still use its numbers and ids.

[reminders]                          # for requests nobody answers; "" turns a step off
remind_after = "24h"                 # remind the approvers in the same thread, listing what is pending
escalate_after = "72h"               # send the request to escalation_addresses (who may then decide)
escalation_addresses = []
expire_after = "7d"                  # mark what is still pending as expired (never approved); tell everyone

[audit]
witness_addresses = []               # e.g. ["audit-witness@example.com"]: after each run and each poll that
                                     # recorded something, the audit log's head hash is mailed here, a
                                     # copy kept outside the database; `audit verify --witness` checks
                                     # the saved mail against the chain, which catches a rewritten log.

[sender_auth]
authserv_ids = []                    # e.g. ["mx.example.com"]: trust only the topmost Authentication-Results
                                     # header from these servers; it must show dmarc=pass, or dkim=pass
                                     # aligned with the From domain. Empty = off (run, poll and status warn).
"""
