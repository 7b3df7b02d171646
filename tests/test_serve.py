"""``toolgym serve``: OpenEnv's protocol over loopback, driven by OpenEnv's own clients and by verifiers.

Every server here is real (uvicorn on 127.0.0.1, a free port, in a thread or a subprocess); every return is
compared with the same seed's in-process ``gym.make`` episode.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import httpx
import pytest
import websockets
from openenv import GenericEnvClient
from serve_helpers import ScriptedChatModel, ServerThread, free_port

import toolgym  # noqa: F401
from toolgym.integrations.openenv import ToolGymAction, ToolGymEnvClient, create_toolgym_app

ENV_ID = "ToolGym/FlightBooking-v0"
ROOT = Path(__file__).resolve().parents[1]


def in_process(seed: int, env_id: str = ENV_ID, actions: list | None = None):
    """(gold actions, rewards, messages after each step, reset messages) of the in-process episode."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    gold = env.unwrapped.gold_actions()
    rewards, new = [], []
    for a in actions if actions is not None else gold:
        _, r, term, trunc, info = env.step(a)
        rewards.append(float(r))
        new.append(info["new_messages"])
        if term or trunc:
            break
    env.close()
    return gold, rewards, new, obs["messages"]


@pytest.fixture(scope="module")
def server():
    with ServerThread(create_toolgym_app(ENV_ID, max_sessions=8, idle_timeout=60)) as srv:
        yield srv


def test_openenv_generic_client_gold_return_equals_in_process(server):
    for seed in (3, 11):
        gold, rewards, new, first = in_process(seed)
        with GenericEnvClient(base_url=server.url).sync() as client:
            result = client.reset(seed=seed)
            assert result.observation["messages"] == first
            assert result.observation["tools"], "reset offers the tools"
            got = []
            for action, want_new in zip(gold, new, strict=True):
                result = client.step({"message": action})
                got.append(result.reward)
                assert result.observation["messages"] == want_new
                assert "new_messages" not in result.observation["info"]  # sent once, as messages
                assert set(result.observation["reward_components"]) >= {"reward_ftrl", "precision", "recall", "f1"}
            assert result.done
            assert got == pytest.approx(rewards)
            assert sum(got) == pytest.approx(sum(rewards))
            state = client.state()
            assert state["step_count"] == len(gold) and state["seed"] == seed and state["done"] is True
            assert state["episode_return"] == pytest.approx(sum(rewards))


def test_typed_client_and_schema(server):
    schema = httpx.get(f"{server.url}/schema").json()
    assert schema["action"]["required"] == ["message"]  # one required field: verifiers maps bare replies onto it
    gold, rewards, _, _ = in_process(5)
    with ToolGymEnvClient(base_url=server.url).sync() as client:
        result = client.reset(seed=5)
        total = 0.0
        for action in gold:
            result = client.step(ToolGymAction(message=action))
            total += result.reward
        assert result.done and total == pytest.approx(sum(rewards))
        assert result.observation.info["episode"]["return"] == pytest.approx(sum(rewards))


def test_sessions_are_isolated_under_interleaving(server):
    (ga, ra, na, _), (gb, rb, nb, _) = in_process(21), in_process(22)
    assert ra != rb or na != nb, "the two seeds must differ for the test to mean anything"
    with GenericEnvClient(base_url=server.url).sync() as a, GenericEnvClient(base_url=server.url).sync() as b:
        a.reset(seed=21)
        b.reset(seed=22)
        got_a, got_b = [], []
        for i in range(max(len(ga), len(gb))):
            if i < len(ga):
                res = a.step({"message": ga[i]})
                got_a.append(res.reward)
                assert res.observation["messages"] == na[i]
            if i < len(gb):
                res = b.step({"message": gb[i]})
                got_b.append(res.reward)
                assert res.observation["messages"] == nb[i]
        assert got_a == pytest.approx(ra) and got_b == pytest.approx(rb)
        assert a.state()["seed"] == 21 and b.state()["seed"] == 22


