"""One Toolbox's runtime: its clock, size guards, guarded getattr, builtins and importer, wired into the builtins
dict that every tool module of the Toolbox runs with.

Why a module: the pieces are built by factories in :mod:`~toolgym.sandbox.clock`,
:mod:`~toolgym.sandbox.guards`, :mod:`~toolgym.sandbox.regex_shim` and :mod:`~toolgym.sandbox.modules`, each
closing over the same limits and the same clock; :class:`_Runtime` is where they meet and where the names
RestrictedPython's rewrite calls (``_tick_``, ``_getattr_``, ``_mul_``, ...) are bound.
"""

from __future__ import annotations

import builtins
import decimal
import operator
from typing import Any

from RestrictedPython.Guards import guarded_unpack_sequence

from toolgym.sandbox.clock import make_clock
from toolgym.sandbox.evaluator import make_eval_exec
from toolgym.sandbox.guards import make_builtin_guards, make_getattr, make_size_guards
from toolgym.sandbox.modules import EpisodeRandom, make_import
from toolgym.sandbox.owned import make_class_guards
from toolgym.sandbox.precision import DecimalContext
from toolgym.sandbox.regex_shim import make_re

_EXCEPTIONS = (
    "ArithmeticError AssertionError AttributeError BaseException ConnectionError Exception FileExistsError "
    "FileNotFoundError ImportError IndexError IsADirectoryError KeyError LookupError MemoryError NameError "
    "NotADirectoryError NotImplementedError OSError SyntaxError Warning "
    "OverflowError PermissionError RecursionError RuntimeError StopIteration TimeoutError TypeError "
    "UnboundLocalError UnicodeDecodeError UnicodeEncodeError UnicodeError ValueError ZeroDivisionError"
).split()
_PLAIN_BUILTINS = (
    "abs all any bin bool callable chr complex dict divmod enumerate filter float frozenset hash hex int "
    "isinstance issubclass len list map max min next oct ord reversed round set str tuple zip"
    " object property staticmethod classmethod super slice id"
).split()


class _NullPrinter:
    """``print`` in tool code is accepted and discarded (RestrictedPython routes it through ``_print_``)."""

    __slots__ = ()

    def __init__(self, _getattr_: Any = None) -> None:
        pass

    def _call_print(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self) -> str:
        return ""


class _Runtime:
    """Per-Toolbox guards and counters; every guard is a closure so the hot path does no attribute lookups."""

    def __init__(self, step_budget: int, time_limit: float, max_size: int, max_memory: int) -> None:
        frozen: set[int] = set()  # ids of module-level containers, read-only at run time
        self.frozen = frozen
        clock = make_clock(step_budget, time_limit, max_memory)
        sizes = make_size_guards(max_size, frozen, clock)
        re_functions, re_methods = make_re(clock, time_limit)
        self.has_classes = False  # tool code built a class with protocol methods: check the world for instances
        owned = make_class_guards(sizes.check_frozen, self._class_built)
        attrs = make_getattr(sizes, frozen, clock, re_methods, owned)
        self.random = EpisodeRandom(sizes, clock)
        self.decimal: decimal.Context | None = None  # the tools' decimal context, made at their first getcontext()
        self.on_decimal: Any = lambda ctx: None  # the Toolbox's hook: make ``ctx`` current inside its calls
        self.running = False  # a module's code is running (an own module imported by another runs inside it)
        self.local_modules: dict[str, Any] = {}  # the Toolbox's own modules: name -> loader (filled by it)
        env: dict[str, Any] = {n: getattr(builtins, n) for n in _PLAIN_BUILTINS + _EXCEPTIONS}
        env.update(
            {
                "None": None,
                "True": True,
                "False": False,
                "Ellipsis": Ellipsis,
                "NotImplemented": NotImplemented,
                **make_builtin_guards(max_size, sizes, clock),
                **sizes.builtins,
                **attrs,
                **owned,
                **make_eval_exec(env, sizes, clock),
                "__import__": make_import(
                    sizes, clock, re_functions, attrs, self.random, env, self.local_modules, self._getcontext
                ),
                # guards the compiled code calls
                "_tick_": clock.tick,
                "_getitem_": operator.getitem,
                "_getiter_": iter,
                "_iter_unpack_sequence_": lambda it, spec, _getiter_: (
                    guarded_unpack_sequence(x, spec, _getiter_) for x in it
                ),
                "_unpack_sequence_": guarded_unpack_sequence,
                "_apply_": lambda f, *a, **k: f(*a, **k),
                "_print_": _NullPrinter,
            }
        )
        self.builtins = env
        self.begin, self.end = clock.begin, clock.end
        self.tick, self.charge, self.abort = clock.tick, clock.charge, clock.abort

    def _getcontext(self) -> DecimalContext:
        """``decimal.getcontext()`` of tool code: the Toolbox's own context, current from now on in its calls."""
        if self.decimal is None:
            self.decimal = decimal.Context()
            self.on_decimal(self.decimal)
        return DecimalContext(self.decimal)

    def _class_built(self) -> None:
        self.has_classes = True
