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
MAX_DECIMAL_PREC = 10_000  # decimal's digits: libmpdec divides and takes roots at this precision in microseconds
_NAMES = (
    "mpf mpc mpmathify pi e euler inf nan j log ln log10 exp expm1 log1p sqrt cbrt root power sin cos tan "
    "asin acos atan atan2 sinh cosh tanh floor ceil nint frac fabs fsum fprod fdot factorial fac gamma "
    "binomial hypot degrees radians isnan isinf isint isnormal sign re im arg conj almosteq"
).split()


def available() -> bool:
    """mpmath is installed (it is imported only when tool code asks for it)."""
    import importlib.util

    return importlib.util.find_spec("mpmath") is not None


class DecimalContext(Settings):
    """``decimal.getcontext()`` in tool code: the Toolbox's own context, its precision bounded."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: Any) -> None:
        object.__setattr__(self, "_ctx", ctx)

    def __repr__(self) -> str:
        return repr(self._ctx)

    @property
    def prec(self) -> int:
        return self._ctx.prec

    @prec.setter
    def prec(self, value: Any) -> None:
        if isinstance(value, int) and value > MAX_DECIMAL_PREC:
            raise ValueError(f"decimal precision is limited to {MAX_DECIMAL_PREC} digits in tool code, got {value}")
        self._ctx.prec = value

    @property
    def rounding(self) -> str:
        return self._ctx.rounding

    @rounding.setter
    def rounding(self, value: Any) -> None:
        self._ctx.rounding = value

    @property
    def Emax(self) -> int:
        return self._ctx.Emax

    @property
    def Emin(self) -> int:
        return self._ctx.Emin


class _Precision(Settings):
    """``mpmath.mp`` in tool code: the working precision of the Toolbox's own context, bounded."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: Any) -> None:
        object.__setattr__(self, "_ctx", ctx)

    def __repr__(self) -> str:
        return repr(self._ctx)

    @property
    def dps(self) -> int:
        return self._ctx.dps

    @dps.setter
    def dps(self, value: Any) -> None:
        if isinstance(value, (int, float)) and value > MAX_DPS:
            raise ValueError(f"mpmath precision is limited to {MAX_DPS} digits in tool code, got {value}")
        self._ctx.dps = value

    @property
    def prec(self) -> int:
        return self._ctx.prec

    @prec.setter
    def prec(self, value: Any) -> None:
        if isinstance(value, (int, float)) and value > MAX_DPS * 4:
            raise ValueError(f"mpmath precision is limited to {MAX_DPS * 4} bits in tool code, got {value}")
        self._ctx.prec = value


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
