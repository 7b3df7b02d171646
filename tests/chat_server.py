"""A loopback OpenAI-compatible ``/v1/chat/completions`` for tests that inject server faults.

One server for tests/test_client.py (the retry loop), tests/test_harness.py (the eval harness) and
tests/test_taubench_eval.py (a model-played user): the standard library's threading HTTP server on 127.0.0.1 in
a daemon thread, so it needs nothing beyond the client under test (tests/serve_helpers.py serves ASGI apps with
uvicorn instead). Each test says how to answer a request body: a status, a JSON body and headers, or ``None``
to close the connection without a reply (a dropped connection).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, Any], dict[str, str]]
Answer = Callable[[dict[str, Any]], "Reply | None"]


def completion(
    message: str | dict[str, Any], model: str = "fake", prompt_tokens: int = 10, completion_tokens: int = 5
) -> dict[str, Any]:
    """A ``chat.completion`` body with one choice: ``message`` (its text, or the whole assistant message)."""
    if isinstance(message, str):
        message = {"role": "assistant", "content": message}
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error(code: int, message: str, kind: str = "server_error", headers: dict[str, str] | None = None) -> Reply:
    """An error reply in OpenAI's shape."""
    return code, {"error": {"message": message, "type": kind}}, dict(headers or {})


class ChatServer:
    """``answer(body)`` for every POST, served on 127.0.0.1:<free port>; ``base_url`` ends in ``/v1``.

    ``answer`` runs on the server's request threads (a slow answer delays only its own request)."""

    def __init__(self, answer: Answer):
        self.answer = answer

        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                reply = server.answer(json.loads(raw or b"{}"))
                if reply is None:
                    self.close_connection = True
                    return
                code, obj, headers = reply
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
