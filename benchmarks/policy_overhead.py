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
import ast
import copy
import importlib
import inspect
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


PREFIX = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
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


def bfcl_corpus(limit: int) -> tuple[dict[str, str], dict[str, str], list[tuple[dict, list]]] | None:
    """BFCL's class files (module name -> text), each class's module and the base category's entries."""
    try:
        import bfcl_eval
    except ImportError:
        return None
    root = Path(bfcl_eval.__file__).parent
    sources = {
        f"{PREFIX}.{stem}": (root / "eval_checker/multi_turn_eval/func_source_code" / f"{stem}.py").read_text()
        for stem in (*CLASSES.values(), "long_context")
    }

    def rows(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    answers = {a["id"]: a["ground_truth"] for a in rows(root / "data/possible_answer/BFCL_v4_multi_turn_base.json")}
    entries = [(q, answers[q["id"]]) for q in rows(root / "data/BFCL_v4_multi_turn_base.json")][:limit]
    return sources, {c: f"{PREFIX}.{m}" for c, m in CLASSES.items()}, entries


def _parse(call: str) -> tuple[str, list, dict]:
    node = ast.parse(call, mode="eval").body
    return (
        node.func.id,
        [ast.literal_eval(a) for a in node.args],
        {k.arg: ast.literal_eval(k.value) for k in node.keywords},
    )


def replay(entries, modules: dict[str, str], box: Toolbox | None) -> tuple[float, int]:
    """Seconds spent in the gold calls of ``entries`` (plain Python when ``box`` is None), and how many."""
    spent, calls = 0.0, 0
    for entry, turns in entries:
        objs = {}
        for cls in entry["involved_classes"]:
            module = modules[cls]
            config = copy.deepcopy(entry["initial_config"].get(cls, {}))
            if box is None:
                objs[cls] = getattr(importlib.import_module(module), cls)()
                if cls != "MathAPI":
                    objs[cls]._load_scenario(config)
            else:
                objs[cls] = box.instantiate(module, cls)
                if cls != "MathAPI":
                    box.invoke(objs[cls], "_load_scenario", config)
        for calls_ in turns:
            for call in calls_:
                name, args, kwargs = _parse(call)
                cls = next(c for c in entry["involved_classes"] if name in _methods(modules[c], c))
                kwargs.update(zip(_methods(modules[cls], cls)[name], args, strict=False))
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


_SIGNATURES: dict[str, dict[str, list[str]]] = {}


def _methods(module: str, cls: str) -> dict[str, list[str]]:
    key = f"{module}.{cls}"
    if key not in _SIGNATURES:
        klass = getattr(importlib.import_module(module), cls)
        _SIGNATURES[key] = {
            n: [p for p in inspect.signature(f).parameters if p != "self"]
            for n, f in inspect.getmembers(klass, inspect.isfunction)
            if not n.startswith("_")
        }
    return _SIGNATURES[key]


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
