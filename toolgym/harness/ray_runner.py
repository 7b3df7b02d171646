"""The eval's Ray backend: episodes as tasks on worker actors (:mod:`toolgym.distributed`), recorded as they arrive.

Each worker actor keeps an env pool and its own policy (for a model: its own client to the server, with its own
retries; so does a model-played user) for all its episodes; the driver's ``ray.wait`` loop hands every outcome to
the same ``record`` as the local backend, so ``episodes.jsonl``, resuming and the summary do not depend on the
backend. Ray is imported only when :func:`run_ray` runs.
"""

from __future__ import annotations

from typing import Any

from toolgym.harness.config import EvalConfig
from toolgym.harness.episode import EnvPool, play_one
from toolgym.harness.policies import make_policy, make_user_client, request_stats
from toolgym.registry import replay_registrations, runtime_registrations


class RayEpisodes:
    """The state of one Ray worker: an env pool and a policy (its own model client), kept for all its episodes.

    ``registrations``: the manifests the driver registered at run time (:func:`~toolgym.registry.runtime_registrations`:
    ``--suite ftrl:PATH`` and ``taubench:PATH`` ids, packs of ``register_pack``), registered here too, since a
    worker process starts with only the ids ``import toolgym`` makes."""

    def __init__(self, cfg: EvalConfig, registrations: tuple[dict[str, Any], ...] = ()):
        import uuid

        replay_registrations(registrations)
        self.id = uuid.uuid4().hex
        self.policy = make_policy(cfg)
        self.user_client = make_user_client(cfg, self.policy)
        self.pool = EnvPool(cfg, self.user_client)


async def _ray_play(worker: RayEpisodes, item: tuple[str, int]) -> tuple[tuple[str, Any], str, dict[str, int]]:
    outcome = await play_one(item[0], item[1], worker.pool, worker.policy)
    return outcome, worker.id, request_stats(worker.policy, worker.user_client)


def run_ray(cfg: EvalConfig, todo: list[tuple[str, int]], record: Any, state: dict) -> dict[str, int]:
    """The episodes as Ray tasks on worker actors; each result is recorded as it arrives (``ray.wait`` loop).

    Model runs: every worker talks to the server itself, ``cfg.concurrency`` episodes in flight over all workers.
    Returns the request counters summed over the workers."""
    import functools

    from toolgym import distributed

    if not todo:
        return {}
    distributed.init(cfg.ray_address)
    n = max(1, min(cfg.num_workers or distributed.cluster_cpus(), len(todo)))
    per_worker = -(-cfg.concurrency // n) if cfg.model else None
    latest: dict[str, dict[str, int]] = {}
    results = distributed.map_unordered(
        _ray_play,
        todo,
        setup=functools.partial(RayEpisodes, cfg, runtime_registrations()),
        num_workers=n,
        per_worker=per_worker,
        stop=lambda: state["aborted"] is not None,
    )
    for _, (outcome, worker_id, worker_stats) in results:
        latest[worker_id] = worker_stats
        record(outcome)
    totals: dict[str, int] = {}
    for worker_stats in latest.values():
        for k, v in worker_stats.items():
            totals[k] = totals.get(k, 0) + v
    return totals
