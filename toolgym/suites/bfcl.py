"""BFCL v4 single-turn categories as static packs, scored by BFCL's AST rule.

The data is read from the installed ``bfcl-eval`` package (``bfcl_eval/data``), never vendored: a category is
registered as ``ToolGym/BFCL-<category>-v0`` only when that package can be found, and finding it does not import
it. Only the Python-language categories are imported (BFCL's Java and JavaScript ones describe their arguments as
source-code strings, which an OpenAI tool schema cannot state).

Each BFCL item becomes one :class:`~toolgym.scenario.Scenario`:

* its functions become OpenAI tool schemas the way BFCL's function-calling handlers write them (``dict`` is
  ``object``, ``float`` is ``number``, ``tuple`` is ``array``, ``any`` is ``string``, and a ``.`` in a function
  name becomes ``_``, since OpenAI names allow no dot; BFCL's checker undoes it with ``underscore_to_dot``);
* BFCL's functions have no implementation, so each tool only acknowledges the call (``{"status": "ok",
  "function": NAME}``) and one FTRL sub-answer, the function's name, is registered per gold call: FTRL's reward
  components then measure choosing the right functions (and, for a parallel item, how many calls), while
  ``bfcl_ast`` says whether the arguments pass BFCL's rule against the possible answers;
* the episode is one turn (the manifest's ``max_turns`` is 1): BFCL scores the first assistant turn only.

:func:`ast_check` is toolgym's own implementation of BFCL's AST checker (``bfcl_eval/eval_checker/ast_eval/
ast_checker.py``, Python branch): exact types with an ``int`` accepted for a ``float``, optional parameters
(a ``""`` among the possible answers), several allowed values per parameter, strings compared without case, spaces
or ``,./-_*^``, one level of nested list typing, dict and list-of-dict values, and BFCL's greedy, order-free
matching of parallel calls. ``tests/test_suite_bfcl.py`` checks it against BFCL's own checker.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from toolgym.calls import ParsedTurn
from toolgym.sandbox import def_name
from toolgym.scenario import Scenario, SubTask

SUITE = "bfcl"
VERSION = 0
PACKAGE = "bfcl_eval"
SETUP_SCRIPT = ".ci/suites_setup.sh"
# toolgym category -> BFCL v4 file stem (BFCL_v4_<stem>.json); "simple" is BFCL's simple_python.
CATEGORIES = {
    "simple": "simple_python",
    "multiple": "multiple",
    "parallel": "parallel",
    "parallel_multiple": "parallel_multiple",
    "irrelevance": "irrelevance",
    "live_simple": "live_simple",
    "live_multiple": "live_multiple",
    "live_parallel": "live_parallel",
    "live_parallel_multiple": "live_parallel_multiple",
    "live_irrelevance": "live_irrelevance",
    "live_relevance": "live_relevance",
}
# Categories without possible answers: the right turn makes no call (irrelevance) or at least one (relevance).
NO_CALL_CATEGORIES = ("irrelevance", "live_irrelevance")
ANY_CALL_CATEGORIES = ("live_relevance",)

# BFCL's type names -> JSON-schema types (bfcl_eval.constants.type_mappings.GORILLA_TO_OPENAPI, Python subset).
OPENAPI_TYPES = {
    "integer": "integer",
    "number": "number",
    "float": "number",
    "string": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "dict": "object",
    "object": "object",
    "tuple": "array",
    "any": "string",
}
# BFCL's type names -> the Python type its checker demands (ast_checker.PYTHON_TYPE_MAPPING).
PYTHON_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}
_NESTED = ("array", "tuple")
_STRIP = re.compile(r"[ \,\.\/\-\_\*\^]")


# ------------------------------------------------------------------------------------------------ data location
def data_dir() -> Path | None:
    """``bfcl_eval/data`` of the installed package, found without importing it; ``None`` when not installed."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data"
    return path if path.is_dir() else None


def missing_message() -> str:
    return (
        f"BFCL's data needs the bfcl-eval package: run `bash {SETUP_SCRIPT}` "
        "(installs bfcl-eval with --no-deps; it is a test-time dependency, never vendored)"
    )


