"""When a model-written rewrite of a verified scenario's user query is accepted: three rules, checked by execution.

A rewrite (``toolgym build --phrase``, :mod:`toolgym.construct.llm.phrase`) only changes the words of the first user
message; the tools, the world and the gold plan stay. It is accepted when

1. **values kept** (``missing_value``): every value the gold plan takes from the query still appears verbatim
   in the rewrite (:func:`query_values`: the leaf argument values of the gold calls that occur in the original
   query and are not sub-answers of earlier calls), each as a whole token (``TX15`` is not kept by ``TX150``);
2. **no answer given away** (``answer_leak``): no part of an expected sub-answer or of the final answer appears
   in the rewrite unless it already appeared in the original query (an id may contain a short answer's digits);
3. **still solvable at full score** (``gold_plan``): the gold plan played through :class:`~toolgym.env.ToolEnv`
   on the rewritten scenario scores Solve-F1 = 1 and the same return as on the original one, the return the
   pipeline's verification established (:func:`gold_score`).

A rewrite equal to the original (up to case and spacing) is ``unchanged``. Rules 1 and 2 are what keep the
task the same task: a value the policy cannot read from the query makes it unsolvable, and an answer in the
query makes the tool calls pointless. Rule 3 holds for any query today (the reward reads tool outputs and the
final answer, not the query) and guards that assumption: if the env ever scored the query, a rewrite that
changed the score would be refused rather than shipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from toolgym.construct.pipeline import resolve_domain
from toolgym.env import ToolEnv
from toolgym.reward import answer_parts, normalize
from toolgym.scenario import Scenario
from toolgym.sources import StaticSource

REASONS = ("unchanged", "missing_value", "answer_leak", "gold_plan")


@dataclass(frozen=True)
class Verdict:
    """Whether a rewrite is accepted; else the rule it broke (one of :data:`REASONS`) and what broke it."""

    ok: bool
    reason: str | None = None
    detail: str = ""


def _leaves(value: Any) -> Iterator[str]:
    """The scalar values inside an argument value (lists and nested objects walked), as text; booleans and None
    are skipped (they are flags a tool schema gives, never words of the query)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    elif value is not None and not isinstance(value, bool):
        text = str(value).strip()
        if text:
            yield text


def occurs(value: str, text: str) -> bool:
    """``value`` appears verbatim in ``text`` as a whole token (no letter or digit right before or after it)."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", text) is not None


def _ancestors(scenario: Scenario) -> dict[str, set[str]]:
    by_id = {s.id: s for s in scenario.subtasks}
    out: dict[str, set[str]] = {}
    for sub in scenario.subtasks:
        seen: set[str] = set()
        todo = list(sub.depends_on)
        while todo:
            d = todo.pop()
            if d in seen or d not in by_id:
                continue
            seen.add(d)
            todo.extend(by_id[d].depends_on)
        out[sub.id] = seen
    return out


def vocabulary(scenario: Scenario) -> set[str]:
    """The world's own names: its tables and records' field names, and for a procedural scenario its domain's
    entity, attribute and update names (``metadata["domain_ref"]``).

    A gold argument that holds one (``record_type="customer"``, ``fields=["name"]``) picks what a tool returns
    from the schema's vocabulary; the query may say "client" or "called" instead and the task is the same."""
    words: set[str] = set()
    ref = scenario.metadata.get("domain_ref")
    if ref:
        try:
            domain = resolve_domain(ref)
        except (ImportError, AttributeError, TypeError, ValueError):
            domain = None
        if domain is not None:
            for e in domain.entities:
                words.update((e.name, e.table, e.key, *(a.name for a in e.attrs)))
            words.update(u.name for u in domain.updates)
    for table, records in scenario.state.items():
        words.update((table, table[:-1] if table.endswith("s") else table))
        if isinstance(records, dict):
            for record in records.values():
                if isinstance(record, dict):
                    words.update(record)
    return words