def test_malformed_action_gets_a_clear_error_and_the_session_survives(server):
    gold, rewards, _, _ = in_process(7)
    with GenericEnvClient(base_url=server.url).sync() as client:
        with pytest.raises(RuntimeError, match="reset the session before stepping"):
            client.step({"message": gold[0]})  # stepping before reset
        client.reset(seed=7)
        for bad in ({"bogus": 1}, {"message": {"role": "user", "content": "hi"}}, {"message": gold[0], "x": 2}):
            with pytest.raises(RuntimeError, match=r"invalid action \(.+\).*session is unchanged"):
                client.step(bad)
        with pytest.raises(RuntimeError, match="unknown reset fields"):
            client.reset(seed=7, colour="red")
        total = sum(client.step({"message": a}).reward for a in gold)
        assert total == pytest.approx(sum(rewards))
        with pytest.raises(RuntimeError, match="episode is over"):
            client.step({"message": "again"})
        assert client.reset(seed=7).observation["messages"]  # still usable after every error


def test_frames_that_are_not_json_objects_get_an_error_and_the_session_goes_on(server):
    """openenv's own loop would end the session (and drop its env) on a frame like ``"x"``: the episode survives."""
    gold, rewards, _, _ = in_process(7)

    async def play() -> list[float]:
        url = server.url.replace("http://", "ws://") + "/ws"
        async with websockets.connect(url) as ws:

            async def call(frame: str | bytes) -> dict:
                await ws.send(frame)
                return json.loads(await ws.recv())

            await call(json.dumps({"type": "reset", "data": {"seed": 7}}))
            got = []
            for i, action in enumerate(gold):
                for bad in ('"x"', "1", "null", "[]", "not json", '{"type": "step", "data": {"message": "\\ud800"}}'):
                    reply = await call(bad)
                    assert reply["type"] == "error" and reply["data"]["code"] in ("VALIDATION_ERROR", "INVALID_JSON")
                step = {"type": "step", "data": {"message": action}}
                frame = json.dumps(step)
                reply = await call(frame.encode() if i % 2 else frame)  # a binary frame is read as UTF-8 text
                got.append(reply["data"]["reward"])
            return got

    assert asyncio.run(play()) == pytest.approx(rewards)


def test_number_and_message_dict_actions(server):
    _, want, want_new, _ = in_process(9, actions=["154"])
    with ToolGymEnvClient(base_url=server.url).sync() as client:
        client.reset(seed=9)
        result = client.step(154)  # a bare number, as json.loads returns for a reply "154"
        assert result.observation.messages == want_new[0]
        assert result.observation.messages[0]["content"] == "154"
        assert result.reward == pytest.approx(want[0]) and result.done
    gold, rewards, _, _ = in_process(9)
    env = gym.make(ENV_ID)
    env.reset(seed=9)
    first_msg = env.step(gold[0])[4]["new_messages"][0]  # the gold turn as an OpenAI assistant message dict
    with GenericEnvClient(base_url=server.url).sync() as client:
        client.reset(seed=9)
        r1 = client.step(first_msg)  # the bare message dict as the whole action
        r2 = client.step({"message": gold[1]}) if len(gold) > 1 else r1
        assert [r1.reward, r2.reward][: len(gold)] == pytest.approx(rewards[:2])


def test_reset_prefix_and_full_chat(server):
    gold, rewards, new, first = in_process(13)
    with GenericEnvClient(base_url=server.url).sync() as client:
        result = client.reset(seed=13, options={"prefix": gold[:1]})
        assert result.observation["messages"] == first + new[0]
        result = client.step({"message": gold[1], "full_chat": True})
        assert result.observation["messages"] == first + new[0] + new[1]
        assert result.reward == pytest.approx(rewards[1])
        client.reset(seed=13, full_chat=True)
        result = client.step({"message": gold[0]})
        assert result.observation["messages"] == first + new[0] and result.observation["tools"]
        result = client.step({"message": gold[1], "full_chat": False})
        assert result.observation["messages"] == new[1]


