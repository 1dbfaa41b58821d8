"""Settings: defaults, precedence, path resolution, validation messages and secrets."""

from __future__ import annotations

import itertools
import re
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from job.config import (
    DEFAULT_CONFIG_TEXT,
    Config,
    LedgerSettings,
    MailSettings,
    ModelSettings,
    Policy,
    SmtpSettings,
    build_config,
    find_config_path,
    load_config,
)
from job.errors import ConfigError

WHERE = "site/audit.toml"


def build(data: dict, base: Path = Path("/srv/audit")) -> Config:
    return build_config(data, base=base, where=WHERE)


# --- defaults -------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    config = build({})
    assert config.db == Path("/srv/audit/audit.db")
    policy = config.policy
    assert policy.amount_threshold == Decimal("10000.00") and str(policy.amount_threshold) == "10000.00"
    assert policy.vague_memo_terms == ("confidential", "misc", "miscellaneous", "various", "sundry")
    assert policy.known_vendors == () and policy.known_vendors_file is None
    assert policy.approval_mode == "flagged"
    assert config.approvers == ("controller@example.com",)
    mail = config.mail
    assert mail.transport == "maildir"
    assert mail.maildir == Path("/srv/audit/var/mail")
    assert (mail.from_address, mail.reply_address) == ("audit@example.com", "audit@example.com")
    assert (mail.smtp.host, mail.smtp.port, mail.smtp.tls, mail.smtp.timeout) == ("127.0.0.1", 587, "starttls", 30.0)
    assert (mail.imap.host, mail.imap.port, mail.imap.tls, mail.imap.folder) == ("127.0.0.1", 993, "tls", "INBOX")
    assert mail.smtp.password_env == "" and mail.smtp.allow_plaintext_password is False
    assert mail.refusal_interval == 86400  # one refusal answer per address and request a day
    assert config.llm.offline and config.llm.describe() == "built-in offline reviewer"
    assert (config.llm.api_key_env, config.llm.batch_size, config.llm.timeout, config.llm.max_retries) == ("OPENAI_API_KEY", 25, 60.0, 2)
    assert config.llm.concurrency == 2
    assert (policy.structuring.enabled, policy.structuring.min_payments, policy.structuring.window_days) == (True, 3, 7)
    assert policy.structuring.band_fraction == Decimal("0.9")
    assert (policy.duplicates.enabled, policy.duplicates.window_days) == (True, 3)
    assert (policy.round_amounts.enabled, policy.round_amounts.multiple) == (False, Decimal("1000"))
    assert policy.rules == ()
    assert config.request.max_listed == 50
    ledger = config.ledger
    assert (ledger.source, ledger.default_currency, ledger.date_formats) == ("ledger", "USD", ("%Y-%m-%d",))
    assert (ledger.decimal_separator, ledger.thousands_separator, ledger.columns) == (".", ",", {})


def test_default_config_text_parses_to_exactly_the_defaults() -> None:
    """The file `audit init` writes must not change anything by being there."""
    base = Path("/srv/audit")
    assert build(tomllib.loads(DEFAULT_CONFIG_TEXT), base) == build({}, base)


def test_settings_objects_default_to_the_same_values() -> None:
    config = build({})
    assert Policy() == config.policy
    assert (MailSettings().smtp, MailSettings().imap, MailSettings().transport) == (config.mail.smtp, config.mail.imap, "maildir")
    assert ModelSettings() == config.llm
    assert LedgerSettings() == config.ledger
    assert Config().approvers == config.approvers


def test_default_config_text_shows_every_top_level_section() -> None:
    data = tomllib.loads(DEFAULT_CONFIG_TEXT)
    assert set(data) == {"db", "policy", "approvers", "ledger", "mail", "llm", "sender_auth", "request", "reminders", "audit"}
    assert set(data["mail"]) >= {"smtp", "imap"}
    assert set(data["policy"]) >= {"structuring", "duplicates", "round_amounts"}


def setting_lines(text: str) -> dict[str, str]:
    """'table.key' -> its line, for every `key = value` line of a config text (commented examples too)."""
    found, table = {}, ""
    for line in text.splitlines():
        bare = line.removeprefix("# ")
        if header := re.match(r"\[+([a-z_.]+)\]+", bare):
            table = header.group(1)
        elif setting := re.match(r"([a-z_]+) = ", bare):
            found[f"{table}.{setting.group(1)}".lstrip(".")] = line
    return found


