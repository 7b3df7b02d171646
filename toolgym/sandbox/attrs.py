"""The names the compile policy and the runtime guards must agree on: guarded attributes, the protocol methods
tool classes may define, the importable modules and the mark of a class tool code defined.

Why a module: :mod:`~toolgym.sandbox.policy` keeps attribute loads native except for these names, which it
routes through ``_getattr_``; :mod:`~toolgym.sandbox.guards` implements exactly these (it asserts so). Both
read the sets from here, so neither imports the other.
"""

from __future__ import annotations

import importlib.util

from RestrictedPython.transformer import INSPECT_ATTRIBUTES

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
# Attributes of mpmath's numbers that reach past :mod:`~toolgym.sandbox.precision`'s bounds: their context (whose
# settings and constants take any precision), and an integer of any bit length.
_MPMATH_ATTRS = frozenset({"context", "to_fixed"})
_GUARDED_ATTRS = (
    _BLOCKED_ATTRS
    | _MPMATH_ATTRS
    | _PADDERS
    | _MUTATORS
    | _REGEX_METHODS
    | {"__name__", "zfill", "expandtabs", "replace", "join", "translate", "to_bytes", "format", "format_map"}
    | {"extend", "extendleft", "elements"}
)

# Dunder methods a tool class may define, and read (``super().__init__(...)``, ``Base.__eq__(self, o)``) on its
# own objects. Not here, so still refused: anything that changes attribute lookup, pickling/copying by reduce,
# finalizers, class-creation hooks, ``__index__`` (it would let ``'x' * obj`` dodge the size guards).
_PROTOCOL_METHODS = frozenset(
    """
    __init__ __post_init__ __repr__ __str__ __format__ __eq__ __ne__ __lt__ __le__ __gt__ __ge__ __hash__
    __bool__ __len__ __iter__ __next__ __reversed__ __getitem__ __setitem__ __delitem__ __contains__
    __missing__ __enter__ __exit__ __call__ __add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__
    __rmul__ __imul__ __truediv__ __rtruediv__ __floordiv__ __rfloordiv__ __mod__ __rmod__ __neg__ __pos__
    __abs__ __int__ __float__ __round__ __and__ __or__ __xor__ __copy__ __deepcopy__
    """.split()
)
# Protocol methods that mutate their object: refused on module-level (read-only) data.
_MUTATING_PROTOCOL = frozenset({"__init__", "__post_init__", "__setitem__", "__delitem__", "__iadd__", "__isub__"})
_MUTATING_PROTOCOL |= {"__imul__"}
# Protocol methods that code outside a call (the env comparing or indexing the world) can run implicitly.
_IMPLICIT_PROTOCOL = _PROTOCOL_METHODS - {
    "__init__",
    "__post_init__",
    "__enter__",
    "__exit__",
    "__copy__",
    "__deepcopy__",
    "__iadd__",
    "__isub__",
    "__imul__",
}
# namedtuple's public API is spelled with one underscore.
_NAMEDTUPLE_ATTRS = frozenset({"_asdict", "_replace", "_fields", "_make", "_field_defaults"})
# Set on every class a tool's ``class`` statement (or guarded ``make_dataclass``) creates; tool code can neither
# read nor write a dunder name, so only the sandbox can mark a class as the tool's own.
_OWN_MARK = "__toolgym_own__"

# The stdlib modules tool code may import (each a read-only proxy, see :mod:`~toolgym.sandbox.modules`).
_ALLOWED_MODULES = (
    "typing dataclasses enum abc copy json re math cmath decimal fractions numbers datetime calendar zoneinfo "
    "time string textwrap difflib unicodedata collections collections.abc itertools functools operator heapq "
    "bisect statistics hashlib base64 uuid random"
).split()
# Third-party modules tool code may import when installed (see :mod:`~toolgym.sandbox.precision`).
_OPTIONAL_MODULES = tuple(m for m in ("mpmath",) if importlib.util.find_spec(m) is not None)
