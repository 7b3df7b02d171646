"""SkyRL-Gym adapter: rows of toolgym's rl export, made into envs by ``skyrl_gym.make`` the way SkyRL's generator
does it (``env_class`` column, the other columns as ``extras``, ``generator.max_turns`` in ``extras``), return per
step and per episode exactly what the in-process toolgym env returns for the same seed, prefix and turns."""

import itertools
import json
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import datasets
import gymnasium as gym
import omegaconf
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skyrl_gym

import toolgym  # noqa: F401
from toolgym.export import RestoreError, export, gold_episode, read_rows, rl_rows
from toolgym.integrations import skyrl

ENVS = {"ToolGym/FlightBooking-v0": range(0, 4), "ToolGym/Banking-v0": range(0, 3)}
UNKNOWN_TOOL = '<tool_call>\n{"name": "no_such_tool", "arguments": {}}\n</tool_call>'
MALFORMED = '<tool_call>\n{"name": "get_booking", "arguments": {\n</tool_call>'


def with_skyrl_columns(row):
    """The two columns main's rl export adds (added here when the export predates them)."""
    row = dict(row)
    row.setdefault("env_class", "toolgym")
    row.setdefault("reward_spec", {"method": "rule", "ground_truth": row["reward_model"]["ground_truth"]})
    return row


@pytest.fixture(scope="module")
def rows():
    out = []
    for env_id, seeds in ENVS.items():
        env = gym.make(env_id, split="train")
        for seed in seeds:
            out += [
                with_skyrl_columns(r) for r in rl_rows(gold_episode(env, seed), env_id, "train", {"split": "train"})
            ]
        env.close()
    return out


def skyrl_sample(row, max_turns=None):
    """(prompt, env_class, extras) as SkyRL's PromptDataset + generator hand them to ``skyrl_gym.make``."""
    row = dict(row)
    prompt, env_class = row.pop("prompt"), row.pop("env_class")
    if max_turns is not None:
        row["max_turns"] = max_turns
    return prompt, env_class, row


def play_skyrl(row, policy, max_turns=None, env_config=None):
    prompt, env_class, extras = skyrl_sample(row, max_turns)
    cfg = omegaconf.DictConfig(env_config or {})
    env = skyrl_gym.make(env_class, env_config=cfg, extras=extras)
    chat, _ = env.init(prompt)
    rewards, outs = [], []
    for i in range(100):
        out = env.step(policy[min(i, len(policy) - 1)])
        rewards.append(out["reward"])
        outs.append(out)
        if out["done"]:
            break
    metrics = env.get_metrics()
    env.close()
    return rewards, outs, chat, metrics


def base_max_turns(env_id, env_kwargs):
    env = gym.make(env_id, **env_kwargs)
    try:
        return env.unwrapped.max_turns
    finally:
        env.close()


def play_in_process(row, policy, max_turns=None):
    """The same turns in a plain toolgym env, its turn limit set to SkyRL's ``max_turns`` turns after the prefix."""
    gt = json.loads(row["reward_spec"]["ground_truth"])
    limit = base_max_turns(gt["env_id"], gt["env_kwargs"])
    if max_turns is not None:
        limit = min(limit, len(gt["prefix"]) + max_turns)
    env = gym.make(gt["env_id"], **gt["env_kwargs"], max_turns=limit)
    env.reset(seed=gt["seed"], options={"prefix": gt["prefix"]})
    rewards = []
    for i in range(100):
        _, reward, terminated, truncated, _ = env.step(policy[min(i, len(policy) - 1)])
        rewards.append(float(reward))
        if terminated or truncated:
            break
    env.close()
    return rewards


def gold_policy(row):
    gt = json.loads(row["reward_spec"]["ground_truth"])
    env = gym.make(gt["env_id"], **gt["env_kwargs"])
    env.reset(seed=gt["seed"], options={"prefix": gt["prefix"]})
    actions = env.unwrapped.gold_actions()
    env.close()
    return actions


def policies(row, rng, other_rows):
    gold = gold_policy(row)
    return {
        "gold": gold,
        "wrong_answer": ["I could not find it."],
        "unknown_tool": [UNKNOWN_TOOL],
        "malformed_then_gold": [MALFORMED, *gold],
        "other_rows_turn_then_gold": [rng.choice(other_rows)["gold_response"], *gold],
        "repeat_then_wrong_answer": [gold[0], gold[0], "no idea"],
    }


