"""Per-call step overhead of the env against the floor of running the same tool bare.

floor  = json.loads(arguments) + direct Python call of the tool + json.dumps(result)
step   = env.step(one Hermes <tool_call> turn): parse + schema check + sandboxed call + reward + messages
Both run in the same process, interleaved in rounds, so machine noise hits both alike; the ratio is the result.
Also reports reset latency (median, p90) of the registered envs: uncached, and with the scenario cache a seed's
first reset (generated, remembered), its second (generated, stored) and its third (a hit). For the spec-built
envs, uncached resets with ``verify="fast"`` (the default) against ``verify="full"`` (the gold-plan and
wrong-record replays as well), interleaved in rounds.
And the cold start a user's first line pays: ``import toolgym; gym.make(ID)`` in fresh interpreters, against
``import gymnasium`` alone measured the same way in the same run.
Prints tables, writes JSON.

    python benchmarks/step_overhead.py [--rounds 7] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym

import toolgym
from toolgym import Scenario, StaticSource, SubTask, ToolEnv
from toolgym.scenario import tool_schema

TOOL = """
def get_flight_status(flight_id):
    flight = state['flights'].get(flight_id)
    if flight is None:
        return {'error': 'unknown flight ' + flight_id}
    return {'flight_id': flight_id, 'status': flight['status'], 'gate': flight['gate']}
