"""The stdlib modules tool code may import, as read-only proxies with guarded versions of their costly functions.

Why a module: ``import`` in tool code reaches only this allow-list; each proxy copies a module's public names
minus a deny-list (file I/O, class factories, unticked random loops), wraps itertools so it ticks, and puts the
size-checked ``math``, ``json.dumps`` and the regex-backed ``re`` (:mod:`~toolgym.sandbox.regex_shim`) in
place of the originals.
"""

from __future__ import annotations

import collections
import copy
import datetime
import decimal
import fractions
import functools
import itertools
import json
import math
import re
import statistics
import string
import types
from typing import Any

from toolgym.sandbox.clock import Clock
from toolgym.sandbox.guards import _INT_BITS, SizeGuards, _bits, ticking

__all__ = ["make_import"]

_COMB_BITS = 100_000  # math.factorial/comb/perm are slow per bit
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


def make_import(sizes: SizeGuards, clock: Clock, re_functions: dict[str, Any]) -> Any:
    """``__import__`` for tool code: a proxy (built once per Toolbox) of an allow-listed module, else ImportError."""
    too_big, check_weight, mul = sizes.too_big, sizes.check_weight, sizes.mul
    tick = clock.tick

    def wrap_iter_fn(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return ticking(fn(*args, **kwargs), tick)

        return wrapper

    def comb_guard(fn: Any, estimate: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any) -> Any:
            bits = estimate(*args)
            if bits > _COMB_BITS:
                too_big(f"math.{fn.__name__} result (bits)", int(bits))
            return fn(*args)

        return wrapper

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
        "re": re_functions,
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

    return safe_import