def query_values(scenario: Scenario, query: str | None = None) -> list[str]:
    """The values the gold calls take from the query, in plan order, without repeats.

    A gold argument value counts when it occurs in the (original) query, is not produced by an earlier tool
    output (a sub-answer, or part of one, of a sub-task it depends on) and is not one of the world's names
    (:func:`vocabulary`). So record ids and the values of updates count (``CU1437``, ``2500``, ``parcel_locker``)
    and the schema's selectors do not. Values that are not in the query at all (a locale the schema asks for)
    come from the tool schemas, not the user's words, so a rewrite need not keep them either."""
    text = scenario.query if query is None else query
    names = vocabulary(scenario)
    ancestors = _ancestors(scenario)
    by_id = {s.id: s for s in scenario.subtasks}
    out: list[str] = []
    for turn in scenario.gold_plan():
        for sub in turn:
            produced = set()
            for d in ancestors[sub.id]:
                for a in by_id[d].answers:
                    produced.add(normalize(a))
                    produced.update(answer_parts(a))
            for value in _leaves(sub.arguments or {}):
                if normalize(value) in produced or value in names or value in out or not occurs(value, text):
                    continue
                out.append(value)
    return out


def answer_texts(scenario: Scenario) -> list[str]:
    """Every expected sub-answer and the final answer (what a query must not reveal)."""
    texts = [a for s in scenario.subtasks for a in s.answers]
    if scenario.answer:
        texts.append(scenario.answer)
    return list(dict.fromkeys(texts))


def leaked_answers(scenario: Scenario, rewrite: str) -> list[str]:
    """Parts of expected answers found in ``rewrite`` (FTRL's normalisation) that the original query lacked."""
    new, old = normalize(rewrite), normalize(scenario.query)
    leaked = []
    for answer in answer_texts(scenario):
        for part in answer_parts(answer):
            if part and part in new and part not in old and part not in leaked:
                leaked.append(part)
    return leaked


def with_query(scenario: Scenario, query: str) -> Scenario:
    """A copy of ``scenario`` whose first user message says ``query`` (everything else shared, unchanged)."""
    data = scenario.to_dict()
    messages = [dict(m) for m in data["messages"]]
    for m in messages:
        if m.get("role") == "user":
            m["content"] = query
            break
    data["messages"] = messages
    return Scenario.from_dict(data)


def gold_score(scenario: Scenario) -> tuple[float, float]:
    """(return, Solve-F1) of the gold plan played through the env, as the pipeline's verification plays it."""
    env = ToolEnv(StaticSource("phrase-check", [scenario]), scenario_cache=False)
    env.reset(seed=0, options={"index": 0})
    total, info = 0.0, {}
    for _ in range(len(scenario.subtasks) + 2):
        _, r, terminated, truncated, info = env.step(env.gold_actions()[0])
        total += float(r)
        if terminated or truncated:
            break
    env.close()
    return total, float(info.get("episode", {}).get("solve_f1", 0.0))


def check_rewrite(scenario: Scenario, rewrite: str, baseline: tuple[float, float] | None = None) -> Verdict:
    """The verdict on ``rewrite`` as the query of ``scenario`` (``baseline``: the original's :func:`gold_score`)."""
    if " ".join(rewrite.split()).lower() == " ".join(scenario.query.split()).lower():
        return Verdict(False, "unchanged", "the rewrite repeats the original query")
    missing = [v for v in query_values(scenario) if not occurs(v, rewrite)]
    if missing:
        return Verdict(False, "missing_value", "dropped " + ", ".join(repr(v) for v in missing))
    leaked = leaked_answers(scenario, rewrite)
    if leaked:
        return Verdict(False, "answer_leak", "reveals " + ", ".join(repr(a) for a in leaked))
    want = baseline if baseline is not None else gold_score(scenario)
    got = gold_score(with_query(scenario, rewrite))
    if got[1] != 1.0 or abs(got[0] - want[0]) > 1e-9:
        return Verdict(False, "gold_plan", f"gold plan scored return {got[0]:.3f} (F1 {got[1]:.2f}), not {want[0]:.3f}")
    return Verdict(True)
