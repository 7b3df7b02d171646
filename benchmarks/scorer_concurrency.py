"""The verl scorer (``toolgym.export.compute_score``) under verl-style concurrency, against sequential scoring.

verl's reward loop scores a batch's rows at once on a thread pool (``loop.run_in_executor(None, ...)``: the event
loop's default executor, which lives across batches), so the scorer keeps one env cache per thread. This
benchmark scores one batch of rl rows (a few gold episodes of a couple of envs; each row with its gold turn and
non-gold turns: another row's turn, a wrong final answer, an unreadable call) sequentially in the main thread and
on persistent ThreadPoolExecutors of 1, 8 and 32 threads, in interleaved rounds. It reports rows/s (the median
batch), the first batch's rows/s (fresh threads build their envs), and how many results (the whole dict: score
and every reward component; an exception counts too) differ from the sequential ones; that count must be 0.

    python benchmarks/scorer_concurrency.py [--calls 2000] [--rounds 2] [--threads 1,8,32] [--episodes 6] [--out FILE]
    python benchmarks/scorer_concurrency.py --calls 100 --rounds 1 --threads 1,4 --episodes 1   # tiny (smoke test)

``--switch-interval`` (seconds; CPython's default is 0.005) makes threads switch more often, to provoke races.
Exits 1 when any score differs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gymnasium as gym

import toolgym  # noqa: F401  (registers the ToolGym/ ids)
from toolgym.export import compute_score, gold_episode, rl_rows

DEFAULT_ENVS = ("ToolGym/FlightBooking-v0", "ToolGym/Banking-v0")
WRONG_ANSWER = "I could not find that."
UNREADABLE = '<tool_call>\n{"name": "get_booking", "arguments": {\n</tool_call>'


def batch_rows(env_ids: list[str], episodes: int, seed: int) -> list[dict[str, Any]]:
    """The rl rows (verl columns included) of ``episodes`` gold episodes per env, seeds ``seed ..``."""
    rows: list[dict[str, Any]] = []
    for env_id in env_ids:
        env = gym.make(env_id, split="train")
        try:
            for s in range(seed, seed + episodes):
                rows += rl_rows(gold_episode(env, s), env_id, "train", {"split": "train"})
        finally:
            env.close()
    return rows


def jobs_for(rows: list[dict[str, Any]], calls: int, seed: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    """``calls`` verl scorer calls ``(data_source, solution_str, ground_truth, extra_info)``, gold and non-gold."""
    rng = random.Random(seed)
    one_round = []
    for row in rows:
        for response in (row["gold_response"], rng.choice(rows)["gold_response"], WRONG_ANSWER, UNREADABLE):
            one_round.append((row["data_source"], response, row["reward_model"]["ground_truth"], row["extra_info"]))
    rng.shuffle(one_round)
    return [one_round[i % len(one_round)] for i in range(calls)]


def _score(job: tuple[str, str, str, dict[str, Any]]) -> dict[str, Any]:
    """The scorer's result, or the exception it raised (verl would fail the batch; here it counts as differing)."""
    try:
        return compute_score(*job)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def run_sequential(jobs: list) -> tuple[float, list[dict[str, Any]]]:
    t0 = time.perf_counter()
    out = [_score(j) for j in jobs]
    return time.perf_counter() - t0, out


