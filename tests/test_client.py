"""The one model client (``toolgym.model_client``) against a real local HTTP server and the real ``openai`` SDK.

The server answers each request with the next scripted reply (status, headers); the client's sleep is replaced
by a recorder, so the tests see every delay the retry loop chose without waiting for it.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("openai")

from chat_server import ChatServer, Reply, completion, error

from toolgym.model_client import (
    Backoff,
    BadRequest,
    ChatClient,
    RetriesExhausted,
    RunAborted,
    backoff_schedule,
    client_rng,
)

OK = (200, {})
REQUEST = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}


class ScriptedServer(ChatServer):
    """An OpenAI-compatible ``/v1/chat/completions`` that plays ``script`` in order, then answers 200."""

    def __init__(self, script: list[tuple[int, dict[str, str]]], delay: float = 0.0):
        self.script = list(script)
        self.delay = delay
        self.requests = 0
        self.lock = threading.Lock()
        super().__init__(self.reply)

    def reply(self, body: dict) -> Reply:
        time.sleep(self.delay)
        with self.lock:
            self.requests += 1
            code, headers = self.script.pop(0) if self.script else OK
        if code == 200:
            return 200, completion("hello", prompt_tokens=3, completion_tokens=2), headers
        return error(code, f"scripted {code}", "scripted", headers)


@pytest.fixture
def serve():
    servers: list[ScriptedServer] = []

    def start(*script: tuple[int, dict[str, str]]) -> ScriptedServer:
        s = ScriptedServer(list(script))
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def run(base_url: str, **kw):
    """One ``complete`` through a fresh client: (response or exception, delays slept, failed attempts, stats)."""
    delays: list[float] = []
    failures: list[tuple[int, str]] = []

    async def sleep(d: float) -> None:
        delays.append(d)

    async def go():
        async with ChatClient(base_url, "key", sleep=sleep, **{"timeout": 5.0, **kw}) as client:
            try:
                result = await client.complete(REQUEST, on_error=lambda a, e: failures.append((a, type(e).__name__)))
            except Exception as exc:  # the test inspects what was raised
                result = exc
            return result, dict(client.stats)

    result, stats = asyncio.run(go())
    return result, delays, failures, stats


def test_429_waits_what_retry_after_says(serve):
    server = serve((429, {"Retry-After": "7"}), OK)
    resp, delays, failures, stats = run(server.base_url, backoff=0.01)
    assert resp.choices[0].message.content == "hello"
    assert server.requests == 2 and failures == [(0, "RateLimitError")]
    assert delays == [7.0]  # the header, not the 0.005-0.01 s back-off
    assert stats == {"requests": 2, "ok_requests": 1, "retried_errors": 1, "prompt_tokens": 3, "completion_tokens": 2}


def test_retry_after_is_capped_and_read_in_every_form(serve):
    server = serve((429, {"Retry-After": "1000"}), (503, {"retry-after-ms": "250"}), OK)
    _, delays, _, _ = run(server.base_url, max_delay=30.0)
    assert delays == [30.0, 0.25]
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    server = serve((429, {"Retry-After": when}), (429, {"Retry-After": "soon"}), OK)
    _, delays, _, _ = run(server.base_url, backoff=0.5)
    assert 17.0 <= delays[0] <= 21.0  # an HTTP date: the seconds until then
    assert 0.5 <= delays[1] <= 1.0  # unreadable: the back-off of attempt 1 (0.5 * 2 s, halved at most)


def test_500_then_200_is_retried_with_backoff(serve):
    server = serve((500, {}), (502, {}), OK)
    resp, delays, failures, stats = run(server.base_url, backoff=2.0, seed=3)
    assert resp.choices and server.requests == 3
    assert [a for a, _ in failures] == [0, 1]
    assert {name for _, name in failures} == {"InternalServerError"}
    assert 1.0 <= delays[0] <= 2.0 <= delays[1] <= 4.0
    assert delays == backoff_schedule(2, base=2.0, seed=3)  # the seeded schedule, reproducible
    assert stats["retried_errors"] == 2 and stats["ok_requests"] == 1


def test_400_is_not_retried(serve):
    server = serve((400, {}), OK)
    exc, delays, failures, stats = run(server.base_url)
    assert isinstance(exc, BadRequest) and not isinstance(exc, RunAborted)
    assert "BadRequestError" in str(exc) and "scripted 400" in str(exc)
    assert server.requests == 1 and delays == [] and failures == [(0, "BadRequestError")]
    assert stats["retried_errors"] == 0


def test_auth_error_aborts_at_once(serve):
    server = serve((401, {}), OK)
    exc, delays, _, _ = run(server.base_url)
    assert type(exc) is RunAborted and "AuthenticationError" in str(exc)
    assert server.requests == 1 and delays == []


def test_exhausted_retries_raise_run_aborted_with_the_last_error(serve):
    server = serve(*[(503, {})] * 10)
    exc, delays, failures, stats = run(server.base_url, retries=3, backoff=1.0, max_delay=1.5)
    assert isinstance(exc, RetriesExhausted) and isinstance(exc, RunAborted)
    assert str(exc).startswith("4 attempts failed, last: InternalServerError: ")
    assert server.requests == 4 and len(failures) == 4 and stats["requests"] == 4
    assert len(delays) == 3 and delays == sorted(delays) and delays[-1] == 1.5  # 2-4 s, capped


def test_connection_refused_is_retried_then_aborts():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    exc, delays, failures, _ = run(f"http://127.0.0.1:{port}/v1", retries=2, backoff=0.1)
    assert isinstance(exc, RetriesExhausted)
    assert str(exc) == "3 attempts failed, last: APIConnectionError: Connection error."
    assert failures == [(0, "APIConnectionError"), (1, "APIConnectionError"), (2, "APIConnectionError")]
    assert len(delays) == 2 and 0.05 <= delays[0] <= 0.1 <= delays[1] <= 0.2


def test_slow_reply_times_out_and_is_retried():
    release = threading.Event()

    def never(body):  # holds the request, then closes the connection without a reply
        release.wait(5)

    slow = ChatServer(never)
    try:
        t0 = time.monotonic()
        exc, delays, failures, _ = run(slow.base_url, retries=1, timeout=0.3)
    finally:
        release.set()
        slow.stop()
    assert isinstance(exc, RetriesExhausted) and len(failures) == 2 and len(delays) == 1
    assert all("Timeout" in name for _, name in failures)
    assert time.monotonic() - t0 < 3


def test_concurrency_bounds_requests_in_flight():
    server = ScriptedServer([], delay=0.1)
    peak = {"now": 0, "max": 0}

    async def go():
        async with ChatClient(server.base_url, "key", concurrency=2) as client:
            create = client.client.chat.completions.create

            async def tracked(**req):
                peak["now"] += 1
                peak["max"] = max(peak["max"], peak["now"])
                try:
                    return await create(**req)
                finally:
                    peak["now"] -= 1

            client.client.chat.completions.create = tracked
            await asyncio.gather(*(client.complete(REQUEST) for _ in range(6)))

    try:
        asyncio.run(go())
    finally:
        server.stop()
    assert server.requests == 6 and peak["max"] == 2


def test_the_global_rng_is_left_alone(serve):
    server = serve((500, {}), (500, {}), OK)
    random.seed(1234)
    before = random.getstate()
    run(server.base_url, backoff=0.01)
    assert random.getstate() == before


def test_importing_the_client_does_not_import_openai():
    code = "import sys, toolgym.model_client, toolgym.harness; assert 'openai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# -- the back-off schedule ---------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 40),
    base=st.floats(0.0, 10.0, allow_nan=False),
    cap=st.floats(0.0, 120.0, allow_nan=False),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_monotone_capped_jittered_and_seeded(n, base, cap, seed):
    delays = backoff_schedule(n, base, cap, seed)
    assert delays == backoff_schedule(n, base, cap, seed)  # deterministic for a seed
    assert all(a <= b for a, b in itertools.pairwise(delays))  # never sooner than the one before
    bounds = Backoff(base, cap)
    for attempt, d in enumerate(delays):
        lo, hi = bounds.bounds(attempt)
        assert lo <= d <= hi <= cap  # within the jitter of base * 2**attempt (halved at most), capped
        assert lo == min(base * 2.0**attempt / 2, cap) and hi == min(base * 2.0**attempt, cap)


@settings(max_examples=100, deadline=None)
@given(
    headers=st.lists(st.one_of(st.none(), st.floats(0.0, 1e4, allow_nan=False)), min_size=1, max_size=20),
    seed=st.integers(0, 2**32),
)
def test_retry_after_does_not_shift_the_backoff_of_later_attempts(headers, seed):
    plain = backoff_schedule(len(headers), 1.0, 60.0, seed)
    b = Backoff(1.0, 60.0, client_rng(seed))
    got = [b.delay(a, h) for a, h in enumerate(headers)]
    for a, h in enumerate(headers):
        assert got[a] == (min(h, 60.0) if h is not None else plain[a])


def test_backoff_rejects_negative_settings():
    with pytest.raises(ValueError):
        Backoff(-1.0)
    with pytest.raises(ValueError):
        Backoff(1.0, cap=-1.0)


def test_one_run_aborted_class_everywhere():
    from toolgym.construct.llm import build
    from toolgym.harness import BadRequest as HarnessBadRequest
    from toolgym.harness import RunAborted as HarnessRunAborted

    assert HarnessRunAborted is build.RunAborted is RunAborted
    assert HarnessBadRequest is BadRequest
