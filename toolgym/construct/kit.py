"""The domain kit: what spec-based domain modules share, so that a new domain is one short module.

A domain's ``world(rng)`` draws its records from one bulk rng call and derives every value from those draws
with cheap Python arithmetic. The pieces that recur across domains live here: the name pools and the stride
walks that give distinct names, the consonant alphabets of codes, the two id styles (bucketed and strided)
as helpers, the people tables and phone numbers built on the bucketed style, the update counters, and
:func:`answer_leaks`, the rule that no answer occurs inside another record, checked once for every domain
(by ``tests/test_domains.py``) instead of argued in each module.

Every helper reproduces, draw for draw, the arithmetic the domains were written with: a seed gives the same
world as before the kit existed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from toolgym.construct.spec import Attr, Domain, Entity, Update
from toolgym.reward import answer_in_output, normalize

# Guests, customers, diners, patients, senders: 12 first names x 10 last names, 120 distinct full names.
FIRST = ("Amara", "Bruno", "Chloe", "Dmitri", "Esme", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Keiko", "Lars")
LAST = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Varga", "Quispe", "Haddad", "Novak", "Ferreira", "Brandt")
FIRST_LOWER = tuple(n.lower() for n in FIRST)
LAST_LOWER = tuple(n.lower() for n in LAST)
N_PEOPLE = len(FIRST) * len(LAST)
PEOPLE_STRIDES = (7, 29, 31, 41, 43, 53, 67, 77)  # coprime with 12 * 10: a stride walk gives distinct names
STRIDES_10 = (1, 3, 7, 9)  # coprime with 10: a stride walk over 10 items visits each once
# Managers and head chefs: disjoint from FIRST/LAST, so a staff name never occurs in a customer record.
STAFF_FIRST = ("Marco", "Yuki", "Sofia", "Rafael", "Noor", "Pierre", "Lucia", "Tomas")
STAFF_LAST = ("Bellini", "Ishikawa", "Duarte", "Kowalski", "Rahman", "Laurent", "Castillo", "Eriksen")

CODE_CHARS = "BCDFGHJKMNPQRSTVWXYZ"  # consonants (no L): codes never spell words
LETTERS = "BCDFGHJKLMNPQRSTVWXZ"  # consonants (no Y): the alphabet of PAIRS
PAIRS = tuple(a + b for a in LETTERS for b in LETTERS)  # 400 two-letter codes, indexed by int(x * 400)
# Precomputed strings: f-strings with format specs cost ~1 us each in a world, a table lookup ~0.1 us.
DATES = tuple(f"2025-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29))  # 336 days, int(x * 336)
STEPS = (7919, 12347, 30011, 45673, 69313, 81619)  # primes > 5, coprime with 90000 and 900000: strides never repeat


def words(rng: np.random.Generator, n: int) -> list[int]:
    """One bulk draw of ``n`` 62-bit words, to split with shifts and modulo (one word a record, one or two for
    the world): a numpy call costs tens of microseconds in a world, Python int arithmetic far less."""
    return rng.integers(0, 1 << 62, size=n).tolist()


def entity(name: str, description: str, id_pattern: str, *attrs: Attr, table: str = "", label: str = "") -> Entity:
    """An entity keyed by ``<name>_id``, in table ``<name>s`` (or ``table``), named ``"<name> <id>"`` (or ``label``)."""
    key = f"{name}_id"
    return Entity(
        name=name,
        table=table or f"{name}s",
        key=key,
        label=label or f"{name} {{{key}}}",
        description=description,
        attrs=attrs,
        id_pattern=id_pattern,
    )


def name_walk(word: int) -> tuple[int, int]:
    """Offset and stride of a walk over the 120 people: person ``i`` is ``(offset + i * stride) % 120``."""
    return word % N_PEOPLE, PEOPLE_STRIDES[(word >> 7) % 8]


def person(j: int) -> tuple[str, str]:
    """Full name and email local part (``first.last``) of person ``j`` of the 120."""
    f, last = j % len(FIRST), j // len(FIRST)
    return f"{FIRST[f]} {LAST[last]}", f"{FIRST_LOWER[f]}.{LAST_LOWER[last]}"


def people(
    prefix: str, draws: Sequence[int], word: int, width: int = 750, base: int = 1000
) -> Iterator[tuple[int, int, str, str, str]]:
    """The records of a table of people, one draw each: index ``i``, draw, bucketed id, full name, email local part.

    The names walk the 120 people from ``word`` (:func:`name_walk`), so no two records of a table share a name;
    the draw is the record's own, for the fields the domain adds (its low bits already placed the id).
    """
    off, stride = name_walk(word)
    for i, d in enumerate(draws):
        name, email = person((off + i * stride) % N_PEOPLE)
        yield i, d, bucket_id(prefix, i, d, width, base), name, email


def full_names(first: Sequence[str], last: Sequence[str]) -> tuple[str, ...]:
    """Every ``"First Last"``, first-name major: name ``f * len(last) + l``."""
    return tuple(f"{f} {x}" for f in first for x in last)


def email_names(first: Sequence[str], last: Sequence[str]) -> tuple[str, ...]:
    """Email local parts ``first.last`` in the order of :func:`full_names`."""
    return tuple(f"{f.lower()}.{x.lower()}" for f in first for x in last)


def bucket(i: int, draw: int, width: int = 750, base: int = 1000) -> int:
    """Record ``i``'s number in its own bucket ``[base + width * i, base + width * (i + 1))``: distinct, random."""
    return base + width * i + draw % width


def bucket_id(prefix: str, i: int, draw: int, width: int = 750, base: int = 1000) -> str:
    """A bucketed id, e.g. ``CU1483``: fixed width while the buckets stay below the next power of ten."""
    return f"{prefix}{base + width * i + draw % width}"


