"""Vector envs: the native batched ToolVectorEnv and Gymnasium's sync/async vectorizers on ToolGym ids.

Every mode is checked against single envs stepped with the same seeds and the same actions, including the
next-step autoreset, so a wrong, stale or shuffled observation fails, not only a crash.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import Tuple
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import toolgym
from toolgym.spaces import AssistantTurn, ChatObservation
from toolgym.vector import SharedMemoryError, ToolVectorEnv, make_async

FLIGHT = "ToolGym/FlightBooking-v0"
BAD = '<tool_call>{"name": "get_fare", "arguments": {'  # malformed: scored, fed back, does not end the episode


def _policy(i: int, t: int, gold: list[str]) -> str:
    """A deterministic mix of gold turns, malformed calls and early answers (so episodes end at different steps)."""
    if (i + t) % 5 == 3:
        return BAD
    if (i + 2 * t) % 7 == 6:
        return "I do not know."
    return gold[0]


def _reference(env_id: str, seeds: list[int], steps: int, **kwargs):
    """Single envs with next-step autoreset, by hand: per env, the list of (action, obs, reward, te, tr, info)."""
    out = []
    for i, seed in enumerate(seeds):
        env = gym.make(env_id, **kwargs)
        obs, info = env.reset(seed=seed)
        rows = [(None, obs, 0.0, False, False, info)]
        done = False
        for t in range(steps):
            if done:
                obs, info = env.reset()
                rows.append((None, obs, 0.0, False, False, info))
                done = False
                continue
            action = _policy(i, t, env.unwrapped.gold_actions())
            obs, r, te, tr, info = env.step(action)
            rows.append((action, obs, r, te, tr, info))
            done = te or tr
        out.append(rows)
    return out


def _unbatch(infos: dict, i: int) -> dict:
    """Env i's info from a vector info dict, using the masks only."""
    out = {}
    for key, value in infos.items():
        if key.startswith("_") or not infos["_" + key][i]:
            continue
        out[key] = _unbatch(value, i) if isinstance(value, dict) else value[i]
    return out


def _run_vector(venv, seeds, steps: int):
    """Drive a vector env with the same per-env policy; returns rows shaped like ``_reference``'s."""
    n = venv.num_envs
    obs, infos = venv.reset(seed=seeds)
    rows = [[(None, obs[i], 0.0, False, False, _unbatch(infos, i))] for i in range(n)]
    done = [False] * n
    for t in range(steps):
        golds = venv.call("gold_actions")
        actions = [None if done[i] else _policy(i, t, golds[i]) for i in range(n)]
        sent = [a if a is not None else "ignored: this env is being reset" for a in actions]
        obs, rew, term, trunc, infos = venv.step(sent)
        assert rew.dtype == np.float64 and term.dtype == np.bool_ and trunc.dtype == np.bool_
        assert rew.shape == term.shape == trunc.shape == (n,)
        assert isinstance(obs, tuple) and len(obs) == n and venv.observation_space.contains(obs)
        for i in range(n):
            rows[i].append((actions[i], obs[i], float(rew[i]), bool(term[i]), bool(trunc[i]), _unbatch(infos, i)))
            done[i] = bool(term[i] or trunc[i])
    return rows


def _assert_same(rows, ref):
    assert len(rows) == len(ref)
    for i, (got, want) in enumerate(zip(rows, ref, strict=True)):
        assert len(got) == len(want)
        for t, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g[0] == w[0], (i, t, "action")
            assert g[1]["messages"] == w[1]["messages"] and g[1]["tools"] == w[1]["tools"], (i, t, "obs")
            assert g[2:5] == (w[2], w[3], w[4]), (i, t, "reward/flags")
            assert g[5] == w[5], (i, t, "info")


def _n_resets(ref) -> int:
    return sum(1 for rows in ref for row in rows[1:] if row[0] is None)


# -- native ----------------------------------------------------------------------------------------------------
def test_every_id_has_the_native_vector_entry_point():
    for env_id in toolgym.registered_ids():
        assert gym.spec(env_id).vector_entry_point == "toolgym.vector:make_vector_env"
        venv = gym.make_vec(env_id, num_envs=2)
        assert isinstance(venv, ToolVectorEnv) and venv.num_envs == 2
        venv.reset(seed=0)
        venv.step(["a final answer", "a final answer"])
        venv.close()


def test_spaces_and_metadata():
    venv = gym.make_vec(FLIGHT, num_envs=3)
    assert venv.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert venv.single_observation_space == ChatObservation() and isinstance(venv.single_action_space, AssistantTurn)
    assert isinstance(venv.observation_space, Tuple) and len(venv.observation_space) == 3
    assert all(s == ChatObservation() for s in venv.observation_space.spaces)
    assert isinstance(venv.action_space, Tuple) and len(venv.action_space.sample()) == 3
    obs, _ = venv.reset(seed=1)
    assert venv.observation_space.contains(obs)
    with pytest.raises(ValueError):
        venv.step(["only one action"])


