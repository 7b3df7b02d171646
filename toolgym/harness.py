"""Evaluating any OpenAI-compatible chat model (or a built-in agent) on toolgym envs.

``run_eval`` plays ``episodes`` seeds of every env id, ``concurrency`` episodes at a time on one asyncio loop
(each running episode owns an env from a small pool; env steps are local and fast), and writes to ``out``:

* ``episodes.jsonl``: one JSON line per finished episode, appended and flushed as it finishes;
* ``summary.json``: Solve-P / Solve-R / Solve-F1 (×100, episode-averaged) per env and scenario kind;
* ``summary.png``: the same as a bar chart;
* ``config.json``: the settings that define the results (a rerun with other settings is refused).

Rerunning the same command resumes: finished ``(env_id, seed)`` episodes are read back and skipped, a truncated
last line (a killed run) is dropped, nothing is written twice. An episode whose requests still fail after the
retries (connection errors, timeouts, 5xx, 429, with exponential backoff) is *not* written, so the next run
redoes it; once several episodes in a row fail this way, no new episode is started (the server is presumably
down) and the summary reports how many are missing.

With ``backend="ray"`` the same episodes run on Ray worker actors (:mod:`toolgym.distributed`; each owns an env
pool and, for a model, its own client to the server); the driver records each episode as it arrives, so
``episodes.jsonl``, resuming and the summary are the same as with the local backend. Both backends play an
episode with :func:`play_one`. The driver's ``ray.wait`` loop blocks the event loop ``arun_eval`` runs on.

Two ways to talk to the model:

* ``mode="native"``: ``tools=`` is sent and ``message.tool_calls`` is the action (the env takes the message dict);
* ``mode="text"``: the tools are listed in the system prompt (Qwen/Hermes style) and the completion text is the
  action; with ``json_schema=True`` the server is asked for schema-constrained JSON
  (``{"tool_calls": [{"name", "arguments"}, ...]}`` or ``{"answer": "..."}``), converted into an action.

The ``openai`` client, ``tqdm`` and ``matplotlib`` are imported only when needed (``pip install toolgym[eval]``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

import toolgym  # noqa: F401  (registers the ToolGym/ ids)
from toolgym.agents import make_agent
from toolgym.evaluate import format_table, summarize
from toolgym.jsonl import complete_lines, exclusive
from toolgym.prompts import JSON_TOOLS_PROMPT, text_history, text_prompt, tool_lines, with_system
from toolgym.registry import manifest_for
from toolgym.request_errors import classify

MODES = ("native", "text")
RESPONSE_FORMATS = ("json_object", "json_schema")
BACKENDS = ("local", "ray")
EPISODES_FILE = "episodes.jsonl"
# Settings that change what an episode's result means: a rerun into the same directory must match them.
RESULT_KEYS = (
    "env_ids",
    "model",
    "agent",
    "mode",
    "json_schema",
    "response_format",
    "seed",
    "temperature",
    "max_tokens",
    "env_kwargs",
    "max_turns",
)


@dataclass
class EvalConfig:
    """Everything ``run_eval`` needs; see the module docstring and ``toolgym eval --help``."""

    env_ids: list[str]
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    agent: str | None = None
    episodes: int = 40
    concurrency: int = 8
    mode: str = "native"
    json_schema: bool = False
    response_format: str = "json_object"
    seed: int = 0
    timeout: float = 120.0
    retries: int = 4
    backoff: float = 1.0
    temperature: float = 0.0
    max_tokens: int = 1024
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    max_turns: int | None = None
    out: str | None = None
    progress: bool = True
    max_consecutive_failures: int | None = None
    backend: str = "local"  # "ray": episodes on Ray workers (toolgym.distributed)
    ray_address: str | None = None  # a Ray cluster (default: RAY_ADDRESS, else a local Ray instance)
    num_workers: int | None = None  # Ray worker actors (default: the cluster's CPUs)

    def __post_init__(self) -> None:
        self.env_ids = list(self.env_ids)
        self.model = self.model or (os.environ.get("TOOLGYM_MODEL") if self.agent is None else None)
        if self.model is None and self.agent is None:
            raise ValueError("give a model (model= / --model / TOOLGYM_MODEL) or a built-in agent (gold, random)")
        if self.model is not None and self.agent is not None:
            raise ValueError("give either a model or a built-in agent, not both")
        if self.model is not None:
            self.base_url = self.base_url or os.environ.get("OPENAI_BASE_URL")
            if not self.base_url:
                raise ValueError("give the server's base URL (base_url= / --base-url / OPENAI_BASE_URL)")
            self.api_key = self.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.json_schema and self.mode != "text":
            raise ValueError("json_schema needs mode='text' (native mode reads message.tool_calls)")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {self.backend!r}")
        if self.num_workers is not None and self.num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        if self.response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}")
        if self.episodes < 1 or self.concurrency < 1 or self.retries < 0 or self.timeout <= 0:
            raise ValueError("episodes and concurrency must be >= 1, retries >= 0, timeout > 0")
        for env_id in self.env_ids:
            manifest_for(env_id)  # a clear error for an unknown id, before anything runs

    def result_config(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in RESULT_KEYS}

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        key = json.dumps(self.result_config(), sort_keys=True, default=str)
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        envs = "+".join(e.split("/")[-1] for e in self.env_ids)
        who = (self.model or self.agent or "model").rstrip("/").split("/")[-1]
        tag = self.mode + ("-json" if self.json_schema else "") if self.model else "agent"
        return Path("runs") / _safe(f"{envs}_{who}_{tag}_{digest}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "-", name)[:150]


# -- errors ------------------------------------------------------------------------------------------------
class EpisodeFailed(Exception):
    """Requests of an episode kept failing after the retries: the episode is not written (a rerun redoes it)."""


class RunAborted(Exception):
    """An error no retry can fix (bad API key, unknown model): the whole run stops."""


class BadRequest(Exception):
    """The server rejected a request (HTTP 400/413/422, e.g. the context is full).

    At an episode's first turn the episode fails (it is not written); later, the episode ends there and is
    written with ``"finish": "bad_request"``.
    """


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def _err(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


# -- conversations the model sees ------------------------------------------------------------------------------
def _native_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI chat as strict servers accept it: tool messages answer a call id of the preceding assistant turn."""
    out: list[dict[str, Any]] = []
    ids: set[str] = set()
    for m in messages:
        role = m.get("role")
        if role == "assistant":
            ids = {tc.get("id") for tc in m.get("tool_calls") or []}
            msg = {"role": "assistant", "content": m.get("content") or ""}
            if m.get("tool_calls"):
                msg["tool_calls"] = m["tool_calls"]
            out.append(msg)
        elif role == "tool":
            if m.get("tool_call_id") in ids:
                out.append({"role": "tool", "tool_call_id": m["tool_call_id"], "content": m.get("content") or ""})
            else:  # feedback on a call the server did not return as a tool call (e.g. <tool_call> text in content)
                out.append({"role": "user", "content": f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"})
        else:
            out.append({"role": role, "content": m.get("content") or ""})
    return out


def _grammar_friendly(schema: Any) -> Any:
    """Drop what schema-to-grammar converters reject: unanchored ``pattern`` (llama.cpp wants ``^...$``)."""
    if isinstance(schema, list):
        return [_grammar_friendly(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "pattern" and isinstance(v, str) and not (v.startswith("^") and v.endswith("$")):
            continue  # (a property *named* "pattern" has a dict value and is kept)
        keep = k in ("enum", "const", "default", "examples") and not isinstance(v, dict)
        out[k] = v if keep else _grammar_friendly(v)
    return out


def action_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON schema of a turn in JSON mode: ``{"tool_calls": [...]}`` (each call typed by its tool) or ``{"answer"}``."""
    calls = []
    for t in tools:
        fn = t["function"]
        params = _grammar_friendly(fn.get("parameters") or {"type": "object", "properties": {}})
        calls.append(
            {
                "type": "object",
                "properties": {"name": {"type": "string", "enum": [fn["name"]]}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    call = {"anyOf": calls} if calls else {"type": "object"}
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {"tool_calls": {"type": "array", "items": call, "minItems": 1}},
                "required": ["tool_calls"],
            },
            {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
        ]
    }


def json_to_action(text: str, turn: int) -> tuple[Any, str | None]:
    """The env action for a JSON-mode completion, and a note when the completion was not the expected JSON."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return text, "completion is not valid JSON"
    if isinstance(obj, dict) and isinstance(obj.get("tool_calls"), list) and obj["tool_calls"]:
        tool_calls = []
        for i, c in enumerate(obj["tool_calls"]):
            c = c if isinstance(c, dict) else {"name": None, "arguments": c}
            tool_calls.append(
                {
                    "id": f"call_{turn}_{i}",
                    "type": "function",
                    "function": {"name": c.get("name"), "arguments": c.get("arguments", {})},
                }
            )
        return {"role": "assistant", "content": "", "tool_calls": tool_calls}, None
    if isinstance(obj, dict) and isinstance(obj.get("answer"), str):
        return obj["answer"], None
    return text, "JSON has neither a non-empty 'tool_calls' list nor an 'answer' string"


# -- policies -----------------------------------------------------------------------------------------------
@dataclass
class Turn:
    action: Any  # what the env steps with
    record: Any  # what the model produced (message dict or text), stored in the episode line
    history: dict[str, Any] | None = None  # the assistant message the model sees next turn (None: the env's)
    note: str | None = None


class ModelPolicy:
    """One OpenAI-compatible chat model, shared by all running episodes (one AsyncOpenAI client)."""

    def __init__(self, cfg: EvalConfig):
        from openai import AsyncOpenAI  # lazy: importing openai costs ~0.5 s

        self.cfg = cfg
        self.client = AsyncOpenAI(base_url=cfg.base_url, api_key=cfg.api_key, max_retries=0, timeout=cfg.timeout)
        self.stats = {"requests": 0, "ok_requests": 0, "retried_errors": 0, "prompt_tokens": 0, "completion_tokens": 0}

    async def close(self) -> None:
        await self.client.close()

    def _request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.cfg
        req: dict[str, Any] = {"model": cfg.model, "temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        if cfg.mode == "native":
            req["messages"] = _native_history(messages)
            if tools:
                req["tools"] = tools
        elif cfg.json_schema:
            req["messages"] = with_system(text_history(messages), JSON_TOOLS_PROMPT.format(tools=tool_lines(tools)))
            schema = action_schema(tools)
            if cfg.response_format == "json_object":
                req["response_format"] = {"type": "json_object", "schema": schema}
            else:
                req["response_format"] = {"type": "json_schema", "json_schema": {"name": "turn", "schema": schema}}
        else:
            req["messages"] = text_prompt(messages, tools)
        return req

    async def _complete(self, req: dict[str, Any], errors: list[dict[str, Any]], turn: int) -> Any:
        cfg = self.cfg
        for attempt in range(cfg.retries + 1):
            self.stats["requests"] += 1
            try:
                resp = await asyncio.wait_for(self.client.chat.completions.create(**req), cfg.timeout)
                self.stats["ok_requests"] += 1
                return resp
            except Exception as exc:
                kind = classify(exc)
                errors.append({"turn": turn, "attempt": attempt, "type": type(exc).__name__, "message": _err(exc)})
                if kind == "fatal":
                    raise RunAborted(f"{type(exc).__name__}: {_err(exc)}") from exc
                if kind == "bad_request":
                    raise BadRequest(_err(exc)) from exc
                self.stats["retried_errors"] += 1
                if attempt == cfg.retries:
                    raise EpisodeFailed(
                        f"{cfg.retries + 1} attempts failed, last: {type(exc).__name__}: {_err(exc)}"
                    ) from exc
                delay = _retry_after(exc)
                if delay is None:
                    delay = cfg.backoff * 2**attempt * (0.5 + random.random())
                await asyncio.sleep(min(delay, 60.0))
        raise AssertionError("unreachable")

    async def act(self, obs: dict[str, Any], turn: int, errors: list[dict[str, Any]]) -> Turn:
        resp = await self._complete(self._request(obs["messages"], obs["tools"]), errors, turn)
        usage = getattr(resp, "usage", None)
        if usage is not None:
            self.stats["prompt_tokens"] += getattr(usage, "prompt_tokens", 0) or 0
            self.stats["completion_tokens"] += getattr(usage, "completion_tokens", 0) or 0
        if not resp.choices:
            raise BadRequest("the server returned no choices")
        msg = resp.choices[0].message
        content = msg.content or ""
        if self.cfg.mode == "native":
            out: dict[str, Any] = {"role": "assistant", "content": content}
            if msg.tool_calls:
                out["tool_calls"] = [
                    {
                        "id": tc.id or f"call_{turn}_{i}",
                        "type": "function",
                        "function": {"name": tc.function.name, "arguments": tc.function.arguments},
                    }
                    for i, tc in enumerate(msg.tool_calls)
                ]
            return Turn(out, out, out)
        history = {"role": "assistant", "content": content}
        if self.cfg.json_schema:
            action, note = json_to_action(content, turn)
            return Turn(action, content, history, note)
        return Turn(content, content, history)


class AgentPolicy:
    """A built-in agent (``gold``, ``random``) behind the same interface; one agent object per episode."""

    def __init__(self, name: str):
        self.name = name
        self.stats: dict[str, int] = {}

    async def close(self) -> None:
        pass

    def start(self, env: gym.Env, obs: dict, info: dict, seed: int) -> Any:
        agent = make_agent(self.name)
        agent.reset(env, obs, info, seed=seed)
        return agent


# -- the runner ---------------------------------------------------------------------------------------------------
def read_episodes(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Finished episodes by ``(env_id, seed)``; a truncated last line is cut from the file, duplicates ignored."""
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for line in complete_lines(path):
        try:
            rec = json.loads(line)
            key = (rec["env_id"], int(rec["seed"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        done.setdefault(key, rec)
    return done


class _EnvPool:
    def __init__(self, cfg: EvalConfig):
        self.cfg = cfg
        self.free: dict[str, list[gym.Env]] = defaultdict(list)

    def kwargs(self, env_id: str) -> dict[str, Any]:
        kw = dict(self.cfg.env_kwargs) if manifest_for(env_id)["type"] != "static" else {}
        if self.cfg.max_turns is not None:
            kw["max_turns"] = self.cfg.max_turns
        return kw

    def get(self, env_id: str) -> gym.Env:
        return self.free[env_id].pop() if self.free[env_id] else gym.make(env_id, **self.kwargs(env_id))

    def put(self, env_id: str, env: gym.Env) -> None:
        self.free[env_id].append(env)

    def close(self) -> None:
        for envs in self.free.values():
            for env in envs:
                env.close()


async def _play(env: gym.Env, env_id: str, seed: int, policy: ModelPolicy | AgentPolicy) -> dict[str, Any]:
    obs, info = env.reset(seed=seed)
    agent = policy.start(env, obs, info, seed) if isinstance(policy, AgentPolicy) else None
    errors: list[dict[str, Any]] = []
    completions: list[Any] = []
    rewards: list[float] = []
    view = list(obs["messages"])  # the conversation as the model sees it
    finish = None
    t0 = time.perf_counter()
    while True:
        turn_no = len(rewards) + 1
        if agent is not None:
            turn = Turn(agent.act(obs), None)
        else:
            try:
                turn = await policy.act({"messages": view, "tools": obs["tools"]}, turn_no, errors)
            except BadRequest as exc:
                if turn_no == 1:  # the model never acted (settings the server rejects, a prompt over its context)
                    raise EpisodeFailed(f"the server rejected the episode's first request: {exc}") from exc
                finish = "bad_request"  # the dialogue outgrew what the server accepts: the episode ends here
                errors.append({"turn": turn_no, "type": "BadRequest", "message": str(exc), "final": True})
                break
        if turn.note:
            errors.append({"turn": turn_no, "type": "format", "message": turn.note})
        n_before = len(obs["messages"])
        obs, reward, terminated, truncated, _ = env.step(turn.action)
        new = obs["messages"][n_before:]
        view.extend([turn.history or new[0], *new[1:]])
        completions.append(turn.record)
        rewards.append(float(reward))
        if terminated or truncated:
            finish = "answer" if terminated else "max_turns"
            break
    metrics = env.unwrapped.episode_metrics()
    rec: dict[str, Any] = {
        "env_id": env_id,
        "seed": seed,
        "scenario_id": info["scenario_id"],
        "kind": info["kind"],
        "solve_p": metrics["solve_p"],
        "solve_r": metrics["solve_r"],
        "solve_f1": metrics["solve_f1"],
        "return": metrics["return"],
        "turns": len(rewards),
        "n_calls": int(metrics["n_calls"]),
        "n_obtained": int(metrics["n_obtained"]),
        "n_expected": int(metrics["n_expected"]),
        "state_ok": bool(metrics["state_ok"]),
        "finish": finish,
        "rewards": rewards,
        "errors": errors,
        "seconds": round(time.perf_counter() - t0, 3),
        "messages": obs["messages"],
    }
    if agent is None:
        rec["completions"] = completions
    return rec


async def arun_eval(cfg: EvalConfig) -> dict[str, Any]:
    """The async body of :func:`run_eval` (for callers that already run an event loop)."""
    out = cfg.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        _check_config(out, cfg)
        return await _run(cfg, out)


async def play_one(env_id: str, seed: int, pool: _EnvPool, policy: ModelPolicy | AgentPolicy) -> tuple[str, Any]:
    """Play one episode with an env from ``pool``: ``("ok", record)``, ``("failed", why)`` (the requests kept
    failing: not written, a rerun redoes it) or ``("aborted", why)`` (an error that stops the run).

    The one episode runner of both backends: the local asyncio workers and the Ray workers call it."""
    env = pool.get(env_id)
    try:
        return "ok", await _play(env, env_id, seed, policy)
    except EpisodeFailed as exc:
        return "failed", str(exc)
    except RunAborted as exc:
        return "aborted", str(exc)
    finally:
        pool.put(env_id, env)


async def _run(cfg: EvalConfig, out: Path) -> dict[str, Any]:
    path = out / EPISODES_FILE
    done = read_episodes(path)
    todo = [(e, cfg.seed + i) for e in cfg.env_ids for i in range(cfg.episodes) if (e, cfg.seed + i) not in done]
    state = {"failed": 0, "consecutive": 0, "aborted": None, "written": 0, "f1": 0.0, "bad_request": 0}
    limit = cfg.max_consecutive_failures or max(3, cfg.concurrency)
    bar = _progress(cfg, len(todo), len(done))
    stats: dict[str, int] = {}

    def record(outcome: tuple[str, Any], f: Any) -> None:
        """Account for one finished episode and append it to episodes.jsonl (both backends, arrival order)."""
        status, value = outcome
        if status == "failed":
            state["failed"] += 1
            state["consecutive"] += 1
            state["last_error"] = value
            if state["consecutive"] >= limit and state["aborted"] is None:
                state["aborted"] = f"{state['consecutive']} episodes in a row failed after retries ({value})"
            return
        if status == "aborted":
            state["aborted"] = state["aborted"] or value
            return
        if (value["env_id"], value["seed"]) in done:  # a retried episode that had already been written
            return
        done[(value["env_id"], value["seed"])] = value
        state["consecutive"] = 0
        state["written"] += 1
        state["f1"] += value["solve_f1"]
        state["bad_request"] += value["finish"] == "bad_request"
        f.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
        f.flush()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(f1=f"{100 * state['f1'] / state['written']:.1f}", failed=state["failed"])

    try:
        with open(path, "a", encoding="utf-8") as f:
            if cfg.backend == "ray":
                stats = _run_ray(cfg, todo, lambda o: record(o, f), state)  # blocks this loop: a ray.wait loop
            else:
                stats = await _run_local(cfg, todo, lambda o: record(o, f), state)
    finally:
        if bar is not None:
            bar.close()
    summary = build_summary(cfg, read_episodes(path))
    summary["run"] = {
        "out_dir": str(out),
        "backend": cfg.backend,
        "written_this_run": state["written"],
        "failed_this_run": state["failed"],
        "bad_request_this_run": state["bad_request"],
        "aborted": state["aborted"],
        "last_error": state.get("last_error"),
        **stats,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_chart(summary, out / "summary.png")
    return summary


def _policy(cfg: EvalConfig) -> ModelPolicy | AgentPolicy:
    return ModelPolicy(cfg) if cfg.model else AgentPolicy(cfg.agent or "")


async def _run_local(cfg: EvalConfig, todo: list[tuple[str, int]], record: Any, state: dict) -> dict[str, int]:
    """``cfg.concurrency`` episodes at a time on this event loop; returns the policy's request counters."""
    policy = _policy(cfg)
    pool = _EnvPool(cfg)
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty() and state["aborted"] is None:
            env_id, seed = queue.get_nowait()
            record(await play_one(env_id, seed, pool, policy))

    try:
        await asyncio.gather(*(worker() for _ in range(min(cfg.concurrency, len(todo)) or 1)))
    finally:
        pool.close()
        await policy.close()
    return dict(policy.stats)


class _RayEpisodes:
    """The state of one Ray worker: an env pool and a policy (its own model client), kept for all its episodes."""

    def __init__(self, cfg: EvalConfig):
        import uuid

        self.id = uuid.uuid4().hex
        self.pool = _EnvPool(cfg)
        self.policy = _policy(cfg)


async def _ray_play(worker: _RayEpisodes, item: tuple[str, int]) -> tuple[tuple[str, Any], str, dict[str, int]]:
    outcome = await play_one(item[0], item[1], worker.pool, worker.policy)
    return outcome, worker.id, dict(worker.policy.stats)


def _run_ray(cfg: EvalConfig, todo: list[tuple[str, int]], record: Any, state: dict) -> dict[str, int]:
    """The episodes as Ray tasks on worker actors; each result is recorded as it arrives (``ray.wait`` loop).

    Model runs: every worker talks to the server itself, ``cfg.concurrency`` episodes in flight over all workers.
    Returns the request counters summed over the workers."""
    import functools

    from toolgym import distributed

    if not todo:
        return {}
    distributed.init(cfg.ray_address)
    n = max(1, min(cfg.num_workers or distributed.cluster_cpus(), len(todo)))
    per_worker = -(-cfg.concurrency // n) if cfg.model else None
    latest: dict[str, dict[str, int]] = {}
    results = distributed.map_unordered(
        _ray_play,
        todo,
        setup=functools.partial(_RayEpisodes, cfg),
        num_workers=n,
        per_worker=per_worker,
        stop=lambda: state["aborted"] is not None,
    )
    for _, (outcome, worker_id, worker_stats) in results:
        latest[worker_id] = worker_stats
        record(outcome)
    totals: dict[str, int] = {}
    for worker_stats in latest.values():
        for k, v in worker_stats.items():
            totals[k] = totals.get(k, 0) + v
    return totals


def run_eval(env_ids: str | list[str], **kwargs: Any) -> dict[str, Any]:
    """Evaluate a model (``model=``, ``base_url=``) or a built-in agent (``agent=``) on ``env_ids``.

    Keyword arguments are :class:`EvalConfig` fields. Returns the summary (also written to ``summary.json``):
    ``summary["complete"]`` tells whether every episode is in ``episodes.jsonl``; ``summary["missing"]`` how many
    are not (rerun the same call to do them).
    """
    cfg = EvalConfig([env_ids] if isinstance(env_ids, str) else env_ids, **kwargs)
    return asyncio.run(arun_eval(cfg))


def _check_config(out: Path, cfg: EvalConfig) -> None:
    path = out / "config.json"
    mine = cfg.result_config()
    if path.exists():
        theirs = json.loads(path.read_text(encoding="utf-8"))
        diff = {k: (theirs.get(k), v) for k, v in json.loads(json.dumps(mine)).items() if theirs.get(k) != v}
        if diff:
            detail = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise ValueError(f"{out} holds results of other settings ({detail}); use another --out")
    else:
        path.write_text(json.dumps(mine, indent=2) + "\n", encoding="utf-8")


def _progress(cfg: EvalConfig, total: int, done: int) -> Any:
    if not cfg.progress or total == 0:
        return None
    from tqdm.auto import tqdm

    who = cfg.model or cfg.agent
    return tqdm(total=total + done, initial=done, desc=f"eval {who}", unit="ep", dynamic_ncols=True)


# -- summary, table, chart ---------------------------------------------------------------------------------------
def build_summary(cfg: EvalConfig, done: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """Per env: one row per scenario kind plus ``all`` (Solve-P/R/F1 ×100, return, turns), over the requested seeds."""
    envs: dict[str, Any] = {}
    n_done = 0
    for env_id in cfg.env_ids:
        recs = [done[(env_id, cfg.seed + i)] for i in range(cfg.episodes) if (env_id, cfg.seed + i) in done]
        n_done += len(recs)
        envs[env_id] = {
            "episodes": len(recs),
            "missing": cfg.episodes - len(recs),
            "bad_request": sum(r.get("finish") == "bad_request" for r in recs),
            "rows": summarize(recs) if recs else [],
        }
    expected = cfg.episodes * len(cfg.env_ids)
    config = {**cfg.result_config(), "episodes": cfg.episodes, "base_url": cfg.base_url}
    return {
        "config": config,
        "episodes_expected": expected,
        "episodes_done": n_done,
        "missing": expected - n_done,
        "complete": n_done == expected,
        "envs": envs,
    }


def format_summary(summary: dict[str, Any]) -> str:
    cfg = summary["config"]
    who = f"model={cfg['model']} mode={cfg['mode']}{' json' if cfg['json_schema'] else ''}" if cfg["model"] else ""
    who = who or f"agent={cfg['agent']}"
    parts = []
    for env_id, e in summary["envs"].items():
        title = f"\n{env_id}  {who}  episodes={e['episodes']}/{cfg['episodes']}  seed={cfg['seed']}"
        parts.append(format_table(title, e["rows"]))
    return "\n".join(parts)


def write_chart(summary: dict[str, Any], path: Path) -> None:
    """Bar chart of Solve-P / Solve-R / Solve-F1 per scenario kind, one panel per env (Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(summary["envs"].items())
    fig, axes = plt.subplots(len(envs), 1, figsize=(9, 3.2 * len(envs)), squeeze=False)
    metrics = (("solve_p", "Solve-P"), ("solve_r", "Solve-R"), ("solve_f1", "Solve-F1"))
    width = 0.27
    for ax, (env_id, e) in zip(axes[:, 0], envs, strict=True):
        rows = e["rows"]
        ax.set_title(f"{env_id}  ({e['episodes']} episodes)", fontsize=10)
        if not rows:
            ax.text(0.5, 0.5, "no finished episodes yet", ha="center", va="center", transform=ax.transAxes)
            continue
        xs = range(len(rows))
        for j, (key, label) in enumerate(metrics):
            ax.bar([x + (j - 1) * width for x in xs], [r[key] for r in rows], width, label=label)
        ax.set_xticks(list(xs), [f"{r['kind']}\n(n={r['episodes']})" for r in rows], fontsize=8)
        ax.set_ylim(0, 122)  # headroom for the legend
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("×100")
        ax.legend(fontsize=8, ncols=3, loc="upper right")
    cfg = summary["config"]
    fig.suptitle(str(cfg["model"] or cfg["agent"]), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
