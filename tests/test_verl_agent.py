"""verl's agent loop ``toolgym_agent`` driven by verl's own classes on CPU, with a scripted server manager.

The loop is registered the way a verl run registers it (the yaml at ``agent_loop_config_path``, instantiated with
hydra like ``AgentLoopWorker._run_agent_loop``) and also run end to end through a real ``AgentLoopWorker``
(``generate_sequences``: agent selection by ``default_agent_loop``, padding, ``rm_scores``). The scripted server
follows ``LLMServerClient.generate`` and answers each turn with the tokens of a fixed action, like a model would.
"""

from __future__ import annotations

import asyncio
import json
import os

import gymnasium as gym
import pytest
from verl_tiny import save_tiny_model_dir, tiny_tokenizer

import toolgym  # noqa: F401
from toolgym.export import gold_episode, rl_rows

ENV_ID = "ToolGym/FlightBooking-v0"
WRONG = [
    '<tool_call>\n{"name": "get_flight_details", "arguments": {"flight_id": "FL0000"}}\n</tool_call>',
    "I could not find that flight.",
]


class ScriptedServer:
    """Follows ``LLMServerClient.generate``: token ids in, ``TokenOutput`` out; each episode's turns scripted.

    An episode is told apart by its first prompt; every later call must extend the previous context (the agent loop
    keeps one continuous token stream), which this checks."""

    def __init__(self, tokenizer, scripts: dict[tuple[int, ...], list[str]]):
        self.tokenizer = tokenizer
        self.scripts = scripts
        self.turn: dict[str, int] = {}
        self.last: dict[str, list[int]] = {}
        self.sampling_params: list[dict] = []

    async def generate(
        self,
        request_id,
        *,
        prompt_ids,
        sampling_params,
        image_data=None,
        video_data=None,
        audio_data=None,
        mm_processor_kwargs=None,
        **kwargs,
    ):
        from verl.workers.rollout.replica import TokenOutput

        await asyncio.sleep(0)  # let other episodes interleave, as with a real server
        previous = self.last.get(request_id)
        assert previous is None or prompt_ids[: len(previous)] == previous, "context was not extended"
        # the longest matching first prompt: a later turn's row extends its episode's first prompt
        key = max((k for k in self.scripts if tuple(prompt_ids[: len(k)]) == k), key=len)
        turn = self.turn.get(request_id, 0)
        self.turn[request_id] = turn + 1
        ids = [*self.tokenizer.encode(self.scripts[key][turn], add_special_tokens=False), self.tokenizer.eos_token_id]
        ids = ids[: sampling_params.get("max_tokens", len(ids))]  # the servers stop at max_tokens
        self.last[request_id] = list(prompt_ids) + ids
        self.sampling_params.append(dict(sampling_params))
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids), stop_reason="completed")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """verl's own trainer config (hydra compose of ppo_trainer.yaml) with the overrides a toolgym run sets."""
    import verl
    from hydra import compose, initialize_config_dir

    from toolgym.integrations.verl_agent import AGENT_LOOP_YAML

    tmp = tmp_path_factory.mktemp("verl_agent")
    model_dir = save_tiny_model_dir(tmp / "model")
    overrides = [
        f"actor_rollout_ref.model.path={model_dir}",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={AGENT_LOOP_YAML}",  # the shipped file
        "actor_rollout_ref.rollout.agent.default_agent_loop=toolgym_agent",
        "actor_rollout_ref.rollout.multi_turn.enable=true",
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=8",
        "actor_rollout_ref.rollout.prompt_length=8192",
        "actor_rollout_ref.rollout.response_length=8192",
        "actor_rollout_ref.rollout.calculate_log_probs=true",
        "actor_rollout_ref.rollout.name=vllm",  # required by the config schema; no engine is started
    ]
    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides)
    env = gym.make(ENV_ID)
    episodes = [gold_episode(env, seed) for seed in (0, 1)]
    rows = [row for ep in episodes for row in rl_rows(ep, ENV_ID, None, {})]
    return {"config": config, "rows": rows, "tokenizer": tiny_tokenizer()}


def _loop(setup, server):
    """The agent loop exactly as ``AgentLoopWorker`` builds it: registry entry from the yaml, hydra instantiate."""
    import hydra
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = setup["config"]
    (entry,) = OmegaConf.load(config.actor_rollout_ref.rollout.agent.agent_loop_config_path)
    assert entry.name == config.actor_rollout_ref.rollout.agent.default_agent_loop
    return hydra.utils.instantiate(
        config=entry,
        trainer_config=DictConfigWrap(config=config),
        server_manager=server,
        tokenizer=setup["tokenizer"],
        processor=None,
        hf_model_type="qwen2",
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.data),
        tools=ToolListWrap([]),
    )


