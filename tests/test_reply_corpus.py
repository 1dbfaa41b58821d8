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


# --- through the real poll: a sample of the corpus answers a live request ---------------

SAMPLE = ["de-outlook-desktop-top", "en-thunderbird-flowed-bottom", "en-thunderbird-flowed-delsp-top", "ru-yandex-web-top", "ko-naver-web-top",
          "ja-iphone-top", "zh-qqmail-nbsp-planted", "en-neomutt-pipe-quote", "mixed-gmail-inline-cs"]


@pytest.fixture(scope="module")
def corpus_site(tmp_path_factory):
    import shutil

    from helpers import EXAMPLES, EXAMPLE_LEDGER, audit, write_config

    def make(name: str):
        site = tmp_path_factory.mktemp(name)
        shutil.copy(EXAMPLES / "vendors.csv", site / "vendors.csv")
        write_config(site / "audit.toml", {"db": "audit.db"}, policy={"known_vendors_file": "vendors.csv"},
                     approvers={"addresses": ["controller@example.com"]})
        assert audit("run", "--ledger", str(EXAMPLE_LEDGER), cwd=site).returncode == 0
        return site
    return make


@pytest.mark.parametrize("stem", SAMPLE)
def test_a_corpus_reply_decides_through_a_real_poll_what_its_new_text_says(corpus_site, stem: str) -> None:
    import re
    import sqlite3

    from helpers import audit, drop_reply, maildir_messages
    from job.approval.decide import Item, plan_decisions
    from job.approval.reply import parse_commands

    site = corpus_site(stem)
    [request] = maildir_messages(site / "var" / "mail" / "outbox")
    token = re.search(r"\+([a-z2-7]{26})@", request["Reply-To"]).group(1)
    corpus_dir = Path(__file__).parent / "fixtures" / "replies"
    raw = (corpus_dir / f"{stem}.eml").read_bytes().replace(b"ryxwhubddvyyuln5pl6flh5u3e", token.encode())
    drop_reply(site / "var" / "mail", raw)
    assert audit("poll", "--once", cwd=site).returncode == 0

    expected = (corpus_dir / f"{stem}.expected").read_text("utf-8")
    items = [Item(n, n, txn, "pending") for n, txn in enumerate(IDS, 1)]
    parsed = parse_commands(expected, row_count=len(IDS), known_ids=IDS)
    plan = plan_decisions(parsed.commands, items, unclear=parsed.unclear)
    db = sqlite3.connect(site / "audit.db")
    recorded = dict(db.execute("SELECT t.txn_id, d.decision FROM decisions d JOIN transactions t ON t.id = d.transaction_id"))
    assert recorded == {d.item.txn_id: d.decision for d in plan.decisions}


def test_every_corpus_sender_is_recognised() -> None:
    # real clients write From headers the standard does not quite allow (QQ Mail, Naver and
    # ukr.net put an encoded word inside a quoted display name); the approver is still known
    from job.mail.authenticate import identify_sender

    problems = {stem: identify_sender(raw).problem for stem, raw, _ in CASES if identify_sender(raw).problem}
    assert problems == {}
    assert {identify_sender(raw).address for _, raw, _ in CASES} == {"controller@example.com"}