"""
STATE = {"flights": {f"FL{1000 + i}": {"status": "on_time", "gate": f"B{i}"} for i in range(50)}}
ARGS_JSON = '{"flight_id": "FL1007"}'
ACTION = '<tool_call>\n{"name": "get_flight_status", "arguments": ' + ARGS_JSON + "}\n</tool_call>"
TURNS_PER_EPISODE = 19


def make_env(**env_kwargs) -> ToolEnv:
    """The one-tool scenario every step benchmark times (``env_kwargs`` go to ``ToolEnv``, e.g. ``isolation``)."""
    scenario = Scenario(
        id="bench",
        kind="single_hop",
        messages=[{"role": "user", "content": "Status of FL1042?"}],
        tools=[
            tool_schema("get_flight_status", "status of a flight", {"flight_id": {"type": "string"}}, ["flight_id"])
        ],
        source={"get_flight_status": TOOL},
        state=STATE,
        subtasks=[SubTask("s1", "get_flight_status", {"flight_id": "FL1042"}, ["B42"])],
        answer="B42",
    )
    return ToolEnv(StaticSource("bench", [scenario]), max_turns=TURNS_PER_EPISODE + 1, **env_kwargs)


def time_floor(n: int) -> float:
    ns: dict = {"state": STATE}
    exec(TOOL, ns)
    fn = ns["get_flight_status"]
    loads, dumps = json.loads, json.dumps
    t0 = time.perf_counter()
    for _ in range(n):
        dumps(fn(**loads(ARGS_JSON)), ensure_ascii=False)
    return (time.perf_counter() - t0) / n


def time_step(env: ToolEnv, n: int, action) -> float:
    total = 0.0
    done = 0
    while done < n:
        env.reset(seed=done)
        k = min(TURNS_PER_EPISODE, n - done)
        t0 = time.perf_counter()
        for _ in range(k):
            env.step(action)
        total += time.perf_counter() - t0
        done += k
    return total / n


def time_resets(env, seeds) -> tuple[float, float]:
    """Median and p90 of one reset per seed."""
    times = []
    for seed in seeds:
        t0 = time.perf_counter()
        env.reset(seed=seed)
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times), times[int(0.9 * len(times))]


def reset_latency(env_id: str, n: int) -> tuple[float, float]:
    """Median and p90 reset time of ``n`` resets on distinct seeds (each generates; the first warms up)."""
    env = gym.make(env_id)
    env.reset(seed=0)
    return time_resets(env, range(1, 1 + n))


def warm_up(env: ToolEnv, quiet: int = 200, most: int = 3000) -> int:
    """Reset until the env has met its tool sources (no new one in ``quiet`` resets; at most ``most``): each is
    compiled and exec'd once per env, which a long run pays in its first episodes (Mixed meets about 480 in its
    first 2,000), so the latencies below are those of the steady state. Returns the resets it took."""
    seen, last_new, i = -1, 0, 0
    for i in range(most):
        env.reset(seed=30_000 + i)
        if len(env._toolboxes) != seen:
            seen, last_new = len(env._toolboxes), i
        elif i - last_new >= quiet:
            break
    return i + 1


def reset_latency_cached(env_id: str, n: int) -> dict[str, tuple[float, float]]:
    """Median and p90 reset time: uncached (generate every time), first (a seed's first reset with the cache on:
    generate, remember the seed), store (its second: generate and store), hit (its third: reuse)."""
    from toolgym.sources import SCENARIO_CACHE

    env = gym.make(env_id).unwrapped
    env.scenario_cache = False
    warm_up(env, quiet=min(200, n), most=min(3000, 10 * n))
    out = {}
    SCENARIO_CACHE.clear()
    passes = (("uncached", False, 10_000), ("first", True, 20_000), ("store", True, 20_000), ("hit", True, 20_000))
    for label, cached, base in passes:  # the cached passes reset the same seeds: first, second, third time
        env.scenario_cache = cached
        out[label] = time_resets(env, range(base, base + n))
    return out


def verify_latency(env_id: str, n: int, rounds: int = 5) -> dict[str, float] | None:
    """Median uncached reset time with ``verify="fast"`` and ``"full"``: ``rounds`` alternating rounds of
    ``n // rounds`` seeds (the same seeds for both); ``None`` for an env without the ``verify`` knob."""
    try:
        envs = {mode: gym.make(env_id, verify=mode).unwrapped for mode in ("fast", "full")}
    except TypeError:  # not spec-built: its generator has no verify knob
        return None
    times: dict[str, list[float]] = {"fast": [], "full": []}
    for env in envs.values():
        env.scenario_cache = False
        warm_up(env, quiet=min(200, n), most=min(3000, 10 * n))
    per = max(1, n // rounds)
    for k in range(rounds):
        seeds = range(40_000 + k * per, 40_000 + (k + 1) * per)
        for mode, env in envs.items():
            for seed in seeds:
                t0 = time.perf_counter()
                env.reset(seed=seed)
                times[mode].append(time.perf_counter() - t0)
    fast, full = (statistics.median(times[m]) for m in ("fast", "full"))
    return {"fast_median_us": fast * 1e6, "full_median_us": full * 1e6, "fast_over_full": fast / full}


COLD_START = """
import time
t0 = time.perf_counter()
{body}
print(time.perf_counter() - t0)
"""


def cold_start(env_id: str, runs: int) -> dict[str, float]:
    """Median seconds, in ``runs`` fresh interpreters each, of ``import gymnasium`` (the baseline) and of
    ``import toolgym; gym.make(env_id)`` (interpreter start-up excluded: each child times itself), interleaved."""
    bodies = {
        "import gymnasium": "import gymnasium",
        "import toolgym; gym.make": f"import gymnasium as gym, toolgym\ngym.make({env_id!r})",
    }
    times: dict[str, list[float]] = {k: [] for k in bodies}
    for _ in range(runs):
        for label, body in bodies.items():
            code = COLD_START.format(body=body)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            times[label].append(float(out.split()[-1]))
    return {label: statistics.median(v) for label, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--resets", type=int, default=500)
    ap.add_argument("--cold-starts", type=int, default=7, help="fresh interpreters for the import + make timing")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "step_overhead.json"))
    args = ap.parse_args()

    env = make_env()
    message = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c0",
                "type": "function",
                "function": {"name": "get_flight_status", "arguments": {"flight_id": "FL1007"}},
            }
        ],
    }
    time_floor(200), time_step(env, 200, ACTION)  # warm caches
    floors, texts, dicts = [], [], []
    for _ in range(args.rounds):
        floors.append(time_floor(args.calls))
        texts.append(time_step(env, args.calls, ACTION))
        dicts.append(time_step(env, args.calls, message))
    floor, text, msg = (statistics.median(x) for x in (floors, texts, dicts))
    rows = [
        ("floor: json.loads + call + json.dumps", floor, 1.0),
        ("env.step, Hermes <tool_call> text", text, text / floor),
        ("env.step, OpenAI message dict", msg, msg / floor),
    ]
    print(f"{'per call':<42}{'time (us)':>12}{'x floor':>10}")
    for name, t, ratio in rows:
        print(f"{name:<42}{t * 1e6:>12.2f}{ratio:>10.2f}")

    resets = {}
    print(
        f"\n{'reset latency, median / p90 (us)':<36}{'uncached':>16}{'first':>16}{'store':>16}{'hit':>16}{'speedup':>9}"
    )
    for env_id in toolgym.registered_ids():
        lat = reset_latency_cached(env_id, args.resets)
        row = {f"{k}_{q}_us": v[j] * 1e6 for k, v in lat.items() for j, q in enumerate(("median", "p90"))}
        row["median_us"], row["p90_us"] = row["uncached_median_us"], row["uncached_p90_us"]
        row["hit_speedup"] = lat["uncached"][0] / lat["hit"][0]
        resets[env_id] = row
        cells = "".join(f"{v[0] * 1e6:>8.1f}/{v[1] * 1e6:<7.1f}" for v in lat.values())
        print(f"{env_id:<36}{cells}{row['hit_speedup']:>8.2f}x")

    verification = {}
    print(f"\n{'uncached reset by verify mode, median (us)':<44}{'fast':>10}{'full':>10}{'fast/full':>11}")
    for env_id in toolgym.registered_ids():
        row = verify_latency(env_id, args.resets)
        if row is not None:
            verification[env_id] = row
            print(
                f"{env_id:<44}{row['fast_median_us']:>10.1f}{row['full_median_us']:>10.1f}{row['fast_over_full']:>11.2f}"
            )

    cold_id = "ToolGym/FlightBooking-v0"
    cold = cold_start(cold_id, args.cold_starts)
    print(f"\n{'cold start, median of ' + str(args.cold_starts) + ' fresh interpreters':<44}{'seconds':>10}")
    for label, sec in cold.items():
        print(f"{label:<44}{sec:>10.3f}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "floor_us": floor * 1e6,
        "step_text_us": text * 1e6,
        "step_message_us": msg * 1e6,
        "ratio_text": text / floor,
        "ratio_message": msg / floor,
        "target_ratio": 2.0,  # the step target: env.step at most 2x the floor
        "reset": resets,
        "reset_by_verify_mode": verification,
        "target_reset_us": {"spec-built": 200, "ToolGym/Mixed-v1": 250},
        "cold_start_s": {"env_id": cold_id, **cold},
        "target_cold_start_s": 0.3,  # import toolgym; gym.make(...)
        "rounds": args.rounds,
        "calls": args.calls,
    }
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
