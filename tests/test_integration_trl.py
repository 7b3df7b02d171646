"""TRL 1.16 ``GRPOTrainer`` integration: schemas, reward replay, and real trainer runs on a tiny local model.

The trainer runs use a 2-layer Qwen2 model (hidden 64) with a byte-level BPE tokenizer trained here on toolgym
text and TRL's own Qwen2.5 chat template, so nothing is downloaded. A few optimizer steps of supervised warm start
on the gold trajectories make the random model emit real tool calls, so the runs exercise TRL's tool loop
(tool method -> toolgym step -> tool message -> next generation) and not only a text completion.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import pytest

import toolgym  # noqa: F401  (registers the envs)
from toolgym.calls import parse_action
from toolgym.export import env_kwargs_for, episode_rows, score_response
from toolgym.integrations import trl as T

FLIGHT = "ToolGym/FlightBooking-v0"


def _toolgym_ids() -> list[str]:
    return sorted(k for k in gym.envs.registry if k.startswith("ToolGym/"))


def _gold_completion(env_id: str, seed: int, inst) -> list[dict]:
    """The gold episode as TRL's ``completions`` would hold it, with each tool method called as TRL calls it."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    u = env.unwrapped
    completion = []
    for action in u.gold_actions():
        parsed = parse_action(action, u._tool_names, "c")
        if parsed.calls:
            calls = [T._tool_call(c.name, c.arguments) for c in parsed.calls]
            completion.append({"role": "assistant", "content": "", "tool_calls": calls})
            for c in parsed.calls:
                completion.append({"role": "tool", "name": c.name, "content": getattr(inst, c.name)(**c.arguments)})
        else:
            completion.append({"role": "assistant", "content": action})
    return completion


def _rl_rows(seeds) -> list[dict]:
    """toolgym.export rl rows of FlightBooking's train split, as ``toolgym export --format rl`` writes them."""
    kwargs = env_kwargs_for(FLIGHT)
    env = gym.make(FLIGHT, **kwargs)
    return [r for s in seeds for r in episode_rows(env, FLIGHT, "rl", "train", kwargs, s)]


def _env_for(turns: str, seed: int = 1):
    ds, factories = T.episode_dataset(FLIGHT, [seed], turns=turns)
    inst = factories[ds[0]["environment"]]()
    inst.reset(**ds[0])
    return ds, inst


# -- schemas and the class contract -----------------------------------------------------------------------------


def test_trl_renders_every_toolgym_schema_minus_the_lost_keywords():
    from transformers.utils import get_json_schema

    seen = 0
    for env_id in _toolgym_ids():
        env = gym.make(env_id)
        for seed in range(6):
            obs, _ = env.reset(seed=seed)
            inst = T.environment_class(obs["tools"])()
            for tool in obs["tools"]:
                got = get_json_schema(getattr(inst, tool["function"]["name"]))
                want = T.trl_visible_schema(tool)
                for s in (got, want):
                    s["function"]["parameters"]["required"] = sorted(s["function"]["parameters"].get("required", []))
                assert got == want, env_id
                seen += 1
    assert seen > 300


def test_enum_survives_and_pattern_is_the_only_loss_for_flight_booking():
    from transformers.utils import get_json_schema

    env = gym.make(FLIGHT)
    obs, _ = env.reset(seed=0)
    book = next(t for t in obs["tools"] if t["function"]["name"] == "book_flight")
    inst = T.environment_class(obs["tools"])()
    props = get_json_schema(inst.book_flight)["function"]["parameters"]["properties"]
    assert props["cabin"]["enum"] == ["economy", "premium", "business"]
    assert "pattern" in book["function"]["parameters"]["properties"]["flight_id"]
    assert "pattern" not in props["flight_id"]


def test_only_tools_and_reset_are_public_and_one_class_per_tool_set():
    import inspect

    ds, factories = T.episode_dataset(FLIGHT, range(6))
    assert len(factories) == len(set(ds["environment"])) > 1  # FlightBooking draws different tool sets per seed
    env = gym.make(FLIGHT)
    for row in ds:
        cls = factories[row["environment"]]
        public = {n for n, _ in inspect.getmembers(cls, predicate=inspect.isfunction) if not n.startswith("_")}
        obs, _ = env.reset(seed=row["seed"])
        assert public == {t["function"]["name"] for t in obs["tools"]} | {"reset"}
    assert T.environment_class(obs["tools"]) is T.environment_class(list(reversed(obs["tools"])))


