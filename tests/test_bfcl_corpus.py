"""Real-code corpus: BFCL's multi-turn tool classes, read from the installed ``bfcl-eval`` package, run unchanged
in the sandbox and behave as under plain CPython.

For every entry of BFCL's multi-turn base category, its ground-truth calls run on two sets of instances built
from the same initial state: BFCL's own classes imported normally, and the same files' text run through
``Toolbox(modules=...)``. Every call's result text and, after every turn, every public attribute must be equal.
The files are never copied into the repo; without ``bfcl-eval`` installed (``.ci/suites_setup.sh``) the test
is skipped with that reason.
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from toolgym.sandbox import Toolbox, serialize_output

bfcl_eval = pytest.importorskip("bfcl_eval", reason="bfcl-eval is installed by .ci/suites_setup.sh")

ROOT = Path(bfcl_eval.__file__).parent
PREFIX = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
# BFCL's multi-turn categories' classes (its constants/executable_backend_config.py also lists the web-search
# and memory classes of other categories, which reach the network and the disk).
CLASSES = {
    "GorillaFileSystem": "gorilla_file_system",
    "MathAPI": "math_api",
    "MessageAPI": "message_api",
    "TwitterAPI": "posting_api",
    "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
}
MODULES = {
    f"{PREFIX}.{stem}": (ROOT / "eval_checker/multi_turn_eval/func_source_code" / f"{stem}.py").read_text()
    for stem in (*CLASSES.values(), "long_context")
}


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _entries(category: str) -> list[tuple[dict, list]]:
    questions = _jsonl(ROOT / "data" / f"BFCL_v4_{category}.json")
    answers = {a["id"]: a["ground_truth"] for a in _jsonl(ROOT / "data/possible_answer" / f"BFCL_v4_{category}.json")}
    return [(q, answers[q["id"]]) for q in questions]


def _parse(call: str) -> tuple[str, list, dict]:
    node = ast.parse(call, mode="eval").body
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name), call
    return (
        node.func.id,
        [ast.literal_eval(a) for a in node.args],
        {k.arg: ast.literal_eval(k.value) for k in node.keywords},
    )


def _public(ob: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(ob).items() if not k.startswith("_")}


@pytest.fixture(scope="module")
def toolbox() -> Toolbox:
    return Toolbox({}, modules=MODULES)


def _play(toolbox: Toolbox, entry: dict, turns: list, long_context: bool) -> list[str]:
    """Run the entry's gold calls both ways; the list of mismatches (empty when they behave the same)."""
    plain, boxed = {}, {}
    for cls in entry["involved_classes"]:
        module = f"{PREFIX}.{CLASSES[cls]}"
        config = entry["initial_config"].get(cls, {})
        plain[cls] = getattr(importlib.import_module(module), cls)()
        boxed[cls] = toolbox.instantiate(module, cls)
        if cls != "MathAPI":  # BFCL's one stateless class takes no scenario
            plain[cls]._load_scenario(copy.deepcopy(config), long_context=long_context)
            toolbox.invoke(boxed[cls], "_load_scenario", copy.deepcopy(config), long_context=long_context)
    problems: list[str] = []
    for t, calls in enumerate(turns):
        for call in calls:
            name, args, kwargs = _parse(call)
            cls = next(c for c in entry["involved_classes"] if callable(getattr(plain[c], name, None)))
            method = getattr(plain[cls], name)
            kwargs.update(zip(inspect.signature(method).parameters, args, strict=False))  # positional gold args
            try:
                expected = serialize_output(method(**copy.deepcopy(kwargs)), 16_384)
            except Exception as e:  # plain Python raised: the sandbox must fail the call too
                expected = f"raised {type(e).__name__}"
            outcome = toolbox.call_method(boxed[cls], name, copy.deepcopy(kwargs))
            got = outcome.output if outcome.ok else f"raised {outcome.output.split(':')[1].strip()}"
            if got != expected:
                problems.append(f"turn {t} {call}: plain {expected[:200]!r} != sandbox {got[:200]!r}")
        for cls in entry["involved_classes"]:
            want = {k: serialize_output(v, 1 << 20) for k, v in _public(plain[cls]).items()}
            have = {k: v for k, v in toolbox.describe(boxed[cls], 1 << 20).items()}
            for k in sorted(set(want) | set(have)):
                if want.get(k) != have.get(k):
                    problems.append(f"turn {t} {cls}.{k}: state differs")
    return problems


@pytest.mark.parametrize("category", ["multi_turn_base", "multi_turn_long_context"])
def test_bfcl_multi_turn_classes_run_unchanged_and_match_plain_python(toolbox: Toolbox, category: str) -> None:
    entries = _entries(category)
    failing: dict[str, list[str]] = {}
    for entry, turns in entries:
        problems = _play(toolbox, entry, turns, long_context=category.endswith("long_context"))
        if problems:
            failing[entry["id"]] = problems
    used = {c for e, _ in entries for c in e["involved_classes"]}
    assert used == set(CLASSES), "the corpus is every multi-turn class"
    assert not failing, json.dumps(failing, indent=1)[:4000]