def test_native_matches_single_envs_through_autoresets():
    seeds = [11, 12, 13, 14]
    ref = _reference(FLIGHT, seeds, steps=14)
    assert _n_resets(ref) >= 4  # autoreset happened, in several envs, at different steps
    rows = _run_vector(gym.make_vec(FLIGHT, num_envs=4), 11, steps=14)
    _assert_same(rows, ref)
    # the step after an env ends is its reset: new scenario, reward 0, reset info (scenario_id) in the masks
    for i in range(4):
        scenario = rows[i][0][5]["scenario_id"]
        for t in range(1, len(rows[i])):
            if rows[i][t][0] is None:
                assert rows[i][t - 1][3] or rows[i][t - 1][4]
                assert rows[i][t][5]["scenario_id"] != scenario and "reward_components" not in rows[i][t][5]
                assert rows[i][t][1]["messages"][-1]["role"] == "user"
                scenario = rows[i][t][5]["scenario_id"]


def test_native_infos_equal_gymnasium_sync_vector_env_infos():
    """Same keys, masks, dtypes and values as Gymnasium's own _add_info, also on steps mixing resets and steps."""
    native = gym.make_vec(FLIGHT, num_envs=3)
    sync = SyncVectorEnv([lambda: gym.make(FLIGHT)] * 3)
    _, a = native.reset(seed=4)
    _, b = sync.reset(seed=4)
    _assert_infos_equal(a, b)
    for t in range(8):
        golds = native.call("gold_actions")
        actions = [_policy(i, t, g) for i, g in enumerate(golds)]
        ra = native.step(actions)
        rb = sync.step(actions)
        for x, y in zip(ra[1:4], rb[1:4], strict=True):
            np.testing.assert_array_equal(x, y)
        _assert_infos_equal(ra[4], rb[4])


