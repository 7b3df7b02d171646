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

--baseline-rev REV (default e2073a6^, the stricter policy before the sandbox ran real tool code; its
toolgym/sandbox/ is 834ac2c's) instead measures what the current policy costs against that older one, on the
calls the old policy accepts:

function tool      = the plain tool above through Toolbox.call
FlightBooking step = env.step of ToolGym/FlightBooking-v0's gold tool-call turns (resets untimed; the same
                     seeds in both, and the run checks that both versions produce the same gold actions). This
                     row compares the whole step, so it also carries any non-sandbox change to the env since REV
Each toolgym runs in its own worker process (PYTHONPATH = its tree, so the two versions never share a process):
the current checkout, and a ``git archive`` extract of REV cached under the system temp dir (never inside the
repo). The parent drives both round by round, old first in even rounds and new first in odd ones, so drift
cancels; the per-round new/old ratios and their median are the result.

    python benchmarks/policy_overhead.py [--rounds 5] [--calls 5000] [--entries 200]
    python benchmarks/policy_overhead.py --baseline-rev [REV] [--rounds 5] [--calls 5000] [--steps 1000]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolgym.sandbox import Toolbox

# Nothing at module level imports toolgym: --worker runs this file under another revision's toolgym, so each
# mode imports what it needs (and step_overhead, which imports toolgym, only in the parent).

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
REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def plain_function(source: str):
    from step_overhead import STATE  # this folder is on sys.path

    ns: dict = {"state": STATE}
    exec(source, ns)
    return ns["get_flight_status"]


def time_plain(fn, n: int) -> float:
    from toolgym.sandbox import serialize_output

    t0 = time.perf_counter()
    for _ in range(n):
        serialize_output(fn(**ARGS), 16_384)
    return (time.perf_counter() - t0) / n


def time_boxed(box: Toolbox, n: int, state: dict, args: dict = ARGS) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        box.call("get_flight_status", args, state)
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
    from toolgym.sandbox import serialize_output
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


def against_plain(args: argparse.Namespace) -> None:
    """The default run: sandboxed calls against the same code run by plain CPython, all in this process."""
    from step_overhead import STATE, TOOL

    from toolgym.sandbox import Toolbox

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
        rows["plain tool"]["sandbox"].append(time_boxed(plain_box, args.calls, STATE))
        rows["class tool"]["plain"].append(time_plain(class_fn, args.calls))
        rows["class tool"]["sandbox"].append(time_boxed(class_box, args.calls, STATE))
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
    write(result, args.out or RESULTS / "policy_overhead.json")


# ----------------------------------------------------------------------------- against an older toolgym's policy

BASELINE_REV = "e2073a6^"  # the commit before "Sandbox runs real tool code"
FLIGHT_ENV = "ToolGym/FlightBooking-v0"
FLIGHT_SEEDS = range(20)


class BaselineError(Exception):
    """Why the old toolgym cannot be set up or run; main() prints it as one line, without a traceback."""


def git(*args: str) -> str:
    """``git -C REPO args`` stdout; any failure (no git, not a checkout, unknown revision) as a BaselineError."""
    try:
        res = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
    except OSError as e:
        raise BaselineError(f"cannot run git: {e}") from None
    if res.returncode != 0:
        detail = (res.stderr.strip().splitlines() or [f"git {args[0]} exited {res.returncode}"])[0]
        raise BaselineError(detail)
    return res.stdout.strip()


