"""Scenario sources: where an env gets the scenario of each episode.

A *procedural* source calls a generator ``(rng, config) -> Scenario`` (infinite); a *static* source holds
a finite list. The env only sees this interface, so it never imports the pipeline that made the data.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from toolgym.scenario import Scenario


class ScenarioSource(Protocol):
    name: str

    def sample(self, rng: np.random.Generator) -> Scenario: ...


class ProceduralSource:
    """Draws a fresh scenario from ``generate(rng, config)`` on every reset.

    ``fresh``: each scenario is new and unshared, so the env plays its world in place instead of copying it
    (``env.scenario.state`` is then the live world of the episode).
    """

    fresh = True

    def __init__(self, name: str, generate: Callable[[np.random.Generator, Any], Scenario], config: Any):
        if hasattr(config, "validate"):
            config.validate()
        self.name = name
        self.generate = generate
        self.config = config

    def sample(self, rng: np.random.Generator) -> Scenario:
        return self.generate(rng, self.config)

    def cache_key(self) -> Any:
        """(name, generator, config value): equal for sources that generate alike, so envs made by the same
        ``gym.make`` id and kwargs share cached resets. A subclass is not keyed (its ``sample`` may differ)
        unless it defines its own ``cache_key``. Memoized while ``name``/``generate``/``config`` stay the same
        objects: like ``validate()``, the key reads the config once, so change knobs by making a new source
        (a new ``gym.make``), not by mutating ``config`` in place.
        """
        if type(self) is not ProceduralSource:
            raise _Uncacheable(type(self).__name__)
        memo = self.__dict__.get("_cache_key")
        if memo is not None and memo[0] is self.name and memo[1] is self.generate and memo[2] is self.config:
            return memo[3]
        key = _Key(("procedural", self.name, _callable_key(self.generate), _value_key(self.config)))
        self._cache_key = (self.name, self.generate, self.config, key)
        return key


class StaticSource:
    """A finite list of scenarios; ``sample`` picks one uniformly, ``get(i)`` a given one."""

    def __init__(self, name: str, scenarios: Sequence[Scenario]):
        if not scenarios:
            raise ValueError(f"static pack {name!r} holds no scenarios")
        self.name = name
        self.scenarios = list(scenarios)

    def __len__(self) -> int:
        return len(self.scenarios)

    def get(self, index: int) -> Scenario:
        return self.scenarios[index]

    def sample(self, rng: np.random.Generator) -> Scenario:
        return self.scenarios[int(rng.integers(len(self.scenarios)))]


class MixtureSource:
    """Samples a member source uniformly per episode, then draws that member's scenario (e.g. across domains)."""

    def __init__(self, name: str, members: Sequence[ScenarioSource]):
        if not members:
            raise ValueError(f"mixture {name!r} has no members")
        self.name = name
        self.members = list(members)
        self.fresh = all(getattr(m, "fresh", False) for m in self.members)

    def sample(self, rng: np.random.Generator) -> Scenario:
        return self.members[int(rng.integers(len(self.members)))].sample(rng)

    def cache_key(self) -> Any:
        """(name, every member's key in order); uncacheable when any member is."""
        if type(self) is not MixtureSource:
            raise _Uncacheable(type(self).__name__)
        keys = []
        for member in self.members:
            key = source_cache_key(member)
            if key is None:
                raise _Uncacheable(type(member).__name__)
            keys.append(key)
        members = tuple(keys)
        memo = self.__dict__.get("_cache_key")  # equal member keys (the same memoized objects): the same key
        if memo is not None and memo[0] is self.name and memo[1] == members:
            return memo[2]
        key = _Key(("mixture", self.name, members))
        self._cache_key = (self.name, members, key)
        return key


# ----------------------------------------------------------------------------------------------- reset cache
# Trainers reset one seed many times (a GRPO group, the rl-row scorer once per turn row, a server per session);
# generating a procedural world costs far more than a step, so seeded resets reuse the scenario they generated.


