"""Domain specs: what the procedural backend knows about a domain, as plain declarations.

A domain is a seeded world of entity tables plus the relations between them. From a :class:`Domain` the
five pipeline stages derive everything else: sub-questions (a read of one attribute, or an update), their
function documents, the merged toolset, its scaled variants and the deployed tool code. Adding a domain is
writing one module that builds a ``Domain`` (reasoning-gym style), with the helpers of ``toolgym.construct.kit``:
no other file changes (discovery, the domain tests, the Mixed env, knobs and env options all follow the code).

World layout (``Domain.world(rng)`` returns it): ``{entity.table: {id: record}, "counters": {...}}`` where each
record is a flat JSON object holding its own id under ``entity.key`` and every attribute of the entity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

JSON_TYPES = ("string", "integer", "number", "boolean")


@dataclass(frozen=True)
class Attr:
    """One field of an entity record.

    ``noun`` names it in a question ("the star rating of hotel HT1234"). ``ref`` names the entity type whose id
    the field holds: such a field is a hop of a multi-hop chain. ``answerable`` marks fields whose values are
    distinctive enough to be a sub-answer under FTRL's substring matching (ids, names, codes, integers >= 100);
    booleans, small numbers and enum values that many records share should set it False.
    """

    name: str
    noun: str
    type: str = "string"
    ref: str | None = None
    answerable: bool = True
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Entity:
    """An entity type: a table of records keyed by ``key`` (e.g. ``hotel_id``), named in text by ``label``.

    ``label`` is a template over the record, e.g. ``"hotel {hotel_id}"`` or ``"guest {name}"``: how a question
    names a starting record. ``id_pattern`` is the JSON-schema pattern of ids (used by type generalization).
    """

    name: str
    table: str
    key: str
    label: str
    description: str
    attrs: tuple[Attr, ...]
    id_pattern: str | None = None

    def attr(self, name: str) -> Attr:
        for a in self.attrs:
            if a.name == name:
                return a
        raise KeyError(f"{self.name} has no attribute {name!r}")


@dataclass(frozen=True)
class Update:
    """A write action on one record: ``name(<entity key>[, <param>])``.

    It requires ``require`` (field -> value) to hold, sets ``sets`` (field -> value) and, when ``param`` is
    given, writes the argument value to the field ``param.name``; it returns the record id, the new status
    fields and a confirmation code ``<confirmation_prefix><counter>`` taken from ``state["counters"][name]``,
    so the code is known to the generator in advance. ``request`` phrases the ask, with ``{target}`` for the
    record's noun phrase and ``{value}`` for the parameter value, e.g. ``"cancel {target}"``.
    """

    name: str
    entity: str
    description: str
    request: str
    confirmation_prefix: str
    sets: dict[str, Any] = field(default_factory=dict)
    require: dict[str, Any] = field(default_factory=dict)
    param: Attr | None = None


@dataclass(frozen=True)
class Domain:
    """A domain for the procedural backend: entities, updates, and the world generator."""

    name: str
    version: int
    description: str
    entities: tuple[Entity, ...]
    updates: tuple[Update, ...]
    world: Callable[[np.random.Generator], dict[str, Any]]

    def entity(self, name: str) -> Entity:
        for e in self.entities:
            if e.name == name:
                return e
        raise KeyError(f"{self.name} has no entity {name!r}")


class SpecError(ValueError):
    """A domain spec or the world it generates is inconsistent; the message names the domain and the part."""


def validate_domain(domain: Domain, seeds: range = range(5)) -> None:
    """Check a domain's declarations and the worlds it generates; raise :class:`SpecError` on the first problem.

    Checks: names are identifiers; refs point to declared entities; updates name real entities and fields;
    every generated record has its key and every declared attribute with the declared JSON type; ref values
    are ids present in the referenced table; enum values are within the enum; counters exist for every update;
    answerable string values are unique within their attribute column (so a wrong record cannot leak them);
    at least one multi-hop chain (an entity with a ref attribute) and one update exist; the world is a
    deterministic function of the rng.
    """
    where = f"domain {domain.name}"
    names = {e.name for e in domain.entities}
    if not domain.name.isidentifier():
        raise SpecError(f"{where}: name must be an identifier (CamelCase)")
    if not any(a.ref for e in domain.entities for a in e.attrs):
        raise SpecError(f"{where}: needs at least one ref attribute (multi-hop chains follow refs)")
    if not domain.updates:
        raise SpecError(f"{where}: needs at least one update (write tool)")
    for e in domain.entities:
        if not (e.name.isidentifier() and e.key.isidentifier() and e.table.isidentifier()):
            raise SpecError(f"{where}: entity {e.name!r}: name, key and table must be identifiers")
        for a in e.attrs:
            if a.type not in JSON_TYPES:
                raise SpecError(f"{where}: {e.name}.{a.name}: type must be one of {JSON_TYPES}")
            if a.ref and a.ref not in names:
                raise SpecError(f"{where}: {e.name}.{a.name}: ref {a.ref!r} is not an entity")
            if a.name == e.key:
                raise SpecError(f"{where}: {e.name}: the key {e.key!r} must not be listed as an attribute")
    for u in domain.updates:
        if u.entity not in names:
            raise SpecError(f"{where}: update {u.name}: entity {u.entity!r} is not declared")
        ent = domain.entity(u.entity)
        for f in (*u.sets, *u.require, *([u.param.name] if u.param else [])):
            if f not in {a.name for a in ent.attrs}:
                raise SpecError(f"{where}: update {u.name}: field {f!r} is not an attribute of {ent.name}")
        if "{target}" not in u.request:
            raise SpecError(f"{where}: update {u.name}: request must contain '{{target}}'")
    pytype = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
    for seed in seeds:
        state = domain.world(np.random.default_rng(seed))
        again = domain.world(np.random.default_rng(seed))
        if state != again:
            raise SpecError(f"{where}: world(rng) is not deterministic for seed {seed}")
        counters = state.get("counters")
        if not isinstance(counters, dict) or any(u.name not in counters for u in domain.updates):
            raise SpecError(f"{where}: world must hold counters[<update name>] for every update")
        for e in domain.entities:
            table = state.get(e.table)
            if not isinstance(table, dict) or len(table) < 4:
                raise SpecError(f"{where}: world[{e.table!r}] must be a dict of at least 4 records")
            for rid, rec in table.items():
                if rec.get(e.key) != rid:
                    raise SpecError(f"{where}: {e.table}[{rid!r}] must hold its id under {e.key!r}")
                for a in e.attrs:
                    if a.name not in rec:
                        raise SpecError(f"{where}: {e.table}[{rid!r}] lacks attribute {a.name!r}")
                    v = rec[a.name]
                    if not isinstance(v, pytype[a.type]) or (a.type != "boolean" and isinstance(v, bool)):
                        raise SpecError(f"{where}: {e.table}[{rid!r}].{a.name} = {v!r} is not of type {a.type}")
                    if a.ref and v not in state[domain.entity(a.ref).table]:
                        raise SpecError(f"{where}: {e.table}[{rid!r}].{a.name} = {v!r} is not a {a.ref} id")
                    if a.enum and v not in a.enum:
                        raise SpecError(f"{where}: {e.table}[{rid!r}].{a.name} = {v!r} is not in its enum")
            for a in e.attrs:
                if a.answerable and a.type == "string" and not a.ref:
                    col = [str(r[a.name]).lower() for r in table.values()]
                    if len(set(col)) != len(col):
                        raise SpecError(f"{where}: answerable {e.name}.{a.name} repeats values (mark answerable=False)")
