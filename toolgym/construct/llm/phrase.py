"""``toolgym build --phrase``: a model rewrites the user queries of verified procedural scenarios into a static pack.

Procedural queries read like their templates ("I need the phone number of hotel HT1887."). This build draws
``scenarios`` verified scenarios per domain with the procedural pipeline (domain ``j`` from
``numpy.random.default_rng([seed, crc32(module)])``, so adding a domain leaves the others' scenarios alone),
asks an OpenAI-compatible model (through :class:`~toolgym.model_client.ChatClient`, via the ``openai`` backend's
:class:`~toolgym.construct.llm.stages.Model`) for a rewrite of each query, and keeps a rewrite only when it passes
the rules of :mod:`toolgym.construct.llm.phrase_rules` (values kept, no answer given away, the gold plan still
scores full marks). A rejected rewrite is asked again with the problem up to ``attempts`` times; then the
scenario keeps its original query and the rejection is counted under its reason. Only the first user message
changes; ``metadata["phrase"]`` records the original query, the model and the verdict.

The prompt is fixed (:data:`PROMPT_VERSION`), its style hint and every request seed are derived from the source
scenario's :meth:`~toolgym.scenario.Scenario.digest` and the attempt, so the same model gives the same pack.

**Cache and resume.** ``<out>/journal.jsonl`` (the ``openai`` backend's :class:`~toolgym.construct.llm.journal
.Journal`, one line per event, flushed per line) holds a ``start`` line per run and one ``phrased`` line per
source scenario, keyed by its digest. A rerun asks only for digests without a line, so an interrupted build
resumes without asking the model again, and a larger ``scenarios`` or another domain extends the pack. A rerun
must use the same result-defining settings (model, temperature, max_tokens, attempts, response_format, prompt
version). ``scenarios.jsonl`` + ``manifest.json`` (a static pack) and ``report.json`` are rewritten from the
journal at the end of every run; resets of the pack cost what any static pack's do.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolgym.construct.llm.build import NOTHING_TO_DO, drain, open_run, same_settings
from toolgym.construct.llm.config import LLMBuildConfig
from toolgym.construct.llm.journal import JOURNAL, Journal
from toolgym.construct.llm.pack import DATA, REPORT, write_manifest
from toolgym.construct.llm.phrase_rules import Verdict, check_rewrite, gold_score, query_values, with_query
from toolgym.construct.llm.prompts import feedback_messages
from toolgym.construct.llm.stages import Model
from toolgym.construct.llm.validate import Reject, parse_reply
from toolgym.construct.pipeline import BuildConfig, generate, resolve_domain
from toolgym.jsonl import exclusive
from toolgym.packs import MANIFEST
from toolgym.scenario import Scenario

PROMPT_VERSION = 1
STYLES = (
    "casual and friendly",
    "short and direct",
    "polite and formal",
    "as a busy customer",
    "as a question",
    "with a short reason for asking",
)
SYSTEM = (
    "You rewrite messages that users send to an assistant, in other words. You never answer them. "
    "Codes and values such as OD4875 or 2500 are copied exactly, character by character."
)
EXAMPLE_IN = (
    "Rewrite it polite and formal, keeping OD4875: Can you tell me the email address of the customer of order OD4875?"
)
EXAMPLE_OUT = "Good afternoon. Could you please find out which email address the customer who placed order OD4875 uses?"
REWRITE_KEY = "rewritten_message"


def phrase_messages(query: str, values: list[str], style: str) -> list[dict[str, Any]]:
    """The request for one rewrite: a fixed instruction and worked example, then the query and what to keep."""
    keep = f", keeping {', '.join(values)}" if values else ""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": EXAMPLE_IN},
        {"role": "assistant", "content": json.dumps({REWRITE_KEY: EXAMPLE_OUT})},
        {"role": "user", "content": f"Rewrite it {style}{keep}: {query}"},
    ]


def phrase_schema(query: str) -> dict[str, Any]:
    """The reply's JSON schema (sent as ``response_format``): one string, at most three times the query's length."""
    return {
        "type": "object",
        "properties": {REWRITE_KEY: {"type": "string", "minLength": 8, "maxLength": max(200, 3 * len(query))}},
        "required": [REWRITE_KEY],
        "additionalProperties": False,
    }


def style_for(digest: str) -> str:
    return STYLES[int(digest[:8], 16) % len(STYLES)]


def request_seed(digest: str, attempt: int) -> int:
    key = f"phrase/{PROMPT_VERSION}/{digest}/{attempt}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") >> 1


@dataclass
class PhraseConfig(LLMBuildConfig):
    """Settings of one phrasing build: the ``openai`` backend's request settings plus the source scenarios.

    ``domains``: domain refs (``module:DOMAIN``) or module names; ``scenarios``: source scenarios per domain;
    ``kind``: kind of every scenario (None: the pipeline's mix); ``knobs``: other :class:`BuildConfig` fields."""

    domains: list[str] = field(default_factory=list)
    knobs: dict[str, Any] = field(default_factory=dict)
    temperature: float = 0.7
    max_tokens: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.domains:
            raise ValueError("a phrasing build needs at least one domain")
        BuildConfig(**{**self.knobs, "kind": self.kind}).validate()

    def result_config(self) -> dict[str, Any]:
        keys = ("model", "temperature", "max_tokens", "attempts", "response_format")
        return {"backend": "phrase", "prompt_version": PROMPT_VERSION, **{k: getattr(self, k) for k in keys}}


def source_scenarios(
    domains: list[str], per_domain: int, seed: int = 0, kind: str | None = None, knobs: dict[str, Any] | None = None
) -> list[Scenario]:
    """The verified procedural scenarios to rewrite: ``per_domain`` of each domain (a ref or a module name under
    ``toolgym/construct/domains``), domain by domain in the given order."""
    out = []
    build_cfg = BuildConfig(**{**(knobs or {}), "kind": kind})
    for ref in domains:
        domain = resolve_domain(ref if ":" in ref or "." in ref else f"toolgym.construct.domains.{ref}:DOMAIN")
        module = getattr(domain.world, "__module__", domain.name).rsplit(".", 1)[-1]
        rng = np.random.default_rng([seed, zlib.crc32(module.encode())])
        out += [generate(rng, build_cfg, domain) for _ in range(per_domain)]
    return out


class PhraseJournal(Journal):
    """The build journal with ``phrased`` lines keyed by the source scenario's digest (the first one wins)."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.results: dict[str, dict[str, Any]] = {}

    def _take(self, rec: dict[str, Any]) -> None:
        if rec["event"] == "phrased":
            self.results.setdefault(str(rec["digest"]), rec)
        else:
            super()._take(rec)


async def phrase_one(cfg: PhraseConfig, model: Model, scenario: Scenario, digest: str) -> dict[str, Any]:
    """Ask for rewrites of one scenario's query until one passes the rules (or ``attempts`` run out): the
    journal line. :class:`ScenarioFailed` when the requests keep failing (nothing is journaled then)."""
    t0 = time.monotonic()
    values = query_values(scenario)
    baseline = gold_score(scenario)
    messages = phrase_messages(scenario.query, values, style_for(digest))
    schema = phrase_schema(scenario.query)
    attempts: list[dict[str, Any]] = []
    msgs = messages
    verdict = Verdict(False, "no_reply")
    rewrite = None
    for attempt in range(cfg.attempts):
        reply = ""
        try:
            reply = await model.complete(msgs, schema, request_seed(digest, attempt))
            rewrite = " ".join(str(parse_reply(reply, schema)[REWRITE_KEY]).split())
            verdict = check_rewrite(scenario, rewrite, baseline)
        except Reject as r:
            verdict, rewrite = Verdict(False, r.kind, r.detail), None
        attempts.append({"attempt": attempt, "reply": reply[:600], "reason": verdict.reason, "detail": verdict.detail})
        if verdict.ok or verdict.reason == "bad_request":
            break
        msgs = feedback_messages(messages, reply, f"{verdict.reason}: {verdict.detail}")
    return {
        "event": "phrased",
        "digest": digest,
        "id": scenario.id,
        "domain": scenario.metadata.get("domain"),
        "kind": scenario.kind,
        "accepted": verdict.ok,
        "reason": verdict.reason,
        "detail": verdict.detail,
        "query": rewrite if verdict.ok else None,
        "attempts": attempts,
        "seconds": round(time.monotonic() - t0, 2),
    }


def phrased_scenario(scenario: Scenario, rec: dict[str, Any], model: str) -> Scenario:
    """The pack's scenario: the rewrite as its query when it was accepted, the original otherwise."""
    out = with_query(scenario, rec["query"]) if rec["accepted"] else Scenario.from_dict(scenario.to_dict())
    out.metadata["phrase"] = {
        "model": model,
        "prompt_version": PROMPT_VERSION,
        "accepted": rec["accepted"],
        "reason": rec["reason"],
        "original_query": scenario.query,
        "source_digest": rec["digest"],
    }
    return out


async def arun_phrase(cfg: PhraseConfig) -> dict[str, Any]:
    """Build (or resume) the phrased pack in ``cfg.out``; returns the report (also written to ``report.json``)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sources = source_scenarios(cfg.domains, cfg.scenarios, cfg.seed, cfg.kind, cfg.knobs)
    digests = [s.digest() for s in sources]
    with exclusive(out, "build"):
        journal = PhraseJournal(out / JOURNAL).load()
        mine = same_settings(journal, cfg, out)
        try:
            run = await _run(cfg, journal, mine, sources, digests)
        finally:
            journal.close()
        manifest = write_phrase_pack(cfg, journal, sources, digests)
        rep = phrase_report(cfg, journal, sources, digests, run)
        rep["manifest"] = str(manifest) if manifest else None
        (out / REPORT).write_text(json.dumps(rep, indent=2, ensure_ascii=False) + "\n", "utf-8")
        return rep


async def _run(
    cfg: PhraseConfig, journal: PhraseJournal, config: dict[str, Any], sources: list[Scenario], digests: list[str]
) -> dict[str, Any]:
    t0 = time.monotonic()
    seen: set[str] = set()
    todo = []
    for scenario, digest in zip(sources, digests, strict=True):
        if digest not in journal.results and digest not in seen:
            seen.add(digest)
            todo.append((scenario, digest))
    if not todo:
        return dict(NOTHING_TO_DO)
    model, bar = open_run(cfg, journal, config, len(todo), f"phrase {cfg.name}", len(todo))

    async def one(item: tuple[Scenario, str]) -> dict[str, Any]:
        return await phrase_one(cfg, model, *item)

    return await drain(cfg, model, todo, one, journal, bar, t0)


def write_phrase_pack(
    cfg: PhraseConfig, journal: PhraseJournal, sources: list[Scenario], digests: list[str]
) -> Path | None:
    """(Re)write ``scenarios.jsonl`` (every source scenario with a verdict, in source order) and the manifest."""
    out = Path(cfg.out)
    rows = [
        phrased_scenario(s, journal.results[d], cfg.model)
        for s, d in zip(sources, digests, strict=True)
        if d in journal.results
    ]
    tmp = out / f".{DATA}.tmp"
    tmp.write_text("".join(s.to_json() + "\n" for s in rows), "utf-8")
    os.replace(tmp, out / DATA)
    manifest = out / MANIFEST
    if not rows:
        manifest.unlink(missing_ok=True)
        return None
    accepted = sum(bool(s.metadata["phrase"]["accepted"]) for s in rows)
    return write_manifest(
        out, cfg.name, f"{len(rows)} procedural scenarios, {accepted} with queries rewritten by {cfg.model}"
    )


def phrase_report(
    cfg: PhraseConfig,
    journal: PhraseJournal,
    sources: list[Scenario],
    digests: list[str],
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Counts of the pack: accepted and rejected rewrites (by reason, and every rejected reply), per domain."""
    recs = [journal.results[d] for d in digests if d in journal.results]
    reasons: dict[str, int] = {}
    replies: dict[str, int] = {}
    by_domain: dict[str, dict[str, int]] = {}
    for r in recs:
        row = by_domain.setdefault(str(r["domain"]), {"accepted": 0, "rejected": 0})
        row["accepted" if r["accepted"] else "rejected"] += 1
        if not r["accepted"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        for a in r["attempts"]:
            if a["reason"]:
                replies[a["reason"]] = replies.get(a["reason"], 0) + 1
    accepted = sum(bool(r["accepted"]) for r in recs)
    return {
        "pack": cfg.name,
        "model": cfg.model,
        "scenarios": len(sources),
        "attempted": len(recs),
        "accepted": accepted,
        "rejected": len(recs) - accepted,
        "acceptance_rate": round(accepted / len(recs), 4) if recs else 0.0,
        "reject_reasons": dict(sorted(reasons.items())),
        "rejected_replies": dict(sorted(replies.items())),
        "requests": sum(len(r["attempts"]) for r in recs),
        "missing": len(sources) - len(recs),
        "complete": len(recs) == len(sources),
        "by_domain": dict(sorted(by_domain.items())),
        **({"run": run} if run else {}),
    }


def run_phrase(**kwargs: Any) -> dict[str, Any]:
    """Build a phrased static pack: keyword arguments are :class:`PhraseConfig` fields."""
    return asyncio.run(arun_phrase(PhraseConfig(**kwargs)))
