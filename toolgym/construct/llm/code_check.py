"""Out-of-process validation of generated tool code (stage 5 of the ``openai`` backend).

Model-written code is never run in the building process. :func:`check_scenario` starts
``python -m toolgym.construct.llm.code_check`` with the job on stdin; the child imports what it needs, then lowers its
own OS limits (``RLIMIT_AS``: address space, ``RLIMIT_CPU``: CPU seconds, no core files, small files only)
and runs the checks through toolgym's sandbox. The parent enforces a wall-clock timeout and kills the child's
process group when it is exceeded. A child that dies (CPU limit, out of memory, crash) fails the check with
the reason recorded; it cannot take the build down.

Checks, each reported per tool as ``{"tool", "kind", "detail"}``:

* ``compile``: the source compiles under the sandbox policy and defines the tool (``Toolbox``);
* ``wrong_answer`` / ``error`` / ``timeout`` / ``resource``: every gold call returns its sub-answer
  (``toolgym.reward.answer_in_output``);
* ``leak``: the gold calls with every argument value changed do not return the sub-answer, and distractor tools
  called with plausible arguments return no sub-answer;
* ``gold_plan``: the scenario played through :class:`~toolgym.env.ToolEnv` with its gold plan scores
  Solve-F1 = 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_PREFIX = "@@toolgym-code-check@@ "


@dataclass
class Limits:
    """OS limits of the validator process (memory above what it holds after its imports)."""

    cpu_seconds: float = 20.0
    memory_mb: int = 512
    wall_seconds: float = 90.0
    # Sandbox settings used for the checks (None: the env's defaults). Tests relax them to exercise the OS limits.
    sandbox: dict[str, Any] | None = None


@dataclass
class CheckResult:
    ok: bool
    problems: list[dict[str, Any]] = field(default_factory=list)
    process: str | None = None  # why the validator process itself failed (killed, timeout, crashed), else None

    def summary(self) -> str:
        if self.process:
            return self.process
        return "; ".join(f"{p['tool']}: {p['kind']}: {p['detail']}" for p in self.problems[:4])

    def kind(self) -> str:
        """One short category for the build report."""
        if self.process:
            return self.process.split(":", 1)[0]
        order = ("compile", "error", "timeout", "resource", "wrong_answer", "leak", "gold_plan")
        kinds = {p["kind"] for p in self.problems}
        return next((k for k in order if k in kinds), "failed")


# ------------------------------------------------------------------------------------------------ parent
async def check_scenario(scenario: dict[str, Any], limits: Limits | None = None) -> CheckResult:
    """Validate a scenario's tool code in a separate, resource-limited process."""
    limits = limits or Limits()
    job = json.dumps(
        {
            "scenario": scenario,
            "cpu_seconds": limits.cpu_seconds,
            "memory_mb": limits.memory_mb,
            "sandbox": limits.sandbox or {},
        }
    ).encode()
    root = str(Path(__file__).resolve().parents[3])  # the folder holding the toolgym package
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "toolgym.construct.llm.code_check",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(job), limits.wall_seconds)
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        return CheckResult(False, process=f"timeout: validator exceeded the wall limit of {limits.wall_seconds:g} s")
    for line in reversed(out.decode("utf-8", "replace").splitlines()):
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX) :])
            return CheckResult(not data["problems"], data["problems"])
    code = proc.returncode
    tail = " ".join(err.decode("utf-8", "replace").split()[-30:])
    if code is not None and code < 0:
        sig = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        kind = {"SIGXCPU": "cpu_limit", "SIGKILL": "killed"}.get(sig, "killed")
        return CheckResult(False, process=f"{kind}: validator process killed by {sig}")
    if "MemoryError" in tail:
        return CheckResult(False, process=f"memory_limit: validator ran out of memory ({tail[-200:]})")
    return CheckResult(False, process=f"crashed: validator exited with code {code} ({tail[-300:]})")


