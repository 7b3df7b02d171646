"""The ``openai`` backend of the build pipeline: FTRL's five stages driven by any OpenAI-compatible chat model.

For each scenario index ``i`` (kind, topic and scaling strategies are seeded by ``(seed, i)``):

1. **decompose**: the model writes a task of the kind (user query, sub-questions with answers and
   dependencies, final answer);
2. **document**: one OpenAI function schema per sub-question, plus the arguments of the call that answers it;
3. **integrate**: overlapping documents are merged (n functions -> m <= n), each sub-question mapped to a
   function and arguments (skipped when there is one sub-question);
4. **scale**: distractor tools (toolset extension) and/or extra optional parameters (parameter expansion);
5. **deploy**: Python code per function, validated in a separate resource-limited process
   (:mod:`toolgym.construct.code_check`).

Every reply must be one JSON object valid against the stage's schema (:mod:`toolgym.construct.prompts`) and pass
the stage's checks (:func:`validate_decomposition` ...); a rejected reply is asked again with the problem
(``attempts`` per stage), then the scenario is discarded with the reason ``"<stage>:<kind>"``.

**Journal and resume.** ``<out>/journal.jsonl`` is append-only, one JSON object per line, flushed per line:

* ``{"event": "start", "config": {...}, "time": ...}`` at the start of every run (a rerun must use the same
  result-defining settings: model, seed, topic, kind, temperature, max_tokens, attempts, response_format);
* ``{"event": "stage", "index": i, "stage": "decompose"|"document"|"integrate"|"scale", "output": {...},
  "rejected": [...]}`` when a stage of scenario ``i`` is done;
* ``{"event": "accepted", "index": i, "scenario": {...}, ...}`` or
  ``{"event": "discarded", "index": i, "stage": ..., "reason": "<stage>:<kind>", "detail": ..., ...}``.

A rerun skips indices that have an ``accepted``/``discarded`` line, continues unfinished indices after their
last journaled stage, drops a truncated last line, and ignores duplicate lines (the first one wins). Requests
that keep failing (server down, after ``retries`` with backoff) leave the scenario unfinished (nothing is
journaled for that stage), and after several such failures in a row no new scenario is started. Finally
``scenarios.jsonl`` (accepted scenarios, by index) is rewritten atomically from the journal, with
``manifest.json`` (a static pack in toolgym format) and ``report.json`` (attempted, accepted, discarded by
reason, missing).

``openai`` is imported only when a build starts (``pip install toolgym[eval]``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import keyword
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from toolgym.construct import prompts as P
from toolgym.construct.code_check import CheckResult, Limits, check_scenario
from toolgym.jsonl import complete_lines, exclusive
from toolgym.packs import MANIFEST, load_scenarios, read_manifest
from toolgym.request_errors import classify
from toolgym.reward import answer_in_output, normalize
from toolgym.scenario import KINDS

JOURNAL = "journal.jsonl"
DATA = "scenarios.jsonl"
REPORT = "report.json"
STAGES = ("decompose", "document", "integrate", "scale", "deploy")
RESPONSE_FORMATS = ("json_object", "json_schema", "none")
RESULT_KEYS = ("model", "seed", "topic", "kind", "temperature", "max_tokens", "attempts", "response_format")


@dataclass
class LLMBuildConfig:
    """Settings of one ``openai`` build (``toolgym build --backend openai``)."""

    model: str
    base_url: str
    out: str
    api_key: str | None = None
    scenarios: int = 10
    concurrency: int = 4
    seed: int = 0
    topic: str | None = None
    kind: str | None = None
    name: str | None = None
    temperature: float = 0.7
    max_tokens: int = 1024
    attempts: int = 3
    retries: int = 4
    backoff: float = 1.0
    timeout: float = 120.0
    response_format: str = "json_object"
    limits: Limits = field(default_factory=Limits)
    progress: bool = True
    max_consecutive_failures: int | None = None

    def __post_init__(self) -> None:
        self.api_key = self.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}")
        if self.scenarios < 1 or self.concurrency < 1 or self.attempts < 1 or self.retries < 0:
            raise ValueError("scenarios, concurrency and attempts must be >= 1, retries >= 0")
        self.name = self.name or pack_name(Path(self.out).name)
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", self.name):
            raise ValueError(f"pack name must be CamelCase letters and digits, not {self.name!r}")

    def result_config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RESULT_KEYS}


def pack_name(folder: str) -> str:
    """``llm_weather`` -> ``LlmWeather`` (the env id is ``ToolGym/<name>-v0``)."""
    name = "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", folder) if p)
    return name if name[:1].isalpha() else f"Pack{name}"


# -- errors ----------------------------------------------------------------------------------------------------
class Reject(Exception):
    """A model reply failed validation: ``kind`` (invalid_json, schema, invalid, ...) and what was wrong."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


