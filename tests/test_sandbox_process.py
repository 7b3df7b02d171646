"""isolation="process": C-level runaways are killed, the env keeps working, both modes play identically."""

from __future__ import annotations

import copy
import gc
import json
import os
import pickle
import time

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolgym  # noqa: F401  (registers the ids)
from toolgym import Scenario, StaticSource, SubTask, ToolEnv
from toolgym.sandbox import Toolbox
from toolgym.sandbox.process import ProcessSandbox
from toolgym.scenario import tool_schema
from toolgym.vector import make_async

FLIGHT = "ToolGym/FlightBooking-v0"
SOURCE = """
def compare(depth: int):
    # two exponentially aliased lists: == walks 2**depth pairs inside one C call
    a = [0]
    b = [0]
    for i in range(depth):
        a = [a, a]
        b = [b, b]
    return a == b

def book_then_compare(city: str, depth: int):
    code = 'BK' + str(state['next'])
    state['next'] += 1
    state['bookings'][code] = city
    return compare(depth)

def book_then_spin(city: str):
    state['bookings']['SPIN'] = city
    while True:
        pass

def deep_hash(depth: int):
    t = ()
    for i in range(depth):
        t = (t,)
    return hash(t)

def book(city: str):
    code = 'BK' + str(state['next'])
    state['next'] += 1
    state['bookings'][code] = city
    return {'booking': code}

def cancel(code: str):
    if code not in state['bookings']:
        return {'error': 'no booking ' + code}
    return {'cancelled': state['bookings'].pop(code)}

def count():
    return len(state['bookings'])
"""
_STR, _INT = {"type": "string"}, {"type": "integer"}
TOOLS = [
    tool_schema("compare", "compare", {"depth": _INT}, ["depth"]),
    tool_schema("book_then_compare", "book, then compare", {"city": _STR, "depth": _INT}, ["city", "depth"]),
    tool_schema("book_then_spin", "book, then loop", {"city": _STR}, ["city"]),
    tool_schema("deep_hash", "hash a nested tuple", {"depth": _INT}, ["depth"]),
    tool_schema("book", "book a trip", {"city": _STR}, ["city"]),
    tool_schema("cancel", "cancel a booking", {"code": _STR}, ["code"]),
    tool_schema("count", "number of bookings", {}, []),
]
NAMES = [t["function"]["name"] for t in TOOLS]
LIMIT = 0.3  # tool_time_limit of these tests; the worker is killed after LIMIT * 1.25 + 0.1 s


def scenario(source: str = SOURCE) -> Scenario:
    return Scenario(
        id="iso",
        kind="single_hop",
        messages=[{"role": "user", "content": "Book Oslo."}],
        tools=TOOLS,
        source=dict.fromkeys(NAMES, source),
        state={"next": 7, "bookings": {}},
        subtasks=[SubTask("s1", "book", {"city": "Oslo"}, ["BK7"])],
        answer="BK7",
    )


def make(isolation: str, **kwargs) -> ToolEnv:
    kwargs = {"max_turns": 20, "tool_time_limit": LIMIT, **kwargs}
    env = ToolEnv(StaticSource("iso", [scenario()]), isolation=isolation, **kwargs)
    env.reset(seed=0)
    return env


def call(name: str, **args) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {json.dumps(args)}}}</tool_call>'


def gone(pid: int) -> bool:
    """The process no longer exists (neither running nor a zombie)."""
    return not os.path.exists(f"/proc/{pid}")


@pytest.fixture
def env():
    e = make("process")
    yield e
    e.close()


def test_unknown_isolation_is_rejected():
    with pytest.raises(ValueError, match="isolation"):
        ToolEnv(StaticSource("iso", [scenario()]), isolation="thread")


def test_c_level_runaway_is_not_stopped_in_process():
    """The premise: one C call overruns the in-process clock (no tick, no signal check inside ``==``)."""
    box = Toolbox(dict.fromkeys(NAMES, SOURCE), time_limit=0.02)
    t0 = time.perf_counter()
    out = box.call("compare", {"depth": 23})
    assert out.ok and out.output == "True"  # ran to completion: the 0.02 s limit could not interrupt it
    assert time.perf_counter() - t0 > 0.05


