"""Fast in-process sandbox for tool source code: RestrictedPython plus a step budget and size guards.

Tools are plain Python functions (hand-written, LLM-written or imported from benchmarks) that run on every env
step, so this module trades a subprocess's hard isolation for about a microsecond of overhead per call:

* each distinct source is compiled once per process (cache keyed by sha256) by a RestrictingNodeTransformer
  subclass that rejects underscore names, classes and ``global`` (except ``state``) and rewrites the
  operations that can explode (``* ** << + %``, f-string fields, ``str()`` calls, slice and augmented
  assignment) into guarded helpers; attribute loads and subscripts stay native unless the name needs a guard;
* a deterministic step budget: ``_tick_()`` at the start of every function, lambda, loop body and
  comprehension item; exhaustion raises a ``BaseException`` and keeps raising, so ``except:`` cannot hide it;
* a wall-clock backstop that holds on any thread: a clock check at every 1024-tick checkpoint, plus SIGALRM
  (armed lazily at the first checkpoint) on the main thread, and on other threads a per-call deadline kept by
  one watchdog thread, which raises the abort in the call's thread (``PyThreadState_SetAsyncExc``) so even
  library code that never ticks (``fractions``, ``statistics``) stops; plus an RSS-growth backstop;
* tool code's ``re`` runs on the ``regex`` engine, with re's signatures, errors and reading of patterns, and
  with ``timeout=`` the call's remaining time: a backtracking match returns a timeout on any thread, and it
  releases the GIL meanwhile, so it never freezes other threads (re's matcher holds the GIL and only polls
  the main thread's signals);
* a deliberate builtins allow-list, read-only proxies of a few pure stdlib modules, and a guarded getattr
  that blocks dunder/frame attributes, routes ``str.format`` through a checked formatter and bounds the
  width/size arguments of padding, replace, join, etc.

Size guards refuse the C calls whose cost follows from their arguments before they start (``pow(10, 10**8)``,
``'x' * 10**9``, ``sorted(range(10**11))``, ...), so what one C call can do is bounded by ``max_size``.
Residual risks (closing them needs a subprocess): work done inside one C call on aliased or deeply nested
data the guards cannot see, e.g. ``hash()`` of a >100k-deep nested tuple (segfaults CPython 3.11), ``==`` of
two exponentially aliased lists, ``int(Decimal('1e999999999'))``, ``re.sub`` back-references on huge input;
quadratic exception-context chains in deep recursion (the clock still stops those). Such a call holds the
GIL, so no thread can stop it and every thread of the process waits. The env's ``isolation="process"``
(:mod:`toolgym.sandbox_process`) closes them, from any thread: it runs the calls in a forked worker that is
killed at a wall-clock deadline.
"""

from __future__ import annotations

import _string  # C helpers behind str.format's field parsing
import ast
import builtins
import collections
import copy
import ctypes
import datetime
import decimal
import fractions
import functools
import hashlib
import itertools
import json
import math
import operator
import os
import re
import reprlib
import signal
import statistics
import string
import sys
import threading
import time
import types
from dataclasses import dataclass
from types import CodeType
from typing import Any

from RestrictedPython import compile_restricted_exec
from RestrictedPython.Guards import guarded_unpack_sequence
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

__all__ = ["ToolOutcome", "ToolSourceError", "Toolbox", "compile_tool_source", "serialize_output"]

_CHECK_EVERY = 1024  # ticks between clock / memory checks
_INT_BITS = 1 << 20  # largest int result (bits) a guarded * ** << may produce: C bignum ops stay ~ms
_COMB_BITS = 100_000  # math.factorial/comb/perm are slow per bit
_JSON_FAST_LIMIT = 1 << 20  # estimated output size up to which the C JSON encoder is used
_TRUNCATED = " ...[truncated]"
_MAIN_IDENT = threading.main_thread().ident
_SIZED = (str, bytes, bytearray, list, tuple, collections.deque)
_SCALARS = frozenset({int, float, bool, type(None), complex})
_CONTAINERS = (list, tuple, set, frozenset, collections.deque)


class ToolSourceError(ValueError):
    """Tool source does not compile under the sandbox policy, or does not define the named tool."""


@dataclass(slots=True)
class ToolOutcome:
    """Result of one tool call: ``output`` is the message text for the model, ``error`` the failure kind."""

    ok: bool
    output: str
    error: str | None


class _Abort(BaseException):
    """Budget, clock or size exhaustion; a BaseException so ``except Exception`` in tool code misses it."""


# ------------------------------------------------------------------------------------------- serialising


def _weight(value: Any, limit: int) -> int:
    """Estimate len(str(value)) without building it; stops once past ``limit``. Aliases count per use."""
    t = type(value)
    if t is str:
        return len(value)
    if t in _SCALARS:
        return 24
    total = 0
    stack: list = []  # nested containers still to visit
    x = value
    while True:
        t = type(x)
        if t is dict or isinstance(x, dict):
            total += 6 * len(x) + 2
            if total > limit:
                return total
            for k, v in x.items():
                t = type(v)
                if t is str:
                    total += len(v)
                    if total > limit:
                        return total
                elif t not in _SCALARS:
                    stack.append(v)
                if type(k) is str:
                    total += len(k)
                elif type(k) not in _SCALARS:
                    stack.append(k)
        elif t is list or t is tuple or isinstance(x, _CONTAINERS):
            total += 3 * len(x) + 2
            if total > limit:
                return total
            for v in x:
                t = type(v)
                if t is str:
                    total += len(v)
                    if total > limit:
                        return total
                elif t not in _SCALARS:
                    stack.append(v)
        elif t is str or t is bytes or t is bytearray:
            total += len(x) + 4
        elif t in _SCALARS:
            total += 24
        else:
            total += 64
        if total > limit or not stack:
            return total
        x = stack.pop()


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 8, 200, 500, 500
_REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = 500
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 20_000, 500, 4_000


def _bounded_str(value: Any, limit: int = _JSON_FAST_LIMIT) -> str:
    """``str(value)``, or an abbreviated repr when the full text would exceed ``limit``."""
    if type(value) is str:
        return value
    try:
        if _weight(value, limit) <= limit:
            return str(value)
        return _REPR.repr(value)
    except Exception as e:  # a broken __str__ must not break serialisation
        return f"<unprintable {type(value).__name__}: {type(e).__name__}>"


try:
    _C_ENCODE = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _bounded_str, json.encoder.encode_basestring, None, ": ", ", ", False, False, True
    )
except (AttributeError, TypeError):  # pragma: no cover - pure-Python json build
    _C_ENCODE = None
