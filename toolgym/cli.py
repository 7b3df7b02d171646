"""The ``toolgym`` command: ``eval`` (a model or built-in agents on envs), ``list`` (envs), ``show`` (a scenario),
``export`` (datasets for SFT and RL trainers), ``build`` (check spec-based domains and write their pack manifests)."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from typing import Any, NoReturn

import gymnasium as gym

import toolgym  # noqa: F401  (registers the ToolGym/ ids)
from toolgym import export_cli, serve_cli
from toolgym.agents import AGENTS
from toolgym.construct import cli as build_cli
from toolgym.distributed import add_backend_args
from toolgym.eval_cli import add_model_args, cmd_model_eval, run_harness, user_kwargs, wants_model
from toolgym.evaluate import evaluate, format_table, summarize
from toolgym.packs import PackError
from toolgym.registry import (
    env_options,
    generator_knobs,
    kwargs_for,
    manifest_for,
    registered_ids,
    suite_env_ids,
    takes_knobs,
)
from toolgym.scenario import ALL_KINDS, EXTRA_KINDS, KINDS


def _knobs(args: argparse.Namespace) -> dict[str, Any]:
    knobs = {}
    for key in ("kind", "hops", "parallel", "distractors", "kinds"):
        val = getattr(args, key, None)
        if val is not None:
            knobs[key] = val
    return knobs


def _add_knobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=ALL_KINDS, help="scenario kind (default: the pack's mix)")
    p.add_argument(
        "--kinds",
        type=export_cli.kinds_argument,
        metavar="K1,K2|all",
        help=f"the mix of kinds to draw from (default: FTRL's four; extra kinds: {', '.join(EXTRA_KINDS)})",
    )
    p.add_argument("--hops", type=int, help="chain length of multi-hop scenarios")
    p.add_argument("--parallel", type=int, help="branches of parallel scenarios")
    p.add_argument("--distractors", type=int, help="extra tools offered beyond the needed ones")


def _suite_ids(args: argparse.Namespace) -> list[str] | None:
    """The env ids of ``--suite`` specs added to the positional ones; None (after printing why) on a bad spec."""
    ids = list(args.env_ids)
    for spec in args.suite or ():
        try:
            ids.extend(i for i in suite_env_ids(spec) if i not in ids)
        except (ValueError, PackError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None
    if not ids:
        print("error: give env ids or --suite", file=sys.stderr)
        return None
    return ids


def cmd_eval(args: argparse.Namespace) -> int:
    ids = _suite_ids(args)
    if ids is None:
        return 2
    args.env_ids = ids
    if wants_model(args):
        return cmd_model_eval(args, _knobs(args))
    if args.backend == "ray" or user_kwargs(args):  # a model user talks through the harness's client
        return cmd_agents_eval_harness(args)
    report = []
    for env_id in args.env_ids:
        kwargs = kwargs_for(env_id, _knobs(args))
        for agent in args.agent or ["gold", "random"]:
            results = evaluate(env_id, agent, args.episodes, seed=args.seed, **kwargs)
            rows = summarize(results)
            print(format_table(f"\n{env_id}  agent={agent}  episodes={args.episodes}  seed={args.seed}", rows))
            report.append({"env_id": env_id, "agent": agent, "rows": rows})
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


def cmd_agents_eval_harness(args: argparse.Namespace) -> int:
    """Built-in agents through the harness (on Ray workers with ``--backend ray``, or against a model-played
    user): episodes.jsonl per agent, resumable."""
    from pathlib import Path

    from toolgym.harness import format_summary

    report = []
    status = 0
    for agent in args.agent or ["gold", "random"]:
        summary = run_harness(
            args,
            agent=agent,
            episodes=args.episodes,
            env_kwargs={**_knobs(args), **user_kwargs(args)},
            out=str(Path(args.out) / agent) if args.out else None,
        )
        if isinstance(summary, int):
            return summary
        print(format_summary(summary))
        print(f"wrote {summary['run']['out_dir']}/episodes.jsonl, summary.json, summary.png")
        status = status or (0 if summary["complete"] else 1)
        for env_id, e in summary["envs"].items():
            report.append({"env_id": env_id, "agent": agent, "rows": e["rows"]})
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")
    return status


def cmd_list(args: argparse.Namespace) -> int:
    """One block per env: id, pack type, kinds, knobs (gym.make kwargs) and what it holds."""
    for env_id in registered_ids():
        m = manifest_for(env_id)
        if takes_knobs(env_id):
            kinds = ", ".join(m.get("kinds", KINDS))
            if m.get("extra_kinds"):
                kinds += f" (on request: {', '.join(m['extra_kinds'])})"
        else:
            kinds = "as recorded"
        knobs = ", ".join(generator_knobs(env_id)) or "-"  # a static pack takes split
        print(f"{env_id}  [{m['type']}]  {m.get('description', '')}")
        print(f"    kinds: {kinds}")
        print(f"    knobs: {knobs}")
        if "entry" in m:  # an env of its own kind: its gym.make options instead of generator knobs
            print(f"    options: {', '.join(sorted(env_options(env_id)))}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    knobs = _knobs(args) if takes_knobs(args.env_id) else {}
    env = gym.make(args.env_id, render_mode="ansi", **knobs)
    obs, info = env.reset(seed=args.seed)
    u = env.unwrapped
    print(f"scenario {info['scenario_id']}  kind={info['kind']}  unsolved={info['unsolved_set']}\n")
    print(env.render())
    print("tools:")
    for t in obs["tools"]:
        fn = t["function"]
        props = ", ".join(fn.get("parameters", {}).get("properties", {}))
        print(f"  {fn['name']}({props}): {fn.get('description', '')}")
    print("\ngold plan:")
    try:
        for i, turn in enumerate(u.gold_plan(), 1):
            for call in turn:
                print(f"  turn {i}: {call['name']}({json.dumps(call['arguments'], ensure_ascii=False)})")
    except ValueError as exc:
        print(f"  ({exc})")
    print(f"  final answer: {u.scenario.answer!r}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line on stderr (exit code 2) and a did-you-mean for a mistyped
    command, option or choice: argparse itself prints the whole usage first and suggests nothing.

    Subcommand parsers are of this class too (``add_subparsers`` makes its parsers of the parent's class)."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}{_did_you_mean(self, message)}\n")


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """`` (did you mean X?)`` for the closest known spelling of the bad command, choice or option, or ``""``."""
    bad = re.match(r"argument [^:]+: invalid choice: '([^']*)' \(choose from (.*)\)$", message)
    if bad:
        choices = bad.group(2)  # quoted through Python 3.11, bare in later versions
        word, known = bad.group(1), re.findall(r"'([^']*)'", choices) or [c.strip() for c in choices.split(",")]
    elif message.startswith("unrecognized arguments: "):
        word = message.removeprefix("unrecognized arguments: ").split()[0].split("=")[0]
        known = _options_of(parser, getattr(parser, "_argv", []))
    else:
        return ""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _options_of(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The option strings of the command ``argv`` runs: the subcommand's own, after the parser's."""
    known = [o for a in parser._actions for o in a.option_strings]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            command = next((w for w in argv if w in action.choices), None)
            if command is not None:
                known += _options_of(action.choices[command], argv[argv.index(command) + 1 :])
    return known


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="toolgym", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("eval", help="run a model or the built-in agents on envs; print Solve-P/R/F1 per kind")
    p.add_argument("env_ids", nargs="*", metavar="ENV_ID")
    p.add_argument(
        "--suite",
        action="append",
        metavar="SPEC",
        help="repeatable: bfcl (every installed BFCL category), ftrl:PATH (FTRL records or a pack folder) or "
        "taubench:PATH (a τ-bench-format domain folder; see --user-model); the suite's own score is printed "
        "beside Solve-P/R/F1",
    )
    p.add_argument("--agent", action="append", choices=sorted(AGENTS), help="repeatable; default: gold and random")
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the summary as JSON to this path")
    _add_knobs(p)
    add_model_args(p)
    add_backend_args(p)
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("list", help="list the registered envs")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="print one scenario, its tools and gold plan")
    p.add_argument("env_id", metavar="ENV_ID")
    p.add_argument("--seed", type=int, default=0)
    _add_knobs(p)
    p.set_defaults(func=cmd_show)
    export_cli.add_parser(sub)
    build_cli.add_parser(sub)
    serve_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user error is one line on stderr and exit code 2 (``TOOLGYM_DEBUG=1``: the traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `toolgym eval ... | head`: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (PackError, ValueError, TypeError, gym.error.Error) as exc:
        if os.environ.get("TOOLGYM_DEBUG"):
            raise
        print(f"toolgym {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
