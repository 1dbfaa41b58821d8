"""Every setting, declared once: its type, default, bounds or choices, and one line of doc.

Each class is one table of `audit.toml` (its docstring heads the table in the file `audit
init` writes) and the frozen object the program reads. Validation, the error messages and
that file all come from here. A field with `exclude=True` is set by the program, never by
the file; `InFile` places a setting in a table of its own.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from job.errors import ConfigError
from job.settings.durations import OFF_WORDS
from job.settings.kinds import (
    LOWERED,
    Addresses,
    Amount,
    Duration,
    FilePath,
    InFile,
    LowerStrings,
    PlainAddress,
    Port,
    Problem,
    RequiredDuration,
    RequiredPath,
    Seconds,
    SettingError,
    Strings,
)

__all__ = [
    "Section",
    "DEFAULT_VAGUE_TERMS",
    "BUILTIN_CODES",
    "StructuringRule",
    "DuplicateRule",
    "RoundAmountRule",
    "UserRule",
    "Policy",
    "LedgerSettings",
    "ServerSettings",
    "SmtpSettings",
    "ImapSettings",
    "MailSettings",
    "ModelSettings",
    "RequestSettings",
    "Reminders",
    "SenderAuth",
    "Config",
    "SENDER_AUTH_OFF_WARNING",
]

DEFAULT_VAGUE_TERMS = ("confidential", "misc", "miscellaneous", "various", "sundry")
# Reason codes of the built-in rules (and the agent's); a user rule may not take one of these names.
BUILTIN_CODES = ("large_amount", "vague_memo", "unfamiliar_vendor", "structuring", "duplicate_payment", "round_amount", "agent_concern")
RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


CURRENCY_CODE = re.compile(r"[A-Z]{3}")


class Section(BaseModel):
    """One table of the file: frozen, strict about types, and no keys but its own."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")


class StructuringRule(Section):
    """Reason code structuring: several payments to one vendor, each just under the threshold, within a few days."""

    enabled: bool = Field(True, description="flag them")
    min_payments: int = Field(3, ge=2, description="this many payments or more to one vendor ...")
    window_days: int = Field(
        7, ge=1, le=366, description="... within this many calendar days (7 = first and last at most 6 days apart) ..."
    )
    band_fraction: Annotated[Amount, Field(gt=0, le=1)] = Field(
        Decimal("0.9"),
        description="... each from this share of amount_threshold up to amount_threshold itself (payments of earlier runs count too)",
    )


class DuplicateRule(Section):
    """Reason code duplicate_payment: the same vendor, currency and amount again, a few days apart."""

    enabled: bool = Field(True, description="flag them")
    window_days: int = Field(
        3,
        ge=0,
        le=366,
        description="at most this many days apart, in this run or an earlier one; the earlier payment is named",
    )


class RoundAmountRule(Section):
    """Reason code round_amount: an amount that is a whole multiple of a round number."""

    enabled: bool = Field(False, description="off by default: rent, retainers and licences are often round")
    multiple: Annotated[Amount, Field(gt=0)] = Field(
        Decimal("1000"), description="a non-zero whole multiple of this, in the transaction's currency (refunds too)"
    )


class UserRule(Section):
    """A rule of your own: a SQL condition on one transaction, with the reason the approver reads."""

    model_config = ConfigDict(validate_default=True)  # a missing name, condition or reason is refused in its own words
    name: str = Field("", description="the reason code: lower case, digits, _ (not a built-in rule's code)")
    when: str = Field("", description="e.g. amount > 5000 AND vendor LIKE '%Consult%'")
    reason: str = Field("", description="why it flags a transaction, shown to the approver")
    key: str = Field("", exclude=True, description="where it is in the config, e.g. policy.rules[1]")

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        name = name.strip()
        if not RULE_NAME.fullmatch(name):
            raise SettingError(f"must be a short lower-case code like 'consulting_large' (a-z, 0-9, _), got {name!r}")
        if name in BUILTIN_CODES:
            raise SettingError(f"{name!r} is the code of a built-in rule; choose another name")
        return name

    @field_validator("when")
    @classmethod
    def _check_when(cls, when: str) -> str:
        if not when.strip():
            raise SettingError("must be a condition, e.g. \"amount > 5000 AND vendor LIKE '%Consult%'\"")
        return when.strip()

    @field_validator("reason")
    @classmethod
    def _check_reason(cls, reason: str) -> str:
        if not reason.split():
            raise SettingError("must say why the rule flags a transaction (it is shown to the approver)")
        return " ".join(reason.split())


