"""A loopback fake of the OpenAI Chat Completions API for tests.

Runs a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (ephemeral port) in a
background thread and answers ``POST /v1/chat/completions`` (and
``POST /chat/completions``, for a ``base_url`` given without ``/v1``) with
valid ``chat.completion`` objects, so the real ``openai`` client — and ag2's
``OpenAIConfig`` on top of it — can be exercised end to end without network.

    with FakeOpenAI(lambda body: json_reply({"ok": True})) as fake:
        cfg = OpenAIConfig(model="test-model", base_url=fake.base_url, api_key="x", max_retries=0)
        ...
        assert fake.requests[0]["model"] == "test-model"

Only non-streaming requests are supported: a body with ``"stream": true`` is
answered with a 400 (ag2's ``OpenAIConfig`` sends ``stream: false`` unless it
is built with ``streaming=True``).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ("FakeOpenAI", "Reply", "json_reply", "scripted")

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_denied", None),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout", None),
    409: ("conflict", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Reply:
    """What the fake answers to one request.

    ``status`` other than 200 turns the answer into an OpenAI-style error body
    (``{"error": {"message", "type", "param", "code"}}``); ``content`` is then
    used as the error message.
    """

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # [{"name": ..., "arguments": "json", "id"?: ...}]
    status: int = 200
    prompt_tokens: int = 10
    completion_tokens: int = 5
    delay: float = 0.0  # seconds to wait before answering
    finish_reason: str | None = None  # default: "tool_calls" if tool_calls else "stop"
    headers: dict[str, str] | None = None  # extra response headers, e.g. {"retry-after-ms": "1"}


def json_reply(obj: Any, **kwargs: Any) -> Reply:
    """A 200 reply whose content is ``json.dumps(obj)``."""
    return Reply(content=json.dumps(obj), **kwargs)


def scripted(*replies: Reply, repeat_last: bool = True) -> Callable[[dict[str, Any]], Reply]:
    """A responder that answers with ``replies`` in order.

    Once they run out it keeps answering the last one (``repeat_last=True``) or
    answers a 500 saying the script is exhausted.
    """
    if not replies:
        raise ValueError("scripted() needs at least one reply")
    lock = threading.Lock()
    queue = list(replies)

    def responder(_body: dict[str, Any]) -> Reply:
        with lock:
            if len(queue) > 1:
                return queue.pop(0)
            if repeat_last:
                return queue[0]
            if queue:
                return queue.pop(0)
        return Reply(content="fake_openai: scripted replies exhausted", status=500)

    return responder


def _default_responder(_body: dict[str, Any]) -> Reply:
    return Reply(content="ok")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAI


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no handler thread lingers on an
    # idle keep-alive socket held open by a client that is never closed.
    protocol_version = "HTTP/1.0"
    timeout = 30  # bound any blocking socket read
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr logging
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._send_error(404, f"Unknown path: GET {self.path}")

    def do_POST(self) -> None:  # noqa: N802
        fake = self.server.fake
        path = self.path.split("?", 1)[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_error(404, f"Unknown path: POST {self.path}")
            return

        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            self._send_error(400, "Request body is not valid JSON.")
            return
        if not isinstance(body, dict):
            self._send_error(400, "Request body must be a JSON object.")
            return

        fake._record(body, dict(self.headers.items()))

        if body.get("stream"):
            self._send_error(400, "fake_openai supports stream=false only.", param="stream")
            return

        try:
            reply = fake.responder(body)
        except Exception as exc:  # a broken responder shows up as a 500, not a hang
            fake.errors.append(exc)
            self._send_error(500, f"fake_openai responder raised {type(exc).__name__}: {exc}")
            return

        if reply.delay > 0 and fake._stopping.wait(reply.delay):
            return  # server is stopping: drop the request

        if reply.status != 200:
            self._send_error(reply.status, reply.content or f"Simulated HTTP {reply.status}.", headers=reply.headers)
            return

        self._send_json(200, fake._completion(body, reply), headers=reply.headers)

    def _send_error(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        err_type, code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        payload = {"error": {"message": message, "type": err_type, "param": param, "code": code}}
        self._send_json(status, payload, headers=headers)

    def _send_json(self, status: int, payload: Any, *, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_fake_{self.server.fake._next_id()}")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired) before the answer


class FakeOpenAI:
    """Loopback OpenAI Chat Completions server; see the module docstring."""

    def __init__(self, responder: Callable[[dict[str, Any]], Reply] | None = None) -> None:
        self.responder: Callable[[dict[str, Any]], Reply] = responder or _default_responder
        self.requests: list[dict[str, Any]] = []  # request bodies, in arrival order
        self.request_headers: list[dict[str, str]] = []  # matching request headers
        self.errors: list[BaseException] = []  # exceptions raised by the responder
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> FakeOpenAI:
        if self._server is not None:
            raise RuntimeError("FakeOpenAI already started")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wake handlers sleeping on a delay
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not running")
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    # -- internals used by the handler -----------------------------------
    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(headers)

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        n = self._next_id()
        tool_calls = _tool_calls(reply.tool_calls, n) if reply.tool_calls else None
        finish_reason = reply.finish_reason or ("tool_calls" if tool_calls else "stop")
        return {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "fake-model",
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": reply.content,
                        "tool_calls": tool_calls,
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            },
        }


def _tool_calls(calls: Iterable[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    result = []
    for i, call in enumerate(calls):
        arguments = call.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        result.append({
            "id": call.get("id") or f"call_fake_{n}_{i}",
            "type": "function",
            "function": {"name": call["name"], "arguments": arguments},
        })
    return result