def comment_of(start: str) -> str:
    """The comment beside the default text's first line starting with `start`, with its continuation lines."""
    lines = DEFAULT_CONFIG_TEXT.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith(start))
    parts = [lines[at].split("  # ", 1)[1]]
    parts += [line.strip().removeprefix("# ") for line in itertools.takewhile(lambda line: line.startswith(" " * 37 + "# "), lines[at + 1 :])]
    return " ".join(parts)


def test_default_config_text_comments_every_setting_with_its_choices_and_bounds() -> None:
    lines = setting_lines(DEFAULT_CONFIG_TEXT)
    shown_before = ("mail.imap.", "policy.duplicates.enabled", "ledger.columns.")  # said once for smtp / structuring; the user's own keys
    first_of_a_kind = {k: v for k, v in lines.items() if not k.startswith(shown_before)}
    assert all("  # " in line for line in first_of_a_kind.values()), [k for k, v in first_of_a_kind.items() if "  # " not in v]
    assert comment_of('tls = "starttls"').startswith("starttls | tls | none: ")
    assert comment_of('tls = "tls"').startswith("tls | none: ")
    assert comment_of("connections = 3").endswith("(1 to 20)")
    assert comment_of('band_fraction = "0.9"').endswith("(above 0, at most 1)")
    assert comment_of('approval_mode = "flagged"').startswith("always: ")  # the choices are told, so not listed again
    assert '[mail.smtp]' in DEFAULT_CONFIG_TEXT and "# [[policy.rules]]" in DEFAULT_CONFIG_TEXT
    assert all(len(line) <= 140 for line in DEFAULT_CONFIG_TEXT.splitlines())


def test_default_config_text_names_every_setting_the_reader_accepts() -> None:
    """Each key of the written file is read on its own (set to its default, it changes nothing)."""
    for key, line in setting_lines(DEFAULT_CONFIG_TEXT).items():
        if line.startswith("#"):
            continue
        *tables, name = key.split(".")
        data: dict = {}
        inner = data
        for table in tables:
            inner = inner.setdefault(table, {})
        inner[name] = tomllib.loads(line.split("  #")[0] if "  #" in line else line)[name]
        assert build(data) == build({}), key


def test_the_commented_examples_work_when_uncommented() -> None:
    """[[policy.rules]] and [ledger.columns] are shown commented out; uncommented, they are read as shown."""
    text = re.sub(r"^# (\[\[policy\.rules\]\]|\[ledger\.columns\]|name = |when = |reason = |id = |amount = )", r"\1",
                  DEFAULT_CONFIG_TEXT, flags=re.M)
    config = build(tomllib.loads(text))
    assert [(r.name, r.when, r.reason, r.key) for r in config.policy.rules] == [
        ("consulting_large", "amount > 5000 AND vendor ILIKE '%consult%'", "large consulting payment: check the statement of work", "policy.rules[1]")]
    assert config.ledger.columns == {"id": "Reference", "amount": "Amount (USD)"}


def test_user_rules_are_read_in_order_with_where_they_are() -> None:
    config = build({"policy": {"rules": [
        {"name": "consulting_large", "when": "amount > 5000 AND vendor LIKE '%Consult%'", "reason": "large consulting  payment"},
        {"name": "weekend", "when": "EXTRACT(DOW FROM date) IN (0, 6)", "reason": "paid on a weekend"},
    ]}})
    assert [(r.name, r.when, r.reason, r.key) for r in config.policy.rules] == [
        ("consulting_large", "amount > 5000 AND vendor LIKE '%Consult%'", "large consulting payment", "policy.rules[1]"),
        ("weekend", "EXTRACT(DOW FROM date) IN (0, 6)", "paid on a weekend", "policy.rules[2]"),
    ]


def test_rules_can_be_switched_on_and_off() -> None:
    policy = build({"policy": {"structuring": {"enabled": False}, "duplicates": {"enabled": False}, "round_amounts": {"enabled": True}}}).policy
    assert (policy.structuring.enabled, policy.duplicates.enabled, policy.round_amounts.enabled) == (False, False, True)


