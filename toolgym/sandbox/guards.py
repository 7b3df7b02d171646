"""Runtime guards: the helpers compiled tool code calls instead of operations whose cost follows from their
arguments, the guarded ``getattr``, and the guarded builtins.

Why a module: RestrictedPython's rewrite (:mod:`~toolgym.sandbox.policy`) sends ``* ** << + %``, f-string
fields, ``str()``, slice and augmented assignment, and the attribute names of :mod:`~toolgym.sandbox.attrs`
here, so that what one C call can do is bounded by ``max_size`` before it starts. Each factory returns closures
over one Toolbox's limits and clock: the hot path reads locals and cells, never attributes.
"""

from __future__ import annotations

import _string  # C helpers behind str.format's field parsing
import builtins
import collections
import decimal
import fractions
import operator
import re
import string
from typing import Any, NamedTuple

from toolgym.sandbox.attrs import (
    _BLOCKED_ATTRS,
    _GUARDED_ATTRS,
    _MPMATH_ATTRS,
    _MUTATORS,
    _OWN_MARK,
    _PADDERS,
    _PROTOCOL_METHODS,
    _REGEX_METHODS,
)
from toolgym.sandbox.clock import Clock
from toolgym.sandbox.output import _SCALARS, _weight
from toolgym.sandbox.regex_shim import _regex_module

__all__ = ["SizeGuards", "make_builtin_guards", "make_getattr", "make_size_guards", "ticking"]

_INT_BITS = 1 << 20  # largest int result (bits) a guarded * ** << may produce: C bignum ops stay ~ms
_SIZED = (str, bytes, bytearray, list, tuple, collections.deque)
_STR_TYPES = (str, bytes, bytearray)
_LIST_TYPES = (list, bytearray, collections.deque)


class Settings:
    """Base of the sandbox's own objects whose attributes tool code may set (each a bounded property, e.g.
    :mod:`~toolgym.sandbox.precision`'s ``mpmath.mp.dps``)."""

    __slots__ = ()


_WRITABLE = (dict, list, bytearray, collections.deque, Settings)
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


def _bits(x: Any) -> int:
    if isinstance(x, int):
        return x.bit_length()
    if isinstance(x, fractions.Fraction):
        return max(x.numerator.bit_length(), x.denominator.bit_length())
    return 0


def ticking(it: Any, tick: Any) -> Any:
    """``it``, with one step of the budget per item (for iterators that run in C, e.g. itertools)."""
    for x in it:
        tick()
        yield x


# ------------------------------------------------------------------------------------------- size guards


class SizeGuards(NamedTuple):
    """The size checks other guards build on, and ``builtins``: the names compiled tool code calls."""

    too_big: Any  # ``too_big(what, size)``: abort the call as over the size limit
    check_len: Any  # ``check_len(n, what)``: refuse a result of ``n`` items, charge a big one
    check_weight: Any  # ``check_weight(value, what)``: the same for ``str(value)``'s estimated length
    check_frozen: Any  # refuse to mutate module-level data
    mul: Any
    pow_: Any
    add: Any
    convert: Any  # ``convert(value, ord('s' | 'r' | 'a'))``: a checked ``!s``/``!r``/``!a``
    fmt: Any  # ``fmt(value, conversion, spec)``: a checked f-string field
    weight: Any  # ``weight(value)``: the estimated ``len(str(value))``, capped just past ``max_size``
    write: Any  # ``write(ob)``: ``ob`` if tool code may assign its items or attributes, else TypeError
    inplace_ops: dict[str, Any]  # ``op`` ("+", "*", ...) -> the checked in-place operation
    builtins: dict[str, Any]