def manifests() -> list[dict[str, Any]]:
    """One registry manifest per category whose data file is present (cheap: file checks only)."""
    root = data_dir()
    if root is None:
        return []
    out = []
    for category, stem in CATEGORIES.items():
        if not (root / f"BFCL_v4_{stem}.json").is_file():
            continue
        out.append(
            {
                "name": f"BFCL-{category}",
                "version": VERSION,
                "type": "static",  # a finite list, like a pack's file; its loader reads the installed data
                "loader": "toolgym.suites.bfcl:load_category",
                "loader_args": {"category": category},
                "turn_scorer": "toolgym.suites.bfcl:score_turn",
                "max_turns": 1,
                "description": f"BFCL v4 {stem} (single turn), scored by BFCL's AST rule as bfcl_ast",
            }
        )
    return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------------------------------------ conversion
def tool_name(bfcl_name: str) -> str:
    """The tool name offered to the model: BFCL's function-calling handlers replace ``.`` with ``_``."""
    return bfcl_name.replace(".", "_")


def _openapi_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """BFCL parameter docs as JSON schema (what ``bfcl_eval.model_handler.utils._cast_to_openai_type`` does)."""
    out = {}
    for key, doc in properties.items():
        doc = dict(doc)
        kind = doc.get("type")
        if kind == "float":
            doc["format"] = "float"
        doc["type"] = OPENAPI_TYPES.get(kind, "string")
        if doc["type"] in ("array", "object"):
            if "properties" in doc:
                doc["properties"] = _openapi_properties(doc["properties"])
            elif "items" in doc:
                items = doc["items"] = dict(doc["items"])
                items["type"] = OPENAPI_TYPES.get(items.get("type"), "string")
                if items["type"] == "object" and "properties" in items:
                    items["properties"] = _openapi_properties(items["properties"])
                elif items["type"] == "array" and "items" in items:
                    items["items"] = {**items["items"], "type": OPENAPI_TYPES.get(items["items"].get("type"), "string")}
        out[key] = doc
    return out


def tool_schema(function: dict[str, Any]) -> dict[str, Any]:
    """One BFCL function doc as an OpenAI tool schema."""
    params = dict(function.get("parameters") or {})  # each level that changes is copied; the rest is shared
    params["type"] = "object"
    params["properties"] = _openapi_properties(params.get("properties", {}))
    return {
        "type": "function",
        "function": {
            "name": tool_name(function["name"]),
            "description": function.get("description", ""),
            "parameters": params,
        },
    }


def _ack_source(name: str) -> str:
    """A tool that accepts any keyword arguments and acknowledges the call (BFCL's functions do nothing)."""
    return f"def {def_name(name)}(**kwargs):\n    return {{'status': 'ok', 'function': {name!r}}}\n"


def gold_arguments(
    params: dict[str, list[Any]], pick: int = 0, omit_optional: bool = False, _outer: bool = True
) -> dict[str, Any]:
    """A correct argument dict from a possible answer: the ``pick``-th allowed value of each parameter (cycling).

    A parameter whose only allowed values are ``""`` (may be left out) and ``None`` is left out, and so is every
    optional one when ``omit_optional``. A dict value (and each dict in a list) holds allowed values per key in
    turn, as BFCL's ``dict_checker`` reads it, so one of those is picked too (one level deep, as BFCL checks).
    """
    out = {}
    for key, allowed in params.items():
        # null where omission is allowed too is left out: a tool schema types the parameter, and null fails it
        values = [v for v in allowed if v != "" and (v is not None or "" not in allowed)]
        if not values or (omit_optional and "" in allowed):
            continue
        value = values[pick % len(values)]
        if _outer and type(value) is dict:
            value = gold_arguments(value, pick, omit_optional, False)
        elif _outer and type(value) is list and value and all(type(v) is dict for v in value):
            value = [gold_arguments(v, pick, omit_optional, False) for v in value]
        out[key] = copy.deepcopy(value)
    return out


