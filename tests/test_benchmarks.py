"""Every benchmark script runs end to end on a tiny budget and writes its JSON (the numbers are not checked here:
speed is measured by running the scripts, not by timed tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = {
    "step_overhead.py": ["--rounds", "1", "--calls", "50", "--resets", "10", "--cold-starts", "1"],
    "isolation_overhead.py": ["--rounds", "1", "--calls", "20", "--restarts", "2"],
    "vector_throughput.py": ["--quick"],
    "build_throughput.py": ["--budget", "2", "--resets", "5"],
    "thread_overhead.py": ["--rounds", "1", "--calls", "50"],
    "policy_overhead.py": ["--rounds", "1", "--calls", "50", "--entries", "3"],
    "scorer_concurrency.py": ["--calls", "60", "--rounds", "1", "--threads", "1,4", "--episodes", "1"],
    "phrase_diversity.py": ["--scenarios", "30"],  # tests/test_phrase_build.py also runs it on a phrased pack
}


COVERED = {  # smoke runs with more checks
    "server_throughput.py": "tests/test_serve.py::test_benchmark_smoke",
    "llm_code_corpus.py": "tests/test_llm_code_corpus.py",
}


def test_every_benchmark_has_a_tiny_run():
    assert sorted(p.name for p in BENCH.glob("*.py")) == sorted([*TINY, *COVERED])


@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_runs_tiny(script, tmp_path):
    args = [*TINY[script]]
    out = tmp_path / "out.json"
    takes_out = "--out" in (BENCH / script).read_text()
    if takes_out:
        args += ["--out", str(out)]
    res = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip()  # the table
    if takes_out:
        assert json.loads(out.read_text())


def test_policy_overhead_against_old_policy(tmp_path):
    """--baseline-rev times the current policy against e2073a6^'s, each toolgym in its own worker process.

    A shallow clone lacks that commit; then the run is timed against HEAD, which exercises the same machinery."""
    out = tmp_path / "out.json"
    has_old = subprocess.run(["git", "-C", str(BENCH), "cat-file", "-e", "e2073a6^"], capture_output=True)
    rev = [] if has_old.returncode == 0 else ["HEAD"]
    cmd = [sys.executable, str(BENCH / "policy_overhead.py"), "--baseline-rev", *rev, "--rounds", "2", "--calls", "50"]
    res = subprocess.run([*cmd, "--steps", "10", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "function tool" in res.stdout and "FlightBooking step" in res.stdout
    result = json.loads(out.read_text())
    if not rev:
        assert result["baseline_commit"].startswith("13861f3")  # e2073a6's parent
    repo = BENCH.parent
    assert Path(result["new_toolgym"]).is_relative_to(repo) and not Path(result["old_toolgym"]).is_relative_to(repo)
    assert result["same_gold_actions"]
    for call in ("function tool", "FlightBooking step"):
        assert len(result[call]["ratio_per_round"]) == 2 and result[call]["ratio"] > 0


def test_policy_overhead_baseline_needs_git(tmp_path):
    """Outside a git checkout --baseline-rev stops with one error line, not a traceback."""
    for script in ("policy_overhead.py", "step_overhead.py"):
        (tmp_path / "benchmarks").mkdir(exist_ok=True)
        (tmp_path / "benchmarks" / script).write_text((BENCH / script).read_text())
    cmd = [sys.executable, str(tmp_path / "benchmarks" / "policy_overhead.py"), "--baseline-rev", "--rounds", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "--baseline-rev e2073a6^: cannot get the old toolgym from git" in res.stderr
