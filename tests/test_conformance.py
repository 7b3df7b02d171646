"""Every registered ToolGym id, the way Gymnasium tests its own registry: checker, determinism, pickling."""

import copy
import pickle
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import toolgym
from toolgym.agents import GoldAgent, RandomAgent
from toolgym.evaluate import run_episode

ENV_IDS = toolgym.registered_ids()


def test_registry_is_not_empty():
    assert "ToolGym/FlightBooking-v0" in ENV_IDS and "ToolGym/FTRLSample-v0" in ENV_IDS


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_checker(env_id):
    """Gymnasium's checker, every warning an error; gym.make keeps its passive checker on, so a first step that
    breaks the API warns users too."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id, render_mode="ansi")
        check_env(env.unwrapped)
        env.reset(seed=0)
        env.step("a final answer")


def _has_gold(env) -> bool:
    try:
        env.unwrapped.gold_plan()
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_trajectory(env_id):
    env = gym.make(env_id)
    env.reset(seed=0)
    agent = GoldAgent() if _has_gold(env) else RandomAgent()
    for seed in (0, 1, 2):
        a = run_episode(gym.make(env_id), agent, seed)
        b = run_episode(gym.make(env_id), agent, seed)
        assert a["messages"] == b["messages"] and a["rewards"] == b["rewards"]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickle_and_deepcopy(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=5)
    for clone in (pickle.loads(pickle.dumps(env)), copy.deepcopy(env)):
        assert clone.unwrapped.scenario.to_json() == env.unwrapped.scenario.to_json()
        assert clone.unwrapped._messages == obs["messages"]
        clone.step("a final answer")
    assert env.unwrapped.tracker.n_unsolved == len(env.unwrapped.scenario.subtasks)
