"""Real-code corpus: BFCL's multi-turn tool classes, read from the installed ``bfcl-eval`` package, run unchanged
in the sandbox and behave as under plain CPython.

For every entry of BFCL's multi-turn base category, its ground-truth calls run on two sets of instances built
from the same initial state: BFCL's own classes imported normally, and the same files' text run through
``Toolbox(modules=...)``. Every call's result text and, after every turn, every public attribute must be equal.
The files are never copied into the repo; without ``bfcl-eval`` installed (``.ci/suites_setup.sh``) the test
is skipped with that reason.
"""

from __future__ import annotations

import copy
import importlib
import json
from typing import Any

import pytest

from toolgym.sandbox import Toolbox, serialize_output
from toolgym.suites.bfcl_multi_turn import CLASS_FILES, STATELESS_CLASSES, load_entries, module_name, package_sources

bfcl_eval = pytest.importorskip("bfcl_eval", reason="bfcl-eval is installed by .ci/suites_setup.sh")

# BFCL's multi-turn categories' classes (its constants/executable_backend_config.py also lists the web-search
# and memory classes of other categories, which reach the network and the disk), read from the installed package.
CLASSES = {cls: module_name(stem) for cls, (stem, _) in CLASS_FILES.items()}
MODULES = package_sources()


def _public(ob: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(ob).items() if not k.startswith("_")}


@pytest.fixture(scope="module")
def toolbox() -> Toolbox:
    return Toolbox({}, modules=MODULES)


def _play(toolbox: Toolbox, entry: Any) -> list[str]:
    """Run the entry's gold calls both ways; the list of mismatches (empty when they behave the same)."""
    plain, boxed = {}, {}
    for cls in entry.involved_classes:
        config = entry.initial_config.get(cls, {})
        plain[cls] = getattr(importlib.import_module(CLASSES[cls]), cls)()
        boxed[cls] = toolbox.instantiate(CLASSES[cls], cls)
        if cls not in STATELESS_CLASSES:
            plain[cls]._load_scenario(copy.deepcopy(config), long_context=entry.long_context)
            toolbox.invoke(boxed[cls], "_load_scenario", copy.deepcopy(config), long_context=entry.long_context)
    problems: list[str] = []
    for t, calls in enumerate(entry.gold):
        for name, kwargs in calls:
            cls = next(c for c in reversed(entry.involved_classes) if callable(getattr(plain[c], name, None)))
            try:
                expected = serialize_output(getattr(plain[cls], name)(**copy.deepcopy(kwargs)), 16_384)
            except Exception as e:  # plain Python raised: the sandbox must fail the call too
                expected = f"raised {type(e).__name__}"
            outcome = toolbox.call_method(boxed[cls], name, copy.deepcopy(kwargs))
            got = outcome.output if outcome.ok else f"raised {outcome.output.split(':')[1].strip()}"
            if got != expected:
                problems.append(f"turn {t} {name}({kwargs}): plain {expected[:200]!r} != sandbox {got[:200]!r}")
        for cls in entry.involved_classes:
            want = {k: serialize_output(v, 1 << 20) for k, v in _public(plain[cls]).items()}
            have = toolbox.describe(boxed[cls], 1 << 20)
            problems += [
                f"turn {t} {cls}.{k}: state differs"
                for k in sorted(set(want) | set(have))
                if want.get(k) != have.get(k)
            ]
    return problems


@pytest.mark.parametrize(
    "category", ["multi_turn_base", "multi_turn_long_context", "multi_turn_miss_param", "multi_turn_miss_func"]
)
def test_bfcl_multi_turn_classes_run_unchanged_and_match_plain_python(toolbox: Toolbox, category: str) -> None:
    entries = load_entries(category)
    failing = {e.id: problems for e in entries if (problems := _play(toolbox, e))}
    assert {c for e in entries for c in e.involved_classes} == set(CLASSES), "the corpus is every multi-turn class"
    assert not failing, json.dumps(failing, indent=1)[:4000]
