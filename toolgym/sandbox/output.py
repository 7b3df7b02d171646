"""Output bounding: the text a tool's return value becomes, capped without materialising huge values.

Why a module: the Toolbox turns every tool result into model-facing text, and the size guards price values by
the same estimate (:func:`_weight`), so a huge or exponentially aliased value is neither fully built nor sent.
"""

from __future__ import annotations

import collections
import json
import reprlib
from typing import Any

__all__ = ["serialize_output"]

_JSON_FAST_LIMIT = 1 << 20  # estimated output size up to which the C JSON encoder is used
_TRUNCATED = " ...[truncated]"
_SCALARS = frozenset({int, float, bool, type(None), complex})
_CONTAINERS = (list, tuple, set, frozenset, collections.deque)


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
    return text if len(text) <= max_chars else _truncate(text, max_chars)
