"""The stdlib modules tool code may import, as read-only proxies with guarded versions of their costly functions.

Why a module: ``import`` in tool code reaches only this allow-list; each proxy copies a module's public names
minus a deny-list (file I/O, class factories, unticked random loops), wraps itertools so it ticks, and puts the
size-checked ``math``, ``json.dumps`` and the regex-backed ``re`` (:mod:`~toolgym.sandbox.regex_shim`) in
place of the originals.
"""

from __future__ import annotations
import __future__

# datetime.strptime and time.strptime import ``_strptime`` on first use, from C, through the calling frame's
# ``__import__``: in tool code that is the guarded import, which refuses a module off the allow-list. Loaded here,
# the first strptime of a fresh process finds it already imported.
import _strptime  # noqa: F401
import abc
import base64
import bisect
import calendar
import cmath
import collections
import collections.abc
import copy
import dataclasses
import datetime
import decimal
import difflib
import enum
import fractions
import functools
import hashlib
import heapq
import itertools
import json
import math
import numbers
import operator
import random
import re
import statistics
import string
import textwrap
import time
import types
import typing
import unicodedata
import uuid
import zoneinfo
from typing import Any

from toolgym.sandbox.attrs import _ALLOWED_MODULES, _OPTIONAL_MODULES
from toolgym.sandbox.clock import Clock
from toolgym.sandbox.guards import _INT_BITS, SizeGuards, _bits, ticking
from toolgym.sandbox.owned import is_own_class, mark_own
from toolgym.sandbox.policy import import_refused
from toolgym.sandbox.precision import make_mpmath

__all__ = ["EpisodeRandom", "make_import"]

