"""The model evaluation harness against a fake OpenAI-compatible server (scripted policy, injectable faults).

The fake server knows each scenario's gold plan (looked up by the user query) and plays it turn by turn in the
format the request asks for: ``tool_calls`` when ``tools=`` is sent, ``<tool_call>`` text otherwise, JSON when a
``response_format`` schema is sent (and checks its reply against that schema). ``lazy`` queries are answered at
once without a call, so metrics are not all 100. Faults: a queue of per-request faults (500, 429, 401, a closed
connection, a reply slower than the client's timeout) and a permanent failure after N good requests.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import zlib
from pathlib import Path

import gymnasium as gym
import jsonschema
import pytest

pytest.importorskip("openai")
pytest.importorskip("tqdm")
pytest.importorskip("matplotlib")

from chat_server import ChatServer, Reply, completion, error

from toolgym.cli import main
from toolgym.evaluate import summarize
from toolgym.harness import action_schema, json_to_action, read_episodes, run_eval

ENV = "ToolGym/FlightBooking-v0"
MAX_REQUESTS = 3000


def gold_plans(env_id: str, seeds, **kwargs) -> dict[str, tuple[list, str]]:
    env = gym.make(env_id, **kwargs)
    plans = {}
    for s in seeds:
        obs, _ = env.reset(seed=s)
        query = next(m["content"] for m in obs["messages"] if m["role"] == "user")
        plans[query] = (env.unwrapped.gold_plan(), env.unwrapped.scenario.answer)
    return plans


@functools.lru_cache(maxsize=64)
def validator(schema: str) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(json.loads(schema))
    return jsonschema.Draft202012Validator(json.loads(schema))


def is_lazy(query: str) -> bool:
    return zlib.crc32(query.encode()) % 3 == 0


class FakeServer(ChatServer):
    def __init__(self, plans, faults=(), fail_after=None, lazy=False):
        self.plans = plans
        self.faults = list(faults)
        self.fail_after = fail_after
        self.lazy = lazy
        self.lock = threading.Lock()
        self.requests = 0
        self.ok = 0
        self.times: list[float] = []
        self.problems: list[str] = []
        super().__init__(self.reply)

    def reply(self, body: dict) -> Reply | None:
        fault = self.next_fault()
        if fault == "close":
            return None
        if fault and fault.startswith("sleep:"):
            time.sleep(float(fault.split(":")[1]))
            fault = None
        if fault:
            return error(int(fault), f"injected {fault}", headers={"Retry-After": "0"} if fault == "429" else None)
        try:
            content, tool_calls = self.policy(body)
        except Exception as exc:  # a harness bug shows up as a problem, not a hang
            self.problems.append(f"policy failed: {exc!r}")
            return error(500, repr(exc))
        message = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        with self.lock:
            self.ok += 1
        return 200, completion(message, body.get("model", "fake")), {}

    def next_fault(self) -> str | None:
        with self.lock:
            self.requests += 1
            self.times.append(time.monotonic())
            if self.requests > MAX_REQUESTS:
                return "500"
            if self.faults:
                fault = self.faults.pop(0)
                return None if fault == "ok" else fault
            if self.fail_after is not None and self.ok >= self.fail_after:
                return "500"
            return None

    def policy(self, body: dict):
        msgs = body["messages"]
        query = next(m["content"] for m in msgs if m["role"] == "user")
        plan, answer = self.plans[query]
        turn = sum(m["role"] == "assistant" for m in msgs)
        calls = plan[turn] if turn < len(plan) and not (self.lazy and is_lazy(query)) else None
        if "tools" in body:  # native
            self.check_native(msgs)
            if calls is None:
                return answer, None
            return "", [
                {
                    "id": f"c{turn}_{i}",
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                }
                for i, c in enumerate(calls)
            ]
        if any(m["role"] == "tool" for m in msgs) or "<tools>" not in msgs[0]["content"]:
            self.problems.append("text mode: tool role sent or tools missing from the system prompt")
        fmt = body.get("response_format")
        if fmt:  # JSON mode: the reply must satisfy the schema the harness sent
            if calls is None:
                obj = {"answer": answer}
            else:
                obj = {"tool_calls": [{"name": c["name"], "arguments": c["arguments"]} for c in calls]}
            validator(json.dumps(fmt["schema"], sort_keys=True)).validate(obj)
            return json.dumps(obj), None
        if calls is None:
            return answer, None
        blocks = [
            f"<tool_call>\n{json.dumps({'name': c['name'], 'arguments': c['arguments']})}\n</tool_call>" for c in calls
        ]
        return "\n".join(blocks), None

    def check_native(self, msgs):
        ids: set[str] = set()
        for m in msgs:
            if m["role"] == "assistant":
                ids = {tc["id"] for tc in m.get("tool_calls") or []}
            if m["role"] == "tool" and m.get("tool_call_id") not in ids:
                self.problems.append(f"tool message answers an unknown call id {m.get('tool_call_id')}")


@pytest.fixture(scope="module")
def plans():
    return gold_plans(ENV, range(100, 124))


@pytest.fixture
def serve(plans):
    servers = []

    def start(**kw):
        s = FakeServer(plans, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]


def check_accounting(out: Path, summary: dict, n: int, seed: int = 100) -> list[dict]:
    recs = lines(out)
    keys = [(r["env_id"], r["seed"]) for r in recs]
    assert len(keys) == len(set(keys)) == n
    assert sorted(k[1] for k in keys) == list(range(seed, seed + n))
    for r in recs:
        for m in ("solve_p", "solve_r", "solve_f1"):
            assert 0.0 <= r[m] <= 1.0
        assert {"scenario_id", "kind", "return", "turns", "messages", "errors", "finish"} <= set(r)
    assert summary["complete"] and summary["missing"] == 0 and summary["episodes_done"] == n
    rows = summary["envs"][ENV]["rows"]
    assert rows == summarize(sorted(recs, key=lambda r: r["seed"]))
    assert rows[-1]["kind"] == "all" and rows[-1]["episodes"] == n
    assert json.loads((out / "summary.json").read_text())["envs"][ENV]["rows"] == rows
    png = (out / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    return recs


FAST = {"progress": False, "backoff": 0.01, "timeout": 5.0}


@pytest.mark.parametrize(
    "mode,json_schema",
    [("native", False), ("text", False), ("text", True)],
    ids=["native", "text", "text-json"],
)
def test_gold_server_scores_100_in_every_mode(serve, tmp_path, mode, json_schema):
    server = serve()
    out = tmp_path / "run"
    summary = run_eval(
        ENV,
        model="fake",
        base_url=server.base_url,
        episodes=12,
        seed=100,
        concurrency=4,
        mode=mode,
        json_schema=json_schema,
        out=str(out),
        **FAST,
    )
    recs = check_accounting(out, summary, 12)
    assert server.problems == []
    assert summary["envs"][ENV]["rows"][-1]["solve_f1"] == 100.0
    assert all(r["finish"] == "answer" and r["errors"] == [] for r in recs)
    assert len(recs[0]["completions"]) == recs[0]["turns"]
    assert summary["run"]["requests"] == server.requests == sum(r["turns"] for r in recs)
    assert summary["run"]["prompt_tokens"] == 10 * server.requests


def test_metrics_vary_and_summary_matches_lines(serve, tmp_path):
    server = serve(lazy=True)
    out = tmp_path / "run"
    summary = run_eval(
        ENV, model="fake", base_url=server.base_url, episodes=24, seed=100, concurrency=6, out=str(out), **FAST
    )
    recs = check_accounting(out, summary, 24)
    lazy = [r for r in recs if r["solve_r"] == 0.0]
    assert lazy and len(lazy) < len(recs)
    assert all(r["solve_p"] == 1.0 and r["turns"] == 1 for r in lazy)  # no call: Solve-P is 1 by definition
    assert 0 < summary["envs"][ENV]["rows"][-1]["solve_r"] < 100


def test_transient_errors_are_retried_with_backoff(serve, tmp_path):
    server = serve(faults=["500", "500", "503", "429", "close"])
    out = tmp_path / "run"
    summary = run_eval(
        ENV,
        model="fake",
        base_url=server.base_url,
        episodes=3,
        seed=100,
        concurrency=1,
        out=str(out),
        progress=False,
        backoff=0.03,
        timeout=5.0,
        retries=5,
    )
    recs = check_accounting(out, summary, 3)
    errors = [e for r in recs for e in r["errors"]]
    assert len(errors) == 5 == summary["run"]["retried_errors"]
    assert [e["attempt"] for e in errors] == [0, 1, 2, 3, 4]
    assert {e["type"] for e in errors} >= {"InternalServerError", "RateLimitError", "APIConnectionError"}
    gaps = [b - a for a, b in zip(server.times, server.times[1:4], strict=False)]
    assert gaps[2] > gaps[0] and sum(gaps) >= 0.1  # 0.03 s, 0.06 s, 0.12 s (±50% jitter)
    assert summary["envs"][ENV]["rows"][-1]["solve_f1"] == 100.0


def test_slow_replies_time_out_and_are_retried(serve, tmp_path):
    server = serve(faults=["sleep:1.5", "sleep:1.5"])
    out = tmp_path / "run"
    t0 = time.monotonic()
    summary = run_eval(
        ENV,
        model="fake",
        base_url=server.base_url,
        episodes=2,
        seed=100,
        concurrency=1,
        out=str(out),
        progress=False,
        backoff=0.01,
        timeout=0.4,
        retries=3,
    )
    recs = check_accounting(out, summary, 2)
    errors = [e for r in recs for e in r["errors"]]
    assert len(errors) == 2 and all("Timeout" in e["type"] for e in errors)
    assert time.monotonic() - t0 < 5


def test_failed_episodes_are_not_written_and_rerun_resumes(serve, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "eval",
        ENV,
        "--model",
        "fake",
        "--episodes",
        "16",
        "--seed",
        "100",
        "--concurrency",
        "4",
        "--retries",
        "2",
        "--backoff",
        "0.01",
        "--timeout",
        "5",
        "--out",
        str(out),
        "--no-progress",
    ]
    dying = serve(fail_after=15)  # the server breaks for good after 15 good replies
    assert main([*args, "--base-url", dying.base_url]) == 1
    err = capsys.readouterr().err
    assert "missing" in err and "Rerun the same command to resume" in err
    partial = lines(out)
    assert 0 < len(partial) < 16
    assert len({r["seed"] for r in partial}) == len(partial)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing"] == 16 - len(partial) and summary["run"]["aborted"]
    dying.stop()
    # a run killed while writing leaves a partial line
    with open(out / "episodes.jsonl", "a") as f:
        f.write('{"env_id": "ToolGym/FlightBooking-v0", "seed": 1')
    # the server is gone: every request fails; nothing is written, the exit code says so
    assert main([*args, "--base-url", dying.base_url, "--retries", "1"]) == 1
    assert "missing" in capsys.readouterr().err
    assert len(lines(out)) == len(partial)  # the truncated line was cut, nothing added
    # the server is back: the rerun does only the missing episodes
    fresh = serve()
    assert main([*args, "--base-url", fresh.base_url]) == 0
    printed = capsys.readouterr().out
    assert "Solve-F1" in printed and "episodes=16/16" in printed
    summary = json.loads((out / "summary.json").read_text())
    recs = check_accounting(out, summary, 16)
    assert recs[: len(partial)] == partial
    assert summary["run"]["written_this_run"] == 16 - len(partial)
    assert summary["envs"][ENV]["rows"][-1]["solve_f1"] == 100.0
    # and once complete, a rerun sends nothing
    before = fresh.requests
    assert main([*args, "--base-url", fresh.base_url]) == 0
    assert fresh.requests == before and len(lines(out)) == 16


def test_auth_error_aborts_the_run(serve, tmp_path):
    server = serve(faults=["401"] * 50)
    summary = run_eval(
        ENV,
        model="fake",
        base_url=server.base_url,
        episodes=8,
        seed=100,
        concurrency=2,
        out=str(tmp_path / "run"),
        **FAST,
    )
    assert summary["missing"] == 8 and "AuthenticationError" in summary["run"]["aborted"]
    assert server.requests <= 2


def test_settings_mismatch_is_refused_and_default_dir_is_stable(serve, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = serve()
    kw = {"model": "org/fake-1B", "base_url": server.base_url, "seed": 100, **FAST}
    s1 = run_eval(ENV, episodes=2, **kw)
    s2 = run_eval(ENV, episodes=4, **kw)  # more episodes: same directory, extended
    assert s1["run"]["out_dir"] == s2["run"]["out_dir"] and s2["run"]["written_this_run"] == 2
    assert Path(s1["run"]["out_dir"]).parts[0] == "runs" and "fake-1B_native" in s1["run"]["out_dir"]
    s3 = run_eval(ENV, episodes=2, env_kwargs={"kind": "multi_hop"}, **kw)
    assert s3["run"]["out_dir"] != s1["run"]["out_dir"]
    assert all(r["kind"] == "multi_hop" for r in read_episodes(Path(s3["run"]["out_dir"]) / "episodes.jsonl").values())
    with pytest.raises(ValueError, match="other settings"):
        run_eval(ENV, episodes=2, temperature=0.7, out=s1["run"]["out_dir"], **kw)


def test_builtin_agents_and_env_vars(tmp_path, monkeypatch, serve):
    summary = run_eval(ENV, agent="gold", episodes=5, seed=100, out=str(tmp_path / "gold"), progress=False)
    check_accounting(tmp_path / "gold", summary, 5)
    server = serve()
    monkeypatch.setenv("TOOLGYM_MODEL", "fake")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    assert main(["eval", ENV, "--episodes", "3", "--seed", "100", "--out", str(tmp_path / "m"), "--no-progress"]) == 0
    assert len(lines(tmp_path / "m")) == 3 and server.requests > 0


def test_json_mode_conversions():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "a": {"type": "string", "pattern": "[a-z]+"},
                        "b": {"type": "string", "pattern": "^x$"},
                        "pattern": {"type": "string"},
                    },
                },
            },
        }
    ]
    schema = action_schema(tools)
    jsonschema.Draft202012Validator.check_schema(schema)
    props = schema["anyOf"][0]["properties"]["tool_calls"]["items"]["anyOf"][0]["properties"]["arguments"]["properties"]
    assert "pattern" not in props["a"] and props["b"]["pattern"] == "^x$" and props["pattern"] == {"type": "string"}
    action, note = json_to_action('{"tool_calls": [{"name": "f", "arguments": {"a": "x"}}]}', 2)
    assert note is None and action["tool_calls"][0]["function"] == {"name": "f", "arguments": {"a": "x"}}
    assert action["tool_calls"][0]["id"] == "call_2_0"
    assert json_to_action('```json\n{"answer": "Paris"}\n```', 1) == ("Paris", None)
    for bad in ('{"tool_calls": []}', "not json", "[1, 2]", '{"answer": 3}'):
        action, note = json_to_action(bad, 1)
        assert action == bad and note


def test_one_run_per_directory(tmp_path):
    fcntl = pytest.importorskip("fcntl")

    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="another run"):
            run_eval(ENV, agent="gold", episodes=1, out=str(out), progress=False)
    assert run_eval(ENV, agent="gold", episodes=1, out=str(out), progress=False)["complete"]


def test_rejected_requests(serve, tmp_path):
    # a rejected first request: the episode is missing (rerun redoes it); a rejected later turn ends the episode
    server = serve(faults=["400", "ok", "400"])
    out = tmp_path / "run"
    kw = {"model": "fake", "episodes": 4, "seed": 100, "concurrency": 1, "out": str(out), **FAST}
    summary = run_eval(ENV, base_url=server.base_url, **kw)
    assert summary["missing"] == 1 and not summary["run"]["aborted"]
    recs = lines(out)
    assert [r["seed"] for r in recs] == [101, 102, 103]
    cut = recs[0]
    assert cut["finish"] == "bad_request" and cut["turns"] == 1 and cut["errors"][-1]["type"] == "BadRequest"
    assert summary["envs"][ENV]["bad_request"] == 1
    summary = run_eval(ENV, base_url=server.base_url, **kw)
    check_accounting(out, summary, 4)
    # settings every request is rejected for: the run stops after a few episodes, nothing written
    server = serve(faults=["400"] * 100)
    summary = run_eval(ENV, base_url=server.base_url, **{**kw, "out": str(tmp_path / "r2"), "episodes": 20})
    assert summary["missing"] == 20 and "rejected" in summary["run"]["aborted"] and server.requests == 3


_NO_REPLY = [{}, {"choices": []}, {"choices": [{}]}, {"choices": [{"message": None}]}, [], "text", None]
_ODD_REPLIES = [
    {"choices": [{"message": {"role": "assistant"}}]},
    {"choices": [{"message": {"content": ["The answer", {"type": "text", "text": " is 4."}]}}]},
    {"choices": [{"message": {"content": None, "tool_calls": "get_booking"}}]},
    {"choices": [{"message": {"content": None, "tool_calls": [{"function": {"name": 5, "arguments": [1]}}]}}]},
    {"choices": [{"message": {"content": "a lone \ud800 surrogate"}}]},
    {"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": "x", "completion_tokens": None}},
]


@pytest.mark.parametrize("mode", ["native", "text"])
@pytest.mark.parametrize("body", _NO_REPLY + _ODD_REPLIES, ids=range(len(_NO_REPLY) + len(_ODD_REPLIES)))
def test_a_server_answering_200_with_any_body_never_crashes_the_run(tmp_path, mode, body):
    """The ``openai`` SDK builds its reply objects without checking them: a reply without a message fails its
    episode with an error that says so (rerun redoes it); any other shape is the model's turn, scored by the env,
    and the episode lines are valid UTF-8."""
    with ChatServer(lambda req: (200, body, {})) as server:
        out = tmp_path / "run"
        kw = {"episodes": 2, "seed": 0, "concurrency": 1, "mode": mode, "out": str(out), **FAST}
        summary = run_eval(ENV, model="fake", base_url=server.base_url, **kw)
    run = summary["run"]
    if body in _NO_REPLY:
        assert run["failed_this_run"] == 2
        assert "has no choices" in run["last_error"] or "has no message" in run["last_error"]
        assert not summary["complete"]
    else:
        assert summary["complete"] and run["written_this_run"] == 2
        (out / "episodes.jsonl").read_text(encoding="utf-8")  # raises on text that is not valid UTF-8
        assert run["prompt_tokens"] >= 0 and isinstance(run["prompt_tokens"], int)