class Discard(Exception):
    """A stage kept failing validation: the scenario is discarded with ``reason`` = ``"<stage>:<kind>"``."""

    def __init__(self, stage: str, kind: str, detail: str, rejected: list[dict[str, Any]]):
        super().__init__(f"{stage}:{kind}: {detail}")
        self.stage, self.kind, self.detail, self.rejected = stage, kind, detail, rejected


class ScenarioFailed(Exception):
    """Requests kept failing after the retries (server down, timeouts): the scenario stays unfinished."""


class RunAborted(Exception):
    """An error no retry fixes (bad API key, unknown model): the build stops."""


# -- validation of model replies -----------------------------------------------------------------------------
def parse_reply(content: str | None, schema: dict[str, Any]) -> Any:
    """The JSON object in a reply (code fences allowed), valid against ``schema``; else :class:`Reject`."""
    text = (content or "").strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.S)
    if fence:
        text = fence.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Reject("invalid_json", f"not valid JSON ({exc.msg} at char {exc.pos}): {text[:120]!r}") from None
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "<root>"
        raise Reject("schema", f"{where}: {err.message[:300]}")
    return data


def _ident(name: Any) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name) and len(name) <= 64


def check_function(fn: dict[str, Any], where: str) -> dict[str, Any]:
    """A function document, cleaned: identifier names, a valid JSON schema, ``required`` within ``properties``."""
    name = fn.get("name")
    if not _ident(name):
        raise Reject("invalid", f"{where}: function name {name!r} is not an identifier")
    params = fn.get("parameters")
    if not isinstance(params, dict):
        raise Reject("invalid", f"{where}: parameters must be a JSON schema object")
    try:
        jsonschema.Draft202012Validator.check_schema(params)
    except jsonschema.SchemaError as exc:
        raise Reject("invalid", f"{where}: parameters is not a valid JSON schema: {exc.message[:200]}") from None
    props = params.get("properties")
    if params.get("type") != "object" or not isinstance(props, dict) or not props:
        raise Reject("invalid", f"{where}: parameters must be of type object with at least one property")
    for pname, pschema in props.items():
        if not _ident(pname) or not isinstance(pschema, dict):
            raise Reject("invalid", f"{where}: parameter {pname!r} is not an identifier with a schema")
    required = params.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise Reject("invalid", f"{where}: required must be a list of parameter names")
    unknown = [r for r in required if r not in props]
    if unknown:
        raise Reject("invalid", f"{where}: required names {unknown} are not in properties")
    clean = {"type": "object", "properties": props, "required": list(dict.fromkeys(required))}
    clean["additionalProperties"] = False
    return {"name": name, "description": str(fn.get("description", "")), "parameters": clean}


def check_call(fn: dict[str, Any], args: dict[str, Any], where: str) -> None:
    errors = list(jsonschema.Draft202012Validator(fn["parameters"]).iter_errors(args))
    if errors:
        raise Reject("invalid", f"{where}: arguments {args} do not fit {fn['name']}: {errors[0].message[:200]}")


