"""A scenario's seeded plan (kind, topic, scaling strategies) and the toolgym scenario record its stages make."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from toolgym.construct.llm import prompts as P
from toolgym.construct.llm.config import LLMBuildConfig
from toolgym.scenario import KINDS


def plan_for(cfg: LLMBuildConfig, index: int) -> dict[str, Any]:
    """The seeded choices of scenario ``index``: kind, topic, scaling strategies, number of distractors."""
    r = random.Random(f"toolgym-llm/{cfg.seed}/{index}")
    kind = cfg.kind or KINDS[(cfg.seed + index) % len(KINDS)]
    topic = cfg.topic or P.TOPICS[r.randrange(len(P.TOPICS))]
    subsets = [["toolset_extension"], ["parameter_expansion"], list(P.STRATEGIES)]
    return {
        "kind": kind,
        "topic": topic,
        "strategies": subsets[r.randrange(3)],
        "n_distractors": r.randint(1, 2),
        "shuffle": r.randrange(2**31),
    }


def tool_entry(fn: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": fn}


def assemble(
    cfg: LLMBuildConfig,
    index: int,
    plan: dict[str, Any],
    dec: dict[str, Any],
    scaled: dict[str, Any],
    codes: dict[str, str],
) -> dict[str, Any]:
    """The scenario record (toolgym format) of a finished build."""
    fns = scaled["functions"] + scaled["distractors"]
    order = list(range(len(fns)))
    random.Random(plan["shuffle"]).shuffle(order)
    subs = {s["id"]: s for s in dec["subquestions"]}
    subtasks = [
        {
            "id": c["subquestion"],
            "tool": c["function"],
            "arguments": c["arguments"],
            "answers": [subs[c["subquestion"]]["answer"]],
            "depends_on": subs[c["subquestion"]]["depends_on"],
            "state_checks": [],
        }
        for c in scaled["calls"]
    ]
    body = json.dumps([dec, scaled, codes], sort_keys=True, ensure_ascii=False)
    return {
        "id": f"{cfg.name}-{index:05d}-{hashlib.sha256(body.encode()).hexdigest()[:8]}",
        "kind": plan["kind"],
        "messages": [{"role": "user", "content": dec["query"]}],
        "tools": [tool_entry(fns[i]) for i in order],
        "source": {fn["name"]: codes[fn["name"]] for fn in fns},
        "state": {},
        "subtasks": subtasks,
        "answer": dec["final_answer"],
        "metadata": {
            "pipeline": "openai",
            "model": cfg.model,
            "pack": cfg.name,
            "index": index,
            "seed": cfg.seed,
            "topic": plan["topic"],
            "strategies": scaled["strategies"],
            "n_distractors": len(scaled["distractors"]),
        },
    }
