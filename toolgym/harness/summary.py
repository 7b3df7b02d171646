"""What a run reports: the summary (Solve-P / Solve-R / Solve-F1 per env and scenario kind), its table, its chart.

``matplotlib`` is imported only when a chart is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolgym.evaluate import SUITE_METRICS, format_table, summarize
from toolgym.harness.config import EvalConfig


def build_summary(cfg: EvalConfig, done: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """Per env: one row per scenario kind plus ``all`` (Solve-P/R/F1 ×100, return, turns), over the requested seeds."""
    envs: dict[str, Any] = {}
    n_done = 0
    for env_id in cfg.env_ids:
        recs = [done[(env_id, cfg.seed + i)] for i in range(cfg.episodes) if (env_id, cfg.seed + i) in done]
        n_done += len(recs)
        envs[env_id] = {
            "episodes": len(recs),
            "missing": cfg.episodes - len(recs),
            "bad_request": sum(r.get("finish") == "bad_request" for r in recs),
            "rows": summarize(recs) if recs else [],
        }
    expected = cfg.episodes * len(cfg.env_ids)
    config = {**cfg.result_config(), "episodes": cfg.episodes, "base_url": cfg.base_url}
    return {
        "config": config,
        "episodes_expected": expected,
        "episodes_done": n_done,
        "missing": expected - n_done,
        "complete": n_done == expected,
        "envs": envs,
    }


def format_summary(summary: dict[str, Any]) -> str:
    cfg = summary["config"]
    who = f"model={cfg['model']} mode={cfg['mode']}{' json' if cfg['json_schema'] else ''}" if cfg["model"] else ""
    who = who or f"agent={cfg['agent']}"
    parts = []
    for env_id, e in summary["envs"].items():
        title = f"\n{env_id}  {who}  episodes={e['episodes']}/{cfg['episodes']}  seed={cfg['seed']}"
        parts.append(format_table(title, e["rows"]))
    return "\n".join(parts)


def write_chart(summary: dict[str, Any], path: Path) -> None:
    """Bar chart of Solve-P / Solve-R / Solve-F1 per scenario kind, one panel per env (Agg backend, no display);
    a suite's own score (Pass^1, ...) is a bar of its own, and an n/a metric (no sub-answers) has none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(summary["envs"].items())
    fig, axes = plt.subplots(len(envs), 1, figsize=(9, 3.2 * len(envs)), squeeze=False)
    solve = (("solve_p", "Solve-P"), ("solve_r", "Solve-R"), ("solve_f1", "Solve-F1"))
    for ax, (env_id, e) in zip(axes[:, 0], envs, strict=True):
        rows = e["rows"]
        ax.set_title(f"{env_id}  ({e['episodes']} episodes)", fontsize=10)
        if not rows:
            ax.text(0.5, 0.5, "no finished episodes yet", ha="center", va="center", transform=ax.transAxes)
            continue
        suite = [(k, t) for k, t in SUITE_METRICS.items() if all(k in r for r in rows)]
        metrics = [m for m in solve if any(r[m[0]] is not None for r in rows)] + suite
        width = 0.8 / len(metrics)
        xs = range(len(rows))
        for j, (key, label) in enumerate(metrics):
            values = [float("nan") if r[key] is None else r[key] for r in rows]  # n/a: no bar
            ax.bar([x + (j - (len(metrics) - 1) / 2) * width for x in xs], values, width, label=label)
        ax.set_xticks(list(xs), [f"{r['kind']}\n(n={r['episodes']})" for r in rows], fontsize=8)
        ax.set_ylim(0, 122)  # headroom for the legend
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("×100")
        ax.legend(fontsize=8, ncols=3, loc="upper right")
    cfg = summary["config"]
    fig.suptitle(str(cfg["model"] or cfg["agent"]), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
