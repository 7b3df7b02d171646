"""``eval`` and ``exec`` for tool code: the text is compiled by the same policy as tool source and runs with the
same builtins, guards and budget.

Why a module: a calculator tool's ``eval(expression, {"__builtins__": None}, {})`` is ordinary tool code, but
CPython's ``eval`` would run the text unrestricted and fill a missing ``__builtins__`` with the real builtins.
Here the text goes through :func:`~toolgym.sandbox.policy.compile_tool_code`, the namespaces are checked (plain
dicts, no guard names a caller could use to swap a guard out), ``__builtins__`` is this Toolbox's (or, where the
caller asked for none, just the guards the compiled code calls), and each call costs steps.
"""

from __future__ import annotations

import sys
from typing import Any

from toolgym.sandbox.clock import Clock
from toolgym.sandbox.guards import SizeGuards
from toolgym.sandbox.policy import compile_tool_code

__all__ = ["make_eval_exec"]

_MISSING = object()


def _guard_name(key: Any) -> bool:
    """``_getattr_``, ``_tick_``, ...: the names the compiled code calls (dunders are read from builtins only)."""
    return type(key) is str and key[:1] == "_" and key[-1:] == "_" and key[:2] != "__" and len(key) > 1


def make_eval_exec(env: dict[str, Any], sizes: SizeGuards, clock: Clock) -> dict[str, Any]:
    """``eval`` and ``exec`` over the builtins dict ``env`` (filled in by the caller before first use)."""
    tick, charge, ensure_armed, check_len, check_frozen = (
        clock.tick,
        clock.charge,
        clock.ensure_armed,
        sizes.check_len,
        sizes.check_frozen,
    )
    guards_only: dict[str, Any] = {}  # the compiled code's own helpers: ``{"__builtins__": None}`` gets these

    def namespaces(caller: Any, globals_: Any, locals_: Any) -> tuple[dict[str, Any], Any]:
        if globals_ is None:
            if caller.f_globals.get("__builtins__") is env:  # tool code (not library code) called eval/exec
                return caller.f_globals, caller.f_locals if locals_ is None else locals_
            globals_ = {}  # called from library code (functools.partial, _apply_, ...): a fresh namespace
        if type(globals_) is not dict:
            raise TypeError("globals must be a dict")
        check_frozen(globals_)
        for key in globals_:
            if _guard_name(key) and globals_[key] is not env.get(key):
                raise TypeError(f"globals may not define the reserved name {key!r}")
        given = globals_.get("__builtins__", _MISSING)
        if given is _MISSING or given is env:
            globals_["__builtins__"] = env
        elif given is None or type(given) is dict:  # the caller chose the builtins: keep its choice
            if not guards_only:
                guards_only.update({k: v for k, v in env.items() if _guard_name(k)})
            if given:
                if any(
                    type(k) is not str or (k[:1] == "_" and guards_only.get(k, _MISSING) is not v)
                    for k, v in given.items()
                ):
                    raise TypeError("the builtins given to eval/exec may only hold public names")
                given = {**given, **guards_only}
            else:
                given = guards_only
            globals_["__builtins__"] = given
        else:
            raise TypeError("__builtins__ must be a dict or None")
        return globals_, locals_

    def prepare(caller: Any, source: Any, globals_: Any, locals_: Any, mode: str) -> tuple[Any, dict[str, Any], Any]:
        if isinstance(source, (bytes, bytearray)):
            source = bytes(source).decode("utf-8")
        if not isinstance(source, str):
            raise TypeError(f"{mode}() arg 1 must be a string")
        if locals_ is not None:
            if type(locals_) is not dict:
                raise TypeError("locals must be a dict")
            if any(_guard_name(k) for k in locals_):
                raise TypeError("locals may not define names spelled _like_this_")
        tick()
        if len(source) > 4096:
            check_len(len(source) * 16, f"{mode}() source")
            ensure_armed()
            charge(len(source) >> 6)
        code = compile_tool_code(source.strip() if mode == "eval" else source, mode)
        g, loc = namespaces(caller, globals_, locals_)
        return code, g, loc

    def safe_eval(source: Any, globals: Any = None, locals: Any = None, /) -> Any:
        code, g, loc = prepare(sys._getframe(1), source, globals, locals, "eval")
        return eval(code, g, g if loc is None else loc)  # compiled by the sandbox policy

    def safe_exec(source: Any, globals: Any = None, locals: Any = None, /) -> None:
        code, g, loc = prepare(sys._getframe(1), source, globals, locals, "exec")
        exec(code, g, g if loc is None else loc)  # compiled by the sandbox policy

    return {"eval": safe_eval, "exec": safe_exec}
