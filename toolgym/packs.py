"""Loading packs: the manifests in ``envs_generated/`` and the scenario files they point to.

A pack file that is broken raises one :class:`PackError` naming the file, the line and the field, so a
bad pack is fixed in one look instead of failing deep inside an episode. FTRL's record format
(``messages``, ``tools``, ``codes``, ``unsolved_set``, ``answer``) loads as a static pack.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema_rs

from toolgym.calls import find_lone_surrogate, find_surrogate_escape
from toolgym.sandbox import ToolSourceError, check_tool_sources
from toolgym.scenario import ALL_KINDS, Scenario, SubTask

MANIFEST = "manifest.json"
PACK_TYPES = ("procedural", "static", "mixture")
ALL_PROCEDURAL = "*"  # a mixture's "members": every procedural pack beside it, resolved when it is registered
STATIC_FORMATS = ("toolgym", "ftrl")


class PackError(ValueError):
    """A pack file is malformed; the message names the file (and line) and the field."""

    def __init__(self, where: str, field: str, problem: str):
        super().__init__(f"{where}: field {field!r}: {problem}")
        self.where, self.field, self.problem = where, field, problem


# Refs written before the construction package was named ``toolgym.construct`` (manifests, scenario metadata,
# exported datasets): read as their current names, so saved packs and records keep loading.
_RENAMED_REFS = (
    ("toolgym.build.procedural:", "toolgym.construct.pipeline:"),
    ("toolgym.build.functions", "toolgym.construct.tool_docs"),
    ("toolgym.build.", "toolgym.construct."),
)


def current_ref(ref: str) -> str:
    """``ref`` (``"module:attribute"``) under today's module names."""
    for old, new in _RENAMED_REFS:
        if ref.startswith(old):
            return new + ref[len(old) :]
    return ref


def resolve_ref(ref: str) -> Any:
    """The object a ``"module:attribute"`` ref names (importing the module)."""
    module, _, attr = current_ref(ref).partition(":")
    return getattr(importlib.import_module(module), attr)


def packs_dir() -> Path:
    """Where the built packs live: inside the installed wheel, else the source checkout's ``envs_generated``."""
    here = Path(__file__).resolve().parent
    for cand in (here / "envs_generated", here.parent / "envs_generated"):
        if cand.is_dir():
            return cand
    return here.parent / "envs_generated"


