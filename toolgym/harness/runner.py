"""Running an evaluation: which episodes are still to do, the local asyncio backend, the record of each episode.

``episodes.jsonl`` is appended and flushed as each episode finishes (either backend, arrival order); a rerun
reads it back (:func:`read_episodes`) and does only the missing ``(env_id, seed)`` episodes. ``config.json``
pins the result-defining settings of the directory. Failed episodes (requests that kept failing) are not
written; after ``max_consecutive_failures`` in a row no new episode starts.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from toolgym.harness.config import EPISODES_FILE, EvalConfig
from toolgym.harness.episode import EnvPool, play_one
from toolgym.harness.policies import make_policy, make_user_client, request_stats
from toolgym.harness.ray_runner import run_ray
from toolgym.harness.summary import build_summary, write_chart
from toolgym.jsonl import complete_lines, exclusive


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


async def arun_eval(cfg: EvalConfig) -> dict[str, Any]:
    """The async body of :func:`run_eval` (for callers that already run an event loop)."""
    out = cfg.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        _check_config(out, cfg)
        return await _run(cfg, out)


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
                stats = run_ray(cfg, todo, lambda o: record(o, f), state)  # blocks this loop: a ray.wait loop
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


async def _run_local(cfg: EvalConfig, todo: list[tuple[str, int]], record: Any, state: dict) -> dict[str, int]:
    """``cfg.concurrency`` episodes at a time on this event loop; returns the policy's request counters."""
    policy = make_policy(cfg)
    user_client = make_user_client(cfg, policy)
    pool = EnvPool(cfg, user_client)
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
        if user_client is not None and user_client is not getattr(policy, "client", None):
            await user_client.close()
    return request_stats(policy, user_client)


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
