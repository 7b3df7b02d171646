"""Toolbox: a set of compiled tools, each call run under one runtime's budget and guards, with its outcome.

Why a module: this is the sandbox's face to the env (``Toolbox.call`` never raises for anything tool code
does) and where tool modules are exec'd once, their module-level data made read-only, and failures turned
into the feedback text the model sees.
"""

from __future__ import annotations

import collections
import dataclasses
import decimal
import functools
import sys
import types
import typing
from dataclasses import InitVar, dataclass
from typing import Any

from toolgym.sandbox.output import _REPR, _truncate, _weight, serialize_output
from toolgym.sandbox.owned import is_own, is_own_class, strip_own
from toolgym.sandbox.policy import ToolSourceError, compile_tool_source, def_name
from toolgym.sandbox.runtime import _Runtime

__all__ = ["ToolObject", "ToolOutcome", "ToolSourceError", "Toolbox", "check_tool_sources"]

# The ``__name__`` (so ``__module__`` of tool classes) of every tool module. A module is registered under it
# because dataclasses and enum look a class's module up in sys.modules: it holds nothing of any tool's, only the
# names dataclasses resolves string annotations with (tool code is compiled with postponed annotations), so
# ``x: ClassVar[int]`` and ``y: InitVar[int]`` in a tool's dataclass mean what they say.
_TOOL_MODULE = "toolgym.sandbox.tool_code"
_stub = sys.modules.setdefault(_TOOL_MODULE, types.ModuleType(_TOOL_MODULE, "Namespace of sandboxed tool code."))
for _n, _v in {"typing": typing, "dataclasses": dataclasses, "ClassVar": typing.ClassVar, "InitVar": InitVar}.items():
    setattr(_stub, _n, _v)


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
        if is_own_class(x):  # a tool class: its class attributes too
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


_MISSING = object()


def _wants_data(fn: types.FunctionType) -> bool:
    """FTRL's convention: a tool whose first parameter is ``data`` is passed the world as it."""
    code = fn.__code__
    return code.co_argcount > 0 and code.co_varnames[0] == "data"


def _defined_in(fn: Any, g: dict[str, Any]) -> bool:
    return isinstance(fn, types.FunctionType) and fn.__globals__ is g


@dataclass(frozen=True, slots=True, eq=False)
class ToolObject:
    """An instance of a tool class, held for the env by a :class:`Toolbox` (see :meth:`Toolbox.instantiate`)."""

    class_name: str
    value: Any = dataclasses.field(repr=False)


