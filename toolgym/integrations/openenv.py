"""toolgym envs served over OpenEnv's HTTP + WebSocket protocol (``toolgym serve ENV_ID``).

Built on openenv's own server (``openenv.core.env_server.HTTPEnvServer``, the class behind its app factory
``create_app``): its ``/ws`` session loop, ``/schema``, ``/health``, ``/metadata``, session capacity and
per-session executors are used as they are. Three things are added where the package falls short for a
multi-turn env:

* **Stateful HTTP.** openenv's ``POST /reset`` and ``POST /step`` build a fresh env per request and close it
  afterwards, so an HTTP ``/step`` never sees the episode its ``/reset`` started. Here ``/reset`` opens (or
  resets) a session and returns its ``session_id`` (in ``metadata`` and the ``X-Session-Id`` header);
  ``/step``, ``GET /state`` and ``POST /close`` take that id. These routes are registered before openenv's,
  so they win; everything else about the wire format (``observation``/``reward``/``done``/``metadata``) is
  openenv's. HTTP sessions share the session limit and the idle timeout with WebSocket sessions.
* **A usable idle timeout.** openenv's reaper wakes every ``max(timeout / 4, 5 s)``; here every
  ``max(timeout / 4, 0.1 s)``, so a short timeout means what it says. A reaped session's env is closed; a
  WebSocket that speaks again gets an error naming the timeout (its slot was already given back).
* **Actions as models send them.** :class:`ToolGymAction` has one required field, ``message``, so OpenEnv
  clients that map a bare reply onto the single required field (verifiers' OpenEnv taskset) work: text
  (Hermes ``<tool_call>`` blocks, python calls, or a final answer), an OpenAI assistant message dict, or a
  number (sent as its text: ``154`` becomes ``"154"``). A bare assistant message or ``{"name", "arguments"}``
  tool call as the whole action is accepted too. A malformed action is a validation error; the session lives on.

Each session owns one ``gym.make(ENV_ID)`` env, created in the session's own thread. A step's observation
carries the messages that step appended (the env's ``info["new_messages"]``), the reward components (its
``info["reward_components"]``) and the rest of the env's info, each once; ``full_chat=True`` (a ``reset`` or
``step`` field, or ``--full-chat`` on the server) returns the whole chat instead. ``reset`` takes ``seed`` and
``options`` (e.g. ``{"prefix": [turn, ...]}``).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium as gym
from fastapi import FastAPI, HTTPException, Request, WebSocketDisconnect, status
from fastapi.responses import JSONResponse
from openenv.core.client_types import StepResult
from openenv.core.env_client import EnvClient
from openenv.core.env_server._utils import overrides_method
from openenv.core.env_server.exceptions import EnvironmentFactoryError, SessionCapacityError
from openenv.core.env_server.http_server import HTTPEnvServer
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.serialization import deserialize_action, serialize_observation
from openenv.core.env_server.types import (
    Action,
    ConcurrencyConfig,
    EnvironmentMetadata,
    Observation,
    State,
)
from pydantic import Field, ValidationError, field_validator, model_validator

import toolgym
from toolgym.calls import find_lone_surrogate, find_surrogate_escape, format_hermes

__all__ = [
    "InvalidAction",
    "ToolGymAction",
    "ToolGymEnvClient",
    "ToolGymEnvironment",
    "ToolGymObservation",
    "ToolGymServer",
    "ToolGymState",
    "create_server_app",
    "create_toolgym_app",
]

log = logging.getLogger(__name__)

RESET_FIELDS = ("seed", "options", "episode_id", "full_chat")
EXECUTORS = ("auto", "inline", "thread")


class InvalidAction(ValueError):
    """A malformed action; the session it was sent to is unchanged."""


def _summarize(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(x) for x in err.get("loc", ())) or "action"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


class ToolGymAction(Action):
    """One assistant turn. ``message`` is the only required field (see the module docstring)."""

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> ToolGymAction:
        # openenv's WebSocket loop answers a pydantic ValidationError with a bare "Invalid message"; any other
        # exception's text reaches the client, so a bad action is reported with what is wrong and what is expected.
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as e:
            raise InvalidAction(
                f"invalid action ({_summarize(e)}); send {{'message': <text | assistant message dict | number>}}"
                " (the session is unchanged)"
            ) from e

    message: str | dict[str, Any] = Field(
        ...,
        description="the assistant turn: text (Hermes <tool_call> blocks, python calls, or a final answer), "
        "an OpenAI assistant message dict with tool_calls, or a number (taken as its text)",
    )
    full_chat: bool | None = Field(
        default=None, description="return the whole chat in this step's observation (default: the session's)"
    )

    @model_validator(mode="before")
    @classmethod
    def _wrap_bare_message(cls, data: Any) -> Any:
        # A client that sends the assistant message (or one tool call) itself as the action dict.
        if isinstance(data, dict) and "message" not in data:
            if "role" in data or "tool_calls" in data or "content" in data:
                return {"message": data}
            if set(data) == {"name", "arguments"} and isinstance(data["arguments"], dict | str):
                args = data["arguments"]
                if isinstance(args, str):
                    try:
                        args = json.loads(args)
                    except json.JSONDecodeError:
                        return {"message": json.dumps(data, ensure_ascii=False)}
                return {"message": format_hermes([(str(data["name"]), args)])}
        return data

    @field_validator("message", mode="before")
    @classmethod
    def _scalar_as_text(cls, value: Any) -> Any:
        # json.loads of a model's reply turns "154" into 154 and "true" into True: give the env the text back.
        if isinstance(value, bool) or value is None:
            return json.dumps(value)
        if isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("a number action must be finite")
            return str(value)
        if isinstance(value, list):
            return json.dumps(value, ensure_ascii=False)
        if isinstance(value, dict):
            role = value.get("role", "assistant")
            if role != "assistant":
                raise ValueError(f"a message action must be an assistant message, got role={role!r}")
        return value


class ToolGymObservation(Observation):
    """What reset and step return (besides ``reward`` and ``done``)."""

    messages: list[dict[str, Any]] = Field(
        default_factory=list,
        description="reset: the chat so far; step: the messages this step appended (the whole chat with full_chat)",
    )
    tools: list[dict[str, Any]] = Field(
        default_factory=list, description="OpenAI function schemas on offer (reset and full_chat observations)"
    )
    reward_components: dict[str, float] = Field(default_factory=dict, description="the step's reward breakdown")
    info: dict[str, Any] = Field(
        default_factory=dict,
        description="the rest of the env's info (JSON-safe): feedback, turn, terminated, episode when done, ...",
    )


class ToolGymState(State):
    """``GET /state`` and the WebSocket ``state`` message."""

    env_id: str = ""
    seed: int | None = None
    done: bool = False
    episode_return: float = 0.0


def _json_safe(obj: Any) -> Any:
    """Plain JSON types (numpy scalars and arrays, tuples, sets, dataclasses become lists/numbers/dicts/str).

    Plain data takes the C round trip through ``json`` (several times faster than walking it in Python); anything
    ``json`` refuses (numpy values, sets, NaN) is walked."""
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError):
        return _walk(obj)


def _walk(obj: Any) -> Any:
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _walk(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_walk(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy
        return _walk(obj.tolist())
    if hasattr(obj, "item"):
        return _walk(obj.item())
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return _walk(dataclasses.asdict(obj))
    return str(obj)


class ToolGymEnvironment(Environment[ToolGymAction, ToolGymObservation, ToolGymState]):
    """One session's toolgym env behind openenv's ``Environment`` interface."""

    SUPPORTS_CONCURRENT_SESSIONS = True  # every session gets its own gym.make env; nothing is shared

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any] | None = None,
        full_chat: bool = False,
        idle_timeout: float | None = None,
        executor: str = "auto",
        thread_pool: ThreadPoolExecutor | None = None,
    ):
        super().__init__()
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
        if executor == "auto":
            executor = "thread" if (env_kwargs or {}).get("isolation") == "process" else "inline"
        self.executor = executor
        self._pool = thread_pool
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.full_chat_default = full_chat
        self.idle_timeout = idle_timeout
        self._env = gym.make(env_id, **self.env_kwargs)
        self._reset_done = False
        self._done = False
        self._full_chat = full_chat
        # the state's fields, kept plain: a pydantic model validates every assignment, three per step
        self._episode_id: str | None = None
        self._seed: int | None = None
        self._step_count = 0
        self._return = 0.0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            why = f" after {self.idle_timeout:g} s without activity (--idle-timeout)" if self.idle_timeout else ""
            raise RuntimeError(f"this session was closed{why}; open a new session")

    def reset(
        self,
        seed: int | None = None,
        episode_id: str | None = None,
        options: dict[str, Any] | None = None,
        full_chat: bool | None = None,
        **kwargs: Any,
    ) -> ToolGymObservation:
        self._check_open()
        if kwargs:
            raise ValueError(f"unknown reset fields {sorted(kwargs)}; reset takes {', '.join(RESET_FIELDS)}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"options must be an object, e.g. {{'prefix': [turn, ...]}}, got {type(options).__name__}")
        if full_chat is not None and not isinstance(full_chat, bool):
            raise ValueError(f"full_chat must be true or false, got {full_chat!r}")
        obs, info = self._env.reset(seed=seed, options=options)
        self._reset_done, self._done = True, False
        self._full_chat = self.full_chat_default if full_chat is None else full_chat
        self._episode_id, self._seed = episode_id or str(uuid.uuid4()), seed
        self._step_count, self._return = 0, 0.0
        # model_construct: the fields are JSON by construction (the env's chat and schemas, a JSON-safe info);
        # validating them again costs more than the env's own step.
        return ToolGymObservation.model_construct(
            messages=obs["messages"],
            tools=obs["tools"],
            reward_components={},
            info=_json_safe(info),
            done=False,
            reward=0.0,
            metadata={},
        )

    def step(self, action: ToolGymAction, timeout_s: float | None = None, **kwargs: Any) -> ToolGymObservation:
        self._check_open()
        if not self._reset_done:
            raise RuntimeError("reset the session before stepping")
        if self._done:
            raise RuntimeError("the episode is over; reset to start another")
        if not isinstance(action, ToolGymAction):
            action = ToolGymAction.model_validate(action)
        obs, reward, terminated, truncated, info = self._env.step(action.message)
        reward = float(reward)
        self._done = bool(terminated or truncated)
        self._step_count += 1
        self._return += reward
        info = _json_safe(info)
        info["terminated"], info["truncated"] = bool(terminated), bool(truncated)
        # new_messages and reward_components travel once, as the observation's own fields, not again in info
        new, components = info.pop("new_messages", []), info.pop("reward_components", {})
        full = self._full_chat if action.full_chat is None else action.full_chat
        return ToolGymObservation.model_construct(
            messages=obs["messages"] if full else new,
            tools=obs["tools"] if full else [],
            reward_components=components,
            info=info,
            done=self._done,
            reward=reward,
            metadata={},
        )

    # openenv calls these instead of running reset/step in the session's thread when they are overridden.
    # A toolgym step is a few hundred microseconds of Python (tools run in-process by default): a thread hop
    # per step costs more than the step and, under the GIL, makes the event loop wait for the worker's time
    # slice. So steps run inline on the loop, except with process-isolated tools (isolation="process"),
    # whose steps wait on a pipe and so run in threads.
    async def reset_async(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any):
        if self.executor == "inline":
            return self.reset(seed=seed, episode_id=episode_id, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self.reset(seed=seed, episode_id=episode_id, **kwargs))

    async def step_async(self, action: ToolGymAction, timeout_s: float | None = None, **kwargs: Any):
        if self.executor == "inline":
            return self.step(action, timeout_s=timeout_s, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self.step(action, timeout_s=timeout_s, **kwargs))

    @property
    def state(self) -> ToolGymState:
        self._check_open()
        return ToolGymState(
            episode_id=self._episode_id,
            step_count=self._step_count,
            env_id=self.env_id,
            seed=self._seed,
            done=self._done,
            episode_return=self._return,
        )

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(
            name=self.env_id,
            description=f"toolgym {self.env_id}: multi-turn tool use; one action is one assistant turn",
            version=getattr(toolgym, "__version__", None),
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._env.close()


# openenv's WebSocket loop calls inspect.signature(env.reset_async) on every reset to filter the reset fields; a
# signature stored on the function is read instead of being rebuilt from the code object each time.
ToolGymEnvironment.reset_async.__signature__ = inspect.signature(ToolGymEnvironment.reset_async)


async def _body(request: Request, required: bool = False) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise _error(status.HTTP_422_UNPROCESSABLE_CONTENT, "this request needs a JSON object body")
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as e:
        raise _error(status.HTTP_422_UNPROCESSABLE_CONTENT, f"the body is not JSON: {e}") from e
    if not isinstance(body, dict):
        raise _error(status.HTTP_422_UNPROCESSABLE_CONTENT, "the body must be a JSON object")
    return body


def _error(http_status: int, message: str, **extra: Any) -> HTTPException:
    return HTTPException(status_code=http_status, detail={"message": message, **extra})


class ToolGymServer(HTTPEnvServer):
    """openenv's ``HTTPEnvServer`` with stateful HTTP sessions and a finer idle reaper (module docstring)."""

    async def _reap_idle_sessions(self) -> None:
        timeout = self._session_idle_timeout_s
        if timeout is None:
            return
        interval = max(timeout / 4, 0.1)
        while True:
            try:
                await asyncio.sleep(interval)
                now = time.time()
                async with self._session_lock:
                    stale = [s for s, i in self._session_info.items() if now - i.last_activity_at > timeout]
                for sid in stale:
                    async with self._session_lock:
                        info = self._session_info.get(sid)
                        if info is None or time.time() - info.last_activity_at <= timeout:
                            continue
                    await self._destroy_session(sid)
            except asyncio.CancelledError:
                break
            except Exception as exc:  # keep reaping; one failed close must not leak every later session
                log.warning("idle-session reaper: %s", exc)

    async def _call(self, session_id: str, env: Environment, method: str, *args: Any, **kwargs: Any) -> Observation:
        """``env.<method>`` the way openenv's WebSocket loop calls it: the async twin when overridden, else the sync
        method in the session's own thread."""
        if overrides_method(getattr(env, f"{method}_async"), getattr(Environment, f"{method}_async")):
            return await getattr(env, f"{method}_async")(*args, **kwargs)
        return await self._run_in_session_executor(session_id, getattr(env, method), *args, **kwargs)

    def _session_env(self, session_id: Any) -> Environment:
        if not isinstance(session_id, str) or not session_id:
            raise _error(
                status.HTTP_400_BAD_REQUEST,
                "this request needs the session_id that POST /reset returned (or use the WebSocket /ws)",
            )
        env = self._sessions.get(session_id)
        if env is None:
            raise _error(
                status.HTTP_404_NOT_FOUND,
                f"unknown or closed session {session_id!r} (closed, or idle past the timeout); POST /reset opens one",
            )
        return env

    def register_routes(self, app: FastAPI, mode: Any = "simulation") -> None:
        @app.post("/reset", tags=["Environment Control"], summary="Open or reset an HTTP session")
        async def reset(request: Request) -> JSONResponse:
            kwargs = await _body(request)
            session_id = kwargs.pop("session_id", None) or request.headers.get("x-session-id")
            created = False
            if session_id:
                env = self._session_env(session_id)
            else:
                try:
                    session_id, env = await self._create_session()
                except SessionCapacityError as e:
                    raise _error(
                        status.HTTP_503_SERVICE_UNAVAILABLE,
                        str(e),
                        code="CAPACITY_REACHED",
                        active_sessions=e.active_sessions,
                        max_sessions=e.max_sessions,
                    ) from e
                except EnvironmentFactoryError as e:
                    raise _error(status.HTTP_500_INTERNAL_SERVER_ERROR, str(e), code="FACTORY_ERROR") from e
                created = True
            try:
                obs = await self._call(session_id, env, "reset", **kwargs)
            except (ValueError, TypeError, RuntimeError) as e:
                if created:
                    await self._destroy_session(session_id)
                raise _error(status.HTTP_400_BAD_REQUEST, str(e), session_id=None if created else session_id) from e
            self._update_session_activity(session_id)
            payload = serialize_observation(obs)
            payload["metadata"] = {**(payload.get("metadata") or {}), "session_id": session_id}
            return JSONResponse(payload, headers={"X-Session-Id": session_id})

        @app.post("/step", tags=["Environment Control"], summary="Step an HTTP session")
        async def step(request: Request) -> JSONResponse:
            body = await _body(request, required=True)
            session_id = body.get("session_id") or request.headers.get("x-session-id")
            env = self._session_env(session_id)
            if "action" not in body:
                raise _error(status.HTTP_422_UNPROCESSABLE_CONTENT, "the step body needs an 'action' object")
            action_data = body["action"]
            if not isinstance(action_data, dict):
                action_data = {"message": action_data}  # a bare text or number as the action
            try:
                action = deserialize_action(action_data, self.action_cls)
            except (ValidationError, InvalidAction) as e:
                raise _error(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e), session_id=session_id) from e
            try:
                obs = await self._call(session_id, env, "step", action)
            except (ValueError, TypeError, RuntimeError) as e:
                raise _error(status.HTTP_409_CONFLICT, str(e), session_id=session_id) from e
            self._update_session_activity(session_id, increment_step=True)
            payload = serialize_observation(obs)
            payload["metadata"] = {**(payload.get("metadata") or {}), "session_id": session_id}
            return JSONResponse(payload)

        @app.get("/state", tags=["State Management"], summary="State of an HTTP session")
        async def state(request: Request, session_id: str | None = None) -> JSONResponse:
            env = self._session_env(session_id or request.headers.get("x-session-id"))
            try:
                st = env.state
            except RuntimeError as e:
                raise _error(status.HTTP_409_CONFLICT, str(e)) from e
            return JSONResponse(st.model_dump())

        @app.post("/close", tags=["Environment Control"], summary="Close an HTTP session")
        async def close(request: Request) -> JSONResponse:
            body = await _body(request)
            session_id = body.get("session_id") or request.headers.get("x-session-id")
            self._session_env(session_id)
            await self._destroy_session(session_id)
            return JSONResponse({"session_id": session_id, "closed": True})

        @app.get("/sessions", tags=["State Management"], summary="Session capacity")
        async def sessions() -> JSONResponse:
            return JSONResponse(self.get_capacity_status().model_dump())

        super().register_routes(app, mode)


