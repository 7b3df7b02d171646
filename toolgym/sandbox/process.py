"""Process isolation for tool calls (``isolation="process"``): a forked worker that can be killed.

The in-process sandbox (:mod:`toolgym.sandbox`) stops runaway *Python* code with its step budget and clock,
but not work done inside one C call that holds the GIL (``==`` of two exponentially aliased lists, ``hash()``
of a deeply nested tuple): on any thread such a call freezes the whole process. :class:`ProcessSandbox` runs
the calls in a forked worker instead and waits for each reply with a wall-clock deadline; past it the worker is
killed (SIGKILL) and reaped, the call comes back as the same ``timeout`` outcome the in-process clock gives, and
the next call forks a fresh worker (a few ms).

Design:

* The worker is a plain ``os.fork`` of the env's process (so it also works inside daemonic processes such as
  Gymnasium's ``AsyncVectorEnv`` workers), talking over a ``multiprocessing.Pipe``. One worker per env serves
  every :class:`~toolgym.sandbox.Toolbox` of that env. The Toolboxes are compiled and exec'd in the parent as
  usual (so source errors surface there) and reach the worker through ``fork``; a Toolbox created after the
  fork makes the next call re-fork the (idle) worker.
* The parent owns the world state. Each call sends ``state`` (pickled) with the arguments; the worker runs the
  tool on its copy (kept from the previous call when the bytes match, else unpickled) and replies with the
  outcome and, if the pickled state changed, the new state, which the parent copies into its ``state`` dict in
  place (``clear`` + ``update``, so references to the top-level dict stay valid). A killed or crashed call
  therefore leaves the state exactly as it was before the call (atomic), while a call stopped by the worker's
  own budget or clock keeps its partial mutations, as in-process. Non-runaway calls give the same outputs and
  states as in-process: same code, and pickling preserves types, order and aliasing, so trajectories and
  rewards are identical in both modes.
* The deadline is ``time_limit * 1.25 + 0.1`` s, past the worker's own clock (``time_limit``), so runaways
  the in-process guards can stop are still reported by them; ``time_limit <= 0`` waits without a deadline.
* A worker that dies (e.g. a segfault) gives a ``crash`` outcome (counted as a tool error); a state the tool
  left unpicklable gives an ``exception`` outcome and the state is kept as it was.
* The worker is not pickled (an unpickled or deep-copied env forks its own on its first call), is killed on
  :meth:`ProcessSandbox.close` (``env.close()``) and by a ``weakref.finalize`` when the sandbox is
  garbage-collected, and exits by itself if its parent dies. Not thread-safe: one per env. Envs stepped from
  worker threads work too: ``fork`` copies only the calling thread, which becomes the worker's main thread
  (so its SIGALRM clock works), and the parent waits for the reply without holding the GIL.
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import os
import pickle
import signal
import weakref
from typing import Any

from toolgym.sandbox.clock import set_main_thread
from toolgym.sandbox.toolbox import Toolbox, ToolOutcome

__all__ = ["ISOLATION_MODES", "ProcessSandbox"]

ISOLATION_MODES = ("none", "process")
_PICKLE = pickle.HIGHEST_PROTOCOL


def _serve(conn: Any, parent_conn: Any, boxes: dict[int, Toolbox], ppid: int) -> None:
    """Worker loop: ``(key, name, arguments, state bytes, (seed, epoch))`` in,
    ``(ok, output, error, state bytes | None)`` out."""
    parent_conn.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    faulthandler.disable()  # a crash is reported to the parent as an outcome, not as an inherited stack dump
    set_main_thread()  # this thread is the worker's main thread: SIGALRM works here
    last: tuple[bytes | None, Any] = (None, None)  # the state after the previous call, pickled and live
    while True:
        while not conn.poll(2.0):
            if os.getppid() != ppid:
                return
        try:
            key, name, arguments, blob, (seed, epoch) = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        state = last[1] if blob == last[0] else pickle.loads(blob)  # the parent's state is usually ours
        box = boxes[key]
        if box.epoch != epoch:  # the parent reseeded its Toolbox for a new episode: follow it
            box.reseed(seed)
            box.epoch = epoch
        out = box.call(name, arguments, state)
        try:
            new = pickle.dumps(state, _PICKLE)
            last = (new, state)
        except BaseException as e:  # e.g. the tool stored a function or a generator in state
            text = f"Error: tool '{name}' left a state that cannot be sent back: {type(e).__name__}"
            out, new, last = ToolOutcome(False, text, "exception"), None, (None, None)
        if new == blob:
            new = None  # unchanged (e.g. a read-only call): nothing to send back
        conn.send_bytes(pickle.dumps((out.ok, out.output, out.error, new), _PICKLE))


def _kill(pid: int, conn: Any, owner: int) -> int | None:
    """Close the pipe, kill and reap the worker; its exit code (negative: the signal that ended it)."""
    if os.getpid() != owner:  # a forked copy of the owner (another worker) must not touch it
        return None
    conn.close()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except ChildProcessError:  # already reaped elsewhere
        return None


class ProcessSandbox:
    """Runs ``Toolbox.call`` in a forked worker with a wall-clock deadline (see the module docstring)."""

    def __init__(self) -> None:
        if not hasattr(os, "fork"):
            raise RuntimeError("isolation='process' needs os.fork (Linux, macOS)")
        self._boxes: dict[int, Toolbox] = {}  # key -> Toolbox, inherited by the worker through fork
        self._keys: dict[int, int] = {}  # id(Toolbox) -> key (the Toolbox is held, so its id stays unique)
        self._known = 0  # keys below this existed when the current worker forked
        self._pid: int | None = None
        self._conn: Any = None
        self._finalizer: Any = None
        self.restarts = 0  # workers killed after a deadline or a crash

    @property
    def pid(self) -> int | None:
        """The worker's process id, or None while there is no worker."""
        return self._pid

    def call(self, box: Toolbox, name: str, arguments: dict, state: dict | None) -> ToolOutcome:
        """``box.call(name, arguments, state)`` in the worker; ``state`` is updated in place from its copy."""
        key = self._keys.get(id(box))
        if key is None:
            key = self._keys[id(box)] = len(self._boxes)
            self._boxes[key] = box
        if self._pid is None or key >= self._known:
            self._start()
        blob = pickle.dumps(state, _PICKLE)
        conn = self._conn
        try:
            conn.send_bytes(pickle.dumps((key, name, arguments, blob, (box.seed, box.epoch)), _PICKLE))
        except (OSError, ValueError):  # the worker died between calls: fork a new one and retry once
            self._stop()
            self._start()
            conn = self._conn
            conn.send_bytes(pickle.dumps((key, name, arguments, blob, (box.seed, box.epoch)), _PICKLE))
        limit = box.time_limit
        deadline = limit * 1.25 + 0.1 if limit > 0 else None
        if not conn.poll(deadline):
            self._stop()
            self.restarts += 1
            return box._failure(name, None, ("timeout", f"time limit of {limit:g} s exceeded"))
        try:
            ok, output, error, new = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            code = self._stop()
            self.restarts += 1
            detail = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return ToolOutcome(False, f"Error: tool '{name}' crashed the sandbox worker ({detail})", "crash")
        if new is not None and state is not None:
            fresh = pickle.loads(new)
            state.clear()
            state.update(fresh)
        return ToolOutcome(ok, output, error)

    def forget(self) -> None:
        """Drop every registered Toolbox (and the worker holding them)."""
        self._stop()
        self._boxes.clear()
        self._keys.clear()

    def close(self) -> None:
        """Kill and reap the worker; a later call forks a new one."""
        self._stop()

    def _start(self) -> None:
        self._stop()
        parent_conn, child_conn = multiprocessing.Pipe()
        ppid = os.getpid()
        pid = os.fork()  # plain fork, not multiprocessing.Process: works inside daemonic processes too
        if pid == 0:  # pragma: no cover - the worker (coverage does not follow it)
            code = 0
            try:
                _serve(child_conn, parent_conn, self._boxes, ppid)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        child_conn.close()
        self._pid, self._conn, self._known = pid, parent_conn, len(self._boxes)
        self._finalizer = weakref.finalize(self, _kill, pid, parent_conn, ppid)

    def _stop(self) -> int | None:
        """Kill and reap the worker, if any; returns its exit code."""
        code = self._finalizer() if self._finalizer is not None else None  # runs once, then detaches
        self._pid = self._conn = self._finalizer = None
        return code

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("ProcessSandbox is not picklable; the env re-creates it")
