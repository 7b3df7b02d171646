"""How long a call may run: the step budget, the wall clock (SIGALRM or the watchdog) and the memory backstop.

Why a module: stopping a call is one piece of state shared by the tick every loop body runs, the SIGALRM
handler of the main thread, the watchdog thread of the others and the regex timeout; :func:`make_clock`
builds those as closures over that state, and this module owns the process-wide parts (the watchdog thread,
the identity of the thread SIGALRM reaches).
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import threading
import time
from typing import Any, NamedTuple

__all__ = ["Clock", "make_clock", "set_main_thread"]

_CHECK_EVERY = 1024  # ticks between clock / memory checks
_MAIN_IDENT = threading.main_thread().ident


class _Abort(BaseException):
    """Budget, clock or size exhaustion; a BaseException so ``except Exception`` in tool code misses it."""


def set_main_thread(ident: int | None = None) -> None:
    """Record ``ident`` (default: the calling thread) as the thread SIGALRM reaches.

    Calls on that thread arm SIGALRM; calls on any other thread register with the watchdog instead. A forked
    worker calls this from its serving thread, which ``fork`` made its main thread (see
    :mod:`~toolgym.sandbox.process`). Read at each call, so Toolboxes created before the fork follow it.
    """
    global _MAIN_IDENT
    _MAIN_IDENT = threading.get_ident() if ident is None else ident


# -------------------------------------------------------------------------------------- thread watchdog


def _async_raiser():
    """``PyThreadState_SetAsyncExc`` with a NULL-able exception argument, or None where ctypes lacks it."""
    try:
        fn = ctypes.pythonapi.PyThreadState_SetAsyncExc
    except (AttributeError, OSError):  # pragma: no cover - not CPython
        return None
    fn.argtypes = (ctypes.c_ulong, ctypes.c_void_p)
    fn.restype = ctypes.c_int
    return fn


_SET_ASYNC_EXC = _async_raiser()


class _Watchdog:
    """One daemon thread that stops calls which overrun their time limit on threads without SIGALRM.

    Why: SIGALRM only reaches the main thread, and the tick-based clock only sees code that ticks, so on a
    trainer's or server's worker thread a tool spending its time in pure-Python library code it called once
    (``fractions`` arithmetic, ``statistics``, a regex parse) would run unbounded. Each call on such a thread
    registers its deadline here (a lock and a dict write, no wake-up unless it is the earliest); past the
    deadline the watchdog sets the call's timeout reason and raises ``_Abort`` in the call's thread with
    ``PyThreadState_SetAsyncExc``, which the interpreter delivers at the thread's next bytecode boundary.

    Safety: an entry fires at most once, only while registered, under the lock that ``unregister`` takes, and
    ``unregister`` cancels a fired-but-undelivered abort, so the exception can land only inside the call
    (``Toolbox.call`` unregisters inside its ``try``). A C call holding the GIL delays delivery until it
    returns; that case needs ``isolation="process"``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._calls: dict[int, list] = {}  # thread ident -> [deadline, expire(), fired]
        self._next = math.inf  # the deadline the watchdog thread sleeps toward
        self._thread: threading.Thread | None = None
        self.fired = 0  # aborts raised (for tests and benchmarks)

    def register(self, ident: int, deadline: float, expire: Any) -> None:
        with self._lock:
            self._calls[ident] = [deadline, expire, False]
            if deadline < self._next:
                self._next = deadline
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="toolgym-sandbox-watchdog", daemon=True)
                    self._thread.start()
                else:
                    self._wake.notify()

    def unregister(self, ident: int) -> None:
        with self._lock:
            entry = self._calls.pop(ident, None)
        if entry is not None and entry[2]:
            _SET_ASYNC_EXC(ident, None)  # cancel the abort if it has not been delivered yet

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.perf_counter()
                nearest = math.inf
                for ident, entry in self._calls.items():
                    if entry[2]:
                        continue
                    if entry[0] <= now:
                        entry[2] = True
                        entry[1]()
                        _SET_ASYNC_EXC(ident, id(_Abort))
                        self.fired += 1
                    elif entry[0] < nearest:
                        nearest = entry[0]
                self._next = nearest
                self._wake.wait(None if nearest == math.inf else nearest - now)

    def _after_fork(self) -> None:
        """The child of a fork has only the forking thread: start over (the lock may have been held)."""
        self.__init__()


_WATCHDOG = _Watchdog() if _SET_ASYNC_EXC is not None else None
if _WATCHDOG is not None and hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WATCHDOG._after_fork)


def _statm_reader():
    """Return a function giving this process's resident set size in bytes, or None if unavailable."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/statm", "rb") as f:
            f.read()
    except (OSError, ValueError, AttributeError):
        return None

    def rss() -> int:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * page

    return rss


_RSS = _statm_reader()


# ------------------------------------------------------------------------------------------------- clock


class Clock(NamedTuple):
    """One Toolbox's budget and clock: closures over one shared state, so the hot path reads only cells."""

    tick: Any  # one step: ``_tick_()`` in every function, loop body and comprehension item
    charge: Any  # ``charge(n)``: n steps of work done in C
    abort: Any  # ``abort(kind, detail)``: stop the call, and keep stopping it
    ensure_armed: Any  # start the clock now, before work that may not tick
    regex_timeout: Any  # seconds left for one regex call
    begin: Any  # start guarding a call
    end: Any  # stop guarding it; the ``(kind, detail)`` that stopped it, or None