def make_size_guards(max_size: int, frozen: set[int], clock: Clock) -> SizeGuards:
    """The size guards of one Toolbox: nothing bigger than ``max_size``; ``frozen`` ids are read-only."""
    charge, abort = clock.charge, clock.abort
    size_digits = len(str(max_size))
    big_number = re.compile(rf"\d{{{size_digits},}}")

    def too_big(what: str, size: int) -> None:
        abort("resource", f"{what} of size {size} exceeds the limit of {max_size}")

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
        if t is dict or t is list or isinstance(ob, _WRITABLE) or getattr(t, _OWN_MARK, False) is True:
            if frozen and id(ob) in frozen:
                check_frozen(ob)
            return ob
        if isinstance(ob, type) and getattr(ob, _OWN_MARK, False) is True:  # the tool's own class
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

    operators = {
        "repr": safe_repr,
        "ascii": safe_ascii,
        "format": safe_format,
        "_write_": write,
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
    return SizeGuards(
        too_big,
        check_len,
        check_weight,
        check_frozen,
        mul,
        pow_,
        add,
        convert,
        fmt,
        lambda value: _weight(value, max_size + 1),
        write,
        inplace_ops,
        operators,
    )


# ----------------------------------------------------------------------------------------------- getattr


def make_getattr(
    sizes: SizeGuards, frozen: set[int], clock: Clock, rx_methods: dict[str, Any], owned: dict[str, Any]
) -> dict[str, Any]:
    """``_getattr_`` (what compiled code calls for the names in :mod:`~toolgym.sandbox.attrs`), ``getattr``,
    ``hasattr``, ``setattr``, ``delattr`` and ``_augattr_``: dunder and frame attributes blocked (single-underscore
    and protocol names only through ``owned``'s guards), size-bound methods checked, ``str.format`` checked."""
    private, dunder, write, inplace_ops = owned["_private_"], owned["_dunder_"], sizes.write, sizes.inplace_ops
    check_len, check_frozen, convert, fmt = sizes.check_len, sizes.check_frozen, sizes.convert, sizes.fmt
    ensure_armed, tick = clock.ensure_armed, clock.tick
    rx = _regex_module()

    def blocked(ob: Any, name: str) -> Any:
        raise AttributeError(f"access to attribute {name!r} is not allowed in tool code")

    def dunder_name(ob: Any, name: str) -> Any:
        return ob.__name__

    def unbound(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return guarded_getattr(self, name)(*args, **kwargs)

        return method

    def method_guard(kinds: Any, guard: Any) -> Any:
        """The getattr guard of a method: on a type, an unbound method that is guarded at each call; on an
        instance of ``kinds``, ``guard(ob, name, method)`` (a checked stand-in); on anything else, the method."""

        def get(ob: Any, name: str) -> Any:
            if isinstance(ob, type):
                return unbound(name)
            meth = getattr(ob, name)
            if isinstance(ob, kinds):
                return guard(ob, name, meth)
            return meth

        return get

    def padder(ob: Any, name: str, meth: Any) -> Any:
        def pad(width: Any, *args: Any) -> Any:
            if isinstance(width, int):
                check_len(width, f"{name}() width")
            return meth(width, *args)

        return pad

    def expandtabs(ob: Any, name: str, meth: Any) -> Any:
        def expand(tabsize: int = 8) -> Any:
            if isinstance(tabsize, int):
                check_len(tabsize, "expandtabs() tab size")
                tabs = ob.count("\t" if isinstance(ob, str) else b"\t")
                check_len(len(ob) + tabs * max(tabsize, 0), "expandtabs() result")
            return meth(tabsize)

        return expand

    def replace(ob: Any, name: str, meth: Any) -> Any:
        def rep(old: Any, new: Any, count: int = -1) -> Any:
            if isinstance(old, _STR_TYPES) and isinstance(new, _STR_TYPES) and len(new) > len(old):
                n = len(ob) + 1 if not old else ob.count(old)
                if count >= 0:
                    n = min(n, count)
                check_len(len(ob) + n * (len(new) - len(old)), "replace() result")
            return meth(old, new, count)

        return rep

    def join(ob: Any, name: str, meth: Any) -> Any:
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

    def translate(ob: Any, name: str, meth: Any) -> Any:
        def translate_(table: Any) -> Any:
            if isinstance(table, dict):
                longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
                check_len(len(ob) * longest, "translate() result")
            return meth(table)

        return translate_

    def to_bytes(ob: Any, name: str, meth: Any) -> Any:
        def to_bytes_(length: int = 1, *args: Any, **kwargs: Any) -> Any:
            if isinstance(length, int):
                check_len(length, "to_bytes() length")
            return meth(length, *args, **kwargs)

        return to_bytes_

    def extend(ob: Any, name: str, meth: Any) -> Any:
        check_frozen(ob)

        def extend_(items: Any) -> Any:
            if not isinstance(items, _SIZED):
                items = list(items)
            check_len(len(ob) + len(items), f"{type(ob).__name__}.{name}() result")
            return meth(items)

        return extend_

    def regex_method(ob: Any, name: str, meth: Any) -> Any:
        if type(ob) is re.Pattern:
            ensure_armed()
        elif rx is not None and type(ob) is rx.Pattern:
            return rx_methods[name](meth)
        return meth

    def elements(ob: Any, name: str, meth: Any) -> Any:
        return lambda: ticking(meth(), tick)

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
            check_frozen(ob.__self__ if type(ob) is super else ob)  # super(Cls, data).update(...) too
        return getattr(ob, name)

    def mpmath_attr(ob: Any, name: str) -> Any:
        owner = ob if isinstance(ob, type) else type(ob)
        if getattr(owner, "__module__", "").startswith("mpmath"):
            return blocked(ob, name)
        return getattr(ob, name)

    padded = method_guard(_STR_TYPES, padder)
    special: dict[str, Any] = {n: blocked for n in _BLOCKED_ATTRS}  # keys must equal _GUARDED_ATTRS
    special.update({n: padded for n in _PADDERS})
    special.update({n: mpmath_attr for n in _MPMATH_ATTRS})
    special.update({n: mutator for n in _MUTATORS})
    special.update({n: method_guard(object, regex_method) for n in _REGEX_METHODS})
    special.update(
        {
            "__name__": dunder_name,
            "zfill": padded,
            "expandtabs": method_guard(_STR_TYPES, expandtabs),
            "replace": method_guard(_STR_TYPES, replace),
            "join": method_guard(_STR_TYPES, join),
            "translate": method_guard(str, translate),
            "to_bytes": method_guard(object, to_bytes),
            "format": str_format,
            "format_map": str_format,
            "extend": method_guard(_LIST_TYPES, extend),
            "extendleft": method_guard(_LIST_TYPES, extend),
            "elements": method_guard(collections.Counter, elements),
        }
    )

    assert set(special) == _GUARDED_ATTRS

    def guarded_getattr(ob: Any, name: str) -> Any:
        if name in special:
            return special[name](ob, name)
        return getattr(ob, name)

    def getter(name: Any) -> Any:
        """The guard that reads attribute ``name`` (as the compile policy would route the literal name)."""
        if type(name) is not str:
            raise TypeError("attribute name must be a string")
        if name[:1] != "_" or name == "__name__":
            return guarded_getattr
        if name[:2] != "__":
            return private
        if name in _PROTOCOL_METHODS:
            return dunder
        raise AttributeError(f"access to attribute {name!r} is not allowed in tool code")

    def safe_getattr(ob: Any, name: Any, *default: Any) -> Any:
        get = getter(name)
        if default:
            try:
                return get(ob, name)
            except AttributeError:
                return default[0]
        return get(ob, name)

    def settable(name: Any) -> str:
        if type(name) is not str:
            raise TypeError("attribute name must be a string")
        if name[:2] == "__" or name in _BLOCKED_ATTRS:
            raise AttributeError(f"assignment to attribute {name!r} is not allowed in tool code")
        return name

    def safe_setattr(ob: Any, name: Any, value: Any) -> None:
        setattr(write(ob), settable(name), value)

    def safe_delattr(ob: Any, name: Any) -> None:
        delattr(write(ob), settable(name))

    def augattr(ob: Any, name: str, op: str, value: Any) -> None:
        """``ob.name op= value`` (``ob`` is already ``_write_``-checked by the compiled code)."""
        setattr(ob, name, inplace_ops[op](getter(name)(ob, name), value))

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

    return {
        "_getattr_": guarded_getattr,
        "getattr": safe_getattr,
        "hasattr": safe_hasattr,
        "setattr": safe_setattr,
        "delattr": safe_delattr,
        "_augattr_": augattr,
        "_attr_getter_": getter,
    }


# ---------------------------------------------------------------------------------------------- builtins


def make_builtin_guards(max_size: int, sizes: SizeGuards, clock: Clock) -> dict[str, Any]:
    """The builtins whose cost follows from their arguments (``range``, ``sorted``, ``sum``, ``pow``, ``bytes``,
    ...), checked against ``max_size`` and charged to the budget; and a ``type`` that hands out no metaclass."""
    check_len, too_big, add, pow_ = sizes.check_len, sizes.too_big, sizes.add, sizes.pow_
    tick, charge = clock.tick, clock.charge

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

    return {
        "range": safe_range,
        "sorted": safe_sorted,
        "sum": safe_sum,
        "pow": safe_pow,
        "type": safe_type,
        "iter": safe_iter,
        "bytes": safe_bytes,
        "bytearray": safe_bytearray,
    }