def test_bad_arguments_reach_toolgym_feedback_not_python_errors():
    """The pattern TRL cannot show the model is still enforced by the env, as feedback."""
    _, inst = _env_for("grouped", seed=0)
    assert "(missing args)" in inst.get_flight_details()
    assert "(extra args)" in inst.get_flight_details(flight_id="FL2194", seats=3)
    assert "(schema violation)" in inst.get_flight_details(flight_id="nope")
    assert [name for name, _, _ in inst._live] == ["get_flight_details"] * 3


def test_importing_the_integration_imports_no_trainer_package():
    import subprocess
    import sys

    heavy = ("trl", "torch", "transformers", "datasets")
    code = f"import sys, toolgym.integrations.trl; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_reset_rejects_rows_that_do_not_match_their_environment():
    ds, factories = T.episode_dataset(FLIGHT, [0, 1])
    assert ds[0]["environment"] != ds[1]["environment"]
    with pytest.raises(ValueError, match="does not match its episode"):
        factories[ds[0]["environment"]]().reset(**ds[1])
    with pytest.raises(ValueError, match="no \\['env_id'\\]"):
        factories[ds[0]["environment"]]().reset(seed=0)
    row = dict(ds[0])
    row["prompt"] = [*row["prompt"][:-1], {"role": "user", "content": "something else"}]
    with pytest.raises(ValueError, match="differs from the example's prompt"):
        factories[ds[0]["environment"]]().reset(**row)
    with pytest.raises(ValueError, match="unknown turns"):
        T.environment_class([], turns="episode")


def test_prompts_keep_their_own_keys_through_arrow():
    rows = _rl_rows(range(2))
    ds, _ = T.turn_dataset(rows)
    later = ds[2]["prompt"]  # a prefix with a tool call in it
    calls = [m for m in later if m.get("tool_calls")]
    assert calls and isinstance(calls[0]["tool_calls"][0]["function"]["arguments"], dict)
    assert all("tool_calls" not in m for m in later if m["role"] != "assistant")
    args = calls[0]["tool_calls"][0]["function"]["arguments"]
    assert None not in args.values()


# -- the reward: replaying the rollout --------------------------------------------------------------------------


def test_grouped_replay_is_ftrl_per_turn_and_call_mode_is_per_call():
    """Measured: FlightBooking seed 1's gold episode returns 3.667 grouped (the env's own return) and 5.0 per call."""
    env = gym.make(FLIGHT)
    env.reset(seed=1)
    env_return = sum(env.step(a)[1] for a in env.unwrapped.gold_actions())
    got = {}
    for turns in T.TURN_MODES:
        _, inst = _env_for(turns)
        res = inst._score(_gold_completion(FLIGHT, 1, inst))
        assert res["live_mismatches"] == 0 and res["terminated"] and res["answer_correct"] == 1.0
        assert res["solve_f1"] == 1.0
        got[turns] = res["reward"]
    assert got["grouped"] == pytest.approx(env_return) == pytest.approx(11 / 3)
    assert got["call"] == pytest.approx(5.0)


def test_the_turn_limit_counts_turns_not_live_calls():
    """max_turns=2: the live env runs all four gold calls; the grouped replay stops after two turns, as the env."""
    ds, factories = T.episode_dataset(FLIGHT, [1], env_make_kwargs={"max_turns": 2})
    inst = factories[ds[0]["environment"]]()
    inst.reset(**ds[0])
    res = inst._score(_gold_completion(FLIGHT, 1, inst))
    env = gym.make(FLIGHT, max_turns=2)
    env.reset(seed=1)
    rewards = [env.step(a)[1] for a in env.unwrapped.gold_actions()[:2]]
    assert res["live_calls"] == 4 and res["live_mismatches"] == 0
    assert res["steps"] == 2 and not res["terminated"] and res["reward"] == pytest.approx(sum(rewards))


def test_unknown_tools_and_the_final_answer_are_stepped():
    _, inst = _env_for("grouped", seed=0)
    inst.get_flight_details(flight_id="FL2194")
    completion = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                T._tool_call("get_flight_details", {"flight_id": "FL2194"}),
                T._tool_call("teleport", {"to": "Mars"}),  # TRL never calls this: it is no method
            ],
        },
        {"role": "tool", "name": "get_flight_details", "content": "..."},
        {"role": "tool", "name": "teleport", "content": "{'error': 'Tool teleport not found.'}"},
        {"role": "assistant", "content": "I do not know."},
    ]
    res = inst._score(completion)
    env = gym.make(FLIGHT)
    env.reset(seed=0)
    _, r1, *_, info = env.step(completion[0])
    assert info["reward_components"]["n_unknown_tool"] == 1.0
    _, r2, term, *_ = env.step("I do not know.")
    assert term and res["terminated"] and res["reward"] == pytest.approx(r1 + r2)
    assert res["answer_correct"] == 0.0 and res["live_mismatches"] == 0


