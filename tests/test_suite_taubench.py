"""τ-bench-format domains: load checks, pass^1 scoring, simulated users, isolation, vector envs, a real user model.

The fixture domain (``tests/data/taubench_retail``) is a small retail store in τ-bench's layout: three tables,
six tools (two of them writes on ``data``), a wiki and five tasks with gold actions and outputs.
"""

import asyncio
import copy
import json
import pickle
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import toolgym
from toolgym import PackError, registry
from toolgym.calls import format_hermes
from toolgym.suites import taubench as tb
from toolgym.suites.taubench import STOP_TOKEN, ModelUser, ScriptedUser

DOMAIN = Path(__file__).parent / "data" / "taubench_retail"
TASK_IDS = ["cancel-lamp", "lamp-price", "move-kettle", "cancel-and-count", "delivered-status"]


@pytest.fixture(scope="module")
def env_id():
    """The fixture domain, registered for this module only (so no other test sees a stray id)."""
    eid = tb.register(DOMAIN, name="RetailFixture")
    yield eid
    del gym.registry[eid]


def call(name, **arguments):
    return format_hermes([(name, arguments)])


def play(env, turns, index, seed=0):
    """Reset to task ``index`` and step ``turns`` until the episode ends; returns (rewards, last info, obs)."""
    obs, _ = env.reset(seed=seed, options={"index": index})
    rewards = []
    for turn in turns:
        obs, reward, terminated, truncated, info = env.step(turn)
        rewards.append(reward)
        if terminated or truncated:
            return rewards, info, obs, terminated
    raise AssertionError("the episode did not end")


def play_gold(env, index, seed=0):
    obs, _ = env.reset(seed=seed, options={"index": index})
    rewards = []
    while True:
        obs, reward, terminated, truncated, info = env.step(env.unwrapped.gold_actions()[0])
        rewards.append(reward)
        if terminated or truncated:
            return rewards, info, obs, terminated


# -- loading ---------------------------------------------------------------------------------------------------------
def test_domain_loads_with_gold_end_states():
    domain = tb.load_domain(DOMAIN)
    assert [t.id for t in domain.tasks] == TASK_IDS
    assert sorted(domain.world) == ["orders", "products", "users"]
    assert len(domain.tools) == 6 and domain.wiki.startswith("# Retail agent policy")
    cancel = domain.task("cancel-lamp")
    assert set(cancel.gold.entries) == {"orders"} and set(cancel.gold.entries["orders"]) == {"#W0001"}
    assert cancel.gold.entries["orders"]["#W0001"]["status"] == "cancelled"
    assert domain.world["orders"]["#W0001"]["status"] == "pending"  # the gold run played a copy
    read_only = domain.task("lamp-price")
    assert not read_only.gold.entries and not read_only.gold.whole
    # τ-bench's own name for the arguments ("kwargs") reads as "arguments"
    assert domain.task("cancel-and-count").actions[2] == {
        "name": "cancel_pending_order",
        "arguments": {"order_id": "#W0004", "reason": "ordered by mistake"},
    }


def test_gold_world_compares_tables_entries_and_keys():
    initial = {"orders": {"a": {"s": 1}, "b": {"s": 2}}, "log": [1], "users": {"u": 1}}
    final = {"orders": {"a": {"s": 9}, "c": {"s": 3}}, "log": [1, 2], "notes": {}}
    gold = tb.GoldWorld.between(initial, final)
    assert gold.differing(copy.deepcopy(final), initial) == []
    assert gold.differing(initial, initial) == ["log", "notes", "orders", "users"]
    assert gold.differing({**final, "orders": {"a": {"s": 9}, "c": {"s": 3}, "b": {"s": 2}}}, initial) == ["orders"]
    assert gold.differing({**final, "orders": {"a": {"s": 9}}}, initial) == ["orders"]
    assert gold.differing({**final, "orders": {"a": {"s": 9}, "c": {"s": 4}}}, initial) == ["orders"]
    assert gold.differing({**final, "orders": [1]}, initial) == ["orders"]
    assert gold.differing({**final, "users": {"u": 1}}, initial) == ["users"]


def _copy_domain(tmp_path):
    root = tmp_path / "retail"
    shutil.copytree(DOMAIN, root)
    return root


def _tasks(root):
    return [json.loads(line) for line in (root / "tasks.jsonl").read_text().splitlines()]


def _write_tasks(root, tasks):
    (root / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))


