"""The settings as the rest of the program imports them (declared in `job.settings.schema`).

Precedence: `--config PATH`, else `$AUDIT_CONFIG`, else `./audit.toml`, else the built-in
defaults. Relative paths in a config file resolve against that file's folder. Secrets are
never stored here: the config names the environment variable that holds them.
"""

from __future__ import annotations

from job.settings.durations import format_duration, parse_duration
from job.settings.reading import build_config, find_config_path, load_config
from job.settings.schema import (
    BUILTIN_CODES,
    DEFAULT_VAGUE_TERMS,
    SENDER_AUTH_OFF_WARNING,
    Config,
    DuplicateRule,
    ImapSettings,
    LedgerSettings,
    MailSettings,
    ModelSettings,
    Policy,
    Reminders,
    RequestSettings,
    RoundAmountRule,
    SenderAuth,
    ServerSettings,
    SmtpSettings,
    StructuringRule,
    UserRule,
)
from job.settings.template import default_config_text

__all__ = [
    "Config",
    "Policy",
    "StructuringRule",
    "DuplicateRule",
    "RoundAmountRule",
    "UserRule",
    "RequestSettings",
    "BUILTIN_CODES",
    "DEFAULT_VAGUE_TERMS",
    "MailSettings",
    "ServerSettings",
    "SmtpSettings",
    "ImapSettings",
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


DEFAULT_CONFIG_TEXT = default_config_text()  # the file `audit init` writes
