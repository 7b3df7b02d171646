"""FTRL's reward through verl 0.9.1's own reward path, a whole batch in flight.

In verl 0.9.1 the trainer scores rows with ``RewardLoopWorker`` (``verl.experimental.reward_loop``): it loads
``reward.custom_reward_function`` by file path (``load_extern_object``: exec'd, never registered as a module) or as
``pkg://toolgym.integrations.verl`` (imported), wraps it in the registered ``naive`` reward manager
(``reward_manager.name`` default) and scores the batch with one ``asyncio`` task per row; a sync ``compute_score``
runs on the event loop's default thread pool, an async one on the loop. The legacy ``verl.workers.reward_manager``
classes are not on this path. With the switch interval forced down, threads interleave inside env steps, so any env
shared between rows would corrupt scores.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from verl_tiny import save_tiny_model_dir, tiny_tokenizer

import toolgym
from toolgym.export import compute_score, gold_episode, rl_rows

ENV_ID = "ToolGym/FlightBooking-v0"
SCORER = Path(toolgym.__file__).parent / "integrations" / "verl.py"


def _batch(rows, responses, tokenizer):
    """A ``DataProto`` shaped like the trainer's after rollout: left-padded prompts, right-padded responses."""
    import numpy as np
    import torch
    from verl import DataProto

    prompts = [tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
    p_ids = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    r_ids = [[*tokenizer.encode(s, add_special_tokens=False), tokenizer.eos_token_id] for s in responses]
    p_len, r_len, pad = max(map(len, p_ids)), max(map(len, r_ids)), tokenizer.pad_token_id
    prompt_t = torch.tensor([[pad] * (p_len - len(p)) + p for p in p_ids])
    resp_t = torch.tensor([r + [pad] * (r_len - len(r)) for r in r_ids])
    mask = torch.tensor(
        [
            [0] * (p_len - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (r_len - len(r))
            for p, r in zip(p_ids, r_ids, strict=True)
        ]
    )
    return DataProto.from_dict(
        tensors={
            "prompts": prompt_t,
            "responses": resp_t,
            "input_ids": torch.cat([prompt_t, resp_t], 1),
            "attention_mask": mask,
        },
        non_tensors={
            "data_source": np.array([r["data_source"] for r in rows], dtype=object),
            "reward_model": np.array([r["reward_model"] for r in rows], dtype=object),
            "extra_info": np.array([dict(r["extra_info"]) for r in rows], dtype=object),
        },
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("verl_reward") / "model")


def _config(model_dir, name, path=SCORER):
    import verl
    from hydra import compose, initialize_config_dir

    overrides = [
        f"actor_rollout_ref.model.path={model_dir}",
        f"reward.custom_reward_function.path={path}",
        f"reward.custom_reward_function.name={name}",
    ]
    with initialize_config_dir(os.path.join(os.path.dirname(verl.__file__), "trainer", "config"), version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("compute_score", SCORER),
        ("compute_score_async", SCORER),
        ("compute_score", "pkg://toolgym.integrations.verl"),  # verl's module form: imported, not exec'd
    ],
    ids=["file", "file-async", "pkg"],
)
def test_reward_loop_worker_scores_a_concurrent_batch_like_sequential_compute_score(model_dir, name, path):
    from verl.experimental.reward_loop import RewardLoopWorker
    from verl.experimental.reward_loop.reward_manager import NaiveRewardManager

    env = gym.make(ENV_ID)
    rows = [row for seed in range(4) for row in rl_rows(gold_episode(env, seed), ENV_ID, None, {})]
    wrong = [rows[(i + 1) % len(rows)]["gold_response"] for i in range(len(rows))]  # another row's gold turn
    rows, responses = rows + rows, [r["gold_response"] for r in rows] + wrong
    expected = [
        compute_score(r["data_source"], s, r["reward_model"]["ground_truth"], r["extra_info"])["score"]
        for r, s in zip(rows, responses, strict=True)
    ]
    n = len(expected) // 2
    assert expected[:n] == pytest.approx([r["gold_reward"] for r in rows[:n]])
    assert expected[n:] != pytest.approx(expected[:n])  # the wrong responses score differently

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        worker = RewardLoopWorker(_config(model_dir, name, path))  # loads the scorer exactly as a run does
        assert type(worker.reward_manager) is NaiveRewardManager
        assert worker.reward_manager.is_async_reward_score == (name == "compute_score_async")
        data = _batch(rows, responses, tiny_tokenizer())
        outputs = loop.run_until_complete(worker.compute_score_batch(data))
        threads = len(loop._default_executor._threads) if loop._default_executor else 0
    finally:
        sys.setswitchinterval(old)
        loop.close()
        asyncio.set_event_loop(None)
    assert [o["reward_score"] for o in outputs] == pytest.approx(expected)
    assert [o["reward_extra_info"]["reward_ftrl"] for o in outputs] == pytest.approx(expected)
    assert threads > 1  # the rows really were scored on several threads at once