def _sample(row):
    """A row as verl's RLHFDataset hands it to an agent loop (its columns plus raw_prompt/index/tools_kwargs)."""
    return {**row, "raw_prompt": row["prompt"], "index": 0, "tools_kwargs": {}, "interaction_kwargs": {}}


def _play(row, actions):
    """The episode played in-process from the row's prefix: per-turn rewards and each turn's tool messages."""
    env = gym.make(ENV_ID)
    prefix = json.loads(row["prefix"])
    env.reset(seed=row["seed"], options={"prefix": prefix})
    rewards, tool_turns = [], []
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        tool_turns.append([m["content"] for m in info["new_messages"][1:]])
        if terminated or truncated:
            break
    return rewards, tool_turns


def _runs(mask):
    """(value, start, end) runs of a 0/1 mask."""
    out, start = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            out.append((mask[start], start, i))
            start = i
    return out


def _check_output(setup, row, out, actions):
    tok = setup["tokenizer"]
    prompt = tok.apply_chat_template(
        row["prompt"], tools=json.loads(row["tools"]), tokenize=False, add_generation_prompt=True
    )
    assert out.prompt_ids == tok.encode(prompt, add_special_tokens=False)
    assert len(out.response_ids) == len(out.response_mask) == len(out.response_logprobs)
    rewards, tool_turns = _play(row, actions)
    runs = _runs(out.response_mask)
    model_runs = [out.response_ids[a:b] for v, a, b in runs if v == 1]
    obs_runs = [tok.decode(out.response_ids[a:b]) for v, a, b in runs if v == 0]
    assert model_runs == [[*tok.encode(a, add_special_tokens=False), tok.eos_token_id] for a in actions[: len(rewards)]]
    assert len(obs_runs) == len(rewards) - 1  # tool tokens between turns, none after the final turn
    for text, contents in zip(obs_runs, tool_turns, strict=False):
        assert text.startswith("\n<|im_start|>user\n<tool_response>") and text.endswith("<|im_start|>assistant\n")
        assert all(c in text for c in contents) and contents
    for v, a, b in runs:  # logprobs: the model's for its tokens, 0 for observations
        assert out.response_logprobs[a:b] == ([-0.5] * (b - a) if v else [0.0] * (b - a))
    assert out.extra_fields["turn_scores"] == pytest.approx(rewards)
    assert out.reward_score == pytest.approx(sum(rewards))
    assert out.num_turns == 2 * len(rewards)
    return rewards


def _gold_actions(rows, row):
    """The gold continuation of ``row``: its own gold turn and those of the later rows of the same episode."""
    return [r["gold_response"] for r in rows if r["seed"] == row["seed"] and r["turn"] >= row["turn"]]


def _run_all(setup, samples_actions, response_length=None, max_assistant_turns=None):
    """Every episode in flight at once on one event loop, as ``AgentLoopWorker.generate_sequences`` runs them."""
    tok = setup["tokenizer"]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        scripts, loops = {}, []
        for row, actions in samples_actions:
            prompt = tok.apply_chat_template(
                row["prompt"], tools=json.loads(row["tools"]), tokenize=False, add_generation_prompt=True
            )
            scripts[tuple(tok.encode(prompt, add_special_tokens=False))] = actions
        server = ScriptedServer(tok, scripts)
        loops = [_loop(setup, server) for _ in samples_actions]
        for lp in loops:
            lp.response_length = response_length or lp.response_length
            lp.max_assistant_turns = max_assistant_turns or lp.max_assistant_turns
        params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True}
        outs = loop.run_until_complete(
            asyncio.gather(
                *(lp.run(params, **_sample(row)) for lp, (row, _) in zip(loops, samples_actions, strict=True))
            )
        )
        assert all({k: v for k, v in p.items() if k != "max_tokens"} == params for p in server.sampling_params)
        assert all(p["max_tokens"] >= 1 for p in server.sampling_params)
        return outs
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def test_gold_episodes_reward_equals_the_gold_return(setup):
    rows = setup["rows"]
    starts = [r for r in rows if r["turn"] == 0] + [next(r for r in rows if r["turn"] == 1)]
    work = [(row, _gold_actions(rows, row)) for row in starts]
    outs = _run_all(setup, work)
    for (row, actions), out in zip(work, outs, strict=True):
        rewards = _check_output(setup, row, out, actions)
        gold = [r["gold_reward"] for r in rows if r["seed"] == row["seed"] and r["turn"] >= row["turn"]]
        assert rewards == pytest.approx(gold)  # the env's per-turn rewards are the exported gold rewards
        assert out.extra_fields["reward_extra_info"]["toolgym_done"] == 1.0
        assert [c["reward_ftrl"] for c in out.extra_fields["toolgym_reward_components"]] == pytest.approx(gold)
    assert min(len(out.extra_fields["turn_scores"]) for out in outs) > 1  # multi-turn episodes


