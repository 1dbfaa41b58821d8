"""End-to-end checks of ag2's real OpenAI Chat Completions path against the loopback fake.

These pin down the behaviour the audit tool relies on (request shape, usage
accounting, error types, retries, timeouts, structured-output re-asks) for
``ag2[openai]`` 1.x, so an upgrade that changes any of it fails here first.

No async pytest plugin is needed: each async test is run with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import openai
import pydantic
import pytest
from ag2 import Agent, ResponseSchema
from ag2.config import OpenAIConfig
from pydantic import BaseModel, ConfigDict

from fake_openai import FakeOpenAI, Reply, json_reply, scripted


class ItemNote(BaseModel):
    id: str
    note: str


class Review(BaseModel):
    items: list[ItemNote]
    summary: str


class StrictItemNote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    note: str


class StrictReview(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[StrictItemNote]
    summary: str


GOOD = {"items": [{"id": "tx-1", "note": "duplicate posting"}], "summary": "1 issue"}
SYSTEM_PROMPT = "You audit ledger entries."


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def make_config(fake: FakeOpenAI, **overrides: Any) -> OpenAIConfig:
    kwargs: dict[str, Any] = {
        "model": "test-model",
        "base_url": fake.base_url,
        "api_key": "x",
        "temperature": 0,
        "max_retries": 0,
    }
    kwargs.update(overrides)
    return OpenAIConfig(**kwargs)


def make_agent(fake: FakeOpenAI, schema: Any = Review, **overrides: Any) -> Agent:
    return Agent("auditor", prompt=SYSTEM_PROMPT, config=make_config(fake, **overrides), response_schema=schema)


# --------------------------------------------------------------------------
# The happy path: typed result, request shape, usage
# --------------------------------------------------------------------------


@async_test
async def test_structured_reply_is_validated_and_request_shape_is_as_expected(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: json_reply(GOOD)
    agent = make_agent(fake)

    reply = await agent.ask("Review batch 7")

    assert reply.body == json.dumps(GOOD)
    result = await reply.content()
    assert isinstance(result, Review)
    assert result == Review(items=[ItemNote(id="tx-1", note="duplicate posting")], summary="1 issue")

    assert len(fake.requests) == 1
    body = fake.requests[0]
    # Only what was configured is sent: no tools key without tools, stream explicitly false.
    assert set(body) == {"model", "messages", "response_format", "temperature", "stream"}
    assert body["model"] == "test-model"
    assert body["temperature"] == 0
    assert body["stream"] is False
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "Review batch 7"},
    ]

    rf = body["response_format"]
    assert rf["type"] == "json_schema"
    js = rf["json_schema"]
    assert set(js) == {"name", "strict", "schema"}  # no "description": the model has no docstring
    assert js["name"] == "Review"  # the pydantic title
    assert js["strict"] is True
    schema = js["schema"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["items", "summary"]
    assert schema["properties"]["items"] == {"items": {"$ref": "#/$defs/ItemNote"}, "title": "Items", "type": "array"}
    item = schema["$defs"]["ItemNote"]
    assert item["additionalProperties"] is False
    assert item["required"] == ["id", "note"]
    assert "title" not in schema  # the title became the name

    headers = {k.lower(): v for k, v in fake.request_headers[0].items()}
    assert headers["authorization"] == "Bearer x"
    assert headers["x-stainless-retry-count"] == "0"


@async_test
async def test_schema_name_and_description_come_from_response_schema(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: json_reply(GOOD)
    schema = ResponseSchema(Review, name="ledger_review", description="Findings for one batch.")
    agent = make_agent(fake, schema=schema)

    result = await (await agent.ask("go")).content()

    assert isinstance(result, Review)
    js = fake.requests[0]["response_format"]["json_schema"]
    assert js["name"] == "ledger_review"
    assert js["description"] == "Findings for one batch."
    assert js["strict"] is True


@async_test
async def test_agent_without_prompt_still_sends_an_empty_system_message(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: json_reply(GOOD)
    agent = Agent("auditor", config=make_config(fake), response_schema=Review)

    await agent.ask("go")

    assert fake.requests[0]["messages"][0] == {"role": "system", "content": ""}


@async_test
async def test_temperature_is_omitted_unless_configured(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: json_reply(GOOD)
    agent = Agent(
        "auditor",
        config=OpenAIConfig(model="test-model", base_url=fake.base_url, api_key="x", max_retries=0),
        response_schema=Review,
    )

    await agent.ask("go")

    assert "temperature" not in fake.requests[0]


@async_test
async def test_usage_reports_server_token_counts(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: json_reply(GOOD, prompt_tokens=123, completion_tokens=45)
    reply = await make_agent(fake).ask("go")

    report = await reply.usage()

    assert report.total.prompt_tokens == 123
    assert report.total.completion_tokens == 45
    assert report.total.total_tokens == 168
    assert len(report.records) == 1
    record = report.records[0]
    assert (record.kind, record.model, record.provider, record.finish_reason) == (
        "model_call",
        "test-model",
        "openai",
        "stop",
    )
    assert report.by_model["test-model"].total_tokens == 168


@async_test
async def test_tool_call_round_trip(fake: FakeOpenAI) -> None:
    def lookup(account: str) -> str:
        """Look up an account balance."""
        return f"balance of {account}: 42"

    fake.responder = scripted(
        Reply(tool_calls=[{"name": "lookup", "arguments": {"account": "A1"}}], prompt_tokens=7, completion_tokens=3),
        json_reply({"items": [], "summary": "balance 42"}, prompt_tokens=20, completion_tokens=4),
    )
    agent = Agent("auditor", prompt=SYSTEM_PROMPT, config=make_config(fake), tools=[lookup], response_schema=Review)

    reply = await agent.ask("check A1")

    assert await reply.content() == Review(items=[], summary="balance 42")
    assert len(fake.requests) == 2
    assert fake.requests[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look up an account balance.",
                "parameters": {
                    "type": "object",
                    "properties": {"account": {"title": "Account", "type": "string"}},
                    "required": ["account"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    assistant, tool_result = fake.requests[1]["messages"][-2:]
    assert assistant["role"] == "assistant"
    call_id = assistant["tool_calls"][0]["id"]
    assert assistant["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"account": "A1"}'}
    assert tool_result == {"role": "tool", "tool_call_id": call_id, "content": "balance of A1: 42"}
    assert (await reply.usage()).total.total_tokens == 34  # both model calls of the turn


@async_test
async def test_empty_content_yields_none(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: Reply(content="")
    reply = await make_agent(fake).ask("go")

    assert reply.body is None
    assert await reply.content(retries=3) is None
    assert len(fake.requests) == 1  # no re-ask for an empty reply


# --------------------------------------------------------------------------
# HTTP errors and the openai client's own retries
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (500, openai.InternalServerError),
        (429, openai.RateLimitError),
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
    ],
)
@async_test
async def test_http_error_surfaces_as_openai_status_error(fake: FakeOpenAI, status: int, exc_type: type) -> None:
    fake.responder = lambda body: Reply(status=status, content="simulated failure")
    agent = make_agent(fake)

    with pytest.raises(exc_type) as info:
        await agent.ask("go")

    assert type(info.value) is exc_type  # raised unwrapped by ag2
    assert isinstance(info.value, openai.APIStatusError)
    assert info.value.status_code == status
    assert "simulated failure" in info.value.message
    assert len(fake.requests) == 1  # max_retries=0: no retry


@pytest.mark.parametrize(("status", "exc_type"), [(500, openai.InternalServerError), (429, openai.RateLimitError)])
@async_test
async def test_max_retries_2_sends_three_requests(fake: FakeOpenAI, status: int, exc_type: type) -> None:
    # retry-after-ms keeps the client's backoff short
    fake.responder = lambda body: Reply(status=status, headers={"retry-after-ms": "1"})
    agent = make_agent(fake, max_retries=2)

    with pytest.raises(exc_type):
        await agent.ask("go")

    assert len(fake.requests) == 3
    retry_counts = [h["x-stainless-retry-count"] for h in fake.request_headers]
    assert retry_counts == ["0", "1", "2"]
    assert fake.requests[0] == fake.requests[1] == fake.requests[2]


@async_test
async def test_default_backoff_without_retry_after(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: Reply(status=500)
    agent = make_agent(fake, max_retries=2)

    start = time.monotonic()
    with pytest.raises(openai.InternalServerError):
        await agent.ask("go")
    elapsed = time.monotonic() - start

    assert len(fake.requests) == 3
    assert 1.0 <= elapsed < 5.0  # 0.5s then 1.0s, each minus up to 25% jitter


@async_test
async def test_retry_recovers_after_transient_error(fake: FakeOpenAI) -> None:
    fake.responder = scripted(Reply(status=429, headers={"retry-after-ms": "1"}), json_reply(GOOD))
    reply = await make_agent(fake, max_retries=2).ask("go")

    assert isinstance(await reply.content(), Review)
    assert len(fake.requests) == 2


@async_test
async def test_client_error_is_not_retried(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: Reply(status=400)
    with pytest.raises(openai.BadRequestError):
        await make_agent(fake, max_retries=2).ask("go")
    assert len(fake.requests) == 1


# --------------------------------------------------------------------------
# Structured output that fails validation
# --------------------------------------------------------------------------


@async_test
async def test_invalid_output_is_reasked_then_raises_validation_error(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: json_reply({"items": []})  # "summary" missing, every time
    reply = await make_agent(fake).ask("go")

    with pytest.raises(pydantic.ValidationError) as info:
        await reply.content(retries=1)

    assert info.value.errors()[0]["type"] == "missing"
    assert info.value.errors()[0]["loc"] == ("summary",)
    assert len(fake.requests) == 2

    # The re-ask continues the same conversation with the same response_format.
    second = fake.requests[1]
    assert second["response_format"] == fake.requests[0]["response_format"]
    messages = second["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == '{"items": []}'
    reask = messages[3]["content"]
    assert reask.startswith("Your previous response could not be validated by schema.")
    assert "== Schema ==" in reask and "== Validation Error ==" in reask
    assert '"loc":["summary"]' in reask


@async_test
async def test_retries_zero_raises_without_reasking(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: Reply(content="not json at all")
    reply = await make_agent(fake).ask("go")

    with pytest.raises(pydantic.ValidationError) as info:
        await reply.content()  # retries defaults to 0

    assert info.value.errors()[0]["type"] == "json_invalid"
    assert len(fake.requests) == 1


@async_test
async def test_reask_can_recover(fake: FakeOpenAI) -> None:
    fake.responder = scripted(
        json_reply({"items": []}, prompt_tokens=3, completion_tokens=2),
        json_reply(GOOD, prompt_tokens=30, completion_tokens=20),
    )
    reply = await make_agent(fake).ask("go")

    result = await reply.content(retries=1)

    assert result == Review.model_validate(GOOD)
    assert len(fake.requests) == 2
    assert reply.body == '{"items": []}'  # the original reply object still holds the first answer
    total = (await reply.usage()).total  # usage covers the whole stream, re-ask included
    assert (total.prompt_tokens, total.completion_tokens) == (33, 22)


@async_test
async def test_extra_property_is_ignored_by_a_default_pydantic_model(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: json_reply({**GOOD, "unexpected": 1})
    reply = await make_agent(fake).ask("go")

    assert await reply.content(retries=1) == Review.model_validate(GOOD)
    assert len(fake.requests) == 1  # accepted although the sent schema says additionalProperties: false


@async_test
async def test_extra_property_fails_a_forbid_model_and_is_reasked(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: json_reply({**GOOD, "unexpected": 1})
    reply = await make_agent(fake, schema=StrictReview).ask("go")

    with pytest.raises(pydantic.ValidationError) as info:
        await reply.content(retries=1)

    assert info.value.errors()[0]["type"] == "extra_forbidden"
    assert len(fake.requests) == 2


# --------------------------------------------------------------------------
# Timeouts
# --------------------------------------------------------------------------


@async_test
async def test_timeout_raises_api_timeout_error_quickly(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: json_reply(GOOD, delay=5.0)
    agent = make_agent(fake, timeout=0.3)

    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await agent.ask("go")
    elapsed = time.monotonic() - start

    assert 0.25 <= elapsed < 2.0
    assert len(fake.requests) == 1
    assert fake.request_headers[0]["x-stainless-read-timeout"] == "0.3"


@async_test
async def test_timeout_is_retried_by_the_client(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: json_reply(GOOD, delay=5.0)
    agent = make_agent(fake, timeout=0.2, max_retries=1)

    with pytest.raises(openai.APITimeoutError):
        await agent.ask("go")

    assert len(fake.requests) == 2


@async_test
async def test_delay_shorter_than_timeout_succeeds(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: json_reply(GOOD, delay=0.2)
    reply = await make_agent(fake, timeout=3.0).ask("go")
    assert isinstance(await reply.content(), Review)


# --------------------------------------------------------------------------
# The fake itself
# --------------------------------------------------------------------------


def _post(url: str, payload: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_fake_answers_with_a_chat_completion_object(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: Reply(
        content="hi", tool_calls=[{"name": "f", "arguments": "{}"}], prompt_tokens=2, completion_tokens=3
    )
    for url in (f"{fake.base_url}/chat/completions", f"{fake.root_url}/chat/completions"):
        status, data = _post(url, {"model": "m", "messages": []})
        assert status == 200
        assert data["object"] == "chat.completion"
        assert data["model"] == "m"
        assert isinstance(data["created"], int) and data["id"].startswith("chatcmpl-")
        choice = data["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"]["role"] == "assistant"
        assert choice["message"]["content"] == "hi"
        call = choice["message"]["tool_calls"][0]
        assert call["type"] == "function" and call["function"] == {"name": "f", "arguments": "{}"}
        assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert len(fake.requests) == 2


def test_fake_rejects_streaming_and_unknown_paths(fake: FakeOpenAI) -> None:
    status, data = _post(f"{fake.base_url}/chat/completions", {"model": "m", "messages": [], "stream": True})
    assert status == 400
    assert data["error"]["param"] == "stream"
    assert len(fake.requests) == 1  # recorded even though rejected

    status, data = _post(f"{fake.base_url}/responses", {"model": "m"})
    assert status == 404
    assert set(data["error"]) == {"message", "type", "param", "code"}


def test_fake_error_body_is_openai_style(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: Reply(status=429, content="slow down")
    status, data = _post(f"{fake.base_url}/chat/completions", {"model": "m", "messages": []})
    assert status == 429
    assert data == {"error": {"message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}


def test_fake_responder_exception_becomes_500(fake: FakeOpenAI) -> None:
    def broken(body: dict[str, Any]) -> Reply:
        raise KeyError("boom")

    fake.responder = broken
    status, data = _post(f"{fake.base_url}/chat/completions", {"model": "m", "messages": []})
    assert status == 500
    assert "KeyError" in data["error"]["message"]
    assert len(fake.errors) == 1


def test_stop_does_not_wait_for_a_delayed_reply() -> None:
    fake = FakeOpenAI(lambda body: Reply(content="late", delay=30.0)).start()
    url = f"{fake.base_url}/chat/completions"
    request = urllib.request.Request(url, data=b'{"model": "m"}', headers={"Content-Type": "application/json"})
    with pytest.raises(OSError):
        urllib.request.urlopen(request, timeout=0.2)
    start = time.monotonic()
    fake.stop()
    assert time.monotonic() - start < 3.0
