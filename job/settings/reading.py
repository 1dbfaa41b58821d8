"""Finding and reading the config file into validated settings.

Precedence: `--config PATH`, else `$AUDIT_CONFIG`, else `./audit.toml`, else the built-in
defaults. Relative paths in a config file resolve against that file's folder. Secrets are
never stored here: the config names the environment variable that holds them.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from job.errors import ConfigError
from job.settings.layout import arrange
from job.settings.messages import config_error
from job.settings.schema import Config

__all__ = ["find_config_path", "load_config", "build_config"]


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
    changes: dict[str, Any] = {"path": path.resolve() if path else None}
    if db is not None:
        changes["db"] = Path(db).resolve()
    return config.model_copy(update=changes)


def build_config(data: dict[str, Any], *, base: Path, where: str) -> Config:
    """Validate a parsed TOML document into a Config (pure: no files are read)."""
    try:
        return Config.model_validate(arrange(Config, data, "", where), context={"base": base})
    except ValidationError as exc:
        raise config_error(exc, where) from None
