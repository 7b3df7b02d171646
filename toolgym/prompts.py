"""How a chat and its tools are shown to a model: the text-mode tool prompt, and chat messages for templates.

Two consumers need the same rendering: the eval harness (text mode, for servers without native tool calling) and
the exports (rl prompts with ``tools_in_prompt="hermes"``, so that a trainer's stock single-turn rollout shows the
model its tools). Keeping it in one module keeps the training text and the evaluated text identical. The
harness's other two ways of asking for a turn live here too: the native chat strict servers accept
(:func:`native_history`) and JSON mode's reply schema and its reading back into an action (:func:`action_schema`,
:func:`json_to_action`).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

TEXT_TOOLS_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>
When you know the answer, reply with it in plain text without any <tool_call>."""

JSON_TOOLS_PROMPT = """# Tools

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

Reply with one JSON object and nothing else. To call functions (several at once if they do not depend on each \
other): {{"tool_calls": [{{"name": <function-name>, "arguments": <args-json-object>}}, ...]}}
When you know the answer: {{"answer": "<the answer>"}}"""

ARGUMENTS = ("dict", "json")
TOOLS_IN_PROMPT = ("template", "hermes", "none")


def tool_lines(tools: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)


def with_system(messages: list[dict[str, Any]], extra: str) -> list[dict[str, Any]]:
    """The chat with ``extra`` appended to its system message (one is added when the chat has none)."""
    msgs = [dict(m) for m in messages]
    if msgs and msgs[0].get("role") == "system":
        msgs[0]["content"] = f"{msgs[0].get('content') or ''}\n\n{extra}".strip()
    else:
        msgs.insert(0, {"role": "system", "content": extra})
    return msgs


def hermes_calls(tool_calls: list[dict[str, Any]]) -> str:
    """OpenAI ``tool_calls`` as ``<tool_call>`` blocks (arguments given as a JSON string are decoded first)."""
    blocks = []
    for tc in tool_calls:
        fn = tc.get("function", {})
        args = fn.get("arguments")
        with contextlib.suppress(TypeError, ValueError):
            args = json.loads(args) if isinstance(args, str) else args
        blocks.append(
            "<tool_call>\n"
            + json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
            + "\n</tool_call>"
        )
    return "\n".join(blocks)


def text_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat without tool roles: assistant calls as ``<tool_call>`` text, tool results as one user message."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            block = f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"
            if out and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": True})
        elif role == "assistant" and m.get("tool_calls"):
            text = "\n".join(p for p in (m.get("content") or "", hermes_calls(m["tool_calls"])) if p)
            out.append({"role": "assistant", "content": text})
        else:
            out.append({"role": role, "content": m.get("content") or ""})
    for m in out:
        m.pop("_tool", None)
    return out


def text_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat as a text-mode model sees it: tools listed in the system message, calls and results as text."""
    return with_system(text_history(messages), TEXT_TOOLS_PROMPT.format(tools=tool_lines(tools)))


def chat_arguments(messages: list[dict[str, Any]], arguments: str = "dict") -> list[dict[str, Any]]:
    """A copy of the chat with every ``tool_calls[].function.arguments`` a dict (``"dict"``) or a JSON string.

    Chat templates expect dicts: Qwen2.5 and gpt-oss render a JSON-string argument double-encoded, and Qwen3.5 and
    GLM raise on it, so dicts are the default; ``"json"`` gives OpenAI's wire form. An argument string that is not
    valid JSON is kept as it is.
    """
    if arguments not in ARGUMENTS:
        raise ValueError(f"arguments must be one of {ARGUMENTS}, got {arguments!r}")
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for tc in m["tool_calls"]:
                tc = dict(tc)
                fn = tc["function"] = dict(tc.get("function") or {})
                args = fn.get("arguments")
                if arguments == "dict" and isinstance(args, str):
                    with contextlib.suppress(ValueError):
                        fn["arguments"] = json.loads(args) if args.strip() else {}
                elif arguments == "json" and not isinstance(args, str):
                    fn["arguments"] = json.dumps(args if args is not None else {}, ensure_ascii=False)
                calls.append(tc)
            m["tool_calls"] = calls
        out.append(m)
    return out


def n_multi_call_turns(messages: list[dict[str, Any]]) -> int:
    """Assistant turns with several calls: what one-call templates (Llama 3.1/3.2, gpt-oss) cannot express."""
    return sum(1 for m in messages if m.get("role") == "assistant" and len(m.get("tool_calls") or []) > 1)


def split_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat with every several-call assistant turn split into one turn per call, each followed by its result.

    Llama 3.1/3.2's templates raise on a turn with two calls and gpt-oss's renders only the first; split, each call
    is rendered (the turn's text goes with its first call). Results are matched to calls by ``tool_call_id``.
    """
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        calls = m.get("tool_calls") or []
        if m.get("role") != "assistant" or len(calls) < 2:
            out.append(m)
            i += 1
            continue
        j = i + 1
        results: dict[str, dict[str, Any]] = {}
        rest: list[dict[str, Any]] = []
        while j < len(messages) and messages[j].get("role") == "tool":
            r = messages[j]
            if r.get("tool_call_id") in results or r.get("tool_call_id") not in {c.get("id") for c in calls}:
                rest.append(r)
            else:
                results[r["tool_call_id"]] = r
            j += 1
        for k, call in enumerate(calls):
            out.append({**m, "content": m.get("content") if k == 0 else "", "tool_calls": [call]})
            if call.get("id") in results:
                out.append(results[call["id"]])
        out.extend(rest)  # results of unreadable calls (no call id to pair with) stay after the turn
        i = j
    return out