def scenario_from_item(category: str, item: dict[str, Any], answer: dict[str, Any] | None) -> Scenario:
    """One BFCL item (and its possible answer, if the category has them) as a toolgym scenario."""
    tools = [tool_schema(f) for f in item["function"]]
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise ValueError(f"BFCL item {item['id']}: two functions share the tool name of {names}")
    ground_truth = answer["ground_truth"] if answer else []
    subtasks = []
    for i, call in enumerate(ground_truth):
        ((fname, params),) = call.items()
        name = tool_name(fname)
        subtasks.append(SubTask(id=f"c{i}", tool=name, arguments=gold_arguments(params), answers=[name]))
    parallel = "parallel" in category and len(subtasks) > 1
    return Scenario(
        id=item["id"],
        kind="parallel_single_hop" if parallel else "single_hop",
        messages=[dict(m) for m in item["question"][0]],
        tools=tools,
        source={n: _ack_source(n) for n in names},
        state={},
        subtasks=subtasks,
        answer="",
        metadata={
            "suite": SUITE,
            "category": category,
            "bfcl_id": item["id"],
            "functions": item["function"],
            "possible_answer": ground_truth,
        },
    )


@cache
def _load(category: str) -> tuple[Scenario, ...]:
    root = data_dir()
    if root is None:
        raise ModuleNotFoundError(missing_message())
    stem = CATEGORIES[category]
    items = _read_jsonl(root / f"BFCL_v4_{stem}.json")
    answer_path = root / "possible_answer" / f"BFCL_v4_{stem}.json"
    answers = {a["id"]: a for a in _read_jsonl(answer_path)} if answer_path.is_file() else {}
    needs_answers = category not in NO_CALL_CATEGORIES + ANY_CALL_CATEGORIES
    out = []
    for item in items:
        if needs_answers and item["id"] not in answers:
            raise ValueError(f"BFCL item {item['id']} has no possible answer in {answer_path}")
        out.append(scenario_from_item(category, item, answers.get(item["id"])))
    return tuple(out)


def load_category(category: str) -> list[Scenario]:
    """Every item of a BFCL category as scenarios (read once per process)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL category {category!r}; choose one of {', '.join(CATEGORIES)}")
    return list(_load(category))


# ------------------------------------------------------------------------------------------------ AST rule
def standardize_string(text: str) -> str:
    """BFCL's string normalisation: no spaces or ``,./-_*^``, lower case, ``'`` as ``"``."""
    return _STRIP.sub("", text).lower().replace("'", '"')


def _answer_type(allowed: list[Any]) -> type | None:
    return next((type(a) for a in allowed if a != ""), None)


def _type_ok(value: Any, allowed: list[Any], expected: type, nested: type | None) -> tuple[bool, bool]:
    """(valid, is_variable) of BFCL's ``type_checker``: ``value`` has the expected type, or the possible answers
    hold a value of another type (BFCL writes variable names as strings) and ``value`` has that type."""
    answer_type = _answer_type(allowed)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if nested is None:
            return True, is_variable
        for option in allowed:
            if type(option) is not list or all(_type_ok(v, option, nested, None)[0] for v in value):
                return True, is_variable
        return False, False  # BFCL: a nested mismatch fails even when the value has the answers' type
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, False


def _dict_ok(value: dict[str, Any], allowed: list[Any]) -> bool:
    for option in allowed:
        if option == "":
            continue
        if all(
            key in option
            and (standardize_string(v) if type(v) is str else v)
            in [standardize_string(a) if type(a) is str else a for a in option[key]]
            for key, v in value.items()
        ) and all(key in value or "" in values for key, values in option.items()):
            return True
    return False


def _list_ok(value: list[Any], allowed: list[Any]) -> bool:
    norm = [standardize_string(v) if type(v) is str else v for v in value]
    return any(norm == [standardize_string(a) if type(a) is str else a for a in option] for option in allowed)


def _list_of_dicts_ok(value: list[Any], allowed: list[Any]) -> bool:
    return any(
        len(value) == len(option) and all(_dict_ok(v, [o]) for v, o in zip(value, option, strict=True))
        for option in allowed
    )