def test_wrong_episode_scores_its_own_actions(setup):
    rows = setup["rows"]
    row = rows[0]
    (out,) = _run_all(setup, [(row, WRONG)])
    rewards = _check_output(setup, row, out, WRONG)
    gold_return = sum(r["gold_reward"] for r in rows if r["seed"] == row["seed"])
    assert len(rewards) == 2 and out.reward_score < gold_return


def test_bad_row_gets_a_clear_error(setup):
    from toolgym.export import RestoreError
    from toolgym.integrations.verl_agent import episode_spec

    with pytest.raises(ValueError, match="env_id and seed"):
        episode_spec({"reward_model": {"ground_truth": "{}"}, "raw_prompt": []})
    row = dict(setup["rows"][0])
    row["prompt"] = [{"role": "user", "content": "not this scenario"}]
    with pytest.raises(RestoreError, match="differ from the row's prompt"):
        _run_all(setup, [(row, WRONG)])


def test_agent_loop_worker_runs_toolgym_episodes_end_to_end(setup):
    """verl's real ``AgentLoopWorker.generate_sequences``: rl rows carry no ``agent_name``, so
    ``default_agent_loop=toolgym_agent`` picks the loop; the padded batch carries the episode return in
    ``rm_scores`` at the last response token and FTRL's turn rewards per sample."""
    import numpy as np
    import torch
    from verl import DataProto
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    rows, tok = setup["rows"], setup["tokenizer"]
    starts = [r for r in rows if r["turn"] == 0]
    scripts = {}
    for row in starts:
        prompt = tok.apply_chat_template(
            row["prompt"], tools=json.loads(row["tools"]), tokenize=False, add_generation_prompt=True
        )
        scripts[tuple(tok.encode(prompt, add_special_tokens=False))] = _gold_actions(rows, row)
    server = ScriptedServer(tok, scripts)
    # the columns RLHFDataset hands over for an rl row (prompt -> raw_prompt; extra_info.index -> index)
    columns = ("data_source", "reward_model", "extra_info", "env_id", "seed", "prefix")
    non_tensors = {k: np.array([r[k] for r in starts], dtype=object) for k in columns}
    non_tensors["raw_prompt"] = np.array([r["prompt"] for r in starts], dtype=object)
    non_tensors["index"] = np.arange(len(starts))
    data = DataProto.from_dict(
        tensors={"dummy_tensor": torch.zeros(len(starts), 1, dtype=torch.uint8)}, non_tensors=non_tensors
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        worker = AgentLoopWorker(setup["config"], server)
        out = loop.run_until_complete(worker.generate_sequences(data))
    finally:
        loop.close()
        asyncio.set_event_loop(None)

    assert list(out.non_tensor_batch["agent_name"]) == ["toolgym_agent"] * len(starts)
    returns = [sum(r["gold_reward"] for r in rows if r["seed"] == s["seed"]) for s in starts]
    assert out.batch["rm_scores"].sum(-1).tolist() == pytest.approx(returns)
    prompt_len = out.batch["prompts"].shape[1]
    last = out.batch["attention_mask"][:, prompt_len:].sum(-1) - 1
    assert out.batch["rm_scores"][torch.arange(len(starts)), last].tolist() == pytest.approx(returns)
    for i, row in enumerate(starts):
        gold = [r["gold_reward"] for r in rows if r["seed"] == row["seed"]]
        assert out.non_tensor_batch["turn_scores"][i] == pytest.approx(gold)
        n_model = sum(len(tok.encode(a, add_special_tokens=False)) + 1 for a in _gold_actions(rows, row))
        assert int(out.batch["response_mask"][i].sum()) == n_model  # only the model's tokens are trained on
    assert out.meta_info["reward_extra_keys"] == ["score", "toolgym_turns", "toolgym_done", "toolgym_n_unsolved"]
    assert out.non_tensor_batch["score"].tolist() == pytest.approx(returns)


def _through_verl(config, tok, parquet, rows):
    """``parquet`` -> verl's ``RLHFDataset`` + ``collate_fn`` -> ``DataProto`` -> ``AgentLoopWorker`` with a scripted
    server playing each row's gold continuation: the output batch, and each sample's expected return (the gold
    rewards summed from its row's turn on)."""
    from verl import DataProto
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    dataset = RLHFDataset(data_files=[str(parquet)], tokenizer=tok, config=config.data, processor=None)
    assert len(dataset) == len(rows)  # no prompt filtered out as overlong
    data = DataProto.from_single_dict(collate_fn([dataset[i] for i in range(len(dataset))]))
    scripts = {}
    for row in rows:
        prompt = tok.apply_chat_template(
            row["prompt"], tools=json.loads(row["tools"]), tokenize=False, add_generation_prompt=True
        )
        scripts[tuple(tok.encode(prompt, add_special_tokens=False))] = _gold_actions(rows, row)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        out = loop.run_until_complete(AgentLoopWorker(config, ScriptedServer(tok, scripts)).generate_sequences(data))
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    by_index = {r["extra_info"]["index"]: r for r in rows}
    expected = []
    for index in out.non_tensor_batch["index"]:
        row = by_index[int(index)]
        expected.append(sum(r["gold_reward"] for r in rows if r["seed"] == row["seed"] and r["turn"] >= row["turn"]))
    return out, expected


def test_exported_parquet_through_rlhf_dataset_and_agent_loop_worker(setup, tmp_path):
    """The whole data path of a run: ``toolgym.export`` parquet -> verl's ``RLHFDataset`` + ``collate_fn`` ->
    ``DataProto.from_single_dict`` -> ``AgentLoopWorker``: the rl rows work as written (Arrow's None fillers and all),
    and the episode returns equal the exported gold rewards summed from each row's turn on."""
    from toolgym.export import export, read_rows

    res = export(ENV_ID, "rl", 2, tmp_path, split=None)
    assert res.parquet is not None
    out, expected = _through_verl(setup["config"], setup["tokenizer"], res.parquet, read_rows(res.path))
    assert out.batch["rm_scores"].sum(-1).tolist() == pytest.approx(expected)


def test_response_budget_caps_the_episode(setup):
    """A turn may generate only what is left of ``rollout.response_length``: the cut text is what the env scores,
    the episode stops there, and its return is the reward of the turns actually played."""
    rows, tok = setup["rows"], setup["tokenizer"]
    row = rows[0]
    actions = _gold_actions(rows, row)
    budget = len(tok.encode(actions[0], add_special_tokens=False)) // 2
    (out,) = _run_all(setup, [(row, actions)], response_length=budget)
    cut = tok.decode(tok.encode(actions[0], add_special_tokens=False)[:budget])
    rewards, _ = _play(row, [cut])
    assert out.response_ids == tok.encode(cut, add_special_tokens=False) and out.response_mask == [1] * budget
    assert out.extra_fields["turn_scores"] == pytest.approx(rewards) and out.reward_score == pytest.approx(rewards[0])
    assert rewards[0] < row["gold_reward"]  # half a tool call is not the gold call
    assert out.extra_fields["reward_extra_info"]["toolgym_turns"] == 1.0  # nothing is played past the budget


def test_one_turn_mode_is_ftrl_turn_level_scoring(setup):
    """With ``multi_turn.max_assistant_turns=1`` every rl row is one FTRL turn-level sample: the prompt carries the
    row's tool schemas (verl's ``single_turn_agent`` renders none) and the reward equals ``compute_score``."""
    from toolgym.export import compute_score

    rows = setup["rows"]
    outs = _run_all(setup, [(row, [row["gold_response"]]) for row in rows], max_assistant_turns=1)
    for row, out in zip(rows, outs, strict=True):
        expected = compute_score(
            row["data_source"], row["gold_response"], row["reward_model"]["ground_truth"], row["extra_info"]
        )["score"]
        assert out.reward_score == pytest.approx(expected) == pytest.approx(row["gold_reward"])
        assert out.response_mask == [1] * len(out.response_ids)


def test_rows_name_their_agent_loop_when_exported_with_agent_name(setup, tmp_path):
    """``--agent-name toolgym_agent`` writes verl's per-row ``agent_name`` column: verl's ``AgentLoopWorker`` then
    runs toolgym episodes for those rows even with its default loop left as ``single_turn_agent`` (so toolgym rows
    can share a run with other data), and the returns are the gold ones. A file keeps the option it started with."""
    import copy

    from toolgym.export import ExportError, export, read_rows

    res = export(ENV_ID, "rl", 1, tmp_path, split=None, agent_name="toolgym_agent")
    rows = read_rows(res.path)
    assert {r["agent_name"] for r in rows} == {"toolgym_agent"}
    with pytest.raises(ExportError, match="agent_name"):
        export(ENV_ID, "rl", 2, tmp_path, split=None)  # the same file without the option
    with pytest.raises(ExportError, match="rl rows"):
        export(ENV_ID, "sft", 1, tmp_path, split=None, agent_name="toolgym_agent")
    config = copy.deepcopy(setup["config"])
    config.actor_rollout_ref.rollout.agent.default_agent_loop = "single_turn_agent"
    out, expected = _through_verl(config, setup["tokenizer"], res.parquet, rows)
    assert set(out.non_tensor_batch["agent_name"]) == {"toolgym_agent"}
    assert out.batch["rm_scores"].sum(-1).tolist() == pytest.approx(expected)