def test_stateful_http_sessions(server):
    gold, rewards, _, _ = in_process(17)
    with httpx.Client(base_url=server.url) as http:
        r = http.post("/reset", json={"seed": 17})
        assert r.status_code == 200
        sid = r.json()["metadata"]["session_id"]
        assert r.headers["x-session-id"] == sid
        missing = http.post("/step", json={"action": {"message": gold[0]}})
        assert missing.status_code == 400 and "session_id" in missing.json()["detail"]["message"]
        bad = http.post("/step", json={"session_id": sid, "action": {"nope": 1}})
        assert bad.status_code == 422 and "invalid action" in bad.json()["detail"]["message"]
        total = 0.0
        for a in gold:
            body = http.post("/step", json={"session_id": sid, "action": {"message": a}}).json()
            total += body["reward"]
        assert body["done"] and total == pytest.approx(sum(rewards))
        assert http.get("/state", params={"session_id": sid}).json()["step_count"] == len(gold)
        assert http.post("/close", json={"session_id": sid}).json()["closed"] is True
        assert http.post("/step", json={"session_id": sid, "action": {"message": "x"}}).status_code == 404


def test_session_limit():
    with ServerThread(create_toolgym_app(ENV_ID, max_sessions=2, idle_timeout=None)) as srv:
        a = GenericEnvClient(base_url=srv.url).sync()
        b = GenericEnvClient(base_url=srv.url).sync()
        with a, b:
            a.reset(seed=1)
            b.reset(seed=2)

            async def third() -> dict:
                async with websockets.connect(srv.url.replace("http", "ws") + "/ws") as ws:
                    return json.loads(await asyncio.wait_for(ws.recv(), 10))  # sent before the server hangs up

            error = asyncio.run(third())
            assert error["type"] == "error" and error["data"]["code"] == "CAPACITY_REACHED"
            assert error["data"]["max_sessions"] == 2
            r = httpx.post(f"{srv.url}/reset", json={"seed": 3})
            assert r.status_code == 503 and r.json()["detail"]["code"] == "CAPACITY_REACHED"
            assert a.step({"message": "done"}).done  # the sessions in place are untouched
        deadline = time.monotonic() + 5
        while httpx.get(f"{srv.url}/sessions").json()["active_sessions"] and time.monotonic() < deadline:
            time.sleep(0.05)
        with GenericEnvClient(base_url=srv.url).sync() as d:  # closing gave the slots back
            assert d.reset(seed=3).observation["messages"]


def test_idle_timeout_closes_sessions():
    with ServerThread(create_toolgym_app(ENV_ID, max_sessions=1, idle_timeout=0.3)) as srv:
        with GenericEnvClient(base_url=srv.url).sync() as client:
            client.reset(seed=1)
            time.sleep(1.0)
            with pytest.raises(RuntimeError, match=r"closed after 0.3 s without activity"):
                client.step({"message": "hello"})
        sid = httpx.post(f"{srv.url}/reset", json={"seed": 1}).json()["metadata"]["session_id"]  # the slot is free
        time.sleep(1.0)
        assert httpx.get(f"{srv.url}/state", params={"session_id": sid}).status_code == 404


def test_bad_server_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown env id"):
        create_toolgym_app("ToolGym/Nope-v0")
    with pytest.raises(ValueError, match="max_sessions"):
        create_toolgym_app(ENV_ID, max_sessions=0)