# ------------------------------------------------------------------------------------------------- child
def _set_limits(cpu_seconds: float, memory_mb: int) -> None:
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime + cpu_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))  # SIGXCPU at the soft limit, SIGKILL at the hard one
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    mem = vm + memory_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def wrong_value(value: Any) -> Any:
    """A clearly different value of the same type (for the wrong-argument checks)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7919
    if isinstance(value, float):
        return value + 79.19
    return "no-such-value-7391"


def _sample(schema: dict[str, Any]) -> Any:
    return {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}.get(schema.get("type"), "sample")


def run_checks(scenario_dict: dict[str, Any], sandbox: dict[str, Any]) -> list[dict[str, Any]]:
    """Every check of the module docstring; returns the problems found (empty: the code is accepted)."""
    from toolgym.env import ToolEnv
    from toolgym.reward import answer_in_output
    from toolgym.sandbox import Toolbox, ToolSourceError
    from toolgym.scenario import Scenario
    from toolgym.sources import StaticSource

    scenario = Scenario.from_dict(scenario_dict)
    opts = {"step_budget": 100_000, "time_limit": 2.0, **sandbox}
    problems: list[dict[str, Any]] = []
    boxes: dict[str, Any] = {}
    for name, source in scenario.source.items():
        try:
            boxes[name] = Toolbox({name: source}, **opts)
        except ToolSourceError as exc:
            problems.append({"tool": name, "kind": "compile", "detail": str(exc)[:500]})
    answers = [a for s in scenario.subtasks for a in s.answers]
    used = {s.tool for s in scenario.subtasks}
    gold_values: dict[str, Any] = {}
    for sub in scenario.subtasks:
        box = boxes.get(sub.tool)
        if box is None:
            continue
        args = dict(sub.arguments or {})
        gold_values.update(args)
        out = box.call(sub.tool, args, {})
        if not out.ok:
            kind = {"timeout": "timeout", "resource": "resource", "size": "resource"}.get(out.error or "", "error")
            problems.append({"tool": sub.tool, "kind": kind, "detail": f"gold call {args}: {out.output[:300]}"})
            continue
        missing = [a for a in sub.answers if not answer_in_output(out.output, a)]
        if missing:
            detail = f"gold call {args} returned {out.output[:200]!r}, without {missing[0]!r}"
            problems.append({"tool": sub.tool, "kind": "wrong_answer", "detail": detail})
            continue
        wrong = {k: wrong_value(v) for k, v in args.items()}
        bad = box.call(sub.tool, wrong, {})
        if bad.ok and any(answer_in_output(bad.output, a) for a in sub.answers):
            detail = f"wrong arguments {wrong} also returned the answer: {bad.output[:200]!r}"
            problems.append({"tool": sub.tool, "kind": "leak", "detail": detail})
    for tool in scenario.tools:
        fn = tool["function"]
        box = boxes.get(fn["name"])
        if fn["name"] in used or box is None:
            continue
        props = (fn.get("parameters") or {}).get("properties", {})
        required = set((fn.get("parameters") or {}).get("required", []))
        args = {p: gold_values.get(p, _sample(s)) for p, s in props.items() if p in required or p in gold_values}
        out = box.call(fn["name"], args, {})
        given = json.dumps(args, ensure_ascii=False)  # echoing an argument (an earlier answer) reveals nothing
        leaked = [a for a in answers if answer_in_output(out.output, a) and not answer_in_output(given, a)]
        if leaked:
            detail = f"distractor called with {args} returned the sub-answer {leaked[0]!r}"
            problems.append({"tool": fn["name"], "kind": "leak", "detail": detail})
    if problems:
        return problems
    env = ToolEnv(
        StaticSource("check", [scenario]), tool_step_budget=opts["step_budget"], tool_time_limit=opts["time_limit"]
    )
    env.reset(seed=0, options={"index": 0})
    info: dict[str, Any] = {}
    for _ in range(len(scenario.subtasks) + 2):
        action = env.gold_actions()[0]
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    f1 = info.get("episode", {}).get("solve_f1", 0.0)
    if f1 != 1.0:
        feedback = "; ".join(info.get("feedback", []))[:300]
        problems.append({"tool": "*", "kind": "gold_plan", "detail": f"gold plan scored Solve-F1 {f1:.2f} {feedback}"})
    return problems


def main() -> None:
    job = json.loads(sys.stdin.read())
    # Import everything the checks use before the limits are lowered.
    import toolgym.env
    import toolgym.reward
    import toolgym.sandbox  # noqa: F401

    _set_limits(float(job["cpu_seconds"]), int(job["memory_mb"]))
    problems = run_checks(job["scenario"], job.get("sandbox") or {})
    sys.stdout.write(RESULT_PREFIX + json.dumps({"problems": problems}, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
