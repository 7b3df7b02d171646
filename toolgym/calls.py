"""Parsing one assistant turn into tool calls.

Three action forms are accepted, because that is what policies emit:

* raw completion text in the tool-call syntax of the model's own chat template, several calls per turn:
  Qwen/Hermes ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (Qwen2.5, Qwen3), the XML form
  of Qwen3.5/Qwen3-Coder (``<tool_call><function=NAME><parameter=K>V</parameter></function></tool_call>``), GLM-4.5's
  (``<tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value></tool_call>``), Llama 3.1/3.2's bare
  ``{"name": ..., "parameters": {...}}`` and gpt-oss's ``to=functions.NAME ... <|message|>{...}<|call|>``. The XML
  forms write string values raw, so their values are typed by the tool's parameter schema when one is given;
* an OpenAI assistant message dict with ``tool_calls`` (arguments as a JSON string or a dict);
* a python-call string such as ``search_flights(origin="SFO", date="2026-03-04")`` (one call per line,
  or a list ``[f(a=1), g(b=2)]``), with literal keyword arguments only.

Parsing never raises: a block that cannot be read becomes a :class:`MalformedCall` with a reason the
environment returns to the model as feedback.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_OPEN_LEN, _CLOSE_LEN = len(_OPEN), len(_CLOSE)
# FTRL counts any of these left in a final answer as a malformed call.
MALFORMED_MARKERS = ("<tool_call>", "</tool_call>", "<tool_parsed_response>")
_END_TOKENS = ("<|endoftext|>", "<|im_end|>")  # FTRL's
_END_TOKENS += ("<|eot_id|>", "<|eom_id|>", "<|call|>", "<|return|>", "<|end|>", "<|user|>")  # Llama, gpt-oss, GLM
assert all(tok.endswith("|>") for tok in _END_TOKENS)  # parse_text tests that suffix before the eight
_XML_FN, _XML_PARAM, _XML_PARAM_END = "<function=", "<parameter=", "</parameter>"
_GLM_KEY, _GLM_KEY_END, _GLM_VAL, _GLM_VAL_END = "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"
_OSS_TO, _OSS_MSG, _OSS_CALL, _OSS_FINAL = "to=functions.", "<|message|>", "<|call|>", "<|channel|>final<|message|>"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_PY_CALL_START = re.compile(r"^\s*\[?\s*[A-Za-z_][A-Za-z0-9_]*\s*\(")
_DECODER = json.JSONDecoder()
_raw_decode, _scan_once = _DECODER.raw_decode, _DECODER.scan_once  # scan_once: raw_decode without its wrapper
_JSON_WS = json.decoder.WHITESPACE.match
# A JSON escape such as "\ud800" decodes to a lone surrogate: a str Python holds but no UTF-8 text can, so a
# transcript holding one fails to export, to serve and to tokenize. The env refuses such calls and cleans replies.
find_lone_surrogate = re.compile("[\ud800-\udfff]").search
find_surrogate_escape = re.compile(r"\\u[dD][89a-fA-F]").search  # in JSON text: what may decode to one (or a pair)
LONE_SURROGATE_REASON = "its name or arguments hold a lone surrogate (a JSON escape like \\ud800), not valid Unicode"


def replace_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, as a UTF-8 decoder does with bad bytes."""
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


@dataclass(slots=True)
class ToolCall:
    """A call that parsed: a tool name and a dict of arguments (not yet checked against a schema)."""

    name: str
    arguments: dict[str, Any]
    id: str = ""


@dataclass(slots=True)
class MalformedCall:
    """A call block that could not be read; ``reason`` is feedback text for the model."""

    text: str
    reason: str
    id: str = ""


@dataclass(slots=True)
class ParsedTurn:
    """One assistant turn: its text content (outside call blocks), its calls and its unreadable blocks."""

    content: str
    calls: list[ToolCall] = field(default_factory=list)
    malformed: list[MalformedCall] = field(default_factory=list)
    raw: str = ""

    @property
    def has_calls(self) -> bool:
        return bool(self.calls)