def render_prompt(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    tools_in_prompt: str = "template",
    arguments: str = "dict",
    one_call_per_turn: bool = False,
) -> list[dict[str, Any]]:
    """An env's chat as an exported prompt.

    ``template``/``none``: the chat itself (the tools travel beside it, for the model's chat template, or not at
    all); ``hermes``: the text-mode chat, tools in the system message, for rollouts that apply one global tool list.
    ``one_call_per_turn`` splits several-call turns (:func:`split_calls`) for one-call templates.
    """
    if tools_in_prompt not in TOOLS_IN_PROMPT:
        raise ValueError(f"tools_in_prompt must be one of {TOOLS_IN_PROMPT}, got {tools_in_prompt!r}")
    if one_call_per_turn:
        messages = split_calls(messages)
    if tools_in_prompt == "hermes":
        return text_prompt(messages, tools)
    return chat_arguments(messages, arguments)


# -- a model's turn in the eval harness: native tool calls, or JSON mode (schema-constrained replies) ----------
def native_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI chat as strict servers accept it: tool messages answer a call id of the preceding assistant turn."""
    out: list[dict[str, Any]] = []
    ids: set[str] = set()
    for m in messages:
        role = m.get("role")
        if role == "assistant":
            calls = m.get("tool_calls")  # a model's own reply may hold anything here: only call objects go back
            calls = [tc for tc in calls if isinstance(tc, dict)] if isinstance(calls, list) else []
            ids = {tc.get("id") for tc in calls}
            msg = {"role": "assistant", "content": m.get("content") or ""}
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
        elif role == "tool":
            if m.get("tool_call_id") in ids:
                out.append({"role": "tool", "tool_call_id": m["tool_call_id"], "content": m.get("content") or ""})
            else:  # feedback on a call the server did not return as a tool call (e.g. <tool_call> text in content)
                out.append({"role": "user", "content": f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"})
        else:
            out.append({"role": role, "content": m.get("content") or ""})
    return out


def _grammar_friendly(schema: Any) -> Any:
    """Drop what schema-to-grammar converters reject: unanchored ``pattern`` (llama.cpp wants ``^...$``)."""
    if isinstance(schema, list):
        return [_grammar_friendly(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "pattern" and isinstance(v, str) and not (v.startswith("^") and v.endswith("$")):
            continue  # (a property *named* "pattern" has a dict value and is kept)
        keep = k in ("enum", "const", "default", "examples") and not isinstance(v, dict)
        out[k] = v if keep else _grammar_friendly(v)
    return out


def action_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON schema of a turn in JSON mode: ``{"tool_calls": [...]}`` (each call typed by its tool) or ``{"answer"}``."""
    calls = []
    for t in tools:
        fn = t["function"]
        params = _grammar_friendly(fn.get("parameters") or {"type": "object", "properties": {}})
        calls.append(
            {
                "type": "object",
                "properties": {"name": {"type": "string", "enum": [fn["name"]]}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    call = {"anyOf": calls} if calls else {"type": "object"}
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {"tool_calls": {"type": "array", "items": call, "minItems": 1}},
                "required": ["tool_calls"],
            },
            {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
        ]
    }


def json_to_action(text: str, turn: int) -> tuple[Any, str | None]:
    """The env action for a JSON-mode completion, and a note when the completion was not the expected JSON."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return text, "completion is not valid JSON"
    if isinstance(obj, dict) and isinstance(obj.get("tool_calls"), list) and obj["tool_calls"]:
        tool_calls = []
        for i, c in enumerate(obj["tool_calls"]):
            c = c if isinstance(c, dict) else {"name": None, "arguments": c}
            tool_calls.append(
                {
                    "id": f"call_{turn}_{i}",
                    "type": "function",
                    "function": {"name": c.get("name"), "arguments": c.get("arguments", {})},
                }
            )
        return {"role": "assistant", "content": "", "tool_calls": tool_calls}, None
    if isinstance(obj, dict) and isinstance(obj.get("answer"), str):
        return obj["answer"], None
    return text, "JSON has neither a non-empty 'tool_calls' list nor an 'answer' string"
