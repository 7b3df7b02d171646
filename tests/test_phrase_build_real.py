"""``toolgym build --phrase`` against a real model: SmolLM2-135M-Instruct behind llama-cpp-python's
OpenAI-compatible server (the ``llm_server`` fixture, tests/llm_server.py), replies constrained by the JSON schema
sent as ``response_format``.

A 135M model drops ids and invents answers often; what this test holds the build to is its rules and accounting:
every scenario ends accepted or rejected with a known reason, the pack loads and plays with the gold plan at full
score, and every accepted rewrite passes the rules again when checked from scratch against its original query.
"""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from toolgym.construct.llm.phrase import run_phrase, source_scenarios
from toolgym.construct.llm.phrase_rules import REASONS, check_rewrite, with_query
from toolgym.packs import load_scenarios
from toolgym.registry import register_pack

pytestmark = pytest.mark.slow


def test_phrase_build_with_a_real_model_keeps_only_rewrites_that_pass_the_rules(llm_server, tmp_path):
    out = tmp_path / "phrased_real"
    domains = ["banking", "hotel_booking"]
    opts = {"model": llm_server.model, "base_url": llm_server.base_url, "out": str(out), "domains": domains,
            "scenarios": 4, "concurrency": 2, "attempts": 1, "temperature": 0.7, "timeout": 150, "retries": 1,
            "progress": False}  # fmt: skip
    report = run_phrase(**opts)
    print(f"\nreal-model phrasing: {json.dumps(report, indent=1)}")
    assert report["complete"] and report["attempted"] == 8 == report["accepted"] + report["rejected"]
    assert sum(report["reject_reasons"].values()) == report["rejected"]
    assert set(report["reject_reasons"]) <= {*REASONS, "invalid_json", "schema", "bad_request"}

    sources = {s.digest(): s for s in source_scenarios(domains, 4)}
    pack = load_scenarios(out / "scenarios.jsonl")
    assert len(pack) == 8
    for sc in pack:
        meta = sc.metadata["phrase"]
        src = sources[meta["source_digest"]]
        if meta["accepted"]:
            assert sc.query != src.query and check_rewrite(src, sc.query).ok, (src.query, sc.query)
            assert with_query(src, sc.query).to_dict() == {**sc.to_dict(), "metadata": src.metadata}
        else:
            assert sc.query == src.query and meta["reason"] in report["reject_reasons"]
    env = gym.make(register_pack(out))
    for i in range(len(pack)):
        env.reset(seed=i, options={"index": i})
        while True:
            _, _, terminated, truncated, info = env.step(env.unwrapped.gold_actions()[0])
            if terminated or truncated:
                break
        assert info["episode"]["solve_f1"] == 1.0
    env.close()

    again = run_phrase(**opts)  # cached: nothing is asked again
    assert again["run"]["finished_this_run"] == 0 and again["accepted"] == report["accepted"]
