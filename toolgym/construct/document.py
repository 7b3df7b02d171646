"""Stage 2, document generation: one narrow function document per sub-question, generated from the spec.

A read of attribute ``a`` of entity ``e`` becomes ``get_<e>_<a>(<e.key>)`` returning the key and that one
field; an update becomes ``<update>(<e.key>[, <param>])``; asking the user (``missing_info``) becomes
``ask_user(question)``. Identical sub-questions (the same attribute of two
records) get identical documents here; stage 3 merges overlapping ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolgym.construct.decompose import Decomposition, SubQuestion
from toolgym.construct.spec import Attr, Domain, Entity, Update
from toolgym.construct.tool_docs import (
    Call,
    Function,
    Param,
    functions_from_list,
    functions_to_list,
    gold_call,
    interned,
)


@dataclass
class Documents:
    """Stage 2 output: ``functions[i]`` is the document of the i-th sub-question; ``calls`` its gold calls."""

    functions: list[Function]
    calls: dict[str, Call]

    def to_dict(self) -> dict[str, Any]:
        return {
            "functions": functions_to_list(self.functions),
            "calls": {k: c.to_dict() for k, c in self.calls.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Documents:
        return cls(functions_from_list(d["functions"]), {k: Call.from_dict(c) for k, c in d["calls"].items()})

    def tools(self) -> list[dict[str, Any]]:
        return [f.schema() for f in self.functions]


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def id_param(entity: Entity) -> Param:
    return Param(entity.key, "id", {"type": "string", "description": f"The id of the {entity.name}."})


def value_param(attr: Attr) -> Param:
    schema: dict[str, Any] = {"type": attr.type, "description": f"The new {attr.noun}."}
    if attr.enum:
        schema["description"] += " One of: " + ", ".join(attr.enum) + "."
    return Param(attr.name, "value", schema)


def read_function(entity: Entity, attrs: list[Attr], name: str | None = None) -> Function:
    """``get_<entity>[_<attr>](<key>)``: one field (narrow) or the whole record (merged)."""
    key = ("read", id(entity), tuple(a.name for a in attrs), name)
    return interned(key, entity, lambda: _read_function(entity, attrs, name))


def whole_read(entity: Entity) -> Function:
    """``get_<entity>(<key>)`` returning every attribute (the merged read of stage 3)."""
    return interned(
        ("whole", id(entity)), entity, lambda: _read_function(entity, list(entity.attrs), f"get_{entity.name}")
    )


def _read_function(entity: Entity, attrs: list[Attr], name: str | None) -> Function:
    if name is None:
        name = f"get_{entity.name}_{attrs[0].name}" if len(attrs) == 1 else f"get_{entity.name}"
    if len(attrs) == 1:
        desc = f"Get the {attrs[0].noun} of {article(entity.name)} {entity.name} ({entity.description}) by its id."
    else:
        nouns = ", ".join(a.noun for a in attrs)
        desc = f"Get {article(entity.name)} {entity.name} record ({entity.description}) by its id: returns its {nouns}."
    spec = {"entity": entity.name, "table": entity.table, "key": entity.key, "fields": [a.name for a in attrs]}
    return Function(name, desc, "read", spec, [id_param(entity)])


def update_spec(update: Update, entity: Entity) -> dict[str, Any]:
    return {
        "update": update.name,
        "entity": entity.name,
        "table": entity.table,
        "key": entity.key,
        "sets": dict(update.sets),
        "require": dict(update.require),
        "param": update.param.name if update.param else None,
        "allowed": list(update.param.enum) if update.param and update.param.enum else None,
        "prefix": update.confirmation_prefix,
    }


def update_function(update: Update, entity: Entity) -> Function:
    """``<update>(<key>[, <param>])``: performs the update and returns a confirmation code."""
    return interned(("update", id(update), id(entity)), (update, entity), lambda: _update_function(update, entity))


def _update_function(update: Update, entity: Entity) -> Function:
    params = [id_param(entity)]
    if update.param is not None:
        params.append(value_param(update.param))
    desc = (
        f"{update.description} Takes the {entity.name} id. Returns the updated {entity.name} and a confirmation code."
    )
    return Function(update.name, desc, "update", update_spec(update, entity), params)


ASK_USER = "ask_user"


def ask_function() -> Function:
    """``ask_user(question)``: the scripted user's reply, which holds the value the request left out, if any.

    The same function in every scenario of an env that offers it, so that its presence tells nothing about
    whether anything is missing.
    """
    return interned(("ask",), None, _ask_function)


def _ask_function() -> Function:
    desc = (
        "Ask the user a question, when the request lacks something the tools need (such as which record it is "
        "about) and no tool can tell. Returns the user's reply."
    )
    question = Param("question", "question", {"type": "string", "minLength": 1, "description": "What to ask."})
    return Function(ASK_USER, desc, "ask", {"reply_from": "user"}, [question])


def narrow_function(domain: Domain, sq: SubQuestion) -> Function:
    if sq.asks_user:
        return ask_function()
    entity = domain.entity(sq.entity)
    if sq.update is not None:
        update = next(u for u in domain.updates if u.name == sq.update)
        return update_function(update, entity)
    return read_function(entity, [entity.attr(sq.attr)])


def document(domain: Domain, decomposition: Decomposition) -> Documents:
    """Stage 2: one narrow function document per sub-question, and the gold call each implies."""
    fns = [narrow_function(domain, sq) for sq in decomposition.subquestions]
    calls = {sq.id: gold_call(fn, sq) for sq, fn in zip(decomposition.subquestions, fns, strict=True)}
    return Documents(fns, calls)
