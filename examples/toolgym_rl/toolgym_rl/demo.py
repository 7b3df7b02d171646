"""The CPU demo: a short SFT warm start of the small policy, then GRPO and REINFORCE++ from it on each env.

    python -m toolgym_rl.demo            # or: bash demo_cpu.sh

1. SFT on gold turns of FlightBooking's TRAIN split, deliberately short (decent but imperfect): it teaches the
   text interface on one domain, so the RL envs start from what transfers.
2. For every env id (HotelBooking and Banking by default): GRPO and REINFORCE++, each starting from that
   same checkpoint, evaluated greedily on the env's TEST split before and after (packs without a split, such as
   the four-record FTRLSample, evaluate on their only records: the table says so).
3. Prints the before/after table and writes ``runs/demo/curves.png`` and ``runs/demo/results.json``.

The RL runs use ``--mode episode --episode-return f1`` by default: with this tiny policy, FTRL's turn-level
reward (``--mode turn``) was measured to drift towards never answering (more turns, lower Solve-F1), while
scoring whole episodes by Solve-F1 optimises the reported metric directly. Both modes are one flag away.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from toolgym_rl import common, grpo, reinforce_pp, sft


@dataclass
class Args:
    env_ids: list[str] = field(default_factory=lambda: ["ToolGym/HotelBooking-v1", "ToolGym/Banking-v0"])
    """envs to train and evaluate on"""
    sft_env_id: str = "ToolGym/FlightBooking-v0"
    """env whose train-split gold turns give the warm start"""
    sft_steps: int = 20
    """SFT steps of the warm start (short on purpose)"""
    small_dim: int = 32
    """width of the small policy"""
    small_layers: int = 1
    """transformer layers of the small policy"""
    rl_steps: list[int] = field(default_factory=lambda: [30, 30])
    """RL steps per algorithm, one number per env id (or one for all)"""
    prompts_per_step: int = 16
    """scenarios (episode mode) or visited prefixes (turn mode) per RL step"""
    group_size: int = 8
    """rollouts per prompt"""
    lr: float = 5e-4
    """RL learning rate"""
    mode: Literal["turn", "episode"] = "episode"
    """RL mode (see the module docstring)"""
    episode_return: Literal["sum", "f1"] = "f1"
    """episode mode: score an episode by Solve-F1 or by its summed turn rewards"""
    eval_episodes: int = 100
    """greedy held-out episodes per evaluation"""
    algos: list[str] = field(default_factory=lambda: ["grpo", "reinforce_pp"])
    """which trainers to run"""
    seed: int = 1
    """seed of everything"""
    curriculum: str | None = None
    """knob levels as JSON for the RL runs, e.g. '{"distractors": [0, 2]}' (see grpo --help); evaluation keeps
    the env's default knobs"""
    curriculum_threshold: float = 0.6
    """rolling training Solve-F1 that promotes the curriculum"""
    curriculum_window: int = 32
    """training episodes in the curriculum's rolling window"""
    train_kinds: str | None = None
    """kind mix of the RL runs' envs: "all" (FTRL's four plus irrelevance and missing_info) or a comma list;
    the standard evaluation keeps the env's default mix"""
    per_kind: bool = False
    """also evaluate the warm start and every final policy per kind, FTRL's and the extra ones, in an env that
    offers all six (and so ask_user); prints a second table"""
    out: str = "runs/demo"
    """output folder"""


def kind_mix(spec: str | None) -> list[str] | None:
    """``--train-kinds``: None (the env's default mix), "all", or a comma list of kinds."""
    from toolgym.scenario import ALL_KINDS

    if spec is None:
        return None
    kinds = list(ALL_KINDS) if spec == "all" else [k.strip() for k in spec.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(ALL_KINDS))
    if unknown:
        raise SystemExit(f"--train-kinds: unknown kind(s) {unknown}; choose from {', '.join(ALL_KINDS)} or all")
    return kinds


def per_kind_scores(policy_path: str, env_id: str, episodes: int) -> dict[str, float]:
    """Held-out Solve-F1 of one policy: on the env's default mix ("default"), and per kind in the env that
    offers all six kinds (an irrelevance episode scores 1 only when the policy makes no call)."""
    from toolgym.scenario import ALL_KINDS

    policy = common.load_policy(policy_path)
    row = {"default": common.evaluate(policy, env_id, episodes, split="test")["solve_f1"]}
    for kind in ALL_KINDS:
        res = common.evaluate(policy, env_id, episodes, split="test", kind=kind, kinds=list(ALL_KINDS))
        row[kind] = res["solve_f1"]
    return row


def format_kind_table(rows: dict[str, dict[str, float]]) -> str:
    cols = list(next(iter(rows.values())))
    w = max(14, *(len(n) + 2 for n in rows))
    head = f"{'policy':<{w}}" + "".join(f"{c:>{max(9, len(c) + 2)}}" for c in cols)
    lines = ["held-out Solve-F1 per kind ('default': the env's own mix; the rest in the env offering all six)"]
    lines += [head, "-" * len(head)]
    for name, row in rows.items():
        lines.append(f"{name:<{w}}" + "".join(f"{row[c]:>{max(9, len(c) + 2)}.3f}" for c in cols))
    return "\n".join(lines)


