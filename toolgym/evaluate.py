"""Running agents through envs and reporting the paper's metrics (Solve-P / Solve-R / Solve-F1, ×100)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import gymnasium as gym

from toolgym.agents import make_agent
from toolgym.scenario import EXTRA_KINDS


def run_episode(env: gym.Env, agent: Any, seed: int, options: dict | None = None) -> dict[str, Any]:
    """Play one episode; returns its metrics and the full dialogue."""
    obs, info = env.reset(seed=seed, options=options)
    agent.reset(env, obs, info, seed=seed)
    rewards = []
    while True:
        obs, reward, terminated, truncated, step_info = env.step(agent.act(obs))
        rewards.append(reward)
        if terminated or truncated:
            break
    return {
        "seed": seed,
        "scenario_id": info["scenario_id"],
        "kind": info["kind"],
        "rewards": rewards,
        "terminated": terminated,
        **step_info["episode"],
        "messages": obs["messages"],
    }


def evaluate(env_id: str, agent_name: str, episodes: int, seed: int = 0, **env_kwargs: Any) -> list[dict[str, Any]]:
    """``episodes`` episodes of a built-in agent on ``env_id`` with seeds ``seed .. seed+episodes-1``."""
    env = gym.make(env_id, **env_kwargs)
    agent = make_agent(agent_name)
    try:
        return [run_episode(env, agent, seed + i) for i in range(episodes)]
    finally:
        env.close()


# A suite's own episode score, reported beside Solve-P/R/F1 as FTRL's Table 2 does (key in the episode metrics ->
# column title): BFCL's AST accuracy, its multi-turn accuracy and τ-bench's Pass^1.
SUITE_METRICS = {"bfcl_ast": "BFCL-acc", "bfcl_multi_turn": "BFCL-MT", "pass": "Pass^1"}
# Suite scores of episodes without sub-answers: a row of such episodes has no Solve-P/R/F1 (None, printed "n/a").
# τ-bench's tasks are judged on the end state of the world and on the outputs said to the user; most have no
# outputs at all, and the writes that matter are not values a tool returns, so no sub-answer set is faithful.
# BFCL's multi-turn entries are judged per user turn on the instances' state and the calls' results, likewise.
NO_SUB_ANSWERS = ("pass", "bfcl_multi_turn")
_SOLVE = ("solve_p", "solve_r", "solve_f1")


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per scenario kind plus an ``all`` row: episode-averaged metrics (×100) and mean return.

    The kinds beyond FTRL's (:data:`toolgym.scenario.EXTRA_KINDS`) get their own rows after ``all`` and are left
    out of it, so ``all`` stays the paper's metric over FTRL's kinds (it is absent when only extra kinds ran).
    A suite's own score (:data:`SUITE_METRICS`) is averaged too (×100) when every episode of the row has it; a
    row whose episodes all have a score of :data:`NO_SUB_ANSWERS` has ``None`` for Solve-P/R/F1.
    """
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[r["kind"]].append(r)
        if r["kind"] not in EXTRA_KINDS:
            groups["all"].append(r)
    rows = []
    for kind in sorted(groups, key=lambda k: (k in EXTRA_KINDS, k == "all", k)):
        rs = groups[kind]
        n = len(rs)
        no_subs = any(all(k in r for r in rs) for k in NO_SUB_ANSWERS)
        rows.append(
            {
                "kind": kind,
                "episodes": n,
                **{k: None if no_subs else 100 * sum(r[k] for r in rs) / n for k in _SOLVE},
                "return": sum(r["return"] for r in rs) / n,
                "turns": sum(r["turns"] for r in rs) / n,
                **{k: 100 * sum(r[k] for r in rs) / n for k in SUITE_METRICS if all(k in r for r in rs)},
            }
        )
    return rows


def format_table(title: str, rows: list[dict[str, Any]]) -> str:
    suite = [k for k in SUITE_METRICS if rows and all(k in r for r in rows)]
    head = f"{'kind':<22}{'episodes':>9}" + "".join(f"{SUITE_METRICS[k]:>10}" for k in suite)
    head += f"{'Solve-P':>9}{'Solve-R':>9}{'Solve-F1':>9}{'return':>9}"
    lines = [title, head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['kind']:<22}{r['episodes']:>9}"
            + "".join(f"{r[k]:>10.1f}" for k in suite)
            + "".join(f"{'n/a':>9}" if r[k] is None else f"{r[k]:>9.1f}" for k in _SOLVE)
            + f"{r['return']:>9.3f}"
        )
    return "\n".join(lines)
