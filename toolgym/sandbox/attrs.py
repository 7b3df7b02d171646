"""The attribute names that have a runtime guard, shared by the compile policy and the guards themselves.

Why a module: :mod:`~toolgym.sandbox.policy` keeps attribute loads native except for these names, which it
routes through ``_getattr_``; :mod:`~toolgym.sandbox.guards` implements exactly these (it asserts so). Both
read the sets from here, so neither imports the other.
"""

from __future__ import annotations

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
_GUARDED_ATTRS = (
    _BLOCKED_ATTRS
    | _PADDERS
    | _MUTATORS
    | _REGEX_METHODS
    | {"__name__", "zfill", "expandtabs", "replace", "join", "translate", "to_bytes", "format", "format_map"}
    | {"extend", "extendleft", "elements"}
)
