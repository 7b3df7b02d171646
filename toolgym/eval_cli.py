"""``toolgym eval --model ...``: the model options of the eval subcommand and the command that runs them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model evaluation (any OpenAI-compatible server; needs `pip install toolgym[eval]`)")
    g.add_argument("--model", help="model name (env TOOLGYM_MODEL); without it the built-in agents run")
    g.add_argument("--base-url", help="server URL, e.g. http://localhost:8000/v1 (env OPENAI_BASE_URL)")
    g.add_argument("--api-key", help="API key (env OPENAI_API_KEY; default 'EMPTY')")
    g.add_argument(
        "--mode",
        choices=("native", "text"),
        default="native",
        help="native: tools= and tool_calls; text: tools in the system prompt, <tool_call> blocks in the completion",
    )
    g.add_argument(
        "--json-schema",
        action="store_true",
        help="text mode: ask for schema-constrained JSON ({tool_calls: [...]} or {answer: ...})",
    )
    g.add_argument(
        "--response-format",
        choices=("json_object", "json_schema"),
        default="json_object",
        help="how --json-schema is sent: llama.cpp-style json_object+schema (default) or OpenAI json_schema",
    )
    g.add_argument("--concurrency", type=int, default=8, help="episodes in flight (default 8)")
    g.add_argument(
        "--out",
        help="output directory (default runs/<envs>_<model>_<mode>_<hash of settings>; built-in agents with "
        "--backend ray: <out>/<agent>)",
    )
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    g.add_argument(
        "--retries",
        type=int,
        default=4,
        help="retries per request on connection errors, timeouts, 5xx, 429 (default 4)",
    )
    g.add_argument(
        "--backoff",
        type=float,
        default=1.0,
        help="first retry delay in seconds (jittered down to half), doubled each retry, at most 60 s; "
        "a server's Retry-After takes its place",
    )
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--max-tokens", type=int, default=1024)
    g.add_argument("--max-turns", type=int, help="env max_turns (default: the env's, 20)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    u = p.add_argument_group("simulated user (τ-bench-format envs; default: the scripted user)")
    u.add_argument(
        "--user-model",
        help="model that plays the user from the task's instruction; with it the episodes run through the "
        "harness (resumable), also for --agent",
    )
    u.add_argument("--user-base-url", help="the user model's server (env TOOLGYM_USER_BASE_URL; default: --base-url)")
    u.add_argument(
        "--user-api-key", help="the user model's API key (env TOOLGYM_USER_API_KEY; default: the agent's key)"
    )
    u.add_argument("--user-max-tokens", type=int, default=256, help="tokens per user reply (default 256)")


def user_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The env kwargs of ``--user-model``: a model user spec (empty without one: envs keep the scripted user).

    The spec travels with the other env kwargs, so it is part of the run's result-defining settings."""
    model = getattr(args, "user_model", None)
    if not model:
        return {}
    return {"user": {"kind": "model", "model": model, "max_tokens": args.user_max_tokens}}


def user_server(args: argparse.Namespace) -> dict[str, Any]:
    """``user_base_url`` / ``user_api_key`` for the harness, from the flags (EvalConfig reads their env vars)."""
    return {
        "user_base_url": args.user_base_url,  # EvalConfig falls back to TOOLGYM_USER_BASE_URL, then the agent's
        "user_api_key": args.user_api_key,  # and to TOOLGYM_USER_API_KEY, then the agent's key
    }


def wants_model(args: argparse.Namespace) -> bool:
    return bool(args.model or (os.environ.get("TOOLGYM_MODEL") and not args.agent))


def run_harness(args: argparse.Namespace, **kwargs: Any) -> dict[str, Any] | int:
    """``run_eval`` over ``args.env_ids`` with the options every eval command shares (seed, client retries,
    turns, progress, backend, the simulated user's server) plus ``kwargs``: the run's summary, or the exit code
    after a one-line error (2: bad input; 130: interrupted, finished episodes kept)."""
    from toolgym.harness import run_eval

    try:
        return run_eval(
            args.env_ids,
            seed=args.seed,
            timeout=args.timeout,
            retries=args.retries,
            backoff=args.backoff,
            max_turns=args.max_turns,
            progress=not args.no_progress,
            backend=args.backend,
            ray_address=args.ray_address,
            num_workers=args.num_workers,
            **user_server(args),
            **kwargs,
        )
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished episodes are kept; rerun the same command to resume", file=sys.stderr)
        return 130


def cmd_model_eval(args: argparse.Namespace, knobs: dict[str, Any]) -> int:
    from toolgym.harness import format_summary

    if args.agent:
        print("error: give either --model or --agent", file=sys.stderr)
        return 2
    summary = run_harness(
        args,
        model=args.model,
        base_url=args.base_url,
        api_key=args.api_key,
        episodes=args.episodes,
        concurrency=args.concurrency,
        mode=args.mode,
        json_schema=args.json_schema,
        response_format=args.response_format,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        env_kwargs={**knobs, **user_kwargs(args)},
        out=args.out,
    )
    if isinstance(summary, int):
        return summary
    run = summary["run"]
    print(format_summary(summary))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    print(f"\nwrote {run['out_dir']}/episodes.jsonl, summary.json, summary.png")
    bad = sum(e["bad_request"] for e in summary["envs"].values())
    if bad:
        print(f"warning: {bad} episode(s) ended early because the server rejected a request (see 'errors')")
    if summary["complete"]:
        return 0
    why = run["aborted"] or run["last_error"] or "episodes failed"
    print(
        f"error: {summary['missing']} of {summary['episodes_expected']} episodes are missing ({why}). "
        "Rerun the same command to resume: finished episodes are kept and skipped.",
        file=sys.stderr,
    )
    return 1
