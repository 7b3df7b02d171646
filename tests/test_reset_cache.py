"""Seeded resets reuse the generated scenario: exact (same episode, same np_random), private, keyed safely."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import threading

import gymnasium as gym
import numpy as np
import pytest

import toolgym
from toolgym.sources import SCENARIO_CACHE, ProceduralSource, ScenarioCache, source_cache_key

WRITE_TOOLS = ("book_flight", "cancel_booking", "change_seat", "pay_booking")


@pytest.fixture(autouse=True)
def _fresh_cache():
    SCENARIO_CACHE.clear()
    enabled = SCENARIO_CACHE.enabled
    SCENARIO_CACHE.enabled = True
    yield
    SCENARIO_CACHE.enabled = enabled
    SCENARIO_CACHE.clear()


def _make(env_id: str, cached: bool = True, **kwargs):
    env = gym.make(env_id, **kwargs).unwrapped
    env.scenario_cache = cached
    return env


def _episode(env, seed, options=None):
    """Everything a reset and a gold playthrough expose: obs, info, rng state, gold actions, rewards, world."""
    obs, info = env.reset(seed=seed, options=options)
    rng = env.np_random.bit_generator.state
    out = {"obs": copy.deepcopy(obs), "info": copy.deepcopy(info), "rng": rng, "state0": copy.deepcopy(env.state)}
    try:
        gold = env.gold_actions()
    except ValueError:  # a record without gold arguments: still compare the reset
        return out
    steps = []
    for action in gold:
        _, reward, terminated, truncated, step_info = env.step(action)
        steps.append((reward, terminated, truncated, step_info["reward_components"], step_info["feedback"]))
        if terminated or truncated:
            break
    out.update(gold=gold, steps=steps, state1=copy.deepcopy(env.state), draw=env.np_random.integers(1 << 62))
    return out


@pytest.mark.parametrize("env_id", toolgym.registered_ids())
def test_cached_resets_equal_uncached(env_id):
    cached, plain = _make(env_id), _make(env_id, cached=False)
    procedural = source_cache_key(cached.source) is not None
    for seed in (0, 7, 123):
        reference = _episode(plain, seed)
        stored = len(SCENARIO_CACHE)
        assert _episode(cached, seed) == reference  # a miss: remembered, not stored
        assert len(SCENARIO_CACHE) == stored
        assert _episode(cached, seed) == reference  # a miss again: stored
        hits = SCENARIO_CACHE.hits
        assert _episode(cached, seed) == reference  # a hit
        assert SCENARIO_CACHE.hits == hits + procedural
    if procedural:
        assert len(SCENARIO_CACHE) == 3


@pytest.mark.parametrize("env_id", ["ToolGym/FlightBooking-v0", "ToolGym/Mixed-v1"])
def test_seedless_resets_after_a_hit_follow_the_uncached_sequence(env_id):
    cached, plain = _make(env_id), _make(env_id, cached=False)
    cached.reset(seed=5), cached.reset(seed=5)  # prime: the next seed-5 reset is a hit
    seqs = []
    for env in (cached, plain):
        runs = [env.reset(seed=5)] + [env.reset() for _ in range(3)]
        seqs.append([(o, i["scenario_id"], i["unsolved_set"]) for o, i in runs])
    assert SCENARIO_CACHE.hits >= 1
    assert seqs[0] == seqs[1]
    assert len({s[1] for s in seqs[0]}) > 1  # the seedless resets really drew new scenarios


def test_an_episodes_writes_never_reach_the_next_reset_of_its_seed():
    env = _make("ToolGym/FlightBooking-v0", kind="multi_hop")
    seed = next(
        s for s in range(200) if any(t in a for a in (env.reset(seed=s), env.gold_actions())[1] for t in WRITE_TOOLS)
    )
    SCENARIO_CACHE.clear()
    env.reset(seed=seed)  # a first miss is only remembered
    obs, _ = env.reset(seed=seed)  # the second: the cache stores the world before the episode touches it
    world = copy.deepcopy(env.state)
    for action in env.gold_actions():
        env.step(action)
    assert env.state != world  # the gold write really changed the world
    assert env.episode_metrics()["state_ok"] == 1.0
    obs["messages"][-1]["content"] = "tampered"  # callers mutating what reset handed out
    obs["tools"].clear()
    env.scenario.subtasks.clear()
    for _ in range(2):  # hits
        obs2, info2 = env.reset(seed=seed)
        assert env.state == world and env.scenario.state is env.state
        assert obs2 == _make("ToolGym/FlightBooking-v0", cached=False, kind="multi_hop").reset(seed=seed)[0]
        assert info2["n_unsolved"] > 0
        for action in env.gold_actions():
            env.step(action)
        assert env.episode_metrics()["state_ok"] == 1.0
    assert SCENARIO_CACHE.hits == 2


def test_different_kwargs_never_share_an_entry():
    single = _make("ToolGym/FlightBooking-v0", kind="single_hop")
    multi = _make("ToolGym/FlightBooking-v0", kind="multi_hop")
    again = _make("ToolGym/FlightBooking-v0", kind="single_hop")
    assert source_cache_key(single.source) != source_cache_key(multi.source)
    assert source_cache_key(single.source) == source_cache_key(again.source)
    for _ in range(2):
        assert single.reset(seed=3)[1]["kind"] == "single_hop"
        assert multi.reset(seed=3)[1]["kind"] == "multi_hop"
    assert len(SCENARIO_CACHE) == 2
    hits = SCENARIO_CACHE.hits
    again.reset(seed=3)  # same id and kwargs, another env: shares the entry
    assert SCENARIO_CACHE.hits == hits + 1
    # values that compare equal in Python (1 == 1.0 == True) are still different keys
    a = ProceduralSource("x", _gen, {"n": 1})
    b = ProceduralSource("x", _gen, {"n": 1.0})
    c = ProceduralSource("x", _gen, {"n": True})
    assert len({source_cache_key(s) for s in (a, b, c)}) == 3


def _gen(rng, config):  # pragma: no cover - only keyed, never called
    raise AssertionError


def test_sources_that_cannot_be_keyed_are_not_cached():
    base = _make("ToolGym/FlightBooking-v0").source

    class Custom(ProceduralSource):
        pass

    class Generator:  # a callable object with state of its own
        def __call__(self, rng, config):
            return base.generate(rng, config)

    unkeyable = [
        Custom(base.name, base.generate, base.config),
        ProceduralSource(base.name, Generator(), base.config),
        ProceduralSource(base.name, base.generate, base.config),
    ]
    unkeyable[2].config = object()  # a config whose value cannot be keyed
    for source in unkeyable:
        assert source_cache_key(source) is None
    env = toolgym.ToolEnv(unkeyable[0])
    env.reset(seed=1), env.reset(seed=1)
    assert len(SCENARIO_CACHE) == 0 and SCENARIO_CACHE.hits == 0


def test_the_switches_turn_it_off():
    env = _make("ToolGym/FlightBooking-v0")
    SCENARIO_CACHE.enabled = False
    env.reset(seed=1), env.reset(seed=1)
    assert len(SCENARIO_CACHE) == 0
    SCENARIO_CACHE.enabled = True
    off = toolgym.ToolEnv(env.source, scenario_cache=False)
    off.reset(seed=1), off.reset(seed=1)
    assert len(SCENARIO_CACHE) == 0
    env.reset(seed=1), env.reset(seed=1)
    assert len(SCENARIO_CACHE) == 1 and SCENARIO_CACHE.hits == 0  # stored at its second generation
    env.reset(seed=1)
    assert SCENARIO_CACHE.hits == 1


def test_concurrent_resets_from_threads_are_exact():
    env_ids = ["ToolGym/FlightBooking-v0", "ToolGym/Mixed-v1", "ToolGym/Banking-v0"]
    seeds = list(range(6))
    reference = {}
    for env_id in env_ids:
        plain = _make(env_id, cached=False)
        for s in seeds:
            reference[env_id, s] = _episode(plain, s)
    errors, barrier = [], threading.Barrier(6)

    def worker(k):
        env_id = env_ids[k % len(env_ids)]
        env = _make(env_id)
        barrier.wait()
        order = np.random.default_rng(k).permutation(seeds * 3)
        for s in order:
            if _episode(env, int(s)) != reference[env_id, int(s)]:
                errors.append((env_id, int(s)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert SCENARIO_CACHE.hits > 0


def test_lru_bounds():
    env = _make("ToolGym/FlightBooking-v0")
    env.reset(seed=0)
    scenario = env.scenario
    size = len(pickle.dumps(scenario))
    cache = ScenarioCache(maxsize=2, max_bytes=3 * size)
    assert cache.put("a", scenario, {}) and cache.put("b", scenario, {})
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", scenario, {})  # over maxsize: "b" goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert not ScenarioCache(max_bytes=100).put("big", scenario, {})  # larger than the whole budget
    assert not cache.put("unpicklable", dataclasses.replace(scenario, state={"f": lambda: 0}), {})
    assert len(cache) == 2
    got, _ = cache.get("a")
    assert got == scenario and got is not scenario and got.state is not scenario.state
    assert got.tools[0]["function"]["parameters"] is scenario.tools[0]["function"]["parameters"]
    with pytest.raises(ValueError, match="maxsize"):
        ScenarioCache(maxsize=0)


def test_gym_make_takes_the_switch():
    env = gym.make("ToolGym/FlightBooking-v0", scenario_cache=False)
    assert env.unwrapped.scenario_cache is False


def test_a_seed_is_stored_at_its_second_generation_so_fresh_seeds_pickle_nothing():
    env = _make("ToolGym/Banking-v0")
    for seed in range(20):  # a run of fresh seeds: nothing pickled, nothing stored
        env.reset(seed=seed)
    assert len(SCENARIO_CACHE) == 0 and SCENARIO_CACHE.hits == 0
    env.reset(seed=3)  # seen before: stored now
    assert len(SCENARIO_CACHE) == 1
    env.reset(seed=3)
    assert SCENARIO_CACHE.hits == 1
    cache = ScenarioCache(maxsize=2)  # the remembered keys are bounded like the entries
    assert not cache.seen_before("a") and not cache.seen_before("b") and not cache.seen_before("c")
    assert not cache.seen_before("a") and cache.seen_before("c")


def test_a_key_pickled_in_another_process_is_hashed_again_when_loaded():
    """Keys keep their hash (a mixture's nests every member's); a source pickled where str hashes differ (another
    PYTHONHASHSEED, e.g. a vector env's worker) rehashes its key when loaded, so its resets cache as any other's."""
    import os
    import subprocess
    import sys

    code = (
        "import pickle, sys, gymnasium as gym, toolgym\n"
        "from toolgym.sources import source_cache_key\n"
        "source = gym.make(sys.argv[1]).unwrapped.source\n"
        "source_cache_key(source)  # memoized on the source, so pickled with it\n"
        "sys.stdout.buffer.write(pickle.dumps(source))"
    )
    for env_id in ("ToolGym/Mixed-v1", "ToolGym/Banking-v0"):
        env = {**os.environ, "PYTHONHASHSEED": "12345"}
        blob = subprocess.run([sys.executable, "-c", code, env_id], env=env, capture_output=True, check=True).stdout
        loaded = pickle.loads(blob)
        key = source_cache_key(loaded)
        assert hash(key) == hash(key.value) and source_cache_key(loaded) is key  # this process's hash, memoized
        played = _make(env_id)
        played.source = loaded
        hits = SCENARIO_CACHE.hits
        for _ in range(3):  # generated, stored, hit
            played.reset(seed=5)
        assert SCENARIO_CACHE.hits == hits + 1