def check_call(function: dict[str, Any], name: str, arguments: dict[str, Any], expected: dict[str, Any]) -> str:
    """``""`` when one call passes BFCL's rule for one gold call (``{bfcl_name: {param: allowed values}}``),
    else BFCL's error type for why not."""
    ((_, allowed_params),) = expected.items()
    if name != tool_name(function["name"]):
        return "wrong_func_name"
    doc = function["parameters"]
    properties = doc["properties"]
    if any(p not in arguments for p in doc["required"]):
        return "missing_required"
    for param, value in arguments.items():
        if param not in properties or param not in allowed_params:
            return "unexpected_param"
        allowed = allowed_params[param]
        kind = properties[param]["type"]
        expected_type = PYTHON_TYPES[kind]
        nested = PYTHON_TYPES[properties[param]["items"]["type"]] if kind in _NESTED else None
        if kind == "tuple" and type(value) is tuple:
            value = list(value)
        if kind == "float" and type(value) is int:
            value = float(value)
        valid, is_variable = _type_ok(value, allowed, expected_type, nested)
        if not valid:
            return "type_error"
        if not is_variable:
            if expected_type is dict:
                if not _dict_ok(value, allowed):
                    return "value_error:dict"
                continue
            if expected_type is list and nested is dict:
                if not _list_of_dicts_ok(value, allowed):
                    return "value_error:list_dict"
                continue
            if expected_type is str:
                if standardize_string(value) not in [standardize_string(a) for a in allowed if type(a) is str]:
                    return "value_error:string"
                continue
            if expected_type is list:
                if not _list_ok(value, allowed):
                    return "value_error:list"
                continue
        if value not in allowed:
            return "value_error:others"
    if any(p not in arguments and "" not in allowed for p, allowed in allowed_params.items()):
        return "missing_optional"
    return ""


def _describe(functions: list[dict[str, Any]], bfcl_name: str) -> dict[str, Any]:
    return next(f for f in functions if f["name"] == bfcl_name)


def ast_check(
    functions: list[dict[str, Any]],
    calls: list[tuple[str, dict[str, Any]]],
    possible_answer: list[dict[str, Any]],
    category: str,
) -> str:
    """``""`` when the turn's ``calls`` (tool name, arguments) pass BFCL's AST rule, else the reason they fail.

    Dispatch as BFCL's ``ast_checker``: a category naming ``parallel`` matches every gold call to a distinct call
    in any order (greedily, first match wins, as BFCL does); one naming ``multiple`` needs exactly one call, of
    the gold function; any other (simple) needs exactly one call, checked against the first function.
    """
    if len(calls) != len(possible_answer):
        return "wrong_count"
    try:
        if "parallel" in category:
            used: set[int] = set()
            for expected in possible_answer:
                function = _describe(functions, next(iter(expected)))
                match = next(
                    (i for i, c in enumerate(calls) if i not in used and not check_call(function, *c, expected)), None
                )
                if match is None:
                    return "cannot_find_match"
                used.add(match)
            return ""
        if "multiple" in category:
            return check_call(_describe(functions, next(iter(possible_answer[0]))), *calls[0], possible_answer[0])
        return check_call(functions[0], *calls[0], possible_answer[0])
    except (AttributeError, KeyError, TypeError, StopIteration) as e:  # a value BFCL's rule cannot read
        return f"unreadable:{type(e).__name__}"


def score_calls(scenario: Scenario, calls: list[tuple[str, dict[str, Any]]], malformed: bool = False) -> float:
    """``bfcl_ast`` of one turn: 1.0 when it passes BFCL's rule for the scenario's category, else 0.0.

    Irrelevance items pass when the turn makes no call, relevance items when it makes at least one. A turn
    holding an unreadable call block fails in every category (BFCL counts output it cannot decode as "no call",
    which passes irrelevance; toolgym treats an attempted call as a call).
    """
    meta = scenario.metadata
    category = meta["category"]
    if category in NO_CALL_CATEGORIES:
        return float(not calls and not malformed)
    if malformed:
        return 0.0
    if category in ANY_CALL_CATEGORIES:
        return float(bool(calls))
    return float(ast_check(meta["functions"], calls, meta["possible_answer"], category) == "")


def score_turn(scenario: Scenario, parsed: ParsedTurn) -> dict[str, float]:
    """The env's turn scorer for BFCL packs: adds ``bfcl_ast`` to the step's reward components."""
    calls = [(c.name, c.arguments) for c in parsed.calls]
    return {"bfcl_ast": score_calls(scenario, calls, bool(parsed.malformed))}