def test_registered_in_skyrl_gym_and_made_by_its_make(rows):
    assert "toolgym" in skyrl_gym.registry
    assert skyrl.register() == "toolgym"  # idempotent
    _, env_class, extras = skyrl_sample(rows[0], max_turns=4)
    env = skyrl_gym.make(env_class, env_config=omegaconf.DictConfig({}), extras=extras)
    assert isinstance(env, skyrl_gym.envs.base_text_env.BaseTextEnv) and env.max_turns == 4
    env.close()
    skyrl_gym.register(id="toolgym-other", entry_point="skyrl_gym.envs.gsm8k.env:GSM8kEnv")
    try:
        with pytest.raises(ValueError, match="already registered"):
            skyrl.register("toolgym-other")
    finally:
        skyrl_gym.envs.registration.deregister("toolgym-other")


@pytest.mark.parametrize("max_turns", [None, 2, 5])
def test_episode_return_equals_in_process_env(rows, max_turns):
    """Gold and wrong policies, from every turn's prefix: same rewards, same episode length, same return."""
    rng = random.Random(0)
    negative_steps = 0
    for row in rows:
        returns = {}
        for name, policy in policies(row, rng, rows).items():
            got, outs, _, metrics = play_skyrl(row, policy, max_turns)
            want = play_in_process(row, policy, max_turns)
            assert got == want, (name, row["env_id"], row["seed"], row["turn"])
            assert sum(got) == metrics["return"] and metrics["turns"] == len(got)
            assert all(not o["done"] for o in outs[:-1]) and outs[-1]["done"]
            assert outs[-1]["observations"] == []
            returns[name] = sum(got)
            negative_steps += sum(r < 0 for r in got)
            if name == "gold" and max_turns is None:
                assert got[0] == pytest.approx(row["gold_reward"])
                assert metrics["solve_f1"] == 1.0 and outs[-1]["metadata"]["terminated"]
        # the returns separate gold from wrong play (so the comparisons above are not between constants)
        assert returns["gold"] > max(returns["wrong_answer"], returns["unknown_tool"])
    assert negative_steps > 0  # malformed calls are penalised


def test_truncation_at_skyrl_max_turns(rows):
    row = rows[0]
    rewards, outs, _, metrics = play_skyrl(row, [UNKNOWN_TOOL], max_turns=3)
    assert len(rewards) == 3 and outs[-1]["metadata"]["truncated"] and not outs[-1]["metadata"]["terminated"]
    assert [o["metadata"]["reward_components"]["n_unknown_tool"] for o in outs] == [1.0, 1.0, 1.0]
    assert "unknown tool 'no_such_tool'" in outs[0]["observations"][0]["content"]
    assert metrics["solve_r"] == 0.0


def test_chat_built_by_skyrl_equals_the_next_rows_prompt(rows):
    """SkyRL's chat after a gold turn (init chat + the turn + its observations) is the next turn's row's init chat."""
    for role in ("user", "tool"):
        cfg = {"observation_role": role}
        for row, nxt in itertools.pairwise(rows):
            if (nxt["env_id"], nxt["seed"], nxt["turn"]) != (row["env_id"], row["seed"], row["turn"] + 1):
                continue
            prompt, env_class, extras = skyrl_sample(row, max_turns=10)
            env = skyrl_gym.make(env_class, env_config=omegaconf.DictConfig(cfg), extras=extras)
            chat, _ = env.init(prompt)
            out = env.step(row["gold_response"])
            env.close()
            built = [*chat, {"role": "assistant", "content": row["gold_response"]}, *out["observations"]]
            _, _, chat_next, _ = play_skyrl(nxt, [nxt["gold_response"]], 10, cfg)
            assert built == chat_next
            n_calls = out["metadata"]["reward_components"]["n_calls"]
            assert len(out["observations"]) == (n_calls if role == "tool" else 1)
    system = chat[0]["content"]
    assert chat[0]["role"] == "system" and "<tools>" in system and '"name": "get_account"' in system