def _call_from_obj(obj: Any, call_id: str) -> ToolCall | str:
    """The call in a decoded call object, or the reason it cannot be read (the caller keeps the raw text)."""
    if not isinstance(obj, dict):
        return "a tool call must be a JSON object with 'name' and 'arguments'"
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return "the tool call has no 'name' string"
    args = obj["arguments"] if "arguments" in obj else obj.get("parameters", {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            return f"the 'arguments' string is not valid JSON ({exc.msg})"
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return "'arguments' must be a JSON object"
    return ToolCall(name, args, call_id)


def _loads_stripped(body: str) -> Any:
    """``json.loads`` of text without surrounding whitespace, skipping two Python-level wrappers per call."""
    if body.startswith("\ufeff"):
        return json.loads(body)  # raises json's own BOM error
    obj, end = _raw_decode(body)
    if end != len(body):
        raise json.JSONDecodeError("Extra data", body, _JSON_WS(body, end).end())
    return obj


def _typed(raw: str, prop: Any) -> Any:
    """A raw XML-form value typed by its property schema: strings stay raw, anything else is read as JSON."""
    ptype = prop.get("type") if isinstance(prop, dict) else None
    if ptype == "string" or (isinstance(ptype, list) and ptype and ptype[0] == "string"):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _props(schemas: dict[str, Any] | None, name: str) -> dict[str, Any]:
    fn = (schemas or {}).get(name) or {}
    props = (fn.get("parameters") or {}).get("properties") if isinstance(fn, dict) else None
    return props if isinstance(props, dict) else {}


def _between(text: str, start: int, close: str) -> tuple[str, int] | None:
    end = text.find(close, start)
    return None if end < 0 else (text[start:end], end + len(close))


def _parse_xml_body(body: str, call_id: str, schemas: dict[str, Any] | None) -> ToolCall | str:
    """Qwen3.5/Qwen3-Coder: ``<function=NAME>`` then ``<parameter=K>\nV\n</parameter>`` blocks."""
    head = body[len(_XML_FN) :]
    gt = head.find(">")
    if gt <= 0:
        return "the <function=...> tag has no tool name"
    name, rest = head[:gt].strip(), head[gt + 1 :]
    props = _props(schemas, name)
    args: dict[str, Any] = {}
    pos = 0
    while (start := rest.find(_XML_PARAM, pos)) >= 0:
        gt = rest.find(">", start)
        got = _between(rest, gt + 1, _XML_PARAM_END) if gt > 0 else None
        if got is None:
            return "a <parameter=...> block is not closed with </parameter>"
        key = rest[start + len(_XML_PARAM) : gt].strip()
        raw, pos = got
        args[key] = _typed(raw.removeprefix("\n").removesuffix("\n"), props.get(key))
    return ToolCall(name, args, call_id)


def _parse_glm_body(body: str, call_id: str, schemas: dict[str, Any] | None) -> ToolCall | str:
    """GLM-4.5: the tool name, then ``<arg_key>K</arg_key><arg_value>V</arg_value>`` pairs."""
    first = body.find(_GLM_KEY)
    name = (body if first < 0 else body[:first]).strip()
    if not name or not set(name) <= _NAME_CHARS:
        return "the tool call has no tool name before its <arg_key> pairs"
    props = _props(schemas, name)
    args: dict[str, Any] = {}
    pos = 0 if first < 0 else first
    while first >= 0 and (start := body.find(_GLM_KEY, pos)) >= 0:
        key = _between(body, start + len(_GLM_KEY), _GLM_KEY_END)
        vstart = body.find(_GLM_VAL, key[1]) if key else -1
        val = _between(body, vstart + len(_GLM_VAL), _GLM_VAL_END) if vstart >= 0 else None
        if key is None or val is None:
            return "an <arg_key> has no closed <arg_value> after it"
        args[key[0].strip()] = _typed(val[0], props.get(key[0].strip()))
        pos = val[1]
    return ToolCall(name, args, call_id)


def _parse_gpt_oss(text: str, id_prefix: str) -> ParsedTurn:
    """gpt-oss (harmony): ``to=functions.NAME<|channel|>commentary json<|message|>{args}<|call|>`` per call."""
    calls: list[ToolCall] = []
    malformed: list[MalformedCall] = []
    pos = 0
    while (start := text.find(_OSS_TO, pos)) >= 0:
        i = start + len(_OSS_TO)
        j = i
        while j < len(text) and text[j] in _NAME_CHARS:
            j += 1
        name = text[i:j]
        call_id = f"{id_prefix}{len(calls) + len(malformed)}"
        msg = text.find(_OSS_MSG, j)
        if msg < 0:
            malformed.append(MalformedCall(text[start:], "the call has no <|message|> with its arguments", call_id))
            break
        end = text.find(_OSS_CALL, msg)
        nxt = text.find(_OSS_TO, msg)
        end = min(e for e in (end, nxt if nxt >= 0 else -1, len(text)) if e >= 0)
        body = text[msg + len(_OSS_MSG) : end].strip()
        pos = end
        try:
            args = _loads_stripped(body) if body else {}
        except json.JSONDecodeError as exc:
            malformed.append(MalformedCall(body, f"the call's arguments are not valid JSON ({exc.msg})", call_id))
            continue
        parsed = _call_from_obj({"name": name, "arguments": args}, call_id)
        if type(parsed) is str:
            malformed.append(MalformedCall(body, parsed, call_id))
        else:
            calls.append(parsed)
    return ParsedTurn(content="" if calls else text, calls=calls, malformed=malformed, raw=text)


def _parse_bare_json(text: str, id_prefix: str) -> ParsedTurn | None:
    """Llama 3.1/3.2: the whole turn is ``{"name": ..., "parameters": {...}}``; None when it is not such a call."""
    try:
        obj = _loads_stripped(text.removeprefix("<|python_tag|>").strip())
    except json.JSONDecodeError:
        return None
    if not (isinstance(obj, dict) and isinstance(obj.get("name"), str) and ("parameters" in obj or "arguments" in obj)):
        return None
    parsed = _call_from_obj(obj, f"{id_prefix}0")
    if type(parsed) is str:
        return ParsedTurn(content=text, malformed=[MalformedCall(text, parsed, f"{id_prefix}0")], raw=text)
    return ParsedTurn(content="", calls=[parsed], raw=text)


def _split_blocks(text: str) -> tuple[list[str], list[str]]:
    """(outside pieces, call bodies) of ``<tool_call>...</tool_call>`` blocks: str.find, no regex backtracking."""
    outside: list[str] = []
    bodies: list[str] = []
    pos = 0
    while True:
        start = text.find(_OPEN, pos)
        if start < 0:
            break
        end = text.find(_CLOSE, start + _OPEN_LEN)
        if end < 0:
            break
        outside.append(text[pos:start])
        bodies.append(text[start + _OPEN_LEN : end])
        pos = end + _CLOSE_LEN
    outside.append(text[pos:])
    return outside, bodies


def _one_json_call(text: str, id_prefix: str) -> ParsedTurn | None:
    """The usual turn read in one pass: a single ``<tool_call>`` block, nothing around it, holding a JSON object
    with a ``name`` string and an ``arguments`` object; None for anything else, which the full parser reads.

    What :func:`_parse_hermes` makes of such a turn, without its split, its per-block loop and its checks of
    forms this one is not (the step's hot path: most turns a policy sends look like this). A ParsedTurn is
    always true, so ``_one_json_call(...) or _parse_hermes(...)`` reads any turn.
    """
    end = text.find(_CLOSE)
    if end != len(text) - _CLOSE_LEN or end <= 0 or not text.startswith(_OPEN):
        return None
    body = text[_OPEN_LEN:end].strip()
    try:
        obj, stop = _scan_once(body, 0)
    except (StopIteration, ValueError):
        return None
    if stop != len(body) or type(obj) is not dict:
        return None
    name, args = obj.get("name"), obj.get("arguments")
    if type(name) is not str or not name or type(args) is not dict:
        return None
    return ParsedTurn("", [ToolCall(name, args, id_prefix + "0")], [], text)


def _parse_hermes(text: str, id_prefix: str = "call_", schemas: dict[str, Any] | None = None) -> ParsedTurn:
    outside, bodies = _split_blocks(text)
    calls: list[ToolCall] = []
    malformed: list[MalformedCall] = []
    for i, raw in enumerate(bodies):
        body = raw.strip()
        call_id = f"{id_prefix}{i}"
        try:
            obj = _loads_stripped(body)
        except json.JSONDecodeError as exc:
            if body.startswith(_XML_FN):
                parsed = _parse_xml_body(body, call_id, schemas)
            elif _GLM_KEY in body or (body and set(body) <= _NAME_CHARS):
                parsed = _parse_glm_body(body, call_id, schemas)
            else:
                parsed = f"the tool call is not valid JSON ({exc.msg})"
        else:
            parsed = _call_from_obj(obj, call_id)
        if type(parsed) is str:
            malformed.append(MalformedCall(body, parsed, call_id))
        else:
            calls.append(parsed)
    # FTRL: when no call parses, the whole text is the content (so leftover tags count as malformed).
    content = "".join(outside).strip() if calls else text
    return ParsedTurn(content, calls, malformed, text)  # positional: keywords cost as much as the rest of __init__


def _literal(node: ast.AST) -> Any:
    """A keyword argument's literal value; only JSON values pass (tuples become lists, as json would write them)."""
    return _json_value(ast.literal_eval(node))


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v) for k, v in value.items()}
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def _parse_python(text: str, tool_names: frozenset[str] | None, id_prefix: str = "call_") -> ParsedTurn | None:
    """Python-call syntax; ``None`` when the text is not (only) calls, so it stays a plain answer.

    A call with positional arguments counts as a call attempt only when it names a known tool, so that
    an answer like ``Paris (France)`` stays an answer.
    """
    try:
        tree = ast.parse(text.strip(), mode="exec")
    except (SyntaxError, ValueError):
        return None
    nodes: list[ast.AST] = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            return None
        if isinstance(stmt.value, (ast.List, ast.Tuple)):
            nodes.extend(stmt.value.elts)
        else:
            nodes.append(stmt.value)
    if not nodes or not all(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) for n in nodes):
        return None
    if any(n.args and (tool_names is None or n.func.id not in tool_names) for n in nodes):  # type: ignore[attr-defined]
        return None
    calls: list[ToolCall] = []
    malformed: list[MalformedCall] = []
    for i, node in enumerate(nodes):
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        src = ast.get_source_segment(text.strip(), node) or node.func.id
        call_id = f"{id_prefix}{i}"
        if node.args:
            malformed.append(MalformedCall(src, "use keyword arguments only, e.g. f(x=1)", call_id))
            continue
        try:
            args = {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg is not None}
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            reason = "argument values must be JSON literals (strings, numbers, booleans, None, lists, dicts)"
            malformed.append(MalformedCall(src, reason, call_id))
            continue
        if any(kw.arg is None for kw in node.keywords):
            malformed.append(MalformedCall(src, "'**' arguments are not supported", call_id))
            continue
        calls.append(ToolCall(node.func.id, args, call_id))
    return ParsedTurn(content="" if calls else text.strip(), calls=calls, malformed=malformed, raw=text)


_MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "function_call"})


def _parse_message(
    msg: dict[str, Any],
    tool_names: frozenset[str] | None,
    id_prefix: str = "call_",
    schemas: dict[str, Any] | None = None,
) -> ParsedTurn:
    content = msg.get("content") or ""
    if not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False, default=str)
    raw_calls = msg.get("tool_calls") or msg.get("function_call") or []  # function_call: the legacy single call
    if not isinstance(raw_calls, list):
        raw_calls = [raw_calls]
    if not raw_calls:
        if _MESSAGE_KEYS.isdisjoint(msg):  # not a message: one call object, as its JSON text reads, or nothing
            if "name" not in msg:
                text = json.dumps(msg, ensure_ascii=False, default=str)
                reason = (
                    "an action dict is an assistant message (role, content, tool_calls) or one call (name, "
                    f"arguments), not one with keys {sorted(map(str, msg))}"
                )
                return ParsedTurn(
                    content=text, malformed=[MalformedCall(text[:200], reason, f"{id_prefix}0")], raw=text
                )
            raw_calls = [msg]
        else:
            return parse_text(content, tool_names, id_prefix, schemas)
    calls: list[ToolCall] = []
    malformed: list[MalformedCall] = []
    for i, tc in enumerate(raw_calls):
        call_id = str(tc.get("id") or f"{id_prefix}{i}") if isinstance(tc, dict) else f"{id_prefix}{i}"
        fn = tc.get("function", tc) if isinstance(tc, dict) else tc
        parsed = _call_from_obj(fn, call_id)
        if type(parsed) is str:  # the call's text is only needed as feedback context, so built only here
            malformed.append(MalformedCall(json.dumps(tc, ensure_ascii=False, default=str), parsed, call_id))
        else:
            calls.append(parsed)
    return ParsedTurn(content.strip(), calls, malformed, content)