def test_runaway_c_call_is_killed_and_reported_as_timeout(env):
    env.step(call("count"))
    pid = env._process.pid
    t0 = time.perf_counter()
    _, reward, term, trunc, info = env.step(call("compare", depth=60))  # ~2**60 comparisons in-process
    elapsed = time.perf_counter() - t0
    assert elapsed < LIMIT * 1.25 + 0.1 + 1.0
    assert info["feedback"] == [f"Error: tool 'compare' timed out (time limit of {LIMIT:g} s exceeded)"]
    assert info["reward_components"]["n_timeouts"] == 1 and info["reward_components"]["n_tool_errors"] == 0
    assert not term and not trunc
    assert gone(pid) and env._process.pid is None and env._process.restarts == 1
    # the next call works, in a fresh worker
    _, reward, *_, info = env.step(call("book", city="Oslo"))
    assert info["feedback"] == ['{"booking": "BK7"}'] and reward == 1.0
    assert env._process.pid not in (None, pid)


def test_timeout_feedback_matches_in_process_timeout():
    """A Python-level runaway is stopped by the worker's own clock, with the same feedback and component."""
    rows = []
    for isolation in ("none", "process"):
        env = make(isolation)
        _, r, *_, info = env.step(call("book_then_spin", city="Rome"))
        rows.append((r, info["feedback"], info["reward_components"], env.state))
        env.close()
    assert rows[0] == rows[1]
    assert rows[0][2]["n_timeouts"] == 1
    assert rows[0][3]["bookings"] == {"SPIN": "Rome"}  # stopped by the sandbox, not killed: mutations kept


def test_killed_call_leaves_state_unchanged(env):
    env.step(call("book", city="Oslo"))
    before = copy.deepcopy(env.state)
    state = env.state
    _, _, _, _, info = env.step(call("book_then_compare", city="Rome", depth=60))
    assert info["reward_components"]["n_timeouts"] == 1
    assert env.state == before and env.state is state  # atomic: the killed call's booking is gone
    _, _, _, _, info = env.step(call("book", city="Paris"))
    assert info["feedback"] == ['{"booking": "BK8"}']
    assert env.state == {"next": 9, "bookings": {"BK7": "Oslo", "BK8": "Paris"}}


def test_crashed_worker_is_reported_and_replaced():
    env = make("process", tool_step_budget=1_000_000, tool_time_limit=5.0)
    env.step(call("count"))
    pid = env._process.pid
    _, _, _, _, info = env.step(call("deep_hash", depth=300_000))  # overflows the C stack: the worker dies
    comp = info["reward_components"]
    if comp["n_tool_errors"] == 0:  # pragma: no cover - an interpreter whose hash() survives this depth
        pytest.skip("hash() of a deep tuple did not crash here")
    assert "crashed the sandbox worker" in info["feedback"][0] and comp["n_timeouts"] == 0
    assert gone(pid)
    _, _, _, _, info = env.step(call("count"))
    assert info["feedback"] == ["0"]
    env.close()


def test_toolbox_created_after_the_fork_is_served():
    env = make("process")
    env.step(call("count"))
    other = scenario(SOURCE + "\ndef extra():\n    return 1\n")  # new source text: a new Toolbox in the parent
    env.reset(options={"scenario": other})
    _, _, _, _, info = env.step(call("book", city="Lima"))
    assert info["feedback"] == ['{"booking": "BK7"}']
    env.close()


def _gold_episode(env, seed: int) -> list:
    obs, info = env.reset(seed=seed)
    rows = [(obs, info)]
    for action in env.unwrapped.gold_actions():
        rows.append(env.step(action))
    rows.append(env.unwrapped.state)
    return rows


@pytest.mark.parametrize("kind", ["single_hop", "parallel_single_hop", "multi_hop", "parallel_multi_hop"])
def test_gold_episodes_identical_in_both_modes(kind):
    plain = gym.make(FLIGHT, kind=kind)
    isolated = gym.make(FLIGHT, kind=kind, isolation="process")
    for seed in range(4):
        a, b = _gold_episode(plain, seed), _gold_episode(isolated, seed)
        assert repr(a) == repr(b)
        assert a[-2][1] > 0  # the final answer scored
    pid = isolated.unwrapped._process.pid
    isolated.close()
    assert pid is not None and gone(pid)


