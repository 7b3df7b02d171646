"""toolgym's default per-turn reward reproduces FTRL's own ``compute_solve_f1`` on 80 recorded cases."""

import json
from pathlib import Path

import pytest

from toolgym import StaticSource, ToolEnv, scenario_from_ftrl

VECTORS = [json.loads(line) for line in (Path(__file__).parent / "data" / "ftrl_reward_vectors.jsonl").open()]


def test_there_are_eighty_vectors():
    assert len(VECTORS) == 80


@pytest.mark.parametrize("case", VECTORS, ids=[f"v{i}" for i in range(len(VECTORS))])
def test_first_turn_reward_matches_ftrl(case):
    scenario = scenario_from_ftrl(case["record"])
    env = ToolEnv(StaticSource("vectors", [scenario]))
    env.reset(seed=0)
    _, reward, *_ = env.step(case["response"])
    assert reward == pytest.approx(case["ftrl_reward"], abs=1e-12)


@pytest.mark.parametrize("variant", ["ftrl_precision", "ftrl_count", "ftrl_squared"])
def test_variants_follow_their_formulas_on_the_same_turns(variant):
    formulas = {
        "ftrl_precision": lambda p, q: q / p,
        "ftrl_count": lambda p, q: float(q),
        "ftrl_squared": lambda p, q: q * q / p,
    }
    for case in VECTORS:
        env = ToolEnv(StaticSource("vectors", [scenario_from_ftrl(case["record"])]), reward=variant)
        env.reset(seed=0)
        _, reward, _, _, info = env.step(case["response"])
        comp = info["reward_components"]
        p, q = int(comp["n_calls"]), int(comp["n_solved_now"])
        expected = formulas[variant](p, q) if p else case["ftrl_reward"]
        assert reward == pytest.approx(expected)
