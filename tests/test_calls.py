"""Parsing assistant turns: the three action forms, and robustness on arbitrary input."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolgym import calls
from toolgym.calls import MalformedCall, ToolCall, format_hermes, parse_action

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=10,
)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)


def test_hermes_blocks_several_per_turn():
    text = (
        'Let me check.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
        '<tool_call>{"name": "b", "arguments": "{\\"y\\": \\"z\\"}"}</tool_call>'
    )
    turn = parse_action(text)
    assert [(c.name, c.arguments) for c in turn.calls] == [("a", {"x": 1}), ("b", {"y": "z"})]
    assert turn.content == "Let me check."
    assert not turn.malformed


def test_end_of_turn_tokens_are_stripped():
    turn = parse_action('<tool_call>{"name": "a", "arguments": {}}</tool_call><|im_end|>')
    assert turn.calls == [ToolCall("a", {}, "call_0")]


def test_malformed_block_is_reported_with_reason_and_keeps_text_as_content():
    turn = parse_action('<tool_call>{"name": "a", "arguments": {"x": </tool_call>')
    assert not turn.calls
    assert len(turn.malformed) == 1 and "not valid JSON" in turn.malformed[0].reason
    assert "<tool_call>" in turn.content


def test_missing_name_and_non_object_arguments_are_malformed():
    t1 = parse_action('<tool_call>{"arguments": {}}</tool_call>')
    t2 = parse_action('<tool_call>{"name": "a", "arguments": [1]}</tool_call>')
    assert "no 'name'" in t1.malformed[0].reason
    assert "must be a JSON object" in t2.malformed[0].reason


def test_openai_message_dict_with_string_or_dict_arguments():
    msg = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
            {"id": "c2", "type": "function", "function": {"name": "b", "arguments": {"y": 2}}},
            {"id": "c3", "type": "function", "function": {"name": "c", "arguments": "{bad"}},
        ],
    }
    turn = parse_action(msg)
    assert [(c.id, c.name, c.arguments) for c in turn.calls] == [("c1", "a", {"x": 1}), ("c2", "b", {"y": 2})]
    assert turn.malformed[0].id == "c3"


def test_openai_message_without_calls_is_text():
    turn = parse_action({"role": "assistant", "content": "The answer is 4."})
    assert turn.content == "The answer is 4." and not turn.calls


def test_a_call_object_and_the_legacy_function_call_are_calls():
    """What ``env.gold_plan()`` yields, and what the bare JSON text form reads, is one call as a dict too."""
    call = {"name": "get_fare", "arguments": {"flight_id": "FL1"}}
    as_text = parse_action(json.dumps(call))
    for action in (
        call,
        {"role": "assistant", "content": None, "function_call": {**call, "arguments": '{"flight_id": "FL1"}'}},
    ):
        turn = parse_action(action)
        assert [(c.name, c.arguments) for c in turn.calls] == [(c.name, c.arguments) for c in as_text.calls]
        assert not turn.malformed


@pytest.mark.parametrize("action", [{}, {"x": 1}, {"arguments": {"flight_id": "FL1"}}])
def test_a_dict_that_is_neither_message_nor_call_is_malformed(action):
    turn = parse_action(action)
    assert not turn.calls and len(turn.malformed) == 1
    assert "assistant message (role, content, tool_calls) or one call" in turn.malformed[0].reason


@given(st.dictionaries(st.text(max_size=10), json_values))
def test_a_dict_action_is_read_or_reported(action):
    """No dict is silently an empty final answer: it is a message, a call, or a malformed action."""
    turn = parse_action(action)
    if {"role", "content", "tool_calls", "function_call"}.isdisjoint(action):
        assert turn.calls or turn.malformed


def test_python_call_syntax():
    turn = parse_action('search_flights(origin="SFO", destination="JFK", date="2026-03-04")\nget_fare(flight_id="FL1")')
    assert [c.name for c in turn.calls] == ["search_flights", "get_fare"]
    assert turn.calls[0].arguments == {"origin": "SFO", "destination": "JFK", "date": "2026-03-04"}
    assert parse_action("[a(x=1), b(y=[1, 2])]").calls[1].arguments == {"y": [1, 2]}


def test_python_syntax_that_is_an_answer_stays_an_answer():
    for text in ["Paris (France)", "Sol", "It is 31 degrees.", "f(1) + 2", "x = f(a=1)"]:
        turn = parse_action(text)
        assert not turn.calls and not turn.malformed, text
        assert turn.content == text


def test_python_positional_args_to_a_known_tool_are_malformed_feedback():
    turn = parse_action('get_fare("FL1")', frozenset({"get_fare"}))
    assert not turn.calls and isinstance(turn.malformed[0], MalformedCall)
    assert "keyword" in turn.malformed[0].reason


def test_python_call_arguments_must_be_json_literals():
    for literal in ["{1}", 'b"x"', "1j", "{1: 2}", "...", "frozenset()"]:
        turn = parse_action(f"get_fare(flight_id={literal})", frozenset({"get_fare"}))
        assert not turn.calls and turn.malformed, literal
        assert "JSON" in turn.malformed[0].reason or "literal" in turn.malformed[0].reason
    assert parse_action('f(x=(1, "a"), y={"k": (2,)})').calls[0].arguments == {"x": [1, "a"], "y": {"k": [2]}}


python_literals = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=5),
        st.binary(max_size=3),
        st.complex_numbers(max_magnitude=10, allow_nan=False),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.frozensets(st.integers(), max_size=2),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), inner, max_size=2),
    ),
    max_leaves=6,
)


@given(python_literals)
def test_python_call_arguments_that_parse_are_json(value):
    turn = parse_action(f"lookup(x={value!r})", frozenset({"lookup"}))
    for call in turn.calls:
        json.dumps(call.arguments)  # what the env sends to the tool and echoes in the chat


@given(names, st.dictionaries(names, json_values, max_size=4))
def test_format_hermes_round_trips(name, args):
    turn = parse_action(format_hermes([(name, args)]))
    assert [(c.name, c.arguments) for c in turn.calls] == [(name, json.loads(json.dumps(args)))]


@given(st.one_of(st.text(), st.dictionaries(st.text(max_size=10), json_values), json_values, st.binary()))
def test_parse_action_never_raises(action):
    turn = parse_action(action)
    assert isinstance(turn.content, str)
    for c in turn.calls:
        assert isinstance(c.name, str) and isinstance(c.arguments, dict)


@given(st.text(alphabet=st.sampled_from(list('<tool_call>/{}":,name arguments[]()=')), max_size=80))
def test_tag_soup_never_raises(text):
    parse_action(text)


def _turn(t):
    return t.content, [(c.name, c.arguments, c.id) for c in t.calls], [(m.text, m.reason, m.id) for m in t.malformed]


_BODIES = [  # call bodies, well formed or not
    '{"name": "f", "arguments": {"x": 1}}',
    '{"name": "f", "arguments": {}}',
    '{"name": "f", "parameters": {}}',
    '{"name": "", "arguments": {}}',
    '{"name": "f", "arguments": "{}"}',
    "[1]",
    "{",
    "\ufeff{}",
]
_PIECES = st.lists(
    st.sampled_from(["<tool_call>", "</tool_call>", "\n", " ", "x", "<|im_end|>", *_BODIES]) | st.text(max_size=5),
    max_size=4,
)


@given(_PIECES, st.sampled_from(_BODIES), _PIECES)
def test_one_block_fast_path_reads_a_turn_as_the_full_parser_does(before, body, after):
    a, b = "".join(before), "".join(after)
    for text in (a + body + b, f"<tool_call>{a}{body}{b}</tool_call>", f"<tool_call>\n{body}\n</tool_call>{b}"):
        fast = calls._one_json_call(text, "call_1_")
        if fast is not None:  # a turn it takes must read as the block-by-block parse reads it
            full = calls._parse_hermes(text, "call_1_")
            assert _turn(fast) == _turn(full) and len(fast.calls) == 1
            assert fast.raw == full.raw == text


def test_one_block_fast_path_takes_the_usual_turn():
    assert calls._one_json_call(format_hermes([("f", {"x": 1})]), "call_1_") is not None


# The XML forms of Qwen3.5 and GLM-4.5 write strings raw and other values as JSON, as their templates do; the
# schema types each value back (a string "12" stays a string, an integer 12 becomes 12 again).
xml_values = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)), max_size=8).filter(
        lambda s: s == s.strip() and s.strip("\n") == s
    ),
    st.integers(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
)


def _xml_render(v):
    return v if isinstance(v, str) else json.dumps(v)


def _schema(args):
    types = {str: "string", int: "integer", bool: "boolean", list: "array"}
    return {"parameters": {"properties": {k: {"type": types[type(v)]} for k, v in args.items()}}}


@given(names, st.dictionaries(names, xml_values, max_size=4))
def test_qwen3_5_and_glm_call_forms_round_trip(name, args):
    params = "".join(f"<parameter={k}>\n{_xml_render(v)}\n</parameter>\n" for k, v in args.items())
    qwen = f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"
    pairs = "".join(f"<arg_key>{k}</arg_key>\n<arg_value>{_xml_render(v)}</arg_value>\n" for k, v in args.items())
    glm = f"<tool_call>{name}\n{pairs}</tool_call>"
    for text in (qwen, glm):
        turn = parse_action(text, None, "c", {name: _schema(args)})
        assert [(c.name, c.arguments) for c in turn.calls] == [(name, args)], text
        assert not turn.malformed


@given(names, st.dictionaries(names, json_values, max_size=3), st.dictionaries(names, json_values, max_size=3))
def test_llama_and_gpt_oss_call_forms_round_trip(name, a, b):
    llama = json.dumps({"name": name, "parameters": a}) + "<|eot_id|>"
    assert [(c.name, c.arguments) for c in parse_action(llama).calls] == [(name, json.loads(json.dumps(a)))]
    oss = "".join(
        f"<|start|>assistant to=functions.{name}<|channel|>commentary json<|message|>{json.dumps(x)}<|call|>"
        for x in (a, b)
    )
    got = [(c.name, c.arguments) for c in parse_action(oss).calls]
    assert got == [(name, json.loads(json.dumps(a))), (name, json.loads(json.dumps(b)))]


def test_call_forms_that_cannot_be_read_are_malformed_feedback():
    for text in (
        "<tool_call><function=f><parameter=x>1</tool_call>",
        "<tool_call>f<arg_key>x</arg_key></tool_call>",
        "to=functions.f<|channel|>commentary json<|message|>{not json<|call|>",
    ):
        turn = parse_action(text)
        assert not turn.calls and len(turn.malformed) == 1 and turn.malformed[0].reason, text
