"""The env contract: registration, observations, the three action forms, feedback for every mistake."""

import copy
import json
import pickle
import subprocess
import sys

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolgym
from toolgym import Scenario, StateCheck, StaticSource, SubTask, ToolEnv
from toolgym.env import COMPONENT_KEYS
from toolgym.scenario import tool_schema

SOURCE = """
def get_weather(city: str, unit: str = 'celsius'):
    t = {'oslo': -3, 'cairo': 31, 'lima': 19}
    if city.lower() not in t:
        return {'error': 'unknown city ' + city}
    return {'city': city, 'temperature': t[city.lower()], 'unit': unit}

def get_country(city: str):
    return {'oslo': 'Norway', 'cairo': 'Egypt', 'lima': 'Peru'}.get(city.lower(), 'Error: city not found')

def get_currency(country: str):
    d = {'norway': 'Norwegian krone', 'egypt': 'Egyptian pound', 'peru': 'Sol'}
    if country.lower() not in d:
        raise ValueError('no currency for ' + country)
    return d[country.lower()]

def spin(n: int):
    while True:
        n += 1

def book(city: str):
    code = 'BK' + str(state['next'])
    state['next'] += 1
    state['bookings'][code] = city
    return {'booking': code}
"""
TOOLS = [
    tool_schema("get_weather", "weather", {"city": {"type": "string"}, "unit": {"type": "string"}}, ["city"]),
    tool_schema("get_country", "country of a city", {"city": {"type": "string"}}, ["city"]),
    tool_schema("get_currency", "currency", {"country": {"type": "string"}}, ["country"]),
    tool_schema("spin", "never returns", {"n": {"type": "integer"}}, ["n"]),
    tool_schema("book", "book a trip", {"city": {"type": "string"}}, ["city"]),
]


def multi_hop_scenario() -> Scenario:
    return Scenario(
        id="lima-currency",
        kind="multi_hop",
        messages=[{"role": "user", "content": "What currency is used in the country where Lima is?"}],
        tools=TOOLS,
        source=dict.fromkeys([t["function"]["name"] for t in TOOLS], SOURCE),
        state={"next": 7, "bookings": {}},
        subtasks=[
            SubTask("s1", "get_country", {"city": "Lima"}, ["Peru"]),
            SubTask("s2", "get_currency", {"country": "Peru"}, ["Sol"], depends_on=["s1"]),
        ],
        answer="Sol",
    )


def write_scenario() -> Scenario:
    sc = multi_hop_scenario()
    sc.id, sc.kind = "book-oslo", "single_hop"
    sc.subtasks = [
        SubTask("s1", "book", {"city": "Oslo"}, ["BK7"], state_checks=[StateCheck(["bookings", "BK7"], "Oslo")])
    ]
    sc.answer = "BK7"
    return sc


@pytest.fixture
def env():
    e = ToolEnv(StaticSource("test", [multi_hop_scenario()]), max_turns=5, tool_step_budget=10_000)
    e.reset(seed=0)
    return e


def call(name, **args):
    return f'<tool_call>{{"name": "{name}", "arguments": {json.dumps(args)}}}</tool_call>'


def test_reset_observation_is_chat_plus_function_schemas(env):
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert obs["messages"][0]["role"] == "system" and obs["messages"][1]["role"] == "user"
    assert obs["tools"] == TOOLS
    assert info["unsolved_set"] == {"get_country": ["Peru"], "get_currency": ["Sol"]}


def test_multi_hop_episode_with_three_action_forms(env):
    _, r1, term, trunc, info = env.step(call("get_country", city="Lima"))
    assert (r1, term, trunc) == (1.0, False, False)
    assert info["reward_components"]["n_solved_now"] == 1
    msg = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "get_currency", "arguments": {"country": "Peru"}}}
        ],
    }
    obs, r2, *_ = env.step(msg)
    assert r2 == 1.0
    assert obs["messages"][-1] == {"role": "tool", "tool_call_id": "x", "name": "get_currency", "content": "Sol"}
    _, r3, term, _, info = env.step("The currency is the Sol.")
    assert term and r3 == 1.0
    assert info["episode"]["solve_f1"] == 1.0 and info["reward_components"]["answer_correct"] == 1.0


def test_python_call_string_action(env):
    _, r, _, _, info = env.step('get_country(city="Lima")')
    assert r == 1.0 and info["feedback"] == ["Peru"]


