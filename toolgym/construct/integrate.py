"""Stage 3, function integration: merge overlapping documents (n -> m <= n) and keep every sub-question solvable.

Identical documents (the same narrow function for two sub-questions) always become one. With
``integrate=True`` every narrow read on one entity merges into ``get_<entity>(<key>)``, which returns the whole
record (all attributes of the entity), whatever attributes the sub-questions asked for; updates stay separate.
``mapping`` records which narrow document became which function, and each sub-question's gold call is
re-derived from the function that now answers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolgym.construct.decompose import Decomposition
from toolgym.construct.document import Documents, whole_read
from toolgym.construct.spec import Domain
from toolgym.construct.tool_docs import Call, Function, functions_from_list, functions_to_list, gold_call


@dataclass
class Integrated:
    """Stage 3 output: the merged functions, narrow name -> merged name, and the gold calls."""

    functions: list[Function]
    mapping: dict[str, str]
    calls: dict[str, Call]

    def to_dict(self) -> dict[str, Any]:
        return {
            "functions": functions_to_list(self.functions),
            "mapping": dict(self.mapping),
            "calls": {k: c.to_dict() for k, c in self.calls.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Integrated:
        return cls(
            functions_from_list(d["functions"]),
            dict(d["mapping"]),
            {k: Call.from_dict(c) for k, c in d["calls"].items()},
        )

    def tools(self) -> list[dict[str, Any]]:
        return [f.schema() for f in self.functions]


def integrate(domain: Domain, decomposition: Decomposition, docs: Documents, merge: bool = True) -> Integrated:
    """Stage 3: deduplicate documents and (``merge``) merge the narrow reads of each entity."""
    out: dict[str, Function] = {}
    mapping: dict[str, str] = {}
    for fn in docs.functions:
        target = fn
        if merge and fn.op == "read":
            entity = domain.entity(fn.spec["entity"])
            target = whole_read(entity)
        out.setdefault(target.name, target)
        mapping[fn.name] = target.name
    functions = list(out.values())
    calls = {sq.id: gold_call(out[mapping[docs.calls[sq.id].tool]], sq) for sq in decomposition.subquestions}
    return Integrated(functions, mapping, calls)