def baseline_tree(rev: str) -> tuple[Path, str]:
    """An extract of ``rev`` (whole tree, from ``git archive``) and its commit, created once and then reused.

    The extract lives under the system temp dir, keyed by commit, never inside the repo: a copy of the package
    inside the repo would be picked up by tests and linters. It is written to a scratch dir and renamed into
    place, so a present dir is a complete one, and concurrent runs at worst extract twice.
    """
    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if top != REPO:
            raise BaselineError(f"{REPO} is not a git checkout (it is inside {top})")
        sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    except BaselineError as e:
        raise BaselineError(f"--baseline-rev {rev}: cannot get the old toolgym from git: {e}") from None
    root = Path(tempfile.gettempdir()).resolve() / "toolgym-policy-baseline"
    if root.is_relative_to(REPO):
        raise BaselineError(f"--baseline-rev {rev}: the temp dir {root.parent} is inside the repo; set TMPDIR")
    tree = root / sha
    if not (tree / "toolgym" / "__init__.py").is_file():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", sha], capture_output=True)
        if archive.returncode != 0:
            raise BaselineError(f"--baseline-rev {rev}: git archive failed: {archive.stderr.decode().strip()}")
        scratch = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=root))
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(scratch, filter="data")
        if not (scratch / "toolgym" / "__init__.py").is_file():
            shutil.rmtree(scratch)
            raise BaselineError(f"--baseline-rev {rev}: commit {sha[:12]} has no toolgym package")
        try:
            scratch.rename(tree)
        except OSError:  # another run put it there first
            shutil.rmtree(scratch)
    return tree, sha