def test_each_mistake_has_its_own_feedback_and_component(env):
    cases = {
        "n_unknown_tool": (call("get_weathr", city="Oslo"), "unknown tool"),
        "n_missing_args": (call("get_weather"), "missing args"),
        "n_extra_args": (call("get_country", city="Oslo", planet="Earth"), "extra args"),
        "n_wrong_types": (call("get_weather", city=5), "wrong types"),
        "n_tool_errors": (call("get_currency", country="Atlantis"), "ValueError"),
        "n_timeouts": (call("spin", n=1), "timed out"),
        "n_bad_json": ('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', "not valid JSON"),
    }
    texts = set()
    for key, (action, needle) in cases.items():
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(action)
        comp = info["reward_components"]
        assert comp[key] == 1, (key, comp)
        assert not terminated, key
        assert needle in info["feedback"][0], (key, info["feedback"])
        assert sum(comp[k] for k in cases) == 1, (key, comp)
        texts.add(info["feedback"][0])
        assert reward == (-0.3 if key == "n_bad_json" else 0.0)
        _, r_ok, *_ = env.step(call("get_country", city="Lima"))  # the env keeps working
        assert r_ok == 1.0
    assert len(texts) == len(cases)


def test_empty_and_malformed_final_answers():
    e = ToolEnv(StaticSource("t", [multi_hop_scenario()]))
    e.reset(seed=0)
    assert e.step("")[1] == -0.5
    e.reset(seed=0)
    assert e.step("done </tool_call>")[1] == -0.3


def test_max_turns_truncates(env):
    for _ in range(5):
        _, _, term, trunc, info = env.step(call("get_weather", city="Oslo"))
    assert not term and trunc and "episode" in info


def test_write_subtask_is_checked_on_world_state():
    e = ToolEnv(StaticSource("t", [write_scenario()]))
    e.reset(seed=0)
    _, r, _, _, info = e.step(call("book", city="Oslo"))
    assert r == 1.0 and info["reward_components"]["state_ok"] == 1.0
    assert e.state["bookings"] == {"BK7": "Oslo"}
    e.reset(seed=0)
    assert e.state["bookings"] == {}, "each episode starts from a fresh world"
    _, r, _, _, info = e.step(call("book", city="Lima"))  # output holds BK7 but the booking is wrong
    assert r == 0.0 and info["reward_components"]["state_ok"] == 0.0


def test_prefix_restore_continues_from_a_visited_turn(env):
    obs, info = env.reset(seed=0, options={"prefix": [call("get_country", city="Lima")]})
    assert info["unsolved_set"] == {"get_currency": ["Sol"]}
    assert obs["messages"][-1]["content"] == "Peru"
    assert env.gold_plan() == [[{"name": "get_currency", "arguments": {"country": "Peru"}}]]


def test_reward_variants_and_user_callable():
    sc = multi_hop_scenario()
    e = ToolEnv(StaticSource("t", [sc]), reward=lambda comp, env: 10 * comp["n_solved_now"] - comp["n_calls"])
    e.reset(seed=0)
    assert e.step(call("get_country", city="Lima") + call("get_weather", city="Oslo"))[1] == 8
    e = ToolEnv(StaticSource("t", [sc]), reward="episode_f1")
    e.reset(seed=0)
    assert e.step(call("get_country", city="Lima"))[1] == 0.0
    e.step(call("get_currency", country="Peru"))
    assert e.step("Sol")[1] == 1.0
    with pytest.raises(ValueError, match="unknown reward"):
        ToolEnv(StaticSource("t", [sc]), reward="nope")


def test_render_ansi():
    e = ToolEnv(StaticSource("t", [multi_hop_scenario()]), render_mode="ansi")
    e.reset(seed=0)
    e.step(call("get_country", city="Lima"))
    text = e.render()
    assert "user: What currency" in text and "get_country" in text and "tool [get_country]: Peru" in text


def test_pickle_and_deepcopy_mid_episode(env):
    env.step(call("get_country", city="Lima"))
    for clone in (pickle.loads(pickle.dumps(env)), copy.deepcopy(env)):
        _, r, *_ = clone.step(call("get_currency", country="Peru"))
        assert r == 1.0
    assert env.tracker.n_unsolved == 1


actions = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda n, a: f'<tool_call>{{"name": {json.dumps(n)}, "arguments": {json.dumps(a)}}}</tool_call>',
        st.sampled_from(["get_weather", "get_country", "get_currency", "book", "nope", ""]),
        st.dictionaries(
            st.sampled_from(["city", "country", "unit", "n", "x"]),
            st.one_of(st.text(max_size=10), st.integers(), st.none()),
        ),
    ),
    st.dictionaries(
        st.sampled_from(["role", "content", "tool_calls", "x"]),
        st.one_of(
            st.text(max_size=20),
            st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=5)), max_size=2),
            st.none(),
        ),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(actions, min_size=1, max_size=4))