@pytest.mark.slow
def test_cli_serve_subprocess():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "toolgym.cli", "serve", ENV_ID, "--port", str(port), "--max-sessions", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "toolgym serve did not come up"
            time.sleep(0.1)
        gold, rewards, _, _ = in_process(4)
        with GenericEnvClient(base_url=f"http://127.0.0.1:{port}").sync() as client:
            client.reset(seed=4)
            assert sum(client.step({"message": a}).reward for a in gold) == pytest.approx(sum(rewards))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    bad = subprocess.run([*cmd[:4], "ToolGym/Nope-v0"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown env id" in bad.stderr


@pytest.mark.slow
def test_verifiers_openenv_taskset_gold_policy_return_equals_in_process(server):
    """verifiers 0.4's own OpenEnv env (v1 ``OpenEnvEnv`` + ``OpenEnvTaskset``, ``base_url`` mode) plays the
    gold trajectory, the model being a scripted chat endpoint; the summed OpenEnv reward it records is the
    in-process return."""
    import verifiers.v1 as vf
    from venv_chat_harness import VenvChatHarnessConfig
    from verifiers.v1.clients import EvalClientConfig, ModelContext
    from verifiers.v1.runtimes import SubprocessConfig
    from verifiers.v1.tasksets.openenv import OpenEnvConfig, OpenEnvEnv, OpenEnvEnvConfig
    from verifiers.v1.utils.loaders import load_environment

    seeds = [3, 4]
    scripts, want = {}, {}
    for seed in seeds:
        gold, rewards, _, first = in_process(seed)
        scripts[next(m["content"] for m in first if m["role"] == "user")] = gold
        want[seed] = sum(rewards)
    model = ScriptedChatModel(scripts)
    with ServerThread(model.app) as llm:
        client = EvalClientConfig(base_url=f"{llm.url}/v1", api_key_var="TOOLGYM_SCRIPTED_MODEL_KEY")
        config = OpenEnvEnvConfig(
            taskset=OpenEnvConfig(id="openenv", base_url=server.url, resets=[{"seed": s} for s in seeds]),
            player=vf.AgentConfig(
                harness=VenvChatHarnessConfig(), runtime=SubprocessConfig(), model="gold", client=client, max_turns=8
            ),
        )
        env = load_environment(config)
        assert isinstance(env, OpenEnvEnv)
        tasks = list(env.taskset)

        async def run() -> list:
            ctx = ModelContext(model="gold", client=client)
            async with env.serving():
                return [await env.run_episode(task, ctx) for task in tasks]

        episodes = asyncio.run(run())
    for seed, episode in zip(seeds, episodes, strict=True):
        assert episode.ok, episode.errors
        (trace,) = episode.traces
        assert trace.rewards["openenv_reward"].score == pytest.approx(want[seed])
    assert len(model.requests) == sum(len(t) for t in scripts.values())  # one model call per gold turn


@pytest.mark.slow
def test_benchmark_smoke(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "server_throughput.py")]
    cmd += ["--sessions", "4", "--steps", "6", "--warmup", "2", "--rounds", "1"]
    res = subprocess.run(
        [*cmd, "--out", str(out)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert {r["env"] for r in report["results"]} == {"toolgym", "echo"}
    for r in report["results"]:
        assert r["steps"] == 4 * 6 and r["errors"] == 0 and r["steps_per_s"] > 0
        assert 0 < r["p50_ms"] <= r["p99_ms"]
    assert report["ratio_toolgym_over_echo"] > 0
    assert "steps/s" in res.stdout


def test_process_isolated_tools_step_in_threads():
    gold, rewards, _, _ = in_process(6, env_id=ENV_ID)
    app = create_toolgym_app(ENV_ID, env_kwargs={"isolation": "process"}, max_sessions=2)
    with ServerThread(app) as srv, ToolGymEnvClient(base_url=srv.url).sync() as client:
        client.reset(seed=6)
        assert sum(client.step(a).reward for a in gold) == pytest.approx(sum(rewards))
    with pytest.raises(ValueError, match="executor"):
        create_toolgym_app(ENV_ID, executor="fork")


def test_server_freezes_startup_objects_and_restores_the_collector_at_shutdown():
    import gc

    from fastapi.testclient import TestClient

    before = gc.get_threshold()
    app = create_toolgym_app("ToolGym/FlightBooking-v0", max_sessions=2, idle_timeout=None)
    with TestClient(app) as client:  # runs the app's startup and shutdown
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] >= 10_000
        assert client.get("/health").status_code == 200
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