class Toolbox:
    """Compiled, isolated tools: ``call(name, arguments, state)`` runs one under the budget and guards.

    Every distinct source text is exec'd once into a fresh globals dict with this Toolbox's own builtins, so
    nothing one Toolbox's code does is visible to another.  Module-level containers are read-only at run time
    so a call can influence later calls only through ``state``.  Not thread-safe: use one Toolbox per thread.

    ``every_function=True`` also offers every other public function the sources define at module level, so one
    Toolbox serves any subset of a module's tools (the env builds one per source text, not one per subset seen).
    """

    __slots__ = (
        "_begin",
        "_decimal_saved",
        "_end",
        "_modules",
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
        modules: dict[str, str] | None = None,
        step_budget: int = 1_000_000,
        time_limit: float = 2.0,
        max_output_chars: int = 16_384,
        max_size: int = 10_000_000,
        max_memory: int = 1 << 30,
        every_function: bool = False,
    ) -> None:
        self.step_budget = step_budget
        self.time_limit = time_limit
        self.max_output_chars = max_output_chars
        rt = self._rt = _Runtime(step_budget, time_limit, max_size, max_memory)
        self._begin, self._end = rt.begin, rt.end
        own = dict(modules or {})
        names = frozenset(own)
        loaded: dict[str, dict[str, Any]] = {}  # the own modules, by name, once run

        def run(label: str, source: str, package: bool) -> dict[str, Any]:
            try:
                code = compile_tool_source(source, names, package)
            except ToolSourceError as e:
                raise ToolSourceError(f"{label}: {e}") from None
            g = {"__builtins__": rt.builtins, "__name__": _TOOL_MODULE, "state": None}
            outer = rt.running
            try:
                try:
                    if not outer:
                        rt.begin()
                    rt.running = True
                    exec(code, g)
                finally:  # as in call(): a watchdog abort can land until end() returns
                    reason = None if outer else rt.end()
            except BaseException as e:  # module-level code of a tool failed
                reason = None if outer else rt.end()
                if outer and not isinstance(e, ToolSourceError):
                    raise  # an own module imported by another: the importer's frame reports it
                if isinstance(e, ToolSourceError):
                    raise ToolSourceError(f"{label}: {e}") from None
                if isinstance(e, KeyboardInterrupt) and reason is None:
                    raise
                detail = reason[1] if reason else f"{type(e).__name__}: {e}"
                raise ToolSourceError(f"{label}: module code failed: {detail}") from None
            finally:
                rt.running = outer
            if reason is not None:
                raise ToolSourceError(f"{label}: module code failed: {reason[1]}")
            return g

        spaces: dict[str, types.SimpleNamespace] = {}

        def loader(name: str) -> Any:
            def load() -> types.SimpleNamespace:
                space = spaces.get(name)
                if space is None:
                    if name in loading:
                        raise ImportError(f"circular import of tool module {name!r}")
                    loading.add(name)
                    try:
                        g = loaded[name] = run(f"module {name!r}", own[name], True)
                    finally:
                        loading.discard(name)
                    space = spaces[name] = types.SimpleNamespace(
                        **{k: v for k, v in g.items() if k[:2] != "__" and k != "state"}
                    )
                return space

            return load

        self._decimal_saved: list[Any] = [None]
        rt.on_decimal = self._use_decimal
        loading: set[str] = set()
        rt.local_modules.update({name: loader(name) for name in own})
        for name in own:  # every own module runs at load, so a broken one fails here, named
            rt.local_modules[name]()
        by_source: dict[str, dict[str, Any]] = {}
        tools: dict[str, tuple[Any, dict[str, Any], bool]] = {}
        for name, source in sources.items():
            g = by_source.get(source)
            if g is None:
                g = by_source[source] = run(f"tool {name!r}", source, False)
            defined = def_name(name)  # the name itself, or the spelling of one tool code may not define
            fn = g.get(defined)
            if not isinstance(fn, types.FunctionType):
                raise ToolSourceError(f"tool {name!r}: its source does not define a function named {defined!r}")
            tools[name] = (fn, g, _wants_data(fn))
        if every_function:  # the sources' other public functions too: one Toolbox serves any subset of a module
            for g in by_source.values():
                for name, fn in g.items():
                    if name not in tools and name[:1] != "_" and _defined_in(fn, g):
                        tools[name] = (fn, g, _wants_data(fn))
        rt.random.loading = False
        # A tool source's module data is read-only, so a call influences later ones only through ``state``; a
        # package's is its classes' shared data, writable as in plain Python (BFCL's vehicle API updates a
        # module-level dict on every call): build a new Toolbox for fresh module data.
        for g in by_source.values():
            _collect_frozen({k: v for k, v in g.items() if k not in ("__builtins__", "state")}, rt.frozen)
        self._restore_decimal()  # module code may have asked for the context: give the caller's back
        self._modules = loaded
        self._tools = tools
        self.names: tuple[str, ...] = tuple(tools)
        self.seed = 0
        self.epoch = 0  # bumped by reseed(), so a forked worker's copy can tell it must reseed too

    def _use_decimal(self, ctx: decimal.Context) -> None:
        """From the tools' first ``decimal.getcontext()`` on, their context is the thread's inside every call
        (and the caller's outside): the window's begin and end swap it."""
        saved, clock_begin, clock_end = self._decimal_saved, self._rt.begin, self._rt.end
        saved[0] = decimal.getcontext()
        decimal.setcontext(ctx)

        def begin() -> None:
            saved[0] = decimal.getcontext()
            decimal.setcontext(ctx)
            clock_begin()

        def end() -> Any:
            reason = clock_end()
            self._restore_decimal()
            return reason

        self._begin, self._end = begin, end

    def _restore_decimal(self) -> None:
        saved = self._decimal_saved
        if saved[0] is not None:
            decimal.setcontext(saved[0])
            saved[0] = None

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
        try:
            try:
                # begin() inside the try: a thread starved of the GIL past its deadline right after registering
                # with the watchdog gets the abort there, and it must land in this call, not in the caller
                self._begin()
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

    # ------------------------------------------------------------------ objects of the tool's own classes
    # Tool suites written as classes (BFCL's multi-turn APIs) keep their world in an instance: the env holds
    # it as an opaque ToolObject, calls its methods as tools and compares two instances the way the suite's
    # checker does, each through the same guarded window as a call. Such an instance is never the env's
    # ``state`` (which stays plain data), so nothing reads it outside a window.

    def instantiate(self, module: str, class_name: str, *args: Any, **kwargs: Any) -> ToolObject:
        """A new instance of class ``class_name`` of own module ``module`` (``modules=``); raises
        :class:`ToolSourceError` naming the class if the module has no such class or its constructor fails."""
        g = self._modules.get(module)
        cls = g.get(class_name) if g is not None else None
        if not is_own_class(cls):
            raise ToolSourceError(f"module {module!r} defines no class {class_name!r}")
        ob = self._run_trusted(f"{class_name}()", cls, args, kwargs)
        return ToolObject(class_name, ob)

    def invoke(self, target: ToolObject, method: str, *args: Any, **kwargs: Any) -> None:
        """Run ``method`` of ``target`` for the env (e.g. loading a scenario's initial state: private names
        allowed, dunders not); raises :class:`ToolSourceError` if it fails, since the env's data is at fault."""
        fn = self._method(target, method, private=True)
        if fn is None:
            raise ToolSourceError(f"{target.class_name} has no method {method!r}")
        self._run_trusted(f"{target.class_name}.{method}()", fn, args, kwargs)

    def call_method(self, target: ToolObject, method: str, arguments: dict) -> ToolOutcome:
        """Run public ``method`` of ``target`` with keyword ``arguments`` as a tool call: like :meth:`call`,
        never raises for anything the tool code does; a name that is not a public method raises KeyError."""
        fn = self._method(target, method, private=False)
        if fn is None:
            raise KeyError(method)
        try:
            try:
                self._begin()
                text = serialize_output(fn(**arguments), self.max_output_chars)
            finally:
                reason = self._end()
        except BaseException as e:  # tool code may raise anything
            return self._failure(method, e, self._end())
        if reason is not None:
            return self._failure(method, None, reason)
        return ToolOutcome(True, text, None)

    def differences(self, a: ToolObject, b: ToolObject) -> list[str]:
        """The public attributes of ``a`` whose values differ from ``b``'s (compared with ``!=``, i.e. with the
        tool classes' own ``__eq__``), as BFCL's state checker compares the model's and the gold instances.
        A comparison that fails or runs out of time counts as a difference."""
        left, right = a.value, b.value
        out: list[str] = []
        for name, value in vars(left).items():
            if name[:1] == "_":
                continue
            try:
                try:
                    self._begin()
                    differ = bool(value != getattr(right, name, _MISSING))
                finally:
                    reason = self._end()
            except BaseException as e:
                self._end()
                if isinstance(e, KeyboardInterrupt):
                    raise
                differ, reason = True, None
            if differ or reason is not None:
                out.append(name)
        return out

    def describe(self, target: ToolObject, limit: int | None = None) -> dict[str, str]:
        """The public attributes of ``target`` as text of at most ``limit`` characters each (default: the
        output bound), made inside a guarded window since a tool class's ``__repr__`` is tool code."""
        bound = self.max_output_chars if limit is None else limit
        return {k: self._guarded_text(v, bound) for k, v in vars(target.value).items() if k[:1] != "_"}

    def _guarded_text(self, value: Any, limit: int) -> str:
        try:
            try:
                self._begin()
                text = serialize_output(value, limit)
            finally:
                reason = self._end()
        except BaseException:
            self._end()
            return "<unreadable>"
        return "<unreadable>" if reason is not None else text

    def _method(self, target: ToolObject, name: str, *, private: bool) -> Any:
        if not isinstance(target, ToolObject) or not isinstance(name, str) or name[:2] == "__":
            return None
        if name[:1] == "_" and not private:
            return None
        owner = next((c for c in type(target.value).__mro__ if name in c.__dict__), None)
        attr = owner.__dict__[name] if owner is not None else None
        if not isinstance(attr, types.FunctionType) or not is_own_class(owner):
            return None  # properties, class attributes and methods a stdlib base defines are not tools
        return types.MethodType(attr, target.value)

    def _run_trusted(self, what: str, fn: Any, args: tuple, kwargs: dict) -> Any:
        try:
            try:
                self._begin()
                value = fn(*args, **kwargs)
            finally:
                reason = self._end()
        except BaseException as e:
            reason = self._end()
            if isinstance(e, KeyboardInterrupt) and reason is None:
                raise
            detail = reason[1] if reason else f"{type(e).__name__}: {e}"
            raise ToolSourceError(f"{what} failed: {detail}") from None
        if reason is not None:
            raise ToolSourceError(f"{what} failed: {reason[1]}")
        return value

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
        try:
            try:
                self._begin()  # str() of a tool's own exception class runs tool code: guard it like the call
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
