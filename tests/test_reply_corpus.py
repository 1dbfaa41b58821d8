"""Real-looking replies from many mail clients and languages: the new text is cut exactly,
and no command in a quoted part is ever read.

The corpus is `tests/fixtures/replies/`: each `<client>.eml` with the approver's new text in
`<client>.expected` (see bench/reply_corpus.py, which also measures other extractors on it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.reply_corpus import IDS, commands_of, load_cases, normalize, ours, request_text  # noqa: E402

CASES = load_cases()
SENT = request_text()
RESULTS: dict[str, bool] = {}
SUMMARY: list[str] = []  # printed at the end of the run by conftest.pytest_terminal_summary


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CASES) >= 120
    languages = {stem.split("-")[0] for stem, _, _ in CASES}
    assert {"en", "de", "fr", "es", "nl", "ru", "uk", "ja", "zh"} <= languages


@pytest.mark.parametrize(("stem", "raw", "expected"), CASES, ids=[c[0] for c in CASES])
def test_no_quoted_command_is_ever_read(stem: str, raw: bytes, expected: str) -> None:
    got = ours(raw, SENT)
    RESULTS[stem] = normalize(got) == normalize(expected)
    assert not commands_of(got) - commands_of(expected), f"{stem}: a command from the quoted part was read"


def test_at_least_95_percent_are_trimmed_exactly() -> None:
    exact = sum(normalize(ours(raw, SENT)) == normalize(expected) for _, raw, expected in CASES)
    share = 100 * exact / len(CASES)
    SUMMARY.append(f"reply corpus: {exact}/{len(CASES)} replies trimmed exactly to the new text ({share:.1f}%)")
    assert share >= 95, f"only {share:.1f}% of the corpus trimmed exactly"


def test_the_ids_of_the_corpus_request_are_the_ones_it_lists() -> None:
    for txn_id in IDS:
        assert txn_id in SENT
