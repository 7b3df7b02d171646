"""Real-code corpus, part two: tool code that toolgym's own LLM construction backend writes, run unchanged in the
sandbox and compared with plain CPython.

The requests are the ``openai`` backend's deploy-stage requests (``construct.llm.prompts.code_messages``, the
stage's schema and reply check, a rejected reply asked again with the problem up to ``--attempts`` times), made
for the tools of procedural scenarios (their documents, gold calls and answers), so a weak model does not have to
survive four earlier stages first. Every last reply is journaled in
``--replies`` (JSONL); a rerun reuses the journaled replies and asks only for the missing ones, and without
``--base-url`` the script compares only what the journal holds.

Each code runs on the same inputs (its gold calls, the gold calls with every argument changed, and a sample call for
a tool the plan does not use) three times: twice under plain CPython, each in a fresh, resource-limited child process
(CPU, memory and file-size limits, a wall-clock timeout, a scratch working directory; different hash and random
seeds), and once through :class:`toolgym.sandbox.Toolbox`. Every code is then one of:

* ``same``: the sandbox accepts it and every result text equals plain CPython's (an exception counts as its type);
* ``refused``: the sandbox refuses it at load (the policy's construct is listed);
* ``differs``: some result differs (the first difference is listed);
* ``nondeterministic``: the two plain runs disagree (clock, random, hash order), so there is no single expected text;
* ``plain_fails``: plain CPython cannot load it (syntax error, missing function, failing import) or does not
  finish a call within its limits: there is nothing to compare against;
* ``no_code``: the reply was not a ``{"code": "def <name>(...)"}`` object.

The share reported is ``same / (same + refused + differs)``: of the code that runs deterministically under plain
CPython, the part that also runs unchanged in the sandbox and behaves the same.

    python benchmarks/llm_code_corpus.py --model M --base-url http://127.0.0.1:8000/v1 --replies corpus.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import copy
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = ("same", "refused", "differs", "nondeterministic", "plain_fails", "no_code")
PLAIN_CPU_SECONDS = 5  # per plain run; its wall-clock timeout is twice that
PLAIN_MEMORY_MB = 512


# ------------------------------------------------------------------------------------------ plain CPython child
def _plain_child() -> None:
    """Run one job from stdin under plain CPython: exec the code, call the tool on every input, print the texts.

    Only the standard library is imported here (toolgym's output rule is loaded from its file without importing
    the package), then the limits are lowered, so the child starts in milliseconds and model code cannot grow
    past them."""
    import random
    import resource

    job = json.loads(sys.stdin.read())
    spec = importlib.util.find_spec("toolgym")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "sandbox" / "output.py"
    loader = importlib.util.spec_from_file_location("toolgym_output_rule", path)
    output = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(output)
    cpu = int(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) + job["cpu_seconds"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
    with open("/proc/self/statm") as f:
        mem = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE") + PLAIN_MEMORY_MB * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
    random.seed(job["seed"])
    namespace: dict[str, Any] = {"__name__": "tool"}
    try:
        exec(compile(job["code"], "<tool>", "exec"), namespace)
        fn = namespace[job["name"]]
        assert callable(fn)
    except BaseException as e:  # the code itself does not load
        print(json.dumps({"load": f"{type(e).__name__}: {e}"[:300]}))
        return
    texts = []
    for args in job["inputs"]:
        try:
            texts.append(output.serialize_output(fn(**copy.deepcopy(args)), 16_384))
        except Exception as e:
            texts.append(f"raised {type(e).__name__}")
    print(json.dumps({"texts": texts}, ensure_ascii=False))


def run_plain(name: str, code: str, inputs: list[dict], seed: int, cpu_seconds: float) -> dict[str, Any]:
    """One plain CPython run in a fresh child: ``{"texts": [...]}``, ``{"load": why}`` or ``{"stopped": why}``."""
    job = json.dumps({"name": name, "code": code, "inputs": inputs, "seed": seed, "cpu_seconds": cpu_seconds})
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    with tempfile.TemporaryDirectory() as scratch:
        try:
            res = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--plain-child"],
                input=job,
                capture_output=True,
                text=True,
                timeout=2 * cpu_seconds,
                cwd=scratch,
                env=env,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return {"stopped": f"plain run exceeded {2 * cpu_seconds:g} s"}
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        return {"stopped": f"plain run ended with code {res.returncode}: {res.stderr.strip()[-200:]}"}
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------------------------ the inputs
def inputs_for(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The gold calls, each again with every argument changed, or a sample call for a tool no call uses."""
    from toolgym.construct.llm.code_check import wrong_value

    calls = [c["arguments"] for c in row["calls"]]
    if not calls:
        params = row["function"].get("parameters") or {}
        sample = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}
        calls = [
            {p: sample.get(s.get("type"), "sample") for p, s in params.get("properties", {}).items()
             if p in params.get("required", [])}
        ]  # fmt: skip
        return calls
    return [*calls, *({k: wrong_value(v) for k, v in c.items()} for c in calls)]