class _Uncacheable(Exception):
    """A source or config holds something whose value cannot be keyed safely: it is not cached."""


class _Key:
    """A source's cache key, hashed once. The key is a nested tuple (a mixture's holds every member's, each with
    its config field by field), which Python hashes anew on every dict lookup, and a seeded reset makes several
    (the entry, the seen-once list): for a mixture that was a visible part of the reset
    (``benchmarks/step_overhead.py``, the ``first`` and ``hit`` columns)."""

    __slots__ = ("_hash", "value")

    def __init__(self, value: tuple):
        self.value = value
        self._hash = hash(value)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, _Key) and self._hash == other._hash and self.value == other.value)

    def __reduce__(self) -> tuple:
        return (_Key, (self.value,))  # hashed again where unpickled: str hashes differ between processes

    def __repr__(self) -> str:
        return f"CacheKey({self.value!r})"


class _Ident:
    """Keys an object by identity and keeps it alive, so its id is never reused while the key exists."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ident) and other.obj is self.obj


_SCALARS = (type(None), bool, int, str, bytes)


def _value_key(value: Any) -> Any:
    """A hashable key equal for equal values only: types are part of it (1, 1.0 and True differ), floats by repr
    (0.0 and -0.0 differ), containers and dataclasses field by field, in order. Anything else is uncacheable."""
    t = type(value)
    if t in _SCALARS:
        return (t, value)
    if t is float:
        return (t, repr(value))
    if t in (list, tuple):
        return (t, tuple(_value_key(v) for v in value))
    if t is dict:
        return (t, tuple((_value_key(k), _value_key(v)) for k, v in value.items()))
    if t in (frozenset, set):
        return (t, frozenset(_value_key(v) for v in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        attrs = (
            vars(value)
            if hasattr(value, "__dict__")
            else {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        )
        return (_Ident(t), tuple((k, _value_key(attrs[k])) for k in sorted(attrs)))
    raise _Uncacheable(t.__name__)


def _callable_key(fn: Any) -> Any:
    """Plain functions and partials of them by identity (a module-level generator and domain are the same objects
    in every env); other callables (instances with state of their own) are uncacheable."""
    if isinstance(fn, functools.partial):
        if type(fn) is not functools.partial:
            raise _Uncacheable(type(fn).__name__)
        keywords = tuple((k, _Ident(v)) for k, v in sorted(fn.keywords.items()))
        return ("partial", _callable_key(fn.func), tuple(_Ident(a) for a in fn.args), keywords)
    if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType)):
        return _Ident(fn)
    raise _Uncacheable(type(fn).__name__)


_NO_PARAMS = object()


def _pack(scenario: Scenario) -> tuple[bytes, tuple[Any, ...]]:
    """The scenario as one pickle, but for what a hit shares instead of copying: tool source texts (immutable)
    and the tools' ``parameters`` schemas, which generators already share across scenarios and the env only
    reads (the validator cache is keyed by their identity). Everything else, the world above all, is copied.

    The shared parts are taken out before pickling rather than kept by a ``persistent_id`` hook, which
    pickle calls in Python for every object of the scenario (it doubled the cost of a cache miss).
    """
    params: list[Any] = []
    tools = []
    for tool in scenario.tools:
        fn = tool.get("function") if type(tool) is dict else None
        if type(fn) is dict and type(fn.get("parameters")) is dict:
            params.append(fn["parameters"])
            tool = {**tool, "function": {**fn, "parameters": None}}
        else:
            params.append(_NO_PARAMS)
        tools.append(tool)
    source = {n: (src if type(src) is str else None) for n, src in scenario.source.items()}
    other_sources = {n: src for n, src in scenario.source.items() if type(src) is not str}
    fields = (scenario.id, scenario.kind, scenario.messages, tools, other_sources, scenario.state)
    fields += (scenario.subtasks, scenario.answer, scenario.metadata)
    return pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL), (tuple(params), source)


def _unpack(blob: bytes, shared: tuple[Any, ...]) -> Scenario:
    sc_id, kind, messages, tools, other_sources, state, subtasks, answer, metadata = pickle.loads(blob)
    params, source = shared
    for tool, p in zip(tools, params, strict=True):
        if p is not _NO_PARAMS:
            tool["function"]["parameters"] = p
    sources = {n: (other_sources[n] if src is None else src) for n, src in source.items()}
    return Scenario(sc_id, kind, messages, tools, sources, state, subtasks, answer, metadata)


class ScenarioCache:
    """A bounded, thread-safe, process-wide LRU of generated scenarios: (source key, seed) -> entry.

    An entry is the scenario as generated (pickled before any episode touched its world; tool source texts and
    parameter schemas by reference) and the state of the env's bit generator right after generation, so a hit
    hands out a private copy and leaves ``np_random`` exactly where generating would have. Bounded by
    ``maxsize`` entries and ``max_bytes`` of pickles. ``enabled = False`` turns it off for every env of the
    process (the env kwarg ``scenario_cache`` per env); the environment variable ``TOOLGYM_SCENARIO_CACHE=0``
    turns it off at import (e.g. in server workers).

    The env stores a scenario the second time its seed is generated (:meth:`seen_before`), not the first:
    pickling costs about a fifth of a spec domain's reset (``benchmarks/step_overhead.py``: the ``store`` column
    against the ``uncached`` one), which a run of fresh seeds, an RL run's usual case, would pay on every reset
    for entries it never reads.
    """

    def __init__(self, maxsize: int = 4096, max_bytes: int = 256 << 20):
        if maxsize < 1 or max_bytes < 1:
            raise ValueError("maxsize and max_bytes must be >= 1")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.enabled = True
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[Any, tuple[bytes, tuple[Any, ...], dict[str, Any]]] = OrderedDict()
        self._bytes = 0
        self._seen: OrderedDict[Any, None] = OrderedDict()  # keys generated once and not stored, newest last

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Any) -> tuple[Scenario, dict[str, Any]] | None:
        """A private copy of the cached scenario and the bit generator state to restore, or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        blob, shared, rng_state = entry
        return _unpack(blob, shared), rng_state

    def seen_before(self, key: Any) -> bool:
        """Whether ``key`` missed before; the first time, remember it (the last ``maxsize`` such keys) and say no."""
        with self._lock:
            if key in self._seen:
                del self._seen[key]
                return True
            self._seen[key] = None
            if len(self._seen) > self.maxsize:
                self._seen.popitem(last=False)
            return False

    def put(self, key: Any, scenario: Scenario, rng_state: dict[str, Any]) -> bool:
        """Store an untouched scenario; ``False`` when it cannot be pickled or exceeds ``max_bytes``."""
        try:
            blob, shared = _pack(scenario)
        except Exception:  # e.g. a world holding an unpicklable object: played, just not cached
            return False
        if len(blob) > self.max_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[0])
            self._entries[key] = (blob, shared, rng_state)
            self._bytes += len(blob)
            while len(self._entries) > self.maxsize or self._bytes > self.max_bytes:
                _, (dropped, _, _) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._seen.clear()
            self._bytes = 0
            self.hits = self.misses = 0


SCENARIO_CACHE = ScenarioCache()
SCENARIO_CACHE.enabled = os.environ.get("TOOLGYM_SCENARIO_CACHE", "1").strip().lower() not in (
    "0",
    "false",
    "off",
    "no",
)


def source_cache_key(source: Any) -> Any:
    """The cache key of a source, or ``None`` when it cannot be keyed safely (then resets are not cached)."""
    method = getattr(source, "cache_key", None)
    if method is None:
        return None
    try:
        return method()
    except _Uncacheable:
        return None
