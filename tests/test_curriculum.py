"""The curriculum wrapper: stages from knob levels, promotion and demotion on rolling Solve-F1, per-env state."""

import gymnasium as gym
import numpy as np
import pytest

import toolgym
from toolgym import Curriculum, CurriculumEnv, CurriculumState

HOTEL = "ToolGym/HotelBooking-v1"


def play(env, seed, good):
    """One episode: the gold plan (good) or an immediate wrong answer; returns the final step's info."""
    env.reset(seed=seed)
    while True:
        action = env.unwrapped.gold_actions()[0] if good else "I don't know."
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return info


def test_per_knob_raises_one_knob_at_a_time_in_order():
    c = Curriculum.per_knob({"hops": [2, 3], "distractors": [0, 4, 8]})
    assert c.stages == ({"hops": 2, "distractors": 0}, {"hops": 3, "distractors": 0},
                        {"hops": 3, "distractors": 4}, {"hops": 3, "distractors": 8})  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"stages": ()}, "at least one stage"),
        ({"stages": ({},), "window": 0}, "window"),
        ({"stages": ({},), "threshold": 1.5}, "threshold"),
        ({"stages": ({},), "threshold": 0.5, "demote_below": 0.6}, "demote_below"),
    ],
)
def test_bad_rules_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Curriculum(**kwargs)


def test_a_bad_knob_at_any_stage_fails_at_make_time():
    with pytest.raises(ValueError, match="hops"):
        gym.make(HOTEL, curriculum=Curriculum.per_knob({"hops": [2, 9]}))
    with pytest.raises(TypeError, match="Curriculum"):
        gym.make(HOTEL, curriculum={"hops": [2, 3]})


def test_gold_play_promotes_and_scenarios_follow_the_stage():
    cur = Curriculum.per_knob({"hops": [2, 3], "distractors": [0, 4]}, window=3, threshold=0.9)
    env = gym.make(HOTEL, kind="multi_hop", curriculum=cur)
    assert isinstance(env.unwrapped, toolgym.ToolEnv) and isinstance(env.env.env, CurriculumEnv)
    seen = []
    for seed in range(10):
        info = play(env, seed, good=True)
        config = env.unwrapped.scenario.metadata["config"]
        seen.append((info["curriculum"]["stage"], config["hops"], config["distractors"], info["curriculum"]["moved"]))
    # three solved episodes per stage, then the next stage's knobs; the last stage stays
    assert [s[0] for s in seen] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert [s[3] for s in seen] == [0, 0, 1, 0, 0, 1, 0, 0, 0, 0]
    assert {(s[0], s[1], s[2]) for s in seen} == {(0, 2, 0), (1, 3, 0), (2, 3, 4)}


def test_failing_play_never_promotes_and_demotion_moves_back():
    cur = Curriculum.per_knob({"distractors": [0, 4]}, window=2, threshold=0.9, demote_below=0.5)
    env = gym.make(HOTEL, curriculum=cur)
    stages = [play(env, s, good=g)["curriculum"]["stage"] for s, g in enumerate([False] * 3 + [True] * 2 + [False] * 3)]
    _, info = env.reset(seed=99)
    # bad episodes at stage 0 cannot demote; two solved ones promote; two failed ones at stage 1 demote
    assert stages == [0, 0, 0, 0, 0, 1, 1, 0] and info["curriculum"]["stage"] == 0
    assert info["curriculum"]["episodes_at_stage"] == 1 and info["curriculum"]["rolling_solve_f1"] == 0.0
    fresh = gym.make(HOTEL, curriculum=cur).reset(seed=0)[1]["curriculum"]
    assert fresh["episodes_at_stage"] == 0 and np.isnan(fresh["rolling_solve_f1"])


def test_same_seeds_and_actions_give_the_same_stages():
    def run():
        env = gym.make(HOTEL, curriculum=Curriculum.per_knob({"hops": [2, 3]}, window=2, threshold=0.5))
        out = []
        for seed in range(6):
            info = play(env, seed, good=seed % 3 != 1)
            out.append((info["curriculum"]["stage"], env.unwrapped.scenario.id))
        return out

    assert run() == run()


@pytest.mark.parametrize("mode", ["native", "async"])
def test_vector_envs_keep_one_curriculum_per_env(mode):
    cur = Curriculum.per_knob({"distractors": [0, 4]}, window=1, threshold=0.9)
    kw = {"kind": "single_hop", "curriculum": cur}
    venv = gym.make_vec(HOTEL, num_envs=2, **kw) if mode == "native" else toolgym.make_async(HOTEL, 2, **kw)
    try:
        _, info = venv.reset(seed=[1, 2])
        assert list(info["curriculum"]["stage"]) == [0, 0]
        moved = np.zeros(2, dtype=int)
        for _ in range(4):  # env 0 plays gold until its episode ends; env 1 gives up at once
            gold = venv.call("gold_actions")[0][0]
            _, _, term, trunc, info = venv.step([gold, "no idea"])
            moved += np.where(info["_curriculum"], info["curriculum"]["moved"], 0)
            if term[0] or trunc[0]:
                break
        assert list(moved) == [1, 0]
        _, _, _, _, info = venv.step(["x", "x"])  # next-step autoreset: env 0 restarts at its new stage
        assert info["curriculum"]["stage"][0] == 1
    finally:
        venv.close()


def test_state_alone_is_what_a_trainer_holds():
    """One stage for all of a trainer's envs: it records each step's episodes and remakes its envs on a move."""
    state = CurriculumState(Curriculum.per_knob({"hops": [2, 3]}, window=4, threshold=0.75, demote_below=0.25))
    # a full window whose mean is below the threshold stays (0.725), one that reaches it promotes (0.85)
    assert [state.record(f) for f in (0.5, 1, 1, 0.4, 1)] == [0, 0, 0, 0, 1]
    assert state.knobs == {"hops": 3} and state.episodes_at_stage == 0
    assert [state.record(0.0) for _ in range(4)] == [0, 0, 0, -1] and state.knobs == {"hops": 2}