_LAZY_JSON = json.JSONEncoder(ensure_ascii=False, default=_bounded_str)


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - len(_TRUNCATED))
    return (text[:keep] + _TRUNCATED)[:max_chars]


def _json_text(value: Any, max_chars: int) -> str:
    if _weight(value, _JSON_FAST_LIMIT) <= _JSON_FAST_LIMIT:
        if _C_ENCODE is not None:
            return "".join(_C_ENCODE(value, 0))
        return json.dumps(value, ensure_ascii=False, default=_bounded_str)
    parts, n = [], 0  # huge or aliased: encode lazily and stop once past the cut
    for chunk in _LAZY_JSON.iterencode(value):
        parts.append(chunk[: max_chars + 1])
        n += len(chunk)
        if n > max_chars:
            parts.append("...")
            break
    return "".join(parts)


def serialize_output(value: Any, max_chars: int = 16_384) -> str:
    """FTRL's rule: ``json.dumps(value, ensure_ascii=False)`` for dict/list, else ``str(value)``; truncated.

    Non-JSON objects inside containers use ``str`` (like ``default=str``); the text is capped at ``max_chars``
    including a visible ``...[truncated]`` marker, and huge/aliased values are never fully materialised.
    """
    if type(value) is str:
        text = value
    elif isinstance(value, (dict, list)):
        try:
            text = _json_text(value, max_chars)
        except (TypeError, ValueError, RecursionError):  # non-str keys, cycles, ...: fall back to str()
            text = _bounded_str(value)
    else:
        text = _bounded_str(value)
    return _truncate(text, max_chars)


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


# ------------------------------------------------------------------------------------------------- regex


def _regex_module() -> Any:
    """The ``regex`` package, or None: tool code's ``re`` runs on it when installed (see :func:`_rx_compile`)."""
    global _REGEX
    if _REGEX is False:
        try:
            import regex as rx
        except ImportError:  # pragma: no cover - regex is a dependency
            rx = None
        _REGEX = rx
    return _REGEX


_REGEX: Any = False  # not looked up yet
_RX_CACHE: dict[tuple, Any] = {}  # (type, pattern, flags) -> regex.Pattern
_RX_REPEAT = re.compile(r"\{[0-9]*(?:,[0-9]*)?\}")  # what re's parser takes for a {m,n} repeat
_RX_SCOPED_VERBOSE = re.compile(r"\(\?[aiLmsux-]*x")  # (?x: ...) turns comments on inside a group
_RE_TO_RX_FLAGS = ((re.I, 0x2), (re.L, 0x4), (re.M, 0x8), (re.S, 0x10), (re.U, 0x20), (re.X, 0x40), (re.A, 0x80))


def _rx_source(pattern: str, verbose: bool) -> str:
    r"""``pattern`` with every ``{`` and ``[`` that re reads as a literal escaped, so regex reads them as re does.

    Unescaped, regex would read ``a{e<=1}`` as fuzzy matching and ``[[:alpha:]]`` as a POSIX class, where re
    sees literal characters; escaping a character that is already literal changes nothing for re. ``\B`` also
    gets re's rule that it never matches in an empty string. Everything else re accepts, regex's VERSION0
    reads alike (see the differential property test in tests/test_sandbox_threads.py).
    """
    if "{" not in pattern and "[" not in pattern and "\\B" not in pattern:
        return pattern
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = class_start = False  # inside [...]; at its first member (where ']' is a literal)
    class_open = -1  # index of the class's '['
    while i < n:
        c = pattern[i]
        if c == "\\":
            j = i + 2
            if pattern.startswith("N{", i + 1):
                j = pattern.find("}", i) + 1 or n
            elif pattern.startswith("B", i + 1) and not in_class:  # re's \B never matches an empty string
                out.append("(?:(?!\\A\\Z)\\B)")
                i = j
                continue
            out.append(pattern[i:j])
            i = j
            continue
        if in_class:
            if c == "]" and not class_start:
                in_class = False
            elif c == "[" or c == "{":
                c = "\\" + c
            elif c == "^" and i == class_open + 1:
                class_start = True  # a ']' right after '[^' is still a literal
                out.append(c)
                i += 1
                continue
            class_start = False
        elif c == "[":
            in_class, class_start, class_open = True, True, i
        elif c == "{":
            if not _RX_REPEAT.match(pattern, i) or pattern.startswith("{}", i):
                c = "\\{"
        elif c == "(" and pattern.startswith("(?#", i):
            j = pattern.find(")", i) + 1 or n
            out.append(pattern[i:j])
            i = j
            continue
        elif verbose and c == "#":
            j = pattern.find("\n", i)
            j = n if j < 0 else j
            out.append(pattern[i:j])
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _rx_compile(pattern: Any, flags: Any) -> Any:
    """re.compile's semantics on the regex engine: re validates (same errors), regex matches (with a timeout).

    Why regex: re's matcher never releases the GIL and polls only the main thread's signals, so a
    backtracking pattern on a worker thread froze the whole process (548 s under a 2 s limit); regex
    releases the GIL on str/bytes subjects and honours ``timeout=`` on any thread.

    Known differences from re, left because closing them would mean wrapping every match object: the repr of
    matches and patterns (``<regex.Match object; ...>``), ``Pattern.flags`` values, and ``Match.lastgroup``
    when the last group that matched is unnamed (re: None; regex: the last named group).
    """
    key = (type(pattern), pattern, flags)
    compiled = _RX_CACHE.get(key)
    if compiled is not None:
        return compiled
    rx = _regex_module()
    checked = re.compile(pattern, flags & ~re.DEBUG if isinstance(flags, int) else flags)
    rflags = 0
    for bit, rbit in _RE_TO_RX_FLAGS:
        if checked.flags & bit:
            rflags |= rbit
    verbose = bool(checked.flags & re.X) or _RX_SCOPED_VERBOSE.search(
        pattern if isinstance(pattern, str) else bytes(pattern).decode("latin-1")
    )
    if isinstance(pattern, str):
        source: Any = _rx_source(pattern, verbose)
    else:
        source = _rx_source(bytes(pattern).decode("latin-1"), verbose).encode("latin-1")
    try:
        compiled = rx.compile(source, rflags | rx.VERSION0)
    except rx.error as e:
        raise re.error(str(e), pattern) from None
    if len(_RX_CACHE) >= 1024:
        _RX_CACHE.clear()
    _RX_CACHE[key] = compiled
    return compiled


# ---------------------------------------------------------------------------------------- compile policy


def _name(id_: str) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Load())