def _edit_task(index, edit):
    def apply(root):
        tasks = _tasks(root)
        edit(tasks[index])
        _write_tasks(root, tasks)

    return apply


def _edit_json(name, edit):
    def apply(root):
        path = root / name
        value = json.loads(path.read_text())
        edit(value)
        path.write_text(json.dumps(value))

    return apply


def _set(obj, *path_and_value):
    *path, key, value = path_and_value
    for p in path:
        obj = obj[p]
    obj[key] = value


BROKEN = {
    "unknown tool in actions": (
        _edit_task(0, lambda t: _set(t, "actions", 1, "name", "refund_everything")),
        "tasks.jsonl:1",
        "actions[1].name",
        "'cancel-lamp': unknown tool 'refund_everything'",
    ),
    "arguments fail the schema": (
        _edit_task(0, lambda t: _set(t, "actions", 2, "arguments", "reason", "too expensive")),
        "tasks.jsonl:1",
        "actions[2].arguments",
        "'cancel-lamp': schema violation for 'cancel_pending_order'",
    ),
    "missing argument": (
        _edit_task(2, lambda t: t["actions"][1]["arguments"].pop("zip")),
        "tasks.jsonl:3",
        "actions[1].arguments",
        "missing args",
    ),
    "gold action returns an error": (
        _edit_task(3, lambda t: _set(t, "actions", 2, "kwargs", "order_id", "#W0005")),
        "tasks.jsonl:4",
        "actions[2]",
        "'cancel-and-count': gold action 'cancel_pending_order' returned an error: Error: non-pending order",
    ),
    "gold action raises": (
        lambda root: _edit_json(
            "codes.json",
            lambda c: _set(c, "get_product_details", "def get_product_details(data, product_id):\n    return 1 / 0\n"),
        )(root),
        "tasks.jsonl:2",
        "actions[2]",
        "'lamp-price': gold action 'get_product_details' failed: Error: ZeroDivisionError",
    ),
    "unknown task field": (
        _edit_task(1, lambda t: _set(t, "output", t.pop("outputs"))),
        "tasks.jsonl:2",
        "output",
        "'lamp-price': unknown field",
    ),
    "missing instruction": (
        _edit_task(4, lambda t: t.pop("instruction")),
        "tasks.jsonl:5",
        "instruction",
        "'delivered-status': missing",
    ),
    "output with a comma": (
        _edit_task(1, lambda t: _set(t, "outputs", ["1,054.04"])),
        "tasks.jsonl:2",
        "outputs[0]",
        "holds a comma",
    ),
    "duplicate task id": (
        _edit_task(1, lambda t: _set(t, "id", "cancel-lamp")),
        "tasks.jsonl:2",
        "id",
        "the id of an earlier record",
    ),
    "task line not JSON": (
        lambda root: (root / "tasks.jsonl").write_text((root / "tasks.jsonl").read_text() + "{oops\n"),
        "tasks.jsonl:6",
        "<json>",
        "not valid JSON",
    ),
    "tools.json not JSON": (
        lambda root: (root / "tools.json").write_text('[\n  {"type": "function",\n'),
        "tools.json:3",
        "<json>",
        "not valid JSON",
    ),
    "schema without a name": (
        _edit_json("tools.json", lambda t: t[3]["function"].pop("name")),
        "tools.json",
        "tools[3].function.name",
        "missing",
    ),
    "code missing for a tool": (
        _edit_json("codes.json", lambda c: c.pop("get_user_details")),
        "codes.json",
        "get_user_details",
        "has no source for it",
    ),
    "code the sandbox refuses": (
        _edit_json(
            "codes.json",
            lambda c: _set(
                c, "get_user_details", "import os\ndef get_user_details(data, user_id):\n    return os.getcwd()\n"
            ),
        ),
        "codes.json",
        "get_user_details",
        "os",
    ),
    "no data tables": (
        lambda root: shutil.rmtree(root / "data"),
        "data",
        "<dir>",
        "not found",
    ),
    "table not JSON": (
        lambda root: (root / "data" / "users.json").write_text("{\n\n  nope"),
        "users.json:3",
        "<json>",
        "not valid JSON",
    ),
    "no wiki": (
        lambda root: (root / "wiki.md").unlink(),
        "wiki.md",
        "<file>",
        "not found",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_domain_fails_at_load_naming_file_record_and_field(tmp_path, case):
    breaks, where, field, problem = BROKEN[case]
    root = _copy_domain(tmp_path)
    breaks(root)
    with pytest.raises(PackError) as err:
        tb.load_domain(root)
    assert err.value.where.endswith(where) or where in err.value.where, err.value
    assert err.value.field == field, err.value
    assert problem in err.value.problem, err.value
    with pytest.raises(PackError):  # register checks the domain too, before any id exists
        tb.register(root, name="Broken")
    assert "ToolGym/TauBench-Broken-v0" not in gym.registry


def test_tasks_may_come_from_another_file_as_a_json_list(tmp_path):
    root = _copy_domain(tmp_path)
    tasks = _tasks(root)
    (root / "tasks.jsonl").unlink()
    other = tmp_path / "test_tasks.json"
    other.write_text(json.dumps(tasks[:2]))
    domain = tb.load_domain(root, tasks=other)
    assert [t.id for t in domain.tasks] == TASK_IDS[:2]
    with pytest.raises(PackError) as err:
        tb.load_domain(root)
    assert err.value.field == "<file>" and "tasks.jsonl" in err.value.where


def test_register_names_the_id_and_registers_a_manifest_like_any_env(env_id):
    assert env_id == "ToolGym/TauBench-RetailFixture-v0"
    assert env_id in toolgym.registered_ids()
    manifest = registry.manifest_for(env_id)
    assert manifest["type"] == "taubench" and manifest["entry"] == "toolgym.suites.taubench:make_env"
    spec = gym.spec(env_id)
    assert spec.entry_point == "toolgym.registry:make_env"
    assert spec.vector_entry_point == "toolgym.vector:make_vector_env"
    # no knobs; the env kwargs it takes are its own options, read from the manifest
    assert not registry.takes_knobs(env_id)
    assert {"user", "user_client", "max_turns", "reward"} <= registry.env_options(env_id)
    assert "system_prompt" not in registry.env_options(env_id) and "kind" not in registry.env_options(env_id)
    assert registry.kwargs_for(env_id, {"kind": "multi_hop", "user": "scripted"}) == {"user": "scripted"}
    with pytest.raises(TypeError, match="did you mean user"):
        gym.make(env_id, usr="scripted")
    with pytest.raises(TypeError, match="unknown option"):
        gym.make(env_id, kind="multi_hop")
    with pytest.raises(ValueError, match="name"):
        tb.register(DOMAIN, name="bad name")
    other = tb.register(DOMAIN, name="RetailGone")
    assert other in toolgym.registered_ids()
    del gym.registry[other]
    assert other not in toolgym.registered_ids()


def test_user_specs_travel_as_env_kwargs(env_id):
    scripted = gym.make(env_id, user={"kind": "scripted", "replies": ["More?"], "opening": "Hello."}).unwrapped
    assert isinstance(scripted.user, ScriptedUser) and scripted.user.replies == ["More?"]
    assert isinstance(gym.make(env_id, user="scripted").unwrapped.user, ScriptedUser)
    client = FakeClient(["Hi."])
    model = gym.make(env_id, user={"kind": "model", "model": "m", "max_tokens": 32}, user_client=client).unwrapped
    assert isinstance(model.user, ModelUser) and model.user.client is client and model.user.max_tokens == 32
    for bad, match in (
        ({"kind": "oracle"}, "kind"),
        ({"kind": "model"}, "model"),
        ({"kind": "model", "model": "m", "temprature": 1}, "temprature"),
        ({"kind": "model", "model": "m"}, "client"),  # neither user_client nor base_url
    ):
        with pytest.raises(ValueError, match=match):
            gym.make(env_id, user=bad)


# -- scoring ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("index", range(len(TASK_IDS)))
def test_gold_actions_and_a_scripted_user_pass(env_id, index):
    env = gym.make(env_id, user=ScriptedUser())
    rewards, info, obs, terminated = play_gold(env, index)
    task = env.unwrapped.task
    assert terminated and info["pass"] == 1.0 and info["world_diff"] == [] and info["missing_outputs"] == []
    assert rewards == [0.0] * len(task.actions) + [1.0]  # sparse: pass on the last step
    comp = info["reward_components"]
    assert set(comp) == set(tb.COMPONENT_KEYS) and comp["pass"] == comp["world_ok"] == comp["outputs_ok"] == 1.0
    assert info["episode"]["pass"] == 1.0 and info["episode"]["return"] == 1.0
    assert info["episode"]["n_calls"] == len(task.actions)
    messages = obs["messages"]
    assert messages[0] == {"role": "system", "content": env.unwrapped.domain.wiki}
    assert messages[1] == {"role": "user", "content": task.instruction}
    assert messages[-1] == {"role": "user", "content": STOP_TOKEN}


def test_a_wrong_write_fails(env_id):
    env = gym.make(env_id)
    turns = [
        call("find_user_id_by_email", email="ava.chen@example.com"),
        call("cancel_pending_order", order_id="#W0001", reason="ordered by mistake"),  # gold: "no longer needed"
        "I have cancelled your order.",
    ]
    rewards, info, _, terminated = play(env, turns, 0)
    assert terminated and rewards == [0.0, 0.0, 0.0]
    assert info["pass"] == 0.0 and info["world_diff"] == ["orders"] and info["reward_components"]["world_ok"] == 0.0
    assert info["episode"]["state_ok"] == 0.0
    # a write where the task wants none fails too
    rewards, info, _, _ = play(
        env, [call("cancel_pending_order", order_id="#W0001", reason="no longer needed"), "54.04"], 1
    )
    assert info["pass"] == 0.0 and info["world_diff"] == ["orders"] and info["missing_outputs"] == []


def test_a_missing_output_fails(env_id):
    env = gym.make(env_id)
    gold = env.unwrapped.domain.task("lamp-price").actions
    calls = [call(a["name"], **a["arguments"]) for a in gold]
    _, info, _, _ = play(env, [*calls, "The lamp costs fifty dollars."], 1)
    assert info["pass"] == 0.0 and info["missing_outputs"] == ["54.04"] and info["world_diff"] == []
    assert info["reward_components"]["world_ok"] == 1.0 and info["reward_components"]["outputs_ok"] == 0.0
    # the output is matched case-insensitively, with commas dropped, in any message to the user (as τ-bench)
    user = ScriptedUser(["And its status?"])
    env = gym.make(env_id, user=user)
    gold = env.unwrapped.domain.task("delivered-status").actions
    calls = [call(a["name"], **a["arguments"]) for a in gold]
    rewards, info, _, _ = play(env, [*calls, "Your order was DELI,VERED.", "Anything else?"], 4)
    assert info["pass"] == 1.0 and rewards[-1] == 1.0
    # text beside a tool call is not said to the user
    env = gym.make(env_id)
    said_with_call = format_hermes([(gold[0]["name"], gold[0]["arguments"])], content="It is delivered.")
    _, info, _, _ = play(env, [said_with_call, call(gold[1]["name"], **gold[1]["arguments"]), "Done."], 4)
    assert info["missing_outputs"] == ["delivered"]


def test_the_episode_ends_on_the_users_stop_token(env_id):
    user = ScriptedUser({"lamp-price": ["Which colour is it?", f"Thanks! {STOP_TOKEN}"]})
    env = gym.make(env_id, user=user)
    env.reset(seed=0, options={"index": 1})
    for a in env.unwrapped.task.actions:
        assert env.step(call(a["name"], **a["arguments"]))[1:4] == (0.0, False, False)
    obs, reward, terminated, truncated, info = env.step("It costs 54.04.")
    assert (reward, terminated, truncated) == (0.0, False, False) and "pass" not in info
    assert obs["messages"][-1] == {"role": "user", "content": "Which colour is it?"}
    assert info["new_messages"][-1] == obs["messages"][-1] and info["reward_components"]["to_user"] == 1.0
    obs, reward, terminated, truncated, info = env.step("It is black.")
    assert (reward, terminated, truncated) == (1.0, True, False) and info["pass"] == 1.0
    assert obs["messages"][-1]["content"] == f"Thanks! {STOP_TOKEN}"
    assert info["episode"]["user_turns"] == 2.0
    # a step after the end changes nothing
    obs2, reward, terminated, _, info = env.step("hello?")
    assert (
        reward == 0.0
        and terminated
        and obs2["messages"] == obs["messages"]
        and set(info["reward_components"]) == set(tb.COMPONENT_KEYS)
    )


def test_max_turns_bounds_a_user_who_never_stops(env_id):
    env = gym.make(env_id, user=ScriptedUser(["Go on."] * 100), max_turns=4)
    obs, _ = env.reset(seed=0, options={"index": 2})
    for turn in range(1, 5):
        obs, _reward, terminated, truncated, info = env.step(f"Message {turn}.")
    assert truncated and not terminated and info["pass"] == 0.0 and info["world_diff"] == ["orders"]
    assert sum(m["role"] == "user" for m in obs["messages"]) == 5


def test_tool_errors_and_bad_calls_are_feedback_not_crashes(env_id):
    env = gym.make(env_id)
    env.reset(seed=0, options={"index": 0})
    _, _, _, _, info = env.step(call("get_order_details", order_id="#W9999"))
    assert info["feedback"] == ["Error: order not found"] and info["reward_components"]["n_tool_errors"] == 1.0
    _, _, _, _, info = env.step(call("cancel_pending_order", order_id="#W0001"))
    assert info["reward_components"]["n_missing_args"] == 1.0 and info["reward_components"]["args_valid"] == 0.0
    _, _, terminated, _, info = env.step("<tool_call>{not json</tool_call>")
    assert not terminated and info["reward_components"]["n_bad_json"] == 1.0
    # an OpenAI message dict works as an action, as in every toolgym env
    msg = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {
                    "name": "cancel_pending_order",
                    "arguments": '{"order_id": "#W0001", "reason": "no longer needed"}',
                },
            }
        ],
    }
    _, _, _, _, info = env.step(msg)
    assert info["reward_components"]["n_calls"] == 1.0 and json.loads(info["feedback"][0])["status"] == "cancelled"


