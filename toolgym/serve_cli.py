"""``toolgym serve ENV_ID``: serve an env over OpenEnv's HTTP + WebSocket protocol, one isolated env per session.

Clients: OpenEnv's ``GenericEnvClient(base_url=...)`` (or ``toolgym.integrations.openenv.ToolGymEnvClient``),
verifiers' OpenEnv taskset (``base_url``), or plain HTTP (``POST /reset`` returns a ``session_id`` that
``/step``, ``/state`` and ``/close`` take). Needs ``pip install 'toolgym[openenv]'``.
"""

from __future__ import annotations

import argparse
import json
import sys

# permessage-deflate off: on loopback and LAN, compressing every observation costs more CPU than the bytes saved
# (it was the largest protocol cost per step in benchmarks/server_throughput.py); 64 MiB frames for full chats.
UVICORN_OPTIONS = {"ws_per_message_deflate": False, "ws_max_size": 64 * 2**20}


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from toolgym.integrations.openenv import create_toolgym_app
    except ImportError as exc:
        hint = "install the server extras: pip install 'toolgym[openenv]'"
        print(f"toolgym serve: error: {exc}; {hint}", file=sys.stderr)
        return 2
    try:
        env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
        if not isinstance(env_kwargs, dict):
            raise ValueError('--env-kwargs must be a JSON object, e.g. \'{"kind": "multi_hop"}\'')
        app = create_toolgym_app(
            args.env_id,
            env_kwargs=env_kwargs,
            max_sessions=args.max_sessions,
            idle_timeout=args.idle_timeout if args.idle_timeout > 0 else None,
            full_chat=args.full_chat,
            executor=args.executor,
        )
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        print(f"toolgym serve: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"serving {args.env_id} on http://{args.host}:{args.port} (WebSocket /ws, HTTP /reset /step /state /schema); "
        f"up to {args.max_sessions} sessions, idle timeout {args.idle_timeout:g} s",
        file=sys.stderr,
    )
    uvicorn.run(app, **UVICORN_OPTIONS, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="serve an env over OpenEnv's HTTP + WebSocket protocol (one isolated env per session)",
        description=__doc__,
    )
    p.add_argument("env_id", metavar="ENV_ID")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-sessions", type=int, default=64, help="concurrent sessions (WebSocket + HTTP); default 64")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="seconds before an idle session is closed (0: never; default 600)",
    )
    p.add_argument("--full-chat", action="store_true", help="observations carry the whole chat, not only new messages")
    p.add_argument(
        "--executor",
        choices=["auto", "inline", "thread"],
        default="auto",
        help="where steps run: inline on the event loop (fast; in-process tools) or in threads (auto: threads only"
        " with isolation=process tools)",
    )
    p.add_argument("--env-kwargs", help='JSON object of gym.make kwargs, e.g. \'{"kind": "multi_hop"}\'')
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)
    return p
