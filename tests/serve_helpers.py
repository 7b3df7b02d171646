"""Loopback servers for tests/test_serve.py: a uvicorn thread, and a scripted OpenAI-compatible chat endpoint.

``ScriptedChatModel`` is the model behind verifiers' agent: it answers each chat-completions request with the
next turn of a fixed script (toolgym's gold trajectory), chosen by the scenario's user prompt found in the
request and the number of assistant turns already in it. It speaks the streaming wire format the verifiers chat
program reads (``chat.completion.chunk`` events, a usage chunk, ``[DONE]``) and the non-streaming one.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerThread:
    """``uvicorn`` serving ``app`` on 127.0.0.1:<free port> in a daemon thread (context manager)."""

    def __init__(self, app: Any):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class ScriptedChatModel:
    """An OpenAI-compatible ``/v1/chat/completions`` that plays scripted turns (see the module docstring)."""

    def __init__(self, scripts: dict[str, list[str]]):
        self.scripts = scripts  # scenario user prompt -> the assistant turns to play, in order
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._complete)

    def reply_for(self, messages: list[dict[str, Any]]) -> str:
        users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
        n_assistant = sum(1 for m in messages if m.get("role") == "assistant")
        for prompt, turns in self.scripts.items():
            if users and prompt in users[0]:
                if n_assistant >= len(turns):
                    raise ValueError(f"script exhausted: {n_assistant} turns played of {len(turns)}")
                return turns[n_assistant]
        raise ValueError(f"no script for the first user message {users[:1]!r}")

    async def _complete(self, request: Request):
        body = await request.json()
        self.requests.append(body)
        text = self.reply_for(body["messages"])
        model = body.get("model", "scripted")
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": usage,
                }
            )

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            event = {
                "id": "chatcmpl-scripted",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(event)}\n\n"

        def events():
            yield chunk([{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}])
            yield chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
            yield chunk([], usage=usage)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