class Policy(Section):
    """What gets flagged, and when an approver is asked."""

    amount_threshold: Annotated[Amount, Field(ge=0), Problem("must be a non-negative amount")] = Field(
        Decimal("10000.00"), description="flag amounts strictly above this (10000.00 is not flagged), in each currency"
    )
    thresholds: dict[str, Amount] = Field(
        default_factory=dict,
        description="amount_threshold per currency (ISO 4217 code = amount); others use amount_threshold",
        examples=[{"JPY": "1500000", "EUR": "9000.00"}],
    )
    vague_memo_terms: LowerStrings = Field(DEFAULT_VAGUE_TERMS, description="whole words, any case")
    known_vendors: Strings = Field((), description="vendors that are never unfamiliar")
    known_vendors_file: FilePath = Field(
        None,
        description='e.g. "vendors.csv": one vendor per line (a "vendor" header is allowed);'
        " vendors seen in earlier ledgers count as known too",
    )
    approval_mode: Annotated[Literal["always", "flagged", "never"], LOWERED] = Field(
        "flagged",
        description="always: send a request every run, even with nothing flagged;"
        " flagged: only when something is flagged; never: send nothing, flagged items are recorded as held",
    )
    structuring: StructuringRule = Field(default_factory=StructuringRule)
    duplicates: DuplicateRule = Field(default_factory=DuplicateRule)
    round_amounts: RoundAmountRule = Field(default_factory=RoundAmountRule)
    rules: tuple[UserRule, ...] = Field(
        (),
        strict=False,
        description="Rules of your own, evaluated by the rule engine. Columns: id, date (a date: compare with"
        " DATE '2026-11-01'), amount (exact decimal), currency, vendor, memo, account. Operators, LIKE/ILIKE, IN,"
        " BETWEEN, CASE and scalar functions (lower, abs, ...) work; subqueries, other tables, aggregates and"
        " window functions are refused.",
        examples=[
            {
                "name": "consulting_large",
                "when": "amount > 5000 AND vendor ILIKE '%consult%'",
                "reason": "large consulting payment: check the statement of work",
            }
        ],
    )

    @field_validator("rules")
    @classmethod
    def _name_each_once(cls, rules: tuple[UserRule, ...], info: ValidationInfo) -> tuple[UserRule, ...]:
        """Each name once; in a file, each rule learns where it is (`policy.rules[n]`)."""
        seen: set[str] = set()
        for index, rule in enumerate(rules):
            if rule.name in seen:
                raise SettingError(f"{rule.name!r} is used by two rules", at=(index, "name"))
            seen.add(rule.name)
        if info.context is None:
            return rules
        return tuple(rule.model_copy(update={"key": f"policy.rules[{n}]"}) for n, rule in enumerate(rules, 1))

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, thresholds: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, amount in thresholds.items():
            if not CURRENCY_CODE.fullmatch(code):
                raise SettingError(f"{code!r} is not a currency code: use three capital letters, e.g. JPY")
            if amount < 0:
                raise SettingError(f"{code}: must be a non-negative amount")
        return thresholds

    def threshold_for(self, currency: str) -> Decimal:
        """The large-amount threshold in `currency`: its own in `thresholds`, else `amount_threshold`."""
        return self.thresholds.get(currency, self.amount_threshold)


class LedgerSettings(Section):
    """How the ledger exports are read."""

    source: str = Field("ledger", description="name of the system the exports come from; (source, id) is unique")
    format: Annotated[
        Literal["auto", "csv", "quickbooks", "xero", "netsuite", "sap", "datev", "camt053", "mt940", "ofx", "bai2", "xlsx"], LOWERED
    ] = Field("auto", description="the exports' format; auto: found from each file's content ('audit inspect FILE' shows it)")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="map canonical names to the headers your export uses",
        examples=[{"id": "Reference", "amount": "Amount (USD)"}],
    )
    default_currency: str = Field("USD", description="used when the file has no currency column")
    date_formats: Strings = Field(("%Y-%m-%d",), description="tried in order; a date two formats read differently is refused")
    decimal_separator: str = Field(".", description="the decimal mark in amounts")
    thousands_separator: str = Field(
        ",", description="the grouping mark in amounts ('.' when decimal_separator is ',' and this is not set)"
    )
    large_file_bytes: int = Field(
        1_000_000,
        ge=0,
        description="a file this big or bigger shows a progress line (on a terminal) while it is read",
    )

    @model_validator(mode="before")
    @classmethod
    def _group_with_dots_after_a_comma(cls, data: Any) -> Any:
        if isinstance(data, dict) and "thousands_separator" not in data and data.get("decimal_separator") == ",":
            return {**data, "thousands_separator": "."}
        return data

    @field_validator("columns", mode="before")
    @classmethod
    def _columns_are_strings(cls, columns: Any) -> Any:
        if isinstance(columns, dict) and not all(isinstance(v, str) for v in columns.values()):
            raise SettingError("expected a table of strings (canonical name = header in the file)")
        return columns

    @field_validator("default_currency")
    @classmethod
    def _upper(cls, code: str) -> str:
        return code.upper()


