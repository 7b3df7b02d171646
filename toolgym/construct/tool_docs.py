"""The function-document model shared by stages 2-5: a :class:`Function` is one tool as the pipeline sees it.

A document carries its OpenAI schema ingredients (name, description, parameters) *and* a machine-readable
behaviour (``op`` + ``spec``), so the later stages can rewrite it (merge, generalise, add parameters) and
deployment can generate its code from a template, without ever parsing text. Every parameter has a ``role``
that says how the gold call fills it from a sub-question and how the tool code reads it:

=========  ===============================================  ================================
role       meaning                                          gold value
=========  ===============================================  ================================
id         the record id                                    the sub-question's argument
ids        a list of record ids (type generalization)       ``[argument]``
type       the record type (``lookup_record``)              the sub-question's entity
fields     which fields to return (functional gen.)         ``[attribute]``
action     which update to perform (``manage_<entity>``)    the sub-question's update
value      the update's parameter value                     the sub-question's value
changes    an object holding the update's parameter value   ``{param: value}``
extra      an added parameter the behaviour ignores/checks  ``gold`` when required, else left out
question   what ``ask_user`` asks the user                  the sub-question's text
=========  ===============================================  ================================

Ops: ``read`` (one entity, ``spec``: entity, table, key, fields), ``lookup`` (any entity, ``spec.types``),
``update`` (one update, ``spec``: the update), ``manage`` (several updates of one entity, ``spec.actions``),
``fake`` (a distractor returning synthetic data, ``spec.synth``) and ``ask`` (``ask_user``: the scripted user's
reply, read from the world's ``user`` entry; offered only by envs whose kinds include the extra ones).

Functions are treated as immutable values: the stages build them through :func:`interned`, so the same
function (e.g. ``get_hotel`` of a domain at a given scaling) is one object across scenarios, and its schema,
code key, source and argument validator are computed once (memoized on the object). Which sub-question a
function serves is not stored on it: each stage's ``calls`` (sub-question id -> gold call) says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolgym.scenario import tool_schema

ROLES = ("id", "ids", "type", "fields", "action", "value", "changes", "extra", "question")
OPS = ("read", "lookup", "update", "manage", "fake", "ask")
READ_OPS = ("read", "lookup", "fake")


@dataclass
class Param:
    """One parameter: its JSON schema, whether it is required, and its role (see the module docstring)."""

    name: str
    role: str
    schema: dict[str, Any]
    required: bool = True
    gold: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "schema": self.schema,
            "required": self.required,
            "gold": self.gold,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Param:
        return cls(d["name"], d["role"], dict(d["schema"]), bool(d.get("required", True)), d.get("gold"))


@dataclass(eq=False)
class Function:
    """One function document: schema ingredients and behaviour (``op`` + ``spec``). Do not mutate."""

    name: str
    description: str
    op: str
    spec: dict[str, Any]
    params: list[Param]

    def param(self, role: str) -> Param | None:
        for p in self.params:
            if p.role == role:
                return p
        return None

    def schema(self) -> dict[str, Any]:
        """The OpenAI function schema offered to the model (built once per object; treat it as read-only)."""
        got = self.__dict__.get("memo_schema")
        if got is None:
            got = self.__dict__["memo_schema"] = tool_schema(
                self.name,
                self.description,
                {p.name: p.schema for p in self.params},
                [p.name for p in self.params if p.required],
            )
        return got

    def code_key(self) -> str:
        """Everything the generated code depends on (not the description): equal keys => equal source text."""
        got = self.__dict__.get("memo_code_key")
        if got is None:
            params = [[p.name, p.role, p.required, p.schema.get("enum")] for p in self.params]
            got = json.dumps([self.name, self.op, self.spec, params], sort_keys=True, separators=(",", ":"))
            self.__dict__["memo_code_key"] = got
        return got

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """A value derived from this (immutable) function, computed once: source text, validator, ..."""
        got = self.__dict__.get("memo_" + key)
        if got is None:
            got = self.__dict__["memo_" + key] = make()
        return got

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "op": self.op,
            "spec": self.spec,
            "params": [p.to_dict() for p in self.params],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Function:
        return cls(
            d["name"],
            d["description"],
            d["op"],
            dict(d["spec"]),
            [Param.from_dict(p) for p in d["params"]],
        )


@dataclass
class Call:
    """A gold call: the tool name and its arguments."""

    tool: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Call:
        return cls(d["tool"], dict(d["arguments"]))


_INTERNED: dict[tuple, tuple[Any, Function]] = {}


def interned(key: tuple, keep: Any, make: Callable[[], Function]) -> Function:
    """The function built by ``make`` for ``key``, built once per process (``keep`` holds what ``key`` ids)."""
    got = _INTERNED.get(key)
    if got is None:
        if len(_INTERNED) > 50_000:
            _INTERNED.clear()
        got = _INTERNED[key] = (keep, make())
    return got[1]


def gold_call(fn: Function, sq: Any) -> Call:
    """The call of ``fn`` that answers sub-question ``sq`` (a :class:`~toolgym.construct.decompose.SubQuestion`)."""
    args: dict[str, Any] = {}
    for p in fn.params:
        role = p.role
        if role == "id":
            args[p.name] = sq.argument
        elif role == "ids":
            args[p.name] = [sq.argument]
        elif role == "type":
            args[p.name] = sq.entity
        elif role == "fields":
            if sq.attr is not None:
                args[p.name] = [sq.attr]
        elif role == "action":
            args[p.name] = sq.update
        elif role == "value":
            if sq.value is not None:
                args[p.name] = sq.value
        elif role == "changes":
            if sq.value is not None:
                args[p.name] = {sq.param: sq.value}
        elif role == "extra" and p.required:
            args[p.name] = p.gold
        elif role == "question":
            args[p.name] = sq.text
    return Call(fn.name, args)


def functions_to_list(fns: list[Function]) -> list[dict[str, Any]]:
    return [f.to_dict() for f in fns]


def functions_from_list(data: list[dict[str, Any]]) -> list[Function]:
    return [Function.from_dict(d) for d in data]
