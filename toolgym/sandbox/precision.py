"""Arbitrary precision in tool code: ``decimal.getcontext()`` and ``import mpmath``, each a per-Toolbox context
with bounded settings.

Why a module: real tool code computes with arbitrary precision (BFCL's MathAPI sets ``mpmath.mp.dps`` and
divides two ``mpmath.log`` values). The real ``mpmath.mp`` is one process-wide context, so a tool setting its
precision would change every other Toolbox's (and the trainer's) arithmetic, and a precision of a billion
digits makes one big-int multiplication run for minutes inside a single C call that no clock can stop. Here
every Toolbox gets its own ``mpmath.MPContext``; tool code sees an allow-list of its functions and constants
(each starts the call's clock before it runs, as pure-Python library code never ticks) and an ``mp`` whose
``dps``/``prec`` setters refuse more than :data:`MAX_DPS` digits. The context object itself is never handed
out (``x.context`` of a number is refused by the getattr guard), so its other settings stay out of reach.

``decimal``'s context is per thread, not per Toolbox: :class:`DecimalContext` is the Toolbox's own
``decimal.Context`` (``prec`` at most :data:`MAX_DECIMAL_PREC` digits), which the Toolbox makes
current for the thread only inside its calls, from the first ``getcontext()`` on, so one tool setting
``getcontext().prec`` changes neither another Toolbox's arithmetic nor the caller's.

mpmath is optional: without it installed, ``import mpmath`` is refused like any other module.
"""

from __future__ import annotations

import functools
import types
from typing import Any

from toolgym.sandbox.guards import Settings

__all__ = ["MAX_DECIMAL_PREC", "MAX_DPS", "DecimalContext", "available", "make_mpmath"]

MAX_DPS = 1000  # mpmath's decimal digits; a log at this precision takes about a millisecond
# decimal's digits: one exp, ln or non-integer power is one C call no clock can stop, and its time grows steeply with
# the precision (tens of milliseconds at 1,000 digits, about half a second at 2,000, many seconds at 10,000)
MAX_DECIMAL_PREC = 1000
_NAMES = (
    "mpf mpc mpmathify pi e euler inf nan j log ln log10 exp expm1 log1p sqrt cbrt root power sin cos tan "
    "asin acos atan atan2 sinh cosh tanh floor ceil nint frac fabs fsum fprod fdot factorial fac gamma "
    "binomial hypot degrees radians isnan isinf isint isnormal sign re im arg conj almosteq"
).split()


def available() -> bool:
    """mpmath is installed (it is imported only when tool code asks for it)."""
    import importlib.util

    return importlib.util.find_spec("mpmath") is not None


def _setting(name: str, settable: bool = False, limit: int | None = None, what: str = "") -> property:
    """An attribute of the wrapped context: readable, and if ``settable`` settable up to ``limit``."""

    def get(self: Any) -> Any:
        return getattr(self._ctx, name)

    def set_(self: Any, value: Any) -> None:
        if limit is not None and isinstance(value, (int, float)) and value > limit:
            raise ValueError(f"{what} is limited to {limit} in tool code, got {value}")
        setattr(self._ctx, name, value)

    return property(get, set_ if settable else None)


class _Context(Settings):
    """A precision context in tool code: the Toolbox's own, only the settings below reachable."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: Any) -> None:
        object.__setattr__(self, "_ctx", ctx)

    def __repr__(self) -> str:
        return repr(self._ctx)


class DecimalContext(_Context):
    """``decimal.getcontext()`` in tool code: the Toolbox's own context, its precision bounded."""

    __slots__ = ()
    prec = _setting("prec", True, MAX_DECIMAL_PREC, "decimal precision (digits)")
    rounding = _setting("rounding", True)
    Emax = _setting("Emax")
    Emin = _setting("Emin")


class _Precision(_Context):
    """``mpmath.mp`` in tool code: the working precision of the Toolbox's own context, bounded."""

    __slots__ = ()
    dps = _setting("dps", True, MAX_DPS, "mpmath precision (digits)")
    prec = _setting("prec", True, MAX_DPS * 4, "mpmath precision (bits)")


class _Module:
    """The ``mpmath`` proxy: fixed names, plus the constants (``pi``, ``e``, ``euler``) read as values at the
    current precision, since calling mpmath's lazy constant objects takes a precision argument (``pi(dps=...)``)."""

    __slots__ = ("_ctx", "_names")

    def __init__(self, ctx: Any, names: dict[str, Any]) -> None:
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "_names", names)

    def __getattr__(self, name: str) -> Any:
        if name in _CONSTANTS:
            return +getattr(self._ctx, name)
        try:
            return self._names[name]
        except KeyError:
            raise AttributeError(f"module 'mpmath' has no attribute {name!r} in tool code") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("cannot assign to attributes of the mpmath module in tool code")


_CONSTANTS = frozenset({"pi", "e", "euler"})


def make_mpmath(ensure_armed: Any) -> _Module:
    """The ``mpmath`` of one Toolbox: its own context's functions (clock armed first), numbers and ``mp``."""
    import mpmath

    ctx = mpmath.MPContext()

    def armed(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ensure_armed()
            return fn(*args, **kwargs)

        return wrapper

    names: dict[str, Any] = {}
    for name in _NAMES:
        if name in _CONSTANTS:
            continue
        value = getattr(ctx, name)
        names[name] = armed(value) if isinstance(value, (types.MethodType, types.FunctionType)) else value
    names["mp"] = _Precision(ctx)
    return _Module(ctx, names)
