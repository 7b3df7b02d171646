"""The README's code blocks run as written.

Every fenced ``python`` and ``bash`` block is either run here (in a scratch directory, in README order, the Python
blocks sharing one namespace as a reader's session would) or named in ``ELSEWHERE`` with the test that covers it
(blocks that need a GPU model server, a Ray cluster, a pip install or minutes of work). A new block fails the test
until it is placed in one of the two.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)

# first line of a block -> why it is not run here (and what covers it)
ELSEWHERE = {
    'pip install -e ".[dev]" && bash .ci/llm_setup.sh && bash .ci/suites_setup.sh && python -m pytest': (
        "this is the test command"
    ),
    'pip install -e ".[eval]"': "a model server (tests/test_harness_real.py drives a real local one)",
    "toolgym eval ToolGym/FlightBooking-v0 --episodes 1000 --backend ray": "a Ray cluster (tests/test_ray_backend.py)",
    "toolgym eval --suite bfcl --model": "a model server (tests/test_suite_bfcl.py plays SmolLM2's turns)",
    "toolgym eval --suite taubench:tests/data/taubench_retail --model": (
        "a model server (tests/test_taubench_eval.py: a fake one, and SmolLM2 as both agent and user)"
    ),
    "ray start --head --port=6379": "a Ray cluster (tests/test_ray_backend.py)",
    "toolgym build --domain <module> --check 50": "a placeholder module (tests/test_pipeline.py)",
    "pip install torch==2.13.0": "the RL example's own suite, which .ci/run runs",
    "python benchmarks/step_overhead.py": "benchmarks (tests/test_benchmarks.py runs each tiny)",
    "toolgym export ToolGym/FlightBooking-v0 --format rl --episodes 1000 --out exports": (
        "a GPU verl run (tests/test_verl_reward.py and tests/test_verl_agent.py drive verl's classes on CPU)"
    ),
    "from trl import GRPOConfig, GRPOTrainer": "a hub model (tests/test_integration_trl.py: a tiny local one)",
    "toolgym serve ToolGym/FlightBooking-v0": "a server left running (tests/test_serve.py starts and drives one)",
    "from openenv import GenericEnvClient": "a running server (tests/test_serve.py)",
    "import verifiers.v1 as vf": "a running server and a model (tests/test_serve.py plays it with a scripted model)",
    "toolgym export ToolGym/FlightBooking-v0 --format rl --episodes 512 --out data": (
        "a SkyRL training run (tests/test_integration_skyrl.py drives skyrl_gym's envs)"
    ),
}
SLOW = {"from toolgym.harness import run_eval": "runs 20 episodes of the real local model"}


def blocks(lang: str) -> list[str]:
    return [body for kind, body in BLOCK.findall((ROOT / "README.md").read_text()) if kind == lang]


def _first(body: str) -> str:
    return body.strip().splitlines()[0].split("  #")[0].strip().rstrip("\\").strip()


def _placed(body: str) -> bool:
    return any(_first(body).startswith(k) for k in (*ELSEWHERE, *SLOW))


def _bash_lines(body: str):
    for line in body.replace("\\\n", " ").splitlines():
        line = line.split("  #")[0].strip()
        if line:
            yield line


def test_every_block_is_run_or_placed():
    run = [b for b in blocks("python") + blocks("bash") if not _placed(b)]
    assert len(run) >= 7
    for body in blocks("bash"):
        if not _placed(body):
            for line in _bash_lines(body):
                assert line.startswith(("pip install -e . && toolgym", "toolgym ")), f"say how to run: {line}"


def _run_bash(body: str, cwd: Path) -> None:
    for line in _bash_lines(body):
        line = line.removeprefix("pip install -e . && ")  # the package is installed already
        args = shlex.split(line)
        assert args[0] == "toolgym"
        if "--episodes" in args:  # the same command on fewer episodes
            i = args.index("--episodes") + 1
            args[i] = str(min(int(args[i]), 6))
        res = subprocess.run([sys.executable, "-m", "toolgym.cli", *args[1:]], cwd=cwd, capture_output=True, text=True)
        assert res.returncode == 0, f"{line}\n{res.stdout}\n{res.stderr}"


def test_blocks_run_in_order(tmp_path, monkeypatch):
    """Bash blocks first (they make the files the Python blocks read), then the Python blocks in one namespace."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tests").symlink_to(ROOT / "tests")  # the README's commands run from the repository root
    for body in blocks("bash"):
        if not _placed(body):
            _run_bash(body, tmp_path)
    from toolgym.export import export, read_rows

    ftrl = export("ToolGym/FTRLSample-v0", "ftrl", 3, tmp_path / "ftrl", parquet=False)
    os.replace(ftrl.path, tmp_path / "records.jsonl")
    rows = read_rows(tmp_path / "exports" / "FlightBooking-v0.train.rl.jsonl")
    ns = {"completion_text": rows[0]["gold_response"]}
    for i, body in enumerate(b for b in blocks("python") if not _placed(b)):
        exec(compile(body, "README.md", "exec"), ns)
        if i == 0:  # the Use block's call finds its sub-answer
            assert ns["reward"] == 1.0 and ns["info"]["reward_components"]["n_solved_now"] == 1
    assert ns["reward"] == pytest.approx(rows[0]["gold_reward"])  # the export block's score of the gold turn


@pytest.mark.slow
def test_eval_block_with_the_real_model(llm_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (body,) = [b for b in blocks("python") if _first(b).startswith("from toolgym.harness import run_eval")]
    ns = {"model": llm_server.model, "url": llm_server.base_url}
    exec(compile(body, "README.md", "exec"), ns)
    assert ns["summary"]["complete"]
