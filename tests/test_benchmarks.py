"""Every benchmark script runs end to end on a tiny budget and writes its JSON (the numbers are not checked here:
speed is measured by running the scripts, not by timed tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = {
    "step_overhead.py": ["--rounds", "1", "--calls", "50", "--resets", "10"],
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
