"""Running toolgym work on a Ray cluster (``--backend ray`` of ``toolgym eval``, ``export`` and ``build``).

Ray is imported only here, and only when a function is called (``pip install toolgym[ray]``):

* :func:`init` connects to a cluster (``address``, else ``RAY_ADDRESS``) or starts a local Ray instance limited
  to ``num_cpus``; an already initialized Ray is reused as it is.
* :func:`map_unordered` runs ``fn(state, item)`` for every item on a pool of worker actors and yields
  ``(item, result)`` as each finishes (a ``ray.wait`` loop), so the caller can write results in arrival order.
  Every actor builds its ``state`` once with ``setup()`` (envs, a model client, ...) and keeps it for all its
  items of that call; ``fn`` may be a coroutine function, in which case up to ``per_worker`` items run
  concurrently on the actor's event loop (model calls), otherwise an actor runs one item at a time. The actors
  are kept for later calls in this process (warm: no start-up, imports and caches done);
  :func:`release_workers` ends them.

Failures: an item whose ``fn`` raises is retried (on the same actor); an item whose actor died (a lost node, a
killed or crashed worker process) is retried on a fresh actor that replaces it. After ``retries`` retries of an
item the error is raised to the caller. Results already yielded are the caller's; items in flight when the
caller stops iterating are cancelled (the caller's resume logic redoes them).

``setup`` and ``fn`` must be picklable (module-level functions or ``functools.partial`` of them), and every
node must be able to import them, i.e. have toolgym installed.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

DEFAULT_RETRIES = 3


class DistributedError(RuntimeError):
    """An item kept failing after its retries (the last error is the cause)."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError("--backend ray needs Ray: pip install 'toolgym[ray]' (or pip install ray)") from None
    return ray


def init(address: str | None = None, num_cpus: int | None = None, *, quiet: bool = True) -> Any:
    """Connect to Ray (``address`` or ``RAY_ADDRESS``; ``"auto"`` finds a cluster started on this machine) or,
    without an address, start a local instance with ``num_cpus`` CPUs (default: all). Returns the ``ray`` module.

    If Ray is already initialized in this process (a notebook, a test fixture), it is used as it is.
    """
    ray = _ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"ignore_reinit_error": True}
    if quiet:
        kwargs["logging_level"] = "warning"
        kwargs["log_to_driver"] = False
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    return ray


def cluster_cpus() -> int:
    """CPUs of the connected cluster (at least 1)."""
    return max(1, int(_ray().cluster_resources().get("CPU", 1)))


class _Worker:
    """A worker actor, kept between calls of :func:`map_unordered` (a warm process: imports done, caches filled).

    Each call sends a token with its ``setup`` and ``fn``; the actor builds that call's state once, on its first
    item, and keeps the states of the last few calls.
    """

    KEEP = 2

    def __init__(self) -> None:
        self.states: dict[str, tuple[Any, Callable[[Any, Any], Any]]] = {}

    async def run(self, token: str, setup: Callable[[], Any] | None, fn: Callable[[Any, Any], Any], item: Any) -> Any:
        if token not in self.states:
            state = setup() if setup is not None else None
            while len(self.states) >= self.KEEP:
                self.states.pop(next(iter(self.states)))
            self.states[token] = (state, fn)
        state, fn = self.states[token]
        out = fn(state, item)
        if inspect.isawaitable(out):
            out = await out
        return out


# the worker actors of this process's Ray session: {"actors": [...], "cpus": per actor, "session": (name, job)}
_POOL: dict[str, Any] = {"actors": [], "cpus": None, "session": None}
_MAX_CONCURRENCY = 256  # per actor; how many items are in flight is the driver's choice (per_worker)


def _new_actor(ray: Any, cpus: float) -> Any:
    return ray.remote(_Worker).options(num_cpus=cpus, max_restarts=0, max_concurrency=_MAX_CONCURRENCY).remote()


def _pool(ray: Any, n: int, cpus: float) -> list[Any]:
    """``n`` worker actors of ``cpus`` CPUs each, reusing the ones of earlier calls when they fit."""
    ctx = ray.get_runtime_context()
    session = (ctx.get_session_name(), ctx.get_job_id())  # a new ray.init() gets new actors
    if _POOL["session"] != session or _POOL["cpus"] != cpus:
        release_workers()
        _POOL.update(actors=[], cpus=cpus, session=session)
    while len(_POOL["actors"]) < n:
        _POOL["actors"].append(_new_actor(ray, cpus))
    return _POOL["actors"][:n]


def release_workers() -> None:
    """Kill the worker actors kept between calls (they hold their CPUs while they live)."""
    actors, _POOL["actors"] = _POOL["actors"], []
    if actors:
        ray = _ray()
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)


