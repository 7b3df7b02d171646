"""Env-steps per second of the single env vs the native batched env and Gymnasium's sync / async vectorizers.

Workload: FlightBooking episodes played by the gold agent (every episode ends after a few turns, so resets are
part of the mix, as in training). The actions are recorded beforehand with single envs (env i seeded with i,
next-step autoreset), so the timed loops only index a list: they measure env overhead, not the action source.
Every mode replays exactly the same (env, action) sequence; an env-step is one sub-env transition, either a
``step`` or the next-step autoreset ``reset`` that replaces it, counted the same way for the single env.
The total reward of each run is checked against the recording (a wrong or shuffled observation would change it).

    python benchmarks/vector_throughput.py            # < 2 minutes on 2 cores
    python benchmarks/vector_throughput.py --quick    # smoke run

Prints a table and writes benchmarks/results/vector_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym

import toolgym  # noqa: F401
from toolgym.vector import make_async

ENV_ID = "ToolGym/FlightBooking-v0"
RESET = None  # a recorded slot where the env is being autoreset (its action is ignored)
FILLER = "ignored"
ASYNC_CAP = 16
NO_COPY = {"copy": False}  # SyncVectorEnv deep-copies the observations unless told not to
ASYNC_ENV_STEPS = 512  # async is slow per step: fewer env-steps keep the run short


def record(n_envs: int, lengths: list[int]) -> tuple[list[list[str | None]], list[list[float]]]:
    """Per env i (seed i): the gold action of every env-step (RESET where it autoresets) and its reward."""
    actions, rewards = [], []
    for i in range(n_envs):
        env = gym.make(ENV_ID)
        env.reset(seed=i)
        seq: list[str | None] = []
        rews: list[float] = []
        done = False
        for _ in range(lengths[i]):
            if done:
                env.reset()
                seq.append(RESET)
                rews.append(0.0)
                done = False
                continue
            action = env.unwrapped.gold_actions()[0]
            _, r, te, tr, _ = env.step(action)
            seq.append(action)
            rews.append(float(r))
            done = te or tr
        actions.append(seq)
        rewards.append(rews)
    return actions, rewards


def run_single(actions: list[list[str | None]], steps: int) -> tuple[float, float, float]:
    """One env (``gym.make``) replaying each env's sequence in turn; returns (wall s, cpu s, reward sum)."""
    env = gym.make(ENV_ID)
    wall, cpu, total = 0.0, 0.0, 0.0
    for i, seq in enumerate(actions):
        env.reset(seed=i)
        t0, c0 = time.perf_counter(), time.process_time()
        for action in seq[:steps]:
            if action is RESET:
                env.reset()
            else:
                total += env.step(action)[1]
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return wall, cpu, total


