"""Which vendors are known: the policy's list and vendors file, and every vendor an earlier
run recorded. A vendor that is none of these is unfamiliar (`screen.UNFAMILIAR_VENDOR`).
Vendors are compared by their key (`screen.normalize_vendor`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from job.config import Config
from job.errors import ConfigError
from job.screening.screen import normalize_vendor
from job.store.new_rows import find_existing

__all__ = ["load_known_vendors", "recorded_vendors"]


def load_known_vendors(config: Config) -> set[str]:
    """Vendor keys from the config list and the vendors file (one name per line or a CSV)."""
    keys = {normalize_vendor(v) for v in config.policy.known_vendors if v.strip()}
    path = config.policy.known_vendors_file
    if path is None:
        return keys
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the known-vendors file: {exc}") from exc
    rows = list(csv.reader(io.StringIO(text)))
    column = 0
    if rows and any(h.strip().lower() in ("vendor", "name", "vendor_name") for h in rows[0]):
        column = next(i for i, h in enumerate(rows[0]) if h.strip().lower() in ("vendor", "name", "vendor_name"))
        rows = rows[1:]
    for row in rows:
        if len(row) > column and row[column].strip():
            keys.add(normalize_vendor(row[column]))
    return keys


def recorded_vendors(conn, keys: Iterable[str]) -> set[str]:
    """Which of the vendor keys an earlier run recorded."""
    return find_existing(conn, "SELECT vendor_key FROM vendors WHERE vendor_key IN ({marks})", sorted(keys))
