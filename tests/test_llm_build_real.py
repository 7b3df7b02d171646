"""The ``openai`` build backend end to end against a real model: SmolLM2-135M-Instruct behind llama-cpp-python's
OpenAI-compatible server (the ``llm_server`` fixture, tests/llm_server.py).

A 135M model rarely writes a task that survives every check; what this test holds the pipeline to is its
validation and accounting: every attempted index ends accepted or discarded with a ``"<stage>:<kind>"`` reason,
every accepted scenario loads as a static pack and its gold plan scores Solve-F1 = 1, and a rerun with more
scenarios resumes (finished indices are not redone). Replies are schema-constrained (``response_format`` with a
schema), short (``max_tokens``) and asked once per stage, to keep the test to a few minutes.
"""

from __future__ import annotations

import json
import time

import gymnasium as gym
import pytest

from toolgym.construct.llm.build import run_build
from toolgym.construct.llm.journal import JOURNAL
from toolgym.construct.llm.stages import STAGES
from toolgym.packs import load_scenarios
from toolgym.registry import register_pack

pytestmark = pytest.mark.slow


def test_build_with_a_real_model_accounts_for_every_scenario(llm_server, tmp_path):
    out = tmp_path / "llm_smoke"
    opts = {"model": llm_server.model, "base_url": llm_server.base_url, "out": str(out), "concurrency": 2,
            "seed": 0, "max_tokens": 320, "attempts": 1, "temperature": 0.2, "timeout": 150, "retries": 1,
            "progress": False}  # fmt: skip
    t0 = time.monotonic()
    first = run_build(scenarios=2, **opts)
    second = run_build(scenarios=3, **opts)  # resumes: indices 0 and 1 are done, only index 2 is built
    wall = time.monotonic() - t0
    print(f"\nreal-model build: {json.dumps(second, indent=1)}\nwall time {wall:.0f} s")

    assert first["attempted"] == 2 and first["complete"], first
    assert second["run"]["finished_this_run"] == 1
    assert second["complete"] and second["missing"] == 0, second
    assert second["attempted"] == 3 == second["accepted"] + second["discarded"]
    assert sum(second["discard_reasons"].values()) == second["discarded"]
    for reason in second["discard_reasons"]:
        stage, _, kind = reason.partition(":")
        assert stage in STAGES and kind, reason

    lines = [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()]
    finals = [r for r in lines if r["event"] in ("accepted", "discarded")]
    assert sorted(r["index"] for r in finals) == [0, 1, 2]
    for r in finals:
        if r["event"] == "discarded":
            assert r["reason"].startswith(r["stage"] + ":") and r["detail"]

    data = out / "scenarios.jsonl"
    accepted = [r for r in finals if r["event"] == "accepted"]
    assert len(data.read_text().splitlines()) == len(accepted)
    if accepted:  # every accepted scenario was verified; it plays with the gold plan scoring Solve-F1 = 1
        scenarios = load_scenarios(data)
        env = gym.make(register_pack(out))
        for i, sc in enumerate(scenarios):
            env.reset(seed=i, options={"index": i})
            while True:
                _, _, terminated, truncated, info = env.step(env.unwrapped.gold_actions()[0])
                if terminated or truncated:
                    break
            assert info["episode"]["solve_f1"] == 1.0, sc.id
        env.close()
    else:
        assert second["manifest"] is None
