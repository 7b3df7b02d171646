"""The one client of OpenAI-compatible chat servers: a request, its retries, and what a failure means.

Everything in toolgym that talks to a model (the evaluation harness, the model-driven build, and any later
caller) sends its requests through :class:`ChatClient`, so a server fault is treated the same way everywhere:

* **retried**: connection errors, timeouts, HTTP 408/409/429/5xx and unreadable replies
  (:func:`classify` says ``"retry"``), after a delay: the server's ``Retry-After`` (or ``retry-after-ms``) when it
  sends one, else exponential back-off with jitter (:class:`Backoff`), both capped at ``max_delay``;
* **refused**: any other 4xx (the request itself is rejected, e.g. the context is full): :class:`BadRequest`,
  never retried, since the same request gets the same answer;
* **fatal**: 401/403/404 and anything unknown (bad API key, unknown model): :class:`RunAborted`;
* **exhausted**: a retryable error on the last attempt: :class:`RetriesExhausted` (a :class:`RunAborted`, so a
  caller that cannot redo the work later stops; the harness and the build catch it first and redo the episode
  or scenario on a rerun).

The jitter comes from the client's own ``random.Random`` (seeded), never from the global RNG, and the sleep
function is injectable, so a test can record the delays instead of waiting. ``openai`` is imported only when a
client is built (``pip install toolgym[eval]``): importing this module costs nothing.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from toolgym.calls import find_lone_surrogate, replace_lone_surrogates

DEFAULT_MAX_DELAY = 60.0  # seconds: the cap of every retry delay, back-off or Retry-After
_MAX_EXPONENT = 60  # 2**60 s is far past any cap; a larger exponent would only risk float overflow


class RunAborted(Exception):
    """An error no retry can fix (bad API key, unknown model): the whole run stops."""


class RetriesExhausted(RunAborted):
    """Every attempt of a request failed with a retryable error (the server is down or overloaded).

    A :class:`RunAborted` for callers that cannot redo the request later; the harness and the build catch it and
    leave the episode or scenario unfinished, so a rerun redoes it."""


class BadRequest(Exception):
    """The server rejected the request itself (HTTP 400/413/422, e.g. the context is full): never retried."""


def reply_message(resp: Any) -> dict[str, Any]:
    """The first choice's message of a chat completion, as plain data: ``{"role": "assistant", "content": text}``
    plus ``tool_calls`` as the server sent them, when it sent any.

    A server may answer 200 with a body of any shape, and the ``openai`` SDK builds its objects without checking
    it, so the reply is read defensively: no choices, or no message, raise :class:`BadRequest` (the request gets
    no usable answer, like a 400); content parts are joined into one text; a lone surrogate (what a JSON escape
    like ``\\ud800`` decodes to) becomes U+FFFD, since chats and records must be valid UTF-8. Whatever else is
    wrong with the calls is the env's to report, as feedback to the model.
    """
    choices = _get(resp, "choices")
    if not isinstance(choices, (list, tuple)) or not choices:
        raise BadRequest("the server's reply has no choices")
    msg = _get(choices[0], "message")
    if msg is None or isinstance(msg, (str, int, float, list)):
        raise BadRequest("the server's first choice has no message")
    out: dict[str, Any] = {"role": "assistant", "content": _valid_text(_content_text(_plain(_get(msg, "content"))))}
    calls = _get(msg, "tool_calls")
    if calls:
        out["tool_calls"] = _valid_unicode(_plain(calls))
    return out


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _plain(value: Any) -> Any:
    """Reply objects as plain dicts and lists: SDK models by ``model_dump`` (which keeps whatever the server sent,
    checked or not), other objects by their attributes."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(warnings=False)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {k: _plain(v) for k, v in vars(value).items()}
    return value


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "".join(
            p if isinstance(p, str) else str(p.get("text", "")) if isinstance(p, dict) else "" for p in content
        )
    return json.dumps(content, ensure_ascii=False, default=str)


def _valid_text(text: str) -> str:
    return text if text.isascii() or not find_lone_surrogate(text) else replace_lone_surrogates(text)


def _valid_unicode(value: Any) -> Any:
    if isinstance(value, str):
        return _valid_text(value)
    if isinstance(value, dict):
        return {_valid_unicode(k): _valid_unicode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_unicode(v) for v in value]
    return value