def test_any_action_never_crashes_and_reward_stays_in_range(env, turns):
    env.reset(seed=0)
    for action in turns:
        obs, reward, terminated, truncated, info = env.step(action)
        assert -0.5 <= reward < 2.0
        assert set(info["reward_components"]) == set(COMPONENT_KEYS)
        assert env.observation_space.contains(obs)
        if info["reward_components"]["n_calls"] or info["reward_components"]["n_bad_json"]:
            assert info["feedback"] and all(isinstance(f, str) and f for f in info["feedback"])
        if terminated or truncated:
            break


def test_ftrl_format_records_load_as_a_registered_static_pack():
    assert "ToolGym/FTRLSample-v0" in toolgym.registered_ids()
    env = gym.make("ToolGym/FTRLSample-v0")
    _, info = env.reset(seed=0, options={"index": 2})
    assert info["unsolved_set"] == {"get_country": ["Peru"], "get_currency": ["Sol"]}
    assert env.step(call("get_country", city="Lima"))[1] == 1.0


def test_make_with_module_prefix_without_importing_toolgym_first():
    code = (
        "import sys, gymnasium as gym\n"
        "assert 'toolgym' not in sys.modules\n"
        "env = gym.make('toolgym:ToolGym/FTRLSample-v0')\n"
        "obs, info = env.reset(seed=3)\n"
        "print(info['scenario_id'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("ftrl-")


def test_step_reports_the_messages_it_appended():
    import gymnasium as gym

    env = gym.make("ToolGym/FlightBooking-v0")
    obs, _ = env.reset(seed=3)
    n = len(obs["messages"])
    for action in env.unwrapped.gold_actions():
        obs, _, terminated, truncated, info = env.step(action)
        assert info["new_messages"] == obs["messages"][n:]
        assert info["new_messages"][0]["role"] == "assistant"
        n = len(obs["messages"])
        if terminated or truncated:
            break
    _, _, _, _, info = env.step("again")
    assert info["new_messages"] == []


def test_a_bare_number_is_a_final_answer_in_the_action_space():
    """Trainers' action parsers may hand over "154" as an int: it is in the space and steps as its text."""
    import gymnasium as gym
    import numpy as np

    env = gym.make("ToolGym/FlightBooking-v0")
    for x in (154, 3.5, np.int64(7)):
        assert env.action_space.contains(x)
    assert not env.action_space.contains(True) and not env.action_space.contains([1])
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(154)
    assert terminated and info["new_messages"][0]["content"] == "154"
    env.reset(seed=0)
    assert env.step("154")[1] == reward


def test_an_action_of_another_type_is_malformed_feedback_not_an_answer():
    import gymnasium as gym

    env = gym.make("ToolGym/FlightBooking-v0")
    env.reset(seed=0)
    for bad in (None, ["x"], True, object(), {}, {"flight_id": "FL1"}):
        _, _, terminated, truncated, info = env.step(bad)
        assert not terminated and not truncated
        assert info["reward_components"]["n_bad_json"] == 1
        assert "an action is text" in info["feedback"][0] or "an action dict is" in info["feedback"][0]
    gold = env.unwrapped.gold_actions()
    env.reset(seed=0)
    for action in gold:
        _, _, terminated, _, _ = env.step(action)
    assert terminated and env.unwrapped.episode_metrics()["solve_f1"] == 1.0  # the env kept working


def test_the_gold_plans_call_dicts_are_actions():
    import gymnasium as gym

    env = gym.make("ToolGym/FlightBooking-v0")
    env.reset(seed=0)
    rewards = []
    while plan := env.unwrapped.gold_plan():
        turn = plan[0]
        action = turn[0] if len(turn) == 1 else {"role": "assistant", "tool_calls": turn}
        rewards.append(env.step(action)[1])
    reference = gym.make("ToolGym/FlightBooking-v0")
    reference.reset(seed=0)
    assert rewards == [reference.step(a)[1] for a in reference.unwrapped.gold_actions()[:-1]]


def test_a_tools_own_error_result_counts_as_a_tool_error():
    import gymnasium as gym

    env = gym.make("ToolGym/FlightBooking-v0")
    env.reset(seed=1)
    assert "get_booking" in env.unwrapped._tool_names
    bad = '<tool_call>{"name": "get_booking", "arguments": {"booking_id": "BK0000"}}</tool_call>'
    _, _, _, _, info = env.step(bad)
    assert info["feedback"][0].startswith('{"error"') and info["reward_components"]["n_tool_errors"] == 1
    gold = env.unwrapped.gold_actions()[0]
    _, _, _, _, info = env.step(gold)
    assert info["reward_components"]["n_tool_errors"] == 0


def test_one_toolbox_per_tool_source_across_episodes_offering_different_subsets():
    """FlightBooking's scenarios offer different subsets of one tool module: the module is exec'd once per env,
    not again for each new subset (a rebuilt Toolbox also leaves a reference cycle behind for the collector)."""
    env = gym.make("ToolGym/FlightBooking-v0").unwrapped
    subsets, boxes = set(), set()
    for seed in range(20):
        env.reset(seed=seed)
        subsets.add(frozenset(env.scenario.source))
        boxes.update(id(b) for b in env._boxes.values())
    assert len(subsets) > 1 and len(boxes) == 1


def test_every_function_toolbox_offers_public_module_functions_only():
    from toolgym.sandbox import Toolbox

    src = "from json import dumps\n\ndef _helper(x):\n    return x\n\ndef a():\n    return 1\n\n"
    src += "def b():\n    return _helper(2)\n"
    box = Toolbox({"a": src}, every_function=True)
    assert set(box.names) == {"a", "b"}  # not the private helper, not the imported function
    assert box.call("b", {}).output == "2"
    assert set(Toolbox({"a": src}).names) == {"a"}


_SURROGATE_TEXT = st.text(alphabet=st.one_of(st.characters(categories=["Cs"]), st.characters(max_codepoint=0x7F)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_SURROGATE_TEXT, where=st.sampled_from(["argument", "name", "id", "content", "json"]))
def test_lone_surrogates_never_reach_the_transcript(value, where):
    """A JSON escape like "\\ud800" decodes to a str no UTF-8 text can hold: the step must neither raise nor put it
    in the chat (an export, a server reply and a tokenizer would all fail on it)."""
    env = gym.make("ToolGym/FlightBooking-v0")
    env.reset(seed=0)
    call = env.unwrapped.gold_plan()[0][0]
    name, args = call["name"], dict(call["arguments"])
    key = next(iter(args))
    if where == "argument":
        args[key] = value
    action: object = {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": name, "arguments": args}}]}
    if where == "name":
        action = {"name": name + value, "arguments": args}
    elif where == "id":
        action = {"role": "assistant", "tool_calls": [{"id": "c" + value, "function": call}]}
    elif where == "content":
        action = {"role": "assistant", "content": "The answer is " + value}
    elif where == "json":  # the escape spelled out in the completion text, as a model writes it
        escaped = json.dumps(value)  # ASCII: lone surrogates become \\udXXX escapes
        action = f'<tool_call>{{"name": "{name}", "arguments": {{"{key}": {escaped}}}}}</tool_call>'
    obs, _, _, _, info = env.step(action)
    json.dumps(obs["messages"], ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    json.dumps(info, ensure_ascii=False, default=str).encode("utf-8")
    decoded = json.loads(json.dumps(value)) if where == "json" else value  # JSON joins an escaped pair into one
    has_lone = any(0xD800 <= ord(c) <= 0xDFFF for c in decoded)
    if has_lone and where in ("argument", "name", "json"):
        assert info["reward_components"]["n_bad_json"] == 1 and "lone surrogate" in info["feedback"][-1]
        assert info["reward_components"]["n_calls"] == 0.0


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (5, TypeError, "reset options must be a dict"),
        ({"prefix": "get_card"}, TypeError, r"options\['prefix'\] must be a list of actions"),
        ({"scenario": 5}, TypeError, r"options\['scenario'\] must be a Scenario or its dict"),
        ({"scenario": {"id": "x"}}, ValueError, r"options\['scenario'\]: field 'kind'"),
    ],
)
def test_bad_reset_options_are_clear_errors(options, error, match):
    """A string prefix used to replay its characters as turns, silently; a scenario dict failed deep inside."""
    env = gym.make("ToolGym/Banking-v0")
    with pytest.raises(error, match=match):
        env.reset(seed=0, options=options)
    obs, _ = env.reset(seed=0)  # the env still works
    assert obs["messages"]


@pytest.mark.parametrize("index", [-1, 400, 1.5, "3", True])
def test_a_static_pack_index_must_be_an_integer_in_range(index):
    env = gym.make("ToolGym/BFCL-simple-v0")
    n = len(env.unwrapped.source)
    with pytest.raises(IndexError, match=rf"must be an integer in 0\.\.{n - 1}"):
        env.reset(seed=0, options={"index": n if index == 400 else index})
    import numpy as np

    assert env.reset(seed=0, options={"index": np.int64(n - 1)})[1]["scenario_id"]