class _QuietClientClose:
    """ASGI wrapper: openenv's ``/ws`` calls ``websocket.close()`` after a client's ``close`` message, when the
    client has usually hung up already; Starlette then raises ``WebSocketDisconnect`` out of the handler and
    uvicorn logs a traceback for every finished session. That disconnect is the normal end of a session."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        try:
            await self.app(scope, receive, send)
        except WebSocketDisconnect:
            pass


class _ObjectFramesOnly:
    """ASGI wrapper: openenv's ``/ws`` loop reads ``message.get("type")`` outside its error handling, so a frame
    that is JSON but not an object (``"x"``, ``1``, ``[]``) or a binary frame ends the session and destroys its
    env; so does a frame holding a lone surrogate (``"\\ud800"``), whose error reply cannot be encoded. Here a
    binary frame is read as UTF-8 text, and the other two get a validation error reply without reaching the loop:
    the session goes on. Object frames without a surrogate escape pass after a character test and a regex search.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)

        async def receive_objects() -> dict[str, Any]:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return message
                text = message.get("text")
                if text is None:
                    data = message.get("bytes") or b""
                    text = data.decode("utf-8", errors="replace")
                    message = {"type": "websocket.receive", "text": text}
                if text[:1] == "{" and not find_surrogate_escape(text):
                    return message
                try:
                    value = json.loads(text)
                except ValueError:
                    return message  # not JSON: the loop answers that itself and goes on
                if not isinstance(value, dict):
                    error = f'a message is a JSON object with "type" and "data", not {type(value).__name__}'
                elif find_lone_surrogate(json.dumps(value, ensure_ascii=False)):
                    error = "the message holds a lone surrogate (an escape like \\ud800), which is not valid Unicode"
                else:
                    return message
                reply = {"type": "error", "data": {"message": error, "code": "VALIDATION_ERROR"}}
                await send({"type": "websocket.send", "text": json.dumps(reply)})

        await self.app(scope, receive_objects, send)