def _need(obj: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise PackError(where, key, "missing")
    val = obj[key]
    if not isinstance(val, types):
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise PackError(where, key, f"expected {names}, got {type(val).__name__}")
    return val


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and check one ``manifest.json``."""
    where = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PackError(where, "<json>", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PackError(where, "<root>", "expected a JSON object")
    _need(data, "name", str, where)
    version = _need(data, "version", int, where)
    if version < 0:
        raise PackError(where, "version", "must be >= 0")
    kind = _need(data, "type", str, where)
    if kind not in PACK_TYPES:
        raise PackError(where, "type", f"must be one of {PACK_TYPES}, got {kind!r}")
    if kind == "procedural":
        for key in ("generator", "config", "domain"):
            if key == "domain" and key not in data:
                continue  # optional: names the Domain spec a shared generator builds
            ref = _need(data, key, str, where)
            if ":" not in ref:
                raise PackError(where, key, f"expected 'module:attribute', got {ref!r}")
    elif kind == "mixture":
        members = data.get("members")
        if members != ALL_PROCEDURAL and not (
            isinstance(members, list) and members and all(isinstance(m, str) and "/" in m for m in members)
        ):
            raise PackError(
                where,
                "members",
                f"expected {ALL_PROCEDURAL!r} or a non-empty list of env ids like 'ToolGym/HotelBooking-v1'",
            )
    else:
        if "domain" in data:
            raise PackError(where, "domain", "only procedural packs name a domain")
        fmt = data.get("format", "toolgym")
        if fmt not in STATIC_FORMATS:
            raise PackError(where, "format", f"must be one of {STATIC_FORMATS}, got {fmt!r}")
        data_file = _need(data, "data", str, where)
        if not (path.parent / data_file).is_file():
            raise PackError(where, "data", f"file {data_file!r} not found beside the manifest")
    if "defaults" in data:
        _need(data, "defaults", dict, where)
    if "max_hops" in data and (not isinstance(data["max_hops"], int) or data["max_hops"] < 1):
        raise PackError(where, "max_hops", "must be a positive integer")
    if "max_turns" in data and (not isinstance(data["max_turns"], int) or data["max_turns"] < 1):
        raise PackError(where, "max_turns", "must be a positive integer")
    data["_dir"] = str(path.parent)
    return data


def _as_json(value: Any, where: str, field: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise PackError(where, field, f"string is not valid JSON: {exc.msg}") from None
    return value


def _check_tools(tools: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(tools, list) or not tools:
        raise PackError(where, "tools", "expected a non-empty list of OpenAI function schemas")
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise PackError(where, f"tools[{i}].function.name", "missing or not a string")
        params = fn.get("parameters", {"type": "object"})
        try:  # against the draft 2020-12 meta-schema, by jsonschema-rs: `import toolgym` does not load jsonschema
            jsonschema_rs.meta.validate(params)
        except jsonschema_rs.ValidationError as exc:
            raise PackError(where, f"tools[{i}].function.parameters", f"invalid JSON schema: {exc.message}") from None
        except ValueError as exc:  # not JSON data at all (a set, an object)
            raise PackError(where, f"tools[{i}].function.parameters", f"invalid JSON schema: {exc}") from None
    return tools


def _check_sources(sources: dict[str, str], field: str, record_id: str, where: str) -> None:
    """Compile (and run the module code of) every tool now, so a refused tool fails the load, not an episode."""
    try:
        check_tool_sources(sources)
    except ToolSourceError as exc:
        text = str(exc)
        name = next((n for n in sorted(sources) if text.startswith(f"tool {n!r}: ")), None)
        if name is None:  # pragma: no cover - the Toolbox names the tool in every error
            raise PackError(where, field, f"record {record_id!r}: {text}") from None
        detail = text.removeprefix(f"tool {name!r}: ")
        raise PackError(where, f"{field}.{name}", f"record {record_id!r}: tool {name!r}: {detail}") from None


def scenario_from_ftrl(record: dict[str, Any], where: str = "<record>") -> Scenario:
    """One FTRL record (``messages, tools, codes, unsolved_set, answer``) as a Scenario.

    FTRL stores ``tools``, ``codes`` and ``unsolved_set`` as JSON strings; dicts and lists are accepted too.
    Its records carry expected sub-answers but not the gold calls, so their sub-tasks have no arguments.
    Turn-level records start mid-trajectory: ``messages`` holds the prefix (earlier assistant calls and their
    tool results) and ``unsolved_set`` what is still unanswered. ``data_source`` and ``split`` go to the
    metadata; a static pack's ``split=`` option keeps the records of one split.
    """
    if not isinstance(record, dict):
        raise PackError(where, "<record>", "expected a JSON object")
    messages = _as_json(_need(record, "messages", (list, str), where), where, "messages")
    _check_prefix(messages, where)
    tools = _check_tools(_as_json(_need(record, "tools", (list, str), where), where, "tools"), where)
    codes = _as_json(_need(record, "codes", (dict, str), where), where, "codes")
    if not isinstance(codes, dict) or not all(isinstance(v, str) for v in codes.values()):
        raise PackError(where, "codes", "expected an object mapping tool name to Python source")
    unsolved = _as_json(_need(record, "unsolved_set", (dict, str), where), where, "unsolved_set")
    if not isinstance(unsolved, dict) or not all(isinstance(v, list) for v in unsolved.values()):
        raise PackError(where, "unsolved_set", "expected an object mapping tool name to a list of answers")
    names = {t["function"]["name"] for t in tools}
    for name in names - set(codes):
        raise PackError(where, "codes", f"no source for offered tool {name!r}")

    subtasks = [
        SubTask(id=f"s{i}", tool=tool, arguments=None, answers=[str(a)])
        for i, (tool, a) in enumerate((t, a) for t, answers in unsolved.items() for a in answers)
    ]
    answer = record.get("answer")
    body = json.dumps([messages, tools, codes, unsolved, answer], ensure_ascii=False, sort_keys=True)
    record_id = str(record.get("id") or "ftrl-" + hashlib.sha256(body.encode()).hexdigest()[:10])
    _check_sources({n: codes[n] for n in names}, "codes", record_id, where)
    return Scenario(
        id=record_id,
        kind=str(record.get("kind", "unknown")),
        messages=messages,
        tools=tools,
        source={n: codes[n] for n in names},
        state={},
        subtasks=subtasks,
        answer="" if answer is None else str(answer),
        metadata={
            "format": "ftrl",
            "solve_rate": record.get("solve_rate"),
            **{k: _optional_str(record, k, where) for k in ("data_source", "split") if record.get(k) is not None},
        },
    )


_ROLES = ("system", "user", "assistant", "tool")


def _check_prefix(messages: Any, where: str) -> None:
    """The chat a record starts from: a query, or (turn-level records) a trajectory prefix with its tool turns.

    A prefix's tool messages must answer calls an earlier assistant turn made, so a replayed prefix renders the
    same way through any chat template.
    """
    if not isinstance(messages, list) or not messages:
        raise PackError(where, "messages", "expected a non-empty list of chat messages")
    calls: set[str] = set()
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise PackError(where, f"messages[{i}].role", f"expected one of {_ROLES}")
        for j, call in enumerate(m.get("tool_calls") or ()):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise PackError(where, f"messages[{i}].tool_calls[{j}].function.name", "missing or not a string")
            if call.get("id") is not None:
                calls.add(str(call["id"]))
        ref = m.get("tool_call_id")
        if m["role"] == "tool" and ref is not None and str(ref) not in calls:
            raise PackError(where, f"messages[{i}].tool_call_id", f"{ref!r} answers no earlier tool call")


def _optional_str(record: dict[str, Any], key: str, where: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise PackError(where, key, f"expected str, got {type(value).__name__}")
    return value


def scenario_from_record(record: dict[str, Any], where: str) -> Scenario:
    """A toolgym-format scenario record (``Scenario.to_dict()``), checked field by field."""
    if not isinstance(record, dict):
        raise PackError(where, "<record>", "expected a JSON object")
    for key, types in (
        ("id", str),
        ("kind", str),
        ("messages", list),
        ("tools", list),
        ("source", dict),
        ("subtasks", list),
        ("answer", str),
    ):
        _need(record, key, types, where)
    if record["kind"] not in (*ALL_KINDS, "unknown"):
        raise PackError(where, "kind", f"must be one of {ALL_KINDS}, got {record['kind']!r}")
    for key in ("state", "metadata"):
        if key in record and not isinstance(record[key], dict):
            raise PackError(where, key, f"expected an object, got {type(record[key]).__name__}")
    _check_prefix(record["messages"], where)
    _check_tools(record["tools"], where)
    ids = set()
    for i, sub in enumerate(record["subtasks"]):
        if not isinstance(sub, dict):
            raise PackError(where, f"subtasks[{i}]", "expected an object")
        for key, types in (("id", str), ("tool", str), ("answers", list)):
            try:
                _need(sub, key, types, where)
            except PackError as exc:
                raise PackError(where, f"subtasks[{i}].{exc.field}", exc.problem) from None
        _check_subtask(sub, f"subtasks[{i}]", where)
        ids.add(sub["id"])
    for i, sub in enumerate(record["subtasks"]):
        for dep in sub.get("depends_on") or ():
            if dep not in ids:
                raise PackError(where, f"subtasks[{i}].depends_on", f"{dep!r} is not the id of a sub-task")
    names = {t["function"]["name"] for t in record["tools"]}
    for name in sorted(names - set(record["source"])):
        raise PackError(where, "source", f"no source for offered tool {name!r}")
    source = record["source"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in source.items()):
        raise PackError(where, "source", "expected an object mapping tool name to Python source")
    _check_sources(source, "source", record["id"], where)
    try:
        scenario = Scenario.from_dict(record)
    except (KeyError, TypeError, ValueError) as exc:
        raise PackError(where, "<record>", f"cannot build scenario: {exc}") from None
    try:
        scenario.gold_plan()
    except ValueError:
        raise PackError(where, "subtasks", "the depends_on ids form a cycle") from None
    return scenario


def _check_subtask(sub: dict[str, Any], field: str, where: str) -> None:
    """The optional fields of a sub-task record, which the env reads at reset and step."""
    deps = sub.get("depends_on", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise PackError(where, f"{field}.depends_on", "expected a list of sub-task ids")
    if sub.get("arguments") is not None and not isinstance(sub["arguments"], dict):
        raise PackError(where, f"{field}.arguments", "expected an object (or null when the gold call is unknown)")
    checks = sub.get("state_checks", [])
    if not isinstance(checks, list):
        raise PackError(where, f"{field}.state_checks", "expected a list of {path, equals} objects")
    for j, c in enumerate(checks):
        if not isinstance(c, dict) or not isinstance(c.get("path"), list) or "equals" not in c:
            raise PackError(where, f"{field}.state_checks[{j}]", "expected {path: [keys...], equals: value}")


def _check_unicode(record: Any, where: str) -> None:
    """No field may hold a lone surrogate: the env's chat would then be text no UTF-8 export or tokenizer takes."""
    if not isinstance(record, dict):
        return  # the converter reports a record that is not an object
    for key, value in record.items():
        if find_lone_surrogate(str(key)) or find_lone_surrogate(json.dumps(value, ensure_ascii=False, default=str)):
            raise PackError(where, str(key), "holds a lone surrogate (an escape like \\ud800), not valid Unicode")


def load_scenarios(path: str | Path, fmt: str = "toolgym") -> list[Scenario]:
    """Read a JSONL (or JSON list) file of scenario records in ``fmt`` (``toolgym`` or ``ftrl``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PackError(str(path), "<file>", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    convert = scenario_from_ftrl if fmt == "ftrl" else scenario_from_record
    if path.suffix == ".json":
        root = _as_json(text, str(path), "<root>")
        if not isinstance(root, list):
            raise PackError(str(path), "<root>", f"expected a JSON list of records, got {type(root).__name__}")
        records: Iterable[tuple[int, Any]] = enumerate(root, 1)
    else:
        records = ((i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip())
    out = []
    for lineno, rec in records:
        where = f"{path}:{lineno}"
        raw = rec if isinstance(rec, str) else None
        if raw is not None:
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise PackError(where, "<json>", f"not valid JSON: {exc.msg}") from None
        if raw is None or find_surrogate_escape(raw):
            _check_unicode(rec, where)
        out.append(convert(rec, where))
    if not out:
        raise PackError(str(path), "<root>", "holds no records")
    return out