def _check_dependencies(dec: dict[str, Any], sub_id: str, args: dict[str, Any], where: str) -> None:
    subs = {s["id"]: s for s in dec["subquestions"]}
    values = [json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v for v in args.values()]
    if any(answer_in_output(v, subs[sub_id]["answer"]) for v in values):
        raise Reject("invalid", f"{where}: the arguments contain the sub-question's own answer")
    for dep in subs[sub_id]["depends_on"]:
        if not any(answer_in_output(v, subs[dep]["answer"]) for v in values):
            raise Reject("invalid", f"{where}: no argument passes the answer of {dep} ({subs[dep]['answer']!r})")


def validate_decomposition(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """Stage 1: the sub-questions have the kind's ids and dependencies; answers are distinct, not in the query."""
    subs = data["subquestions"]
    ids = [s["id"] for s in subs]
    want = P.DEPENDENCIES[kind]
    if sorted(ids) != sorted(want):
        raise Reject("invalid", f"sub-question ids {ids} must be {sorted(want)}")
    got = {s["id"]: list(s["depends_on"]) for s in subs}
    if got != want:
        raise Reject("invalid", f"dependencies {got} do not form a {kind} task (need {want})")
    query = normalize(data["query"])
    answers = [normalize(s["answer"]) for s in subs]
    for s, a in zip(subs, answers, strict=True):
        if not a:
            raise Reject("invalid", f"{s['id']}: empty answer")
        if a in query:
            raise Reject("invalid", f"{s['id']}: the answer {s['answer']!r} appears in the user request")
    for i, a in enumerate(answers):
        for j, b in enumerate(answers):
            if i != j and a in b:
                detail = f"answers must be distinct: {subs[i]['answer']!r} is within {subs[j]['answer']!r}"
                raise Reject("invalid", detail)
    if not normalize(data["final_answer"]):
        raise Reject("invalid", "empty final_answer")
    return {
        "query": data["query"].strip(),
        "subquestions": sorted(
            ({k: s[k] for k in ("id", "question", "answer", "depends_on")} for s in subs), key=lambda s: s["id"]
        ),
        "final_answer": data["final_answer"].strip(),
    }


def validate_documents(data: dict[str, Any], dec: dict[str, Any]) -> list[dict[str, Any]]:
    """Stage 2: one valid function per sub-question (distinct names), gold arguments that fit it and use the
    answers of the sub-questions it depends on."""
    ids = [s["id"] for s in dec["subquestions"]]
    docs = data["documents"]
    if sorted(d["subquestion"] for d in docs) != sorted(ids):
        raise Reject("invalid", f"need exactly one document per sub-question {ids}")
    out, names = [], set()
    for d in sorted(docs, key=lambda d: d["subquestion"]):
        where = f"document for {d['subquestion']}"
        fn = check_function(d, where)
        if fn["name"] in names:
            raise Reject("invalid", f"{where}: function name {fn['name']!r} is used twice")
        names.add(fn["name"])
        check_call(fn, d["arguments"], where)
        _check_dependencies(dec, d["subquestion"], d["arguments"], where)
        out.append({"subquestion": d["subquestion"], "function": fn, "arguments": d["arguments"]})
    return out


def validate_integration(data: dict[str, Any], dec: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Stage 3: m <= n valid functions, every one used; every sub-question mapped once to a fitting call."""
    fns: dict[str, dict[str, Any]] = {}
    for i, f in enumerate(data["functions"]):
        fn = check_function(f, f"functions[{i}]")
        if fn["name"] in fns:
            raise Reject("invalid", f"function name {fn['name']!r} is used twice")
        fns[fn["name"]] = fn
    if len(fns) > len(docs):
        raise Reject("invalid", f"{len(fns)} functions from {len(docs)} documents: merging must not add functions")
    ids = [s["id"] for s in dec["subquestions"]]
    calls = data["calls"]
    if sorted(c["subquestion"] for c in calls) != sorted(ids):
        raise Reject("invalid", f"the calls must cover every sub-question {ids} exactly once")
    seen: set[str] = set()
    for c in calls:
        where = f"call for {c['subquestion']}"
        if c["function"] not in fns:
            raise Reject("invalid", f"{where}: unknown function {c['function']!r}")
        check_call(fns[c["function"]], c["arguments"], where)
        _check_dependencies(dec, c["subquestion"], c["arguments"], where)
        key = json.dumps([c["function"], c["arguments"]], sort_keys=True)
        if key in seen:
            raise Reject("invalid", f"{where}: two sub-questions share the same call")
        seen.add(key)
    unused = sorted(set(fns) - {c["function"] for c in calls})
    if unused:
        raise Reject("invalid", f"functions {unused} answer no sub-question")
    ordered = sorted(calls, key=lambda c: c["subquestion"])
    return {
        "functions": list(fns.values()),
        "calls": [{k: c[k] for k in ("subquestion", "function", "arguments")} for c in ordered],
    }


def identity_integration(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "functions": [d["function"] for d in docs],
        "calls": [
            {"subquestion": d["subquestion"], "function": d["function"]["name"], "arguments": d["arguments"]}
            for d in docs
        ],
    }


def validate_scaling(data: dict[str, Any], integrated: dict[str, Any], strategies: list[str]) -> dict[str, Any]:
    """Stage 4: distractors are valid functions with new names; extra parameters are new, optional, typed."""
    needed = [json.loads(json.dumps(f)) for f in integrated["functions"]]
    by_name = {f["name"]: f for f in needed}
    distractors: list[dict[str, Any]] = []
    for i, f in enumerate(data.get("distractors", [])):
        fn = check_function(f, f"distractors[{i}]")
        if fn["name"] in by_name or any(fn["name"] == d["name"] for d in distractors):
            raise Reject("invalid", f"distractors[{i}]: the name {fn['name']!r} is already taken")
        distractors.append(fn)
    for i, x in enumerate(data.get("extra_parameters", [])):
        fn = by_name.get(x["function"])
        if fn is None:
            raise Reject("invalid", f"extra_parameters[{i}]: unknown function {x['function']!r}")
        if not _ident(x["name"]) or x["name"] in fn["parameters"]["properties"]:
            raise Reject("invalid", f"extra_parameters[{i}]: {x['name']!r} is not a new parameter name")
        fn["parameters"]["properties"][x["name"]] = {"type": x["type"], "description": x["description"]}
    return {"functions": needed, "distractors": distractors, "calls": integrated["calls"], "strategies": strategies}


def check_code_reply(data: dict[str, Any], name: str) -> str:
    code = data["code"].replace("\r\n", "\n")
    if not re.search(rf"^def {re.escape(name)}\s*\(", code, re.M):
        raise Reject("invalid", f"the code must define `def {name}(...)` at top level")
    return code


# -- scenario assembly ------------------------------------------------------------------------------------------
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


# -- the journal -------------------------------------------------------------------------------------------------
class Journal:
    """``journal.jsonl``: append-only, one JSON object per line, flushed per line."""

    def __init__(self, path: Path):
        self.path = path
        self.starts: list[dict[str, Any]] = []
        self.stages: dict[int, dict[str, Any]] = {}
        self.finals: dict[int, dict[str, Any]] = {}
        self._f: Any = None

    def load(self) -> Journal:
        for line in complete_lines(self.path):
            try:
                self._take(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return self

    def _take(self, rec: dict[str, Any]) -> None:
        event = rec["event"]
        if event == "start":
            self.starts.append(rec)
        elif event == "stage":
            self.stages.setdefault(int(rec["index"]), {}).setdefault(rec["stage"], rec)
        elif event in ("accepted", "discarded"):
            self.finals.setdefault(int(rec["index"]), rec)

    def append(self, rec: dict[str, Any]) -> None:
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        self._f.flush()
        self._take(rec)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


# -- the model -------------------------------------------------------------------------------------------------
def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:300] + "..."


class Model:
    """One AsyncOpenAI client; ``concurrency`` requests at a time; transport retries with backoff."""

    def __init__(self, cfg: LLMBuildConfig):
        from openai import AsyncOpenAI  # lazy: not imported with toolgym

        self.cfg = cfg
        self.client = AsyncOpenAI(base_url=cfg.base_url, api_key=cfg.api_key, max_retries=0, timeout=cfg.timeout)
        self.slots = asyncio.Semaphore(cfg.concurrency)
        self.stats = Counter()

    async def close(self) -> None:
        await self.client.close()

    async def complete(self, messages: list[dict[str, Any]], schema: dict[str, Any], seed: int) -> str:
        cfg = self.cfg
        req: dict[str, Any] = {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
            "seed": seed,
        }
        if cfg.response_format == "json_object":
            req["response_format"] = {"type": "json_object", "schema": schema}
        elif cfg.response_format == "json_schema":
            req["response_format"] = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
        for attempt in range(cfg.retries + 1):
            self.stats["requests"] += 1
            try:
                async with self.slots:
                    resp = await asyncio.wait_for(self.client.chat.completions.create(**req), cfg.timeout)
            except Exception as exc:
                kind = classify(exc)
                if kind == "fatal":
                    raise RunAborted(_short(exc)) from exc
                if kind == "bad_request":
                    raise Reject("bad_request", _short(exc)) from exc
                self.stats["request_errors"] += 1
                if attempt == cfg.retries:
                    raise ScenarioFailed(f"{cfg.retries + 1} attempts failed, last: {_short(exc)}") from exc
                await asyncio.sleep(min(cfg.backoff * 2**attempt * (0.5 + random.random()), 30.0))
                continue
            usage = getattr(resp, "usage", None)
            if usage is not None:
                self.stats["prompt_tokens"] += getattr(usage, "prompt_tokens", 0) or 0
                self.stats["completion_tokens"] += getattr(usage, "completion_tokens", 0) or 0
            if not resp.choices:
                raise Reject("invalid_json", "the server returned no choices")
            return resp.choices[0].message.content or ""
        raise AssertionError("unreachable")


# -- one scenario ----------------------------------------------------------------------------------------------
def _seed(cfg: LLMBuildConfig, index: int, stage: str, attempt: int) -> int:
    key = f"{cfg.seed}/{index}/{stage}/{attempt}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") >> 1


class ScenarioBuild:
    """The five stages of scenario ``index``, continuing from the stage outputs already journaled."""

    def __init__(self, cfg: LLMBuildConfig, model: Model, journal: Journal, index: int):
        self.cfg, self.model, self.journal, self.index = cfg, model, journal, index
        self.plan = plan_for(cfg, index)
        journaled = journal.stages.get(index, {})
        self.done = {stage: rec["output"] for stage, rec in journaled.items()}
        # every rejected reply of this scenario, including those of stages journaled by an earlier run
        self.rejected: list[dict[str, Any]] = [r for rec in journaled.values() for r in rec.get("rejected", [])]
        self._mark = len(self.rejected)

    async def ask(self, stage: str, messages: list[dict], schema: dict, validate: Any, tag: str = "") -> Any:
        msgs = messages
        rejected: list[dict[str, Any]] = []
        for attempt in range(self.cfg.attempts):
            reply = ""
            try:
                reply = await self.model.complete(msgs, schema, _seed(self.cfg, self.index, stage + tag, attempt))
                result = validate(parse_reply(reply, schema))
            except Reject as r:
                rejected.append({"stage": stage, "attempt": attempt, "kind": r.kind, "detail": r.detail[:500]})
                if r.kind == "bad_request":
                    break
                msgs = P.feedback_messages(messages, reply, f"{r.kind}: {r.detail}")
                continue
            self.rejected.extend(rejected)
            return result
        self.rejected.extend(rejected)
        last = rejected[-1]
        raise Discard(stage, last["kind"], last["detail"], rejected)

    def _record(self, stage: str, output: Any) -> None:
        self.done[stage] = output
        rejected = self.rejected[self._mark :]
        self._mark = len(self.rejected)
        self.journal.append(
            {"event": "stage", "index": self.index, "stage": stage, "output": output, "rejected": rejected}
        )

    async def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        base = {"index": self.index, "kind": self.plan["kind"], "topic": self.plan["topic"]}
        try:
            scenario = await self._stages()
        except Discard as d:
            return {
                "event": "discarded",
                **base,
                "stage": d.stage,
                "reason": f"{d.stage}:{d.kind}",
                "detail": d.detail,
                "rejected": self.rejected,
                "seconds": round(time.monotonic() - t0, 2),
            }
        return {
            "event": "accepted",
            **base,
            "scenario": scenario,
            "rejected": self.rejected,
            "seconds": round(time.monotonic() - t0, 2),
        }

    async def _stages(self) -> dict[str, Any]:
        kind, plan = self.plan["kind"], self.plan
        if "decompose" not in self.done:
            out = await self.ask(
                "decompose",
                P.decompose_messages(plan["topic"], kind),
                P.decompose_schema(kind),
                lambda d: validate_decomposition(d, kind),
            )
            self._record("decompose", out)
        dec = self.done["decompose"]
        ids = [s["id"] for s in dec["subquestions"]]
        if "document" not in self.done:
            out = await self.ask(
                "document", P.documents_messages(dec), P.documents_schema(ids), lambda d: validate_documents(d, dec)
            )
            self._record("document", out)
        docs = self.done["document"]
        if "integrate" not in self.done:
            if len(docs) == 1:
                out = identity_integration(docs)
            else:
                out = await self.ask(
                    "integrate",
                    P.integrate_messages(dec, [d["function"] for d in docs]),
                    P.integrate_schema(ids),
                    lambda d: validate_integration(d, dec, docs),
                )
            self._record("integrate", out)
        integrated = self.done["integrate"]
        if "scale" not in self.done:
            names = [f["name"] for f in integrated["functions"]]
            strategies, n = plan["strategies"], plan["n_distractors"]
            out = await self.ask(
                "scale",
                P.scale_messages(integrated["functions"], strategies, n),
                P.scale_schema(strategies, names, n),
                lambda d: validate_scaling(d, integrated, strategies),
            )
            self._record("scale", out)
        return await self._deploy(dec, self.done["scale"])

    async def _deploy(self, dec: dict[str, Any], scaled: dict[str, Any]) -> dict[str, Any]:
        subs = {s["id"]: s for s in dec["subquestions"]}
        answers = [s["answer"] for s in dec["subquestions"]]
        fns = scaled["functions"] + scaled["distractors"]
        calls = {f["name"]: [] for f in fns}
        for c in scaled["calls"]:
            calls[c["function"]].append({"arguments": c["arguments"], "answer": subs[c["subquestion"]]["answer"]})
        codes: dict[str, str] = {}
        problems: dict[str, str] = {}
        result: CheckResult | None = None
        for round_ in range(self.cfg.attempts):
            todo = [f for f in fns if f["name"] not in codes or f["name"] in problems]
            for fn in todo:
                messages = P.code_messages(fn, calls[fn["name"]], answers)
                if fn["name"] in problems and fn["name"] in codes:
                    messages = P.feedback_messages(
                        messages, json.dumps({"code": codes[fn["name"]]}), problems[fn["name"]]
                    )
                name = fn["name"]
                check = lambda d, n=name: check_code_reply(d, n)  # noqa: E731
                codes[name] = await self.ask("deploy", messages, P.CODE_SCHEMA, check, tag=f"/{name}/{round_}")
            scenario = assemble(self.cfg, self.index, self.plan, dec, scaled, codes)
            result = await check_scenario(scenario, self.cfg.limits)
            if result.ok:
                return scenario
            self.rejected.append(
                {"stage": "deploy", "attempt": round_, "kind": result.kind(), "detail": result.summary()[:500]}
            )
            by_tool = {p["tool"]: f"{p['kind']}: {p['detail']}" for p in result.problems if p["tool"] != "*"}
            everyone = result.process or next((p["detail"] for p in result.problems if p["tool"] == "*"), None)
            problems = by_tool if not everyone else {f["name"]: everyone for f in fns}
        assert result is not None
        raise Discard("deploy", result.kind(), result.summary()[:500], [])


# -- the run ---------------------------------------------------------------------------------------------------
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
    load_scenarios(out / DATA)  # the pack loader must accept what was written (raises PackError naming the line)
    data = {
        "name": cfg.name,
        "version": 0,
        "type": "static",
        "format": "toolgym",
        "data": DATA,
        "description": f"{len(accepted)} scenarios built by the openai backend with {cfg.model}"
        + (f" on {cfg.topic}" if cfg.topic else ""),
        "max_turns": 20,
    }
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
    os.replace(tmp, manifest)
    read_manifest(manifest)
    return manifest


async def arun_build(cfg: LLMBuildConfig) -> dict[str, Any]:
    """Build (or resume) the pack in ``cfg.out``; returns the report (also written to ``report.json``)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out, "build"):
        journal = Journal(out / JOURNAL).load()
        mine = json.loads(json.dumps(cfg.result_config()))
        if journal.starts:
            theirs = journal.starts[0]["config"]
            diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
            if diff:
                detail = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                raise ValueError(f"{out} holds a build with other settings ({detail}); use another --out")
        try:
            run = await _run(cfg, journal, mine)
        finally:
            journal.close()
        manifest = write_pack(cfg, journal)
        rep = report(cfg, journal, run)
        rep["manifest"] = str(manifest) if manifest else None
        (out / REPORT).write_text(json.dumps(rep, indent=2, ensure_ascii=False) + "\n", "utf-8")
        return rep


async def _run(cfg: LLMBuildConfig, journal: Journal, config: dict[str, Any]) -> dict[str, Any]:
    t0 = time.monotonic()
    todo = [i for i in range(cfg.scenarios) if i not in journal.finals]
    state: dict[str, Any] = {"failed": 0, "consecutive": 0, "aborted": None, "finished": 0, "last_error": None}
    if not todo:
        return {"finished_this_run": 0, "failed_this_run": 0, "aborted": None, "seconds": 0.0}
    journal.append({"event": "start", "config": config, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "todo": len(todo)})
    model = Model(cfg)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in todo:
        queue.put_nowait(i)
    limit = cfg.max_consecutive_failures or max(3, cfg.concurrency)
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.scenarios,
            initial=cfg.scenarios - len(todo),
            desc=f"build {cfg.name}",
            unit="sc",
            dynamic_ncols=True,
        )

    async def worker() -> None:
        while not queue.empty() and state["aborted"] is None:
            index = queue.get_nowait()
            try:
                rec = await ScenarioBuild(cfg, model, journal, index).run()
            except ScenarioFailed as exc:
                state["failed"] += 1
                state["consecutive"] += 1
                state["last_error"] = str(exc)
                if state["consecutive"] >= limit and state["aborted"] is None:
                    state["aborted"] = f"{state['consecutive']} scenarios in a row failed after retries ({exc})"
                continue
            except RunAborted as exc:
                state["aborted"] = str(exc)
                continue
            state["consecutive"] = 0
            state["finished"] += 1
            journal.append(rec)
            if bar is not None:
                bar.update(1)
                done = [f for f in journal.finals.values() if f["index"] < cfg.scenarios]
                bar.set_postfix(accepted=sum(f["event"] == "accepted" for f in done), failed=state["failed"])

    try:
        await asyncio.gather(*(worker() for _ in range(min(cfg.concurrency, len(todo)))))
    finally:
        if bar is not None:
            bar.close()
        await model.close()
    return {
        "finished_this_run": state["finished"],
        "failed_this_run": state["failed"],
        "aborted": state["aborted"],
        "last_error": state["last_error"],
        "seconds": round(time.monotonic() - t0, 1),
        **dict(model.stats),
    }


def run_build(**kwargs: Any) -> dict[str, Any]:
    """Build a static pack with a model: keyword arguments are :class:`LLMBuildConfig` fields."""
    limits = kwargs.pop("limits", None)
    cfg = LLMBuildConfig(**kwargs)
    if limits is not None:
        cfg.limits = limits if isinstance(limits, Limits) else Limits(**limits)
    return asyncio.run(arun_build(cfg))
