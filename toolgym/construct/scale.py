"""Stage 4, complexity scaling: FTRL's four strategies, as seeded, composable knobs.

Applied in this order (each a pure function of its input and the ``random.Random`` it is given):

* **functional generalization** (``generalize``): 1 = every read of an entity becomes
  ``get_<entity>(<key>, fields=[...])`` (an optional array of enum field names; the gold call asks for the
  field it needs); 2 = every read becomes one ``lookup_record(record_type, record_id, fields)`` over all
  entities and the updates of an entity become ``manage_<entity>(<key>, action, value)``.
* **toolset extension** (``distractors``): ``k`` distractor tools drawn from near-miss look-alikes
  (``get_hotel_info``, ``get_hotel_details``, ... returning synthetic data), reads of other entities or of
  fields no sub-question asks for, and the domain's other updates, all in the generalized style. A read
  distractor never returns a field a sub-question reads on that entity (stage 5 checks by running it).
* **parameter type generalization** (``type_generalize``): 1 = id parameters get the entity's ``pattern``,
  update values with a closed set get an ``enum``; 2 = reads take a list of ids (``hotel_ids``) and return
  ``{"results": [...]}``, update values move into a nested ``changes`` object.
* **parameter expansion** (``expand``): 1 = one or two optional parameters per tool (``language``,
  ``include_history``, ``detail_level``; ``notify``, ``reason``) that the code accepts; 2 = also a required
  ``locale`` the gold call fills with ``"en-US"``.

Gold calls are re-derived from the final functions (see :func:`toolgym.construct.tool_docs.gold_call`).

The kinds beyond FTRL's: an ``irrelevance`` scenario withholds its needed functions and offers ``distractors + 1``
of the domain's other tools instead (at least one of them a real read or update, not a look-alike), so it offers
as many tools as its single-hop twin and none that answers. With ``ask_user`` set (an env whose kinds include the
extra ones) every scenario offers ``ask_user``, needed or not. ``ask_user`` is never generalized or expanded: it
is the same tool in every scenario.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from toolgym.construct.decompose import Decomposition
from toolgym.construct.document import (
    article,
    ask_function,
    id_param,
    read_function,
    update_function,
    update_spec,
    whole_read,
)
from toolgym.construct.integrate import Integrated
from toolgym.construct.spec import Domain, Entity
from toolgym.construct.tool_docs import (
    Call,
    Function,
    Param,
    functions_from_list,
    functions_to_list,
    gold_call,
    interned,
)

LEVELS = {"generalize": 2, "type_generalize": 2, "expand": 2}
MAX_DISTRACTORS = 12

FAKE_NAMES = (
    ("get_{e}_info", "Get general information about {a} {e}"),
    ("get_{e}_details", "Get additional details of {a} {e}"),
    ("fetch_{e}_summary", "Fetch a short summary of {a} {e}"),
    ("get_{e}_overview", "Get an overview of {a} {e}"),
)
FAKE_FIELDS: dict[str, list[Any]] = {
    "summary": [
        "Well reviewed by recent visitors.",
        "Popular with business travellers.",
        "Recently updated record.",
        "Quiet and friendly.",
        "Good value for money.",
    ],
    "tags": [["popular"], ["family friendly"], ["quiet"], ["central"], ["eco certified"], ["new"]],
    "review_count": [12, 27, 38, 45, 64, 83, 91],
    "notes": ["No special notes.", "Updated by the support team.", "Verified record.", "Pending review."],
    "highlights": [["fast service"], ["priority support"], ["top rated"], ["flexible terms"]],
    "availability": ["open", "limited", "on request"],
}
FAKE_NOUNS = {
    "summary": "a summary",
    "tags": "tags",
    "review_count": "the number of reviews",
    "notes": "notes",
    "highlights": "highlights",
    "availability": "availability",
}
READ_EXTRAS = (
    Param(
        "language",
        "extra",
        {"type": "string", "enum": ["en", "fr", "de", "es", "ja"], "description": "Language of the response."},
        False,
    ),
    Param(
        "include_history",
        "extra",
        {"type": "boolean", "description": "Also return the record's change history."},
        False,
    ),
    Param(
        "detail_level",
        "extra",
        {"type": "string", "enum": ["basic", "full"], "description": "How much detail to return."},
        False,
    ),
)
WRITE_EXTRAS = (
    Param("notify", "extra", {"type": "boolean", "description": "Send a notification about the change."}, False),
    Param(
        "reason",
        "extra",
        {"type": "string", "maxLength": 200, "description": "Why the change is made (kept for the records)."},
        False,
    ),
)
LOCALE = Param(
    "locale",
    "extra",
    {
        "type": "string",
        "pattern": "^[a-z]{2}-[A-Z]{2}$",
        "description": "The user's locale as language-REGION; use 'en-US' unless the user says otherwise.",
    },
    True,
    "en-US",
)


@dataclass
class Scaled:
    """Stage 4 output: the offered functions (needed + distractors, in offer order) and the gold calls."""

    functions: list[Function]
    calls: dict[str, Call]
    distractors: list[str]
    renames: dict[str, str]
    knobs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "functions": functions_to_list(self.functions),
            "calls": {k: c.to_dict() for k, c in self.calls.items()},
            "distractors": list(self.distractors),
            "renames": dict(self.renames),
            "knobs": dict(self.knobs),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaled:
        return cls(
            functions_from_list(d["functions"]),
            {k: Call.from_dict(c) for k, c in d["calls"].items()},
            list(d["distractors"]),
            dict(d["renames"]),
            dict(d.get("knobs", {})),
        )

    def tools(self) -> list[dict[str, Any]]:
        return [f.schema() for f in self.functions]


# ------------------------------------------------------------------------------- functional generalization


def fields_param(names: list[str]) -> Param:
    return Param(
        "fields",
        "fields",
        {
            "type": "array",
            "items": {"type": "string", "enum": list(names)},
            "minItems": 1,
            "uniqueItems": True,
            "description": "Return only these fields (default: all).",
        },
        False,
    )


def entity_read(entity: Entity) -> Function:
    """Level 1: ``get_<entity>(<key>, fields)``."""
    return interned(("entity_read", id(entity)), entity, lambda: _entity_read(entity))


def _entity_read(entity: Entity) -> Function:
    base = whole_read(entity)
    desc = base.description + " Pass `fields` to get only some of them."
    params = [*base.params, fields_param([a.name for a in entity.attrs])]
    return Function(base.name, desc, base.op, base.spec, params)


def lookup_function(domain: Domain) -> Function:
    """Level 2: ``lookup_record(record_type, record_id, fields)`` over every entity of the domain."""
    return interned(("lookup", id(domain)), domain, lambda: _lookup_function(domain))


def _lookup_function(domain: Domain) -> Function:
    types = {e.name: {"table": e.table, "key": e.key, "fields": [a.name for a in e.attrs]} for e in domain.entities}
    names = list(dict.fromkeys(a.name for e in domain.entities for a in e.attrs))
    kinds = "; ".join(f"{e.name} ({e.description})" for e in domain.entities)
    desc = f"Look up any record by its type and id. Record types: {kinds}. Returns the record's fields."
    params = [
        Param("record_type", "type", {"type": "string", "enum": [e.name for e in domain.entities]}),
        Param("record_id", "id", {"type": "string", "description": "The id of the record."}),
        fields_param(names),
    ]
    return Function("lookup_record", desc, "lookup", {"types": types}, params)


def manage_function(domain: Domain, entity: Entity) -> Function:
    """Level 2: ``manage_<entity>(<key>, action, value)`` performing any update of the entity."""
    key = ("manage", id(domain), id(entity))
    return interned(key, (domain, entity), lambda: _manage_function(domain, entity))


def _manage_function(domain: Domain, entity: Entity) -> Function:
    updates = [u for u in domain.updates if u.entity == entity.name]
    actions = {u.name: update_spec(u, entity) for u in updates}
    lines = []
    value_types = set()
    for u in updates:
        line = f"{u.name}: {u.description.rstrip('.')}"
        if u.param is not None:
            value_types.add(u.param.type)
            line += f" (value: the new {u.param.noun}"
            line += f", one of {', '.join(u.param.enum)})" if u.param.enum else ")"
        lines.append(line)
    desc = f"Make a change to {article(entity.name)} {entity.name}. Actions: " + "; ".join(lines)
    desc += f". Returns the updated {entity.name} and a confirmation code."
    value_schema: dict[str, Any] = {"description": "The new value, for actions that take one."}
    if len(value_types) == 1:
        value_schema["type"] = value_types.pop()
    params = [
        id_param(entity),
        Param("action", "action", {"type": "string", "enum": list(actions)}),
    ]
    if any(u.param is not None for u in updates):
        params.append(Param("value", "value", value_schema, False))
    return Function(f"manage_{entity.name}", desc, "manage", {"entity": entity.name, "actions": actions}, params)


def _generalized(domain: Domain, fn: Function, level: int) -> Function:
    if level == 0:
        return fn
    if fn.op == "read":
        return lookup_function(domain) if level >= 2 else entity_read(domain.entity(fn.spec["entity"]))
    if fn.op == "update" and level >= 2:
        return manage_function(domain, domain.entity(fn.spec["entity"]))
    return fn


def generalize(domain: Domain, functions: list[Function], level: int) -> tuple[list[Function], dict[str, str]]:
    """The generalized functions (merged by name) and old name -> new name."""
    out: dict[str, Function] = {}
    renames: dict[str, str] = {}
    for fn in functions:
        new = _generalized(domain, fn, level)
        out.setdefault(new.name, new)
        renames[fn.name] = new.name
    return list(out.values()), renames


# ------------------------------------------------------------------------------------------ toolset extension


@lru_cache(maxsize=1024)
def _fake_fields(name: str) -> tuple[str, ...]:
    ranked = sorted(FAKE_FIELDS, key=lambda f: hashlib.sha256(f"{name}/{f}".encode()).digest())
    return tuple(sorted(ranked[:3]))


def fake_function(entity: Entity, pattern: str, text: str) -> Function:
    """A near-miss look-alike (``get_hotel_info``) returning synthetic data derived from the record id."""
    return interned(("fake", id(entity), pattern), entity, lambda: _fake_function(entity, pattern, text))


def _fake_function(entity: Entity, pattern: str, text: str) -> Function:
    a = article(entity.name)
    name = pattern.format(e=entity.name)
    fields = _fake_fields(name)
    desc = (
        text.format(a=a, e=entity.name)
        + f" ({entity.description}) by its id: "
        + ", ".join(FAKE_NOUNS[f] for f in fields)
    )
    desc += "."
    spec = {
        "entity": entity.name,
        "table": entity.table,
        "key": entity.key,
        "synth": {f: FAKE_FIELDS[f] for f in fields},
    }
    return Function(name, desc, "fake", spec, [id_param(entity)])


_POOLS: dict[tuple, tuple[Domain, list[Function]]] = {}
_CANDIDATES: dict[tuple[int, int], tuple[Domain, list[tuple[Function, str, str, str | None]]]] = {}


def _candidates(domain: Domain, level: int) -> list[tuple[Function, str, str, str | None]]:
    """Every distractor candidate of a domain at a generalization level: (function, kind, entity, attr/update)."""
    got = _CANDIDATES.get((id(domain), level))
    if got is not None and got[0] is domain:
        return got[1]
    out: list[tuple[Function, str, str, str | None]] = []
    for e in domain.entities:
        for pattern, text in FAKE_NAMES:
            out.append((fake_function(e, pattern, text), "fake", e.name, None))
    if level < 2:
        for e in domain.entities:
            whole = entity_read(e) if level == 1 else whole_read(e)
            out.append((whole, "entity", e.name, None))
            out.extend((read_function(e, [a]), "narrow", e.name, a.name) for a in e.attrs)
        for u in domain.updates:
            out.append((update_function(u, domain.entity(u.entity)), "update", u.entity, u.name))
    else:
        for e in domain.entities:
            if any(u.entity == e.name for u in domain.updates):
                out.append((manage_function(domain, e), "manage", e.name, None))
    _CANDIDATES[(id(domain), level)] = (domain, out)
    return out


def distractor_pool(domain: Domain, decomposition: Decomposition, needed: list[Function], level: int) -> list[Function]:
    """Every distractor candidate for this scenario, in a fixed order (the rng picks among them).

    Reads that could reveal a sub-answer are left out: the whole-record read of an entity some sub-question
    reads, and the narrow read of an attribute some sub-question asks for; so are updates the scenario uses.
    """
    key = (
        id(domain),
        level,
        tuple(sorted({f.name for f in needed})),
        tuple(sorted({(sq.entity, sq.attr or "", sq.update or "") for sq in decomposition.subquestions})),
    )
    got = _POOLS.get(key)
    if got is not None and got[0] is domain:
        return got[1]
    read_attrs: dict[str, set[str]] = {}
    updates_used = set()
    for sq in decomposition.subquestions:
        if sq.attr is not None:
            read_attrs.setdefault(sq.entity, set()).add(sq.attr)
        else:
            updates_used.add(sq.update)
    seen = {f.name for f in needed}
    out = []
    for fn, kind, entity, detail in _candidates(domain, level):
        if fn.name in seen:
            continue
        if kind == "entity" and entity in read_attrs:
            continue
        if kind == "narrow" and detail in read_attrs.get(entity, ()):
            continue
        if kind == "update" and detail in updates_used:
            continue
        seen.add(fn.name)
        out.append(fn)
    if len(_POOLS) > 20_000:
        _POOLS.clear()
    _POOLS[key] = (domain, out)
    return out


def pick_distractors(pool: list[Function], decomposition: Decomposition, k: int, r: random.Random) -> list[Function]:
    """``k`` distractors: half (rounded up) near misses of the entities the scenario touches, then any."""
    if k <= 0:
        return []
    touched = {sq.entity for sq in decomposition.subquestions}
    near = [f for f in pool if f.op == "fake" and f.spec["entity"] in touched]
    picked = r.sample(near, min(len(near), (k + 1) // 2))
    names = {f.name for f in picked}
    rest = [f for f in pool if f.name not in names]
    return picked + r.sample(rest, min(len(rest), k - len(picked)))


# --------------------------------------------------------------------------------- parameter type generalization


def _id_pattern(domain: Domain, fn: Function) -> str | None:
    if fn.op == "lookup":
        pats = [e.id_pattern for e in domain.entities]
        if not all(pats):
            return None
        return "^(?:" + "|".join(p.strip("^$") for p in pats) + ")$"
    return domain.entity(fn.spec["entity"]).id_pattern


def type_generalize(domain: Domain, fn: Function, level: int) -> Function:
    """Ids get patterns and values enums (level 1); reads take id lists, values nest in ``changes`` (2)."""
    if level == 0 or fn.op == "ask":
        return fn
    return interned(("typed", id(fn), level), fn, lambda: _type_generalize(domain, fn, level))


def _type_generalize(domain: Domain, fn: Function, level: int) -> Function:
    params = []
    for p in fn.params:
        if p.role == "id":
            schema = dict(p.schema)
            pattern = _id_pattern(domain, fn)
            if pattern:
                schema["pattern"] = pattern
            if level >= 2 and fn.op in ("read", "lookup", "fake"):
                noun = "record" if fn.op == "lookup" else fn.spec["entity"]
                items = {k: v for k, v in schema.items() if k != "description"}
                params.append(
                    Param(
                        p.name + "s",
                        "ids",
                        {
                            "type": "array",
                            "items": items,
                            "minItems": 1,
                            "maxItems": 5,
                            "description": f"The ids of the {noun}s to get (results come in the same order).",
                        },
                    )
                )
                continue
            params.append(Param(p.name, p.role, schema, p.required, p.gold))
        elif p.role == "value" and fn.op == "update":
            schema = dict(p.schema)
            allowed = fn.spec.get("allowed")
            if allowed:
                schema["enum"] = list(allowed)
            if level >= 2:
                param = fn.spec["param"]
                params.append(
                    Param(
                        "changes",
                        "changes",
                        {
                            "type": "object",
                            "properties": {param: schema},
                            "required": [param],
                            "additionalProperties": False,
                            "description": "The fields to change.",
                        },
                    )
                )
                continue
            params.append(Param(p.name, p.role, schema, p.required, p.gold))
        elif p.role == "value" and fn.op == "manage" and level >= 2:
            props = {}
            for act in fn.spec["actions"].values():
                if act["param"]:
                    s: dict[str, Any] = {"description": f"The new {act['param'].replace('_', ' ')}."}
                    if act["allowed"]:
                        s["type"], s["enum"] = "string", list(act["allowed"])
                    props[act["param"]] = s
            schema = {
                "type": "object",
                "properties": props,
                "additionalProperties": False,
                "description": "The fields to change, for actions that take a value.",
            }
            params.append(Param("changes", "changes", schema, False))
        else:
            params.append(p)
    desc = fn.description
    if level >= 2 and fn.op in ("read", "lookup", "fake"):
        desc += ' Takes a list of ids and returns {"results": [...]} in the same order.'
    return Function(fn.name, desc, fn.op, fn.spec, params)


# ---------------------------------------------------------------------------------------- parameter expansion


def expand(fn: Function, level: int, r: random.Random) -> Function:
    """One or two optional extra parameters (level 1), plus the required ``locale`` (level 2)."""
    if level == 0 or fn.op == "ask":
        return fn
    pool = WRITE_EXTRAS if fn.op in ("update", "manage") else READ_EXTRAS
    taken = {p.name for p in fn.params}
    free = [p for p in pool if p.name not in taken]
    extra = r.sample(free, min(len(free), 1 + r.randrange(2)))
    extra.sort(key=lambda p: pool.index(p))
    if level >= 2 and "locale" not in taken:
        extra.insert(0, LOCALE)
    key = ("expanded", id(fn), tuple(p.name for p in extra))
    return interned(key, fn, lambda: Function(fn.name, fn.description, fn.op, fn.spec, [*fn.params, *extra]))


# ----------------------------------------------------------------------------------------------------- stage


def scale(
    domain: Domain,
    decomposition: Decomposition,
    integrated: Integrated,
    r: random.Random,
    *,
    generalize_level: int = 0,
    expand_level: int = 0,
    type_level: int = 0,
    distractors: int = 3,
    ask_user: bool = False,
) -> Scaled:
    """Stage 4: generalize, extend with distractors, generalize parameter types, expand parameters; shuffle."""
    needed, renames = generalize(domain, integrated.functions, generalize_level)
    pool = distractor_pool(domain, decomposition, needed, generalize_level)
    irrelevance = decomposition.kind == "irrelevance"
    if irrelevance:
        extra = pick_irrelevant(pool, decomposition, distractors + 1, r)
        offered = list(extra)
    else:
        extra = pick_distractors(pool, decomposition, distractors, r)
        offered = [*needed, *extra]
    if ask_user and not any(f.op == "ask" for f in offered):
        offered.append(ask_function())
    offered = [expand(type_generalize(domain, fn, type_level), expand_level, r) for fn in offered]
    r.shuffle(offered)
    by_name = {f.name: f for f in offered}
    calls = {}
    if not irrelevance:
        calls = {
            sq.id: gold_call(by_name[renames[integrated.calls[sq.id].tool]], sq) for sq in decomposition.subquestions
        }
    knobs = {
        "generalize": generalize_level,
        "expand": expand_level,
        "type_generalize": type_level,
        "distractors": distractors,
    }
    if ask_user:
        knobs["ask_user"] = True
    return Scaled(offered, calls, [f.name for f in extra], renames, knobs)


def pick_irrelevant(pool: list[Function], decomposition: Decomposition, k: int, r: random.Random) -> list[Function]:
    """An irrelevance scenario's ``k`` tools: one real read or update of the domain, then :func:`pick_distractors`.

    ``pool`` already leaves out every function that could answer the query (see :func:`distractor_pool`).
    """
    real = [f for f in pool if f.op != "fake"]
    if not real:
        return []
    first = real[r.randrange(len(real))]
    rest = [f for f in pool if f.name != first.name]
    return [first, *pick_distractors(rest, decomposition, k - 1, r)]