def test_refusal_interval_is_a_duration() -> None:
    assert build({"mail": {"refusal_interval": "90m"}}).mail.refusal_interval == 5400
    assert build({"mail": {"refusal_interval": "2w"}}).mail.refusal_interval == 14 * 86400
    assert MailSettings().refusal_interval == build({}).mail.refusal_interval


def test_a_bad_refusal_interval_in_a_file_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.toml"
    path.write_text('[mail]\nrefusal_interval = "often"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: mail.refusal_interval: not a duration like '24h' or '7d': 'often'"


def test_comma_decimal_separator_defaults_thousands_to_dot() -> None:
    assert build({"ledger": {"decimal_separator": ","}}).ledger.thousands_separator == "."


def test_values_are_normalised() -> None:
    config = build({
        "policy": {"approval_mode": "Always", "vague_memo_terms": ["TBD", "Misc"], "amount_threshold": 500},
        "mail": {"transport": "SMTP", "smtp": {"tls": "NONE"}},
        "approvers": {"addresses": [" cfo@example.com "]},
        "ledger": {"default_currency": "eur"},
    })
    assert config.policy.approval_mode == "always"
    assert config.policy.vague_memo_terms == ("tbd", "misc")
    assert config.policy.amount_threshold == Decimal("500")
    assert config.mail.transport == "smtp" and config.mail.smtp.tls == "none"
    assert config.approvers == ("cfo@example.com",)
    assert config.ledger.default_currency == "EUR"


# --- files, precedence and relative paths ---------------------------------------------


def test_relative_paths_resolve_against_the_config_files_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "audit.toml").write_text(
        'db = "data/audit.db"\n[policy]\nknown_vendors_file = "vendors.csv"\n[mail]\nmaildir = "mail"\n'
        '[mail.smtp]\ncafile = "ca.pem"\n',
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("AUDIT_CONFIG", raising=False)
    config = load_config("../site/audit.toml")
    assert config.path == site / "audit.toml"
    assert config.db == site / "data" / "audit.db"
    assert config.policy.known_vendors_file == site / "vendors.csv"
    assert config.mail.maildir == site / "mail"
    assert config.mail.smtp.cafile == site / "ca.pem"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    config = build({"db": str(tmp_path / "x.db")}, base=Path("/elsewhere"))
    assert config.db == tmp_path / "x.db"


def test_no_config_file_means_defaults_relative_to_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUDIT_CONFIG", raising=False)
    config = load_config()
    assert config.path is None
    assert config.db == tmp_path / "audit.db"
    assert config.mail.maildir == tmp_path / "var" / "mail"


def test_db_option_overrides_the_config_and_resolves_against_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "audit.toml").write_text('db = "from-config.db"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUDIT_CONFIG", raising=False)
    assert load_config("conf/audit.toml").db == tmp_path / "conf" / "from-config.db"
    assert load_config("conf/audit.toml", db="other.db").db == tmp_path / "other.db"


def test_precedence_explicit_then_env_then_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("audit.toml", "env.toml", "cli.toml"):
        (tmp_path / name).write_text(f'db = "{name}.db"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUDIT_CONFIG", raising=False)
    assert find_config_path(None) == Path("audit.toml")
    monkeypatch.setenv("AUDIT_CONFIG", str(tmp_path / "env.toml"))
    assert load_config().db == tmp_path / "env.toml.db"
    assert load_config("cli.toml").db == tmp_path / "cli.toml.db"


def test_missing_config_files_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUDIT_CONFIG", raising=False)
    with pytest.raises(ConfigError) as explicit:
        load_config("nope.toml")
    assert str(explicit.value) == "nope.toml: config file not found"
    monkeypatch.setenv("AUDIT_CONFIG", "gone.toml")
    with pytest.raises(ConfigError) as env:
        load_config()
    assert str(env.value) == "gone.toml: config file named by AUDIT_CONFIG not found"
    assert env.value.exit_code == 3


def test_unparseable_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("db = [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^" + str(path).replace("\\", "\\\\") + ": "):
        load_config(path)


# --- every error names the key --------------------------------------------------------

ERRORS = [
    ({"bogus": 1}, "unknown setting bogus"),
    ({"policy": {"threshold": "5"}}, "unknown setting policy.threshold"),
    ({"mail": {"smtp": {"password": "hunter2"}}}, "unknown setting mail.smtp.password"),
    ({"db": 5}, "db: expected a string, got int"),
    ({"policy": "strict"}, "[policy] must be a table"),
    ({"policy": {"amount_threshold": 1.5}}, "policy.amount_threshold: expected a string or an integer, got float"),
    ({"policy": {"amount_threshold": True}}, "policy.amount_threshold: expected a string or an integer, got a boolean"),
    ({"policy": {"amount_threshold": "1,000"}}, "policy.amount_threshold: not a decimal amount: '1,000'"),
    ({"policy": {"amount_threshold": "-1"}}, "policy.amount_threshold: must be a non-negative amount"),
    ({"policy": {"amount_threshold": "NaN"}}, "policy.amount_threshold: must be a non-negative amount"),
    ({"policy": {"amount_threshold": "Infinity"}}, "policy.amount_threshold: must be a non-negative amount"),
    ({"policy": {"approval_mode": "sometimes"}}, "policy.approval_mode: must be one of always, flagged, never, got 'sometimes'"),
    ({"policy": {"vague_memo_terms": ["misc", 3]}}, "policy.vague_memo_terms: expected a list of strings"),
    ({"policy": {"known_vendors": "Acme"}}, "policy.known_vendors: expected a list, got str"),
    ({"approvers": {"addresses": []}}, "approvers.addresses: at least one approver is required"),
    ({"approvers": {"addresses": ["Bob <bob@example.com>"]}}, "approvers.addresses: not a plain address: 'Bob <bob@example.com>'"),
    ({"approvers": {"addresses": ["nobody"]}}, "approvers.addresses: not a plain address: 'nobody'"),
    ({"mail": {"transport": "pigeon"}}, "mail.transport: must be 'maildir' or 'smtp', got 'pigeon'"),
    ({"mail": {"from_address": "a@b@c"}}, "mail.from_address: not a plain address: 'a@b@c'"),
    ({"mail": {"reply_address": "audit"}}, "mail.reply_address: not a plain address: 'audit'"),
    ({"mail": {"refusal_interval": "soon"}}, "mail.refusal_interval: not a duration like '24h' or '7d': 'soon'"),
    ({"mail": {"refusal_interval": "0d"}}, "mail.refusal_interval: not a duration like '24h' or '7d': '0d'"),
    ({"mail": {"refusal_interval": "1 day"}}, "mail.refusal_interval: not a duration like '24h' or '7d': '1 day'"),
    ({"mail": {"refusal_interval": 86400}}, "mail.refusal_interval: expected a string, got int"),
    ({"mail": {"refusal_interval": "off"}}, "mail.refusal_interval: cannot be turned off; give a duration like '1h' or '1d'"),
    ({"mail": {"refusal_interval": ""}}, "mail.refusal_interval: cannot be turned off; give a duration like '1h' or '1d'"),
    ({"mail": {"smtp": {"tls": "ssl"}}}, "mail.smtp.tls: must be one of starttls, tls, none, got 'ssl'"),
    ({"mail": {"imap": {"tls": "starttls"}}}, "mail.imap.tls: must be one of tls, none, got 'starttls'"),
    ({"mail": {"smtp": {"port": "25"}}}, "mail.smtp.port: expected an integer, got str"),
    ({"mail": {"smtp": {"port": 70000}}}, "mail.smtp.port: not a port number: 70000"),
    ({"mail": {"imap": {"port": 0}}}, "mail.imap.port: not a port number: 0"),
    ({"mail": {"smtp": {"timeout": "30"}}}, "mail.smtp.timeout: expected an integer or a number, got str"),
    ({"mail": {"smtp": {"allow_plaintext_password": "yes"}}}, "mail.smtp.allow_plaintext_password: expected true or false, got str"),
    ({"llm": {"batch_size": 0}}, "llm.batch_size: must be at least 1"),
    ({"llm": {"max_retries": False}}, "llm.max_retries: expected an integer, got a boolean"),
    ({"ledger": {"columns": {"id": 1}}}, "ledger.columns: expected a table of strings (canonical name = header in the file)"),
    ({"ledger": {"date_formats": "%d.%m.%Y"}}, "ledger.date_formats: expected a list, got str"),
    ({"llm": {"concurrency": 0}}, "llm.concurrency: must be at least 1"),
    ({"llm": {"concurrency": 500}}, "llm.concurrency: must be at most 32"),
    ({"llm": {"concurrency": "2"}}, "llm.concurrency: expected an integer, got str"),
    ({"llm": {"max_retries": -1}}, "llm.max_retries: must be at least 0"),
    ({"request": {"max_listed": 0}}, "request.max_listed: must be at least 1"),
    ({"request": {"max_listed": 20_000}}, "request.max_listed: must be at most 10000"),
    ({"request": {"max_items": 5}}, "unknown setting request.max_items"),
    ({"policy": {"structuring": {"enabled": "no"}}}, "policy.structuring.enabled: expected true or false, got str"),
    ({"policy": {"structuring": {"min_payments": 1}}}, "policy.structuring.min_payments: must be at least 2"),
    ({"policy": {"structuring": {"window_days": 0}}}, "policy.structuring.window_days: must be at least 1"),
    ({"policy": {"structuring": {"band_fraction": "1.5"}}}, "policy.structuring.band_fraction: must be above 0 and at most 1, got 1.5"),
    ({"policy": {"structuring": {"band_fraction": 0.9}}}, "policy.structuring.band_fraction: expected a string or an integer, got float"),
    ({"policy": {"structuring": {"days": 7}}}, "unknown setting policy.structuring.days"),
    ({"policy": {"duplicates": {"window_days": -1}}}, "policy.duplicates.window_days: must be at least 0"),
    ({"policy": {"round_amounts": {"multiple": "0"}}}, "policy.round_amounts.multiple: must be above 0, got 0"),
    ({"policy": {"round_amounts": {"multiple": "lots"}}}, "policy.round_amounts.multiple: not a decimal amount: 'lots'"),
    ({"policy": {"rules": {"name": "x"}}}, "policy.rules: expected a list, got dict"),
    ({"policy": {"rules": ["amount > 5"]}}, "[policy.rules[1]] must be a table"),
    ({"policy": {"rules": [{"name": "Big One", "when": "amount > 5", "reason": "r"}]}},
     "policy.rules[1].name: must be a short lower-case code like 'consulting_large' (a-z, 0-9, _), got 'Big One'"),
    ({"policy": {"rules": [{"name": "large_amount", "when": "amount > 5", "reason": "r"}]}},
     "policy.rules[1].name: 'large_amount' is the code of a built-in rule; choose another name"),
    ({"policy": {"rules": [{"name": "a", "when": "amount > 5", "reason": "r"}, {"name": "a", "when": "amount > 6", "reason": "r"}]}},
     "policy.rules[2].name: 'a' is used by two rules"),
    ({"policy": {"rules": [{"name": "a", "when": " ", "reason": "r"}]}},
     "policy.rules[1].when: must be a condition, e.g. \"amount > 5000 AND vendor LIKE '%Consult%'\""),
    ({"policy": {"rules": [{"name": "a", "when": "amount > 5"}]}},
     "policy.rules[1].reason: must say why the rule flags a transaction (it is shown to the approver)"),
    ({"policy": {"rules": [{"name": "a", "when": "amount > 5", "reason": "r", "code": "x"}]}}, "unknown setting policy.rules[1].code"),
    ({"policy": {"rules": [{"name": 5, "when": "amount > 5", "reason": "r"}]}}, "policy.rules[1].name: expected a string, got int"),
    ({"policy": {"rules": [{"when": "amount > 5", "reason": "r"}]}},
     "policy.rules[1].name: must be a short lower-case code like 'consulting_large' (a-z, 0-9, _), got ''"),
    # settings the program sets, never the file
    ({"path": "elsewhere.toml"}, "unknown setting path"),
    ({"policy": {"rules": [{"name": "a", "when": "amount > 5", "reason": "r", "key": "x"}]}}, "unknown setting policy.rules[1].key"),
    # tables that hold one setting, and every unknown key of a file at once
    ({"approvers": "cfo@example.com"}, "[approvers] must be a table"),
    ({"audit": {"witness": []}}, "unknown setting audit.witness"),
    ({"approvers": {"cc": []}, "audit": {"witness": []}, "colour": 1}, "unknown setting approvers.cc, audit.witness, colour"),
    ({"audit": {"witness_addresses": ["nobody"]}}, "audit.witness_addresses: not a plain address: 'nobody'"),
    ({"reminders": {"escalation_addresses": ["nobody"]}}, "reminders.escalation_addresses: not a plain address: 'nobody'"),
    ({"reminders": {"remind_after": 5}}, "reminders.remind_after: expected a string, got int"),
    # SMTP and IMAP each take their own settings
    ({"mail": {"imap": {"connections": 2}}}, "unknown setting mail.imap.connections"),
    ({"mail": {"smtp": {"folder": "INBOX"}}}, "unknown setting mail.smtp.folder"),
    ({"mail": {"smtp": {"connections": 21}}}, "mail.smtp.connections: must be at most 20"),
    ({"mail": {"smtp": {"timeout": 0}}}, "mail.smtp.timeout: must be above 0"),
    ({"llm": {"timeout": -1}}, "llm.timeout: must be above 0"),
    ({"mail": "smtp"}, "[mail] must be a table"),
    ({"mail": {"smtp": "relay"}}, "[mail.smtp] must be a table"),
    ({"mail": {"failed_folder": "a/b"}}, "mail.failed_folder: must be a plain folder name, got 'a/b'"),
    ({"policy": {"round_amounts": {"multiple": "NaN"}}}, "policy.round_amounts.multiple: must be a finite amount"),
    ({"ledger": {"columns": "id"}}, "ledger.columns: expected a table, got str"),
    ({"sender_auth": {"authserv_ids": [1]}}, "sender_auth.authserv_ids: expected a list of strings"),
    ({"db": True}, "db: expected a string, got a boolean"),
]


@pytest.mark.parametrize(("data", "message"), ERRORS, ids=[m.split(":")[0] for _, m in ERRORS])
def test_every_error_names_the_file_and_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(data)
    assert str(caught.value) == f"{WHERE}: {message}"
    assert caught.value.exit_code == 3


@pytest.mark.parametrize(("data", "key"), [({"db": ""}, "db"), ({"mail": {"maildir": ""}}, "mail.maildir")])
def test_empty_path_is_refused_naming_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(data)
    assert str(caught.value).startswith(f"{WHERE}: {key}: ")


# --- secrets --------------------------------------------------------------------------


def test_password_comes_only_from_the_named_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    config = build({"mail": {"smtp": {"username": "audit", "password_env": "AUDIT_TEST_SMTP_PW"}}})
    monkeypatch.setenv("AUDIT_TEST_SMTP_PW", "s3cret-value")
    assert config.mail.smtp.password() == "s3cret-value"
    monkeypatch.setenv("AUDIT_TEST_SMTP_PW", "rotated")
    assert config.mail.smtp.password() == "rotated"  # read when needed, never stored
    assert config.mail.imap.password() is None  # no password_env: no password at all


def test_missing_password_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_TEST_MISSING_PW", raising=False)
    server = build({"mail": {"imap": {"password_env": "AUDIT_TEST_MISSING_PW"}}}).mail.imap
    with pytest.raises(ConfigError) as caught:
        server.password()
    assert str(caught.value) == "environment variable AUDIT_TEST_MISSING_PW (named by password_env) is not set"
    assert caught.value.exit_code == 3


def test_repr_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_TEST_SMTP_PW", "s3cret-value")
    config = build({"mail": {"smtp": {"username": "audit", "password_env": "AUDIT_TEST_SMTP_PW"}}})
    assert config.mail.smtp.password() == "s3cret-value"
    text = repr(config.mail.smtp)
    assert text == "SmtpSettings(host='127.0.0.1', port=587, username='audit', password_env='AUDIT_TEST_SMTP_PW', tls='starttls')"
    for shown in (text, repr(config.mail), repr(config), str(config)):
        assert "s3cret-value" not in shown
    assert repr(SmtpSettings(password_env="AUDIT_TEST_SMTP_PW")).count("s3cret") == 0