def parse_text(
    text: str, tool_names: frozenset[str] | None = None, id_prefix: str = "call_", schemas: dict[str, Any] | None = None
) -> ParsedTurn:
    """Parse a raw completion (end-of-turn tokens stripped as FTRL does)."""
    text = text.strip()
    while text.endswith("|>") and text.endswith(_END_TOKENS):  # every end token ends with "|>": one test first
        for tok in _END_TOKENS:
            text = text.removesuffix(tok).strip()
    if "<tool_call>" in text:
        return _one_json_call(text, id_prefix) or _parse_hermes(text, id_prefix, schemas)
    if _OSS_TO in text:
        return _parse_gpt_oss(text, id_prefix)
    if _OSS_FINAL in text:  # gpt-oss's final channel: the answer is what follows it
        answer = text[text.rindex(_OSS_FINAL) + len(_OSS_FINAL) :].strip()
        return ParsedTurn(content=answer, raw=text)
    if text.startswith(("{", "<|python_tag|>")):
        parsed = _parse_bare_json(text, id_prefix)
        if parsed is not None:
            return parsed
    if _PY_CALL_START.match(text):
        parsed = _parse_python(text, tool_names, id_prefix)
        if parsed is not None:
            return parsed
    return ParsedTurn(content=text, raw=text)


