"""Dataset export: sft and rl rows load with `datasets`, rl rows score responses through the restored env,
exports resume without duplicates, and sft rows replay through a fresh env."""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import toolgym  # noqa: F401
from toolgym.cli import main
from toolgym.export import (
    ExportError,
    RestoreError,
    compute_score,
    decode_row,
    env_kwargs_for,
    export,
    read_rows,
    restore,
    score_response,
)
from toolgym.packs import load_scenarios
from toolgym.prompts import chat_arguments
from toolgym.registry import manifest_for, registered_ids
from toolgym.suites import taubench as tb

datasets = pytest.importorskip("datasets")
FB = "ToolGym/FlightBooking-v0"
TAU_DOMAIN = Path(__file__).parent / "data" / "taubench_retail"
TAU = "ToolGym/TauBench-taubench_retail-v0"
SFT_COLUMNS = {
    *("messages", "tools", "env_id", "scenario_id", "kind", "split", "seed", "env_kwargs", "answer", "n_turns"),
    *("arguments", "one_call_per_turn", "n_multi_call_turns"),
}
RL_COLUMNS = {
    *("data_source", "prompt", "ability", "reward_model", "extra_info"),
    *("tools", "unsolved_set", "answer", "solve_rate"),
    *("env_id", "env_kwargs", "split", "seed", "turn", "prefix", "scenario_id", "kind", "n_turns"),
    *("gold_response", "gold_reward", "arguments", "tools_in_prompt", "env_class", "reward_spec"),
    *("one_call_per_turn", "n_multi_call_turns"),
}


