"""``toolgym build``: check spec-based domains and write their pack manifests.

For each domain module (``--domain hotel_booking`` or ``--all`` modules under ``toolgym/build/domains`` that
define ``DOMAIN``): run :func:`~toolgym.build.spec.validate_domain`, build and verify ``--check`` scenarios per
kind (reporting attempts and discard reasons), then write ``<out>/<module>/manifest.json``. ``--save-stages DIR``
also writes one scenario's stage outputs as JSON for inspection. ``--backend ray`` runs the checks (one per
domain and kind, plus the chain-length probe) on Ray workers; the counts are the same as with the local backend.
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
from toolgym.distributed import add_backend_args
from toolgym.packs import packs_dir, read_manifest
from toolgym.scenario import KINDS


def check_domain(ref: str, n: int, seed: int = 0, config: BuildConfig | None = None) -> dict[str, Any]:
    """Validate a domain and build ``n`` verified scenarios per kind; returns per-kind counts and timings."""
    domain = _validated(ref)
    report: dict[str, Any] = {"domain": domain.name, "kinds": {}}
    for i, kind in enumerate(KINDS):
        report["kinds"][kind] = check_kind(ref, i, n, seed, config)
    report["max_hops"] = max_hops(domain, seed)
    return report


def _validated(ref: str) -> Any:
    domain = resolve_domain(ref)
    validate_domain(domain)
    domain_info(domain)  # raises SpecError naming what the pipeline cannot build
    return domain


def check_kind(ref: str, i: int, n: int, seed: int = 0, config: BuildConfig | None = None) -> dict[str, Any]:
    """Build and verify ``n`` scenarios of kind ``KINDS[i]`` (seeded by ``[seed, i]``): counts and speed."""
    domain = resolve_domain(ref)
    cfg = BuildConfig(**{**(config.to_dict() if config else {}), "kind": KINDS[i]})
    stats = BuildStats()
    rng = np.random.default_rng([seed, i])
    t0 = time.perf_counter()
    for _ in range(n):
        generate(rng, cfg, domain, stats)
    dt = time.perf_counter() - t0
    return {
        "verified": stats.counts["ok"],
        "attempts": stats.attempts,
        "discarded": stats.discarded(),
        "per_second": stats.counts["ok"] / dt if dt else 0.0,
    }


def _check_item(n: int, seed: int, _state: Any, item: tuple[str, str, int]) -> Any:
    """One unit of ``build --backend ray``: ``(ref, "kind", i)`` or ``(ref, "max_hops", 0)``; errors returned."""
    ref, what, i = item
    try:
        return check_kind(ref, i, n, seed) if what == "kind" else max_hops(resolve_domain(ref), seed)
    except (SpecError, RuntimeError) as exc:
        return exc


def check_domains_ray(
    refs: dict[str, str], n: int, seed: int = 0, address: str | None = None, num_workers: int | None = None
) -> dict[str, dict[str, Any] | Exception]:
    """:func:`check_domain` for every domain, each kind and the chain-length probe a Ray task of its own.

    The counts equal the local ones (every kind has its own seeded generator); a domain that fails validation
    or a check maps to its exception."""
    import functools

    from toolgym import distributed

    reports: dict[str, dict[str, Any] | Exception] = {}
    items = []
    for name, ref in refs.items():
        try:
            domain = _validated(ref)
        except (SpecError, RuntimeError) as exc:
            reports[name] = exc
            continue
        reports[name] = {"domain": domain.name, "kinds": {}, "max_hops": None}
        items += [(ref, "kind", i) for i in range(len(KINDS))] + [(ref, "max_hops", 0)]
    by_ref = {ref: name for name, ref in refs.items()}
    if items:
        distributed.init(address)
        for (ref, what, i), got in distributed.map_unordered(
            functools.partial(_check_item, n, seed), items, num_workers=num_workers
        ):
            name = by_ref[ref]
            if isinstance(reports[name], Exception):
                continue
            if isinstance(got, Exception):
                reports[name] = got
            elif what == "kind":
                reports[name]["kinds"][KINDS[i]] = got
            else:
                reports[name]["max_hops"] = got
    for report in reports.values():  # kinds in the usual order
        if isinstance(report, dict):
            report["kinds"] = {k: report["kinds"][k] for k in KINDS if k in report["kinds"]}
    return reports


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
    ray_reports = None
    if args.backend == "ray":
        try:
            ray_reports = check_domains_ray(refs, args.check, args.seed, args.ray_address, args.num_workers)
        except ImportError as exc:
            print(f"error: {exc}")
            return 2
    for name, ref in refs.items():
        try:
            if ray_reports is None:
                report = check_domain(ref, args.check, args.seed)
            elif isinstance(ray_reports[name], Exception):
                raise ray_reports[name]
            else:
                report = ray_reports[name]
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
    add_backend_args(p)
    p.set_defaults(func=cmd_build)
