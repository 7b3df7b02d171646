"""Smoke test of benchmarks/scorer_concurrency.py, run tiny: it runs, writes its JSON, finds no differing score,
and does count differences when the scorer's results depend on the thread (so its 0 means something)."""

import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "scorer_concurrency.py"
TINY = ["--calls", "60", "--rounds", "1", "--threads", "1,4", "--episodes", "1"]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("scorer_concurrency", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_json_and_finds_no_difference(tmp_path):
    out = tmp_path / "sc.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, "--out", str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "scores differing from sequential: 0" in res.stdout
    data = json.loads(out.read_text())
    assert data["mismatches"] == 0 and data["errors"] == []
    assert [(r["mode"], r["threads"]) for r in data["runs"]] == [
        ("sequential", 0),
        ("thread pool", 1),
        ("thread pool", 4),
    ]
    assert data["calls_per_run"] == 60 and data["concurrent_calls"] == 2 * 60  # the first batch and one round
    assert all(r["rows_per_s"] > 0 for r in data["runs"])
    low, high = data["score_range"]
    assert low < 0 < high  # gold and non-gold turns were scored


def test_thread_dependent_scores_are_counted(tmp_path, monkeypatch, capsys):
    bench = load_benchmark()
    real = bench.compute_score

    def leaky(*args):  # a scorer whose result depends on the calling thread, as a shared-env race would
        out = real(*args)
        return {**out, "score": out["score"] + (threading.current_thread() is not threading.main_thread())}

    monkeypatch.setattr(bench, "compute_score", leaky)
    rc = bench.main([*TINY, "--out", str(tmp_path / "sc.json")])
    data = json.loads((tmp_path / "sc.json").read_text())
    assert rc == 1 and data["mismatches"] == 2 * 2 * 60  # every pooled call, in both pools' two batches
    assert "scores differing from sequential: 240" in capsys.readouterr().out


def test_bad_options_are_rejected(capsys):
    bench = load_benchmark()
    with pytest.raises(SystemExit) as exc:
        bench.main(["--threads", "0"])
    assert exc.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err