_COMB_BITS = 100_000  # math.factorial/comb/perm are slow per bit
_MODULE_DENY = {
    "json": {"dump", "load", "JSONEncoder", "JSONDecoder"},
    "re": {"template", "purge", "Scanner", "TEMPLATE", "T"},
    "string": {"Formatter"},
    "functools": {
        "singledispatch",
        "singledispatchmethod",
    },
    "collections": {"UserDict", "UserList", "UserString"},
    "statistics": {"NormalDist"},  # samples() draws random numbers in an unticked loop
    "datetime": {"datetime_CAPI"},
    # typing: get_type_hints and ForwardRef evaluate annotation text (with the real builtins for a class);
    # reveal_type writes to stderr; clear_overloads empties a process-wide registry.
    # no_type_check and dataclass_transform set attributes on whatever they are given (a stdlib class too).
    "typing": {"get_type_hints", "ForwardRef", "reveal_type", "clear_overloads", "no_type_check"}
    | {"no_type_check_decorator", "dataclass_transform"},
    "dataclasses": set(),
    # metaclasses (calling one builds a class from any namespace), process-wide registration
    "enum": {"EnumType", "EnumMeta", "global_enum", "global_flag_repr", "global_enum_repr", "global_str"}
    | {"pickle_by_global_name", "pickle_by_enum_name"},
    "abc": {"ABCMeta", "update_abstractmethods"},
    # printing, process-wide settings, unbounded widths and the locale-switching classes
    "calendar": {"setfirstweekday", "prmonth", "prcal", "TextCalendar", "HTMLCalendar", "LocaleTextCalendar"}
    | {"LocaleHTMLCalendar", "different_locale", "format", "formatstring", "main", "week"},
    "zoneinfo": {"reset_tzpath"},  # would point tz lookups at any directory, process-wide
    "textwrap": {"TextWrapper"},
    "difflib": {"HtmlDiff", "diff_bytes"},
    "base64": {"encode", "decode"},  # file objects
}
# Modules proxied from an explicit list of names (the rest of the module is I/O, process state or unbounded).
_MODULE_ALLOW = {
    "time": set(
        "time time_ns monotonic monotonic_ns perf_counter perf_counter_ns process_time process_time_ns thread_time "
        "thread_time_ns gmtime localtime mktime asctime ctime strftime strptime struct_time timezone altzone "
        "daylight tzname get_clock_info".split()
    ),
    "uuid": {"UUID", "uuid3", "uuid5", "NAMESPACE_DNS", "NAMESPACE_OID", "NAMESPACE_URL", "NAMESPACE_X500"}
    | {"RESERVED_FUTURE", "RESERVED_MICROSOFT", "RESERVED_NCS", "RFC_4122", "SafeUUID"},
    "hashlib": {"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "blake2b", "blake2s", "sha3_224"}
    | {"sha3_256", "sha3_384", "sha3_512", "algorithms_guaranteed", "algorithms_available"},
    "random": set(),  # built from the Toolbox's EpisodeRandom
    "__future__": {"annotations"},
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
_MODULES: dict[str, types.ModuleType] = {
    m.__name__: m
    for m in (
        typing,
        dataclasses,
        enum,
        abc,
        copy,
        json,
        re,
        math,
        cmath,
        decimal,
        fractions,
        numbers,
        datetime,
        calendar,
        zoneinfo,
        time,
        string,
        textwrap,
        difflib,
        unicodedata,
        collections,
        collections.abc,
        itertools,
        functools,
        operator,
        heapq,
        bisect,
        statistics,
        hashlib,
        base64,
        uuid,
        random,
        __future__,
    )
}
assert set(_MODULES) == {*_ALLOWED_MODULES, "__future__"}
_SMALL_ARG = 256  # calendar widths and line counts


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


def _armed(fn: Any, ensure_armed: Any) -> Any:
    """``fn``, with the call's clock started first: pure-Python library code does not tick."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ensure_armed()
        return fn(*args, **kwargs)

    return wrapper


def _armed_class(cls: type, methods: tuple[str, ...], ensure_armed: Any) -> type:
    """A subclass of ``cls`` whose ``methods`` start the call's clock first (``difflib.SequenceMatcher``)."""
    ns = {m: _armed(getattr(cls, m), ensure_armed) for m in methods}
    return type(cls.__name__, (cls,), {"__module__": cls.__module__, "__qualname__": cls.__qualname__, **ns})


class EpisodeRandom:
    """The ``random`` (and ``uuid4``) of one Toolbox: one generator, reseeded for every episode.

    Why: tool code must not touch the process's global RNG (other envs share it, and its seed is nobody's), and
    the same episode seed must give the same draws. ``reseed(seed)`` reseeds the shared generator and every
    ``random.Random()`` the tool's module code created at load (explicit seeds back to their own seed, unseeded
    ones to one derived from the episode's), so module-level generators restart with each episode too.
    """

    def __init__(self, sizes: SizeGuards, clock: Clock) -> None:
        self._sizes, self._clock = sizes, clock
        self.loading = True  # module code is running: generators made now are reseeded per episode
        self.used = False  # tool code imported random or uuid (else reseed has nothing to do)
        self.seed = 0
        self._module_level: list[tuple[random.Random, Any]] = []
        self.shared: random.Random | None = None  # built at first use (most tools never import random)
        self.Random: type | None = None

    def _build(self) -> random.Random:
        sizes, clock = self._sizes, self._clock
        check_len, check_frozen, charge, ensure_armed = (
            sizes.check_len,
            sizes.check_frozen,
            clock.charge,
            clock.ensure_armed,
        )
        module_level = self._module_level
        base = random.Random
        episode = self

        class Random(base):
            """``random.Random`` whose unseeded instances (and ``seed()``) draw from the episode's generator."""

            def __init__(self, x: Any = None) -> None:
                x0 = x
                if x is None:
                    x = shared.getrandbits(64)
                base.__init__(self, x)
                if episode.loading:
                    module_level.append((self, x0))

            def seed(self, a: Any = None, version: int = 2) -> None:
                if a is None:
                    a = episode.seed if self is shared else shared.getrandbits(64)
                base.seed(self, a, version)

            def getrandbits(self, k: int) -> int:
                if isinstance(k, int):
                    check_len(k >> 3, "getrandbits() result (bytes)")
                return base.getrandbits(self, k)

            def randbytes(self, n: int) -> bytes:
                if isinstance(n, int):
                    check_len(n, "randbytes()")
                return base.randbytes(self, n)

            def choices(self, population: Any, weights: Any = None, *, cum_weights: Any = None, k: int = 1) -> list:
                if isinstance(k, int):
                    check_len(k, "choices() result")
                ensure_armed()
                return base.choices(self, population, weights, cum_weights=cum_weights, k=k)

            def sample(self, population: Any, k: int, *, counts: Any = None) -> list:
                if isinstance(k, int):
                    check_len(k, "sample() result")
                ensure_armed()
                return base.sample(self, population, k, counts=counts)

            def shuffle(self, x: Any) -> None:
                check_frozen(x)
                ensure_armed()
                if hasattr(x, "__len__") and len(x) > 4096:
                    charge(len(x) >> 4)
                base.shuffle(self, x)

        Random.__module__ = "random"
        shared = base.__new__(Random)
        base.__init__(shared, self.seed)
        self.shared, self.Random, self.used = shared, Random, True
        return shared

    def reseed(self, seed: int) -> None:
        """Start a new episode's draws from ``seed``."""
        self.seed = seed
        if self.shared is None:
            return
        random.Random.seed(self.shared, seed)
        for i, (r, x0) in enumerate(self._module_level):
            random.Random.seed(r, f"{seed}:{i}" if x0 is None else x0)

    def module(self) -> dict[str, Any]:
        """The names of the ``random`` proxy: the shared generator's methods and the seeded ``Random`` class."""
        shared = self.shared or self._build()
        names = [n for n in random.__all__ if n not in ("Random", "SystemRandom") and hasattr(shared, n)]
        return {"Random": self.Random, **{n: getattr(shared, n) for n in names}}  # type: ignore[dict-item]

    def uuid4(self) -> uuid.UUID:
        """A version-4 UUID from the episode's generator."""
        shared = self.shared or self._build()
        return uuid.UUID(int=random.Random.getrandbits(shared, 128), version=4)


class _StandIn:
    """What an import outside the allow-list binds when the importing code never reads the name (the compile
    policy refuses it otherwise): every use raises the error the import would have had. Names imported from it
    (``from subprocess import run``) are stand-ins too."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr: str) -> Any:
        if attr[:1] == "_":
            raise AttributeError(attr)
        return _StandIn(self._name)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise ImportError(import_refused(self._name))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ImportError(import_refused(self._name))

    def __iter__(self) -> Any:
        raise ImportError(import_refused(self._name))

    def __getitem__(self, key: Any) -> Any:
        raise ImportError(import_refused(self._name))

    def __repr__(self) -> str:
        return f"<module {self._name!r} (not available in tool code)>"


def make_import(
    sizes: SizeGuards,
    clock: Clock,
    re_functions: dict[str, Any],
    attrs: dict[str, Any],
    rand: EpisodeRandom,
    env: dict[str, Any],
    local: dict[str, Any],
    getcontext: Any,
) -> Any:
    """``__import__`` for tool code: a proxy (built once per Toolbox) of an allow-listed module, one of the
    Toolbox's own modules, or (for an import the code never reads) a :class:`_StandIn`.

    ``attrs`` holds the Toolbox's attribute guards (``getattr``, ``_attr_getter_``), which ``operator``'s
    attrgetter/methodcaller go through; ``rand`` is its :class:`EpisodeRandom`; ``env`` its builtins dict (a
    function whose globals use it is the tool's own); ``local`` maps the Toolbox's own module names to the
    functions that load them (each runs its module's code once, at its first import); ``getcontext`` is
    ``decimal.getcontext`` for tool code (the Toolbox's own bounded context, see
    :mod:`~toolgym.sandbox.precision`).
    """
    too_big, check_weight, mul, check_len, check_frozen = (
        sizes.too_big,
        sizes.check_weight,
        sizes.mul,
        sizes.check_len,
        sizes.check_frozen,
    )
    tick, charge, ensure_armed = clock.tick, clock.charge, clock.ensure_armed
    safe_getattr, getter = attrs["getattr"], attrs["_attr_getter_"]

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

    def small_args(fn: Any, what: str, *names: str) -> Any:
        """``fn`` refusing large ints for its width/count arguments ``names`` (by keyword or position)."""
        import inspect  # trusted code; only at proxy build

        params = list(inspect.signature(fn).parameters)
        where = {n: params.index(n) for n in names}

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for n, i in where.items():
                v = kwargs.get(n, args[i] if i < len(args) else None)
                if isinstance(v, int) and abs(v) > _SMALL_ARG:
                    too_big(f"{what} {n}", abs(v))
            ensure_armed()
            return fn(*args, **kwargs)

        return wrapper

    def text_size(text: Any, *extra: Any) -> int:
        return (len(text) if isinstance(text, str) else 0) + sum(len(e) for e in extra if isinstance(e, str))

    def safe_wrap(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(text: str, width: int = 70, **kwargs: Any) -> Any:
            indent = max(text_size(kwargs.get("initial_indent", "")), text_size(kwargs.get("subsequent_indent", "")))
            indent = max(indent, text_size(kwargs.get("placeholder", "")))
            tabsize = kwargs.get("tabsize", 8)
            if isinstance(tabsize, int) and tabsize > 64:
                too_big(f"textwrap.{fn.__name__}() tabsize", tabsize)
            n = text_size(text)
            if isinstance(width, int) and indent:
                lines = n // max(1, width - indent) + 1
                check_len(n + lines * (indent + 1), f"textwrap.{fn.__name__}() result")
            ensure_armed()
            return fn(text, width, **kwargs)

        return wrapper

    def safe_indent(text: str, prefix: str, predicate: Any = None) -> str:
        check_len(text_size(text) + (text_size(text) + 1) * text_size(prefix), "textwrap.indent() result")
        ensure_armed()
        return textwrap.indent(text, prefix, predicate)

    def template_class() -> type:
        """``string.Template`` whose substitutions are priced before they run (``'$x' * n`` with a long ``x``)."""
        weight = sizes.weight

        def guarded(name: str) -> Any:
            method = getattr(string.Template, name)

            def substitute(self: Any, mapping: Any = None, /, **kws: Any) -> str:
                values = [*(mapping.values() if isinstance(mapping, dict) else ()), *kws.values()]
                longest = max((weight(v) for v in values), default=0)
                fields = self.template.count(self.delimiter) if isinstance(self.template, str) else 0
                check_len(text_size(self.template) + fields * longest, f"Template.{name}() result")
                ensure_armed()
                return method(self, mapping, **kws) if mapping is not None else method(self, **kws)

            return substitute

        ns = {n: guarded(n) for n in ("substitute", "safe_substitute")}
        return type("Template", (string.Template,), {"__module__": "string", **ns})

    def safe_normalize(form: str, unistr: str) -> str:
        check_len(text_size(unistr) * 4, "unicodedata.normalize() result")
        return unicodedata.normalize(form, unistr)

    def safe_strftime(fmt: str, *args: Any) -> str:
        check_len(text_size(fmt) * 16, "time.strftime() result")
        return time.strftime(fmt, *args)

    def safe_new(name: str, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(name, str) or "shake" in name.lower():
            raise ValueError(f"hash {name!r} is not available in tool code")
        return hashlib.new(name, *args, **kwargs)

    def safe_pbkdf2(hash_name: str, password: Any, salt: Any, iterations: int, dklen: Any = None) -> bytes:
        if not isinstance(iterations, int) or iterations > 200_000:
            too_big("pbkdf2_hmac iterations", iterations if isinstance(iterations, int) else 0)
        if isinstance(dklen, int) and dklen > 1024:
            too_big("pbkdf2_hmac dklen", dklen)
        charge(iterations >> 6)
        return hashlib.pbkdf2_hmac(hash_name, password, salt, iterations, dklen)

    def attrgetter(attr: Any, *more: Any) -> Any:
        paths = [a.split(".") if isinstance(a, str) else a for a in (attr, *more)]
        for path in paths:
            if not isinstance(path, list):
                raise TypeError("attribute name must be a string")
            for part in path:
                getter(part)  # refuses dunder and frame names now, not at the first call

        def get_one(ob: Any, path: list[str]) -> Any:
            for part in path:
                ob = safe_getattr(ob, part)
            return ob

        if len(paths) == 1:
            (path,) = paths
            return lambda ob: get_one(ob, path)
        return lambda ob: tuple(get_one(ob, p) for p in paths)

    def methodcaller(name: Any, /, *args: Any, **kwargs: Any) -> Any:
        getter(name)
        return lambda ob: safe_getattr(ob, name)(*args, **kwargs)

    def mutating(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(target: Any, *args: Any, **kwargs: Any) -> Any:
            check_frozen(target)
            return fn(target, *args, **kwargs)

        return wrapper

    def safe_heapify(heap: Any) -> None:
        check_frozen(heap)
        if isinstance(heap, list) and len(heap) > 4096:
            charge(len(heap) >> 8)
        heapq.heapify(heap)

    def safe_setitem(ob: Any, key: Any, value: Any) -> None:
        sizes.write(ob)[key] = value

    def safe_delitem(ob: Any, key: Any) -> None:
        del sizes.write(ob)[key]

    def own_class(cls: Any) -> Any:
        if not is_own_class(cls):
            raise TypeError("this decorator applies to the tool's own classes only")
        return cls

    def safe_total_ordering(cls: Any) -> Any:
        return functools.total_ordering(own_class(cls))

    def safe_dataclass(cls: Any = None, /, **kwargs: Any) -> Any:
        """``@dataclass`` rewrites the class it is given: the tool's own classes only, not ``string.Template``."""
        if cls is None:
            return lambda c: safe_dataclass(c, **kwargs)
        return mark_own(dataclasses.dataclass(own_class(cls), **kwargs))

    def tool_object(ob: Any) -> bool:
        if isinstance(ob, type):
            return is_own_class(ob)
        return isinstance(ob, types.FunctionType) and ob.__globals__.get("__builtins__") is env

    def safe_final(f: Any) -> Any:
        return typing.final(f) if tool_object(f) else f  # a marker attribute: never on the stdlib's objects

    def safe_runtime_checkable(cls: Any) -> Any:
        return typing.runtime_checkable(own_class(cls))

    def safe_quantiles(data: Any, *, n: int = 4, method: str = "exclusive") -> list:
        if isinstance(n, int):
            check_len(n, "statistics.quantiles() result")
        ensure_armed()
        return statistics.quantiles(data, n=n, method=method)

    def diff_guard(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for key in ("lineterm", "fromfile", "tofile", "fromfiledate", "tofiledate"):
                if text_size(kwargs.get(key)) > 256:
                    too_big(f"difflib.{fn.__name__}() {key}", text_size(kwargs.get(key)))
            if len(args) > 2 and any(text_size(a) > 256 for a in args[2:]):
                too_big(f"difflib.{fn.__name__}() header", max(text_size(a) for a in args[2:]))
            ensure_armed()
            return fn(*args, **kwargs)

        return wrapper

    def safe_update_wrapper(wrapper: Any, wrapped: Any, assigned: Any = (), updated: Any = ()) -> Any:
        if not isinstance(wrapper, types.FunctionType) or wrapper.__globals__.get("__builtins__") is not env:
            raise TypeError("functools.update_wrapper() wraps the tool's own functions only")
        return functools.update_wrapper(wrapper, wrapped)  # the default attribute lists only

    def safe_wraps(wrapped: Any, assigned: Any = (), updated: Any = ()) -> Any:
        return lambda wrapper: safe_update_wrapper(wrapper, wrapped)

    def safe_make_dataclass(cls_name: str, fields: Any, *, bases: Any = (), namespace: Any = None, **kw: Any) -> Any:
        if namespace is not None:
            if not isinstance(namespace, dict) or any(not isinstance(k, str) or k[:2] == "__" for k in namespace):
                raise TypeError("make_dataclass() namespace may not define dunder names in tool code")
        cls = dataclasses.make_dataclass(cls_name, fields, bases=tuple(bases), namespace=namespace, **kw)
        if issubclass(cls, type):
            raise TypeError("metaclasses (subclasses of type) are not allowed in tool code")
        return mark_own(cls)  # its namespace holds no dunders: no protocol methods of the tool's

    def inplace() -> dict[str, Any]:
        ops = {n: mutating(getattr(operator, n)) for n in operator.__all__ if n.startswith("i") and n != "index"}
        for n in ("is_", "is_not", "invert"):
            ops.pop(n, None)
        return ops

    # Built at a module's first import: most tools import two or three modules, and a Toolbox is built per source.
    overrides: dict[str, Any] = {
        "math": lambda: {
            "factorial": comb_guard(math.factorial, _fact_bits),
            "comb": comb_guard(math.comb, _comb_bits),
            "perm": comb_guard(math.perm, _perm_bits),
            "prod": safe_prod,
            "lcm": safe_lcm,
            "pow": math.pow,
        },
        "json": lambda: {"dumps": safe_dumps},
        "decimal": lambda: {"getcontext": getcontext},
        "re": lambda: re_functions,
        "collections": lambda: {},
        "string": lambda: {"Template": template_class()},
        "functools": lambda: {
            "total_ordering": safe_total_ordering,
            "update_wrapper": safe_update_wrapper,
            "wraps": safe_wraps,
        },
        "typing": lambda: {"final": safe_final, "runtime_checkable": safe_runtime_checkable},
        "dataclasses": lambda: {
            "dataclass": safe_dataclass,
            "make_dataclass": safe_make_dataclass,
            **{n: _armed(getattr(dataclasses, n), ensure_armed) for n in ("asdict", "astuple", "replace")},
        },
        # pure-Python library code that never ticks: start the call's clock before it runs
        "copy": lambda: {n: _armed(getattr(copy, n), ensure_armed) for n in ("copy", "deepcopy")},
        "statistics": lambda: (
            {
                n: _armed(getattr(statistics, n), ensure_armed)
                for n in statistics.__all__
                if n[:1].islower() and callable(getattr(statistics, n))
            }
            | {"quantiles": safe_quantiles}
        ),
        "calendar": lambda: {
            "month": small_args(calendar.month, "calendar.month()", "w", "l"),
            "calendar": small_args(calendar.calendar, "calendar.calendar()", "w", "l", "c", "m"),
            "weekheader": small_args(calendar.weekheader, "calendar.weekheader()", "width"),
        },
        "zoneinfo": lambda: {"available_timezones": _armed(zoneinfo.available_timezones, ensure_armed)},
        "time": lambda: {"strftime": safe_strftime},
        "textwrap": lambda: {
            "wrap": safe_wrap(textwrap.wrap),
            "fill": safe_wrap(textwrap.fill),
            "shorten": safe_wrap(textwrap.shorten),
            "dedent": _armed(textwrap.dedent, ensure_armed),
            "indent": safe_indent,
        },
        "difflib": lambda: {
            "SequenceMatcher": _armed_class(
                difflib.SequenceMatcher,
                ("set_seqs", "set_seq2", "find_longest_match", "get_matching_blocks", "get_opcodes", "ratio"),
                ensure_armed,
            ),
            "Differ": _armed_class(difflib.Differ, ("compare",), ensure_armed),
            **{n: _armed(getattr(difflib, n), ensure_armed) for n in ("get_close_matches", "ndiff", "restore")},
            "unified_diff": diff_guard(difflib.unified_diff),
            "context_diff": diff_guard(difflib.context_diff),
        },
        "unicodedata": lambda: {"normalize": safe_normalize},
        "operator": lambda: {
            "mul": sizes.mul,
            "pow": sizes.pow_,
            "add": sizes.add,
            "concat": sizes.add,
            "lshift": sizes.builtins["_lshift_"],
            "mod": sizes.builtins["_mod_"],
            **inplace(),
            "iadd": mutating(sizes.builtins["_iadd_"]),
            "iconcat": mutating(sizes.builtins["_iadd_"]),
            "imul": mutating(sizes.builtins["_imul_"]),
            "ipow": mutating(sizes.pow_),
            "ilshift": mutating(sizes.builtins["_lshift_"]),
            "imod": mutating(sizes.builtins["_mod_"]),
            "setitem": safe_setitem,
            "delitem": safe_delitem,
            "attrgetter": attrgetter,
            "methodcaller": methodcaller,
        },
        "heapq": lambda: {
            "heapify": safe_heapify,
            **{n: mutating(getattr(heapq, n)) for n in ("heappush", "heappop", "heapreplace", "heappushpop")},
        },
        "bisect": lambda: {n: mutating(getattr(bisect, n)) for n in ("insort", "insort_left", "insort_right")},
        "hashlib": lambda: {"new": safe_new, "pbkdf2_hmac": safe_pbkdf2},
        "uuid": lambda: {"uuid4": rand.uuid4},
    }
    proxies: dict[str, types.SimpleNamespace] = {}

    def module_proxy(name: str) -> types.SimpleNamespace:
        proxy = proxies.get(name)
        if proxy is not None:
            return proxy
        mod = _MODULES[name]
        if name == "decimal":
            names = _DECIMAL_ALLOW
        elif name in _MODULE_ALLOW:
            names = _MODULE_ALLOW[name]
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
        make = overrides.get(name)
        if make is not None:
            attrs.update(make())
        if name == "random":
            attrs.update(rand.module())
        elif name == "collections":
            attrs["abc"] = module_proxy("collections.abc")
        proxy = proxies[name] = types.SimpleNamespace(**attrs)
        return proxy

    def safe_import(name: str, _g: Any = None, _l: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level != 0:
            raise ImportError(import_refused(name))
        if name in local:
            if "." in name and not fromlist:  # `import pkg.mod` binds `pkg`, whose attributes lead to `mod`
                rest = name.split(".")[1:]
                top = node = types.SimpleNamespace()
                for part in rest[:-1]:
                    setattr(node, part, types.SimpleNamespace())
                    node = getattr(node, part)
                setattr(node, rest[-1], local[name]())
                return top
            return local[name]()
        if name == "mpmath" and "mpmath" in _OPTIONAL_MODULES:
            proxy = proxies.get(name)
            if proxy is None:
                proxy = proxies[name] = make_mpmath(ensure_armed)  # type: ignore[assignment]
            return proxy
        if name not in _MODULES:
            return _StandIn(name)  # the compile policy let it through: the code never reads the name
        if "." in name and not fromlist:
            return module_proxy(name.partition(".")[0])  # `import collections.abc` binds `collections`
        return module_proxy(name)

    return safe_import