def test_episode_reward_signature_and_errors():
    _, inst = _env_for("grouped", seed=1)
    completion = _gold_completion(FLIGHT, 1, inst)
    logged = {}
    out = T.episode_reward(
        [completion, completion], environments=[inst, object()], log_metric=lambda k, v: logged.setdefault(k, v)
    )
    assert out[0] == pytest.approx(11 / 3) and out[1] is None
    assert logged["toolgym/solve_f1"] == 1.0
    with pytest.raises(ValueError, match="environment_factory"):
        T.episode_reward([completion])


def test_turn_reward_equals_the_gold_reward_of_each_rl_row():
    rows = _rl_rows(range(3))
    ds, _ = T.turn_dataset(rows)
    completions = [[{"role": "assistant", "content": r["gold_response"]}] for r in rows]
    got = T.turn_reward(completions, ds["data_source"], ds["ground_truth"])
    assert got == pytest.approx([r["gold_reward"] for r in rows])
    assert T.turn_reward(["<tool_call>{bad json</tool_call>"], ds["data_source"][:1], ds["ground_truth"][:1]) == [
        pytest.approx(score_response(rows[0], "<tool_call>{bad json</tool_call>")[0])
    ]
    with pytest.raises(ValueError, match="rl row"):
        T.turn_dataset([{"prompt": []}])


# -- real GRPOTrainer runs ----------------------------------------------------------------------------------------


def _tiny_model_and_tokenizer(episodes: list[tuple[list[dict], list[dict]]], warm_steps: int):
    """A 2-layer Qwen2 (hidden 64) and a BPE tokenizer learned from ``episodes`` (messages, tools), warm-started."""
    import torch
    import trl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

    def tokenizer(vocab_size: int, corpus: list[str]):
        # no regex pre-split: merges may cross word boundaries, so the repeated tool schemas become few tokens
        core = Tokenizer(models.BPE())
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        core.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        core.train_from_iterator(
            corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet)
        )
        tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
        tok.add_tokens(["<tool_call>", "</tool_call>"])
        tok.chat_template = template
        tok.padding_side = "left"
        return tok

    # bytes only, to render the chats; then the real vocabulary, learned from the rendered chats
    bytes_only = tokenizer(0, [])
    texts = [bytes_only.apply_chat_template(msgs, tools=tools, tokenize=False) for msgs, tools in episodes]
    tok = tokenizer(3000, texts)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    # supervised warm start on the gold turns (loss on everything after the prompt)
    batch = []
    for msgs, tools in episodes:
        head = tok.apply_chat_template(msgs[:2], tools=tools, add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(msgs, tools=tools, tokenize=False)
        ids = tok(full, add_special_tokens=False)["input_ids"]
        n_head = len(tok(head, add_special_tokens=False)["input_ids"])
        labels = [-100] * n_head + ids[n_head:]
        batch.append((torch.tensor([ids]), torch.tensor([labels])))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(warm_steps):
        for ids, labels in batch:
            loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    return model, tok


def _gold_messages(env_id: str, seed: int) -> tuple[list[dict], list]:
    """The gold dialogue, and its tools as TRL renders them (the environment class's bound tool methods)."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    for a in env.unwrapped.gold_actions():
        obs, *_ = env.step(a)
    inst = T.environment_class(obs["tools"])()
    return T.chat_messages(obs["messages"]), [getattr(inst, t["function"]["name"]) for t in obs["tools"]]


def _config(tmp_path, **kw):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=kw.pop("max_completion_length", 96),
        max_steps=2,
        learning_rate=1e-4,
        beta=0.0,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        temperature=0.7,
        **kw,
    )


def _train_logs(trainer) -> list[dict]:
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h]


@pytest.fixture(scope="module")
def warm_model():
    """One torch thread: on a shared 2-core machine two threads were measured 100x slower (spin contention)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _tiny_model_and_tokenizer([_gold_messages(FLIGHT, s) for s in (0, 1)], warm_steps=60)
    finally:
        torch.set_num_threads(threads)


def test_grpo_trainer_environment_factory_run(tmp_path, warm_model, monkeypatch):
    """Two GRPO steps on two FlightBooking seeds with different tool sets; each reward is the env's replay."""
    from trl import GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    model, tok = warm_model
    ds, factories = T.episode_dataset(FLIGHT, [0, 1])
    seen = []

    def episode_reward(completions, environments, **kw):
        out = T.episode_reward(completions, environments=environments, **kw)
        seen.extend(zip(completions, [e._spec["seed"] for e in environments], out, strict=True))
        return out

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=episode_reward,
        args=_config(tmp_path),
        train_dataset=ds,
        processing_class=tok,
        environment_factory=factories,
    )
    logs = _train_logs(trainer)
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    assert all(math.isfinite(h["rewards/episode_reward/mean"]) for h in logs)
    assert all(h["toolgym/live_mismatches"] == 0 for h in logs)
    assert sum(h["tools/call_frequency"] for h in logs) > 0  # the warm-started model called toolgym tools
    assert len(seen) == 8
    for completion, seed, reward in seen:  # an independent replay through a fresh env gives the same reward
        env = gym.make(FLIGHT)
        env.reset(seed=seed)
        total = 0.0
        for action in T._actions(completion, "grouped"):
            _, r, term, trunc, _ = env.step(action)
            total += r
            if term or trunc:
                break
        assert reward == pytest.approx(total)