def _call(func: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(func), args=list(args), keywords=[])


def _tick_stmt(node: ast.AST) -> ast.stmt:
    stmt = ast.Expr(_call("_tick_"))
    ast.copy_location(stmt, node)
    return ast.fix_missing_locations(stmt)


_BINOP_GUARDS = {
    ast.Mult: "_mul_",
    ast.Pow: "_pow_",
    ast.LShift: "_lshift_",
    ast.Add: "_add_",
    ast.Mod: "_mod_",
}
_AUG_GUARDS = {
    ast.Add: "_iadd_",
    ast.Mult: "_imul_",
    ast.Pow: "_pow_",
    ast.LShift: "_lshift_",
    ast.Mod: "_mod_",
}
_AUG_OPS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.MatMult: "@",
}


def _is_const(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant)


def _is_number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float, bool)


def _small_numbers(node: ast.BinOp) -> bool:
    """Both operands are small numeric literals, so the native operation is cheap (``9 / 5``, ``2 ** 10``)."""
    if not (_is_number(node.left) and _is_number(node.right)):
        return False
    a, b = abs(node.left.value), abs(node.right.value)
    if isinstance(node.op, (ast.Pow, ast.LShift)):
        return a < 1 << 16 and b <= 64
    return a < 1 << 32 and b < 1 << 32


class _ToolPolicy(RestrictingNodeTransformer):
    """RestrictedPython policy plus step ticks and size guards (see the module docstring)."""

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.error(node, "class definitions are not allowed in tool code.")
        return node

    def visit_Global(self, node: ast.Global) -> ast.AST:
        bad = [n for n in node.names if n != "state"]
        if bad:
            names = ", ".join(bad)
            self.error(node, f"'global {names}' is not allowed: keep data that must persist in `state`.")
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if node.attr == "__name__" and isinstance(node.ctx, ast.Load):  # harmless and common in messages
            node = self.node_contents_visit(node)
            new = _call("_getattr_", node.value, ast.Constant("__name__"))
            return ast.fix_missing_locations(ast.copy_location(new, node))
        new = super().visit_Attribute(node)
        if isinstance(node.ctx, ast.Load) and node.attr not in _GUARDED_ATTRS:
            # RestrictedPython vetted the literal name; only names with a runtime guard need _getattr_,
            # the rest stay native attribute loads (a call per attribute would double the cost of tool code).
            return node
        return new

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if isinstance(node.ctx, ast.Load):
            return self.node_contents_visit(node)  # reading items is harmless here; stay native (fast)
        return super().visit_Subscript(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node = super().visit_FunctionDef(node)
        node.body.insert(0, _tick_stmt(node))
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        node = super().visit_Lambda(node)
        body = ast.BoolOp(op=ast.Or(), values=[_call("_tick_"), node.body])  # _tick_() returns None
        node.body = ast.fix_missing_locations(ast.copy_location(body, node.body))
        return node

    def visit_For(self, node: ast.For) -> ast.AST:
        # Iteration itself is harmless here (no Zope-style item guards), so skip RestrictedPython's
        # per-item unpack wrappers: they cost ~0.5 us per item.
        node = self.node_contents_visit(node)
        node.body.insert(0, _tick_stmt(node))
        return node

    def visit_While(self, node: ast.While) -> ast.AST:
        node = self.node_contents_visit(node)
        node.body.insert(0, _tick_stmt(node))
        return node

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        node = self.node_contents_visit(node)
        tick = ast.UnaryOp(op=ast.Not(), operand=_call("_tick_"))
        node.ifs.insert(0, ast.fix_missing_locations(ast.copy_location(tick, node.iter)))
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.node_contents_visit(node)
        helper = _BINOP_GUARDS.get(type(node.op))
        if helper is None or _small_numbers(node):
            return node
        if helper == "_add_" and (_is_const(node.left) or _is_const(node.right)):
            return node  # growth by a constant per operation cannot double
        if helper == "_mod_" and _is_number(node.left):
            return node
        return ast.fix_missing_locations(ast.copy_location(_call(helper, node.left, node.right), node))

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        node = self.node_contents_visit(node)
        op = _AUG_OPS[type(node.op)]
        target = node.target
        if isinstance(target, ast.Name):
            if type(node.op) not in _BINOP_GUARDS:
                return node
            helper = _AUG_GUARDS[type(node.op)]
            new = ast.Assign(targets=[target], value=_call(helper, _name(target.id), node.value))
        elif isinstance(target, ast.Subscript):
            # target.value was already wrapped in _write_() by visit_Subscript (Store context).
            new = ast.Expr(_call("_augitem_", target.value, target.slice, ast.Constant(op), node.value))
        else:
            self.error(node, "Augmented assignment of attributes is not allowed.")
            return node
        return ast.fix_missing_locations(ast.copy_location(new, node))

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        node = self.node_contents_visit(node)
        slices = [t for t in node.targets if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Slice)]
        if not slices:
            return node
        if len(node.targets) != 1:
            self.error(node, "Chained assignment to a slice is not allowed.")
            return node
        t = node.targets[0]
        new = ast.Expr(_call("_setslice_", t.value, t.slice, node.value))
        return ast.fix_missing_locations(ast.copy_location(new, node))

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        node = self.node_contents_visit(node)
        spec = node.format_spec if node.format_spec is not None else ast.Constant("")
        value = _call("_fmt_", node.value, ast.Constant(node.conversion), spec)
        new = ast.FormattedValue(value=value, conversion=-1, format_spec=None)
        return ast.fix_missing_locations(ast.copy_location(new, node))

    def visit_Call(self, node: ast.Call) -> ast.AST:
        node = super().visit_Call(node)
        if isinstance(node.func, ast.Name) and node.func.id == "str":
            node.args.insert(0, node.func)
            node.func = ast.copy_location(_name("_str_call_"), node.func)
        return node


def compile_tool_source(source: str) -> CodeType:
    """Compile tool source under the sandbox policy; cached process-wide by sha256 of the text."""
    return _compile_cached(hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest(), source)


@functools.lru_cache(maxsize=4096)
def _compile_cached(digest: str, source: str) -> CodeType:
    result = compile_restricted_exec(source, filename="<tool>", policy=_ToolPolicy)
    if result.errors or result.code is None:
        raise ToolSourceError("; ".join(result.errors) or "source does not compile")
    return result.code


compile_tool_source.cache_info = _compile_cached.cache_info  # type: ignore[attr-defined]
compile_tool_source.cache_clear = _compile_cached.cache_clear  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------- runtime


