"""What a sandboxed call costs against plain CPython, for the code styles the real-code policy admits.

plain tool   = the step benchmark's function tool (state dict): Toolbox.call vs a direct call of the same
               function exec'd normally (the floor of step_overhead.py without the json round trip)
class tool   = the same lookup written as real code writes it: typing import, a dataclass, a private helper
               method and attributes, a protocol method (the policy's single-underscore and dunder guards)
BFCL corpus  = every ground-truth call of BFCL's multi-turn base category on its eight stateful classes
               (installed bfcl-eval), replayed entry by entry: Toolbox.call_method on the sandboxed instances
               vs the method call on BFCL's own classes imported normally; both include copying the arguments
               and serializing the result the same way
All variants run in one process, interleaved in rounds, so machine noise hits them alike; the ratio is the
result. Prints a table, writes JSON.

    python benchmarks/policy_overhead.py [--rounds 5] [--calls 5000] [--entries 200]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

from step_overhead import STATE, TOOL  # this folder is on sys.path

from toolgym.sandbox import Toolbox, serialize_output

CLASS_TOOL = """
from dataclasses import dataclass
from typing import Dict, Optional


@dataclass
class _Flight:
    flight_id: str
    status: str
    gate: str

    def _view(self) -> Dict[str, str]:
        return {"flight_id": self.flight_id, "status": self.status, "gate": self.gate}

    def __bool__(self) -> bool:
        return self.status != "cancelled"


def _find(flight_id: str) -> Optional[_Flight]:
    row = state["flights"].get(flight_id)
    return None if row is None else _Flight(flight_id, row["status"], row["gate"])


def get_flight_status(flight_id: str) -> Dict[str, str]:
    flight = _find(flight_id)
    if not flight:
        return {"error": "unknown flight " + flight_id}
    return flight._view()
"""
ARGS = {"flight_id": "FL1007"}


def plain_function(source: str):
    ns: dict = {"state": STATE}
    exec(source, ns)
    return ns["get_flight_status"]


def time_plain(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        serialize_output(fn(**ARGS), 16_384)
    return (time.perf_counter() - t0) / n


def time_boxed(box: Toolbox, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        box.call("get_flight_status", ARGS, STATE)
    return (time.perf_counter() - t0) / n


# ----------------------------------------------------------------------------------------------- BFCL corpus


def bfcl_corpus(limit: int) -> tuple[dict[str, str], dict[str, str], list] | None:
    """BFCL's class files (module name -> text), each class's module and the base category's entries."""
    from toolgym.suites import bfcl_multi_turn as mt

    if mt.source_dir() is None:
        return None
    modules = {cls: mt.module_name(stem) for cls, (stem, _) in mt.CLASS_FILES.items()}
    return mt.package_sources(), modules, mt.load_entries("multi_turn_base")[:limit]


def replay(entries, modules: dict[str, str], box: Toolbox | None) -> tuple[float, int]:
    """Seconds spent in the gold calls of ``entries`` (plain Python when ``box`` is None), and how many."""
    from toolgym.suites.bfcl_multi_turn import STATELESS_CLASSES

    spent, calls = 0.0, 0
    for entry in entries:
        objs = {}
        for cls in entry.involved_classes:
            config = copy.deepcopy(entry.initial_config.get(cls, {}))
            if box is None:
                objs[cls] = getattr(importlib.import_module(modules[cls]), cls)()
                if cls not in STATELESS_CLASSES:
                    objs[cls]._load_scenario(config)
            else:
                objs[cls] = box.instantiate(modules[cls], cls)
                if cls not in STATELESS_CLASSES:
                    box.invoke(objs[cls], "_load_scenario", config)
        plain = {c: getattr(importlib.import_module(modules[c]), c) for c in entry.involved_classes}
        for turn in entry.gold:
            for name, kwargs in turn:
                cls = next(c for c in reversed(entry.involved_classes) if callable(getattr(plain[c], name, None)))
                t0 = time.perf_counter()
                if box is None:
                    try:
                        serialize_output(getattr(objs[cls], name)(**copy.deepcopy(kwargs)), 16_384)
                    except Exception:
                        pass
                else:
                    box.call_method(objs[cls], name, copy.deepcopy(kwargs))
                spent += time.perf_counter() - t0
                calls += 1
    return spent, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--entries", type=int, default=200, help="BFCL multi-turn base entries replayed per round")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "policy_overhead.json")
    args = ap.parse_args()

    plain_fn, class_fn = plain_function(TOOL), plain_function(CLASS_TOOL)
    plain_box, class_box = Toolbox({"get_flight_status": TOOL}), Toolbox({"get_flight_status": CLASS_TOOL})
    assert (
        plain_box.call("get_flight_status", ARGS, STATE).output
        == class_box.call("get_flight_status", ARGS, STATE).output
    )
    corpus = bfcl_corpus(args.entries)
    corpus_box = Toolbox({}, modules=corpus[0]) if corpus else None
    rows: dict[str, dict[str, list[float]]] = {k: {"plain": [], "sandbox": []} for k in ("plain tool", "class tool")}
    if corpus:
        rows["BFCL corpus"] = {"plain": [], "sandbox": []}
    n_corpus = 0
    for _ in range(args.rounds):
        rows["plain tool"]["plain"].append(time_plain(plain_fn, args.calls))
        rows["plain tool"]["sandbox"].append(time_boxed(plain_box, args.calls))
        rows["class tool"]["plain"].append(time_plain(class_fn, args.calls))
        rows["class tool"]["sandbox"].append(time_boxed(class_box, args.calls))
        if corpus:
            _, modules, entries = corpus
            for label, box in (("plain", None), ("sandbox", corpus_box)):
                spent, n_corpus = replay(entries, modules, box)
                rows["BFCL corpus"][label].append(spent / n_corpus)

    result: dict[str, Any] = {"rounds": args.rounds, "calls": args.calls, "bfcl_calls_per_round": n_corpus}
    print(f"{'code style':<14}{'plain us':>10}{'sandbox us':>12}{'ratio':>8}")
    for name, times in rows.items():
        plain, boxed = statistics.median(times["plain"]) * 1e6, statistics.median(times["sandbox"]) * 1e6
        result[name] = {"plain_us": plain, "sandbox_us": boxed, "ratio": boxed / plain}
        print(f"{name:<14}{plain:>10.2f}{boxed:>12.2f}{boxed / plain:>7.2f}x")
    if not corpus:
        print("(BFCL corpus skipped: bfcl-eval is not installed; see .ci/suites_setup.sh)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
