"""``toolgym serve`` throughput: many concurrent WebSocket sessions on loopback, toolgym vs OpenEnv's echo env.

Both envs are served the same way in the same run: a uvicorn subprocess running
``toolgym.integrations.openenv.create_server_app`` (openenv's ``HTTPEnvServer`` and its ``/ws`` loop), one
env per session. The echo env is OpenEnv's own, rendered from the template ``openenv init`` writes
(``openenv/cli/templates/openenv_env``), so the comparison isolates what a toolgym step costs over the
protocol floor. One client process drives every session with OpenEnv's wire messages over ``websockets``:

* toolgym: each session plays gold episodes (seeds from a pool, gold actions computed in-process before the
  clock starts), resetting when an episode ends; resets are timed apart from steps but count in the wall time.
* echo: each session resets once and then sends a fixed message.

Each session first plays ``--warmup`` untimed steps (its env compiles the tools it meets and warms its caches,
as it would early in a long RL run); then ``--steps`` timed steps.

Reported per env and round: steps/s over the wall clock, p50/p99 step latency (send to reply); then the
median over ``--rounds`` alternating runs of the ratio of the two steps/s figures (toolgym/echo), and of the
messages/s figures (a toolgym session also sends a reset every few steps; the echo env never ends).
``--sessions``/``--steps``/``--rounds`` shrink it for a smoke test.

    python benchmarks/server_throughput.py --sessions 256 --steps 40 --out server_throughput.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def echo_env_classes():
    """OpenEnv's echo env (Environment, Action, Observation), rendered from the package's ``openenv init`` template."""
    import openenv
    from openenv.cli.commands.init import _create_template_replacements, _replace_in_content

    base = Path(openenv.__file__).parent / "cli" / "templates" / "openenv_env"  # raw template: read, not imported
    subst = _create_template_replacements("echo")  # what `openenv init echo` substitutes

    def render(path: Path) -> str:
        return _replace_in_content(path.read_text(), subst)

    models = types.ModuleType("models")  # the template's environment falls back to `from models import ...`
    exec(compile(render(base / "models.py"), "echo/models.py", "exec"), models.__dict__)
    sys.modules["models"] = models
    envmod = types.ModuleType("echo_environment")
    src = base / "server" / "__ENV_NAME___environment.py"
    exec(compile(render(src), "echo/server/echo_environment.py", "exec"), envmod.__dict__)
    return envmod.EchoEnvironment, models.EchoAction, models.EchoObservation


def build_app(kind: str, env_id: str, max_sessions: int):
    from toolgym.integrations.openenv import create_server_app, create_toolgym_app

    if kind == "toolgym":
        return create_toolgym_app(env_id, max_sessions=max_sessions, idle_timeout=None)
    env_cls, action_cls, obs_cls = echo_env_classes()
    return create_server_app(env_cls, action_cls, obs_cls, max_sessions=max_sessions, env_name="echo")


def serve(kind: str, env_id: str, port: int, max_sessions: int) -> None:
    import uvicorn

    from toolgym.serve_cli import UVICORN_OPTIONS  # the options `toolgym serve` runs uvicorn with, for both envs

    app = build_app(kind, env_id, max_sessions)
    uvicorn.run(app, **UVICORN_OPTIONS, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind: str, env_id: str, max_sessions: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    cmd = [sys.executable, __file__, "--serve", kind, "--env-id", env_id, "--port", str(port)]
    cmd += ["--max-sessions", str(max_sessions)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the {kind} server did not come up")
        time.sleep(0.1)


def gold_pool(env_id: str, n: int, seed0: int = 0) -> list[tuple[int, list[str]]]:
    import gymnasium as gym

    import toolgym  # noqa: F401

    env = gym.make(env_id)
    pool = []
    for s in range(seed0, seed0 + n):
        env.reset(seed=s)
        pool.append((s, env.unwrapped.gold_actions()))
    env.close()
    return pool


def in_process_ms_per_step(env_id: str, pool) -> float:
    """The env's own cost: ms of reset + step CPU per step, in-process, over the same gold episodes."""
    import gymnasium as gym

    env = gym.make(env_id)
    n, t = 0, time.perf_counter()
    for seed, actions in pool:
        env.reset(seed=seed)
        for a in actions:
            n += 1
            if env.step(a)[2]:
                break
    env.close()
    return (time.perf_counter() - t) * 1e3 / max(n, 1)


