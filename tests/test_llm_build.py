"""The ``openai`` build backend against a fake OpenAI-compatible server that serves recorded replies.

``tests/data/llm_build_responses/good_run.json`` holds a well-behaved model's replies for one scenario per kind.
The fake server tells the stage from the prompt, finds the scenario from what the prompt names (the kind, the
user query, a function name) and answers with the recorded reply; the scale reply is trimmed to the keys and
counts the request's schema asks for. ``overrides`` inject bad replies (served first, per stage or per tool);
``fail_after`` makes the server answer 503 after that many requests (a server going down).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gymnasium as gym
import jsonschema
import pytest

pytest.importorskip("openai")

from toolgym.construct.llm import prompts as P
from toolgym.construct.llm.build import run_build
from toolgym.construct.llm.code_check import Limits
from toolgym.construct.llm.journal import JOURNAL, Journal
from toolgym.construct.llm.validate import Reject, check_function, parse_reply, validate_decomposition
from toolgym.packs import load_scenarios, read_manifest
from toolgym.registry import register_pack
from toolgym.scenario import KINDS

RECORDED = json.loads((Path(__file__).parent / "data" / "llm_build_responses" / "good_run.json").read_text())
SCENARIOS = RECORDED["scenarios"]
CODE = {name: code for s in SCENARIOS for name, code in s["code"].items()}


def stage_of(prompt: str) -> str:
    if "Invent a realistic user request" in prompt:
        return "decompose"
    if "write the document of one tool" in prompt:
        return "document"
    if "Merge documents" in prompt:
        return "integrate"
    if "Make the toolset harder" in prompt:
        return "scale"
    if "Implement the tool" in prompt:
        return "deploy"
    raise AssertionError(f"unknown prompt: {prompt[:200]}")


def scenario_for(stage: str, prompt: str) -> dict:
    for s in SCENARIOS:
        if stage == "decompose" and P.KIND_TEXT[s["kind"]] in prompt:
            return s
        if stage == "document" and s["decompose"]["query"] in prompt:
            return s
        names = [d["name"] for d in s["document"]["documents"]]
        if stage in ("integrate", "scale") and f'"name": "{names[-1]}"' in prompt:
            return s
        if stage == "scale" and s["integrate"] and f'"name": "{s["integrate"]["functions"][0]["name"]}"' in prompt:
            return s
    raise AssertionError(f"no recorded scenario for {stage}: {prompt[:300]}")


class FakeModel:
    def __init__(self, overrides: dict[str, list[str]] | None = None, fail_after: int | None = None):
        self.overrides = {k: list(v) for k, v in (overrides or {}).items()}
        self.fail_after = fail_after
        self.lock = threading.Lock()
        self.requests = 0
        self.by_stage: dict[str, int] = {}
        self.problems: list[str] = []
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
                    self.reply(503, {"error": {"message": "server is down", "type": "server_error"}})
                    return
                try:
                    content = model.answer(body)
                except Exception as exc:
                    model.problems.append(repr(exc))
                    self.reply(500, {"error": {"message": repr(exc)}})
                    return
                message = {"role": "assistant", "content": content}
                self.reply(
                    200,
                    {
                        "id": "c",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
                    },
                )

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
        prompt = body["messages"][1]["content"]
        schema = body["response_format"]["schema"]
        jsonschema.Draft202012Validator.check_schema(schema)
        stage = stage_of(prompt)
        with self.lock:
            self.by_stage[stage] = self.by_stage.get(stage, 0) + 1
            keys = [stage]
            if stage == "deploy":
                keys.insert(0, "deploy:" + re.search(r"Implement the tool (\w+)", prompt).group(1))
            if stage == "decompose":
                keys.insert(0, "decompose:" + next(k for k in KINDS if P.KIND_TEXT[k] in prompt))
            for key in keys:
                if self.overrides.get(key):
                    return self.overrides[key].pop(0)
        if stage == "deploy":
            name = re.search(r"Implement the tool (\w+)", prompt).group(1)
            reply = {"code": CODE[name]}
        else:
            s = scenario_for(stage, prompt)
            reply = s[stage]
            if stage == "scale":
                props = schema["properties"]
                reply = {}
                if "distractors" in props:
                    reply["distractors"] = s["scale"]["distractors"][: props["distractors"]["minItems"]]
                if "extra_parameters" in props:
                    reply["extra_parameters"] = s["scale"]["extra_parameters"]
        jsonschema.validate(reply, schema)  # the recorded replies obey the schemas the backend sends
        return json.dumps(reply)


def build(tmp_path: Path, server: FakeModel, name: str = "pack", **kwargs):
    opts = {
        "model": "fake",
        "base_url": server.base_url,
        "out": str(tmp_path / name),
        "scenarios": 4,
        "concurrency": 4,
        "progress": False,
        "retries": 1,
        "backoff": 0.01,
        "timeout": 30,
    }
    opts.update(kwargs)
    return run_build(**opts)


def journal_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()]


# -- a good run ------------------------------------------------------------------------------------------------
def test_good_run_builds_a_static_pack_that_plays_with_solve_f1_1(tmp_path):
    with FakeModel() as server:
        report = build(tmp_path, server, scenarios=8)
    assert not server.problems
    assert report["accepted"] == 8 and report["discarded"] == 0 and report["complete"], report
    assert report["by_kind"] == dict.fromkeys(KINDS, 2)
    out = tmp_path / "pack"
    manifest = read_manifest(out / "manifest.json")
    assert manifest["type"] == "static" and manifest["name"] == "Pack" and manifest["data"] == "scenarios.jsonl"
    scenarios = load_scenarios(out / "scenarios.jsonl")
    assert len(scenarios) == 8 and len({s.id for s in scenarios}) == 8
    assert [s.metadata["index"] for s in scenarios] == list(range(8))
    assert server.by_stage["integrate"] == 6  # single-hop scenarios have nothing to merge

    env_id = register_pack(out)
    assert env_id == "ToolGym/Pack-v0"
    env = gym.make(env_id)
    for i, sc in enumerate(scenarios):
        needed = {s.tool for s in sc.subtasks}
        n_params = sum(
            len(t["function"]["parameters"]["properties"]) for t in sc.tools if t["function"]["name"] in needed
        )
        if "toolset_extension" in sc.metadata["strategies"]:
            assert len(sc.tools) > len(needed)  # distractors were added
        if "parameter_expansion" in sc.metadata["strategies"]:
            assert n_params > sum(len(s.arguments) for s in sc.subtasks if s.id in ("q1", "q2")) // 2
        env.reset(seed=i, options={"index": i})
        while True:
            _, _, terminated, truncated, info = env.step(env.unwrapped.gold_actions()[0])
            if terminated or truncated:
                break
        assert info["episode"]["solve_f1"] == 1.0, (sc.kind, info)
        assert info["reward_components"]["answer_correct"] == 1.0
    env.close()
    # the integrated parallel pack merged two documents into one function
    psh = next(s for s in scenarios if s.kind == "parallel_single_hop")
    assert {s.tool for s in psh.subtasks} == {"get_museum_info"}


# -- validation: retries and discards with reasons ----------------------------------------------------------------
def test_malformed_json_is_retried_with_the_reason_recorded(tmp_path):
    with FakeModel({"decompose:single_hop": ["{not json", '```json\n{"query": 1}\n```']}) as server:
        report = build(tmp_path, server, kind="single_hop", scenarios=1, attempts=3)
    assert report["accepted"] == 1
    assert report["rejected_replies"] == {"decompose:invalid_json": 1, "decompose:schema": 1}
    # the retry carried the rejected reply and the problem back to the model
    final = next(r for r in journal_lines(tmp_path / "pack") if r["event"] == "accepted")
    assert [r["kind"] for r in final["rejected"]] == ["invalid_json", "schema"]


def test_malformed_json_every_time_discards_the_scenario(tmp_path):
    with FakeModel({"decompose:multi_hop": ["not json at all"] * 3}) as server:
        report = build(tmp_path, server, kind="multi_hop", scenarios=1, attempts=3)
    assert report["accepted"] == 0 and report["discard_reasons"] == {"decompose:invalid_json": 1}
    assert report["manifest"] is None and not (tmp_path / "pack" / "manifest.json").exists()
    assert (tmp_path / "pack" / "scenarios.jsonl").read_text() == ""


def _doc_with(**changes) -> str:
    doc = json.loads(json.dumps(SCENARIOS[0]["document"]))
    doc["documents"][0].update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (
            _doc_with(
                parameters={
                    "type": "object",
                    "properties": {"city": {"type": "string", "description": "c"}},
                    "required": ["city", "date"],
                }
            ),
            "document:invalid",
        ),  # required not in properties
        (
            _doc_with(
                parameters={
                    "type": "object",
                    "properties": {"city": {"type": "town", "description": "c"}},
                    "required": [],
                }
            ),
            "document:schema",
        ),  # not a JSON type
        (_doc_with(name="get forecast"), "document:schema"),  # the name is not an identifier
        (_doc_with(arguments={"city": "Lisbon"}), "document:invalid"),  # the gold call misses a required argument
        (_doc_with(arguments={"city": "Lisbon", "date": "Sunny 19C"}), "document:invalid"),  # leaks the answer
    ],
)
def test_schema_violating_documents_are_discarded(tmp_path, bad, reason):
    with FakeModel({"document": [bad, bad]}) as server:
        report = build(tmp_path, server, kind="single_hop", scenarios=1, attempts=2)
    assert report["discard_reasons"] == {reason: 1}, report
    assert report["rejected_replies"] == {reason: 2}


def test_invalid_json_schema_in_parameters_is_rejected():
    fn = {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"x": {"type": 3}}}}
    with pytest.raises(Reject, match="not a valid JSON schema"):
        check_function(fn, "doc")
    with pytest.raises(Reject, match="not an identifier"):
        check_function({**fn, "name": "class"}, "doc")
    good = check_function({**fn, "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}, "doc")
    assert good["parameters"]["additionalProperties"] is False and good["parameters"]["required"] == []


def test_decomposition_checks_structure_and_answers():
    dec = json.loads(json.dumps(SCENARIOS[2]["decompose"]))
    assert validate_decomposition(dec, "multi_hop")["subquestions"][1]["depends_on"] == ["q1"]
    with pytest.raises(Reject, match="do not form a parallel_single_hop"):
        validate_decomposition(dec, "parallel_single_hop")
    dec["subquestions"][1]["answer"] = "KX72Q"
    with pytest.raises(Reject, match="appears in the user request"):
        validate_decomposition(dec, "multi_hop")
    with pytest.raises(Reject, match="schema"):
        parse_reply('{"query": "x"}', P.decompose_schema("multi_hop"))


def _code(src: str) -> str:
    return json.dumps({"code": src})


FORECAST_SIG = "def get_forecast(city, date, units=None):\n"
BAD_CODE = {
    "compile": FORECAST_SIG + "    return ().__class__.__subclasses__()\n",  # dunder access: rejected by the policy
    "syntax": FORECAST_SIG + "    return {'forecast': 'Sunny 19C'\n",
    "wrong_answer": FORECAST_SIG + "    return {'forecast': 'Cloudy 12C'}\n",
    "leak": FORECAST_SIG + "    return {'forecast': 'Sunny 19C'}\n",
    "error": FORECAST_SIG + "    raise ValueError('no data')\n",
    "loop": FORECAST_SIG + "    n = 0\n    while True:\n        n += 1\n",
    "memory": FORECAST_SIG + "    blocks = []\n    while True:\n        blocks.append('x' * 1000000)\n",
}


@pytest.mark.parametrize(
    ("fault", "reasons"),
    [
        ("compile", {"deploy:compile"}),
        ("syntax", {"deploy:compile"}),
        ("wrong_answer", {"deploy:wrong_answer"}),
        ("leak", {"deploy:leak"}),
        ("error", {"deploy:error"}),
        ("loop", {"deploy:timeout"}),  # the sandbox's own step budget stops it first
    ],
)
def test_bad_code_is_discarded_with_its_reason(tmp_path, fault, reasons):
    with FakeModel({"deploy:get_forecast": [_code(BAD_CODE[fault])] * 2}) as server:
        report = build(tmp_path, server, kind="single_hop", scenarios=1, attempts=2)
    assert set(report["discard_reasons"]) <= reasons and report["discarded"] == 1, report


@pytest.mark.parametrize(
    ("fault", "reasons"),
    [("loop", {"deploy:cpu_limit"}), ("memory", {"deploy:resource", "deploy:memory_limit", "deploy:crashed"})],
)
def test_runaway_code_is_stopped_by_the_validator_process_limits(tmp_path, fault, reasons):
    """With the sandbox's own guards lifted, only the OS limits of the validator process stand."""
    relaxed = {"step_budget": 10**15, "time_limit": 1e6, "max_size": 10**15, "max_memory": 1 << 50}
    limits = Limits(cpu_seconds=2, memory_mb=256, wall_seconds=60, sandbox=relaxed)
    with FakeModel({"deploy:get_forecast": [_code(BAD_CODE[fault])]}) as server:
        report = build(tmp_path, server, kind="single_hop", scenarios=1, attempts=1, limits=limits)
    assert set(report["discard_reasons"]) <= reasons and report["discarded"] == 1, report