def load(path, tmp_path, kind="json"):
    return datasets.load_dataset(kind, data_files=str(path), cache_dir=str(tmp_path / "hf-cache"))["train"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    sft = export(FB, "sft", 6, out, split="train", seed=10)
    rl = export(FB, "rl", 6, out, split="train", seed=10)
    return out, sft, rl


def test_sft_and_rl_load_with_datasets(exported, tmp_path):
    _, sft, rl = exported
    ds_sft = load(sft.path, tmp_path)
    ds_rl = load(rl.path, tmp_path)
    assert len(ds_sft) == 6 and set(ds_sft.column_names) == SFT_COLUMNS
    assert set(ds_rl.column_names) == RL_COLUMNS
    assert len(ds_rl) == sum(ds_sft["n_turns"]) == rl.rows_total  # one rl row per assistant turn
    assert sorted(ds_sft["seed"]) == list(range(10, 16)) and set(ds_sft["split"]) == {"train"}
    for kind in ("json", "parquet"):
        if kind == "parquet":
            assert sft.parquet and rl.parquet
            ds_sft, ds_rl = load(sft.parquet, tmp_path, "parquet"), load(rl.parquet, tmp_path, "parquet")
            assert len(ds_sft) == 6 and len(ds_rl) == rl.rows_total
        row = decode_row(ds_sft[0])
        roles = [m["role"] for m in row["messages"]]
        assert roles[:3] == ["system", "user", "assistant"] and roles[-1] == "assistant" and "tool" in roles
        call = row["messages"][2]["tool_calls"][0]
        assert call["type"] == "function" and isinstance(call["function"]["arguments"], dict)
        tool_msg = next(m for m in row["messages"] if m["role"] == "tool")
        assert {"tool_call_id", "name", "content"} <= set(tool_msg)
        assert all(t["type"] == "function" for t in row["tools"])
        assert json.loads(row["env_kwargs"]) if isinstance(row["env_kwargs"], str) else row["env_kwargs"]
        r = ds_rl[0]
        assert r["reward_model"]["style"] == "rule" and r["data_source"] == FB and r["ability"] == "tool_use"
        assert r["extra_info"]["index"] == 0 and r["turn"] == 0 and json.loads(r["prefix"]) == []
        assert [m["role"] for m in r["prompt"]] == ["system", "user"]
        assert isinstance(json.loads(r["unsolved_set"]), dict)
        later = next(r for r in ds_rl if r["turn"] > 0)  # a prompt with tool calls (Arrow's None fillers in parquet)
        assert score_response(later, later["gold_response"])[0] == pytest.approx(later["gold_reward"])


def test_score_response_gold_is_maximal_and_wrong_is_lower(exported, tmp_path):
    _, _, rl = exported
    rows = list(load(rl.path, tmp_path))
    assert any(r["turn"] > 0 for r in rows)
    for row in rows:
        gold, info = score_response(row, row["gold_response"])
        assert gold == pytest.approx(row["gold_reward"])
        comp = info["reward_components"]
        if comp["n_calls"]:  # every gold call solves a sub-answer: 2k/(k+1), the best a k-call turn can get
            k = comp["n_calls"]
            assert comp["n_solved_now"] == k and gold == pytest.approx(2 * k / (k + 1))
            wrong = "I am not sure."
        else:  # the final answer with everything found: 1/(1+0)
            assert gold == 1.0 and info["terminated"]
            wrong = "Sorry, I could not find it."
        bad, bad_info = score_response(row, wrong)
        assert bad < gold and bad_info["reward_components"]["reward_ftrl"] == bad
        if comp["n_calls"]:  # one redundant call on top of the gold ones: 2k/(k+2)
            extra = row["gold_response"][row["gold_response"].rindex("<tool_call>") :]
            padded, _ = score_response(row, row["gold_response"] + "\n" + extra)
            assert padded == pytest.approx(2 * k / (k + 2)) and padded < gold
        assert score_response(row, "")[0] == -0.5


def test_restore_is_exact_and_verl_reward_function(exported):
    _, _, rl = exported
    rows = read_rows(rl.path)
    row = next(r for r in rows if r["turn"] == 1)
    env = restore(row)
    assert chat_arguments(env.unwrapped._messages, "dict") == row["prompt"]
    assert env.unwrapped.tracker.unsolved_set() == json.loads(row["unsolved_set"])
    tampered = {**row, "unsolved_set": json.dumps({"get_booking": ["nothing"]})}
    with pytest.raises(RestoreError):
        restore(tampered)
    # verl calls compute_score(data_source, solution_str, ground_truth, extra_info)
    truth = row["reward_model"]["ground_truth"]
    out = compute_score(row["data_source"], row["gold_response"], truth, row["extra_info"])
    assert out["score"] == pytest.approx(row["gold_reward"]) and "n_solved_now" in out
    verl_row = {k: row[k] for k in ("data_source", "prompt", "ability", "reward_model", "extra_info")}
    assert score_response(verl_row, row["gold_response"])[0] == pytest.approx(row["gold_reward"])


def test_resume_appends_only_missing_rows_and_repairs_truncation(tmp_path):
    for fmt in ("sft", "rl"):
        first = export(FB, fmt, 3, tmp_path, seed=0)
        second = export(FB, fmt, 5, tmp_path, seed=0)
        rows = read_rows(second.path)
        keys = [(r["seed"], r.get("turn")) for r in rows]
        assert len(keys) == len(set(keys)) == second.rows_total == first.rows_total + second.rows_written
        assert {r["seed"] for r in rows} == set(range(5))
        assert export(FB, fmt, 5, tmp_path, seed=0).rows_written == 0  # idempotent
        # an interrupted run: the last row cut mid-line
        data = second.path.read_bytes()
        second.path.write_bytes(data[: len(data) - 25])
        third = export(FB, fmt, 5, tmp_path, seed=0)
        assert third.rows_written == 1 and third.rows_total == second.rows_total
        assert second.path.read_bytes() == data  # the same row, written again whole
    # a partially written rl episode (its last turn missing) is completed, not duplicated
    lines = second.path.read_bytes().splitlines(keepends=True)
    second.path.write_bytes(b"".join(lines[:-1]))
    assert export(FB, "rl", 5, tmp_path, seed=0).rows_written == 1
    assert len(read_rows(second.path)) == len(lines)
    with pytest.raises(ExportError, match="env kwargs"):
        export(FB, "rl", 5, tmp_path, seed=0, kind="multi_hop")


def test_sft_rows_replay_through_a_fresh_env(exported, tmp_path):
    _, sft, _ = exported
    for row in load(sft.path, tmp_path):
        row = decode_row(row)
        env = gym.make(row["env_id"], **row["env_kwargs"])
        obs, info = env.reset(seed=row["seed"])
        assert info["scenario_id"] == row["scenario_id"]
        for msg in row["messages"][len(obs["messages"]) :]:
            if msg["role"] == "assistant":
                obs, _, terminated, _, _ = env.step(msg)
        assert terminated and chat_arguments(obs["messages"]) == row["messages"]
        assert env.unwrapped.episode_metrics()["solve_f1"] == 1.0


def test_parquet_keeps_each_calls_own_arguments(exported, tmp_path):
    """A struct column would give every call the union of all calls' argument keys (None-filled): Json does not."""
    _, sft, rl = exported
    for res in (sft, rl):
        col = "messages" if res is sft else "prompt"
        want = [r[col] for r in read_rows(res.path)]
        got = list(load(res.parquet, tmp_path, "parquet")[col])
        assert got == want
    calls = [c for r in read_rows(sft.path) for m in r["messages"] for c in m.get("tool_calls") or []]
    assert len({tuple(sorted(c["function"]["arguments"])) for c in calls}) > 1  # the keys do differ between calls


def test_argument_strings_and_tools_in_prompt_options(tmp_path):
    sft = export(FB, "sft", 2, tmp_path, seed=3, arguments="json", parquet=False)
    calls = [c for r in read_rows(sft.path) for m in r["messages"] for c in m.get("tool_calls") or []]
    assert calls and all(isinstance(json.loads(c["function"]["arguments"]), dict) for c in calls)
    with pytest.raises(ExportError, match="arguments='json'"):
        export(FB, "sft", 3, tmp_path, seed=3)  # a file keeps the options it was started with
    rl = export(FB, "rl", 2, tmp_path, seed=3, tools_in_prompt="hermes", parquet=False)
    rows = read_rows(rl.path)
    assert any(r["turn"] > 0 for r in rows)
    for row in rows:
        prompt = row["prompt"]
        assert prompt[0]["role"] == "system" and "<tools>" in prompt[0]["content"]
        for tool in json.loads(row["tools"]):
            assert json.dumps(tool, ensure_ascii=False) in prompt[0]["content"]
        assert {m["role"] for m in prompt} <= {"system", "user", "assistant"}  # calls and results as text
        assert all("tool_calls" not in m for m in prompt)
        assert row["extra_info"]["tools_in_prompt"] == "hermes"
        assert score_response(row, row["gold_response"])[0] == pytest.approx(row["gold_reward"])  # restore checks
        assert row["reward_spec"] == {"method": "rule", "ground_truth": row["reward_model"]["ground_truth"]}
        assert row["env_class"] == "toolgym"
    with pytest.raises(ExportError, match="tools_in_prompt"):
        export(FB, "rl", 2, tmp_path, seed=3, tools_in_prompt="xml")


def test_split_is_passed_through(tmp_path):
    res = export(FB, "sft", 4, tmp_path, split="test", seed=0, kind="single_hop")
    rows = read_rows(res.path)
    assert res.path.name == "FlightBooking-v0.test.sft.jsonl"
    assert all(r["split"] == "test" and json.loads(r["env_kwargs"])["split"] == "test" for r in rows)
    assert {r["kind"] for r in rows} == {"single_hop"}


def test_ftrl_records_round_trip_and_static_pack_limits(tmp_path):
    res = export("ToolGym/FTRLSample-v0", "ftrl", 3, tmp_path)
    scenarios = load_scenarios(res.path, fmt="ftrl")
    assert len(scenarios) == 3 and all(s.subtasks for s in scenarios)
    rl = export("ToolGym/FTRLSample-v0", "rl", 2, tmp_path)  # no gold calls: the opening turn only
    rows = read_rows(rl.path)
    assert len(rows) == 2 and all(r["gold_response"] is None for r in rows)
    assert score_response(rows[0], "no idea")[1]["reward_components"]["reward_ftrl"] == 0.0
    with pytest.raises(ExportError, match="no gold calls"):
        export("ToolGym/FTRLSample-v0", "sft", 1, tmp_path)
    with pytest.raises(ExportError, match="world state"):
        export(FB, "ftrl", 1, tmp_path)
    assert not (tmp_path / "FlightBooking-v0.train.ftrl.jsonl").exists()


def test_cli_export(tmp_path):
    cmd = [sys.executable, "-m", "toolgym.cli", "export", FB, "--format", "rl", "--episodes", "2"]
    res = subprocess.run([*cmd, "--out", str(tmp_path), "--kind", "multi_hop"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "rows written" in res.stdout
    rows = read_rows(tmp_path / "FlightBooking-v0.train.rl.jsonl")
    assert {r["kind"] for r in rows} == {"multi_hop"} and {r["seed"] for r in rows} == {0, 1}
    bad = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "env kwargs" in bad.stderr


def test_compute_score_concurrent_equals_sequential(exported):
    """Trainers (verl's reward manager) score a whole batch at once from a thread pool: no env may be shared."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    _, _, rl = exported
    rows = read_rows(rl.path)
    rng = random.Random(0)
    jobs = []
    for row in rows:  # the gold turn and a wrong one per row
        jobs.append((row, row["gold_response"]))
        jobs.append((row, rng.choice(rows)["gold_response"]))
    jobs *= 4

    def score(job):
        row, response = job
        return compute_score(row["data_source"], response, row["reward_model"]["ground_truth"], row["extra_info"])[
            "score"
        ]

    sequential = [score(j) for j in jobs]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            concurrent = list(pool.map(score, jobs))
    finally:
        sys.setswitchinterval(old)
    assert concurrent == sequential
    assert any(s > 0 for s in sequential) and any(s <= 0 for s in sequential)


def test_verl_scorer_loads_by_file_path(exported):
    """verl loads ``custom_reward_function.path`` with spec_from_file_location + exec_module, unregistered."""
    import asyncio
    import importlib.util

    import toolgym.integrations.verl as by_name

    spec = importlib.util.spec_from_file_location("custom_module", by_name.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, _, rl = exported
    row = read_rows(rl.path)[0]
    args = (row["data_source"], row["gold_response"], row["reward_model"]["ground_truth"], row["extra_info"])
    assert module.compute_score(*args)["score"] == pytest.approx(row["gold_reward"])
    assert asyncio.run(module.compute_score_async(*args))["score"] == pytest.approx(row["gold_reward"])


# -- every id family: procedural packs, mixtures, static packs, suites (BFCL where installed), τ-bench ---------------


def _family(env_id: str) -> str:
    m = manifest_for(env_id)
    if m["type"] != "static":
        return m["type"]  # procedural, mixture, taubench
    if env_id.startswith("ToolGym/BFCL-"):
        return "bfcl_multi_turn" if "env" in m else "bfcl"
    return "ftrl_records" if m.get("format") == "ftrl" else "static"


# (family, format) pairs that cannot be exported, with the reason their error line gives; any other pair writes
# rows (procedural packs' ftrl depends on whether the seed's scenario keeps world state: either is fine)
CANNOT = {
    ("ftrl_records", "sft"): "no gold calls",
    ("bfcl_multi_turn", "ftrl"): "no code of their own",
    ("taubench", "ftrl"): "keeps world state",
}
MAY_NOT = {("procedural", "ftrl"): "keeps world state", ("mixture", "ftrl"): "keeps world state"}


def _replayed(row: dict) -> list[dict]:
    """The chat a fresh env gives when it is sent the row's assistant turns: the row's, if the export is faithful."""
    env = gym.make(row["env_id"], **json.loads(row["env_kwargs"]))
    obs, info = env.reset(seed=row["seed"])
    assert info["scenario_id"] == row["scenario_id"]
    for msg in row["messages"][len(obs["messages"]) :]:
        if msg["role"] == "assistant":
            obs, _, terminated, truncated, _ = env.step(msg)
    assert terminated or truncated
    return chat_arguments(obs["messages"])[: len(row["messages"])]


@pytest.mark.parametrize("fmt", ["sft", "rl", "ftrl"])
def test_every_registered_id_exports_or_says_why_in_one_line(tmp_path, capsys, fmt):
    ids = [*registered_ids(), TAU]
    args = ["export", *registered_ids(), "--suite", f"taubench:{TAU_DOMAIN}", "--format", fmt, "--episodes", "2"]
    status = main([*args, "--out", str(tmp_path), "--no-parquet"])
    out, err = capsys.readouterr()
    errors = {line.split(": ")[2]: line for line in err.splitlines()}
    assert len(errors) == len(err.splitlines()) and "Traceback" not in err
    assert status == (2 if errors else 0)
    families = set()
    for env_id in ids:
        family = _family(env_id)
        families.add(family)
        path = tmp_path / f"{env_id.split('/')[-1]}.train.{fmt}.jsonl"
        why = CANNOT.get((family, fmt))
        if env_id in errors:
            assert not path.exists() and f"{path}:" not in out
            expected = why or MAY_NOT.get((family, fmt))
            assert expected and expected in errors[env_id], errors[env_id]
            continue
        assert why is None, f"{env_id} exported {fmt} rows, expected: {why}"
        rows = read_rows(path)
        assert rows and {r["env_id"] for r in rows} == {env_id} and {int(r["seed"]) for r in rows} == {0, 1}
        if fmt == "sft":  # the gold dialogue as the env plays it, ending with the last gold assistant turn
            assert all(r["messages"][-1]["role"] == "assistant" for r in rows)
            assert _replayed(rows[0]) == rows[0]["messages"]
        if fmt == "rl":  # every row restores its env and scores its gold turn as the export did
            last = rows[-1]
            if last["gold_response"] is not None:
                assert score_response(last, last["gold_response"])[0] == pytest.approx(last["gold_reward"])
    assert {"procedural", "mixture", "ftrl_records", "taubench"} <= families


def test_taubench_gold_dialogues_against_the_scripted_user(tmp_path):
    env_id = tb.register(TAU_DOMAIN)
    assert env_id == TAU and env_kwargs_for(TAU, "train") == {}  # no split: a domain's tasks are what they are
    with pytest.raises(ExportError, match="TauBench-taubench_retail-v0 is a taubench env; it takes no generator"):
        env_kwargs_for(TAU, "train", kind="multi_hop")
    domain = tb.load_domain(TAU_DOMAIN)
    sft = read_rows(export(TAU, "sft", len(domain.tasks), tmp_path, parquet=False).path)
    assert len(sft) == len(domain.tasks)
    for row in sft:
        task = domain.task(row["scenario_id"])
        roles = [m["role"] for m in row["messages"]]
        # the scripted user states the instruction once; the agent makes the gold calls and replies with the outputs
        assert roles[:2] == ["system", "user"] and roles.count("user") == 1 and roles[-1] == "assistant"
        assert row["messages"][1]["content"] == task.instruction
        calls = [c["function"] for m in row["messages"] for c in m.get("tool_calls") or []]
        assert [{"name": c["name"], "arguments": c["arguments"]} for c in calls] == list(task.actions)
        assert row["messages"][-1]["content"] == task.gold_reply()
        env = gym.make(TAU)
        env.reset(seed=row["seed"])
        for msg in row["messages"][2:]:
            if msg["role"] == "assistant":
                *_, info = env.step(msg)
        assert info["pass"] == 1.0  # the exported dialogue passes τ-bench's check


def test_bfcl_exports_the_turns_bfcl_scores(tmp_path):
    """Single-turn categories: the one assistant turn (the episode ends there); multi-turn: every user turn."""
    if "ToolGym/BFCL-simple-v0" not in registered_ids():
        pytest.skip("BFCL's data is not installed (bash .ci/suites_setup.sh)")
    (row,) = read_rows(export("ToolGym/BFCL-simple-v0", "sft", 1, tmp_path, parquet=False).path)
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"] and row["n_turns"] == 1
    assert row["messages"][-1]["tool_calls"]
    (rl,) = read_rows(export("ToolGym/BFCL-simple-v0", "rl", 1, tmp_path, parquet=False).path)
    _, info = score_response(rl, rl["gold_response"])
    assert info["reward_components"]["bfcl_ast"] == 1.0 and info["truncated"]
    (row,) = read_rows(export("ToolGym/BFCL-multi_turn_base-v0", "sft", 1, tmp_path, parquet=False).path)
    env = gym.make("ToolGym/BFCL-multi_turn_base-v0")
    env.reset(seed=0)
    n_user = env.unwrapped.scenario.metadata["n_user_turns"]
    assert n_user > 1 and [m["role"] for m in row["messages"]].count("user") == n_user
    for msg in row["messages"]:
        if msg["role"] == "assistant":
            *_, terminated, _, info = env.step(msg)
    assert terminated and info["episode"]["bfcl_multi_turn"] == 1.0
