"""The kinds of value a setting holds, each read from the form the TOML file writes it in.

A value read from a file is validated with a context (`{"base": folder}`), a value the
program passes in without one: paths then resolve against the file's folder, and a duration
or amount must be written as the file writes it. Problems are raised as `SettingError` with
the user's wording; `messages` turns them, and pydantic's own, into one line naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, GetCoreSchemaHandler, Strict, ValidationInfo
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema, core_schema

from job.settings.durations import format_duration, parse_duration

__all__ = [
    "SettingError",
    "expected",
    "kind_of",
    "BOUND_WORDS",
    "bounds_of",
    "Problem",
    "InFile",
    "FileForm",
    "LOWERED",
    "Amount",
    "FilePath",
    "RequiredPath",
    "Duration",
    "RequiredDuration",
    "Strings",
    "LowerStrings",
    "Addresses",
    "PlainAddress",
    "Port",
    "Seconds",
]


class SettingError(ValueError):
    """A bad value in the user's words; `at` continues its location (e.g. `(1, "name")`)."""

    def __init__(self, problem: str, at: tuple[int | str, ...] = ()) -> None:
        super().__init__(problem)
        self.at = at


def kind_of(value: Any) -> str:
    """What a TOML value is, as a problem names it: 'a boolean', 'str', 'int', ..."""
    return "a boolean" if isinstance(value, bool) else type(value).__name__


def expected(kinds: str, value: Any) -> SettingError:
    return SettingError(f"expected {kinds}, got {kind_of(value)}")


BOUND_WORDS = {"gt": "above {}", "ge": "at least {}", "lt": "below {}", "le": "at most {}"}


def bounds_of(field: FieldInfo) -> dict[str, Any]:
    """A setting's declared bounds, e.g. {"ge": 1, "le": 20}, in the order of BOUND_WORDS."""
    found = {name: getattr(m, name) for m in field.metadata for name in BOUND_WORDS if hasattr(m, name)}
    return {name: found[name] for name in BOUND_WORDS if name in found}


@dataclass(frozen=True, slots=True)
class Problem:
    """How a value outside the setting's bounds or choices is told ({value} is the value given)."""

    text: str


@dataclass(frozen=True, slots=True)
class InFile:
    """Where a setting lives in the file when not under its own name, e.g. ("approvers", "addresses")."""

    path: tuple[str, str]


@dataclass(frozen=True, slots=True)
class FileForm:
    """A value the file writes in another form: `read` turns the file's form into the value
    (before pydantic checks its type and bounds), `write` turns a value back for `audit init`."""

    read: Callable[[Any, ValidationInfo], Any]
    write: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.with_info_before_validator_function(self.read, handler(source))


def from_file(info: ValidationInfo) -> bool:
    return info.context is not None


def read_lowered(value: Any) -> Any:
    if not isinstance(value, str):
        raise expected("a string", value)
    return value.lower()


LOWERED = BeforeValidator(read_lowered)  # a choice, in any case


def read_amount(value: Any, info: ValidationInfo) -> Any:
    """A decimal written as a string ("10000.00") or an integer; never a float."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise expected("a string or an integer", value)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise SettingError(f"not a decimal amount: {value!r}") from None


Amount = Annotated[Decimal, FileForm(read_amount, str)]


def read_path(value: Any, info: ValidationInfo) -> Any:
    """'' -> None; in a file, a path (or a default) resolves against the file's folder."""
    base = info.context["base"] if info.context else None
    if isinstance(value, str):
        value = Path(value).expanduser() if value else None
    elif base is not None and not isinstance(value, Path):
        raise expected("a string", value)
    if base is None or not isinstance(value, Path):
        return value
    return Path(os.path.normpath(value if value.is_absolute() else base / value))


def write_path(value: Path | None) -> str:
    return "" if value is None else value.as_posix()


FilePath = Annotated[Path | None, FileForm(read_path, write_path)]
# A path that must be given; its default resolves against the file's folder too. Its model refuses '' in its own words.
RequiredPath = Annotated[Path, FileForm(read_path, write_path), Field(validate_default=True)]


def read_duration(value: Any, info: ValidationInfo) -> Any:
    """'24h' -> seconds, '' or 'off' -> None; a file writes durations as strings only."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise SettingError(str(exc)) from None
    if from_file(info):
        raise expected("a string", value)
    return value


def write_duration(seconds: int | None) -> str:
    return "" if seconds is None else format_duration(seconds)


Duration = Annotated[int | None, FileForm(read_duration, write_duration)]
RequiredDuration = Annotated[int, FileForm(read_duration, write_duration)]  # its model refuses 'off' in its own words

Strings = Annotated[tuple[str, ...], Strict(False)]  # a TOML list of strings
LowerStrings = Annotated[Strings, AfterValidator(lambda values: tuple(v.lower() for v in values))]


def normalize_addresses(given: tuple[str, ...]) -> tuple[str, ...]:
    """Plain addresses, normalized (`authenticate.normalize_address`), each once, in order."""
    from job.mail.authenticate import normalize_address

    found = []
    for address in given:
        value = normalize_address(address)
        if value is None:
            raise SettingError(f"not a plain address: {address.strip()!r}")
        found.append(value)
    return tuple(dict.fromkeys(found))


Addresses = Annotated[Strings, AfterValidator(normalize_addresses)]


def check_plain_address(value: str) -> str:
    if value.count("@") != 1 or any(c in value for c in "<>,; \r\n\"'"):
        raise SettingError(f"not a plain address: {value!r}")
    return value


PlainAddress = Annotated[str, AfterValidator(check_plain_address)]  # kept as written (From:, Reply-To:)
Port = Annotated[int, Field(ge=1, le=65535), Problem("not a port number: {value}")]
Seconds = Annotated[float, Field(gt=0)]  # an integer or a number of seconds
