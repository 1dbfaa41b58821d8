"""Model cost follows what is flagged: batches, concurrency, retries and recorded usage.

Against the loopback Chat Completions server (tests/fake_openai.py) with the real openai
client, as in test_llm_path.py.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI, Reply, json_reply
from helpers import audit, write_config

ENV = {"TEST_MODEL_KEY": "sk-test"}
FLAGGED = 10
BATCH = 4


def ledger(path: Path, clean: int) -> Path:
    """FLAGGED rows with a vague memo, then `clean` ordinary rows, all to a known vendor."""
    lines = ["id,date,amount,currency,vendor,memo,account"]
    lines += [f"F-{n},2026-11-24,{100 + n}.00,USD,Acme Office Supply,Misc,6100" for n in range(FLAGGED)]
    lines += [f"C-{n},2026-11-24,{n // 100 + 1}.{n % 100:02d},USD,Acme Office Supply,Toner order {n},6100" for n in range(clean)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def items_of(request: dict) -> list[str]:
    user = [m for m in request["messages"] if m["role"] == "user"][0]["content"]
    return [i["id"] for i in json.loads(user[user.index("{"):])["items"]]


def is_review(request: dict) -> bool:
    return request.get("response_format", {}).get("json_schema", {}).get("name") == "BatchReview"


def answer(request: dict) -> Reply:
    return json_reply({"items": [{"id": i, "note": "checked", "concern": ""} for i in items_of(request)], "summary": "ok"},
                      prompt_tokens=50, completion_tokens=7)


def configure(folder: Path, fake: FakeOpenAI, **llm) -> None:
    write_config(folder / "audit.toml", {"db": "audit.db"}, policy={"known_vendors": ["Acme Office Supply"]},
                 llm={"model": "gpt-test", "base_url": fake.base_url, "api_key_env": "TEST_MODEL_KEY", "batch_size": BATCH,
                      "timeout": 10, **llm})


def usage(folder: Path) -> tuple[int, int, int]:
    return sqlite3.connect(folder / "audit.db").execute("SELECT model_calls, prompt_tokens, completion_tokens FROM runs").fetchone()


@pytest.mark.parametrize("clean", [5, 3000])
def test_calls_are_ceil_flagged_over_batch_whatever_the_clean_rows(tmp_path: Path, clean: int) -> None:
    with FakeOpenAI(answer) as fake:
        configure(tmp_path, fake, max_retries=0)
        result = audit("run", "--ledger", str(ledger(tmp_path / "ledger.csv", clean)), cwd=tmp_path, env=ENV)
    assert result.returncode == 0, result.stderr
    calls = math.ceil(FLAGGED / BATCH)
    assert len(fake.requests) == calls and all(is_review(r) for r in fake.requests)
    sent = sorted(i for r in fake.requests for i in items_of(r))
    assert sent == sorted(f"F-{n}" for n in range(FLAGGED))  # only flagged items, each once
    assert not any("C-" in json.dumps(r) for r in fake.requests)
    assert usage(tmp_path) == (calls, 50 * calls, 7 * calls)
    assert f"model usage: {calls} call(s), {57 * calls} tokens ({50 * calls} prompt, {7 * calls} completion)" in result.stdout
    notes = sqlite3.connect(tmp_path / "audit.db").execute("SELECT agent_note, COUNT(*) FROM transactions GROUP BY 1").fetchall()
    assert sorted(notes) == [("", clean), ("checked", FLAGGED)]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_retried_with_backoff(tmp_path: Path, status: int) -> None:
    failed: set[str] = set()
    lock = threading.Lock()

    def flaky(request: dict) -> Reply:
        first = items_of(request)[0]
        with lock:
            if first not in failed:  # every batch fails once, then succeeds
                failed.add(first)
                return Reply(content="slow down", status=status, headers={"retry-after-ms": "10"})
        return answer(request)

    with FakeOpenAI(flaky) as fake:
        configure(tmp_path, fake, max_retries=2)
        result = audit("run", "--ledger", str(ledger(tmp_path / "ledger.csv", 20)), cwd=tmp_path, env=ENV)
    assert result.returncode == 0, result.stderr
    calls = math.ceil(FLAGGED / BATCH)
    assert len(fake.requests) == 2 * calls  # one failure and one retry per batch
    assert usage(tmp_path) == (calls, 50 * calls, 7 * calls)  # usage counts answered calls
    assert "reviewer output refused" not in result.stderr


def test_retries_give_up_after_max_retries_and_the_request_still_goes_out(tmp_path: Path) -> None:
    with FakeOpenAI(lambda request: Reply(content="busy", status=429, headers={"retry-after-ms": "1"})) as fake:
        configure(tmp_path, fake, max_retries=2, batch_size=100)
        result = audit("run", "--ledger", str(ledger(tmp_path / "ledger.csv", 3)), cwd=tmp_path, env=ENV)
    assert result.returncode == 0, result.stderr
    assert len(fake.requests) == 3  # the call and two retries
    assert "the model call failed: RateLimitError" in result.stderr
    assert (tmp_path / "var" / "mail" / "outbox" / "new").is_dir()


@pytest.mark.parametrize("concurrency", [1, 3])
def test_at_most_concurrency_calls_are_in_flight(tmp_path: Path, concurrency: int) -> None:
    in_flight = peak = 0
    lock = threading.Lock()

    def slow(request: dict) -> Reply:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.3)
        with lock:
            in_flight -= 1
        return answer(request)

    with FakeOpenAI(slow) as fake:
        configure(tmp_path, fake, max_retries=0, batch_size=2, concurrency=concurrency)
        result = audit("run", "--ledger", str(ledger(tmp_path / "ledger.csv", 0)), cwd=tmp_path, env=ENV)
    assert result.returncode == 0, result.stderr
    assert len(fake.requests) == FLAGGED // 2
    assert peak == concurrency


def test_usage_shows_in_status(tmp_path: Path) -> None:
    with FakeOpenAI(answer) as fake:
        configure(tmp_path, fake, max_retries=0)
        assert audit("run", "--ledger", str(ledger(tmp_path / "ledger.csv", 0)), cwd=tmp_path, env=ENV).returncode == 0
    info = json.loads(audit("status", "--json", cwd=tmp_path).stdout)
    assert (info["last_run"]["model_calls"], info["last_run"]["prompt_tokens"], info["last_run"]["completion_tokens"]) == (3, 150, 21)
    assert "model usage: 3 call(s), 171 tokens (150 prompt, 21 completion)" in audit("status", cwd=tmp_path).stdout


@pytest.mark.parametrize("flagged", [3, 400])
def test_the_offline_reviewer_takes_one_turn_however_many_items(tmp_path: Path, flagged: int) -> None:
    lines = ["id,date,amount,currency,vendor,memo,account"]
    lines += [f"F-{n},2026-11-24,{100 + n}.00,USD,Acme Office Supply,{'Misc' if n % 2 else ''},6100" for n in range(flagged)]
    (tmp_path / "ledger.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_config(tmp_path / "audit.toml", {"db": "audit.db"}, policy={"known_vendors": ["Acme Office Supply"]})
    result = audit("run", "--ledger", str(tmp_path / "ledger.csv"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    db = sqlite3.connect(tmp_path / "audit.db")
    reviews = [b for (b,) in db.execute("SELECT body FROM transcript") if "Each entry stands for" in b]
    assert len(reviews) == 1  # one agent turn: one entry per group of items with the same findings
    notes = dict(db.execute("SELECT agent_note, COUNT(*) FROM transactions GROUP BY agent_note"))
    assert notes == {"The memo does not say what was bought: ask for the invoice or supporting documents.": flagged}
    summary = db.execute("SELECT review_summary FROM runs").fetchone()[0]
    assert summary == f"{flagged} flagged items reviewed (vague memo: {flagged})."