def _bits(x: Any) -> int:
    if isinstance(x, int):
        return x.bit_length()
    if isinstance(x, fractions.Fraction):
        return max(x.numerator.bit_length(), x.denominator.bit_length())
    return 0


_BLOCKED_ATTRS = frozenset(INSPECT_ATTRIBUTES) | {
    "mro",
    "register",  # ABCMeta.register would change isinstance() for the whole process
    "f_lineno",
    "f_lasti",
    "tb_lasti",
    "tb_lineno",
    "func_globals",
    "func_code",
}
_PADDERS = frozenset({"ljust", "rjust", "center"})
_MUTATORS = frozenset(
    {
        "append",
        "appendleft",
        "insert",
        "remove",
        "pop",
        "popleft",
        "popitem",
        "clear",
        "sort",
        "reverse",
        "rotate",
        "update",
        "setdefault",
        "add",
        "discard",
        "subtract",
        "intersection_update",
        "difference_update",
        "symmetric_difference_update",
        "move_to_end",
    }
)
_REGEX_METHODS = frozenset({"match", "search", "fullmatch", "findall", "finditer", "sub", "subn", "split"})
_GUARDED_ATTRS = (
    _BLOCKED_ATTRS
    | _PADDERS
    | _MUTATORS
    | _REGEX_METHODS
    | {"__name__", "zfill", "expandtabs", "replace", "join", "translate", "to_bytes", "format", "format_map"}
    | {"extend", "extendleft", "elements"}
)
_STR_TYPES = (str, bytes, bytearray)
_LIST_TYPES = (list, bytearray, collections.deque)
_WRITABLE = (dict, list, bytearray, collections.deque)
_ALLOWED_MODULES = (
    "math",
    "datetime",
    "json",
    "re",
    "string",
    "itertools",
    "functools",
    "collections",
    "statistics",
    "decimal",
    "fractions",
    "copy",
)
_MODULE_DENY = {
    "json": {"dump", "load", "JSONEncoder", "JSONDecoder"},
    "re": {"template", "purge", "Scanner", "TEMPLATE", "T"},
    "string": {"Formatter"},
    "functools": {
        "singledispatch",
        "singledispatchmethod",
        "total_ordering",
        "cached_property",
        "partialmethod",
    },
    "collections": {"UserDict", "UserList", "UserString"},
    "statistics": {"NormalDist"},  # samples() draws random numbers in an unticked loop
    "datetime": {"datetime_CAPI"},
}
_DECIMAL_ALLOW = {
    "Decimal",
    "DecimalException",
    "InvalidOperation",
    "DivisionByZero",
    "Inexact",
    "Rounded",
    "Subnormal",
    "Overflow",
    "Underflow",
    "Clamped",
    "FloatOperation",
    *(n for n in dir(decimal) if n.startswith("ROUND_")),
}
_MODULES = dict(
    zip(
        _ALLOWED_MODULES,
        (
            math,
            datetime,
            json,
            re,
            string,
            itertools,
            functools,
            collections,
            statistics,
            decimal,
            fractions,
            copy,
        ),
        strict=True,
    )
)
_EXCEPTIONS = (
    "ArithmeticError AssertionError AttributeError BaseException ConnectionError Exception FileNotFoundError "
    "ImportError IndexError KeyError LookupError MemoryError NameError NotImplementedError OSError "
    "OverflowError PermissionError RecursionError RuntimeError StopIteration TimeoutError TypeError "
    "UnboundLocalError UnicodeDecodeError UnicodeEncodeError UnicodeError ValueError ZeroDivisionError"
).split()
_PLAIN_BUILTINS = (
    "abs all any bin bool callable chr complex dict divmod enumerate filter float frozenset hash hex int "
    "isinstance issubclass len list map max min next oct ord reversed round set str tuple zip"
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


class _Runtime:
    """Per-Toolbox guards and counters; every guard is a closure so the hot path does no attribute lookups."""

    def __init__(self, step_budget: int, time_limit: float, max_size: int, max_memory: int) -> None:
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
        frozen: set[int] = set()
        self.frozen = frozen
        size_digits = len(str(max_size))
        big_number = re.compile(rf"\d{{{size_digits},}}")

        def abort(kind: str, detail: str) -> None:
            nonlocal reason, left
            if reason is None:
                reason = (kind, detail)
            left = 0
            raise _Abort(detail)

        def too_big(what: str, size: int) -> None:
            abort("resource", f"{what} of size {size} exceeds the limit of {max_size}")

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

        # -- size guards ----------------------------------------------------------------------------------
        def check_weight(value: Any, what: str) -> None:
            if type(value) not in _SCALARS and type(value) is not str:
                w = _weight(value, max_size)
                if w > max_size:
                    too_big(what, w)
                if w > 4096:
                    charge(w >> 10)

        def check_len(n: int, what: str) -> None:
            if n > max_size:
                too_big(what, n)
            if n > 4096:
                charge(n >> 10)

        def check_frozen(ob: Any) -> None:
            if frozen and id(ob) in frozen:
                raise TypeError("module-level data is read-only in tools; keep mutable data in `state`")

        def mul(a: Any, b: Any) -> Any:
            ta, tb = type(a), type(b)
            if ta is int and tb is int:
                if a.bit_length() + b.bit_length() > _INT_BITS:
                    too_big("integer product (bits)", a.bit_length() + b.bit_length())
                return a * b
            if ta is float or tb is float:
                return a * b
            if isinstance(a, int) and isinstance(b, _SIZED):
                check_len(len(b) * max(a, 0), f"{type(b).__name__} repetition")
            elif isinstance(b, int) and isinstance(a, _SIZED):
                check_len(len(a) * max(b, 0), f"{type(a).__name__} repetition")
            elif _bits(a) + _bits(b) > _INT_BITS:
                too_big("number product (bits)", _bits(a) + _bits(b))
            return a * b

        def pow_(a: Any, b: Any) -> Any:
            e = b.numerator if isinstance(b, fractions.Fraction) and b.denominator == 1 else b
            if isinstance(e, int) and e > 1 and isinstance(a, (int, fractions.Fraction)):
                bits = _bits(a)
                if bits > 1 and (bits - 1) * e > _INT_BITS:
                    too_big("power (bits)", (bits - 1) * e)
            return a**b

        def lshift(a: Any, b: Any) -> Any:
            if type(b) is int and isinstance(a, int) and a and a.bit_length() + b > _INT_BITS:
                too_big("shift (bits)", a.bit_length() + b)
            return a << b

        def add(a: Any, b: Any) -> Any:
            ta = type(a)
            if ta is int or ta is float:
                return a + b
            if isinstance(a, _SIZED) and isinstance(b, _SIZED):
                n = len(a) + len(b)
                if n > 4096:
                    check_len(n, f"{ta.__name__} concatenation")
            return a + b

        def mod(a: Any, b: Any) -> Any:
            ta = type(a)
            if ta is int or ta is float:
                return a % b
            if isinstance(a, (str, bytes)):
                text = a if isinstance(a, str) else a.decode("latin-1")
                fmt_spec(text)
                if "*" in text:
                    args = b if isinstance(b, tuple) else (b,)
                    for x in args:
                        if isinstance(x, int) and abs(x) > max_size:
                            too_big("format width", abs(x))
                n = len(text) + (text.count("%") + 1) * _weight(b, max_size)
                check_len(n, "formatted text")
            return a % b

        def iadd(a: Any, b: Any) -> Any:
            ta = type(a)
            if ta is int or ta is float:
                return a + b
            if frozen and id(a) in frozen:
                check_frozen(a)
            if isinstance(a, _SIZED) and hasattr(b, "__len__"):
                n = len(a) + len(b)
                if n > 4096:
                    check_len(n, f"{ta.__name__} concatenation")
            return operator.iadd(a, b)

        def imul(a: Any, b: Any) -> Any:
            if isinstance(a, _LIST_TYPES):
                check_frozen(a)
                if isinstance(b, int):
                    check_len(len(a) * max(b, 0), f"{type(a).__name__} repetition")
                return operator.imul(a, b)
            return mul(a, b)

        inplace_ops = {
            "+": iadd,
            "*": imul,
            "**": lambda a, b: pow_(a, b),
            "<<": lambda a, b: lshift(a, b),
            "%": lambda a, b: mod(a, b),
            **_INPLACE_NATIVE,
        }

        def augitem(ob: Any, key: Any, op: str, value: Any) -> None:
            ob[key] = inplace_ops[op](ob[key], value)

        def setslice(ob: Any, key: slice, value: Any) -> None:
            if not isinstance(value, _SIZED):
                value = list(value)
            check_len(len(ob) + len(value), f"{type(ob).__name__} slice assignment")
            ob[key] = value

        def write(ob: Any) -> Any:
            t = type(ob)
            if t is dict or t is list or isinstance(ob, _WRITABLE):
                if frozen and id(ob) in frozen:
                    check_frozen(ob)
                return ob
            raise TypeError(f"cannot assign to items or attributes of {t.__name__} objects in tool code")

        def fmt_spec(spec: str) -> None:
            if len(spec) >= size_digits:
                for digits in big_number.findall(spec):
                    if int(digits) > max_size:
                        too_big("format width", int(digits))

        def convert(value: Any, conv: int) -> Any:
            if conv == 115:  # !s
                check_weight(value, "str()")
                return str(value)
            if conv == 114:  # !r
                check_weight(value, "repr()")
                return repr(value)
            if conv == 97:  # !a
                check_weight(value, "ascii()")
                return ascii(value)
            return value

        def fmt(value: Any, conv: int, spec: str) -> str:
            if conv != -1:
                value = convert(value, conv)
            elif not spec and type(value) is str:
                return value
            if spec:
                fmt_spec(spec)
            check_weight(value, "formatted value")
            return format(value, spec)

        def safe_format(value: Any, spec: str = "") -> str:
            return fmt(value, -1, spec)

        def str_call(f: Any, *args: Any, **kwargs: Any) -> Any:
            if f is str and len(args) == 1 and not kwargs:
                check_weight(args[0], "str()")
            return f(*args, **kwargs)

        def safe_repr(value: Any) -> str:
            return convert(value, 114)

        def safe_ascii(value: Any) -> str:
            return convert(value, 97)

        # -- getattr --------------------------------------------------------------------------------------
        def blocked(ob: Any, name: str) -> Any:
            raise AttributeError(f"access to attribute {name!r} is not allowed in tool code")

        def dunder_name(ob: Any, name: str) -> Any:
            return ob.__name__

        def unbound(name: str) -> Any:
            def method(self: Any, *args: Any, **kwargs: Any) -> Any:
                return guarded_getattr(self, name)(*args, **kwargs)

            return method

        def padder(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name)
            meth = getattr(ob, name)
            if not isinstance(ob, _STR_TYPES):
                return meth

            def pad(width: Any, *args: Any) -> Any:
                if isinstance(width, int):
                    check_len(width, f"{name}() width")
                return meth(width, *args)

            return pad

        def expandtabs(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name)
            meth = getattr(ob, name)
            if not isinstance(ob, _STR_TYPES):
                return meth

            def expand(tabsize: int = 8) -> Any:
                if isinstance(tabsize, int):
                    check_len(tabsize, "expandtabs() tab size")
                    tabs = ob.count("\t" if isinstance(ob, str) else b"\t")
                    check_len(len(ob) + tabs * max(tabsize, 0), "expandtabs() result")
                return meth(tabsize)

            return expand

        def replace(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name)
            meth = getattr(ob, name)
            if not isinstance(ob, _STR_TYPES):
                return meth

            def rep(old: Any, new: Any, count: int = -1) -> Any:
                if isinstance(old, _STR_TYPES) and isinstance(new, _STR_TYPES) and len(new) > len(old):
                    n = len(ob) + 1 if not old else ob.count(old)
                    if count >= 0:
                        n = min(n, count)
                    check_len(len(ob) + n * (len(new) - len(old)), "replace() result")
                return meth(old, new, count)

            return rep

        def join(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name)
            meth = getattr(ob, name)
            if not isinstance(ob, _STR_TYPES):
                return meth

            def join_(items: Any) -> Any:
                if not isinstance(items, (list, tuple)):
                    items = list(items)
                try:
                    total = sum(map(len, items)) + len(ob) * max(len(items) - 1, 0)
                except TypeError:
                    return meth(items)  # raises the usual "expected str instance" error
                check_len(total, "join() result")
                return meth(items)

            return join_

        def translate(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name)
            meth = getattr(ob, name)
            if not isinstance(ob, str):
                return meth

            def translate_(table: Any) -> Any:
                if isinstance(table, dict):
                    longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
                    check_len(len(ob) * longest, "translate() result")
                return meth(table)

            return translate_

        def to_bytes(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name)
            meth = getattr(ob, name)

            def to_bytes_(length: int = 1, *args: Any, **kwargs: Any) -> Any:
                if isinstance(length, int):
                    check_len(length, "to_bytes() length")
                return meth(length, *args, **kwargs)

            return to_bytes_

        def str_format(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name) if issubclass(ob, str) else getattr(ob, name)
            if not isinstance(ob, str):
                return getattr(ob, name)
            if name == "format":
                return lambda *args, **kwargs: formatter.vformat(ob, args, kwargs)
            return lambda mapping: formatter.vformat(ob, (), mapping)

        def mutator(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name)
            if frozen:
                check_frozen(ob)
            return getattr(ob, name)

        def extend(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name)
            meth = getattr(ob, name)
            if not isinstance(ob, _LIST_TYPES):
                return meth
            check_frozen(ob)

            def extend_(items: Any) -> Any:
                if not isinstance(items, _SIZED):
                    items = list(items)
                check_len(len(ob) + len(items), f"{type(ob).__name__}.{name}() result")
                return meth(items)

            return extend_

        def regex_method(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name)
            meth = getattr(ob, name)
            if type(ob) is re.Pattern:
                ensure_armed()
            elif rx is not None and type(ob) is rx.Pattern:
                return rx_methods[name](meth)
            return meth

        def elements(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name)
            meth = getattr(ob, name)
            if isinstance(ob, collections.Counter):
                return lambda: ticking(meth())
            return meth

        special: dict[str, Any] = {n: blocked for n in _BLOCKED_ATTRS}  # keys must equal _GUARDED_ATTRS
        special.update({n: padder for n in _PADDERS})
        special.update({n: mutator for n in _MUTATORS})
        special.update({n: regex_method for n in _REGEX_METHODS})
        special.update(
            {
                "__name__": dunder_name,
                "zfill": padder,
                "expandtabs": expandtabs,
                "replace": replace,
                "join": join,
                "translate": translate,
                "to_bytes": to_bytes,
                "format": str_format,
                "format_map": str_format,
                "extend": extend,
                "extendleft": extend,
                "elements": elements,
            }
        )

        assert set(special) == _GUARDED_ATTRS

        def guarded_getattr(ob: Any, name: str) -> Any:
            if name in special:
                return special[name](ob, name)
            return getattr(ob, name)

        def checked_name(name: Any) -> str:
            if type(name) is not str:
                raise TypeError("attribute name must be a string")
            if name[:1] == "_" and name != "__name__":
                raise AttributeError(f"access to attribute {name!r} is not allowed in tool code")
            return name

        def safe_getattr(ob: Any, name: Any, *default: Any) -> Any:
            name = checked_name(name)
            if default:
                try:
                    return guarded_getattr(ob, name)
                except AttributeError:
                    return default[0]
            return guarded_getattr(ob, name)

        def safe_hasattr(ob: Any, name: Any) -> bool:
            try:
                safe_getattr(ob, name)
            except AttributeError:
                return False
            return True

        class _Formatter(string.Formatter):
            """``str.format`` whose field lookups go through the sandbox's getattr/getitem and size checks."""

            def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
                first, rest = _string.formatter_field_name_split(field_name)
                obj = self.get_value(first, args, kwargs)
                for is_attr, key in rest:
                    obj = safe_getattr(obj, key) if is_attr else obj[key]
                return obj, first

            def convert_field(self, value: Any, conversion: str | None) -> Any:
                if conversion is None:
                    return value
                if conversion not in ("s", "r", "a"):
                    raise ValueError(f"Unknown conversion specifier {conversion}")
                return convert(value, ord(conversion))

            def format_field(self, value: Any, format_spec: str) -> str:
                return fmt(value, -1, format_spec)

        formatter = _Formatter()

        # -- builtins -------------------------------------------------------------------------------------
        def safe_range(*args: Any) -> range:
            r = range(*args)
            try:
                n = len(r)
            except OverflowError:
                n = max_size + 1
            check_len(n, "range")
            return r

        def safe_sorted(iterable: Any, /, *, key: Any = None, reverse: bool = False) -> list:
            items = list(iterable)
            if len(items) > 4096:
                charge(len(items) >> 8)
            items.sort(key=key, reverse=reverse)
            return items

        def safe_sum(iterable: Any, /, start: Any = 0) -> Any:
            if isinstance(start, (int, float, complex, decimal.Decimal, fractions.Fraction)):
                return builtins.sum(iterable, start)  # numbers only: sequences would fail on `0 + [...]`
            total = start
            for x in iterable:
                tick()
                total = add(total, x)
            return total

        def safe_pow(base: Any, exp: Any, mod_: Any = None) -> Any:
            if mod_ is None:
                return pow_(base, exp)
            if isinstance(exp, int) and isinstance(mod_, int):
                cost = exp.bit_length() * mod_.bit_length() ** 2
                if cost > 1 << 40:
                    too_big("modular power (bits)", exp.bit_length() * mod_.bit_length())
            return builtins.pow(base, exp, mod_)

        def safe_bytes(source: Any = b"", *args: Any) -> bytes:
            if isinstance(source, int):
                check_len(source, "bytes()")
            return bytes(source, *args)

        def safe_bytearray(source: Any = b"", *args: Any) -> bytearray:
            if isinstance(source, int):
                check_len(source, "bytearray()")
            return bytearray(source, *args)

        safe_bytes.fromhex = bytes.fromhex  # type: ignore[attr-defined]
        safe_bytes.maketrans = bytes.maketrans  # type: ignore[attr-defined]
        safe_bytearray.fromhex = bytearray.fromhex  # type: ignore[attr-defined]
        _type_map = {bytes: safe_bytes, bytearray: safe_bytearray, range: safe_range}

        def safe_type(obj: Any) -> Any:
            """One-argument ``type``; never hands out a metaclass (which could build classes)."""
            t = type(obj)
            if issubclass(t, type):
                return safe_type
            return _type_map.get(t, t)

        def safe_iter(obj: Any) -> Any:
            return iter(obj)

        def ticking(it: Any) -> Any:
            for x in it:
                tick()
                yield x

        # -- modules --------------------------------------------------------------------------------------
        def wrap_iter_fn(fn: Any) -> Any:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return ticking(fn(*args, **kwargs))

            return wrapper

        def comb_guard(fn: Any, estimate: Any) -> Any:
            @functools.wraps(fn)
            def wrapper(*args: Any) -> Any:
                bits = estimate(*args)
                if bits > _COMB_BITS:
                    too_big(f"math.{fn.__name__} result (bits)", int(bits))
                return fn(*args)

            return wrapper

        def _fact_bits(n: Any) -> float:
            return n * math.log2(n) if isinstance(n, int) and n > 2 else 0

        def _comb_bits(n: Any, k: Any = None) -> float:
            if not (isinstance(n, int) and n > 2):
                return 0
            k = n if k is None else k
            if not isinstance(k, int):
                return 0
            return min(k, max(n - k, 0)) * math.log2(n) if k < n else 0

        def _perm_bits(n: Any, k: Any = None) -> float:
            if not (isinstance(n, int) and n > 2):
                return 0
            k = n if k is None else k
            return min(k, n) * math.log2(n) if isinstance(k, int) else 0

        def safe_prod(iterable: Any, /, *, start: Any = 1) -> Any:
            total = start
            for x in iterable:
                tick()
                total = mul(total, x)
            return total

        def safe_lcm(*ints: Any) -> Any:
            if sum(_bits(i) for i in ints) > _INT_BITS:
                too_big("math.lcm result (bits)", sum(_bits(i) for i in ints))
            return math.lcm(*ints)

        def regex_fn(fn: Any) -> Any:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                ensure_armed()
                return fn(*args, **kwargs)

            return wrapper

        # -- re on the regex engine: re's signatures and errors, regex's GIL release and timeout ---------------
        rx = _regex_module()

        def rx_compile(pattern: Any, flags: Any = 0) -> Any:
            if rx is not None and type(pattern) is rx.Pattern:
                if flags:
                    raise ValueError("cannot process flags argument with a compiled pattern")
                return pattern
            if type(pattern) not in (str, bytes) or type(flags) not in (int, re.RegexFlag):
                re.compile(pattern, flags)  # raises re's own error for a bad argument
                raise TypeError("first argument must be string or compiled pattern")
            key = (type(pattern), pattern, flags)
            compiled = _RX_CACHE.get(key)
            if compiled is None:
                ensure_armed()  # both parsers are pure Python: let the clock see a huge pattern
                compiled = _rx_compile(pattern, flags)
            return compiled

        def rx_run(fn: Any, *args: Any) -> Any:
            try:
                return fn(*args, timeout=regex_timeout())
            except TimeoutError as e:
                if str(e) == "regex timed out":
                    abort("timeout", f"time limit of {time_limit:g} s exceeded")
                raise
            except rx.error as e:  # e.g. a bad replacement template: re's exception type
                raise re.error(str(e)) from None

        def rx_iter(it: Any) -> Any:
            try:
                for m in it:
                    tick()
                    yield m
            except TimeoutError as e:
                if str(e) == "regex timed out":
                    abort("timeout", f"time limit of {time_limit:g} s exceeded")
                raise

        def rx_search_like(meth: Any) -> Any:
            def method(string: Any, pos: int = 0, endpos: int = sys.maxsize) -> Any:
                return rx_run(meth, string, pos, endpos)

            return method

        def rx_finditer(meth: Any) -> Any:
            def finditer(string: Any, pos: int = 0, endpos: int = sys.maxsize) -> Any:
                return rx_iter(rx_run(meth, string, pos, endpos))

            return finditer

        def rx_template(compiled: Any, repl: Any, string: Any) -> None:
            """Parse a replacement template with re first, so bad ones raise re's exact errors."""
            if (
                type(repl) in (str, bytes)
                and type(string) is type(repl)
                and ("\\" if type(repl) is str else b"\\") in repl
            ):
                re.compile(compiled.pattern, compiled.flags & re.X).sub(repl, string[:0])

        def rx_sub_like(meth: Any) -> Any:
            def method(repl: Any, string: Any, count: int = 0) -> Any:
                rx_template(meth.__self__, repl, string)
                return rx_run(meth, repl, string, count)

            return method

        def rx_split(meth: Any) -> Any:
            def split(string: Any, maxsplit: int = 0) -> Any:
                return rx_run(meth, string, maxsplit)

            return split

        rx_methods = {
            "match": rx_search_like,
            "search": rx_search_like,
            "fullmatch": rx_search_like,
            "findall": rx_search_like,
            "finditer": rx_finditer,
            "sub": rx_sub_like,
            "subn": rx_sub_like,
            "split": rx_split,
        }

        def re_match(pattern: Any, string: Any, flags: Any = 0) -> Any:
            return rx_run(rx_compile(pattern, flags).match, string)

        def re_search(pattern: Any, string: Any, flags: Any = 0) -> Any:
            return rx_run(rx_compile(pattern, flags).search, string)

        def re_fullmatch(pattern: Any, string: Any, flags: Any = 0) -> Any:
            return rx_run(rx_compile(pattern, flags).fullmatch, string)

        def re_findall(pattern: Any, string: Any, flags: Any = 0) -> Any:
            return rx_run(rx_compile(pattern, flags).findall, string)

        def re_finditer(pattern: Any, string: Any, flags: Any = 0) -> Any:
            return rx_iter(rx_run(rx_compile(pattern, flags).finditer, string))

        def re_sub(pattern: Any, repl: Any, string: Any, count: int = 0, flags: Any = 0) -> Any:
            compiled = rx_compile(pattern, flags)
            rx_template(compiled, repl, string)
            return rx_run(compiled.sub, repl, string, count)

        def re_subn(pattern: Any, repl: Any, string: Any, count: int = 0, flags: Any = 0) -> Any:
            compiled = rx_compile(pattern, flags)
            rx_template(compiled, repl, string)
            return rx_run(compiled.subn, repl, string, count)

        def re_split(pattern: Any, string: Any, maxsplit: int = 0, flags: Any = 0) -> Any:
            return rx_run(rx_compile(pattern, flags).split, string, maxsplit)

        if rx is not None:
            re_overrides: dict[str, Any] = {
                "compile": rx_compile,
                "match": re_match,
                "search": re_search,
                "fullmatch": re_fullmatch,
                "findall": re_findall,
                "finditer": re_finditer,
                "sub": re_sub,
                "subn": re_subn,
                "split": re_split,
                "Pattern": rx.Pattern,
                "Match": rx.Match,
            }
            for fn_name in _REGEX_METHODS:
                functools.update_wrapper(re_overrides[fn_name], getattr(re, fn_name), updated=())
        else:  # pragma: no cover - regex is a dependency; plain re stops only on the main thread
            re_overrides = {n: regex_fn(getattr(re, n)) for n in _REGEX_METHODS}

        def safe_dumps(obj: Any, **kwargs: Any) -> str:
            indent = kwargs.get("indent")
            if (isinstance(indent, int) and indent > 64) or (isinstance(indent, str) and len(indent) > 64):
                too_big("json indent", indent if isinstance(indent, int) else len(indent))
            seps = kwargs.get("separators") or ()
            if any(not isinstance(s, str) or len(s) > 64 for s in seps):
                raise ValueError("json separators must be short strings")
            kwargs.pop("cls", None)
            check_weight(obj, "json.dumps() text")
            return json.dumps(obj, **kwargs)

        overrides: dict[str, dict[str, Any]] = {
            "math": {
                "factorial": comb_guard(math.factorial, _fact_bits),
                "comb": comb_guard(math.comb, _comb_bits),
                "perm": comb_guard(math.perm, _perm_bits),
                "prod": safe_prod,
                "lcm": safe_lcm,
                "pow": math.pow,
            },
            "json": {"dumps": safe_dumps},
            "re": re_overrides,
            "collections": {},
        }
        proxies: dict[str, types.SimpleNamespace] = {}

        def module_proxy(name: str) -> types.SimpleNamespace:
            proxy = proxies.get(name)
            if proxy is not None:
                return proxy
            mod = _MODULES[name]
            if name == "decimal":
                names = _DECIMAL_ALLOW
            else:
                names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
            attrs = {}
            deny = _MODULE_DENY.get(name, ())
            for attr in names:
                if attr.startswith("_") or attr in deny or not hasattr(mod, attr):
                    continue
                value = getattr(mod, attr)
                if isinstance(value, types.ModuleType):
                    continue
                if name == "itertools" and callable(value):
                    wrapped = wrap_iter_fn(value)
                    if attr == "chain":
                        wrapped.from_iterable = wrap_iter_fn(itertools.chain.from_iterable)  # type: ignore[attr-defined]
                    value = wrapped
                attrs[attr] = value
            attrs.update(overrides.get(name, {}))
            proxy = proxies[name] = types.SimpleNamespace(**attrs)
            return proxy

        def safe_import(name: str, _g: Any = None, _l: Any = None, fromlist: Any = (), level: int = 0) -> Any:
            if level != 0 or name not in _MODULES:
                allowed = ", ".join(_ALLOWED_MODULES)
                raise ImportError(f"import of {name!r} is not allowed in tool code (allowed: {allowed})")
            return module_proxy(name)

        env: dict[str, Any] = {n: getattr(builtins, n) for n in _PLAIN_BUILTINS + _EXCEPTIONS}
        env.update(
            {
                "None": None,
                "True": True,
                "False": False,
                "Ellipsis": Ellipsis,
                "NotImplemented": NotImplemented,
                "range": safe_range,
                "sorted": safe_sorted,
                "sum": safe_sum,
                "pow": safe_pow,
                "repr": safe_repr,
                "ascii": safe_ascii,
                "format": safe_format,
                "getattr": safe_getattr,
                "hasattr": safe_hasattr,
                "type": safe_type,
                "iter": safe_iter,
                "bytes": safe_bytes,
                "bytearray": safe_bytearray,
                "__import__": safe_import,
                # guards the compiled code calls
                "_tick_": tick,
                "_getattr_": guarded_getattr,
                "_getitem_": operator.getitem,
                "_write_": write,
                "_getiter_": iter,
                "_iter_unpack_sequence_": lambda it, spec, _getiter_: (
                    guarded_unpack_sequence(x, spec, _getiter_) for x in it
                ),
                "_unpack_sequence_": guarded_unpack_sequence,
                "_apply_": lambda f, *a, **k: f(*a, **k),
                "_print_": _NullPrinter,
                "_mul_": mul,
                "_pow_": pow_,
                "_lshift_": lshift,
                "_add_": add,
                "_mod_": mod,
                "_iadd_": iadd,
                "_imul_": imul,
                "_augitem_": augitem,
                "_setslice_": setslice,
                "_fmt_": fmt,
                "_str_call_": str_call,
            }
        )
        self.builtins = env
        self.tick, self.charge, self.begin, self.end, self.abort = tick, charge, begin, end, abort


_INPLACE_NATIVE = {
    "-": operator.isub,
    "/": operator.itruediv,
    "//": operator.ifloordiv,
    ">>": operator.irshift,
    "|": operator.ior,
    "^": operator.ixor,
    "&": operator.iand,
    "@": operator.imatmul,
}


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


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- Toolbox


class Toolbox:
    """Compiled, isolated tools: ``call(name, arguments, state)`` runs one under the budget and guards.

    Every distinct source text is exec'd once into a fresh globals dict with this Toolbox's own builtins, so
    nothing one Toolbox's code does is visible to another.  Module-level containers are read-only at run time
    so a call can influence later calls only through ``state``.  Not thread-safe: use one Toolbox per thread.
    """

    __slots__ = ("_begin", "_end", "_rt", "_tools", "max_output_chars", "names", "step_budget", "time_limit")

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
        tools: dict[str, tuple[Any, dict[str, Any]]] = {}
        for name, source in sources.items():
            g = modules.get(source)
            if g is None:
                try:
                    code = compile_tool_source(source)
                except ToolSourceError as e:
                    raise ToolSourceError(f"tool {name!r}: {e}") from None
                g = {"__builtins__": rt.builtins, "__name__": "tool", "state": None}
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
            tools[name] = (fn, g)
        for g in modules.values():
            _collect_frozen({k: v for k, v in g.items() if k not in ("__builtins__", "state")}, rt.frozen)
        self._tools = tools
        self.names: tuple[str, ...] = tuple(tools)

    def call(self, name: str, arguments: dict, state: dict | None = None) -> ToolOutcome:
        """Run tool ``name`` with keyword ``arguments``; ``state`` is bound as the tool module's ``state``.

        Never raises for anything the tool code does; an unknown ``name`` raises KeyError.
        """
        fn, g = self._tools[name]
        g["state"] = state
        self._begin()
        try:
            try:
                value = fn(**arguments)
            finally:  # a watchdog abort can land until end() returns: keep it inside the try
                reason = self._end()
        except BaseException as e:  # tool code may raise anything
            return self._failure(name, e, self._end())
        if reason is not None:
            return self._failure(name, None, reason)
        try:
            return ToolOutcome(True, serialize_output(value, self.max_output_chars), None)
        except BaseException as e:  # e.g. a RecursionError inside str()
            return self._failure(name, e, None)

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
            limit = 4 * self.max_output_chars
            small = _weight(exc.args, limit) <= limit
            message = (str(exc) if small else _REPR.repr(exc.args)) if exc.args else ""
        except BaseException:
            message = ""
        message = " ".join(message.split())
        head = f"Error: {type(exc).__name__}"
        if kind == "bad_arguments":
            head = f"Error: bad arguments for tool '{name}': TypeError"
        text = f"{head}: {message}" if message else head
        return ToolOutcome(False, _truncate(text, self.max_output_chars), kind)
