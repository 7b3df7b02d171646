"""Prompts and output schemas of the ``openai`` build backend (one pair per pipeline stage).

Every request asks for one JSON object; its schema is sent as ``response_format`` (schema-constrained decoding
on servers that support it, e.g. llama-cpp-python) and every reply is validated against the same schema, so a
server that ignores it is still held to it. The schemas are kept within what schema-to-grammar converters
handle: ``enum``, ``const``, ``minItems``/``maxItems``, ``minLength``/``maxLength``, anchored ``pattern``,
``additionalProperties`` as a schema.
"""

from __future__ import annotations

import json
from typing import Any

from toolgym.sandbox import ALLOWED_MODULES

# The sub-questions of each kind and their dependencies (what ``validate_decomposition`` requires).
DEPENDENCIES: dict[str, dict[str, list[str]]] = {
    "single_hop": {"q1": []},
    "parallel_single_hop": {"q1": [], "q2": []},
    "multi_hop": {"q1": [], "q2": ["q1"]},
    "parallel_multi_hop": {"q1": [], "q2": ["q1"], "q3": [], "q4": ["q3"]},
}
STRATEGIES = ("toolset_extension", "parameter_expansion")
PARAM_TYPES = ("string", "integer", "number", "boolean")
NAME_PATTERN = "^[a-z][a-z0-9_]{2,39}$"
TOPICS = (
    "weather forecasts",
    "hotel reservations",
    "online shopping orders",
    "movie information",
    "public transport",
    "banking and payments",
    "restaurant menus",
    "sports results",
    "library books",
    "music albums",
)

SYSTEM = (
    "You design tool-use tasks for training AI assistants. You always reply with one JSON object that follows "
    "the requested format exactly, and nothing else."
)

KIND_TEXT = {
    "single_hop": "The task needs exactly 1 sub-question (one tool call). Its depends_on is [].",
    "parallel_single_hop": (
        "The task needs exactly 2 independent sub-questions that can be asked at the same time (two tool calls). "
        "Each depends_on is []."
    ),
    "multi_hop": (
        'The task needs exactly 2 sub-questions in a chain: q1 has depends_on []; q2 has depends_on ["q1"] '
        "because q2 can only be asked once the answer of q1 is known (q1's answer is an input of q2)."
    ),
    "parallel_multi_hop": (
        "The task needs exactly 4 sub-questions forming two independent chains: q1 and q3 have depends_on []; "
        'q2 has depends_on ["q1"] and q4 has depends_on ["q3"] (q1\'s answer is an input of q2, q3\'s of q4).'
    ),
}


def _text(lo: int, hi: int) -> dict[str, Any]:
    return {"type": "string", "minLength": lo, "maxLength": hi}


ARG_VALUE = {"anyOf": [_text(1, 60), {"type": "integer"}, {"type": "number"}, {"type": "boolean"}]}
ARGUMENTS = {"type": "object", "additionalProperties": ARG_VALUE, "maxProperties": 4}
PROPERTY = {
    "type": "object",
    "properties": {"type": {"enum": list(PARAM_TYPES)}, "description": _text(1, 120)},
    "required": ["type", "description"],
    "additionalProperties": False,
}
FUNCTION_PROPS = {
    "name": {"type": "string", "pattern": NAME_PATTERN},
    "description": _text(5, 200),
    "parameters": {
        "type": "object",
        "properties": {
            "type": {"const": "object"},
            "properties": {"type": "object", "additionalProperties": PROPERTY, "minProperties": 1, "maxProperties": 4},
            "required": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        },
        "required": ["type", "properties", "required"],
        "additionalProperties": False,
    },
}
FUNCTION = {
    "type": "object",
    "properties": FUNCTION_PROPS,
    "required": ["name", "description", "parameters"],
    "additionalProperties": False,
}


def _obj(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


# ------------------------------------------------------------------------------------ 1. decomposition
def _tuple(items: list[dict[str, Any]]) -> dict[str, Any]:
    """An array of exactly these items, in order (``prefixItems``: grammar-constrained servers follow it)."""
    return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}