def test_wall_timeout_kills_the_validator(tmp_path):
    relaxed = {"step_budget": 10**15, "time_limit": 1e6}
    limits = Limits(cpu_seconds=60, wall_seconds=3, sandbox=relaxed)
    with FakeModel({"deploy:get_forecast": [_code(BAD_CODE["loop"])]}) as server:
        report = build(tmp_path, server, kind="single_hop", scenarios=1, attempts=1, limits=limits)
    assert report["discard_reasons"] == {"deploy:timeout": 1}


def test_bad_code_then_fixed_code_is_accepted(tmp_path):
    with FakeModel({"deploy:get_forecast": [_code(BAD_CODE["compile"])]}) as server:
        report = build(tmp_path, server, kind="single_hop", scenarios=1, attempts=2)
    assert report["accepted"] == 1 and report["rejected_replies"] == {"deploy:compile": 1}


def test_integration_must_keep_every_subquestion_solvable(tmp_path):
    bad = json.loads(json.dumps(SCENARIOS[1]["integrate"]))
    bad["calls"][1]["function"] = "get_ticket_price"  # not among the merged functions
    with FakeModel({"integrate": [json.dumps(bad)]}) as server:
        report = build(tmp_path, server, kind="parallel_single_hop", scenarios=1, attempts=1)
    assert report["discard_reasons"] == {"integrate:invalid": 1}