def test_rows_loaded_from_parquet_as_skyrl_loads_them(tmp_path):
    """SkyRL reads its dataset with ``datasets`` from parquet: Arrow's struct fillers must not break the restore."""
    res = export("ToolGym/FlightBooking-v0", "rl", 3, tmp_path, seed=20)
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist([with_skyrl_columns(r) for r in read_rows(res.path)]), path)
    ds = datasets.load_dataset("parquet", data_files=str(path), cache_dir=str(tmp_path / "hf"))["train"]
    assert len(ds) == res.rows_total > 3
    for row in ds:
        rewards, outs, _, _ = play_skyrl(row, [row["gold_response"]], max_turns=1)
        assert rewards == [pytest.approx(row["gold_reward"])] and outs[0]["done"]


def test_concurrent_and_interleaved_trajectories_equal_sequential(rows):
    """SkyRL interleaves trajectories on one thread (max_env_workers: 0) or runs them on a thread pool; pooled
    envs are never shared, so every return equals the sequential one."""
    rng = random.Random(1)
    jobs = [(row, p) for row in rows for p in policies(row, rng, rows).values()]
    sequential = [play_skyrl(row, p, 4)[0] for row, p in jobs]
    with ThreadPoolExecutor(max_workers=8) as ex:
        threaded = list(ex.map(lambda job: play_skyrl(job[0], job[1], 4)[0], jobs))
    assert threaded == sequential
    envs = []  # round-robin: one step of every open trajectory at a time, on this thread
    for row, policy in jobs:
        prompt, env_class, extras = skyrl_sample(row, 4)
        env = skyrl_gym.make(env_class, env_config=omegaconf.DictConfig({}), extras=extras)
        env.init(prompt)
        envs.append([env, policy, []])
    while any(not e.done for e, _, _ in envs):
        for env, policy, got in envs:
            if not env.done:
                got.append(env.step(policy[min(len(got), len(policy) - 1)])["reward"])
    assert [got for _, _, got in envs] == sequential
    for env, _, _ in envs:
        env.close()


def test_pool_reuses_closed_envs_with_their_own_turn_limit(rows):
    row = rows[0]
    prompt, env_class, extras = skyrl_sample(row, 2)
    first = skyrl_gym.make(env_class, env_config=None, extras=extras)
    first.init(prompt)
    assert first.env.unwrapped.max_turns == len(json.loads(row["prefix"])) + 2
    first.close()
    first.close()  # idempotent
    second = skyrl_gym.make(env_class, env_config=None, extras={k: v for k, v in extras.items() if k != "max_turns"})
    assert second.env is first.env
    second.init(prompt)
    assert second.env.unwrapped.max_turns == base_max_turns(row["env_id"], {"split": "train"})
    held = skyrl_gym.make(env_class, env_config=None, extras=extras)
    assert held.env is not second.env
    second.close(), held.close()


def test_ground_truth_as_dict_and_from_reward_model(rows):
    row = rows[1]
    gt = json.loads(row["reward_spec"]["ground_truth"])
    as_dict = {**row, "reward_spec": {"method": "rule", "ground_truth": gt}}
    verl_only = {k: v for k, v in row.items() if k != "reward_spec"}
    want = play_skyrl(row, [row["gold_response"]])[0]
    assert play_skyrl(as_dict, [row["gold_response"]])[0] == want
    assert play_skyrl(verl_only, [row["gold_response"]])[0] == want


def bad(row, **gt_changes):
    gt = {**json.loads(row["reward_spec"]["ground_truth"]), **gt_changes}
    gt = {k: v for k, v in gt.items() if v is not None}
    return {**row, "reward_spec": {"method": "rule", "ground_truth": json.dumps(gt)}}


