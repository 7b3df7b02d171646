"""Tool code's ``re`` on the ``regex`` engine: re's signatures, errors and reading of patterns, regex's timeout.

Why a module: re's matcher holds the GIL and polls only the main thread's signals, so one backtracking pattern
on a worker thread froze the whole process; regex releases the GIL and takes ``timeout=``. This module
translates patterns so regex reads them as re does (:func:`_rx_source`), compiles them with re's checks
(:func:`_rx_compile`), and builds the ``re`` functions and Pattern methods tool code sees, each run with the
call's remaining time (:func:`make_re`).
"""

from __future__ import annotations

import functools
import re
import sys
from typing import Any

from toolgym.sandbox.attrs import _REGEX_METHODS
from toolgym.sandbox.clock import Clock

__all__ = ["make_re"]


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


def make_re(clock: Clock, time_limit: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``re`` module's overrides for tool code and the Pattern method wrappers, on ``clock``'s time.

    Returns ``(functions, methods)``: ``functions`` replace the names of re's proxy (``compile``, ``match``,
    ..., ``Pattern``, ``Match``); ``methods[name](bound_method)`` wraps a compiled pattern's method.
    """
    tick, abort, ensure_armed, regex_timeout = clock.tick, clock.abort, clock.ensure_armed, clock.regex_timeout

    def regex_fn(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ensure_armed()
            return fn(*args, **kwargs)

        return wrapper

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
        if type(repl) in (str, bytes) and type(string) is type(repl) and ("\\" if type(repl) is str else b"\\") in repl:
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
    return re_overrides, rx_methods
