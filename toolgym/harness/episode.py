"""One episode: an env from a pool, a policy, the turns until the env ends it, and the line that records it.

The one episode runner of both backends: the local asyncio workers (:mod:`toolgym.harness.runner`) and the Ray
workers (:mod:`toolgym.harness.ray_runner`) call :func:`play_one`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import gymnasium as gym

from toolgym.evaluate import SUITE_METRICS
from toolgym.harness.config import EvalConfig
from toolgym.harness.policies import AgentPolicy, EpisodeFailed, ModelPolicy, Turn
from toolgym.model_client import BadRequest, RunAborted
from toolgym.registry import takes_knobs


class EnvPool:
    """Envs kept between episodes, per env id (making an env loads its pack: reuse pays)."""

    def __init__(self, cfg: EvalConfig):
        self.cfg = cfg
        self.free: dict[str, list[gym.Env]] = defaultdict(list)

    def kwargs(self, env_id: str) -> dict[str, Any]:
        kw = dict(self.cfg.env_kwargs) if takes_knobs(env_id) else {}
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

    Both backends call it."""
    env = pool.get(env_id)
    try:
        return "ok", await _play(env, env_id, seed, policy)
    except EpisodeFailed as exc:
        return "failed", str(exc)
    except RunAborted as exc:
        return "aborted", str(exc)
    finally:
        pool.put(env_id, env)
