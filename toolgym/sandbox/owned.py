"""The tool's own classes: the ``__build_class__`` that creates and marks them, and the attribute guards that let
tool code read single-underscore and protocol-method attributes of its own objects, and nothing else's.

Why a module: allowing ``self._files`` or ``super().__init__()`` natively would also allow ``fwdref._evaluate``
(typing's ForwardRef evaluates text with the real builtins) or ``SimpleNamespace.__init__(proxy, ...)`` (which
rewrites a read-only module proxy). The rule here is one question, asked per access: was this attribute defined
by a class the tool's own code created (or set on an instance of one)? Only the sandbox can mark a class (the
mark is a dunder name tool code can neither read nor write), so the answer cannot be forged.
"""

from __future__ import annotations

import builtins
from typing import Any

from toolgym.sandbox.attrs import (
    _IMPLICIT_PROTOCOL,
    _MUTATING_PROTOCOL,
    _NAMEDTUPLE_ATTRS,
    _OWN_MARK,
    _PROTOCOL_METHODS,
)

__all__ = ["is_own", "is_own_class", "make_class_guards", "mark_own", "strip_own"]

_build_class = builtins.__build_class__
_type_setattr = type.__setattr__


def is_own(ob: Any) -> bool:
    """``ob`` is an instance of a class tool code created."""
    return getattr(type(ob), _OWN_MARK, False) is True


def is_own_class(cls: Any) -> bool:
    """``cls`` is a class tool code created (or a subclass of one)."""
    return isinstance(cls, type) and getattr(cls, _OWN_MARK, False) is True


def mark_own(cls: type) -> type:
    """Mark ``cls`` as the tool's own class (``type.__setattr__`` skips metaclass hooks, e.g. Enum's)."""
    _type_setattr(cls, _OWN_MARK, True)
    return cls


_PLAIN = frozenset({str, int, float, bool, type(None), bytes})


def _bad(v: Any) -> bool:
    """A world value to drop: a tool class's instance, or a tuple or set holding one (dicts and lists are
    walked and edited in place instead)."""
    return is_own(v) or (isinstance(v, (tuple, set, frozenset)) and _holds_own(v))


def _holds_own(v: Any) -> bool:
    """A tuple or set value of the world holds a tool class's instance, at any depth (they cannot be edited
    in place, so the whole value is dropped)."""
    stack = [v]
    while stack:
        x = stack.pop()
        if is_own(x):
            return True
        if isinstance(x, (tuple, set, frozenset, list)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
    return False


def strip_own(state: Any) -> int:
    """Remove instances of tool classes from the world ``state`` (dict values and list items become None, dict
    keys are dropped); how many were found.

    Why: the env reads the world outside any call (state checks compare with ``==``, the process sandbox
    pickles it), where a tool class's ``__eq__`` or ``__hash__`` would run without the call's clock. The world
    holds plain data; a tool keeps its objects for one call, or rebuilds them from the data. Only Toolboxes
    whose code built a class with protocol methods pay for this walk (it visits every item of the world).
    """
    plain = _PLAIN
    found = 0
    stack = [state]
    seen: set[int] = set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, dict):
            bad = False
            for k, v in x.items():
                t = type(v)
                if t in plain:
                    pass
                elif t is dict or t is list or isinstance(v, (dict, list)):
                    stack.append(v)
                elif is_own(v) or (isinstance(v, (tuple, set, frozenset)) and _holds_own(v)):
                    bad = True
                if type(k) not in plain and (is_own(k) or (isinstance(k, (tuple, frozenset)) and _holds_own(k))):
                    bad = True
            if bad:
                kept = [(k, None if _bad(v) else v) for k, v in x.items() if not _bad(k)]
                found += len(x) - len(kept) + sum(1 for k, v in x.items() if not _bad(k) and _bad(v))
                dict.clear(x)
                dict.update(x, kept)
        elif isinstance(x, list):
            for i, v in enumerate(x):
                t = type(v)
                if t in plain:
                    pass
                elif t is dict or t is list or isinstance(v, (dict, list)):
                    stack.append(v)
                elif is_own(v) or (isinstance(v, (tuple, set, frozenset)) and _holds_own(v)):
                    list.__setitem__(x, i, None)
                    found += 1
    return found


def _defined_by_own(cls: type, name: str) -> bool | None:
    """Whether the first class along ``cls``'s MRO that defines ``name`` is the tool's own; None: none does."""
    for k in cls.__mro__:
        d = k.__dict__
        if name in d:
            return _OWN_MARK in d
    return None


def _refuse(name: str) -> Any:
    raise AttributeError(f"access to attribute {name!r} is not allowed in tool code")


def make_class_guards(check_frozen: Any, on_class: Any) -> dict[str, Any]:
    """``__build_class__``, ``_private_`` and ``_dunder_`` of one Toolbox (``check_frozen`` refuses writes to its
    module-level data; ``on_class()`` is told of every class whose protocol methods code outside a call could
    run, e.g. ``__eq__``)."""

    def build_class(func: Any, name: str, *bases: Any, **kwargs: Any) -> type:
        if "metaclass" in kwargs:
            raise TypeError("metaclass= is not allowed in tool code")
        cls = _build_class(func, name, *bases, **kwargs)
        if issubclass(cls, type):
            raise TypeError("metaclasses (subclasses of type) are not allowed in tool code")
        if any(n in _IMPLICIT_PROTOCOL for n in vars(cls)):
            on_class()  # its instances run tool code when compared, hashed or indexed
        return mark_own(cls)

    def private(ob: Any, name: str) -> Any:
        """``ob._name``: an attribute of the tool's own class, or of an instance of one; namedtuple's API."""
        if name in _NAMEDTUPLE_ATTRS and (isinstance(ob, tuple) or (isinstance(ob, type) and issubclass(ob, tuple))):
            return getattr(ob, name)
        if isinstance(ob, type):
            if _defined_by_own(ob, name):
                return getattr(ob, name)
            return _refuse(name)
        t = type(ob)
        found = _defined_by_own(t, name)
        if found or (found is None and getattr(t, _OWN_MARK, False) is True):
            return getattr(ob, name)
        return _refuse(name)

    def unbound(cls: type, name: str) -> Any:
        """``Base.__init__`` where Base is not the tool's: usable on the tool's own instances only."""
        fn = getattr(cls, name)

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not is_own(self):
                raise TypeError(f"{cls.__name__}.{name}() may only be called on the tool's own objects here")
            if name in _MUTATING_PROTOCOL:
                check_frozen(self)
            return fn(self, *args, **kwargs)

        return method

    def dunder(ob: Any, name: str) -> Any:
        """``ob.__init__`` and the other protocol methods, on the tool's own objects (and ``super()`` of one)."""
        if name not in _PROTOCOL_METHODS:  # pragma: no cover - the compile policy routes only these here
            return _refuse(name)
        if isinstance(ob, type):
            if _defined_by_own(ob, name):
                return getattr(ob, name)
            return unbound(ob, name)
        if type(ob) is super:
            target = ob.__self__
            if isinstance(target, type) or not is_own(target):
                return _refuse(name)
        elif is_own(ob):
            target = ob
        else:
            return _refuse(name)
        if name in _MUTATING_PROTOCOL:
            check_frozen(target)
        return getattr(ob, name)

    return {"__build_class__": build_class, "_private_": private, "_dunder_": dunder}
