"""SmallPolicy's contract with the trainers: consistent log-probs, batch-independent scores, faithful gold turns."""

import gymnasium as gym
import pytest
import torch
from toolgym_rl import common
from toolgym_rl.small_policy import SmallConfig, SmallPolicy

from toolgym.calls import parse_action

ENV_IDS = ["ToolGym/FlightBooking-v0", "ToolGym/HotelBooking-v1"]


@pytest.fixture(scope="module")
def policy() -> SmallPolicy:
    return SmallPolicy(SmallConfig(dim=32, layers=1), seed=0)


@pytest.fixture(scope="module", params=ENV_IDS)
def turns(request, policy) -> list:
    envs = common.make_envs(request.param, 8, split="train")
    try:
        episodes = common.play_episodes(policy, envs, list(range(12)))
    finally:
        envs.close()
    return [t for e in episodes for t in e.turns]


def test_sampling_log_probs_match_scoring(policy, turns):
    # the PPO ratio starts at exactly 1: what act() reports is what log_probs() computes for the same choice
    logp, _, mask = policy.log_probs([t.obs for t in turns], [t.action for t in turns])
    sampled = torch.stack([t.logp for t in turns])
    assert torch.allclose(logp.detach(), sampled, atol=1e-5)
    assert bool((mask.sum(1) >= 1).all())  # every turn has at least one decision


def test_scores_do_not_depend_on_the_rest_of_the_batch(policy, turns):
    # the reference is scored in other minibatches than the policy: a sample's row must not depend on its company
    obs, acts = [t.obs for t in turns], [t.action for t in turns]
    together = policy.log_probs(obs, acts)[0].detach()
    for i in (0, len(turns) // 2, len(turns) - 1):
        alone = policy.log_probs([obs[i]], [acts[i]])[0].detach()
        assert torch.allclose(alone[0], together[i], atol=1e-5)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gold_turns_are_reachable_and_render_back(policy, env_id):
    # the warm start learns gold turns: each must parse to an action that renders as the same calls
    pairs = common.gold_turns(env_id, episodes=10, split="train")
    assert pairs
    for obs, text in pairs:
        action = policy.parse_action(obs, text)
        assert action is not None, text
        prep = policy._prepare(obs)
        want, got = parse_action(text), parse_action(policy.render(prep, action))
        assert [(c.name, c.arguments) for c in got.calls] == [(c.name, c.arguments) for c in want.calls]
        if not want.calls:
            assert got.content.strip() == want.content.strip()


def test_rendered_turns_are_what_the_env_parses(policy):
    env = gym.make("ToolGym/HotelBooking-v1", split="train")
    obs, _ = env.reset(seed=3)
    texts, _, _ = policy.act([obs])
    _, _, _, _, info = env.step(texts[0])
    assert info["reward_components"]["n_bad_json"] == 0  # the policy's text is always well-formed