# -- isolation, determinism, vector envs -----------------------------------------------------------------------------
def test_a_write_in_one_episode_does_not_leak_into_the_next(env_id):
    env = gym.make(env_id)
    play_gold(env, 0)
    assert env.unwrapped.state["orders"]["#W0001"]["status"] == "cancelled"
    env.reset(seed=1, options={"index": 0})
    _, _, _, _, info = env.step(call("get_order_details", order_id="#W0001"))
    assert json.loads(info["feedback"][0])["status"] == "pending"
    assert env.unwrapped.domain.world["orders"]["#W0001"]["status"] == "pending"
    # a second env of the same id shares the loaded domain, never its episodes' worlds
    other = gym.make(env_id)
    assert other.unwrapped.domain is env.unwrapped.domain
    _rewards, info, _, _ = play_gold(other, 0)
    assert info["pass"] == 1.0


def test_same_seed_same_trajectory(env_id):
    def run(seed):
        env = gym.make(env_id, user=ScriptedUser(["Is that all?"]))
        obs, info = env.reset(seed=seed)
        trajectory = [info["task_id"]]
        while True:
            obs, reward, terminated, truncated, _ = env.step(env.unwrapped.gold_actions()[0])
            trajectory.append(reward)
            if terminated or truncated:
                return trajectory, obs["messages"]

    assert run(3) == run(3)
    assert len({run(seed)[0][0] for seed in range(12)}) > 1  # reset(seed) draws among the tasks


