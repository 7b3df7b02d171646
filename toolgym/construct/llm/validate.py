"""The checks every model reply of the build must pass, stage by stage; a failed check is a :class:`Reject`.

A reply is first one JSON object valid against the stage's schema (:func:`parse_reply`), then the stage's own
rules: identifier names, valid JSON schemas, gold arguments that fit their function and carry the answers they
depend on, answers distinct and not in the user request. The stage runner asks again with the problem.
"""

from __future__ import annotations

import json
import keyword
import re
from typing import Any

import jsonschema

from toolgym.construct.llm import prompts as P
from toolgym.reward import answer_in_output, normalize


class Reject(Exception):
    """A model reply failed validation: ``kind`` (invalid_json, schema, invalid, ...) and what was wrong."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


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
