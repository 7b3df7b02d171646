"""Per-call step cost of isolation="process" (forked tool worker) against the default in-process sandbox.

small state  = env.step(one Hermes <tool_call> turn) on the one-tool scenario of step_overhead.py (50 flights)
FlightBooking = env.step over gold episodes of ToolGym/FlightBooking-v0 (its whole world state, ~14 kB of text,
                travels to the worker and back with every call; reads, bookings and payments)
restart      = one call on a fresh worker (fork + call), the cost a killed call adds to the next one
Both modes run in the same process, interleaved in rounds, so machine noise hits both alike; the ratio is the
result. Prints a table, writes JSON.

    python benchmarks/isolation_overhead.py [--rounds 5] [--calls 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import gymnasium as gym
from step_overhead import ACTION, make_env, time_step  # the same one-tool scenario (this folder is on sys.path)

import toolgym  # noqa: F401  (registers the ids)
from toolgym import ToolEnv


def small_env(isolation: str) -> ToolEnv:
    return make_env(isolation=isolation)


def time_small(env: ToolEnv, n: int) -> float:
    return time_step(env, n, ACTION)


def flight_episodes(n_calls: int) -> list[tuple[int, list[str]]]:
    """(seed, gold call turns) of FlightBooking episodes holding about ``n_calls`` tool calls."""
    env = gym.make("ToolGym/FlightBooking-v0")
    episodes, calls, seed = [], 0, 0
    while calls < n_calls:
        env.reset(seed=seed)
        turns = env.unwrapped.gold_actions()[:-1]  # tool-call turns only
        episodes.append((seed, turns))
        calls += sum(t.count("<tool_call>") for t in turns)
        seed += 1
    return episodes


def time_flight(env, episodes: list[tuple[int, list[str]]]) -> float:
    total, calls = 0.0, 0
    for seed, turns in episodes:
        env.reset(seed=seed)
        t0 = time.perf_counter()
        for turn in turns:
            env.step(turn)
        total += time.perf_counter() - t0
        calls += sum(t.count("<tool_call>") for t in turns)
    return total / calls


def time_restart(env: ToolEnv, n: int) -> float:
    times = []
    for _ in range(n):
        env.unwrapped._process.close()
        t0 = time.perf_counter()
        env.step(ACTION)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--restarts", type=int, default=30)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "isolation_overhead.json"))
    args = ap.parse_args()

    small = {iso: small_env(iso) for iso in ("none", "process")}
    flight = {iso: gym.make("ToolGym/FlightBooking-v0", isolation=iso) for iso in ("none", "process")}
    episodes = flight_episodes(args.calls)
    for iso in small:  # warm caches and fork the workers
        time_small(small[iso], 100)
        time_flight(flight[iso], episodes[:5])
    res: dict[str, list[float]] = {k: [] for k in ("small_none", "small_process", "flight_none", "flight_process")}
    for _ in range(args.rounds):
        for iso in ("none", "process"):
            res[f"small_{iso}"].append(time_small(small[iso], args.calls))
            res[f"flight_{iso}"].append(time_flight(flight[iso], episodes))
    med = {k: statistics.median(v) for k, v in res.items()}
    small["process"].reset(seed=0)
    restart = time_restart(small["process"], args.restarts)
    for env in (*small.values(), *flight.values()):
        env.close()

    rows = [
        ("small state", med["small_none"], med["small_process"]),
        ("FlightBooking gold episodes", med["flight_none"], med["flight_process"]),
    ]
    print(f"{'per call (env.step)':<30}{'in-process (us)':>17}{'process (us)':>14}{'ratio':>8}")
    for name, a, b in rows:
        print(f"{name:<30}{a * 1e6:>17.1f}{b * 1e6:>14.1f}{b / a:>8.2f}")
    print(f"{'call on a fresh worker (fork)':<30}{'':>17}{restart * 1e6:>14.1f}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "small_none_us": med["small_none"] * 1e6,
        "small_process_us": med["small_process"] * 1e6,
        "ratio_small": med["small_process"] / med["small_none"],
        "flight_none_us": med["flight_none"] * 1e6,
        "flight_process_us": med["flight_process"] * 1e6,
        "ratio_flight": med["flight_process"] / med["flight_none"],
        "restart_us": restart * 1e6,
        "rounds": args.rounds,
        "calls": args.calls,
    }
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