def parse_action(
    action: Any,
    tool_names: frozenset[str] | None = None,
    id_prefix: str = "call_",
    schemas: dict[str, Any] | None = None,
) -> ParsedTurn:
    """Parse any accepted action form (text, an assistant message dict or one call dict, bytes, a number); anything
    else is a malformed action.

    ``tool_names`` (the tools on offer) only disambiguates python-call syntax with positional arguments;
    ``schemas`` (tool name -> OpenAI function schema) types the raw values of the XML call forms.
    Calls without an id get ``<id_prefix><i>``; the env passes a per-turn prefix so ids are unique in a dialogue.
    """
    if isinstance(action, str):
        return parse_text(action, tool_names, id_prefix, schemas)
    if isinstance(action, dict):
        return _parse_message(action, tool_names, id_prefix, schemas)
    if isinstance(action, bytes):
        return parse_text(action.decode("utf-8", errors="replace"), tool_names, id_prefix, schemas)
    if (isinstance(action, (int, float)) and not isinstance(action, bool)) or _is_np_number(action):
        return parse_text(str(action), tool_names, id_prefix, schemas)  # a bare number is a final answer
    text = repr(action)
    reason = f"an action is text, an OpenAI assistant message dict or a number, not {type(action).__name__}"
    return ParsedTurn(content=text, malformed=[MalformedCall(text[:200], reason, f"{id_prefix}0")], raw=text)


def _is_np_number(x: Any) -> bool:
    t = type(x)
    return t.__module__ == "numpy" and t.__name__.startswith(("int", "uint", "float"))


def format_hermes(calls: list[tuple[str, dict[str, Any]]], content: str = "") -> str:
    """Render calls as a Qwen/Hermes completion (what the gold agent and the exports emit)."""
    blocks = [
        "<tool_call>\n" + json.dumps({"name": n, "arguments": a}, ensure_ascii=False) + "\n</tool_call>"
        for n, a in calls
    ]
    return "\n".join(([content] if content else []) + blocks)