class _ServerGC:
    """The collector settings the server process runs with, set at app startup and restored at shutdown.

    With many sessions interleaved, each episode's world and chat outlive the young collections and are promoted,
    so with CPython's defaults a full collection ran every few hundred resets, rescanning every library object and
    stalling every session for about 100 ms each time (``benchmarks/server_throughput.py``: p99 step latency 190 ms
    against 40 ms at 64 sessions; collection took a quarter of the server's CPU at 256). So what the process holds
    at startup (imported libraries, the app) is frozen out of the collector's generations, and the young
    generation is larger, so that an episode's garbage dies young. Frozen objects are still freed by reference
    counting; only cycles among them are never collected, and those are the process's imports."""

    YOUNG_THRESHOLD = 10_000  # CPython 3.11 collects the young generation every 700 net allocations

    def __init__(self) -> None:
        self.saved: tuple[int, ...] | None = None

    def startup(self) -> None:
        self.saved = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(max(self.saved[0], self.YOUNG_THRESHOLD), *self.saved[1:])

    def shutdown(self) -> None:
        if self.saved is not None:
            gc.set_threshold(*self.saved)
            gc.unfreeze()
            self.saved = None


def create_server_app(
    factory: Any,
    action_cls: type[Action],
    observation_cls: type[Observation],
    *,
    max_sessions: int = 64,
    idle_timeout: float | None = None,
    env_name: str | None = None,
) -> FastAPI:
    """openenv's ``create_fastapi_app`` with :class:`ToolGymServer` in place of ``HTTPEnvServer``.

    Generic in the env: the throughput benchmark serves OpenEnv's echo env through this same factory."""
    if max_sessions < 1:
        raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
    if idle_timeout is not None and idle_timeout <= 0:
        raise ValueError(f"idle_timeout must be positive seconds (or None for no timeout), got {idle_timeout}")
    app = FastAPI(
        title=f"OpenEnv server: {env_name or getattr(factory, '__name__', 'env')}",
        description=__doc__,
        docs_url="/docs",
        redoc_url="/redoc",
    )
    server = ToolGymServer(
        factory,
        action_cls,
        observation_cls,
        concurrency_config=ConcurrencyConfig(max_concurrent_envs=max_sessions, session_timeout=idle_timeout),
        env_name=env_name,
    )
    server.register_routes(app)
    server_gc = _ServerGC()
    app.router.on_startup.append(server_gc.startup)
    app.router.on_shutdown.append(server_gc.shutdown)
    app.add_middleware(_ObjectFramesOnly)
    app.add_middleware(_QuietClientClose)
    app.state.openenv_server = server
    return app


