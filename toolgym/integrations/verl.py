"""verl's ``custom_reward_function``: FTRL's reward of one rl-export row, safe under verl's concurrent scoring.

verl loads this file by path (``custom_reward_function.path``) and execs it without registering it as a module,
so it defines nothing that needs its own module entry (no dataclasses): it only re-exports the scorer, whose env
cache is per thread, because verl's reward manager scores a batch's rows at once on a thread pool (verl 0.9.1:
``RewardLoopWorker`` runs the ``naive`` manager's ``run_single`` for every row as concurrent asyncio tasks, and each
sync ``compute_score`` call on the event loop's default thread pool).

Rows rolled out by the ``toolgym_agent`` loop (:mod:`toolgym.integrations.verl_agent`) carry their episode return as
``rm_scores`` already, so verl calls no reward function for them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from toolgym.export import compute_score

__all__ = ["compute_score", "compute_score_async"]


async def compute_score_async(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """The async twin of :func:`compute_score`: runs it on the default executor (tools run CPU-bound)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        None, lambda: compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs)
    )
