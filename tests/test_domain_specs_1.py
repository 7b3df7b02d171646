"""Domain specs Banking, ECommerceOrders, CalendarMeetings, RestaurantBooking and CarRental: declarations,
worlds, and the properties the pipeline relies on (distinctive answers, chain starts, satisfiable updates)."""

import importlib
import json
import random
import re

import numpy as np
import pytest

from toolgym.construct.spec import Domain, validate_domain

MODULES = ("banking", "ecommerce_orders", "calendar_meetings", "restaurant_booking", "car_rental")
SEEDS = range(60)


def _domain(module: str) -> Domain:
    return importlib.import_module(f"toolgym.construct.domains.{module}").DOMAIN


def _world(domain: Domain, seed: int) -> dict:
    return domain.world(np.random.default_rng(seed))


def _norm(value) -> str:
    """How FTRL's matcher normalises a sub-answer before the substring test."""
    return str(value).lower().replace(",", "")


@pytest.mark.parametrize("module", MODULES)
def test_validate_domain_over_200_seeds(module):
    validate_domain(_domain(module), range(200))


@pytest.mark.parametrize("module", MODULES)
def test_module_shape(module):
    domain = _domain(module)
    assert 3 <= len(domain.entities) <= 4
    assert 2 <= len(domain.updates) <= 3
    for e in domain.entities:
        assert 4 <= len(e.attrs) <= 7, e.name
        assert any(a.answerable for a in e.attrs), e.name
    assert sum(1 for e in domain.entities for a in e.attrs if a.ref) >= 2
    assert len({u.name for u in domain.updates}) == len(domain.updates)
    assert len({u.confirmation_prefix for u in domain.updates}) == len(domain.updates)
    assert any(u.param is not None and u.param.enum for u in domain.updates)


@pytest.mark.parametrize("module", MODULES)
def test_longest_chain_has_at_least_three_entities(module):
    domain = _domain(module)
    refs = {e.name: {a.ref for a in e.attrs if a.ref} for e in domain.entities}

    def longest(name: str, seen: tuple[str, ...]) -> int:
        return 1 + max((longest(n, (*seen, n)) for n in refs[name] if n not in seen), default=0)

    assert max(longest(e.name, (e.name,)) for e in domain.entities) >= 3


@pytest.mark.parametrize("module", MODULES)
def test_world_is_deterministic(module):
    domain = _domain(module)
    for seed in (0, 1, 123):
        assert _world(domain, seed) == _world(domain, seed)


@pytest.mark.parametrize("module", MODULES)
def test_world_differs_across_seeds(module):
    domain = _domain(module)
    worlds = [json.dumps(_world(domain, seed), sort_keys=True) for seed in range(10)]
    assert len(set(worlds)) == len(worlds)


@pytest.mark.parametrize("module", MODULES)
def test_world_uses_only_the_given_rng(module):
    domain = _domain(module)
    random.seed(7)
    np.random.seed(7)
    before = (random.getstate(), np.random.get_state()[1].tolist())
    _world(domain, 3)
    assert (random.getstate(), np.random.get_state()[1].tolist()) == before


@pytest.mark.parametrize("module", MODULES)
def test_tables_ids_and_sizes(module):
    domain = _domain(module)
    for seed in SEEDS:
        state = _world(domain, seed)
        assert set(state) == {e.table for e in domain.entities} | {"counters"}
        for e in domain.entities:
            table = state[e.table]
            assert 4 <= len(table) <= 12, (e.table, len(table))
            assert len({len(rid) for rid in table}) == 1, f"{e.table}: ids must be fixed width"
            for rid in table:
                assert re.fullmatch(e.id_pattern, rid), (e.table, rid)
        for counter in state["counters"].values():
            assert isinstance(counter, int) and 1000 <= counter <= 9999


@pytest.mark.parametrize("module", MODULES)
def test_every_ref_column_has_a_unique_value(module):
    """A chain can start at a record whose ref value no other record of its table shares."""
    domain = _domain(module)
    for seed in SEEDS:
        state = _world(domain, seed)
        for e in domain.entities:
            for a in e.attrs:
                if a.ref:
                    column = [rec[a.name] for rec in state[e.table].values()]
                    assert any(column.count(v) == 1 for v in column), (seed, e.name, a.name)


@pytest.mark.parametrize("module", MODULES)
def test_updates_can_succeed_and_fail(module):
    domain = _domain(module)
    for seed in SEEDS:
        state = _world(domain, seed)
        for u in domain.updates:
            ok = [
                all(rec[f] == v for f, v in u.require.items()) for rec in state[domain.entity(u.entity).table].values()
            ]
            assert any(ok), (seed, u.name)
            if u.require:
                assert not all(ok), (seed, u.name)
            if u.param is not None:
                assert u.param.enum and set(u.param.enum) <= set(domain.entity(u.entity).attr(u.param.name).enum)


@pytest.mark.parametrize("module", MODULES)
def test_answers_are_distinctive(module):
    """No answerable value, id or confirmation code occurs in the output of a record that is not its own.

    Ids may occur in records that reference them through a ref attribute (that is what a hop reads).
    """
    domain = _domain(module)
    for seed in SEEDS:
        state = _world(domain, seed)
        outputs = {
            (e.name, rid): json.dumps(rec).lower() for e in domain.entities for rid, rec in state[e.table].items()
        }
        for e in domain.entities:
            referencing = {(x.name, a.name) for x in domain.entities for a in x.attrs if a.ref == e.name}
            answerable = [a for a in e.attrs if a.answerable and not a.ref]
            for rid, rec in state[e.table].items():
                for (other, oid), text in outputs.items():
                    if (other, oid) == (e.name, rid):
                        continue
                    if _norm(rid) in text:
                        orec = state[domain.entity(other).table][oid]
                        assert any(orec.get(name) == rid for (x, name) in referencing if x == other), (seed, rid, oid)
                    for a in answerable:
                        assert _norm(rec[a.name]) not in text, (seed, e.name, a.name, rec[a.name], oid)
            for a in answerable:
                if a.type == "integer":
                    column = [rec[a.name] for rec in state[e.table].values()]
                    assert len(set(column)) == len(column) and min(column) >= 100, (seed, e.name, a.name)
                if a.type == "string":
                    assert not any("," in rec[a.name] for rec in state[e.table].values()), (e.name, a.name)
        for u in domain.updates:
            code = _norm(f"{u.confirmation_prefix}{state['counters'][u.name]}")
            assert not any(code in text for text in outputs.values()), (seed, u.name)
