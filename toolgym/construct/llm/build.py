"""A whole ``openai`` build: scenarios ``concurrency`` at a time, journaled, resumable, then the pack and report.

``openai`` is imported only when a build starts (``pip install toolgym[eval]``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from toolgym.construct.llm.code_check import Limits
from toolgym.construct.llm.config import LLMBuildConfig
from toolgym.construct.llm.journal import JOURNAL, Journal
from toolgym.construct.llm.pack import REPORT, report, write_pack
from toolgym.construct.llm.stages import Model, ScenarioBuild, ScenarioFailed
from toolgym.jsonl import exclusive
from toolgym.model_client import RunAborted


async def arun_build(cfg: LLMBuildConfig) -> dict[str, Any]:
    """Build (or resume) the pack in ``cfg.out``; returns the report (also written to ``report.json``)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out, "build"):
        journal = Journal(out / JOURNAL).load()
        mine = same_settings(journal, cfg, out)
        try:
            run = await _run(cfg, journal, mine)
        finally:
            journal.close()
        manifest = write_pack(cfg, journal)
        rep = report(cfg, journal, run)
        rep["manifest"] = str(manifest) if manifest else None
        (out / REPORT).write_text(json.dumps(rep, indent=2, ensure_ascii=False) + "\n", "utf-8")
        return rep


def same_settings(journal: Any, cfg: Any, out: Path) -> dict[str, Any]:
    """``cfg``'s result-defining settings as JSON; ValueError when the journal in ``out`` was started with
    others (a resumed build or phrasing run must not mix the output of two settings)."""
    mine = json.loads(json.dumps(cfg.result_config()))
    if journal.starts:
        theirs = journal.starts[0]["config"]
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        if diff:
            detail = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise ValueError(f"{out} holds a build with other settings ({detail}); use another --out")
    return mine


NOTHING_TO_DO = {"finished_this_run": 0, "failed_this_run": 0, "aborted": None, "seconds": 0.0}


def open_run(
    cfg: LLMBuildConfig, journal: Journal, config: dict[str, Any], n_todo: int, desc: str, total: int
) -> tuple[Model, Any]:
    """Start a resumable run of ``n_todo`` items out of ``total``: its start event in the journal, the model
    client, and a progress bar (``None`` without ``cfg.progress``) that counts the items already done."""
    journal.append({"event": "start", "config": config, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "todo": n_todo})
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=total - n_todo, desc=desc, unit="sc", dynamic_ncols=True)
    return Model(cfg), bar


async def _run(cfg: LLMBuildConfig, journal: Journal, config: dict[str, Any]) -> dict[str, Any]:
    t0 = time.monotonic()
    todo = [i for i in range(cfg.scenarios) if i not in journal.finals]
    if not todo:
        return dict(NOTHING_TO_DO)
    model, bar = open_run(cfg, journal, config, len(todo), f"build {cfg.name}", cfg.scenarios)

    def progress() -> None:
        done = [f for f in journal.finals.values() if f["index"] < cfg.scenarios]
        if bar is not None:
            bar.set_postfix(accepted=sum(f["event"] == "accepted" for f in done), failed=stats["failed"])

    async def one(index: int) -> dict[str, Any]:
        return await ScenarioBuild(cfg, model, journal, index).run()

    stats: dict[str, Any] = {"failed": 0}
    return await drain(cfg, model, todo, one, journal, bar, t0, progress, stats)


async def drain(
    cfg: Any,
    model: Model,
    todo: list[Any],
    one: Callable[[Any], Awaitable[dict[str, Any]]],
    journal: Any,
    bar: Any,
    t0: float,
    progress: Callable[[], None] | None = None,
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``one(item)`` for every item, ``cfg.concurrency`` at a time, journaling each record it returns.

    The loop the construction backends share (a build's scenarios, a phrasing run's queries): a scenario that
    fails after its retries is counted and skipped, ``cfg.max_consecutive_failures`` of them in a row (default
    ``max(3, concurrency)``) abort the run, as does a :class:`RunAborted` from the client; the model is closed
    at the end. Returns the run's counts and the model's request stats.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)
    limit = cfg.max_consecutive_failures or max(3, cfg.concurrency)
    state = state if state is not None else {}
    state.update({"failed": 0, "consecutive": 0, "aborted": None, "finished": 0, "last_error": None})

    async def worker() -> None:
        while not queue.empty() and state["aborted"] is None:
            item = queue.get_nowait()
            try:
                rec = await one(item)
            except ScenarioFailed as exc:
                state["failed"] += 1
                state["consecutive"] += 1
                state["last_error"] = str(exc)
                if state["consecutive"] >= limit and state["aborted"] is None:
                    state["aborted"] = f"{state['consecutive']} scenarios in a row failed after retries ({exc})"
                continue
            except RunAborted as exc:
                state["aborted"] = str(exc)
                continue
            state["consecutive"] = 0
            state["finished"] += 1
            journal.append(rec)
            if bar is not None:
                bar.update(1)
                if progress is not None:
                    progress()

    try:
        await asyncio.gather(*(worker() for _ in range(min(cfg.concurrency, len(todo)))))
    finally:
        if bar is not None:
            bar.close()
        await model.close()
    return {
        "finished_this_run": state["finished"],
        "failed_this_run": state["failed"],
        "aborted": state["aborted"],
        "last_error": state["last_error"],
        "seconds": round(time.monotonic() - t0, 1),
        **dict(model.stats),
    }


def run_build(**kwargs: Any) -> dict[str, Any]:
    """Build a static pack with a model: keyword arguments are :class:`LLMBuildConfig` fields."""
    limits = kwargs.pop("limits", None)
    cfg = LLMBuildConfig(**kwargs)
    if limits is not None:
        cfg.limits = limits if isinstance(limits, Limits) else Limits(**limits)
    return asyncio.run(arun_build(cfg))