def classify(exc: BaseException) -> str:
    """``"retry"`` (connection, timeout, 408/409/429/5xx, unreadable reply), ``"fatal"`` (401/403/404, unknown)
    or ``"bad_request"`` (any other 4xx: the request itself is refused)."""
    import openai  # lazy: only a run that talks to a model needs it

    if isinstance(exc, (asyncio.TimeoutError, openai.APIConnectionError, openai.APIResponseValidationError)):
        return "retry"  # APITimeoutError is a connection error
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        if code in (408, 409, 429) or code >= 500:
            return "retry"
        if code in (401, 403, 404):
            return "fatal"
        return "bad_request"
    return "fatal"


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms``, ``Retry-After`` as seconds or an HTTP date), or None."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_text(exc: BaseException, limit: int = 300) -> str:
    """The error's message (its type name when it has none), cut to ``limit`` characters."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def describe(exc: BaseException) -> str:
    """``"<Type>: <message>"``: what a failed request reports."""
    return f"{type(exc).__name__}: {error_text(exc)}"


class Backoff:
    """Delays between attempts: "equal jitter" exponential back-off, ``base * 2**attempt`` halved at most, capped.

    The delay of ``attempt`` (0 = before the first retry) is uniform in ``[d / 2, d]`` with ``d = base * 2**attempt``,
    both ends capped at ``cap``. The ranges of successive attempts touch but do not overlap, so the schedule never
    decreases (the jitter spreads clients apart without ever making a later retry come sooner), and a seed gives
    the same schedule every time.
    """

    def __init__(self, base: float = 1.0, cap: float = DEFAULT_MAX_DELAY, rng: random.Random | None = None):
        if base < 0 or cap < 0:
            raise ValueError("base and cap must be >= 0")
        self.base, self.cap = float(base), float(cap)
        self.rng = rng if rng is not None else random.Random(0)

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The range the delay of ``attempt`` falls in."""
        step = self.base * 2.0 ** min(attempt, _MAX_EXPONENT)
        return min(step / 2, self.cap), min(step, self.cap)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The delay before retry ``attempt + 1``: the server's ``retry_after`` when given, else the back-off.

        Draws from the RNG either way, so the back-off of a later attempt does not depend on which replies
        carried a ``Retry-After``."""
        u = self.rng.random()
        if retry_after is not None:
            return min(max(0.0, retry_after), self.cap)
        lo, hi = self.bounds(attempt)
        return lo + (hi - lo) * u


def backoff_schedule(n: int, base: float = 1.0, cap: float = DEFAULT_MAX_DELAY, seed: int = 0) -> list[float]:
    """The first ``n`` back-off delays of a client seeded with ``seed`` (no ``Retry-After``)."""
    b = Backoff(base, cap, client_rng(seed))
    return [b.delay(a) for a in range(n)]


def client_rng(seed: int) -> random.Random:
    """The jitter RNG of a client: its own stream, derived from ``seed`` (a str seed is hashed the same everywhere)."""
    return random.Random(f"toolgym-client/{seed}")


OnError = Callable[[int, BaseException], None]


DECODING_MAX_LENGTH = 1000  # llama.cpp could not parse the grammar of a string with maxLength 1500 (1000 parsed)


def decoding_schema(schema: Any, max_length: int = DECODING_MAX_LENGTH) -> Any:
    """``schema`` as sent for schema-constrained decoding: a ``maxLength`` above ``max_length`` is left out.

    Servers turn the schema into a grammar, and llama.cpp spells ``maxLength: n`` as ``n`` nested optional
    characters: past about a thousand it fails to parse the grammar and its server process dies. The caller still
    checks the reply against the full schema, so the long limit holds; only the decoder no longer enforces it."""
    if isinstance(schema, list):
        return [decoding_schema(s, max_length) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: decoding_schema(v, max_length) for k, v in schema.items()}
    if isinstance(out.get("maxLength"), int) and out["maxLength"] > max_length:
        del out["maxLength"]
    return out


class ChatClient:
    """One ``AsyncOpenAI`` client and the retry loop around its chat completions.

    ``retries`` retries per request (so ``retries + 1`` attempts), each attempt bounded by ``timeout`` seconds;
    ``concurrency`` bounds the requests in flight (None: unbounded; the back-off sleeps hold no slot). ``stats``
    counts requests, successful requests, retried errors and token usage over the client's life.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_delay: float = DEFAULT_MAX_DELAY,
        seed: int = 0,
        rng: random.Random | None = None,
        concurrency: int | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        from openai import AsyncOpenAI  # lazy: importing openai costs ~0.5 s

        if retries < 0 or timeout <= 0:
            raise ValueError("retries must be >= 0 and timeout > 0")
        self.timeout, self.retries = timeout, retries
        self.backoff = Backoff(backoff, max_delay, rng if rng is not None else client_rng(seed))
        self.sleep = sleep
        self.slots = asyncio.Semaphore(concurrency) if concurrency else None
        # max_retries=0: this loop is the only one (the SDK's own would retry unseen and ignore the cap)
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key or "EMPTY", max_retries=0, timeout=timeout)
        self.stats = {"requests": 0, "ok_requests": 0, "retried_errors": 0, "prompt_tokens": 0, "completion_tokens": 0}

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(self, request: dict[str, Any]) -> Any:
        call = asyncio.wait_for(self.client.chat.completions.create(**request), self.timeout)
        if self.slots is None:
            return await call
        async with self.slots:
            return await call

    async def complete(self, request: dict[str, Any], on_error: OnError | None = None) -> Any:
        """The server's ``ChatCompletion`` for ``request`` (keyword arguments of ``chat.completions.create``).

        ``on_error(attempt, exc)`` sees every failed attempt, whatever its kind, before it is retried or raised.
        Raises :class:`BadRequest`, :class:`RunAborted` or, once the attempts are used up, :class:`RetriesExhausted`.
        """
        for attempt in range(self.retries + 1):
            self.stats["requests"] += 1
            try:
                resp = await self._send(request)
            except Exception as exc:
                if on_error is not None:
                    on_error(attempt, exc)
                kind = classify(exc)
                if kind == "fatal":
                    raise RunAborted(describe(exc)) from exc
                if kind == "bad_request":
                    raise BadRequest(describe(exc)) from exc
                self.stats["retried_errors"] += 1
                if attempt == self.retries:
                    raise RetriesExhausted(f"{attempt + 1} attempts failed, last: {describe(exc)}") from exc
                await self.sleep(self.backoff.delay(attempt, retry_after(exc)))
                continue
            self.stats["ok_requests"] += 1
            usage = getattr(resp, "usage", None)
            if usage is not None:
                for key in ("prompt_tokens", "completion_tokens"):
                    n = getattr(usage, key, 0)
                    if isinstance(n, int) and not isinstance(n, bool) and n > 0:  # a server may send anything here
                        self.stats[key] += n
            return resp
        raise AssertionError("unreachable")
