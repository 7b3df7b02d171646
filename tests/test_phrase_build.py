"""``toolgym build --phrase``: the acceptance rules of a rewritten query, and the build against a fake
OpenAI-compatible server on 127.0.0.1 whose rewrites the test chooses per query (good, dropping an id, leaking an
answer, not JSON), including the cache and resume."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gymnasium as gym
import jsonschema
import numpy as np
import pytest

pytest.importorskip("openai")

from toolgym.construct.llm.journal import JOURNAL
from toolgym.construct.llm.phrase import run_phrase, source_scenarios
from toolgym.construct.llm.phrase_rules import check_rewrite, gold_score, query_values, with_query
from toolgym.construct.pipeline import BuildConfig, generate
from toolgym.packs import load_scenarios, read_manifest
from toolgym.registry import register_pack

ID = re.compile(r"\b[A-Z]{2}[A-Z0-9]*[0-9]+\b")


def scenario(kind: str, domain: str = "banking", seed: int = 0, **knobs):
    return generate(np.random.default_rng(seed), BuildConfig(kind=kind, **knobs), f"toolgym.construct.domains.{domain}")


# -- the rules ---------------------------------------------------------------------------------------------------
def test_query_values_are_the_ids_and_update_values_of_the_query():
    multi = scenario("multi_hop")
    values = query_values(multi)
    assert values and all(v in multi.query for v in values)
    second = multi.subtasks[1].arguments
    assert not set(map(str, second.values())) & set(values)  # the intermediate id comes from the first call
    wide = scenario("parallel_multi_hop", generalize=2, type_generalize=2, expand=2, write_share=1.0)
    values = query_values(wide)
    assert "en-US" not in values  # the locale comes from the schema, not the query
    assert not {"customer", "account", "card", "transaction", "name"} & set(values)  # schema vocabulary
    assert any(re.fullmatch(r"\d+", v) for v in values), (wide.query, values)  # the update's value


def test_a_rewrite_dropping_an_id_is_rejected():
    sc = scenario("parallel_single_hop")
    first = query_values(sc)[0]
    verdict = check_rewrite(sc, "Hi! " + sc.query.replace(first, "that one"))
    assert not verdict.ok and verdict.reason == "missing_value" and first in verdict.detail
    # a longer id that merely contains the value does not keep it
    assert check_rewrite(sc, "Hi! " + sc.query.replace(first, first + "7")).reason == "missing_value"


def test_a_rewrite_leaking_an_answer_is_rejected():
    sc = scenario("multi_hop")
    for leaked in (sc.answer, sc.subtasks[0].answers[0]):  # the final answer or an intermediate one
        verdict = check_rewrite(sc, f"{sc.query} I think it is {leaked.upper()}.")
        assert not verdict.ok and verdict.reason == "answer_leak", verdict


def test_a_good_rewrite_is_accepted_and_the_gold_plan_keeps_its_score():
    sc = scenario("parallel_multi_hop")
    rewrite = "Hello, quick favour: " + sc.query.replace("Can you tell me", "could you look up")
    assert check_rewrite(sc, rewrite).ok
    assert gold_score(with_query(sc, rewrite)) == gold_score(sc) and gold_score(sc)[1] == 1.0
    assert check_rewrite(sc, "  " + sc.query.upper() + " ").reason == "unchanged"


def test_a_changed_score_is_rejected(monkeypatch):
    from toolgym.construct.llm import phrase_rules

    sc = scenario("single_hop")
    rewrite = "Hey there, " + sc.query
    real = phrase_rules.gold_score
    monkeypatch.setattr(phrase_rules, "gold_score", lambda s: (0.5, 1.0) if s.query == rewrite else real(s))
    assert check_rewrite(sc, rewrite).reason == "gold_plan"


# -- a fake model ------------------------------------------------------------------------------------------------
class FakeModel:
    """An OpenAI-compatible chat server; ``rewrite(query, attempt)`` says the reply text (``None``: good JSON)."""

    def __init__(self, rewrite: Callable[[str, int], str], fail_after: int | None = None):
        self.rewrite = rewrite
        self.fail_after = fail_after
        self.requests = 0
        self.problems: list[str] = []
        self.lock = threading.Lock()
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with model.lock:
                    model.requests += 1
                    down = model.fail_after is not None and model.requests > model.fail_after
                if down:
                    return self.reply(503, {"error": {"message": "server is down"}})
                try:
                    content = model.answer(body)
                except Exception as exc:  # a broken request is a test failure, reported by the test
                    model.problems.append(repr(exc))
                    return self.reply(500, {"error": {"message": repr(exc)}})
                message = {"role": "assistant", "content": content}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                self.reply(200, {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [choice]})  # fmt: skip

            def reply(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, body: dict) -> str:
        schema = body["response_format"]["schema"]
        jsonschema.Draft202012Validator.check_schema(schema)
        asks = [m["content"] for m in body["messages"] if m["role"] == "user"]
        query = asks[1].partition(": ")[2]  # "Rewrite it <style>[, keeping ...]: <query>"
        text = self.rewrite(query, len(asks) - 2)  # asks: example, request, then one per rejected reply
        try:
            jsonschema.validate(json.loads(text), schema)
        except (json.JSONDecodeError, jsonschema.ValidationError):
            pass  # a bad reply on purpose
        return text


def good(query: str) -> str:
    return json.dumps({"rewritten_message": "Hello! " + query.replace("Can you tell me", "could you look up")})


def opts(tmp_path, server, name="phrased", **kw):
    base = {"model": "fake", "base_url": server.base_url, "out": str(tmp_path / name), "domains": ["banking"],
            "scenarios": 6, "concurrency": 3, "progress": False, "retries": 1, "backoff": 0.01, "timeout": 30,
            "attempts": 1}  # fmt: skip
    return {**base, **kw}


def play_gold(env_id: str, n: int) -> list[float]:
    env = gym.make(env_id)
    f1s = []
    for i in range(n):
        env.reset(seed=i, options={"index": i})
        while True:
            _, _, terminated, truncated, info = env.step(env.unwrapped.gold_actions()[0])
            if terminated or truncated:
                break
        f1s.append(info["episode"]["solve_f1"])
    env.close()
    return f1s


# -- the build ---------------------------------------------------------------------------------------------------
def test_build_keeps_good_rewrites_and_counts_the_rejected_by_reason(tmp_path):
    sources = source_scenarios(["banking"], 6)
    plan = {}  # query -> reply: two good, two dropping an id, one leaking the answer, one not JSON
    for i, sc in enumerate(sources):
        if i < 2:
            plan[sc.query] = good(sc.query)
        elif i < 4:
            plan[sc.query] = json.dumps({"rewritten_message": "Hi! " + ID.sub("it", sc.query)})
        elif i == 4:
            plan[sc.query] = json.dumps({"rewritten_message": f"{sc.query} Probably {sc.answer}?"})
        else:
            plan[sc.query] = "Sure! Here is the rewrite"
    with FakeModel(lambda q, attempt: plan[q]) as server:
        report = run_phrase(**opts(tmp_path, server))
    assert not server.problems and server.requests == 6
    assert report["complete"] and report["attempted"] == 6 and report["accepted"] == 2
    assert report["reject_reasons"] == {"answer_leak": 1, "invalid_json": 1, "missing_value": 2}
    assert report["acceptance_rate"] == pytest.approx(2 / 6, abs=1e-4)
    out = tmp_path / "phrased"
    assert read_manifest(out / "manifest.json")["type"] == "static"
    pack = load_scenarios(out / "scenarios.jsonl")
    assert [s.id for s in pack] == [s.id for s in sources]
    for src, got in zip(sources, pack, strict=True):
        meta = got.metadata["phrase"]
        assert meta["original_query"] == src.query and meta["source_digest"] == src.digest()
        if meta["accepted"]:
            assert got.query == json.loads(plan[src.query])["rewritten_message"] and check_rewrite(src, got.query).ok
        else:
            assert got.query == src.query and meta["reason"] in report["reject_reasons"]
        assert got.tools == src.tools and got.state == src.state and got.answer == src.answer
    assert play_gold(register_pack(out), len(pack)) == [1.0] * len(pack)


def test_a_rejected_reply_is_asked_again_with_the_problem(tmp_path):
    def rewrite(query, attempt):
        return json.dumps({"rewritten_message": "Hi! " + ID.sub("it", query)}) if attempt == 0 else good(query)

    with FakeModel(rewrite) as server:
        report = run_phrase(**opts(tmp_path, server, scenarios=3, attempts=2))
    assert report["accepted"] == 3 and server.requests == 6
    assert report["rejected_replies"] == {"missing_value": 3}
    lines = [json.loads(x) for x in (tmp_path / "phrased" / JOURNAL).read_text().splitlines()]
    phrased = [r for r in lines if r["event"] == "phrased"]
    assert all([a["reason"] for a in r["attempts"]] == ["missing_value", None] for r in phrased)


def test_verdicts_are_cached_by_digest_and_a_rerun_resumes(tmp_path):
    with FakeModel(lambda q, a: good(q), fail_after=4) as server:  # the server goes down after 4 requests
        first = run_phrase(**opts(tmp_path, server, concurrency=1))
    assert not first["complete"] and first["attempted"] == 4 and first["missing"] == 2
    assert first["run"]["failed_this_run"] == 2
    assert len(load_scenarios(tmp_path / "phrased" / "scenarios.jsonl")) == 4  # the pack holds what is done
    journal = tmp_path / "phrased" / JOURNAL
    with open(journal, "a") as f:
        f.write('{"event": "phrased", "digest": "trunc')  # a build killed mid-line
    with FakeModel(lambda q, a: good(q)) as server:
        second = run_phrase(**opts(tmp_path, server))
        assert server.requests == 2 and second["complete"] and second["accepted"] == 6
        again = run_phrase(**opts(tmp_path, server))
        assert server.requests == 2 and again["run"]["finished_this_run"] == 0
        more = run_phrase(**opts(tmp_path, server, scenarios=8, domains=["banking", "library"]))
        assert server.requests == 2 + 2 + 8 and more["scenarios"] == 16 and more["complete"]
        assert set(more["by_domain"]) == {"Banking", "Library"}
        with pytest.raises(ValueError, match="other settings"):
            run_phrase(**opts(tmp_path, server, temperature=0.1))
    pack = load_scenarios(tmp_path / "phrased" / "scenarios.jsonl")
    assert len(pack) == 16 and len({s.metadata["phrase"]["source_digest"] for s in pack}) == 16


def test_the_same_model_gives_the_same_requests(tmp_path):
    seen: list[list] = []

    class Recording(FakeModel):
        def answer(self, body):
            seen[-1].append((body["seed"], body["messages"][-1]["content"]))
            return super().answer(body)

    for name in ("a", "b"):
        seen.append([])
        with Recording(lambda q, a: good(q)) as server:
            run_phrase(**opts(tmp_path, server, name=name, concurrency=1))
    assert seen[0] == seen[1] and len(set(seen[0])) == 6


def test_cli_builds_a_phrased_pack(tmp_path, capsys):
    from toolgym.cli import main

    out = tmp_path / "phrased_banking"
    with FakeModel(lambda q, a: good(q)) as server:
        args = ["build", "--domain", "banking", "--domain", "library", "--phrase", "--scenarios", "2",
                "--model", "fake", "--base-url", server.base_url, "--out", str(out), "--no-progress",
                "--kind", "multi_hop"]  # fmt: skip
        code = main(args)
    text = capsys.readouterr().out
    assert code == 0, text
    assert "phrased 4/4, accepted 4 (100.0%)" in text and "ToolGym/PhrasedBanking-v0" in text
    pack = load_scenarios(out / "scenarios.jsonl")
    assert {s.kind for s in pack} == {"multi_hop"} and {s.metadata["domain"] for s in pack} == {"Banking", "Library"}
    assert main(["build", "--phrase", "--domain", "banking", "--out", str(out)]) == 2  # no model named
    assert "needs --model" in capsys.readouterr().out


def test_the_diversity_benchmark_compares_a_phrased_pack(tmp_path):
    def rewrite(query, attempt):  # every other query rewritten, the rest rejected (dropped ids)
        if sum(map(ord, query)) % 2:
            return good(query)
        return json.dumps({"rewritten_message": "Hi! " + ID.sub("it", query)})

    with FakeModel(rewrite) as server:
        report = run_phrase(**opts(tmp_path, server, scenarios=10, domains=["banking", "hotel_booking"]))
    out = tmp_path / "diversity.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "phrase_diversity.py"
    cmd = [sys.executable, str(script), "--pack", str(tmp_path / "phrased"), "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(out.read_text())
    assert got["acceptance_rate"] == pytest.approx(report["acceptance_rate"], abs=1e-3)
    before, after, mine = got["sets"]["before"], got["sets"]["after"], got["sets"]["accepted: after"]
    assert before["queries"] == after["queries"] == 20 and mine["queries"] == report["accepted"]
    assert before["template_share"] == 1.0 and before["verbatim_share"] == 1.0  # procedural queries
    assert mine["template_share"] == 0.0 and mine["verbatim_share"] == 0.0  # "Hello! ..." is no template
    assert after["verbatim_share"] == pytest.approx(1 - report["acceptance_rate"], abs=1e-3)
