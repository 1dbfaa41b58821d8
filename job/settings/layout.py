"""Where each setting lives in the file: tables, keys, and the shape a file must have.

`arrange` checks a parsed TOML document against the schema's tables before any value is
read: a table must be a table, no key may be unknown (nor one the program sets), and a
setting `InFile` places in a table of its own is fetched from there.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

from pydantic.fields import FieldInfo

from job.errors import ConfigError
from job.settings.kinds import InFile
from job.settings.schema import Section

__all__ = ["file_fields", "file_path", "section_of", "item_section_of", "join_key", "arrange"]


def file_fields(model: type[Section]) -> list[tuple[str, FieldInfo]]:
    """The model's fields the file may set, in order (those the program sets are left out)."""
    return [(name, field) for name, field in model.model_fields.items() if not field.exclude]


def file_path(name: str, field: FieldInfo) -> tuple[str, ...]:
    """The keys that lead to a setting within its table: (name,), or the table and key `InFile` gives."""
    place = next((m for m in field.metadata if isinstance(m, InFile)), None)
    return place.path if place else (name,)


def section_of(field: FieldInfo) -> type[Section] | None:
    """The table class a field holds, if it holds one."""
    kind = field.annotation
    return kind if isinstance(kind, type) and issubclass(kind, Section) else None


def item_section_of(field: FieldInfo) -> type[Section] | None:
    """The table class of each entry, for a list of tables such as [[policy.rules]]."""
    args = get_args(field.annotation)
    if get_origin(field.annotation) is tuple and args and isinstance(args[0], type) and issubclass(args[0], Section):
        return args[0]
    return None


def join_key(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def arrange(model: type[Section], data: Any, key: str, where: str) -> dict[str, Any]:
    """One table of the file (`key`, '' at the top) as the model's fields, its shape checked."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    rest = dict(data)
    moved: dict[str, dict[str, Any]] = {}  # tables that hold settings `InFile` places there
    found: dict[str, Any] = {}
    for name, field in file_fields(model):
        path = file_path(name, field)
        if len(path) == 2:
            table, setting = path
            if table not in moved:
                moved[table] = rest.pop(table, {})
                if not isinstance(moved[table], dict):
                    raise ConfigError(f"{where}: [{join_key(key, table)}] must be a table")
                moved[table] = dict(moved[table])
            if setting in moved[table]:
                found[name] = moved[table].pop(setting)
            continue
        if section := section_of(field):  # every table is read, so its defaults are read as a file's
            found[name] = arrange(section, rest.pop(name, {}), join_key(key, name), where)
            continue
        if name not in rest:
            continue
        value = rest.pop(name)
        if (entry := item_section_of(field)) and isinstance(value, list):
            value = [arrange(entry, v, f"{join_key(key, name)}[{n}]", where) for n, v in enumerate(value, 1)]
        found[name] = value
    unknown = sorted([join_key(key, k) for k in rest] + [join_key(key, t, k) for t, left in moved.items() for k in left])
    if unknown:
        raise ConfigError(f"{where}: unknown setting {', '.join(unknown)}")
    return found
