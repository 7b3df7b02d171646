"""``toolgym build``: check spec-based domains and write their pack manifests, or build a pack with a model.

For each domain module (``--domain hotel_booking`` or ``--all`` modules under ``toolgym/construct/domains`` that
define ``DOMAIN``): run :func:`~toolgym.construct.spec.validate_domain`, build and verify ``--check`` scenarios per
kind (reporting attempts and discard reasons), then write ``<out>/<module>/manifest.json``. ``--save-stages DIR``
also writes one scenario's stage outputs as JSON for inspection. ``--backend ray`` runs the checks (one per
domain and kind, plus the chain-length probe) on Ray workers; the counts are the same as with the local backend.

``--backend openai`` drives the same five stages with any OpenAI-compatible chat model instead
(:mod:`toolgym.construct.llm`) and writes a static pack to ``--out``; rerunning the command resumes it.

``--phrase`` builds ``--scenarios`` verified scenarios per ``--domain`` (or ``--all``) procedurally and has the
model at ``--base-url`` rewrite their user queries (:mod:`toolgym.construct.llm.phrase`); a rewrite is kept only
when it passes :mod:`toolgym.construct.llm.phrase_rules`. The static pack goes to ``--out``; a rerun resumes it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from toolgym.construct.decompose import domain_info
from toolgym.construct.pipeline import BuildConfig, BuildStats, build, find_domains, generate, manifest, resolve_domain
from toolgym.construct.spec import SpecError, validate_domain
from toolgym.distributed import add_backend_args
from toolgym.packs import packs_dir, read_manifest
from toolgym.scenario import ALL_KINDS, KINDS


def check_domain(ref: str, n: int, seed: int = 0, config: BuildConfig | None = None) -> dict[str, Any]:
    """Validate a domain and build ``n`` verified scenarios per kind (FTRL's four, then the extra kinds); returns
    per-kind counts and timings."""
    domain = _validated(ref)
    report: dict[str, Any] = {"domain": domain.name, "kinds": {}}
    for i, kind in enumerate(ALL_KINDS):
        report["kinds"][kind] = check_kind(ref, i, n, seed, config)
    report["max_hops"] = max_hops(domain, seed)
    return report


def _validated(ref: str) -> Any:
    domain = resolve_domain(ref)
    validate_domain(domain)
    domain_info(domain)  # raises SpecError naming what the pipeline cannot build
    return domain


def check_kind(ref: str, i: int, n: int, seed: int = 0, config: BuildConfig | None = None) -> dict[str, Any]:
    """Build and verify ``n`` scenarios of kind ``ALL_KINDS[i]`` (seeded by ``[seed, i]``): counts and speed."""
    domain = resolve_domain(ref)
    cfg = BuildConfig(**{**(config.to_dict() if config else {}), "kind": ALL_KINDS[i], "verify": "full"})
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
        items += [(ref, "kind", i) for i in range(len(ALL_KINDS))] + [(ref, "max_hops", 0)]
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
                reports[name]["kinds"][ALL_KINDS[i]] = got
            else:
                reports[name]["max_hops"] = got
    for report in reports.values():  # kinds in the usual order
        if isinstance(report, dict):
            report["kinds"] = {k: report["kinds"][k] for k in ALL_KINDS if k in report["kinds"]}
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


def _model_endpoint(args: argparse.Namespace, what: str) -> tuple[str, str] | None:
    """(model, base URL) from the flags or ``TOOLGYM_MODEL``/``OPENAI_BASE_URL``; ``None`` after a one-line error
    when either, or ``--out``, is missing."""
    model = args.model or os.environ.get("TOOLGYM_MODEL")
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL")
    if not model or not base_url or not args.out:
        print(f"error: {what} needs --model, --base-url and --out (the pack folder)")
        return None
    return model, base_url


def cmd_llm_build(args: argparse.Namespace) -> int:
    """``toolgym build --backend openai``: build (or resume) a static pack with a model."""
    import asyncio

    from toolgym.construct.llm.build import arun_build
    from toolgym.construct.llm.code_check import Limits
    from toolgym.construct.llm.config import LLMBuildConfig

    endpoint = _model_endpoint(args, "--backend openai")
    if endpoint is None:
        return 2
    model, base_url = endpoint
    try:
        cfg = LLMBuildConfig(
            model=model,
            base_url=base_url,
            api_key=args.api_key,
            out=args.out,
            scenarios=args.scenarios,
            concurrency=args.concurrency,
            seed=args.seed,
            topic=args.topic,
            kind=args.kind,
            name=args.name,
            temperature=args.temperature,
            max_tokens=args.max_tokens if args.max_tokens is not None else 1024,
            attempts=args.attempts,
            retries=args.retries,
            timeout=args.timeout,
            response_format=args.response_format,
            limits=Limits(cpu_seconds=args.code_cpu_seconds, memory_mb=args.code_memory_mb),
            progress=not args.no_progress,
        )
        report = asyncio.run(arun_build(cfg))
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    run = report.get("run", {})
    print(
        f"{report['pack']}: attempted {report['attempted']}/{report['scenarios']}, accepted {report['accepted']}, "
        f"discarded {report['discarded']}, missing {report['missing']} ({run.get('seconds', 0.0):.0f} s this run)"
    )
    for reason, n in report["discard_reasons"].items():
        print(f"  discarded {reason}: {n}")
    if report["rejected_replies"]:
        print("  rejected replies: " + ", ".join(f"{k}={v}" for k, v in report["rejected_replies"].items()))
    if report["manifest"]:
        print(f"  wrote {report['manifest']} (ToolGym/{report['pack']}-v0 once the folder is under envs_generated)")
    if run.get("aborted"):
        print(f"  stopped early: {run['aborted']}; rerun the same command to resume")
    return 0 if report["complete"] else 1


def _domain_refs(args: argparse.Namespace) -> dict[str, str] | None:
    """Module name -> ref of the domains ``--domain``/``--all`` select; None (after printing why) when none."""
    domains = find_domains()
    if args.all:
        return dict(domains)
    if not args.domain:
        print("error: pass --domain NAME (repeatable) or --all")
        return None
    refs = {}
    for name in args.domain:
        if name not in domains:
            known = ", ".join(domains) or "none"
            print(f"error: no module toolgym/construct/domains/{name}.py defining DOMAIN (known: {known})")
            return None
        refs[name] = domains[name]
    return refs


def cmd_phrase_build(args: argparse.Namespace) -> int:
    """``toolgym build --phrase``: procedural scenarios with model-written queries, as a static pack (resumable)."""
    import asyncio

    from toolgym.construct.llm.phrase import PhraseConfig, arun_phrase

    refs = _domain_refs(args)
    if refs is None:
        return 2
    endpoint = _model_endpoint(args, "--phrase")
    if endpoint is None:
        return 2
    model, base_url = endpoint
    try:
        cfg = PhraseConfig(
            model=model,
            base_url=base_url,
            api_key=args.api_key,
            out=args.out,
            domains=list(refs.values()),
            scenarios=args.scenarios,
            concurrency=args.concurrency,
            seed=args.seed,
            kind=args.kind,
            name=args.name,
            temperature=args.temperature,
            max_tokens=args.max_tokens if args.max_tokens is not None else 256,
            attempts=args.attempts,
            retries=args.retries,
            timeout=args.timeout,
            response_format=args.response_format,
            progress=not args.no_progress,
        )
        report = asyncio.run(arun_phrase(cfg))
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    run = report.get("run", {})
    print(
        f"{report['pack']}: phrased {report['attempted']}/{report['scenarios']}, accepted {report['accepted']} "
        f"({100 * report['acceptance_rate']:.1f}%), rejected {report['rejected']}, missing {report['missing']} "
        f"({run.get('seconds', 0.0):.0f} s this run)"
    )
    for reason, n in report["reject_reasons"].items():
        print(f"  rejected {reason}: {n} (original query kept)")
    if report["manifest"]:
        print(f"  wrote {report['manifest']} (ToolGym/{report['pack']}-v0 once the folder is under envs_generated)")
    if run.get("aborted"):
        print(f"  stopped early: {run['aborted']}; rerun the same command to resume")
    return 0 if report["complete"] else 1


def cmd_build(args: argparse.Namespace) -> int:
    if args.phrase:
        return cmd_phrase_build(args)
    if args.backend == "openai":
        return cmd_llm_build(args)
    refs = _domain_refs(args)
    if refs is None:
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
    p.add_argument("--all", action="store_true", help="every module under toolgym/construct/domains defining DOMAIN")
    p.add_argument("--out", help="procedural: packs folder (default: envs_generated); else the pack folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check", type=int, default=50, metavar="N", help="scenarios to build and verify per kind")
    p.add_argument("--save-stages", metavar="DIR", help="also write one scenario's stage outputs as JSON")
    add_backend_args(p, extra=("openai",))
    g = p.add_argument_group("model backends (--backend openai, --phrase)")
    g.add_argument("--model", help="model name (default: $TOOLGYM_MODEL)")
    g.add_argument("--base-url", help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL)")
    g.add_argument("--api-key", help="API key (default: $OPENAI_API_KEY)")
    g.add_argument(
        "--phrase",
        action="store_true",
        help="rewrite the queries of --scenarios procedural scenarios per --domain/--all with the model",
    )
    g.add_argument("--scenarios", type=int, default=10, metavar="N", help="scenario indices (--phrase: per domain)")
    g.add_argument("--concurrency", type=int, default=4, metavar="K", help="requests in flight")
    g.add_argument("--topic", help="topic of every task (default: a seeded choice per scenario)")
    g.add_argument("--kind", choices=KINDS, help="kind of every task (default: the four kinds in turn)")
    g.add_argument("--name", help="pack name, CamelCase (default: from the --out folder name)")
    g.add_argument("--temperature", type=float, default=0.7)
    g.add_argument("--max-tokens", type=int, default=None, help="tokens per reply (default: 1024; --phrase: 256)")
    g.add_argument("--attempts", type=int, default=3, help="replies per stage before a scenario is discarded")
    g.add_argument("--retries", type=int, default=4, help="retries of a failed request (connection, 5xx, 429)")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    g.add_argument(
        "--response-format",
        choices=("json_object", "json_schema", "none"),
        default="json_object",
        help="json_object: {type: json_object, schema} (llama-cpp-python); json_schema: OpenAI's form",
    )
    g.add_argument("--code-cpu-seconds", type=float, default=20.0, help="CPU limit of the code validator process")
    g.add_argument("--code-memory-mb", type=int, default=512, help="memory limit of the code validator process")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_build)
