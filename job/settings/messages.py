"""A pydantic ValidationError as the one line a user reads: file, key, problem.

The first problem found is told, e.g. `audit.toml: mail.smtp.port: not a port number: 70000`.
Its key comes from the schema (`layout`), its wording from the setting's kind, bounds or
choices, from the setting's own `Problem`, or from the `SettingError` a validator raised.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, get_args

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from job.errors import ConfigError
from job.settings.kinds import BOUND_WORDS, Problem, SettingError, bounds_of, kind_of
from job.settings.layout import file_path, item_section_of, join_key, section_of
from job.settings.schema import Config, Section

__all__ = ["config_error"]

KINDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "float_type": "an integer or a number",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a table",
}
TABLE_TYPES = ("model_type", "model_attributes_type", "dict_type")
BOUND_ERRORS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def config_error(error: ValidationError, where: str) -> ConfigError:
    """The first problem of a validation, as a ConfigError naming the file and key."""
    detail = error.errors(include_url=False)[0]
    loc = tuple(detail["loc"])
    cause = (detail.get("ctx") or {}).get("error")
    if isinstance(cause, SettingError):
        loc += cause.at
    key, field, table, inside = locate(loc)
    kind = detail["type"]
    if kind in TABLE_TYPES and table:
        return ConfigError(f"{where}: [{key}] must be a table")
    if kind == "extra_forbidden":
        return ConfigError(f"{where}: unknown setting {key}")
    return ConfigError(f"{where}: {key}: {problem(detail, field, inside, cause)}")


def problem(detail: ErrorDetails, field: FieldInfo | None, inside: bool, cause: Any) -> str:
    """What is wrong with the value, worded as the project's messages are."""
    kind, value = detail["type"], detail.get("input")
    if isinstance(cause, ValueError):
        return str(cause)
    if kind in KINDS:
        return "expected a list of strings" if inside else f"expected {KINDS[kind]}, got {kind_of(value)}"
    own = next((m for m in field.metadata if isinstance(m, Problem)), None) if field else None
    if own and (kind in BOUND_ERRORS or kind in ("finite_number", "literal_error", "too_short")):
        return own.text.format(value=value)
    if kind == "literal_error" and field is not None:
        return f"must be one of {', '.join(map(str, get_args(field.annotation)))}, got {value!r}"
    if kind == "finite_number":
        return "must be a finite amount"
    if kind in BOUND_ERRORS and field is not None and field.annotation is Decimal:  # an amount: every bound, and the amount
        return f"must be {' and '.join(BOUND_WORDS[name].format(v) for name, v in bounds_of(field).items())}, got {value}"
    if kind in BOUND_ERRORS:
        name = BOUND_ERRORS[kind]
        declared = bounds_of(field) if field else {}
        return "must be " + BOUND_WORDS[name].format(declared.get(name, (detail.get("ctx") or {}).get(name)))
    if kind == "too_short":
        return f"must list at least {detail.get('ctx', {}).get('min_length')}"
    message = detail["msg"]
    return message[:1].lower() + message[1:]


def locate(loc: tuple[int | str, ...]) -> tuple[str, FieldInfo | None, bool, bool]:
    """The file's key for a validation location ('policy.rules[2].name'), the setting's
    field, whether the key names a table, and whether the location points inside the
    setting's value (a list item, a table entry)."""
    model: type[Section] | None = Config
    key, field = "", None
    for part in loc:
        if model is not None and isinstance(part, str) and part in model.model_fields:
            field = model.model_fields[part]
            key = join_key(key, *file_path(part, field))
            model = section_of(field)
        elif isinstance(part, int) and field is not None and (entry := item_section_of(field)):
            key, model = f"{key}[{part + 1}]", entry
        else:
            return key, field, False, True
    return key, field, model is not None, False