class _Factory:
    """A picklable, named env factory (openenv names the factory in its errors and task routes)."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], full_chat: bool, idle_timeout: float | None, **kw):
        self.env_id, self.env_kwargs, self.full_chat, self.idle_timeout = env_id, env_kwargs, full_chat, idle_timeout
        self.kw = kw
        self.__name__ = env_id

    def __call__(self) -> ToolGymEnvironment:
        return ToolGymEnvironment(self.env_id, self.env_kwargs, self.full_chat, self.idle_timeout, **self.kw)


def create_toolgym_app(
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    max_sessions: int = 64,
    idle_timeout: float | None = 600.0,
    full_chat: bool = False,
    executor: str = "auto",
) -> FastAPI:
    """The FastAPI app ``toolgym serve`` runs: one ``gym.make(env_id, **env_kwargs)`` per session.

    ``executor``: ``inline`` runs steps on the event loop, ``thread`` in a thread pool (one worker per session
    slot), ``auto`` picks ``thread`` only for process-isolated tools (see ``ToolGymEnvironment.step_async``)."""
    if env_id not in gym.envs.registry:
        known = sorted(k for k in gym.envs.registry if k.startswith("ToolGym/"))
        raise ValueError(f"unknown env id {env_id!r}; registered: {', '.join(known)}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_sessions, 256)), thread_name_prefix="toolgym-step")
    factory = _Factory(env_id, dict(env_kwargs or {}), full_chat, idle_timeout, executor=executor, thread_pool=pool)
    gym.make(env_id, **factory.env_kwargs).close()  # bad env kwargs fail here, not in the first session
    return create_server_app(
        factory,
        ToolGymAction,
        ToolGymObservation,
        max_sessions=max_sessions,
        idle_timeout=idle_timeout,
        env_name=env_id.replace("/", "-"),
    )


class ToolGymEnvClient(EnvClient[ToolGymAction, ToolGymObservation, ToolGymState]):
    """Typed OpenEnv client for a ``toolgym serve`` server (WebSocket session; ``.sync()`` for blocking use).

    ``step`` also takes a plain string, message dict or number."""

    def _step_payload(self, action: Any) -> dict[str, Any]:
        if not isinstance(action, ToolGymAction):
            action = ToolGymAction.model_validate(action if isinstance(action, dict) else {"message": action})
        return action.model_dump(exclude_none=True, exclude={"metadata"} if not action.metadata else set())

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[ToolGymObservation]:
        obs = dict(payload.get("observation", {}))
        obs.pop("metadata", None)
        observation = ToolGymObservation(
            **obs,
            done=payload.get("done", False),
            reward=payload.get("reward"),
            metadata=payload.get("metadata") or {},
        )
        return StepResult(observation=observation, reward=payload.get("reward"), done=payload.get("done", False))

    def _parse_state(self, payload: dict[str, Any]) -> ToolGymState:
        return ToolGymState(**payload)
