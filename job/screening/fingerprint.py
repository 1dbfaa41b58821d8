"""A run's policy fingerprint: the settings that decided what was flagged, and their hash.

Every `[policy]` setting (threshold, vague terms, the rules and their parameters, the
approval mode, the policy's own rules) as it was read, with the known vendors as the
count and SHA-256 of the keys loaded from the list and the file, and the file's own path and
SHA-256. The run records the description in its `run` event and the hash in `runs`, and its
seal covers both, so a report can say under which policy each item was flagged, and a
policy changed later cannot be passed off as the one that ran.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["describe_policy", "policy_sha256"]


def describe_policy(policy: Any, known_vendor_keys: Iterable[str]) -> dict:
    """The policy as plain JSON values; the known vendors by count and hash, not by name."""
    described = _plain(policy.model_dump())  # every setting, `key` (where a rule sits) included
    keys = sorted(set(known_vendor_keys))
    described["known_vendors"] = {"keys": len(keys), "sha256": hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()}
    path = policy.known_vendors_file
    described["known_vendors_file"] = None if path is None else {"path": str(path), "sha256": _file_sha256(Path(path))}
    for rule in described.get("rules", []):
        rule.pop("key", None)  # where the rule sits in the file, not what it decides
    return described


def policy_sha256(described: dict) -> str:
    """The fingerprint: SHA-256 of the description as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(described, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value
