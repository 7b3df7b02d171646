"""``toolgym export``: write envs' gold episodes as SFT or RL datasets (JSONL, and parquet with pyarrow).

``--suite`` names ids the way ``toolgym eval --suite`` does (``bfcl``, ``ftrl:PATH``, ``taubench:PATH``), which
is how an id that exists only once registered from a path (a τ-bench domain, FTRL records) is exported. A
τ-bench domain's episodes play against the scripted user (its opening message is the task's instruction; it ends
the dialogue after the agent's reply), so an sft row is the gold actions and the reply holding the outputs.
Each id is exported to its own file; one that cannot be exported in the chosen format gets one error line
naming it and why, and the others are still exported.
"""

from __future__ import annotations

import argparse
import sys

from toolgym.distributed import add_backend_args
from toolgym.export import FORMATS, ExportError, ExportResult, export
from toolgym.prompts import ARGUMENTS, TOOLS_IN_PROMPT
from toolgym.registry import SUITE_SPECS, suite_env_ids
from toolgym.scenario import ALL_KINDS, EXTRA_KINDS
from toolgym.splits import SPLITS


def kinds_argument(text: str) -> list[str]:
    """``--kinds`` (here and in ``toolgym eval``/``show``): comma-separated kinds, or ``all`` for all six."""
    kinds = list(ALL_KINDS) if text == "all" else [k.strip() for k in text.split(",") if k.strip()]
    if not kinds or any(k not in ALL_KINDS for k in kinds):
        raise argparse.ArgumentTypeError(f"kinds are {', '.join(ALL_KINDS)} (or all), got {text!r}")
    return kinds


def _env_ids(args: argparse.Namespace) -> list[str]:
    """The positional ids, then those of every ``--suite`` spec (registered here), without repeats."""
    ids = list(args.env_ids)
    for spec in args.suite or ():
        ids.extend(i for i in suite_env_ids(spec) if i not in ids)
    if not ids:
        raise ExportError(f"give env ids or --suite ({', '.join(SUITE_SPECS)})")
    return ids


def cmd_export(args: argparse.Namespace) -> int:
    names = ("kind", "hops", "parallel", "distractors", "kinds")
    knobs = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    try:
        env_ids = _env_ids(args)
    except ValueError as exc:  # an unknown suite, a path that holds no suite (ExportError, PackError)
        print(f"toolgym export: error: {exc}", file=sys.stderr)
        return 2
    status = 0
    for env_id in env_ids:
        try:
            res = export(
                env_id,
                args.format,
                args.episodes,
                args.out,
                split=args.split,
                seed=args.seed,
                parquet=not args.no_parquet,
                backend=args.backend,
                ray_address=args.ray_address,
                num_workers=args.num_workers,
                arguments=args.arguments,
                tools_in_prompt=args.tools_in_prompt,
                one_call_per_turn=args.one_call_per_turn,
                agent_name=args.agent_name,
                **knobs,
            )
        except (ValueError, ImportError) as exc:  # ExportError, PackError, a split no record has, no pyarrow
            why = " ".join(str(exc).split())  # one line, whatever the message holds
            print(f"toolgym export: error: {why if why.startswith(env_id) else f'{env_id}: {why}'}", file=sys.stderr)
            status = 2
            continue
        _report(res)
    return status


def _report(res: ExportResult) -> None:
    kept = res.rows_total - res.rows_written
    print(f"{res.path}: {res.rows_written} rows written, {kept} already there, {res.rows_total} in all")
    if res.parquet:
        print(f"{res.parquet}: rewritten from the JSONL")
    if res.multi_call_rows:
        print(
            f"note: {res.multi_call_rows} rows have assistant turns with several calls; Llama 3.1/3.2's chat templates "
            "raise on them and gpt-oss's renders only the first call: export with --one-call-per-turn for those"
        )


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="write gold episodes as a dataset: sft (messages + tools), rl (turn-level prompts), ftrl (FTRL records)",
        description=__doc__,
    )
    p.add_argument("env_ids", nargs="*", metavar="ENV_ID")
    p.add_argument(
        "--suite",
        action="append",
        metavar="SPEC",
        help="repeatable, as in toolgym eval: bfcl (every installed BFCL category), ftrl:PATH (FTRL records or a "
        "pack folder) or taubench:PATH (a τ-bench-format domain folder, against the scripted user)",
    )
    p.add_argument("--format", choices=FORMATS, default="sft")
    p.add_argument("--episodes", type=int, default=100, help="episodes with seeds SEED .. SEED+EPISODES-1")
    p.add_argument("--split", choices=SPLITS, default="train", help="passed to procedural envs as split=")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="exports", help="output directory (default: exports)")
    p.add_argument("--no-parquet", action="store_true", help="write only the JSONL")
    p.add_argument(
        "--arguments",
        choices=ARGUMENTS,
        default="dict",
        help="tool-call arguments in sft/rl chats: dicts, as chat templates expect (default), or JSON strings",
    )
    p.add_argument(
        "--one-call-per-turn",
        action="store_true",
        help="split several-call assistant turns into one turn per call (for one-call chat templates)",
    )
    p.add_argument(
        "--tools-in-prompt",
        choices=TOOLS_IN_PROMPT,
        default="template",
        help="rl prompts: tools in the row's tools column for the chat template (default), listed in the system "
        "message as text (hermes; for rollouts with one global tool list, e.g. verl's stock agent loops), or none",
    )
    p.add_argument(
        "--agent-name",
        metavar="NAME",
        help="rl rows: verl's agent loop for each row (agent_name column), e.g. toolgym_agent; "
        "without it verl's default_agent_loop applies",
    )
    p.add_argument("--kind", choices=ALL_KINDS, help="scenario kind (default: the pack's mix)")
    p.add_argument(
        "--kinds",
        type=kinds_argument,
        metavar="K1,K2|all",
        help=f"the mix of kinds to draw from (default: FTRL's four; extra kinds: {', '.join(EXTRA_KINDS)})",
    )
    p.add_argument("--hops", type=int, help="chain length of multi-hop scenarios")
    p.add_argument("--parallel", type=int, help="branches of parallel scenarios")
    p.add_argument("--distractors", type=int, help="extra tools offered beyond the needed ones")
    add_backend_args(p)
    p.set_defaults(func=cmd_export)
    return p