def test_vector_env_with_process_isolation():
    rows = {}
    for isolation in ("none", "process"):
        venv = gym.make_vec(FLIGHT, num_envs=2, isolation=isolation)
        obs, _ = venv.reset(seed=3)
        trace = []
        for _ in range(4):
            actions = [env.gold_actions()[0] for env in venv.unwrapped.envs]
            obs, r, te, tr, info = venv.step(actions)
            trace.append((obs, r.tolist(), te.tolist(), tr.tolist(), info["reward_components"]["f1"].tolist()))
        pids = [e._process.pid for e in venv.unwrapped.envs] if isolation == "process" else []
        venv.close()
        rows[isolation] = trace
    assert repr(rows["none"]) == repr(rows["process"])
    assert len(pids) == 2 and all(p is not None and gone(p) for p in pids)


def test_async_vector_env_with_process_isolation():
    """Gymnasium's AsyncVectorEnv runs each env in a daemonic process, which may still fork a tool worker."""
    rewards = {}
    for isolation in ("none", "process"):
        venv = make_async(FLIGHT, 2, isolation=isolation)
        venv.reset(seed=0)
        firsts = [actions[0] for actions in venv.call("gold_actions")]
        rewards[isolation] = venv.step(firsts)[1].tolist()
        venv.close()
    assert rewards["none"] == rewards["process"] and min(rewards["none"]) > 0


def test_close_and_garbage_collection_reap_the_worker():
    env = make("process")
    env.step(call("count"))
    pid = env._process.pid
    assert not gone(pid)
    env.close()
    assert gone(pid) and env._process.pid is None
    env.close()  # idempotent
    env.reset(seed=0)
    env.step(call("count"))  # works again after close, in a new worker
    pid = env._process.pid
    del env
    gc.collect()
    assert gone(pid)


def test_pickle_and_deepcopy_fork_their_own_worker(env):
    env.step(call("book", city="Oslo"))
    pid = env._process.pid
    for clone in (pickle.loads(pickle.dumps(env)), copy.deepcopy(env)):
        assert clone.state == env.state and clone.state is not env.state
        assert clone._process is not env._process and clone._process.pid is None
        _, _, _, _, info = clone.step(call("book", city="Rome"))
        assert info["feedback"] == ['{"booking": "BK8"}']
        assert clone._process.pid not in (None, pid)
        clone.close()
    assert env.state == {"next": 8, "bookings": {"BK7": "Oslo"}} and env._process.pid == pid


def test_registered_env_pickles_with_a_live_worker():
    env = gym.make(FLIGHT, isolation="process")
    env.reset(seed=5)
    env.step(env.unwrapped.gold_actions()[0])
    for clone in (pickle.loads(pickle.dumps(env)), copy.deepcopy(env)):
        assert clone.unwrapped._messages == env.unwrapped._messages
        clone.step("a final answer")
        clone.close()
    env.close()


_BOX = Toolbox(dict.fromkeys(NAMES, SOURCE), time_limit=LIMIT)
_SANDBOX = ProcessSandbox()
_CALLS = st.one_of(
    st.tuples(st.just("book"), st.fixed_dictionaries({"city": st.sampled_from(["Oslo", "Rome", "Lima"])})),
    st.tuples(st.just("cancel"), st.fixed_dictionaries({"code": st.sampled_from(["BK7", "BK8", "BK9", "X"])})),
    st.tuples(st.just("count"), st.just({})),
    st.tuples(st.just("book"), st.just({"town": "Oslo"})),  # bad arguments
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_CALLS, max_size=8))
def test_same_outcomes_and_states_in_both_modes(calls):
    a = {"next": 7, "bookings": {}}
    b = copy.deepcopy(a)
    for name, args in calls:
        assert _BOX.call(name, args, a) == _SANDBOX.call(_BOX, name, args, b)
        assert a == b and list(a["bookings"]) == list(b["bookings"])