class ServerSettings(Section):
    """A mail server: where it is, how to log in, how long to wait."""

    host: str = Field("127.0.0.1", description="the server's name or address")
    port: int
    username: str = Field("", description="the login name")
    password_env: str = Field("", description="name of the environment variable holding the password")
    password_file: FilePath = Field(None, description="or a file holding it (e.g. a mounted secret); wins over password_env")
    tls: str
    timeout: Seconds = Field(30.0, description="seconds, for every network step")
    cafile: FilePath = Field(None, description="extra CA bundle (PEM) to trust, e.g. for a private server")
    allow_plaintext_password: bool = Field(False, description="allow sending a password without TLS to a non-loopback host")

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
            f"{type(self).__name__}(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password_env={self.password_env!r}, tls={self.tls!r})"
        )


class SmtpSettings(ServerSettings):
    """The relay that sends requests, reminders and confirmations."""

    port: Port = Field(587, description="the submission port")
    tls: Annotated[Literal["starttls", "tls", "none"], LOWERED] = Field("starttls", description="how the connection is encrypted")
    connections: int = Field(
        3, ge=1, le=20, description="messages go out over this many connections at once; many submission services allow 3 per client"
    )


class ImapSettings(ServerSettings):
    """The mailbox replies are read from."""

    port: Port = Field(993, description="the IMAP port")
    tls: Annotated[Literal["tls", "none"], LOWERED] = Field("tls", description="how the connection is encrypted")
    folder: str = Field("INBOX", description="the folder replies arrive in")


class MailSettings(Section):
    """How requests go out and replies come in."""

    transport: Annotated[Literal["maildir", "smtp"], LOWERED, Problem("must be 'maildir' or 'smtp', got {value!r}")] = Field(
        "maildir", description="maildir: mail goes to and comes from folders; smtp: send with SMTP, read replies with IMAP"
    )
    maildir: RequiredPath = Field(Path("var/mail"), description="outgoing mail in <maildir>/outbox, replies read from <maildir>/inbox")
    from_address: PlainAddress = Field("audit@example.com", description="the sender of every message")
    reply_address: PlainAddress = Field("audit@example.com", description="replies go to <local>+<token>@<domain>")
    failed_folder: str = Field(
        "audit-failed",
        description="a reply that fails max_attempts times is moved here (an IMAP folder, or a maildir beside"
        " <maildir>/inbox), with the error recorded",
    )
    max_attempts: int = Field(3, ge=1, description="tries at a reply before it is moved to failed_folder")
    refusal_interval: RequiredDuration = Field(
        86400,
        description="a refused reply from an approver's address is answered at most once per address and request"
        ' (or no request) in this time ("90m", "24h", "7d"), so forged mail cannot flood them; every refusal is still recorded',
    )
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    imap: ImapSettings = Field(default_factory=ImapSettings)

    @field_validator("maildir", mode="before")
    @classmethod
    def _names_a_folder(cls, value: Any) -> Any:
        if value == "":
            raise SettingError("must name a folder")
        return value

    @field_validator("failed_folder")
    @classmethod
    def _plain_folder(cls, name: str) -> str:
        if not name.strip() or any(c in name for c in "/\\\r\n*%"):
            raise SettingError(f"must be a plain folder name, got {name!r}")
        return name

    @field_validator("refusal_interval", mode="before")
    @classmethod
    def _never_off(cls, value: Any) -> Any:  # answering every forged message would let anyone flood an approver
        if isinstance(value, str) and value.strip().lower() in OFF_WORDS:
            raise SettingError("cannot be turned off; give a duration like '1h' or '1d'")
        return value