def run_vector(venv, actions: list[list[str | None]], steps: int) -> tuple[float, float, float]:
    venv.reset(seed=0)
    batches = [[seq[t] if seq[t] is not RESET else FILLER for seq in actions] for t in range(steps)]
    total = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in batches:
        total += float(venv.step(batch)[1].sum())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    venv.close()
    return wall, cpu, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 256])
    ap.add_argument("--env-steps", type=int, default=2048, help="env-steps per (mode, N, round), >= 12 per env")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per N; the best is kept")
    ap.add_argument("--quick", action="store_true", help="tiny run (sizes 1 4, 256 env-steps, 1 round)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "vector_throughput.json"))
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.env_steps, args.rounds = [1, 4], 256, 1
    t_start = time.perf_counter()
    steps_for = {n: max(12, args.env_steps // n) for n in args.sizes}
    n_max = max(args.sizes)
    lengths = [max(steps_for[n] for n in args.sizes if n > i) for i in range(n_max)]
    actions, rewards = record(n_max, lengths)
    n_resets = sum(seq.count(RESET) for seq in actions)
    print(
        f"{ENV_ID}, gold actions, next-step autoreset; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
        f"recorded {sum(lengths)} env-steps ({n_resets / sum(lengths):.0%} of them resets) "
        f"in {time.perf_counter() - t_start:.1f}s"
    )
    if any(n > ASYNC_CAP for n in args.sizes):
        print(
            f"async is capped at N={ASYNC_CAP}: it runs one worker process per env, and {n_max} processes "
            f"on {os.cpu_count()} cores would measure process contention (and take minutes to start)"
        )

    rows = []
    for n in args.sizes:
        steps = steps_for[n]
        async_steps = min(steps, max(12, ASYNC_ENV_STEPS // n))
        makers = {
            "single": None,
            "native": lambda n=n: gym.make_vec(ENV_ID, n),
            "sync": lambda n=n: gym.make_vec(ENV_ID, n, vectorization_mode="sync"),
            "sync_nocopy": lambda n=n: gym.make_vec(ENV_ID, n, vectorization_mode="sync", vector_kwargs=NO_COPY),
        }
        if n <= ASYNC_CAP:
            makers["async"] = lambda n=n: make_async(ENV_ID, n)
        best: dict[str, float] = {}
        best_cpu: dict[str, float] = {}
        for _ in range(args.rounds):  # modes interleaved, best round kept: robust to a busy machine
            for mode, make in makers.items():
                t = async_steps if mode == "async" else steps
                acts = [seq[:t] for seq in actions[:n]]
                wall, cpu, total = run_single(acts, t) if make is None else run_vector(make(), acts, t)
                expected = sum(sum(r[:t]) for r in rewards[:n])
                if abs(total - expected) > 1e-6:
                    raise SystemExit(f"{mode} N={n}: reward sum {total} != recorded {expected}")
                best[mode] = max(best.get(mode, 0.0), n * t / wall)
                best_cpu[mode] = max(best_cpu.get(mode, 0.0), n * t / max(cpu, 1e-9))
        for mode, rate in best.items():
            t = async_steps if mode == "async" else steps
            rows.append(
                {
                    "mode": mode,
                    "num_envs": n,
                    "env_steps_per_round": n * t,
                    "rounds": args.rounds,
                    "steps_per_s": round(rate, 1),
                    "ratio_vs_single": round(rate / best["single"], 3),
                    # this process's CPU time: robust to other load on the machine; meaningless for async
                    "cpu_steps_per_s": None if mode == "async" else round(best_cpu[mode], 1),
                    "cpu_ratio_vs_single": None if mode == "async" else round(best_cpu[mode] / best_cpu["single"], 3),
                    "rewards_match": True,
                }
            )

    print(f"\n{'mode':<12} {'N':>4} {'env-steps':>9} {'steps/s':>9} {'vs single':>9} {'cpu vs single':>13}")
    for r in rows:
        cpu = "-" if r["cpu_ratio_vs_single"] is None else f"{r['cpu_ratio_vs_single']:.2f}x"
        print(
            f"{r['mode']:<12} {r['num_envs']:>4} {r['env_steps_per_round']:>9} {r['steps_per_s']:>9.0f} "
            f"{r['ratio_vs_single']:>8.2f}x {cpu:>13}"
        )
    native_max = next(r for r in rows if r["mode"] == "native" and r["num_envs"] == n_max)
    keeps = native_max["ratio_vs_single"] >= 0.8
    print(
        f"\nnative at N={n_max}: {native_max['ratio_vs_single']:.0%} of single-env throughput by wall clock, "
        f"{native_max['cpu_ratio_vs_single']:.0%} by CPU time ({'meets' if keeps else 'misses'} the 80% target); "
        f"total {time.perf_counter() - t_start:.0f}s"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "env_id": ENV_ID,
                "workload": "gold actions recorded per env (env i seeded i), next-step autoreset",
                "reset_fraction": round(n_resets / sum(lengths), 3),
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "gymnasium": gym.__version__,
                "async_cap": ASYNC_CAP,
                "load_average_1min": round(os.getloadavg()[0], 2),
                "native_keeps_80pct_at_max_n": keeps,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