def test_prefix_restore_pickle_and_deepcopy(env_id):
    env = gym.make(env_id, user=ScriptedUser(["More?"]))
    env.reset(seed=0, options={"index": 3})
    prefix = []
    for _ in range(3):
        prefix.append(env.unwrapped.gold_actions()[0])
        env.step(prefix[-1])
    restored = gym.make(env_id, user=ScriptedUser(["More?"]))
    obs, _ = restored.reset(seed=0, options={"index": 3, "prefix": prefix})
    assert obs["messages"] == env.unwrapped._messages
    for clone in (pickle.loads(pickle.dumps(env.unwrapped)), copy.deepcopy(env.unwrapped)):
        _, reward, terminated, _, info = clone.step(clone.gold_actions()[0])
        assert not terminated and clone._messages[-1]["content"] == "More?"
        _, reward, terminated, _, info = clone.step("That is all.")
        assert terminated and reward == 1.0 and info["pass"] == 1.0


def test_make_vec_plays_every_env(env_id):
    envs = gym.make_vec(env_id, num_envs=3, user=ScriptedUser())
    assert isinstance(envs, toolgym.ToolVectorEnv)
    envs.reset(seed=0)
    done = np.zeros(3, dtype=bool)
    passes = np.full(3, np.nan)
    for _ in range(10):
        actions = [sub.gold_actions()[0] for sub in envs.envs]
        _obs, rewards, terminated, truncated, infos = envs.step(actions)
        ended = (terminated | truncated) & ~done
        if "pass" in infos:
            passes[infos["_pass"]] = infos["pass"][infos["_pass"]]
        assert np.all(rewards[ended] == 1.0) and np.all(rewards[~ended & ~done] == 0.0)
        done |= ended
        if done.all():
            break
    assert done.all() and np.all(passes == 1.0)
    envs.close()


