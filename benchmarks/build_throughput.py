"""Procedural pipeline throughput: verified scenarios per second per core, and env reset latency.

For every domain module under ``toolgym/construct/domains`` that defines ``DOMAIN``, and every kind (plus the
default mix), run the five stages plus verification in this single process for a fixed time and count the
verified scenarios. Rates are given per second of wall time and per second of this process's CPU time (the
per-core figure, robust to other load on the machine). Then, for every registered env id,
``gym.make(id)`` and time ``reset(seed=i)``: median and p90.

    python benchmarks/build_throughput.py [--budget 60] [--resets 300]

Prints a table and writes ``benchmarks/results/build_throughput.json``. Target: >= 1,000 verified
scenarios per second per core with default knobs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

try:
    import toolgym
except ModuleNotFoundError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import toolgym
from step_overhead import reset_latency  # the same timer (this folder is on sys.path)

from toolgym.construct.pipeline import BuildConfig, BuildStats, find_domains, generate, resolve_domain
from toolgym.scenario import KINDS

TARGET = 1000.0
RESULTS = Path(__file__).resolve().parent / "results" / "build_throughput.json"


def throughput(domain, config: BuildConfig, seconds: float) -> dict:
    rng = np.random.default_rng(0)
    stats = BuildStats()
    for _ in range(50):  # warm the compile and schema caches
        generate(rng, config, domain)
    n = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        for _ in range(50):
            generate(rng, config, domain, stats)
        n += 50
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "verified": n,
        "attempts": stats.attempts,
        "discarded": stats.discarded(),
        "per_s_wall": n / wall,
        "per_s_cpu": n / cpu if cpu else float("nan"),
        "us_per_scenario_cpu": 1e6 * cpu / n,
    }


def reset_latency_ms(env_id: str, n: int) -> dict:
    median, p90 = reset_latency(env_id, n)
    return {"median_ms": 1e3 * median, "p90_ms": 1e3 * p90, "resets": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="seconds for all throughput cells together")
    ap.add_argument("--resets", type=int, default=300, help="resets per env id (reduced when there are many)")
    args = ap.parse_args()
    domains = find_domains()
    seconds = max(0.3, min(2.0, args.budget / max(1, 5 * len(domains))))
    resets = max(50, min(args.resets, int(3000 / max(1, len(toolgym.registered_ids())))))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report: dict = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_1min_at_start": load,
        "target_per_s_per_core": TARGET,
        "seconds_per_cell": seconds,
        "throughput": {},
        "reset_latency": {},
    }
    print(f"build throughput (single process; load average {load})")
    print(f"{'domain':<16} {'kind':<22} {'verified/s cpu':>14} {'verified/s wall':>15} {'us cpu':>8}  discarded")
    for module, ref in domains.items():
        domain = resolve_domain(ref)
        rows = {}
        for kind in (None, *KINDS):
            row = throughput(domain, BuildConfig(kind=kind), seconds)
            rows[kind or "mix"] = row
            disc = ", ".join(f"{k}={v}" for k, v in row["discarded"].items()) or "-"
            print(
                f"{domain.name:<16} {kind or 'mix':<22} {row['per_s_cpu']:>14.0f} {row['per_s_wall']:>15.0f} "
                f"{row['us_per_scenario_cpu']:>8.0f}  {disc}"
            )
        report["throughput"][domain.name] = {"module": module, "kinds": rows}

    print(f"\nreset latency ({resets} resets, gym.make + reset(seed=i))")
    print(f"{'env id':<32} {'median ms':>10} {'p90 ms':>8}")
    for env_id in toolgym.registered_ids():
        row = reset_latency_ms(env_id, resets)
        report["reset_latency"][env_id] = row
        print(f"{env_id:<32} {row['median_ms']:>10.3f} {row['p90_ms']:>8.3f}")

    mixes = {d: v["kinds"]["mix"]["per_s_cpu"] for d, v in report["throughput"].items()}
    report["meets_target"] = all(v >= TARGET for v in mixes.values())
    print(f"\ntarget >= {TARGET:.0f} verified/s per core (mix, cpu time): {mixes} -> {report['meets_target']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
