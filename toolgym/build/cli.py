"""``toolgym build``: check spec-based domains and write their pack manifests.

For each domain module (``--domain hotel_booking`` or ``--all`` modules under ``toolgym/build/domains`` that
define ``DOMAIN``): run :func:`~toolgym.build.spec.validate_domain`, build and verify ``--check`` scenarios per
kind (reporting attempts and discard reasons), then write ``<out>/<module>/manifest.json``. ``--save-stages DIR``
also writes one scenario's stage outputs as JSON for inspection.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from toolgym.build.decompose import domain_info
from toolgym.build.pipeline import BuildConfig, BuildStats, build, generate
from toolgym.build.procedural import find_domains, manifest, resolve_domain
from toolgym.build.spec import SpecError, validate_domain
from toolgym.packs import packs_dir, read_manifest
from toolgym.scenario import KINDS


def check_domain(ref: str, n: int, seed: int = 0, config: BuildConfig | None = None) -> dict[str, Any]:
    """Validate a domain and build ``n`` verified scenarios per kind; returns per-kind counts and timings."""
    domain = resolve_domain(ref)
    validate_domain(domain)
    domain_info(domain)  # raises SpecError naming what the pipeline cannot build
    report: dict[str, Any] = {"domain": domain.name, "kinds": {}}
    for i, kind in enumerate(KINDS):
        cfg = BuildConfig(**{**(config.to_dict() if config else {}), "kind": kind})
        stats = BuildStats()
        rng = np.random.default_rng([seed, i])
        t0 = time.perf_counter()
        for _ in range(n):
            generate(rng, cfg, domain, stats)
        dt = time.perf_counter() - t0
        report["kinds"][kind] = {
            "verified": stats.counts["ok"],
            "attempts": stats.attempts,
            "discarded": stats.discarded(),
            "per_second": stats.counts["ok"] / dt if dt else 0.0,
        }
    report["max_hops"] = max_hops(domain, seed)
    return report


def max_hops(domain: Any, seed: int = 0, attempts: int = 60) -> int:
    """The longest chain (2..4 calls) for which ``attempts`` multi-hop draws yield a verified scenario."""
    best = 1
    for hops in (2, 3, 4):
        rng = np.random.default_rng([seed, hops])
        cfg = BuildConfig(kind="multi_hop", hops=hops)
        if not any(build(int(rng.integers(0, 2**63 - 1)), cfg, domain) for _ in range(attempts)):
            break
        best = hops
    return best


def save_stages(ref: str, folder: Path, seed: int = 0, config: BuildConfig | None = None) -> list[Path]:
    """Write one scenario's stage outputs (decomposition.json ... scenario.json) to ``folder``."""
    domain = resolve_domain(ref)
    cfg = config or BuildConfig()
    rng = np.random.default_rng(seed)
    for _ in range(200):
        got = build(int(rng.integers(0, 2**63 - 1)), cfg, domain, keep_stages=True)
        if got is not None:
            return got.save(folder)  # type: ignore[union-attr]
    raise RuntimeError(f"{domain.name}: no verified scenario to save")


def write_manifest(ref: str, out: Path, max_hops: int | None = None) -> tuple[Path, bool]:
    """Write (or update) ``out/<module>/manifest.json``; returns the path and whether it changed."""
    domain = resolve_domain(ref)
    module = ref.partition(":")[0].rsplit(".", 1)[-1]
    path = out / module / "manifest.json"
    text = json.dumps(manifest(domain, ref, max_hops=max_hops), indent=2, ensure_ascii=False) + "\n"
    changed = not path.is_file() or path.read_text(encoding="utf-8") != text
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    read_manifest(path)  # the registry must accept what was written
    return path, changed


def cmd_build(args: argparse.Namespace) -> int:
    domains = find_domains()
    if args.all:
        refs = dict(domains)
    elif args.domain:
        refs = {}
        for name in args.domain:
            if name not in domains:
                known = ", ".join(domains) or "none"
                print(f"error: no module toolgym/build/domains/{name}.py defining DOMAIN (known: {known})")
                return 2
            refs[name] = domains[name]
    else:
        print("error: pass --domain NAME (repeatable) or --all")
        return 2
    out = Path(args.out) if args.out else packs_dir()
    status = 0
    for name, ref in refs.items():
        try:
            report = check_domain(ref, args.check, args.seed)
        except (SpecError, RuntimeError) as exc:
            print(f"{name}: FAILED: {exc}")
            status = 1
            continue
        print(f"{name} ({report['domain']}): validate_domain ok")
        print(f"  {'kind':<20} {'verified':>8} {'attempts':>8} {'per s':>8}  discarded")
        for kind, row in report["kinds"].items():
            disc = ", ".join(f"{k}={v}" for k, v in row["discarded"].items()) or "-"
            print(f"  {kind:<20} {row['verified']:>8} {row['attempts']:>8} {row['per_second']:>8.0f}  {disc}")
        print(f"  longest supported chain: hops={report['max_hops']}")
        if report["max_hops"] < 2:
            print(f"{name}: FAILED: no multi-hop chain fits its worlds")
            status = 1
            continue
        path, changed = write_manifest(ref, out, report["max_hops"])
        print(f"  {'wrote' if changed else 'unchanged'} {path}")
        if args.save_stages:
            folder = Path(args.save_stages) / name if len(refs) > 1 else Path(args.save_stages)
            for p in save_stages(ref, folder, args.seed):
                print(f"  stage output {p}")
    return status


def add_parser(subparsers: Any) -> None:
    """Register the ``build`` subcommand on the ``toolgym`` parser."""
    p = subparsers.add_parser("build", help="check spec-based domains and write their pack manifests")
    p.add_argument("--domain", action="append", metavar="NAME", help="domain module name (repeatable)")
    p.add_argument("--all", action="store_true", help="every module under toolgym/build/domains defining DOMAIN")
    p.add_argument("--out", help="packs folder (default: the shipped envs_generated)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check", type=int, default=50, metavar="N", help="scenarios to build and verify per kind")
    p.add_argument("--save-stages", metavar="DIR", help="also write one scenario's stage outputs as JSON")
    p.set_defaults(func=cmd_build)
