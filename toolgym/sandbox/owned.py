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

from toolgym.sandbox.attrs import _MUTATING_PROTOCOL, _NAMEDTUPLE_ATTRS, _OWN_MARK, _PROTOCOL_METHODS

__all__ = ["is_own", "make_class_guards"]

_build_class = builtins.__build_class__
_type_setattr = type.__setattr__


def is_own(ob: Any) -> bool:
    """``ob`` is an instance of a class tool code created."""
    return getattr(type(ob), _OWN_MARK, False) is True


def _own_class(cls: Any) -> bool:
    return isinstance(cls, type) and getattr(cls, _OWN_MARK, False) is True


def _defined_by_own(cls: type, name: str) -> bool | None:
    """Whether the first class along ``cls``'s MRO that defines ``name`` is the tool's own; None: none does."""
    for k in cls.__mro__:
        d = k.__dict__
        if name in d:
            return _OWN_MARK in d
    return None


def _refuse(name: str) -> Any:
    raise AttributeError(f"access to attribute {name!r} is not allowed in tool code")


def make_class_guards(check_frozen: Any) -> dict[str, Any]:
    """``__build_class__``, ``_private_`` and ``_dunder_`` of one Toolbox (``check_frozen`` refuses writes to its
    module-level data)."""

    def build_class(func: Any, name: str, *bases: Any, **kwargs: Any) -> type:
        if "metaclass" in kwargs:
            raise TypeError("metaclass= is not allowed in tool code")
        cls = _build_class(func, name, *bases, **kwargs)
        if issubclass(cls, type):
            raise TypeError("metaclasses (subclasses of type) are not allowed in tool code")
        _type_setattr(cls, _OWN_MARK, True)
        return cls

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