def decompose_schema(kind: str) -> dict[str, Any]:
    """The kind's ids and dependencies are fixed per position; questions and answers are free text."""
    deps = DEPENDENCIES[kind]
    subs = [
        _obj({"id": {"const": i}, "question": _text(5, 200), "answer": _text(1, 60), "depends_on": {"const": d}})
        for i, d in deps.items()
    ]
    return _obj({"query": _text(10, 400), "subquestions": _tuple(subs), "final_answer": _text(1, 120)})


def decompose_messages(topic: str, kind: str) -> list[dict[str, Any]]:
    example = {
        "query": "What is the phone number of the hotel of reservation R-2291?",
        "subquestions": [
            {"id": "q1", "question": "Which hotel is reservation R-2291 at?", "answer": "H-88", "depends_on": []},
            {
                "id": "q2",
                "question": "What is the phone number of hotel H-88?",
                "answer": "+1 555 0199",
                "depends_on": ["q1"],
            },
        ],
        "final_answer": "+1 555 0199",
    }
    user = (
        f"Invent a realistic user request about {topic} that an assistant can only answer by calling tools "
        f"(lookup functions of a made-up service).\n{KIND_TEXT[kind]}\n"
        "Each sub-question is answered by one tool call; give its answer as a short, specific, made-up value "
        "(a code, name, number or date) that does not appear in the user request. All answers must differ. "
        "final_answer is the reply to the user.\n"
        f"Example (another kind):\n{json.dumps(example)}\n"
        'Reply with JSON: {"query": ..., "subquestions": [{"id", "question", "answer", "depends_on"}], '
        '"final_answer": ...}'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


# ------------------------------------------------------------------------------- 2. document generation
def documents_schema(ids: list[str]) -> dict[str, Any]:
    docs = [_obj({"subquestion": {"const": i}, **FUNCTION_PROPS, "arguments": ARGUMENTS}) for i in ids]
    return _obj({"documents": _tuple(docs)})


def documents_messages(dec: dict[str, Any]) -> list[dict[str, Any]]:
    lines = []
    for s in dec["subquestions"]:
        dep = f" (uses the answer of {', '.join(s['depends_on'])}: {_answers(dec, s['depends_on'])})"
        lines.append(f"- {s['id']}: {s['question']} -> answer {s['answer']!r}{dep if s['depends_on'] else ''}")
    example = {
        "subquestion": "q1",
        "name": "get_reservation_hotel",
        "description": "Get the hotel of a reservation.",
        "parameters": {
            "type": "object",
            "properties": {"reservation_id": {"type": "string", "description": "Reservation id, e.g. R-1234"}},
            "required": ["reservation_id"],
        },
        "arguments": {"reservation_id": "R-2291"},
    }
    user = (
        f"User request: {dec['query']}\nSub-questions:\n" + "\n".join(lines) + "\n\n"
        "For each sub-question write the document of one tool (an OpenAI function) that answers it, and the "
        "arguments of the call that answers it. Function names are snake_case and all different; parameters is a "
        "JSON schema of type object; required lists parameter names. A sub-question that uses an earlier answer "
        "must pass that answer as an argument value. No argument may contain the sub-question's own answer.\n"
        f"Example document:\n{json.dumps(example)}\n"
        'Reply with JSON: {"documents": [...one per sub-question...]}'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _answers(dec: dict[str, Any], ids: list[str]) -> str:
    by_id = {s["id"]: s["answer"] for s in dec["subquestions"]}
    return ", ".join(repr(by_id.get(i, "?")) for i in ids)


# ------------------------------------------------------------------------------ 3. function integration
def integrate_schema(ids: list[str]) -> dict[str, Any]:
    name = {"type": "string", "pattern": NAME_PATTERN}
    calls = [_obj({"subquestion": {"const": i}, "function": name, "arguments": ARGUMENTS}) for i in ids]
    functions = {"type": "array", "items": FUNCTION, "minItems": 1, "maxItems": len(ids)}
    return _obj({"functions": functions, "calls": _tuple(calls)})


def integrate_messages(dec: dict[str, Any], docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = [json.dumps(d, ensure_ascii=False) for d in docs]
    user = (
        "These tool documents each answer one sub-question of a task:\n" + "\n".join(lines) + "\n\n"
        "Merge documents whose functionality overlaps into one more general function (for example two lookups "
        "of the same record become one function); keep the others as they are. You may return fewer functions, "
        "never more. Then give, for every sub-question, the function and the arguments that answer it: every "
        "sub-question must stay solvable with the merged functions, with the same argument values as before.\n"
        'Reply with JSON: {"functions": [{"name", "description", "parameters"}], '
        '"calls": [{"subquestion", "function", "arguments"}]}'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


# -------------------------------------------------------------------------------- 4. complexity scaling
def scale_schema(strategies: list[str], names: list[str], n_distractors: int) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if "toolset_extension" in strategies:
        props["distractors"] = {
            "type": "array",
            "items": FUNCTION,
            "minItems": n_distractors,
            "maxItems": n_distractors,
        }
    if "parameter_expansion" in strategies:
        extra = _obj(
            {
                "function": {"enum": names},
                "name": {"type": "string", "pattern": NAME_PATTERN},
                "type": {"enum": list(PARAM_TYPES)},
                "description": _text(1, 120),
            }
        )
        props["extra_parameters"] = {"type": "array", "items": extra, "minItems": 1, "maxItems": 2}
    return _obj(props)


def scale_messages(functions: list[dict[str, Any]], strategies: list[str], n_distractors: int) -> list[dict]:
    asks = []
    if "toolset_extension" in strategies:
        asks.append(
            f"distractors: {n_distractors} new tool(s) that look similar to the tools above (near-miss names and "
            "descriptions) but do something else; names must differ from the existing ones."
        )
    if "parameter_expansion" in strategies:
        asks.append(
            "extra_parameters: 1 or 2 new optional parameters for the existing tools (e.g. language, units, "
            "include_details), each naming the function it extends; names must not exist in that function yet."
        )
    keys = ", ".join(json.dumps(k) for k in scale_schema(strategies, ["x"], 1)["properties"])
    user = (
        "Tools of a task:\n" + "\n".join(json.dumps(f, ensure_ascii=False) for f in functions) + "\n\n"
        "Make the toolset harder to use. Give:\n- " + "\n- ".join(asks) + "\n"
        f"Reply with JSON with the keys {keys}."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


# ------------------------------------------------------------------------------- 5. localized deployment
CODE_SCHEMA = _obj({"code": _text(20, 2500)})

CODE_RULES = (
    "Write it as plain Python: one top-level `def` with exactly these parameters (optional ones with default "
    "None), data kept in dicts in the code; helper functions and classes are fine; imports only from these "
    f"standard modules: {', '.join(ALLOWED_MODULES)}; no file or network access, no print. "
    "It returns a dict or a string. It must return the expected answer for the listed calls, and for any other "
    'argument values it must return an error message such as {"error": "not found"} (never the answers).'
)


def code_messages(function: dict[str, Any], calls: list[dict[str, Any]], forbidden: list[str]) -> list[dict]:
    sig = json.dumps(function, ensure_ascii=False)
    if calls:
        lines = [
            f"- {function['name']}(**{json.dumps(c['arguments'], ensure_ascii=False)}) must return a result "
            f"containing {c['answer']!r}"
            for c in calls
        ]
        spec = "Calls and expected results:\n" + "\n".join(lines)
    else:
        spec = (
            "This tool is not needed by the task; make it return plausible data of its own. Its results must "
            f"never contain any of: {', '.join(repr(a) for a in forbidden)}."
        )
    user = (
        f"Implement the tool {function['name']} as a Python function.\nTool: {sig}\n{spec}\n{CODE_RULES}\n"
        'Reply with JSON: {"code": "def ...: ..."}'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def feedback_messages(messages: list[dict[str, Any]], reply: str, problem: str) -> list[dict[str, Any]]:
    """The request again, with the rejected reply and what was wrong with it (only the last attempt is kept)."""
    return [
        *messages,
        {"role": "assistant", "content": reply[:1500]},
        {"role": "user", "content": f"That reply was rejected: {problem[:600]}\nReply again with corrected JSON."},
    ]
