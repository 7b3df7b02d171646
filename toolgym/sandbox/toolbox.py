"""Toolbox: a set of compiled tools, each call run under one runtime's budget and guards, with its outcome.

Why a module: this is the sandbox's face to the env (``Toolbox.call`` never raises for anything tool code
does) and where tool modules are exec'd once, their module-level data made read-only, and failures turned
into the feedback text the model sees.
"""

from __future__ import annotations

import collections
import functools
import sys
import types
from dataclasses import dataclass
from typing import Any

from toolgym.sandbox.output import _REPR, _truncate, _weight, serialize_output
from toolgym.sandbox.owned import is_own, strip_own
from toolgym.sandbox.policy import ToolSourceError, compile_tool_source
from toolgym.sandbox.runtime import _Runtime

__all__ = ["ToolOutcome", "ToolSourceError", "Toolbox", "check_tool_sources"]

# The ``__name__`` (so ``__module__`` of tool classes) of every tool module. An empty module is registered under
# it because dataclasses and enum look a class's module up in sys.modules; it holds nothing of any tool's.
_TOOL_MODULE = "toolgym.sandbox.tool_code"
sys.modules.setdefault(_TOOL_MODULE, types.ModuleType(_TOOL_MODULE, "Namespace of sandboxed tool code (empty)."))


@dataclass(slots=True)
class ToolOutcome:
    """Result of one tool call: ``output`` is the message text for the model, ``error`` the failure kind."""

    ok: bool
    output: str
    error: str | None


def _collect_frozen(namespace: dict[str, Any], frozen: set[int]) -> None:
    """Record every mutable container reachable from module globals (and function defaults/closures)."""
    stack = list(namespace.values())
    seen: set[int] = set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, types.FunctionType):
            stack.extend(x.__defaults__ or ())
            stack.extend((x.__kwdefaults__ or {}).values())
            stack.extend(c.cell_contents for c in (x.__closure__ or ()) if _cell_filled(c))
        elif isinstance(x, dict):
            if isinstance(x, (dict,)):
                frozen.add(id(x))
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, (list, set, bytearray, collections.deque)):
            frozen.add(id(x))
            stack.extend(x)
        elif isinstance(x, (tuple, frozenset)):
            stack.extend(x)
        if isinstance(x, type):
            if is_own(x) or getattr(x, "__toolgym_own__", False) is True:  # a tool class: its attributes too
                frozen.add(id(x))
                stack.extend(vars(x).values())
        elif is_own(x):  # an instance of a tool class made by module code
            frozen.add(id(x))
            d = getattr(x, "__dict__", None)
            if isinstance(d, dict):
                stack.extend(d.values())


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


