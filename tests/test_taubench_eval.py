"""``toolgym eval --suite taubench:PATH --user-model M``: a model plays the user through the harness's client.

A fake OpenAI-compatible server (tests/chat_server.py) plays both sides: a request whose system prompt is the
user prompt gets the customer's turn (the task's instruction, then the stop token), any other the gold agent's
(the task's gold actions as tool calls, then a reply holding its outputs). The slow test runs SmolLM2-135M as
both the agent and the user.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import gymnasium as gym
import pytest

pytest.importorskip("openai")
pytest.importorskip("tqdm")
pytest.importorskip("matplotlib")

from chat_server import ChatServer, Reply, completion, error

from toolgym.cli import main
from toolgym.harness import read_episodes, run_eval
from toolgym.suites import taubench as tb

DOMAIN = Path(__file__).parent / "data" / "taubench_retail"
USER_MARK = "Play this customer"


class TauServer(ChatServer):
    """The agent's and the user's turns of the fixture domain; ``user_faults``: statuses for the next user turns."""

    def __init__(self, user_faults=()):
        self.domain = tb.load_domain(DOMAIN)
        self.by_instruction = {t.instruction: t for t in self.domain.tasks}
        self.user_faults = list(user_faults)
        self.lock = threading.Lock()
        self.agent_requests = 0
        self.user_requests = 0
        self.problems: list[str] = []
        super().__init__(self.reply)

    def reply(self, body: dict) -> Reply:
        msgs = body["messages"]
        if USER_MARK in msgs[0]["content"]:
            with self.lock:
                self.user_requests += 1
                fault = self.user_faults.pop(0) if self.user_faults else None
            if fault:
                return error(fault, f"injected {fault}")
            return 200, completion(self.user_turn(msgs), body["model"]), {}
        with self.lock:
            self.agent_requests += 1
        return 200, completion(self.agent_turn(msgs), body["model"]), {}

    def user_turn(self, msgs: list[dict]) -> str:
        system = msgs[0]["content"]
        instruction = system.split("everything you know:\n", 1)[1].split("\n\nHow to play", 1)[0]
        if self.by_instruction.get(instruction) is None:
            self.problems.append(f"the user prompt holds no task's instruction: {system[:200]!r}")
        if msgs[1:] != [{"role": "user", "content": tb.GREETING}] and msgs[-1]["role"] != "user":
            self.problems.append("the user model was asked to speak after its own message")
        # the opening states the goal; after the agent's first reply the customer is done
        return instruction if len(msgs) == 2 else tb.STOP_TOKEN

    def agent_turn(self, msgs: list[dict]) -> dict:
        opening = next(m["content"] for m in msgs if m["role"] == "user")
        task = self.by_instruction[opening]
        turn = sum(m["role"] == "assistant" for m in msgs)
        if turn >= len(task.actions):
            return {"role": "assistant", "content": task.gold_reply()}
        action = task.actions[turn]
        call = {"id": f"c{turn}", "type": "function", "function": {"name": action["name"], "arguments": ""}}
        call["function"]["arguments"] = json.dumps(action["arguments"])
        return {"role": "assistant", "content": "", "tool_calls": [call]}


@pytest.fixture
def serve():
    servers: list[TauServer] = []

    def start(**kw) -> TauServer:
        servers.append(TauServer(**kw))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def _args(out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "--suite",
        f"taubench:{DOMAIN}",
        "--episodes",
        "5",
        "--concurrency",
        "3",
        "--retries",
        "1",
        "--backoff",
        "0.01",
        "--timeout",
        "10",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_model_agent_and_model_user_pass_and_resume(serve, tmp_path, capsys):
    server = serve()
    out = tmp_path / "run"
    args = _args(out, "--model", "agent-m", "--base-url", server.base_url, "--user-model", "user-m")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Pass^1" in printed and "n/a" in printed and "episodes=5/5" in printed
    assert server.problems == []
    recs = list(read_episodes(out / "episodes.jsonl").values())
    assert len(recs) == 5 and all(r["pass"] == 1.0 and r["finish"] == "answer" for r in recs)
    for r in recs:
        said = [m["content"] for m in r["messages"] if m["role"] == "user"]
        assert said[-1] == tb.STOP_TOKEN and len(said) == 2  # the model user opened and said done
    assert server.user_requests == 10  # an opening and one reply per episode
    summary = json.loads((out / "summary.json").read_text())
    row = next(iter(summary["envs"].values()))["rows"][-1]
    assert row["pass"] == 100.0 and row["solve_p"] is row["solve_r"] is row["solve_f1"] is None
    # one server for both: the agent's client carried the user's requests too
    assert summary["run"]["requests"] == server.agent_requests + server.user_requests
    config = json.loads((out / "config.json").read_text())
    assert config["env_kwargs"]["user"] == {"kind": "model", "model": "user-m", "max_tokens": 256}
    # resumable: a rerun sends nothing; another user model is another result
    before = server.agent_requests + server.user_requests
    assert main(args) == 0 and server.agent_requests + server.user_requests == before
    assert main([*args[:-1], "other-user"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_the_default_user_stays_scripted(serve, tmp_path, capsys):
    server = serve()
    assert main(_args(tmp_path / "run", "--model", "agent-m", "--base-url", server.base_url)) == 0
    assert server.user_requests == 0 and server.agent_requests > 0
    assert "Pass^1" in capsys.readouterr().out


def test_builtin_agent_against_a_model_user_on_its_own_server(serve, tmp_path, capsys):
    user_side = serve()
    args = _args(tmp_path / "run", "--agent", "gold", "--user-model", "user-m", "--user-base-url", user_side.base_url)
    assert main(args) == 0
    assert "Pass^1" in capsys.readouterr().out
    assert user_side.agent_requests == 0 and user_side.user_requests == 10
    summary = json.loads((tmp_path / "run" / "gold" / "summary.json").read_text())
    assert summary["run"]["user_requests"] == 10 and summary["run"]["user_ok_requests"] == 10


def test_a_failing_user_model_leaves_the_episode_for_a_rerun(serve, tmp_path):
    env_id = tb.register(DOMAIN)
    try:
        # seed 0: the opening fails on both attempts (retries=1); seed 1: the opening is fine, the user's next
        # request is refused (400), which ends the episode there; seed 2: no fault
        server = serve(user_faults=[500, 500, None, 400])
        kw = {
            "model": "agent-m",
            "base_url": server.base_url,
            "env_kwargs": {"user": {"kind": "model", "model": "user-m"}},
            "episodes": 3,
            "concurrency": 1,
            "retries": 1,
            "backoff": 0.01,
            "timeout": 10.0,
            "progress": False,
            "out": str(tmp_path / "run"),
        }
        summary = run_eval(env_id, **kw)
        assert summary["missing"] == 1 and not summary["run"]["aborted"]
        recs = read_episodes(tmp_path / "run" / "episodes.jsonl")
        assert sorted(seed for _, seed in recs) == [1, 2]
        cut = recs[(env_id, 1)]
        assert cut["finish"] == "bad_request" and cut["errors"][-1]["who"] == "user"
        assert [e["type"] for e in cut["errors"]] == ["BadRequestError", "BadRequest"]  # the attempt, the end
        assert summary["envs"][env_id]["bad_request"] == 1
        summary = run_eval(env_id, **kw)  # the rerun does seed 0 only
        assert summary["complete"] and summary["run"]["written_this_run"] == 1
        assert read_episodes(tmp_path / "run" / "episodes.jsonl")[(env_id, 0)]["pass"] == 1.0
    finally:
        del gym.registry[env_id]


def test_the_user_server_defaults_and_env_vars(monkeypatch):
    from toolgym.harness import EvalConfig

    env_id = tb.register(DOMAIN)
    try:
        user = {"user": {"kind": "model", "model": "u"}}
        cfg = EvalConfig([env_id], model="m", base_url="http://a/v1", api_key="ka", env_kwargs=user)
        assert (cfg.user_model, cfg.user_base_url, cfg.user_api_key) == ("u", "http://a/v1", "ka")
        monkeypatch.setenv("TOOLGYM_USER_BASE_URL", "http://b/v1")
        monkeypatch.setenv("TOOLGYM_USER_API_KEY", "kb")
        cfg = EvalConfig([env_id], model="m", base_url="http://a/v1", api_key="ka", env_kwargs=user)
        assert (cfg.user_base_url, cfg.user_api_key) == ("http://b/v1", "kb")
        assert "user_base_url" not in cfg.result_config() and cfg.result_config()["env_kwargs"] == user
        monkeypatch.delenv("TOOLGYM_USER_BASE_URL")
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        with pytest.raises(ValueError, match="user model's server"):
            EvalConfig([env_id], agent="gold", env_kwargs=user)
        with pytest.raises(ValueError, match="takes the env kwargs"):  # no env of the run has a user
            EvalConfig(["ToolGym/FlightBooking-v0"], agent="gold", env_kwargs=user)
        assert EvalConfig([env_id], agent="gold").user_model is None  # the scripted user: no client
    finally:
        del gym.registry[env_id]


def test_a_user_on_the_harness_loop_refuses_to_block_it():
    import asyncio

    async def go():
        user = tb.ModelUser(object(), "m", loop=asyncio.get_running_loop())
        task = tb.load_domain(DOMAIN).tasks[0]
        with pytest.raises(RuntimeError, match="another thread"):
            user.reply(task, [])

    asyncio.run(go())


@pytest.mark.slow
def test_ray_workers_get_the_domain_and_their_own_user_client(serve, tmp_path, capsys):
    """The domain is registered in the driver only: the workers register its spec, manifest and all."""
    pytest.importorskip("ray")
    user_side = serve()
    out = tmp_path / "run"
    args = _args(out, "--agent", "gold", "--user-model", "user-m", "--user-base-url", user_side.base_url)
    assert main([*args, "--backend", "ray", "--num-workers", "1"]) == 0
    assert "Pass^1" in capsys.readouterr().out
    recs = list(read_episodes(out / "gold" / "episodes.jsonl").values())
    assert len(recs) == 5 and all(r["pass"] == 1.0 for r in recs) and user_side.user_requests == 10


# -- a real model on both sides ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_as_agent_and_user_through_the_cli(llm_server, tmp_path, capsys):
    """SmolLM2-135M plays the agent and the user: weak, so only the run's shape is asserted (Pass^1 is printed,
    the episode ends by the user's stop token or the turn cap), not its score. One short episode: on two shared
    CPU cores each request over the wiki and the tools takes seconds (about a minute in all)."""
    out = tmp_path / "run"
    args = [
        "eval",
        "--suite",
        f"taubench:{DOMAIN}",
        "--model",
        llm_server.model,
        "--base-url",
        llm_server.base_url,
        "--user-model",
        llm_server.model,
        "--user-max-tokens",
        "32",
        "--mode",
        "text",
        "--max-tokens",
        "64",
        "--max-turns",
        "2",
        "--episodes",
        "1",
        "--concurrency",
        "1",
        "--timeout",
        "120",
        "--retries",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    status = main(args)
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "Pass^1" in printed and "n/a" in printed
    recs = list(read_episodes(out / "episodes.jsonl").values())
    assert len(recs) == 1
    for r in recs:
        assert r["pass"] in (0.0, 1.0) and 1 <= r["turns"] <= 2
        said = [m["content"] for m in r["messages"] if m["role"] == "user"]
        assert said and all(isinstance(s, str) and s.strip() for s in said)
        stopped = tb.STOP_TOKEN in said[-1]
        assert r["finish"] == ("answer" if stopped else "max_turns") or r["finish"] == "bad_request"
