"""The commented audit.toml that `audit init` writes, made from the schema.

Every table in the schema's order, headed by its class's doc; every setting with its default
(in the form the file writes it) and its description, choices and bounds as a comment.
Lists of tables and free tables ([[policy.rules]], [ledger.columns]) are shown as commented
examples. Parsing the text gives exactly the defaults (a test holds it to that).
"""

from __future__ import annotations

import inspect
import json
import re
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic.fields import FieldInfo

from job.settings.kinds import BOUND_WORDS, FileForm, bounds_of
from job.settings.layout import file_fields, file_path, item_section_of, join_key, section_of
from job.settings.schema import Config, Section

__all__ = ["default_config_text"]

HEADER = (
    "# audit.toml: settings for the nightly ledger audit.",
    "# Every setting is shown with its default. Relative paths resolve against this file's folder.",
    "# Secrets never go here: name the environment variable that holds them (password_env, api_key_env).",
)
COMMENT_AT = 37  # the column comments start in
COMMENT_WIDTH = 80
WORD = re.compile(r"[a-z_]+")


def default_config_text() -> str:
    lines = [*HEADER, ""]
    _Writer(lines).table(Config, "", Config())
    return "\n".join(lines) + "\n"


class _Writer:
    """Appends the lines of the file; a comment already written for a key is not repeated."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.said: set[tuple[str, str]] = set()

    def table(self, model: type[Section], key: str, values: Section) -> None:
        if key:
            self.lines.append("")
            self.lines.extend(commented(f"[{key}]", doc_of(model)))
        later = []
        for name, field in file_fields(model):
            value = getattr(values, name)
            if section_of(field) or item_section_of(field) or isinstance(value, dict) or len(file_path(name, field)) == 2:
                later.append((name, field))  # tables come after the table's own keys
            else:
                self.setting(name, field, value)
        for name, field in later:
            if isinstance(getattr(values, name), dict):
                self.free_table(join_key(key, name), field)
            elif section := section_of(field):
                self.table(section, join_key(key, name), getattr(values, name))
            elif entry := item_section_of(field):
                self.example_tables(entry, join_key(key, name), field)
            else:
                table, setting = file_path(name, field)
                self.lines.append("")
                self.lines.append(f"[{join_key(key, table)}]")
                self.setting(setting, field, getattr(values, name))

    def setting(self, name: str, field: FieldInfo, value: Any, prefix: str = "") -> None:
        form = next((m for m in field.metadata if isinstance(m, FileForm)), None)
        text = f"{prefix}{name} = {toml_value(form.write(value) if form else value)}"
        self.lines.extend(commented(text, self.once(name, describe(field))))

    def free_table(self, key: str, field: FieldInfo) -> None:
        """A table of the user's own keys, e.g. [ledger.columns], as a commented example."""
        self.lines.extend(commented(f"# [{key}]", self.once(key, describe(field))))
        for example in field.examples or []:
            self.lines.extend(f"# {k} = {toml_value(v)}" for k, v in example.items())

    def example_tables(self, entry: type[Section], key: str, field: FieldInfo) -> None:
        """A list of tables, e.g. [[policy.rules]]: what it is, then a commented example."""
        self.lines.append("")
        self.lines.extend("# " + line for line in textwrap.wrap(describe(field), COMMENT_AT + COMMENT_WIDTH))
        for example in field.examples or []:
            self.lines.extend(commented(f"# [[{key}]]", doc_of(entry)))
            for name, setting in file_fields(entry):
                if name in example:
                    self.setting(name, setting, example[name], prefix="# ")

    def once(self, key: str, comment: str) -> str:
        if (key, comment) in self.said:
            return ""
        self.said.add((key, comment))
        return comment


def doc_of(model: type[Section]) -> str:
    """The first paragraph of a table class's docstring, on one line."""
    return " ".join(inspect.cleandoc(model.__doc__ or "").split("\n\n")[0].split())


def describe(field: FieldInfo) -> str:
    """A setting's comment: its choices (unless the description tells each), its description, its bounds."""
    text = field.description or ""
    choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else ()
    if choices and not set(choices) <= set(WORD.findall(text)):
        text = f"{' | '.join(choices)}: {text}"
    limits = bounds_of(field)
    if limits.keys() == {"ge", "le"}:
        text += f" ({limits['ge']} to {limits['le']})"
    elif limits:
        text += f" ({', '.join(BOUND_WORDS[name].format(value) for name, value in limits.items())})"
    return text


def commented(text: str, comment: str) -> list[str]:
    """`text` with `comment` beside it from column COMMENT_AT, wrapped on the lines below."""
    if not comment:
        return [text]
    parts = textwrap.wrap(comment, COMMENT_WIDTH)
    first = text.ljust(COMMENT_AT) if len(text) < COMMENT_AT else text + "  "
    return [f"{first}# {parts[0]}"] + [f"{'':{COMMENT_AT}}# {part}" for part in parts[1:]]


def toml_value(value: Any) -> str:
    """A value as TOML writes it (an amount as a string: never a float)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal | Path):
        return toml_value(str(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
