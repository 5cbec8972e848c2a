"""A scriptable OpenAI-compatible chat server for tests (stdlib only).

Why: the judge must be tested through the real LiteLLM client, including its error mapping (429 with Retry-After,
5xx, timeouts, refused connections), without any network. This server answers ``POST /v1/chat/completions`` on
127.0.0.1 (port 0, so tests never collide), counts requests and records the highest number of requests in flight at
once, so a test can check a concurrency bound.

Scripting: ``server.default`` answers any request; ``server.script`` is a global queue consumed in arrival order;
``server.route(marker, [replies...])`` gives requests whose body contains ``marker`` their own sequence (use a unique
string in the row's completion), which stays deterministic under concurrency. When a sequence runs out, the
``default`` reply is used.

Usage::

    with FakeOpenAI() as srv:
        srv.default = good(3, 2)
        srv.route("ROW-1", [status(500), good(1, 1)])
        ... model="openai/fake", api_base=srv.base_url ...
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: an HTTP status, headers, a chat message text, and a delay before answering."""

    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    body: dict[str, Any] | None = None  # a raw JSON body instead of the chat envelope (error bodies)


def _score_json(correctness: Any, reasoning: Any, rationale: str) -> str:
    return json.dumps({"correctness": correctness, "reasoning": reasoning, "rationale": rationale})


def good(correctness: Any = 3, reasoning: Any = 3, rationale: str = "matches the reference") -> Reply:
    """A well-formed judge reply: bare JSON."""
    return Reply(content=_score_json(correctness, reasoning, rationale))


def fenced(correctness: Any = 2, reasoning: Any = 1, rationale: str = "fenced") -> Reply:
    """JSON inside a ```json fenced block, as many chat models answer."""
    body = _score_json(correctness, reasoning, rationale)
    return Reply(content=f"Here is my evaluation:\n```json\n{body}\n```\n")


def prose(correctness: Any = 1, reasoning: Any = 2, rationale: str = "prose") -> Reply:
    """JSON surrounded by free text, with braces in the text around it."""
    body = _score_json(correctness, reasoning, rationale)
    return Reply(content=f"Sure {{thinking}}. My verdict: {body} Hope this helps {{}}.")


def malformed(text: str = "I think the answer is mostly right, 2 out of 3.") -> Reply:
    """A reply with no usable JSON."""
    return Reply(content=text)


def status(code: int, retry_after: str | None = None, message: str = "scripted error") -> Reply:
    """An HTTP error with an OpenAI-style error body, optionally with a Retry-After header."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"message": message, "type": "server_error", "code": str(code)}}
    return Reply(status=code, headers=headers, body=body)


def slow(delay_s: float, reply: Reply | None = None) -> Reply:
    """``reply`` (default: good) sent only after ``delay_s`` seconds: a timeout when delay exceeds the client's."""
    base = reply or good()
    return Reply(base.content, base.status, dict(base.headers), delay_s, base.body)


class FakeOpenAI:
    """The server: start with ``with FakeOpenAI() as srv`` or ``start()``/``stop()``."""

    def __init__(self, default: Reply | None = None, delay_s: float = 0.0) -> None:
        self.default = default or good()
        self.delay_s = delay_s  # added to every request, to make overlap (concurrency) observable
        self.script: list[Reply] = []
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[dict[str, Any]] = []  # parsed JSON bodies, in arrival order
        self.auth_headers: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- scripting -------------------------------------------------------------------------------------------------
    def route(self, marker: str, replies: list[Reply]) -> None:
        """Requests whose body contains ``marker`` get ``replies`` in order, then the default."""
        with self._lock:
            self.routes[marker] = list(replies)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def count_for(self, marker: str) -> int:
        """How many requests carried ``marker``."""
        with self._lock:
            return sum(marker in json.dumps(r) for r in self.requests)

    def _next_reply(self, raw_body: str) -> Reply:
        with self._lock:
            for marker, queue in self.routes.items():
                if marker in raw_body:
                    return queue.pop(0) if queue else self.default
            return self.script.pop(0) if self.script else self.default

    # -- lifecycle -------------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeOpenAI":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; afterwards connections to ``base_url`` are refused."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling (called from handler threads) ------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8", "replace")
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.auth_headers.append(handler.headers.get("Authorization", ""))
            try:
                self.requests.append(json.loads(raw))
            except json.JSONDecodeError:
                self.requests.append({"_raw": raw})
        try:
            reply = self._next_reply(raw)
            time.sleep(self.delay_s + reply.delay_s)
            self._send(handler, reply, raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer
        finally:
            with self._lock:
                self.in_flight -= 1

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply, raw: str) -> None:
        if reply.body is not None or reply.status != 200:
            payload = reply.body or {"error": {"message": "error", "type": "server_error"}}
        else:
            try:
                model = json.loads(raw).get("model", "fake")
            except json.JSONDecodeError:
                model = "fake"
            payload = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            }
        data = json.dumps(payload).encode()
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in reply.headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)


def _make_handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            server._handle(self)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
            return

    return Handler