class ModelSettings(Section):
    """The model that reviews flagged items; only flagged items are ever sent."""

    model: str = Field("", description="empty = the built-in offline reviewer (no key, no network)")
    base_url: str = Field("", description="any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM); empty = the OpenAI API")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key")
    batch_size: int = Field(25, ge=1, description="flagged items per model call")
    timeout: Seconds = Field(60.0, description="seconds per model call")
    max_retries: int = Field(2, ge=0, description="retries on 429 and 5xx, with growing pauses (Retry-After is honoured)")
    concurrency: int = Field(2, ge=1, le=32, description="model calls in flight at once")

    @property
    def offline(self) -> bool:
        return not self.model

    def describe(self) -> str:
        """The reviewer's name as reports and emails show it."""
        if self.offline:
            return "built-in offline reviewer"
        return f"model {self.model} at {self.base_url or 'the OpenAI API'}"


class RequestSettings(Section):
    """The request email and its attachment."""

    max_listed: int = Field(
        50,
        ge=1,
        le=10_000,
        description="the request lists the most important items (most rule findings, then largest amount) up to this"
        " many; when there are more, every item, numbered, is in the attached CSV, and replies may use any number or id"
        " from it. Confirmations list at most this many decisions and pending items too.",
    )
    max_attachment_bytes: int = Field(
        7_000_000,
        ge=0,
        description="that CSV (zipped above 5 MB) is attached up to this size; base64 makes it a third bigger, and"
        " relays refuse mail over their limit (often 10 MB). A bigger list is left out and the email says how to get"
        " it: `audit items REQUEST_ID`; replies may still use its numbers and ids.",
    )


class Reminders(Section):
    """For requests nobody answers: how long after a request each step comes ("" turns a step off).

    In the program each is seconds, or None for a step turned off.
    """

    remind_after: Duration = Field(24 * 3600, description="remind the approvers in the same thread, listing what is pending")
    escalate_after: Duration = Field(72 * 3600, description="send the request to escalation_addresses (who may then decide)")
    escalation_addresses: Addresses = Field((), description="who is asked when the approvers do not answer")
    expire_after: Duration = Field(7 * 86400, description="mark what is still pending as expired (never approved); tell everyone")


class SenderAuth(Section):
    """Whose word on a reply's sender is trusted."""

    authserv_ids: Strings = Field(
        (),
        description='e.g. ["mx.example.com"]: trust only the topmost Authentication-Results header from these servers;'
        " it must show dmarc=pass, or dkim=pass aligned with the From domain. Empty = off (run, poll and status warn).",
    )

    @field_validator("authserv_ids")
    @classmethod
    def _lower(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(a.strip().lower() for a in ids if a.strip())

    @property
    def enabled(self) -> bool:
        return bool(self.authserv_ids)


SENDER_AUTH_OFF_WARNING = (
    "sender authentication is off ([sender_auth] authserv_ids is empty): replies are trusted on their From address and reply token alone"
)


class Config(Section):
    """All the settings; `path` is the file they were read from (None: the built-in defaults)."""

    path: Path | None = Field(None, exclude=True, description="the config file read, absolute")
    db: RequiredPath = Field(Path("audit.db"), description="the SQLite audit log")
    policy: Policy = Field(default_factory=Policy)
    approvers: Annotated[
        Addresses, Field(min_length=1), InFile(("approvers", "addresses")), Problem("at least one approver is required")
    ] = Field(("controller@example.com",), description="who receives requests and whose replies count")
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    llm: ModelSettings = Field(default_factory=ModelSettings)
    request: RequestSettings = Field(default_factory=RequestSettings)
    reminders: Reminders = Field(default_factory=Reminders)
    witness_addresses: Annotated[Addresses, InFile(("audit", "witness_addresses"))] = Field(
        (),
        description='e.g. ["audit-witness@example.com"]: after each run and each poll that recorded something, the'
        " audit log's head hash is mailed here, a copy kept outside the database; `audit verify --witness` checks the"
        " saved mail against the chain, which catches a rewritten log.",
    )
    sender_auth: SenderAuth = Field(default_factory=SenderAuth)

    @field_validator("db", mode="before")
    @classmethod
    def _names_a_file(cls, value: Any) -> Any:
        if value == "":
            raise SettingError("must name the audit database file")
        return value