async def drive(url: str, kind: str, sessions: int, steps: int, pool, warmup: int = 0) -> dict:
    import websockets

    ws_url = url.replace("http://", "ws://") + "/ws"
    step_lat: list[float] = []
    reset_lat: list[float] = []
    errors = 0

    async def call(ws, msg: dict, sink: list[float]) -> dict:
        nonlocal errors
        t = time.perf_counter()
        await ws.send(json.dumps(msg))
        reply = json.loads(await ws.recv())
        sink.append(time.perf_counter() - t)
        if reply.get("type") == "error":
            errors += 1
        return reply

    conns = [
        await websockets.connect(ws_url, ping_interval=None, max_size=2**26, open_timeout=120) for _ in range(sessions)
    ]

    class Session:
        def __init__(self, i: int, ws):
            self.ws, self.k, self.done, self.turn, self.actions = ws, i, True, 0, []

        async def run(self, n: int, steps_sink: list[float], resets_sink: list[float]) -> None:
            for _ in range(n):
                if kind == "echo":
                    if self.done:  # once: the echo episode never ends
                        await call(self.ws, {"type": "reset", "data": {}}, resets_sink)
                        self.done = False
                    await call(self.ws, {"type": "step", "data": {"message": "hello from the benchmark"}}, steps_sink)
                    continue
                if self.done:
                    seed, self.actions = pool[self.k % len(pool)]
                    self.k += 1
                    await call(self.ws, {"type": "reset", "data": {"seed": seed}}, resets_sink)
                    self.done, self.turn = False, 0
                reply = await call(self.ws, {"type": "step", "data": {"message": self.actions[self.turn]}}, steps_sink)
                self.turn += 1
                self.done = bool(reply.get("data", {}).get("done")) or self.turn >= len(self.actions)

    live = [Session(i, ws) for i, ws in enumerate(conns)]
    if warmup:  # untimed: the sessions' envs compile their tools and warm their caches, as in a long RL run
        await asyncio.gather(*(s.run(warmup, [], []) for s in live))
    t0 = time.perf_counter()
    await asyncio.gather(*(s.run(steps, step_lat, reset_lat) for s in live))
    wall = time.perf_counter() - t0
    for ws in conns:
        await ws.close()
    lat = np.array(step_lat) * 1e3
    return {
        "env": kind,
        "sessions": sessions,
        "steps": len(step_lat),
        "resets": len(reset_lat),
        "errors": errors,
        "wall_s": wall,
        "steps_per_s": len(step_lat) / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "reset_p50_ms": float(np.percentile(np.array(reset_lat) * 1e3, 50)) if reset_lat else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=256, help="concurrent WebSocket sessions per env (default 256)")
    p.add_argument("--steps", type=int, default=40, help="steps per session (default 40)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps per session first (default 20)")
    p.add_argument("--env-id", default="ToolGym/FlightBooking-v0")
    p.add_argument("--seeds", type=int, default=32, help="gold episodes in the toolgym pool (default 32)")
    p.add_argument("--rounds", type=int, default=3, help="alternating toolgym/echo runs; the median ratio (default 3)")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--serve", choices=["toolgym", "echo"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--max-sessions", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve, args.env_id, args.port, args.max_sessions)
        return 0
    if args.sessions < 1 or args.steps < 1 or args.rounds < 1:
        p.error("--sessions, --steps and --rounds must be at least 1")
    pool = gold_pool(args.env_id, args.seeds)
    env_floor = in_process_ms_per_step(args.env_id, pool)
    results, ratios, msg_ratios = [], [], []
    for rnd in range(args.rounds):  # the two envs alternate, so drifting machine load hits both alike
        by = {}
        for kind in ("toolgym", "echo"):
            proc, url = start_server(kind, args.env_id, args.sessions)
            try:
                r = asyncio.run(drive(url, kind, args.sessions, args.steps, pool, args.warmup))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            results.append({**r, "round": rnd})
            by[kind] = r
        ratios.append(by["toolgym"]["steps_per_s"] / by["echo"]["steps_per_s"])
        per_msg = [(by[k]["steps"] + by[k]["resets"]) / by[k]["wall_s"] for k in ("toolgym", "echo")]
        msg_ratios.append(per_msg[0] / per_msg[1])
    ratio, msg_ratio = float(np.median(ratios)), float(np.median(msg_ratios))
    print(f"\n{args.sessions} concurrent WebSocket sessions, {args.steps} steps each, loopback ({os.cpu_count()} CPUs)")
    head = ("env", "round", "steps", "resets", "errors", "wall s", "steps/s", "p50 ms", "p99 ms")
    widths = (5, 7, 7, 6, 7, 9, 8, 8)
    print(f"{head[0]:8} " + " ".join(f"{h:>{w}}" for h, w in zip(head[1:], widths, strict=True)))
    for r in results:
        print(
            f"{r['env']:8} {r['round']:5d} {r['steps']:7d} {r['resets']:7d} {r['errors']:6d} {r['wall_s']:7.2f} "
            f"{r['steps_per_s']:9.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}"
        )
    print(
        f"ratio toolgym/echo (steps/s), median of {args.rounds} rounds: {ratio:.2f} (target >= 0.7; rounds "
        f"{', '.join(f'{x:.2f}' for x in ratios)}); per message (steps + resets): {msg_ratio:.2f}"
    )
    print(f"toolgym in-process floor: {env_floor:.3f} ms of env CPU per step (gold episodes, resets included)")
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "env_id": args.env_id,
        "sessions": args.sessions,
        "steps_per_session": args.steps,
        "warmup_steps_per_session": args.warmup,
        "cpus": os.cpu_count(),
        "results": results,
        "rounds": args.rounds,
        "ratio_toolgym_over_echo": ratio,
        "ratios_per_round": ratios,
        "ratio_messages_per_s": msg_ratio,
        "ratios_messages_per_round": msg_ratios,
        "toolgym_in_process_ms_per_step": env_floor,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