def phone(prefix: str, i: int, draw: int, width: int = 750) -> str:
    """Record ``i``'s phone number ``<prefix>-<bucket>-<two digits>``, e.g. ``+44-20-1483-57``.

    The bucket (:func:`bucket`) makes the numbers of a table distinct; the two digits read ``draw`` shifted past
    the bucket's bits (by ``width.bit_length()``: 10 for the default width), so one draw serves both.
    """
    return f"{prefix}-{bucket(i, draw, width)}-{10 + (draw >> width.bit_length()) % 90}"


def strided_ids(prefix: str, n: int, base: float, step: float, offset: int = 0) -> list[str]:
    """``n`` strided ids ``<prefix>10000..99999`` from two uniforms: a random base plus a stride from STEPS.

    A stride coprime with 90000 never repeats within 90000 ids; ``offset`` places a second table on the same
    walk (a shifted copy of it) so the two tables' ids are distinct as well.
    """
    b, s = int(base * 90000), STEPS[int(step * 6)]
    return [prefix + str(10000 + (b + i * s + offset) % 90000) for i in range(n)]


def letters(word: int, shift: int, n: int, chars: str = CODE_CHARS) -> str:
    """``n`` (1 to 4) characters of ``chars`` read from ``word`` five bits apart, starting at bit ``shift``.

    Unrolled: a loop or a joined generator costs two to four times as much per code, and worlds make dozens.
    """
    if not 1 <= n <= 4:
        raise ValueError(f"letters reads 1 to 4 characters, not {n}")
    size = len(chars)
    w = word >> shift
    out = chars[w % size]
    if n > 1:
        out += chars[(w >> 5) % size]
    if n > 2:
        out += chars[(w >> 10) % size]
    if n > 3:
        out += chars[(w >> 15) % size]
    return out


def word_counters(
    updates: Sequence[Update], word: int, shift: int = 0, step: int = 13, span: int = 9000
) -> dict[str, int]:
    """The first confirmation number of every update, 4 digits from ``1000``, read from one 62-bit word."""
    return {u.name: 1000 + (word >> (shift + step * k)) % span for k, u in enumerate(updates)}


def uniform_counters(updates: Sequence[Update], draws: Sequence[float]) -> dict[str, int]:
    """The first confirmation number of every update, ``1000..8999``, one uniform draw each."""
    return {u.name: 1000 + int(x * 8000) for u, x in zip(updates, draws, strict=False)}


class Uniforms:
    """One bulk draw of uniforms read front to back: numpy calls cost microseconds, list slices far less."""

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.values = rng.random(n).tolist()
        self.at = 0

    def take(self, n: int) -> list[float]:
        out = self.values[self.at : self.at + n]
        self.at += n
        return out

    def order(self, n: int) -> list[int]:
        """A random permutation of ``range(n)`` (the ranks of the next ``n`` draws)."""
        return sorted(range(n), key=self.take(n).__getitem__)


def answer_leaks(domain: Domain, state: dict[str, Any]) -> list[str]:
    """Every way a world breaks the rule that FTRL's substring matching needs: no answer inside another record.

    Under FTRL a sub-answer counts as found when it occurs in a tool output, so a value that also occurs in a
    record other than its own could be "found" by calling a tool on the wrong record. The rule, for every
    record's tool output (its JSON, both ASCII-escaped and not):

    * an answerable, non-ref value occurs in its own record only; it is ASCII, holds no comma (FTRL splits
      answers at commas), and an answerable integer column is distinct and at least 100;
    * a record id occurs elsewhere only in the records whose ref attributes hold it (that is what a hop reads);
    * no update's next confirmation code occurs in any record, so only the write tool returns it.

    Returns one message per violation (empty: the world keeps the rule).
    """
    out: list[str] = []
    records = [(e, rid, rec) for e in domain.entities for rid, rec in state[e.table].items()]
    texts = [(json.dumps(rec).lower(), json.dumps(rec, ensure_ascii=False).lower()) for _, _, rec in records]
    refs = {
        e.name: [(x.name, a.name) for x in domain.entities for a in x.attrs if a.ref == e.name] for e in domain.entities
    }
    for n, (e, rid, rec) in enumerate(records):
        values = [(a, rec[a.name]) for a in e.attrs if a.answerable and not a.ref]
        for a, v in values:
            if isinstance(v, str) and ("," in v or not v.isascii()):
                out.append(f"{e.name}.{a.name} = {v!r} must be ASCII without commas")
        for m, (e2, rid2, rec2) in enumerate(records):
            if m == n:
                continue
            ascii_text, text = texts[m]
            for a, v in values:
                if normalize(str(v)) in ascii_text or str(v).lower() in text:
                    out.append(f"{e.name}.{a.name} = {v!r} of {rid} occurs in {e2.name} {rid2}")
            if (normalize(rid) in ascii_text or answer_in_output(text, rid)) and not any(
                x == e2.name and rec2.get(f) == rid for x, f in refs[e.name]
            ):
                out.append(f"id {rid} occurs in {e2.name} {rid2}, which does not reference it")
    for e in domain.entities:
        table = state[e.table]
        for a in e.attrs:
            if a.answerable and not a.ref and a.type == "integer":
                column = [rec[a.name] for rec in table.values()]
                if len(set(column)) != len(column) or min(column) < 100:
                    out.append(f"answerable integers {e.name}.{a.name} must be distinct and >= 100")
    for u in domain.updates:
        code = normalize(f"{u.confirmation_prefix}{state['counters'][u.name]}")
        if any(code in ascii_text or code in text for ascii_text, text in texts):
            out.append(f"the confirmation code {code.upper()} of {u.name} occurs in a record")
    return out
