"""What the per-thread time limit costs on the normal step path, and what a runaway costs other threads.

step cost   = env.step(one Hermes <tool_call> turn) on step_overhead.py's one-tool scenario, on the main thread
              (SIGALRM, armed lazily: unchanged) and on a worker thread with the deadline watchdog on and off
              (off = the sandbox before it: no time limit for code that does not tick)
call cost   = Toolbox.call of the same tool alone, worker thread, watchdog on and off; and of a tool making
              two re calls (re.match, a compiled pattern's findall), main and worker thread
runaway     = wall time of a backtracking regex and of a non-ticking pure-Python call on a worker thread
              under a 0.5 s limit, and how many steps another thread made meanwhile; and of a C call no
              guard sees (== of aliased lists) under isolation="process" (the forked worker is killed)
All variants run in one process, interleaved in rounds, so machine noise hits them alike. Prints a table,
writes JSON.

    python benchmarks/thread_overhead.py [--rounds 7] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from step_overhead import ACTION, STATE, TOOL, make_env, time_floor, time_step  # this folder is on sys.path

from toolgym.sandbox import Toolbox, clock
from toolgym.sandbox.process import ProcessSandbox


def on_worker_thread(fn, *args):
    """``fn(*args)`` run on a fresh worker thread; its result."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn(*args)))
    t.start()
    t.join()
    return out[0]


def without_watchdog(build):
    """``build()`` with the watchdog switched off for the Toolboxes it creates (they capture it at creation)."""
    saved, clock._WATCHDOG = clock._WATCHDOG, None
    try:
        return build()
    finally:
        clock._WATCHDOG = saved


def env_bound(**kwargs):
    env = make_env(**kwargs)
    env.reset(seed=0)  # creates the env's Toolbox now
    return env


def time_calls(box: Toolbox, n: int, name: str = "get_flight_status") -> float:
    args = {"flight_id": "FL1007"}
    t0 = time.perf_counter()
    for _ in range(n):
        box.call(name, args, STATE)
    return (time.perf_counter() - t0) / n


REGEX_TOOL = r"""
import re
PATTERN = re.compile(r'^FL(\d{4})$')

def check_id(flight_id):
    m = re.match(r'^FL(\d{4})$', flight_id)
    return {'ok': m is not None, 'number': m.group(1) if m else None, 'hits': len(PATTERN.findall(flight_id))}
"""


def time_watchdog(n: int) -> float:
    """The watchdog's own per-call work (register at begin, unregister at end), without the tool call."""
    watchdog, ident, now = clock._WATCHDOG, threading.get_ident(), time.perf_counter
    expire = lambda: None  # noqa: E731
    t0 = now()
    for _ in range(n):
        watchdog.register(ident, now() + 2.0, expire)
        watchdog.unregister(ident)
    return (now() - t0) / n


RUNAWAY = r"""
import re, fractions

def backtrack(text):
    return re.search(r'(a|aa)+$', text) is not None

def exact_sum(n):
    return str(sum(map(fractions.Fraction, range(n))))

def aliased_compare(depth):
    a = [0]
    b = [0]
    for i in range(depth):
        a = [a, a]
        b = [b, b]
    return a == b
"""


def runaway(name: str, args: dict, isolation: str = "none") -> dict:
    """Run one runaway on a worker thread while this thread counts the steps it can make meanwhile."""
    box = Toolbox({name: RUNAWAY}, time_limit=0.5, step_budget=10**9)
    run = ProcessSandbox().call if isolation == "process" else lambda b, n, a, s: b.call(n, a, s)
    env = make_env()
    env.reset(seed=0)
    done: list = []
    t = threading.Thread(target=lambda: done.append(run(box, name, args, {})))
    t0 = time.perf_counter()
    t.start()
    steps = 0
    while not done:
        env.step(ACTION)
        steps += 1
        if steps % 19 == 0:
            env.reset(seed=steps)
    wall = time.perf_counter() - t0
    t.join()
    return {"wall_s": wall, "other_thread_steps": steps, "output": done[0].output}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "thread_overhead.json"))
    args = ap.parse_args()

    env_on, env_off = env_bound(), without_watchdog(env_bound)
    box_on = Toolbox({"get_flight_status": TOOL})
    box_off = without_watchdog(lambda: Toolbox({"get_flight_status": TOOL}))
    keys = ("floor", "main", "worker_on", "worker_off", "call_on", "call_off", "watchdog", "re_main", "re_worker")
    box_re = Toolbox({"check_id": REGEX_TOOL})
    series: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(args.rounds + 1):  # the first round warms caches and is dropped
        series["floor"].append(time_floor(args.calls))
        series["main"].append(time_step(env_on, args.calls, ACTION))
        series["worker_on"].append(on_worker_thread(time_step, env_on, args.calls, ACTION))
        series["worker_off"].append(on_worker_thread(time_step, env_off, args.calls, ACTION))
        series["call_on"].append(on_worker_thread(time_calls, box_on, args.calls))
        series["call_off"].append(on_worker_thread(time_calls, box_off, args.calls))
        series["watchdog"].append(on_worker_thread(time_watchdog, 50 * args.calls))
        series["re_main"].append(time_calls(box_re, args.calls, "check_id"))
        series["re_worker"].append(on_worker_thread(time_calls, box_re, args.calls, "check_id"))
    med = {k: statistics.median(v[1:]) for k, v in series.items()}
    rows = [
        ("floor: json.loads + call + json.dumps", med["floor"]),
        ("env.step, main thread", med["main"]),
        ("env.step, worker thread, watchdog on", med["worker_on"]),
        ("env.step, worker thread, watchdog off", med["worker_off"]),
        ("Toolbox.call, worker thread, watchdog on", med["call_on"]),
        ("Toolbox.call, worker thread, watchdog off", med["call_off"]),
        ("Toolbox.call of a tool using re, main thread", med["re_main"]),
        ("Toolbox.call of a tool using re, worker thread", med["re_worker"]),
    ]
    print(f"{'per call':<46}{'time (us)':>12}")
    for name, t in rows:
        print(f"{name:<46}{t * 1e6:>12.2f}")
    print(f"{'watchdog register + unregister alone':<46}{med['watchdog'] * 1e6:>12.2f}")

    runaways = {
        "backtrack": runaway("backtrack", {"text": "a" * 60 + "b"}),
        "exact_sum": runaway("exact_sum", {"n": 10**7}),
        "aliased_compare, isolation=process": runaway("aliased_compare", {"depth": 40}, "process"),
    }
    print(f"\n{'runaway on a worker thread (limit 0.5 s)':<46}{'wall (s)':>10}{'steps by main':>15}")
    for name, r in runaways.items():
        print(f"{name:<46}{r['wall_s']:>10.3f}{r['other_thread_steps']:>15}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {f"{k}_us": v * 1e6 for k, v in med.items()}
    result["runaways"] = runaways
    result.update({"rounds": args.rounds, "calls": args.calls})
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