def _is_lost_worker(ray: Any, exc: BaseException) -> bool:
    lost = tuple(
        t
        for t in (
            getattr(ray.exceptions, "RayActorError", None),
            getattr(ray.exceptions, "WorkerCrashedError", None),
            getattr(ray.exceptions, "NodeDiedError", None),
            getattr(ray.exceptions, "ObjectLostError", None),
        )
        if t is not None
    )
    return isinstance(exc, lost)


def map_unordered(
    fn: Callable[[Any, Any], Any],
    items: Iterable[Any],
    *,
    setup: Callable[[], Any] | None = None,
    num_workers: int | None = None,
    per_worker: int | None = None,
    retries: int = DEFAULT_RETRIES,
    stop: Callable[[], bool] | None = None,
    on_retry: Callable[[Any, BaseException, int], None] | None = None,
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(item, fn(state, item))`` for every item, in the order they finish, computed on Ray actors.

    ``num_workers`` actors (default: the cluster's CPUs; each reserves ``min(1, CPUs / num_workers)`` CPUs, and
    no more are started than there are items) each hold ``per_worker`` items in flight (default 4 for coroutine
    functions, else 2: one running, one queued). ``stop()`` is checked before each new item is started: once it
    returns True, no new item starts and the ones in flight are still yielded. ``on_retry(item, error, attempt)``
    is called before an item is retried. Starts a local Ray instance if Ray is not initialized (:func:`init`).
    The actors are kept for the next call (:func:`release_workers` ends them).
    """
    ray = _ray()
    if not ray.is_initialized():
        init()
    pending = list(items)
    pending.reverse()  # pop() from the end takes items in the given order
    if not pending:
        return
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "func", None))
    per_worker = max(1, min(per_worker or (4 if is_async else 2), _MAX_CONCURRENCY))
    total_cpus = cluster_cpus()
    wanted = max(1, num_workers or total_cpus)
    cpus = min(1.0, total_cpus / wanted)  # more workers than CPUs share them instead of waiting for free ones
    actors = list(_pool(ray, min(wanted, len(pending)), cpus))
    n = len(actors)
    token = uuid.uuid4().hex
    setup_ref, fn_ref = ray.put(setup), ray.put(fn)

    generation = [0] * n  # bumped when a slot's actor is replaced
    load = [0] * n
    in_flight: dict[Any, tuple[Any, int, int, int]] = {}  # ref -> (item, key, slot, generation)
    attempts: dict[int, int] = {}  # item key -> retries so far
    retry_queue: list[tuple[int, Any]] = []  # (key, item) to resubmit before new items
    next_key = 0

    def fill() -> None:
        nonlocal next_key
        for slot in range(n):
            while load[slot] < per_worker:
                if retry_queue:
                    key, item = retry_queue.pop()
                elif pending and not (stop is not None and stop()):
                    key, item = next_key, pending.pop()
                    next_key += 1
                else:
                    return
                ref = actors[slot].run.remote(token, setup_ref, fn_ref, item)
                in_flight[ref] = (item, key, slot, generation[slot])
                load[slot] += 1

    try:
        fill()
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1)
            ref = done[0]
            item, key, slot, gen = in_flight.pop(ref)
            if gen == generation[slot]:
                load[slot] -= 1
            try:
                result = ray.get(ref)
            except Exception as exc:
                if _is_lost_worker(ray, exc) and gen == generation[slot]:  # replace the dead actor, once
                    dead = actors[slot]
                    with contextlib.suppress(Exception):
                        ray.kill(dead, no_restart=True)
                    actors[slot] = _new_actor(ray, cpus)
                    pool = _POOL["actors"]
                    if dead in pool:
                        pool[pool.index(dead)] = actors[slot]
                    generation[slot] += 1
                    load[slot] = 0
                tries = attempts.get(key, 0) + 1
                if tries > retries:
                    cause = getattr(exc, "cause", None) or exc
                    raise DistributedError(f"{item!r} failed {tries} times; last error: {cause!r}") from exc
                attempts[key] = tries
                if on_retry is not None:
                    on_retry(item, exc, tries)
                retry_queue.append((key, item))
            else:
                attempts.pop(key, None)
                yield item, result
            fill()
    finally:
        for ref in in_flight:  # the caller stopped early or an item failed for good: drop the rest
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=False)


def add_backend_args(p: Any, extra: tuple[str, ...] = ()) -> None:
    """``--backend``, ``--ray-address`` and ``--num-workers`` on an argparse parser (``extra``: more backends)."""
    g = p.add_argument_group("backend (--backend ray needs `pip install toolgym[ray]`)")
    g.add_argument(
        "--backend",
        choices=("local", "ray", *extra),
        default="local",
        help="local: this process; ray: Ray worker actors on a local Ray instance or a cluster (--ray-address)"
        + ("; openai: a chat model builds a static pack" if "openai" in extra else ""),
    )
    g.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to use, e.g. HEAD:6379 or auto (default: RAY_ADDRESS, else start a local Ray instance)",
    )
    g.add_argument("--num-workers", type=int, metavar="W", help="Ray worker actors (default: the cluster's CPUs)")