def main(args: Args) -> list[dict]:
    start = time.time()
    out = Path(args.out)
    train_kinds = kind_mix(args.train_kinds)
    warm = sft.main(
        sft.Args(
            env_id=args.sft_env_id,
            steps=args.sft_steps,
            small_dim=args.small_dim,
            small_layers=args.small_layers,
            eval_episodes=0,
            seed=args.seed,
            out=str(out / "sft"),
        )
    )
    checkpoint = str(out / "sft" / "policy.pt")
    print(f"warm start: {args.sft_steps} SFT steps on {args.sft_env_id} in {warm['seconds']:.0f}s")
    results = []
    steps = args.rl_steps if len(args.rl_steps) == len(args.env_ids) else args.rl_steps[:1] * len(args.env_ids)
    for env_id, n_steps in zip(args.env_ids, steps, strict=True):
        for algo in args.algos:
            common_kw = dict(
                env_id=env_id,
                checkpoint=checkpoint,
                mode=args.mode,
                episode_return=args.episode_return,
                steps=n_steps,
                prompts_per_step=args.prompts_per_step,
                lr=args.lr,
                eval_episodes=args.eval_episodes,
                seed=args.seed,
                curriculum=args.curriculum,
                curriculum_threshold=args.curriculum_threshold,
                curriculum_window=args.curriculum_window,
                out=str(out / f"{_short(env_id)}_{algo}"),
            )
            if train_kinds is not None:
                common_kw.update(env_kwargs=json.dumps({"kinds": train_kinds}), eval_env_kwargs="{}")
            if algo == "grpo":
                summary = grpo.main(grpo.Args(group_size=args.group_size, **common_kw))
            else:
                summary = reinforce_pp.main(reinforce_pp.Args(rollouts_per_prompt=args.group_size, **common_kw))
            summary["held_out"] = common.has_split(env_id)
            summary["run_dir"] = common_kw["out"]
            results.append(summary)
    wall = time.time() - start
    table = format_table(results, wall)
    if args.curriculum:
        stages = ", ".join(f"{_short(r['env_id'])} {r['algo']} {r['curriculum_stage']}" for r in results)
        table += f"\ncurriculum {args.curriculum}: final stage {stages}"
    kind_rows: dict[str, dict[str, float]] = {}
    if args.per_kind:
        for env_id in dict.fromkeys(r["env_id"] for r in results):
            kind_rows[f"{_short(env_id)} warm start"] = per_kind_scores(checkpoint, env_id, args.eval_episodes)
            for r in (x for x in results if x["env_id"] == env_id):
                name = f"{_short(env_id)} {r['algo']}"
                kind_rows[name] = per_kind_scores(str(Path(r["run_dir"]) / "policy.pt"), env_id, args.eval_episodes)
        table += "\n\n" + format_kind_table(kind_rows)
        wall = time.time() - start
    if train_kinds is not None:
        table += f"\nRL envs' kind mix: {', '.join(train_kinds)}"
    print(table)
    (out / "results.json").write_text(
        json.dumps({"wall_seconds": wall, "runs": results, "per_kind": kind_rows}, indent=2)
    )
    (out / "results.txt").write_text(table + "\n")
    plot(results, out / "curves.png")
    print(f"wrote {out / 'curves.png'} and {out / 'results.json'}")
    return results


def _short(env_id: str) -> str:
    return env_id.split("/")[-1].split("-v")[0]


def format_table(results: list[dict], wall: float) -> str:
    w = max([16] + [len(_short(r["env_id"])) + 2 for r in results])
    head = f"{'env':<{w}}{'algo':<14}{'eval on':<10}{'F1 before':>10}{'F1 after':>10}{'delta':>8}"
    head += f"{'P after':>9}{'R after':>9}{'train s':>9}"
    lines = [head, "-" * len(head)]
    for r in results:
        b, a = r["test_before"], r["test_after"]
        split = "test" if r["held_out"] else "train*"
        lines.append(
            f"{_short(r['env_id']):<{w}}{r['algo']:<14}{split:<10}{b['solve_f1']:>10.3f}{a['solve_f1']:>10.3f}"
            f"{a['solve_f1'] - b['solve_f1']:>+8.3f}{a['solve_p']:>9.3f}{a['solve_r']:>9.3f}{r['train_seconds']:>9.0f}"
        )
    lines.append(f"total wall time {wall:.0f}s (SFT warm start, evaluations and all RL runs)")
    if any(not r["held_out"] for r in results):
        lines.append("* a static pack without a test split: evaluated on the same records it trains on")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(r["env_id"] for r in results))
    fig, axes = plt.subplots(1, len(envs), figsize=(4.6 * len(envs), 3.4), squeeze=False)
    for ax, env_id in zip(axes[0], envs, strict=True):
        for i, r in enumerate(x for x in results if x["env_id"] == env_id):
            with open(Path(r["run_dir"]) / "metrics.csv") as f:
                rows = [row for row in csv.DictReader(f) if row.get("solve_f1")]
            steps = [int(row["step"]) for row in rows]
            f1 = [float(row["solve_f1"]) for row in rows]
            smooth = [sum(f1[max(0, k - 4) : k + 1]) / len(f1[max(0, k - 4) : k + 1]) for k in range(len(f1))]
            color = f"C{i}"
            ax.plot(steps, smooth, color=color, label=f"{r['algo']} train Solve-F1 (5-step mean)")
            ax.plot(
                [0, r["steps"]],
                [r["test_before"]["solve_f1"], r["test_after"]["solve_f1"]],
                "o--",
                color=color,
                label=f"{r['algo']} eval before/after",
            )
        ax.set_title(env_id, fontsize=9)
        ax.set_xlabel("RL step")
        ax.set_ylabel("Solve-F1")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main(tyro.cli(Args))
