"""One episode: an env from a pool, a policy, the turns until the env ends it, and the line that records it.

The one episode runner of both backends: the local asyncio workers (:mod:`toolgym.harness.runner`) and the Ray
workers (:mod:`toolgym.harness.ray_runner`) call :func:`play_one`.

An env whose user is a model (a τ-bench domain with ``{"kind": "model", ...}`` as its ``user``) gets the run's
user client and this event loop; its ``reset`` and ``step`` then wait for the user's reply, so they run in a
worker thread (``asyncio.to_thread``) while the request runs here, beside the other episodes' requests.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import gymnasium as gym

from toolgym.evaluate import SUITE_METRICS
from toolgym.harness.config import EvalConfig
from toolgym.harness.policies import AgentPolicy, EpisodeFailed, ModelPolicy, Turn
from toolgym.model_client import BadRequest, ChatClient, RetriesExhausted, RunAborted, error_text
from toolgym.registry import env_options, kwargs_for


class EnvPool:
    """Envs kept between episodes, per env id (making an env loads its pack: reuse pays).

    Each env gets the run's env kwargs it takes (:func:`~toolgym.registry.kwargs_for`), ``max_turns``, and, when
    it takes a ``user_client`` and the run has one, that client and the loop it runs on."""

    def __init__(self, cfg: EvalConfig, user_client: ChatClient | None = None):
        self.cfg = cfg
        self.user_client = user_client
        self.free: dict[str, list[gym.Env]] = defaultdict(list)

    def kwargs(self, env_id: str) -> dict[str, Any]:
        kw = kwargs_for(env_id, self.cfg.env_kwargs)
        if self.cfg.max_turns is not None:
            kw["max_turns"] = self.cfg.max_turns
        if self.offloop(env_id):
            kw["user_client"] = self.user_client
            kw["user_loop"] = asyncio.get_running_loop()
        return kw

    def offloop(self, env_id: str) -> bool:
        """Whether the env's steps wait on this loop's user client (so they must run in a thread)."""
        return (
            self.user_client is not None
            and "user" in kwargs_for(env_id, self.cfg.env_kwargs)
            and "user_client" in env_options(env_id)
        )

    def get(self, env_id: str) -> gym.Env:
        return self.free[env_id].pop() if self.free[env_id] else gym.make(env_id, **self.kwargs(env_id))

    def put(self, env_id: str, env: gym.Env) -> None:
        self.free[env_id].append(env)

    def close(self) -> None:
        for envs in self.free.values():
            for env in envs:
                env.close()


class _UserFailed(Exception):
    """The user model's request failed inside a step (``cause``: the client's exception)."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


async def _env_call(offloop: bool, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``: in a worker thread when it waits on this loop's user client, else right here."""
    if not offloop:
        return fn(*args, **kwargs)
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except (BadRequest, RunAborted) as exc:
        raise _UserFailed(exc) from exc


def _watch_user(env: gym.Env, errors: list[dict[str, Any]], turn: list[int]) -> None:
    """Record the user model's failed requests in the episode's ``errors``, as the agent's are."""
    user = getattr(env.unwrapped, "user", None)
    if user is None or not hasattr(user, "on_error"):
        return

    def note(attempt: int, exc: BaseException) -> None:
        errors.append(
            {"turn": turn[0], "attempt": attempt, "type": type(exc).__name__, "message": error_text(exc), "who": "user"}
        )

    user.on_error = note


async def _play(
    env: gym.Env,
    env_id: str,
    seed: int,
    policy: ModelPolicy | AgentPolicy,
    offloop: bool = False,
    broken: list[bool] | None = None,
) -> dict[str, Any]:
    broken = broken if broken is not None else [False]  # set when the env raised mid-turn
    errors: list[dict[str, Any]] = []
    turn_at = [0]  # the turn the user model is answering (0: its opening message)
    if offloop:
        _watch_user(env, errors, turn_at)
    try:
        obs, info = await _env_call(offloop, env.reset, seed=seed)
    except _UserFailed as exc:  # the user never spoke: nothing to score, a rerun redoes the episode
        broken[0] = True
        if isinstance(exc.cause, RunAborted) and not isinstance(exc.cause, RetriesExhausted):
            raise exc.cause from None
        raise EpisodeFailed(f"the user model's opening request failed: {exc}") from exc
    agent = policy.start(env, obs, info, seed) if isinstance(policy, AgentPolicy) else None
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
        turn_at[0] = turn_no
        try:
            obs, reward, terminated, truncated, _ = await _env_call(offloop, env.step, turn.action)
        except _UserFailed as exc:
            broken[0] = True
            cause = exc.cause
            if isinstance(cause, RetriesExhausted):
                raise EpisodeFailed(f"the user model's requests kept failing: {cause}") from cause
            if not isinstance(cause, BadRequest):
                raise cause from None
            finish = "bad_request"  # the dialogue outgrew what the user model's server accepts
            errors.append({"turn": turn_no, "type": "BadRequest", "message": str(cause), "final": True, "who": "user"})
            break
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
        **{k: metrics[k] for k in SUITE_METRICS if k in metrics},
        "finish": finish,
        "rewards": rewards,
        "errors": errors,
        "seconds": round(time.perf_counter() - t0, 3),
        "messages": obs["messages"],
    }
    if agent is None:
        rec["completions"] = completions
    return rec


async def play_one(env_id: str, seed: int, pool: EnvPool, policy: ModelPolicy | AgentPolicy) -> tuple[str, Any]:
    """Play one episode with an env from ``pool``: ``("ok", record)``, ``("failed", why)`` (the requests kept
    failing: not written, a rerun redoes it) or ``("aborted", why)`` (an error that stops the run).

    Both backends call it. An env whose ``reset`` or ``step`` raised is closed, not reused: it stopped
    mid-turn, and gymnasium's checker wrapper around it would trip on the next episode."""
    env = pool.get(env_id)
    broken: list[bool] = [False]
    try:
        return "ok", await _play(env, env_id, seed, policy, pool.offloop(env_id), broken)
    except EpisodeFailed as exc:
        return "failed", str(exc)
    except RunAborted as exc:
        return "aborted", str(exc)
    finally:
        if broken[0]:
            env.close()
        else:
            pool.put(env_id, env)
