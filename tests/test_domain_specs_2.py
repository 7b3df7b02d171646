"""Domain specs WeatherTravel, Library, HealthcareAppointments, MovieTickets, PackageShipping.

Each spec must validate, generate deterministic and varied worlds quickly, and support what the pipeline
derives from it: multi-hop chains whose intermediate answers cannot leak, updates that can succeed and fail,
and answers that no other record's tool output contains.
"""

from __future__ import annotations

import importlib
import json
import re
from collections import Counter
from functools import cache

import numpy as np
import pytest

from toolgym.construct.spec import Domain, validate_domain
from toolgym.reward import answer_in_output

MODULES = ("weather_travel", "library", "healthcare_appointments", "movie_tickets", "package_shipping")
SEEDS = range(60)


DOMAINS = {m: importlib.import_module(f"toolgym.construct.domains.{m}").DOMAIN for m in MODULES}


@pytest.fixture(params=MODULES)
def domain(request) -> Domain:
    return DOMAINS[request.param]


@cache
def _worlds(module: str) -> list[dict]:
    return [DOMAINS[module].world(np.random.default_rng(seed)) for seed in SEEDS]


def worlds(domain: Domain) -> list[dict]:
    return _worlds(next(m for m, d in DOMAINS.items() if d is domain))


def dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


def test_validates_over_200_seeds(domain):
    validate_domain(domain, range(200))


def test_world_is_deterministic(domain):
    for seed in (0, 1, 12345):
        assert domain.world(np.random.default_rng(seed)) == domain.world(np.random.default_rng(seed))


def test_world_differs_across_seeds(domain):
    texts = {json.dumps(w, sort_keys=True) for w in worlds(domain)}
    assert len(texts) == len(SEEDS)
    for e in domain.entities:  # ids vary, not only values
        assert len({tuple(sorted(w[e.table])) for w in worlds(domain)}) > len(SEEDS) // 2


def test_shape(domain):
    assert 3 <= len(domain.entities) <= 5
    assert 2 <= len(domain.updates) <= 3
    for e in domain.entities:
        assert 4 <= len(e.attrs) <= 7, e.name
        assert sum(a.answerable and not a.ref for a in e.attrs) >= 1 or any(a.ref for a in e.attrs), e.name
    for w in worlds(domain):
        assert set(w) == {e.table for e in domain.entities} | {"counters"}
        for e in domain.entities:
            assert 6 <= len(w[e.table]) <= 12, e.table


def test_ids_fixed_width_and_labels_unique(domain):
    for w in worlds(domain):
        for e in domain.entities:
            ids = list(w[e.table])
            assert e.id_pattern and all(re.fullmatch(e.id_pattern, i) for i in ids), e.table
            assert len({len(i) for i in ids}) == 1
            labels = [e.label.format(**r) for r in w[e.table].values()]
            assert len(set(labels)) == len(labels)
            assert all(rid in label for rid, label in zip(ids, labels, strict=True))


def longest_chain(domain: Domain) -> int:
    """Most ref hops along a path that never revisits an entity."""

    def walk(entity: str, seen: frozenset) -> int:
        best = 0
        for a in domain.entity(entity).attrs:
            if a.ref and a.ref not in seen:
                best = max(best, 1 + walk(a.ref, seen | {a.ref}))
        return best

    return max(walk(e.name, frozenset({e.name})) for e in domain.entities)


def test_refs_form_long_chains(domain):
    assert sum(a.ref is not None for e in domain.entities for a in e.attrs) >= 2
    assert longest_chain(domain) >= 3


def test_every_ref_column_has_a_unique_value(domain):
    """A chain can start at a record whose hop answer no other record of the table shows."""
    for w in worlds(domain):
        for e in domain.entities:
            for a in e.attrs:
                if a.ref:
                    counts = Counter(r[a.name] for r in w[e.table].values())
                    assert 1 in counts.values(), (e.name, a.name)


def test_updates_can_succeed_and_fail(domain):
    for w in worlds(domain):
        for u in domain.updates:
            table = w[domain.entity(u.entity).table].values()
            ok = [r for r in table if all(r[f] == v for f, v in u.require.items())]
            assert ok, u.name
            if u.require:
                assert len(ok) < len(table), u.name
            if u.param:
                assert u.param.enum and len(u.param.enum) >= 2
                assert u.param == domain.entity(u.entity).attr(u.param.name)
            assert isinstance(w["counters"][u.name], int) and 1000 <= w["counters"][u.name] <= 9999


def test_answers_do_not_leak(domain):
    """An answerable value occurs in its own record's output only; ids only where they are referenced."""
    for w in worlds(domain):
        records = [(e, rid, r, dumps(r)) for e in domain.entities for rid, r in w[e.table].items()]
        for e, rid, r, _ in records:
            for a in e.attrs:
                if a.answerable and not a.ref:
                    value = str(r[a.name])
                    assert "," not in value and value.isascii(), (e.name, a.name, value)
                    others = [(e2.name, rid2) for e2, rid2, _, out in records if rid2 != rid and value.lower() in out]
                    assert not others, (e.name, a.name, value, others)
        for e in domain.entities:
            refs = [(e2.name, a.name) for e2 in domain.entities for a in e2.attrs if a.ref == e.name]
            for rid in w[e.table]:
                holders = [
                    (e2.name, rid2)
                    for e2, rid2, r2, out in records
                    if rid2 != rid and answer_in_output(out, rid) and not any(r2.get(f) == rid for _, f in refs)
                ]
                assert not holders, (rid, holders)
        for u in domain.updates:
            code = u.confirmation_prefix + str(w["counters"][u.name])
            pattern = re.compile(re.escape(u.confirmation_prefix.lower()) + r"[0-9]{4}")
            assert not any(pattern.search(out.lower()) for *_, out in records), code