# -- resume ---------------------------------------------------------------------------------------------------
def test_resume_after_the_server_goes_down(tmp_path):
    out = tmp_path / "pack"
    with FakeModel(fail_after=14) as server:
        first = build(tmp_path, server, scenarios=6, concurrency=2, max_consecutive_failures=2)
    assert not first["complete"] and first["missing"] > 0 and first["run"]["aborted"]
    done_before = {r["index"] for r in journal_lines(out) if r["event"] in ("accepted", "discarded")}
    assert 0 < len(done_before) < 6
    with open(out / JOURNAL, "a") as f:  # a process killed mid-line
        f.write('{"event": "accepted", "index": 5, "scen')
    with FakeModel() as server:
        second = build(tmp_path, server, scenarios=6, concurrency=2)
    assert second["complete"] and second["accepted"] == 6, second
    lines = journal_lines(out)  # the truncated line is gone: every line parses
    finals = [r["index"] for r in lines if r["event"] in ("accepted", "discarded")]
    assert sorted(finals) == list(range(6))  # nothing lost, nothing duplicated
    stages = [(r["index"], r["stage"]) for r in lines if r["event"] == "stage"]
    assert len(stages) == len(set(stages))  # finished stages were not redone
    assert second["run"]["finished_this_run"] == 6 - len(done_before)
    scenarios = load_scenarios(out / "scenarios.jsonl")
    assert [s.metadata["index"] for s in scenarios] == list(range(6))
    # a third run has nothing to do and rewrites the same file
    before = (out / "scenarios.jsonl").read_bytes()
    with FakeModel() as server:
        third = build(tmp_path, server, scenarios=6)
    assert server.requests == 0 and third["accepted"] == 6
    assert (out / "scenarios.jsonl").read_bytes() == before