def make_clock(step_budget: int, time_limit: float, max_memory: int) -> Clock:
    """The budget and clock of one Toolbox; ``max_memory`` bytes of RSS growth per call (0: unchecked)."""
    budget = max(1, int(step_budget))
    first_chunk = min(_CHECK_EVERY, budget)
    left = 0
    used = 0
    chunk = 0
    reason: tuple[str, str] | None = None
    t0 = 0.0
    mem0 = next_rss = 0
    rss_check = _RSS if max_memory else None
    watchdog = _WATCHDOG
    active = False
    armed = False
    engaged = False  # this call reached its first checkpoint (clock, memory baseline, alarm)
    watched = 0  # ident of the thread whose call the watchdog guards, 0 for none
    saved: tuple[Any, Any] = (None, (0.0, 0.0))

    def abort(kind: str, detail: str) -> None:
        nonlocal reason, left
        if reason is None:
            reason = (kind, detail)
        left = 0
        raise _Abort(detail)

    def on_alarm(signum: int, frame: Any) -> None:
        if active:
            abort("timeout", f"time limit of {time_limit:g} s exceeded")

    def arm() -> None:
        nonlocal armed, saved
        if time_limit <= 0 or threading.get_ident() != _MAIN_IDENT:
            return
        try:
            old_handler = signal.signal(signal.SIGALRM, on_alarm)
        except (ValueError, OSError):  # pragma: no cover - not the main interpreter
            return
        saved = (old_handler, signal.setitimer(signal.ITIMER_REAL, time_limit))
        armed = True

    def disarm() -> None:
        nonlocal armed
        armed = False
        old_handler, (delay, interval) = saved
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler if old_handler is not None else signal.SIG_DFL)
        if delay > 0:  # someone else's timer was pending: give it back, minus our share
            signal.setitimer(signal.ITIMER_REAL, max(1e-6, delay - (time.perf_counter() - t0)), interval)

    def checkpoint() -> None:
        nonlocal left, used, chunk, t0, mem0, next_rss, engaged
        if reason is not None:
            left = 0
            raise _Abort(reason[1])
        used += chunk - left
        if used >= budget:
            abort("timeout", f"step budget of {budget} exceeded")
        now = time.perf_counter()
        if t0 == 0.0:
            t0 = now
        elif time_limit > 0 and now - t0 > time_limit:
            abort("timeout", f"time limit of {time_limit:g} s exceeded")
        if not engaged:
            engaged = True
            next_rss = used + 8 * _CHECK_EVERY
            if rss_check:
                mem0 = rss_check()
            arm()
        elif rss_check and (left < -64 or used >= next_rss):  # after big charges, else every 8 chunks
            next_rss = used + 8 * _CHECK_EVERY
            if rss_check() - mem0 > max_memory:
                abort("resource", f"memory growth above {max_memory} bytes")
        chunk = left = min(_CHECK_EVERY, budget - used)

    def tick() -> None:
        nonlocal left
        left -= 1
        if left < 0:
            checkpoint()

    def charge(n: int) -> None:
        """Account for work done in C (big allocations, sorts) so it counts against budget and clock."""
        nonlocal left
        left -= n
        if left < 0:
            checkpoint()

    def ensure_armed() -> None:
        """Arm the clock before work that can run long without ticking (pure-Python parsing, re matching)."""
        if not engaged and active:
            charge(left + 1)

    def expire() -> None:
        """The watchdog's verdict (called on its thread): the call is out of time; every later tick aborts."""
        nonlocal reason, left
        if reason is None:
            reason = ("timeout", f"time limit of {time_limit:g} s exceeded")
        left = 0

    def regex_timeout() -> float | None:
        """Seconds left for one regex call: the call's clock starts now if it has not yet."""
        nonlocal t0
        if time_limit <= 0:
            return None
        now = time.perf_counter()
        if t0 == 0.0:
            t0 = now
            return time_limit
        rest = t0 + time_limit - now
        if rest <= 0:
            abort("timeout", f"time limit of {time_limit:g} s exceeded")
        return rest

    def begin() -> None:
        nonlocal left, used, chunk, reason, t0, active, engaged, watched
        chunk = left = first_chunk
        used = 0
        reason = None
        t0 = 0.0
        engaged = False
        active = True
        if watchdog is not None and time_limit > 0:
            ident = threading.get_ident()
            if ident != _MAIN_IDENT:  # no SIGALRM here: the watchdog keeps the deadline
                watched = ident
                watchdog.register(ident, time.perf_counter() + time_limit, expire)

    def end() -> tuple[str, str] | None:
        """Stop guarding this call; idempotent. Must run inside the caller's ``try`` (see _Watchdog)."""
        nonlocal active, watched
        active = False
        if watched:
            watchdog.unregister(watched)
            watched = 0
        if armed:
            disarm()
        return reason

    return Clock(tick, charge, abort, ensure_armed, regex_timeout, begin, end)