def test_gymnasium_env_checker(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id, render_mode="ansi")
        check_env(env.unwrapped)
        env.reset(seed=0)
        env.step("a message to the user")
        assert "user: " in env.unwrapped.render()


def test_reward_must_be_pass_or_callable(env_id):
    with pytest.raises(ValueError, match="reward"):
        gym.make(env_id, reward="ftrl")
    env = gym.make(env_id, reward=lambda comp, env: comp["n_calls"] + 10 * comp["pass"])
    rewards, *_ = play_gold(env, 2)
    assert rewards == [1.0, 1.0, 10.0]


# -- the model user, with a stand-in client ----------------------------------------------------------------------------
class FakeClient:
    """A ChatClient's face (``await complete(request)``) with canned replies; records every request."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests = []

    async def complete(self, request, on_error=None):
        self.requests.append(request)
        text = self.replies.pop(0) if self.replies else STOP_TOKEN
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=text))])


def test_model_user_sees_the_dialogue_from_the_users_side(env_id):
    client = FakeClient(["Hi, I want to cancel my lamp order.", "ava.chen@example.com", "  ", "unused"])
    user = ModelUser(client, "user-model", seed=7)
    env = gym.make(env_id, user=user)
    obs, _ = env.reset(seed=0, options={"index": 0})
    assert obs["messages"][-1] == {"role": "user", "content": "Hi, I want to cancel my lamp order."}
    first = client.requests[0]
    assert first["model"] == "user-model" and first["temperature"] == 0.0 and first["seed"] == 7
    assert (
        first["messages"][0]["role"] == "system" and env.unwrapped.task.instruction in first["messages"][0]["content"]
    )
    assert STOP_TOKEN in first["messages"][0]["content"]
    assert first["messages"][1:] == [{"role": "user", "content": tb.GREETING}]
    env.step("Sure, what is your email?")
    env.step(call("find_user_id_by_email", email="ava.chen@example.com"))
    _, _, terminated, _, info = env.step("Found you. Anything else?")
    assert client.requests[-1]["messages"][1:] == [
        {"role": "user", "content": tb.GREETING},
        {"role": "assistant", "content": "Hi, I want to cancel my lamp order."},
        {"role": "user", "content": "Sure, what is your email?"},
        {"role": "assistant", "content": "ava.chen@example.com"},
        {"role": "user", "content": "Found you. Anything else?"},  # the tool call and its result are not shown
    ]
    # an empty reply is the user leaving
    assert terminated and info["new_messages"][-1]["content"] == STOP_TOKEN and info["pass"] == 0.0


def test_model_user_works_from_inside_a_running_event_loop(env_id):
    """The eval harness steps envs inside its asyncio loop: reply() must not need a loop of its own there."""
    client = FakeClient(["Hello.", STOP_TOKEN])
    env = gym.make(env_id, user=ModelUser(client, "m"))

    async def episode():
        env.reset(seed=0, options={"index": 1})
        return env.step("Hello, how can I help?")

    _, _, terminated, _, _ = asyncio.run(episode())
    assert terminated and len(client.requests) == 2


def test_model_user_built_from_a_url_pickles_without_its_client():
    user = ModelUser("http://127.0.0.1:9/v1", "m", retries=0, timeout=5)
    clone = pickle.loads(pickle.dumps(user))
    assert clone.client is not user.client and clone.client.retries == 0
    with pytest.raises(TypeError, match="shared ChatClient"):
        pickle.dumps(ModelUser(FakeClient([]), "m"))
    with pytest.raises(TypeError):
        ModelUser(FakeClient([]), "m", retries=2)


# -- a real user model -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_gold_agent_with_smollm2_as_the_user(env_id, llm_server):
    """SmolLM2-135M plays the user: weak, so only the episode's shape is asserted, not that it stops on time."""
    user = ModelUser(llm_server.base_url, llm_server.model, max_tokens=48, timeout=120, retries=2)
    max_turns = 6
    env = gym.make(env_id, user=user, max_turns=max_turns)
    try:
        for index in (0, 1):
            rewards, info, obs, terminated = play_gold(env, index)
            assert 1 <= len(rewards) <= max_turns
            assert info["pass"] in (0.0, 1.0) and rewards[-1] == info["pass"]
            assert info["world_diff"] == []  # the gold agent makes its writes whatever the user says
            said = [m["content"] for m in obs["messages"] if m["role"] == "user"]
            assert len(said) >= 2 and all(isinstance(s, str) and s.strip() for s in said)
            assert terminated == (STOP_TOKEN in said[-1])
    finally:
        user.close()