class Toolbox:
    """Compiled, isolated tools: ``call(name, arguments, state)`` runs one under the budget and guards.

    Every distinct source text is exec'd once into a fresh globals dict with this Toolbox's own builtins, so
    nothing one Toolbox's code does is visible to another.  Module-level containers are read-only at run time
    so a call can influence later calls only through ``state``.  Not thread-safe: use one Toolbox per thread.
    """

    __slots__ = (
        "_begin",
        "_end",
        "_rt",
        "_tools",
        "epoch",
        "max_output_chars",
        "names",
        "seed",
        "step_budget",
        "time_limit",
    )

    def __init__(
        self,
        sources: dict[str, str],
        *,
        step_budget: int = 1_000_000,
        time_limit: float = 2.0,
        max_output_chars: int = 16_384,
        max_size: int = 10_000_000,
        max_memory: int = 1 << 30,
    ) -> None:
        self.step_budget = step_budget
        self.time_limit = time_limit
        self.max_output_chars = max_output_chars
        rt = self._rt = _Runtime(step_budget, time_limit, max_size, max_memory)
        self._begin, self._end = rt.begin, rt.end
        modules: dict[str, dict[str, Any]] = {}
        tools: dict[str, tuple[Any, dict[str, Any], bool]] = {}
        for name, source in sources.items():
            g = modules.get(source)
            if g is None:
                try:
                    code = compile_tool_source(source)
                except ToolSourceError as e:
                    raise ToolSourceError(f"tool {name!r}: {e}") from None
                g = {"__builtins__": rt.builtins, "__name__": _TOOL_MODULE, "state": None}
                rt.begin()
                try:
                    try:
                        exec(code, g)
                    finally:  # as in call(): a watchdog abort can land until end() returns
                        reason = rt.end()
                except BaseException as e:  # module-level code of a tool failed
                    reason = rt.end()
                    if isinstance(e, KeyboardInterrupt) and reason is None:
                        raise
                    detail = reason[1] if reason else f"{type(e).__name__}: {e}"
                    raise ToolSourceError(f"tool {name!r}: module code failed: {detail}") from None
                if reason is not None:
                    raise ToolSourceError(f"tool {name!r}: module code failed: {reason[1]}")
                modules[source] = g
            fn = g.get(name)
            if not isinstance(fn, types.FunctionType):
                raise ToolSourceError(f"tool {name!r}: its source does not define a function named {name!r}")
            code = fn.__code__
            wants_data = code.co_argcount > 0 and code.co_varnames[0] == "data"  # FTRL: data=<the world>
            tools[name] = (fn, g, wants_data)
        rt.random.loading = False
        for g in modules.values():
            _collect_frozen({k: v for k, v in g.items() if k not in ("__builtins__", "state")}, rt.frozen)
        self._tools = tools
        self.names: tuple[str, ...] = tuple(tools)
        self.seed = 0
        self.epoch = 0  # bumped by reseed(), so a forked worker's copy can tell it must reseed too

    def reseed(self, seed: int) -> None:
        """Seed the tools' ``random``/``uuid4`` for a new episode: the same seed gives the same draws.

        The env calls this at reset with a seed drawn from its ``np_random``; never the global RNG.
        """
        self.seed = int(seed)
        self.epoch += 1
        self._rt.random.reseed(self.seed)

    def call(self, name: str, arguments: dict, state: dict | None = None) -> ToolOutcome:
        """Run tool ``name`` with keyword ``arguments``; ``state`` is bound as the tool module's ``state``, and
        passed as the first argument of a tool whose first parameter is ``data`` (FTRL's convention).

        Never raises for anything the tool code does; an unknown ``name`` raises KeyError. The result becomes
        text inside the guarded window, since a tool class's ``__repr__`` is tool code too.
        """
        fn, g, wants_data = self._tools[name]
        g["state"] = state
        self._begin()
        try:
            try:
                value = fn(state, **arguments) if wants_data else fn(**arguments)
                text = serialize_output(value, self.max_output_chars)
                if state is not None and self._rt.has_classes and strip_own(state):
                    raise ValueError("the world state holds plain data, not instances of tool classes")
            finally:  # a watchdog abort can land until end() returns: keep it inside the try
                reason = self._end()
        except BaseException as e:  # tool code may raise anything
            return self._failure(name, e, self._end())
        if reason is not None:
            return self._failure(name, None, reason)
        return ToolOutcome(True, text, None)

    def _failure(self, name: str, exc: BaseException | None, reason: tuple[str, str] | None) -> ToolOutcome:
        if reason is not None:
            kind, detail = reason
            if kind == "timeout":
                text = f"Error: tool '{name}' timed out ({detail})"
            else:
                text = f"Error: tool '{name}' exceeded the memory/size limit ({detail})"
            return ToolOutcome(False, _truncate(text, self.max_output_chars), kind)
        assert exc is not None
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        kind = "exception"
        if isinstance(exc, TypeError) and exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
            kind = "bad_arguments"  # raised while binding the call's arguments, before the tool's frame ran
        elif isinstance(exc, (MemoryError, RecursionError)):
            kind = "resource"
        self._begin()  # str() of a tool's own exception class runs tool code: guard it like the call
        try:
            try:
                limit = 4 * self.max_output_chars
                small = _weight(exc.args, limit) <= limit
                message = (str(exc) if small else _REPR.repr(exc.args)) if exc.args else ""
            finally:
                self._end()
        except BaseException:
            message = ""
        message = " ".join(message.split())
        head = f"Error: {type(exc).__name__}"
        if kind == "bad_arguments":
            head = f"Error: bad arguments for tool '{name}': TypeError"
        text = f"{head}: {message}" if message else head
        return ToolOutcome(False, _truncate(text, self.max_output_chars), kind)


def check_tool_sources(sources: dict[str, str]) -> None:
    """Raise :class:`ToolSourceError` (naming the tool) unless every source compiles, its module code runs and it
    defines its tool.

    What loading a pack calls for its tools, so a refused tool fails at load, not inside ``reset``/``step``.
    Each distinct text is exec'd once for all the names it serves, and remembered, so a source shared by many
    records is checked once per process.
    """
    by_source: dict[str, list[str]] = {}
    for name, source in sources.items():
        by_source.setdefault(source, []).append(name)
    for source, names in by_source.items():
        _check_cached(tuple(sorted(names)), source)


@functools.lru_cache(maxsize=8192)
def _check_cached(names: tuple[str, ...], source: str) -> None:
    Toolbox(dict.fromkeys(names, source))
