"""What a build leaves: ``scenarios.jsonl`` and ``manifest.json`` (a static pack) and ``report.json``.

Both are rewritten from the journal, so they always describe everything journaled, whichever runs built it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from toolgym.construct.llm.config import LLMBuildConfig
from toolgym.construct.llm.journal import Journal
from toolgym.packs import MANIFEST, load_scenarios, read_manifest

DATA = "scenarios.jsonl"
REPORT = "report.json"


def report(cfg: LLMBuildConfig, journal: Journal, run: dict[str, Any] | None = None) -> dict[str, Any]:
    finals = [journal.finals[i] for i in range(cfg.scenarios) if i in journal.finals]
    accepted = [f for f in finals if f["event"] == "accepted"]
    reasons = Counter(f["reason"] for f in finals if f["event"] == "discarded")
    rejected = Counter(f"{r['stage']}:{r['kind']}" for f in finals for r in f.get("rejected", []))
    return {
        "pack": cfg.name,
        "model": cfg.model,
        "scenarios": cfg.scenarios,
        "attempted": len(finals),
        "accepted": len(accepted),
        "discarded": sum(reasons.values()),
        "discard_reasons": dict(sorted(reasons.items())),
        "rejected_replies": dict(sorted(rejected.items())),
        "missing": cfg.scenarios - len(finals),
        "complete": len(finals) == cfg.scenarios,
        "by_kind": dict(Counter(f["kind"] for f in accepted)),
        **({"run": run} if run else {}),
    }


def write_pack(cfg: LLMBuildConfig, journal: Journal) -> Path | None:
    """(Re)write ``scenarios.jsonl`` atomically from the journal; write the manifest when a scenario was accepted.

    Returns the manifest path (None when nothing was accepted: a static pack needs at least one scenario)."""
    out = Path(cfg.out)
    accepted = [
        journal.finals[i]["scenario"]
        for i in sorted(journal.finals)
        if i < cfg.scenarios and journal.finals[i]["event"] == "accepted"
    ]
    tmp = out / f".{DATA}.tmp"
    tmp.write_text("".join(json.dumps(s, ensure_ascii=False, sort_keys=True) + "\n" for s in accepted), "utf-8")
    os.replace(tmp, out / DATA)
    manifest = out / MANIFEST
    if not accepted:  # a static pack needs a scenario: no manifest (an older one would point at an empty file)
        manifest.unlink(missing_ok=True)
        return None
    description = f"{len(accepted)} scenarios built by the openai backend with {cfg.model}"
    return write_manifest(out, cfg.name, description + (f" on {cfg.topic}" if cfg.topic else ""))


def write_manifest(out: Path, name: str, description: str) -> Path:
    """The static pack's manifest beside its ``scenarios.jsonl``, written atomically once the pack loader has
    accepted the data (raises PackError naming the line) and read back by the manifest reader."""
    load_scenarios(out / DATA)
    data = {
        "name": name,
        "version": 0,
        "type": "static",
        "format": "toolgym",
        "data": DATA,
        "description": description,
        "max_turns": 20,
    }
    manifest = out / MANIFEST
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
    os.replace(tmp, manifest)
    read_manifest(manifest)
    return manifest