def run_pool(pool: ThreadPoolExecutor, jobs: list) -> tuple[float, list[dict[str, Any]]]:
    t0 = time.perf_counter()
    out = list(pool.map(_score, jobs))
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", default=",".join(DEFAULT_ENVS), help="comma-separated env ids")
    ap.add_argument("--episodes", type=int, default=6, help="gold episodes per env (each gives one row per turn)")
    ap.add_argument("--calls", type=int, default=2000, help="scorer calls per run (the batch, cycled)")
    ap.add_argument("--threads", default="1,8,32", help="comma-separated thread-pool sizes")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every mode (medians reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval during the pools")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scorer_concurrency.json"))
    args = ap.parse_args(argv)
    env_ids = [e for e in args.envs.split(",") if e]
    threads = [int(t) for t in args.threads.split(",") if t]
    if args.calls < 1 or args.episodes < 1 or args.rounds < 1 or not env_ids or not threads or min(threads) < 1:
        ap.error("--calls, --episodes and every --threads value must be >= 1, with at least one env")

    rows = batch_rows(env_ids, args.episodes, args.seed)
    jobs = jobs_for(rows, args.calls, args.seed)
    run_sequential(jobs[: min(len(jobs), 50)])  # warm the main thread's envs and the tool compile cache

    _, want = run_sequential(jobs)  # the reference scores
    if any("error" in w for w in want):
        raise SystemExit(f"sequential scoring failed: {next(w for w in want if 'error' in w)}")
    times: dict[int, list[float]] = {0: [], **{n: [] for n in threads}}
    cold: dict[int, float] = {}
    diffs: dict[int, int] = dict.fromkeys(times, 0)
    errors: list[str] = []

    def check(n: int, got: list[dict[str, Any]]) -> None:
        diffs[n] += sum(a != b for a, b in zip(got, want, strict=True))
        errors.extend(g["error"] for g in got if "error" in g)

    old_interval = sys.getswitchinterval()
    pools = {n: ThreadPoolExecutor(max_workers=n) for n in threads}  # persistent, as verl's default executor
    try:
        if args.switch_interval is not None:
            sys.setswitchinterval(args.switch_interval)
        for n, pool in pools.items():  # the first batch: every thread builds its envs
            cold[n], got = run_pool(pool, jobs)
            check(n, got)
        for _ in range(args.rounds):  # interleaved, so machine noise hits every mode alike; medians are reported
            sys.setswitchinterval(old_interval)
            secs, got = run_sequential(jobs)
            times[0].append(secs)
            check(0, got)
            if args.switch_interval is not None:
                sys.setswitchinterval(args.switch_interval)
            for n, pool in pools.items():
                secs, got = run_pool(pool, jobs)
                times[n].append(secs)
                check(n, got)
    finally:
        sys.setswitchinterval(old_interval)
        for pool in pools.values():
            pool.shutdown()
    results = []
    for n, secs in times.items():
        med = statistics.median(secs)
        results.append(
            {
                "mode": "thread pool" if n else "sequential",
                "threads": n,
                "calls": len(jobs) * (args.rounds + (1 if n else 0)),
                "seconds_median": med,
                "rows_per_s": len(jobs) / med,
                "first_batch_rows_per_s": len(jobs) / cold[n] if n else None,
                "mismatches": diffs[n],
            }
        )
    for r in results:
        r["vs_sequential"] = r["rows_per_s"] / results[0]["rows_per_s"]

    concurrent_calls = sum(r["calls"] for r in results if r["threads"] > 1)
    mismatches = sum(r["mismatches"] for r in results)
    scores = [s["score"] for s in want]
    print(f"{len(rows)} rows of {', '.join(env_ids)}; {len(jobs)} scorer calls per run, {args.rounds} rounds")
    print(f"{'run':<14}{'threads':>8}{'calls':>8}{'s/batch':>9}{'rows/s':>9}{'x seq':>7}{'1st batch':>11}{'differ':>8}")
    for r in results:
        t = r["threads"] or "-"
        first = f"{r['first_batch_rows_per_s']:.0f}" if r["first_batch_rows_per_s"] else "-"
        print(
            f"{r['mode']:<14}{t:>8}{r['calls']:>8}{r['seconds_median']:>9.2f}{r['rows_per_s']:>9.0f}"
            f"{r['vs_sequential']:>7.2f}{first:>11}{r['mismatches']:>8}"
        )
    print(f"concurrent calls (pools of > 1 thread): {concurrent_calls}; scores differing from sequential: {mismatches}")
    for e in sorted(set(errors))[:5]:
        print(f"  raised: {e}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "envs": env_ids,
        "episodes_per_env": args.episodes,
        "rows": len(rows),
        "calls_per_run": len(jobs),
        "concurrent_calls": concurrent_calls,
        "mismatches": mismatches,
        "rounds": args.rounds,
        "switch_interval": args.switch_interval,
        "errors": sorted(set(errors)),
        "score_range": [min(scores), max(scores)],  # the scores are not all alike
        "runs": results,
    }
    out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