def test_resume_after_the_build_process_is_killed(tmp_path):
    out = tmp_path / "pack"
    with FakeModel() as server:
        cmd = [
            sys.executable,
            "-m",
            "toolgym.cli",
            "build",
            "--backend",
            "openai",
            "--model",
            "fake",
            "--base-url",
            server.base_url,
            "--api-key",
            "x",
            "--scenarios",
            "8",
            "--concurrency",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ]
        proc = subprocess.Popen(cmd, cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                if (out / JOURNAL).exists() and '"accepted"' in (out / JOURNAL).read_text():
                    break
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()
        partial = Journal(out / JOURNAL).load()
        assert 0 < len(partial.finals) < 8
        done = subprocess.run(cmd, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accepted 8" in done.stdout
    finals = [r["index"] for r in journal_lines(out) if r["event"] in ("accepted", "discarded")]
    assert sorted(finals) == list(range(8))


def test_rerun_with_other_settings_is_refused(tmp_path):
    with FakeModel() as server:
        build(tmp_path, server, scenarios=1, kind="single_hop")
        with pytest.raises(ValueError, match="other settings"):
            build(tmp_path, server, scenarios=1, kind="single_hop", seed=3)


def test_cli_builds_a_pack(tmp_path, capsys):
    from toolgym.cli import main

    out = tmp_path / "llm_weather"
    with FakeModel() as server:
        code = main(
            [
                "build",
                "--backend",
                "openai",
                "--model",
                "fake",
                "--base-url",
                server.base_url,
                "--scenarios",
                "2",
                "--concurrency",
                "2",
                "--out",
                str(out),
                "--topic",
                "weather",
                "--no-progress",
            ]
        )
    text = capsys.readouterr().out
    assert code == 0, text
    assert "accepted 2" in text and "ToolGym/LlmWeather-v0" in text
    assert read_manifest(out / "manifest.json")["name"] == "LlmWeather"


def test_openai_is_not_imported_with_toolgym():
    code = "import sys, toolgym, toolgym.construct.llm.build, toolgym.construct.cli; assert 'openai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