def test_grpo_trainer_turn_level_run(tmp_path, warm_model, monkeypatch):
    """FTRL's setting: rl-export prefixes, one assistant turn per completion, scored by compute_score."""
    from trl import GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    model, tok = warm_model
    rows = _rl_rows((0, 1))[:4]
    ds, factories = T.turn_dataset(rows)
    seen = []

    def turn_reward(completions, data_source, ground_truth, **kw):
        out = T.turn_reward(completions, data_source, ground_truth, **kw)
        seen.extend(zip(completions, ground_truth, out, strict=True))
        return out

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=turn_reward,
        args=_config(tmp_path, max_completion_length=40, max_tool_calling_iterations=0),
        train_dataset=ds,
        processing_class=tok,
        environment_factory=factories,
    )
    logs = _train_logs(trainer)
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    assert all(math.isfinite(h["rewards/turn_reward/mean"]) for h in logs)
    assert len(seen) == 8
    by_gt = {r["reward_model"]["ground_truth"]: r for r in rows}
    for completion, gt, reward in seen:
        assert len([m for m in completion if m["role"] == "assistant"]) == 1  # no tool loop: one turn
        assert reward == pytest.approx(score_response(by_gt[gt], T._first_turn(completion))[0])
    parsed = [r for c, _, r in seen if c[0].get("tool_calls")]
    assert parsed and max(parsed) > 0  # calls TRL parsed into dicts are scored by toolgym (and can solve subtasks)


def test_sft_trainer_trains_on_the_sft_export_as_rendered_by_the_template(tmp_path, warm_model):
    """The sft parquet goes to SFTTrainer as it is: TRL's tokenized text is the template's rendering of the
    exported chat (each call with exactly its own dict arguments), and a step trains."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    from toolgym.export import export, read_rows

    model, tok = warm_model
    res = export(FLIGHT, "sft", 2, tmp_path / "sft", seed=0, kind="parallel_single_hop")
    rows = read_rows(res.path)
    ds = datasets.load_dataset("parquet", data_files=str(res.parquet), cache_dir=str(tmp_path / "hf"))["train"]
    args = SFTConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=1,
        max_length=None,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    for row, item in zip(rows, trainer.train_dataset, strict=True):
        text = tok.decode(item["input_ids"])
        want = tok.apply_chat_template(row["messages"], tools=json.loads(row["tools"]), tokenize=False)
        assert text == want
        calls = [c for m in row["messages"] for c in m.get("tool_calls") or []]
        parsed = parse_action(text.split("<|im_start|>assistant")[1].split("<|im_end|>")[0])
        assert [(c.name, c.arguments) for c in parsed.calls] == [
            (c["function"]["name"], c["function"]["arguments"]) for c in calls[: len(parsed.calls)]
        ] and len(parsed.calls) > 1
    logs = [h for h in (trainer.train().metrics, *trainer.state.log_history) if "loss" in h or "train_loss" in h]
    assert logs and all(math.isfinite(h.get("loss", h.get("train_loss"))) for h in logs)


def test_turn_dataset_refuses_rows_whose_prompt_lists_the_tools_as_text():
    env = gym.make(FLIGHT, **env_kwargs_for(FLIGHT, "train"))
    rows = episode_rows(env, FLIGHT, "rl", "train", env_kwargs_for(FLIGHT, "train"), 0, {"tools_in_prompt": "hermes"})
    with pytest.raises(ValueError, match="tools-in-prompt template"):
        T.turn_dataset(rows)