def _sandboxed(name: str, code: str, inputs: list[dict]) -> dict[str, Any]:
    from toolgym.sandbox import Toolbox, ToolSourceError

    try:
        box = Toolbox({name: code}, step_budget=100_000, time_limit=2.0)  # the env's defaults
    except ToolSourceError as e:
        return {"refused": str(e)[:300]}
    texts, messages = [], []
    for args in inputs:
        out = box.call(name, copy.deepcopy(args), {})
        messages.append(out.output)
        if out.ok:
            texts.append(out.output)
        elif out.error == "bad_arguments":  # "Error: bad arguments for tool 'x': TypeError: ..."
            texts.append("raised TypeError")
        elif out.error == "exception":  # "Error: <type>: <message>"
            texts.append(f"raised {out.output.split(':')[1].strip()}")
        else:
            texts.append(f"stopped ({out.error})")
    return {"texts": texts, "messages": messages}


def classify(row: dict[str, Any], cpu_seconds: float = PLAIN_CPU_SECONDS) -> dict[str, Any]:
    """The class of one journaled reply (module docstring), with the detail that explains it."""
    from toolgym.construct.llm.prompts import CODE_SCHEMA
    from toolgym.construct.llm.validate import Reject, check_code_reply, parse_reply

    name = row["function"]["name"]
    try:
        code = check_code_reply(parse_reply(row["reply"], CODE_SCHEMA), name)
    except Reject as r:
        return {"class": "no_code", "detail": f"{r.kind}: {r.detail[:200]}"}
    inputs = inputs_for(row)
    first, second = (run_plain(name, code, inputs, seed, cpu_seconds) for seed in (0, 1))
    for plain in (first, second):
        if "load" in plain or "stopped" in plain:
            return {"class": "plain_fails", "detail": plain.get("load") or plain["stopped"]}
    if first["texts"] != second["texts"]:
        at = next(i for i, (a, b) in enumerate(zip(first["texts"], second["texts"], strict=True)) if a != b)
        return {"class": "nondeterministic", "detail": f"input {inputs[at]}: {first['texts'][at][:80]!r} then "
                f"{second['texts'][at][:80]!r}"}  # fmt: skip
    boxed = _sandboxed(name, code, inputs)
    if "refused" in boxed:
        return {"class": "refused", "detail": boxed["refused"]}
    for args, want, got, said in zip(inputs, first["texts"], boxed["texts"], boxed["messages"], strict=True):
        if want != got:
            return {"class": "differs", "detail": f"input {args}: plain {want[:120]!r}, sandbox {said[:160]!r}"}
    return {"class": "same", "detail": ""}


# -------------------------------------------------------------------------------------------- the requests
def requests(env_ids: list[str], seeds: int, max_functions: int | None) -> list[dict[str, Any]]:
    """One deploy-stage request per tool of each scenario (the tool's document, its gold calls, the answers)."""
    import gymnasium as gym

    import toolgym  # noqa: F401  (registers the ids)

    rows: list[dict[str, Any]] = []
    for env_id in env_ids:
        env = gym.make(env_id)
        for seed in range(seeds):
            env.reset(seed=seed)
            sc = env.unwrapped.scenario
            answers = [a for s in sc.subtasks for a in s.answers]
            for tool in sc.tools:
                fn = tool["function"]
                calls = [{"arguments": s.arguments, "answer": s.answers[0]} for s in sc.subtasks
                         if s.tool == fn["name"] and s.answers]  # fmt: skip
                key = f"{env_id}/{seed}/{fn['name']}"
                rows.append({"key": key, "function": fn, "calls": calls, "forbidden": answers})
        env.close()
    return rows[:max_functions] if max_functions else rows