def test_bad_input_gets_clear_errors(rows):
    row = rows[1]
    GT = skyrl.GroundTruthError

    def make(r, cfg=None, max_turns=None):
        return skyrl_gym.make("toolgym", env_config=cfg, extras=skyrl_sample(r, max_turns)[2])

    no_truth = {k: v for k, v in row.items() if k not in ("reward_spec", "reward_model")}
    with pytest.raises(GT, match=r"extras\['reward_spec'\]\['ground_truth'\] is missing"):
        make(no_truth)
    with pytest.raises(GT, match=r"reward_spec.ground_truth.env_id is missing"):
        make(bad(row, env_id=None))
    with pytest.raises(GT, match=r"reward_spec.ground_truth.env_id 'ToolGym/Nope-v0' is not a registered env"):
        make(bad(row, env_id="ToolGym/Nope-v0"))
    with pytest.raises(GT, match=r"reward_spec.ground_truth.env_id 'CartPole-v1' is a gymnasium env but not a toolgym"):
        make(bad(row, env_id="CartPole-v1", env_kwargs={}))
    with pytest.raises(GT, match=r"reward_spec.ground_truth.env_kwargs .* do not fit ToolGym/FlightBooking-v0"):
        make(bad(row, env_kwargs={"split": "train", "bogus": 1}))
    with pytest.raises(GT, match=r"reward_spec.ground_truth.seed must be an integer"):
        make(bad(row, seed="x"))
    with pytest.raises(GT, match=r"reward_spec.ground_truth.prefix must be a list"):
        make(bad(row, prefix={"a": 1}))
    with pytest.raises(GT, match=r"reward_spec.ground_truth is not valid JSON"):
        make({**row, "reward_spec": {"ground_truth": "{nope"}})
    with pytest.raises(ValueError, match=r"unknown toolgym env_config keys \['observation_rol'\]"):
        make(row, {"observation_rol": "tool"})
    with pytest.raises(ValueError, match=r"observation_role must be 'user' or 'tool'"):
        make(row, {"observation_role": "assistant"})
    with pytest.raises(ValueError, match=r"max_turns"):
        make(row, max_turns=0)
    env = make(row)
    with pytest.raises(RuntimeError, match=r"init\(\) before step\(\)"):
        env.step("hi")
    with pytest.raises(RestoreError, match="differs from the row's prompt"):
        env.init(rows[0]["prompt"])  # another turn's prompt
    env.init(row["prompt"])
    with pytest.raises(TypeError, match="str"):
        env.step({"role": "assistant", "content": "x"})
    env.close()
    wrong_seed = make(bad(row, seed=row["seed"] + 1))
    with pytest.raises(RestoreError):
        wrong_seed.init(row["prompt"])
    unchecked = make(bad(row, seed=row["seed"] + 1), {"check": False})
    unchecked.init(row["prompt"])  # check off: restores the seed it was given
    unchecked.close()


def test_import_toolgym_does_not_import_skyrl_gym():
    code = "import sys, toolgym, toolgym.export, toolgym.integrations; assert 'skyrl_gym' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_env_config_from_skyrl_yaml_overrides_env_kwargs(rows):
    """``environment.skyrl_gym.toolgym`` arrives as a DictConfig; its env_kwargs go over every row's."""
    row = rows[0]
    cfg = {"env_kwargs": {"isolation": "process"}, "observation_role": "tool", "tools_prompt": False}
    got, outs, chat, _ = play_skyrl(row, gold_policy(row), env_config=cfg)
    assert got == play_in_process(row, gold_policy(row))
    assert outs[0]["observations"][0]["role"] == "tool" and "<tools>" not in chat[0]["content"]
    _, env_class, extras = skyrl_sample(row)
    env = skyrl_gym.make(env_class, env_config=omegaconf.OmegaConf.create(cfg), extras=extras)
    assert env.env.unwrapped.isolation == "process"
    env.close()


def test_skyrl_generator_style_async_loop(rows):
    """The call pattern of SkyRL's SkyRLGymGenerator: one asyncio task per trajectory, init/step/close on the env
    thread pool (``environment.max_env_workers``), all trajectories gathered at once."""
    import asyncio
    import copy

    rng = random.Random(2)
    jobs = [(row, p) for row in rows for p in policies(row, rng, rows).values()]
    want = [play_skyrl(row, p, 3)[0] for row, p in jobs]

    async def agent_loop(row, policy, executor):
        loop = asyncio.get_running_loop()
        prompt, env_class, extras = skyrl_sample(row, 3)
        env = skyrl_gym.make(env_class, env_config=omegaconf.DictConfig({}), extras=extras)
        await loop.run_in_executor(executor, env.init, copy.deepcopy(prompt))
        rewards, done = [], False
        while not done:
            await asyncio.sleep(0)  # the model's generation: other trajectories run meanwhile
            out = await loop.run_in_executor(executor, env.step, policy[min(len(rewards), len(policy) - 1)])
            rewards.append(out["reward"])
            done = out["done"]
        env.get_metrics()
        await loop.run_in_executor(executor, env.close)
        return rewards

    async def generate():
        with ThreadPoolExecutor(max_workers=10, thread_name_prefix="skyrl-gym-env-") as executor:
            return await asyncio.gather(*(agent_loop(row, p, executor) for row, p in jobs))

    assert asyncio.run(generate()) == want