def _assert_infos_equal(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        if isinstance(a[key], dict):
            _assert_infos_equal(a[key], b[key])
        else:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
            assert all(x == y for x, y in zip(a[key].tolist(), b[key].tolist(), strict=True)), key


def test_reward_components_are_batched_arrays_with_masks():
    venv = gym.make_vec(FLIGHT, num_envs=2)
    venv.reset(seed=0)
    _, rew, term, _, infos = venv.step(["a final answer", venv.call("gold_actions")[1][0]])
    comp = infos["reward_components"]
    assert infos["_reward_components"].tolist() == [True, True]
    assert comp["f1"].dtype == np.float64 and comp["_f1"].tolist() == [True, True]
    assert comp["n_calls"][0] == 0.0 and comp["n_calls"][1] >= 1.0 and comp["reward_ftrl"].tolist() == rew.tolist()
    assert term.tolist() == [True, False] and infos["_episode"].tolist() == [True, False]
    _, rew, term, _, infos = venv.step(["ignored", "a final answer"])
    assert infos["_scenario_id"].tolist() == [True, False] and infos["_reward_components"].tolist() == [False, True]
    assert rew[0] == 0.0 and not term[0]


def test_seeds_list_and_determinism():
    ref = _reference(FLIGHT, [5, 9, 2], steps=6)
    _assert_same(_run_vector(gym.make_vec(FLIGHT, num_envs=3), [5, 9, 2], steps=6), ref)
    a = _run_vector(gym.make_vec(FLIGHT, num_envs=3), 100, steps=6)
    b = _run_vector(gym.make_vec(FLIGHT, num_envs=3), 100, steps=6)
    _assert_same(a, b)
    with pytest.raises(ValueError):
        gym.make_vec(FLIGHT, num_envs=3).reset(seed=[1, 2])


def test_env_kwargs_pass_through_make_vec():
    kw = {"kind": "parallel_multi_hop", "distractors": 1, "reward": "ftrl_count", "max_turns": 3}
    for mode in ("vector_entry_point", "sync"):
        venv = gym.make_vec(FLIGHT, num_envs=2, vectorization_mode=mode, **kw)
        _, infos = venv.reset(seed=3)
        assert infos["kind"].tolist() == ["parallel_multi_hop"] * 2
        assert infos["metadata"]["distractors"].tolist() == [1, 1]
        assert venv.get_attr("max_turns") == (3, 3) and venv.get_attr("reward_spec") == ("ftrl_count",) * 2
        venv.close()
    _assert_same(_run_vector(gym.make_vec(FLIGHT, num_envs=2, **kw), 3, steps=5), _reference(FLIGHT, [3, 4], 5, **kw))
    with pytest.raises(TypeError):
        gym.make_vec(FLIGHT, num_envs=2, no_such_option=1)


def test_static_pack_vectorizes():
    env_id = "ToolGym/FTRLSample-v0"
    venv = gym.make_vec(env_id, num_envs=2)
    obs, _ = venv.reset(seed=0)
    singles = [gym.make(env_id) for _ in range(2)]
    assert [o["messages"] for o in obs] == [s.reset(seed=i)[0]["messages"] for i, s in enumerate(singles)]


def test_call_get_attr_set_attr_and_reset_mask():
    venv = gym.make_vec(FLIGHT, num_envs=3)
    venv.reset(seed=0)
    assert len(venv.call("gold_plan")) == 3 and venv.get_attr("max_turns") == (20, 20, 20)
    venv.set_attr("max_turns", 7)
    assert venv.get_attr("max_turns") == (7, 7, 7)
    venv.set_attr("max_turns", [1, 2, 3])
    assert venv.call("max_turns") == (1, 2, 3)
    with pytest.raises(ValueError):
        venv.set_attr("max_turns", [1, 2])
    before = venv.get_attr("scenario")
    obs, infos = venv.reset(seed=50, options={"reset_mask": np.array([False, True, False])})
    after = venv.get_attr("scenario")
    assert after[0] is before[0] and after[2] is before[2] and after[1] is not before[1]
    assert infos["_scenario_id"].tolist() == [False, True, False]
    assert obs[1]["messages"] == gym.make(FLIGHT).reset(seed=51)[0]["messages"]


def test_same_step_and_disabled_autoreset_modes():
    same = gym.make_vec(FLIGHT, num_envs=2, autoreset_mode="SameStep")
    assert same.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    same.reset(seed=8)
    gold_next = same.call("gold_actions")[1][0]
    obs, _, term, _, infos = same.step(["final answer", gold_next])
    assert term.tolist() == [True, False] and infos["_final_obs"].tolist() == [True, False]
    assert infos["final_obs"][0]["messages"][-1] == {"role": "assistant", "content": "final answer"}
    assert "episode" in infos["final_info"] and infos["_scenario_id"].tolist() == [True, False]
    single = gym.make(FLIGHT)
    single.reset(seed=8)
    single.step("final answer")
    assert obs[0]["messages"] == single.reset()[0]["messages"]  # already the next scenario

    off = gym.make_vec(FLIGHT, num_envs=2, autoreset_mode=AutoresetMode.DISABLED)
    off.reset(seed=8)
    off.step(["final answer", "final answer"])
    with pytest.raises(RuntimeError, match="reset_mask"):
        off.step(["x", "y"])
    off.reset(options={"reset_mask": np.array([True, True])})
    off.step(["x", "y"])


# -- gymnasium's sync and async vectorizers -----------------------------------------------------------------
def test_sync_mode_matches_single_envs():
    venv = gym.make_vec(FLIGHT, num_envs=3, vectorization_mode="sync", kind="multi_hop")
    assert isinstance(venv, SyncVectorEnv)
    _assert_same(_run_vector(venv, 21, steps=8), _reference(FLIGHT, [21, 22, 23], 8, kind="multi_hop"))


@pytest.mark.parametrize("how", ["vector_kwargs", "make_async"])
def test_async_mode_matches_single_envs(how):
    kw = {"kind": "parallel_single_hop", "distractors": 2}
    if how == "make_async":
        venv = make_async(FLIGHT, 3, **kw)
    else:
        venv = gym.make_vec(
            FLIGHT, num_envs=3, vectorization_mode="async", vector_kwargs={"shared_memory": False}, **kw
        )
    try:
        assert isinstance(venv, gym.vector.AsyncVectorEnv) and len(venv.processes) == 3
        _assert_same(_run_vector(venv, 31, steps=8), _reference(FLIGHT, [31, 32, 33], 8, **kw))
    finally:
        venv.close()


def test_async_with_shared_memory_says_what_to_pass():
    """The error a user sees last (Gymnasium would wrap a CustomSpaceError in its generic message) names the fix."""
    with pytest.raises(SharedMemoryError, match=r"vector_kwargs=\{'shared_memory': False\}.*make_async"):
        gym.make_vec(FLIGHT, num_envs=2, vectorization_mode="async")


def test_vector_options_passed_as_env_kwargs_say_where_they_go():
    with pytest.raises(TypeError, match=r"shared_memory is an option of the vector env.*vector_kwargs="):
        gym.make_vec(FLIGHT, num_envs=2, vectorization_mode="async", shared_memory=False)


def test_misspelt_option_gets_a_suggestion():
    with pytest.raises(TypeError, match=r"distractor \(did you mean distractors\?\)"):
        gym.make(FLIGHT, distractor=2)