async def ask_missing(todo: list[dict[str, Any]], args: argparse.Namespace, journal: Path) -> None:
    """Ask the model for every row of ``todo`` through the backend's own client and stage check; journal each."""
    from toolgym.construct.llm import prompts as P
    from toolgym.construct.llm.config import LLMBuildConfig
    from toolgym.construct.llm.stages import Model, _seed
    from toolgym.construct.llm.validate import Reject, check_code_reply, parse_reply

    cfg = LLMBuildConfig(model=args.model, base_url=args.base_url, out=str(journal.parent), api_key=args.api_key,
                         concurrency=args.concurrency, max_tokens=args.max_tokens, temperature=args.temperature,
                         timeout=args.timeout, progress=False)  # fmt: skip
    model = Model(cfg)
    lock = asyncio.Lock()

    async def one(i: int, row: dict[str, Any]) -> None:
        """Like the deploy stage: a reply that is not a ``def`` of the tool is asked again with the problem."""
        first = P.code_messages(row["function"], row["calls"], row["forbidden"])
        messages, reply, attempt = first, "", 0
        for attempt in range(args.attempts):
            try:
                reply = await model.complete(messages, P.CODE_SCHEMA, _seed(cfg, i, f"deploy/{row['key']}", attempt))
                code = check_code_reply(parse_reply(reply, P.CODE_SCHEMA), row["function"]["name"])
                if args.syntax_feedback:
                    syntax_problem(code)
                break
            except Reject as r:
                if r.kind == "bad_request":  # the server refused the request itself: journaled without code
                    reply = f"<refused by the server: {r.detail[:200]}>"
                    break
                messages = P.feedback_messages(first, reply, f"{r.kind}: {r.detail}")
        line = {**row, "model": args.model, "reply": reply, "attempts": attempt + 1}
        async with lock:
            with journal.open("a") as f:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")

    try:
        await asyncio.gather(*(one(i, row) for i, row in enumerate(todo)))
    finally:
        await model.close()


def syntax_problem(code: str) -> None:
    """Raise the build's :class:`Reject` when ``code`` is not Python at all (plain ``compile``, not the sandbox's
    policy, so asking again never steers the corpus towards what the sandbox accepts)."""
    from toolgym.construct.llm.validate import Reject

    try:
        compile(code, "<tool>", "exec", dont_inherit=True)
    except SyntaxError as e:
        raise Reject("syntax", f"the code is not valid Python: {e.msg} (line {e.lineno})") from None


def read_journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replies", required=True, help="JSONL journal of the model's replies (read, and appended to)")
    ap.add_argument("--model", help="model name; with --base-url, missing replies are asked for")
    ap.add_argument("--base-url")
    ap.add_argument("--api-key")
    ap.add_argument("--envs", help="comma-separated env ids (default: every procedural domain)")
    ap.add_argument("--seeds", type=int, default=2, help="scenarios per env")
    ap.add_argument("--max-functions", type=int)
    ap.add_argument("--max-tokens", type=int, default=700)
    ap.add_argument("--temperature", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--attempts", type=int, default=3, help="requests per tool (the build's default)")
    ap.add_argument(
        "--syntax-feedback",
        action="store_true",
        help="also ask again when the code is not valid Python (the build does so after its compile check)",
    )
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--plain-seconds", type=float, default=PLAIN_CPU_SECONDS, help="CPU limit of a plain run")
    ap.add_argument("--out", default=str(RESULTS / "llm_code_corpus.json"))
    args = ap.parse_args(argv)
    journal = Path(args.replies)
    t0 = time.monotonic()
    if args.base_url:
        if not args.model:
            ap.error("--base-url needs --model")
        from toolgym.registry import registered_ids, takes_knobs

        env_ids = args.envs.split(",") if args.envs else [
            i for i in registered_ids() if takes_knobs(i) and "Mixed" not in i
        ]  # fmt: skip
        done = {r["key"] for r in read_journal(journal) if r.get("model") == args.model}
        todo = [r for r in requests(env_ids, args.seeds, args.max_functions) if r["key"] not in done]
        journal.parent.mkdir(parents=True, exist_ok=True)
        from toolgym.construct.llm.stages import ScenarioFailed

        try:
            asyncio.run(ask_missing(todo, args, journal))
        except ScenarioFailed as exc:  # the replies received so far are journaled: a rerun goes on from there
            sys.exit(f"llm_code_corpus: the model server kept failing ({exc}); rerun to continue")
    rows = read_journal(journal)
    if not rows:
        ap.error(f"{journal} holds no replies (give --model and --base-url to ask for them)")
    results = [{"key": r["key"], **classify(r, args.plain_seconds)} for r in rows]
    counts = collections.Counter(r["class"] for r in results)
    judged = counts["same"] + counts["refused"] + counts["differs"]
    share = counts["same"] / judged if judged else None
    print(f"{'class':<18}{'codes':>7}")
    for c in CLASSES:
        print(f"{c:<18}{counts[c]:>7}")
    print(f"share same / (same + refused + differs): {'n/a' if share is None else f'{share:.3f}'} of {judged}")
    for r in results:
        if r["class"] in ("refused", "differs"):
            print(f"  {r['class']}: {r['key']}: {r['detail'][:200]}")
    report = {"replies": str(journal), "models": sorted({r.get("model") or "?" for r in rows}), "counts": counts,
              "judged": judged, "share_same": share, "results": results,
              "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return report


if __name__ == "__main__":
    if sys.argv[1:] == ["--plain-child"]:
        _plain_child()
    else:
        main()
