"""Durations as the config writes them: '90m', '24h', '7d', '2w' <-> seconds."""

from __future__ import annotations

import re

__all__ = ["DURATION_UNITS", "OFF_WORDS", "parse_duration", "format_duration"]

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
OFF_WORDS = ("", "off", "never")  # a step given one of these is turned off


def parse_duration(text: str) -> int | None:
    """'90m', '24h', '7d', '2w' -> seconds; '' or 'off' -> None. Raises ValueError."""
    text = text.strip().lower()
    if text in OFF_WORDS:
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