class Side:
    """One toolgym tree in its own ``--worker`` process, asked for one timing at a time over pipes."""

    def __init__(self, label: str, tree: Path, setup: dict[str, Any]) -> None:
        self.label, self.tree = label, tree
        self._err = tempfile.TemporaryFile("w+")  # a file, not a pipe: nobody reads it until something fails
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=env, text=True
        )
        self.info = self.ask(setup)
        imported = Path(self.info["toolgym"]).resolve()
        if not imported.is_relative_to(tree.resolve()):
            raise BaselineError(f"the {label} worker imported toolgym from {imported}, not from {tree}")

    def ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        try:
            self._proc.stdin.write(json.dumps(msg) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self._err.seek(0)
            last = [ln for ln in self._err.read().splitlines() if ln.strip()][-1:] or ["no output"]
            raise BaselineError(f"the {self.label} toolgym ({self.tree}) worker failed: {last[0].strip()}")
        return json.loads(line)

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._err.close()


def gold_episodes(env) -> list[tuple[int, list[str]]]:
    """Each seed's gold tool-call turns (the final answer turn dropped), after checking the gold episode solves."""
    episodes = []
    for seed in FLIGHT_SEEDS:
        env.reset(seed=seed)
        actions = env.unwrapped.gold_actions()
        reward = terminated = None
        for action in actions:
            _, reward, terminated, _, _ = env.step(action)
        if not terminated or reward != 1.0:
            raise RuntimeError(f"{FLIGHT_ENV} seed {seed}: the gold episode ended with reward {reward}")
        episodes.append((seed, actions[:-1]))
    if not any(actions for _, actions in episodes):
        raise RuntimeError(f"{FLIGHT_ENV}: no gold tool calls in seeds {FLIGHT_SEEDS}")
    return episodes


def time_env_steps(env, episodes: list[tuple[int, list[str]]], n: int) -> float:
    """Seconds per gold step over ``n`` steps, cycling through ``episodes``; resets are not timed."""
    spent, done = 0.0, 0
    while done < n:
        for seed, actions in episodes:
            env.reset(seed=seed)
            turn = actions[: n - done]
            t0 = time.perf_counter()
            for action in turn:
                env.step(action)
            spent += time.perf_counter() - t0
            done += len(turn)
            if done >= n:
                break
    return spent / n


def worker() -> None:
    """One toolgym version's side of --baseline-rev: a setup line, then one timing per line of stdin.

    Replies go to the real stdout, one JSON line each; anything else printing goes to stderr, so a stray print
    cannot garble the protocol.
    """
    reply, sys.stdout = sys.stdout, sys.stderr

    def send(obj: dict[str, Any]) -> None:
        reply.write(json.dumps(obj) + "\n")
        reply.flush()

    import gymnasium as gym

    import toolgym
    from toolgym.sandbox import Toolbox

    setup = json.loads(sys.stdin.readline())
    state, args = setup["state"], setup["args"]
    box = Toolbox({"get_flight_status": setup["tool"]})
    outcome = box.call("get_flight_status", args, state)
    env = gym.make(FLIGHT_ENV)
    episodes = gold_episodes(env)
    time_boxed(box, min(setup["calls"], 1000), state, args)  # warm up before the first timed round
    time_env_steps(env, episodes, min(setup["steps"], 100))
    digest = hashlib.sha256(json.dumps(episodes).encode()).hexdigest()
    send({"toolgym": toolgym.__file__, "output": outcome.output, "ok": outcome.ok, "gold": digest})
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["op"] == "function tool":
            send({"seconds": time_boxed(box, msg["n"], state, args)})
        else:
            send({"seconds": time_env_steps(env, episodes, msg["n"])})


def against_baseline(args: argparse.Namespace) -> None:
    """The current policy against ``args.baseline_rev``'s, each in its own worker, alternating per round."""
    from step_overhead import STATE, TOOL

    old_tree, old_sha = baseline_tree(args.baseline_rev)
    setup = {"tool": TOOL, "state": STATE, "args": ARGS, "calls": args.calls, "steps": args.steps}
    sides: dict[str, Side] = {}
    try:
        for label, tree in (("old", old_tree), ("new", REPO)):
            sides[label] = Side(label, tree, setup)
        old, new = sides["old"].info, sides["new"].info
        if not (old["ok"] and new["ok"] and old["output"] == new["output"]):
            raise BaselineError(f"the function tool differs: old {old['output']!r}, new {new['output']!r}")
        counts = {"function tool": args.calls, "FlightBooking step": args.steps}
        times: dict[str, dict[str, list[float]]] = {call: {"old": [], "new": []} for call in counts}
        for r in range(args.rounds):
            for call, n in counts.items():
                for label in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    times[call][label].append(sides[label].ask({"op": call, "n": n})["seconds"])
    finally:
        for side in sides.values():
            side.close()

    try:
        head = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "toolgym"))
    except BaselineError:
        head, dirty = None, None
    result: dict[str, Any] = {
        "baseline_rev": args.baseline_rev,
        "baseline_commit": old_sha,
        "current_commit": head,
        "current_toolgym_modified": dirty,  # uncommitted changes under toolgym/ are part of "new"
        "rounds": args.rounds,
        "calls": args.calls,
        "steps": args.steps,
        "old_toolgym": old["toolgym"],
        "new_toolgym": new["toolgym"],
        "same_gold_actions": old["gold"] == new["gold"],
    }
    print(f"old = {args.baseline_rev} ({old_sha[:12]}), new = {REPO}")
    label, width = "new/old per round", max(18, 6 * args.rounds)
    print(f"{'call':<20}{'old us':>9}{'new us':>9}  {label:<{width}}{'median':>8}")
    for call, t in times.items():
        ratios = [n / o for o, n in zip(t["old"], t["new"], strict=True)]
        o_us, n_us = statistics.median(t["old"]) * 1e6, statistics.median(t["new"]) * 1e6
        result[call] = {
            "old_us": o_us,
            "new_us": n_us,
            "ratio": statistics.median(ratios),
            "old_us_per_round": [x * 1e6 for x in t["old"]],
            "new_us_per_round": [x * 1e6 for x in t["new"]],
            "ratio_per_round": ratios,
        }
        per_round = "".join(f"{x:6.2f}" for x in ratios)
        print(f"{call:<20}{o_us:>9.2f}{n_us:>9.2f}  {per_round:<{width}}{statistics.median(ratios):>7.2f}x")
    if not result["same_gold_actions"]:
        print(f"(note: the two versions' {FLIGHT_ENV} gold actions differ, so the step row times different calls)")
    write(result, args.out or RESULTS / "policy_baseline.json")


def write(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--entries", type=int, default=200, help="BFCL multi-turn base entries replayed per round")
    ap.add_argument(
        "--baseline-rev",
        nargs="?",
        const=BASELINE_REV,
        metavar="REV",
        help=f"measure the current policy against this revision's (default with no REV: {BASELINE_REV})",
    )
    ap.add_argument("--steps", type=int, default=1000, help="with --baseline-rev: FlightBooking steps per round")
    ap.add_argument("--out", type=Path, help="JSON (default: results/policy_overhead.json, or policy_baseline.json)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker()
    elif args.baseline_rev is None:
        against_plain(args)
    else:
        try:
            against_baseline(args)
        except BaselineError as e:
            sys.exit(f"policy_overhead.py: {e}")


if __name__ == "__main__":
    main()
