"""The evaluation harness against a real model: SmolLM2-135M-Instruct behind llama-cpp-python's server.

The model is weak, so these tests assert accounting and ranges, not scores: every episode is recorded exactly
once, metrics are in range and the summary agrees with the episode lines; a server that dies mid-run leaves a
resumable run that completes once the server is back.
"""

import json
import threading
import time

import pytest
from llm_server import LlamaServer

from toolgym.harness import run_eval

pytestmark = pytest.mark.slow
# FTRL-format records: three short tool schemas keep prompts small, so a CPU-served 135M model answers in seconds.
ENV = "ToolGym/FTRLSample-v0"
FAST = {"mode": "text", "json_schema": True, "max_tokens": 96, "temperature": 0.0, "max_turns": 2, "progress": False}


def episode_lines(out):
    path = out / "episodes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def check_accounting(out, summary, n):
    lines = episode_lines(out)
    assert summary["complete"] and summary["missing"] == 0
    assert sorted(e["seed"] for e in lines) == list(range(n)), "each episode exactly once"
    for e in lines:
        for key in ("solve_p", "solve_r", "solve_f1"):
            assert 0.0 <= e[key] <= 1.0
        assert 1 <= e["turns"] <= 2 and len(e["rewards"]) == e["turns"]
        assert all(-0.5 <= r < 2.0 for r in e["rewards"])
    rows = summary["envs"][ENV]["rows"]
    overall = rows[-1]
    assert overall["kind"] == "all" and overall["episodes"] == n
    mean_f1 = 100 * sum(e["solve_f1"] for e in lines) / n
    assert overall["solve_f1"] == pytest.approx(mean_f1)
    assert sum(r["episodes"] for r in rows[:-1]) == n


def test_twenty_episodes_of_a_real_model(llm_server, tmp_path):
    out = tmp_path / "run"
    t0 = time.perf_counter()
    summary = run_eval(
        ENV, model=llm_server.model, base_url=llm_server.base_url, episodes=20, concurrency=2, out=str(out), **FAST
    )
    check_accounting(out, summary, 20)
    assert (out / "summary.png").stat().st_size > 1000
    print(f"20 real-model episodes in {time.perf_counter() - t0:.0f} s; Solve-F1 {summary['envs'][ENV]['rows'][-1]}")


def test_server_stopped_mid_run_then_restarted_completes(tmp_path):
    out = tmp_path / "run"
    kwargs = {"episodes": 6, "concurrency": 2, "out": str(out), "retries": 1, "backoff": 0.2, "timeout": 30, **FAST}
    with LlamaServer() as server:
        result = {}

        def first_run():
            result["summary"] = run_eval(ENV, model=server.model, base_url=server.base_url, **kwargs)

        worker = threading.Thread(target=first_run)
        worker.start()
        deadline = time.monotonic() + 300
        while len(episode_lines(out)) < 1 and time.monotonic() < deadline and worker.is_alive():
            time.sleep(0.2)
        server.stop()  # the server dies mid-run
        worker.join(timeout=300)
        assert not worker.is_alive()
        first = result["summary"]
        done_before = len(episode_lines(out))
        assert not first["complete"] and first["missing"] == 6 - done_before and done_before >= 1

        server.start()  # back on the same port: rerunning the same call resumes
        summary = run_eval(ENV, model=server.model, base_url=server.base_url, **kwargs)
    check_accounting(out, summary, 6)
