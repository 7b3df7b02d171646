"""Stage 5, localized deployment: tool code from templates, the scenario, and verification by execution.

Each offered function gets its own source text, generated from a template per ``op`` (read, lookup, update,
manage, fake, ask) and parameter roles. The text depends only on :meth:`Function.code_key` (name, behaviour,
parameters; not the description) and is cached on it, so identical functions in different scenarios have
identical source and the sandbox compiles each once per process. The code is sandbox-safe (no imports, no
underscore names), reads and writes the global ``state`` the env binds per call, returns the right record for
right arguments and ``{"error": ...}`` otherwise.

:func:`verify` then checks the scenario: no sub-answer in the query, and no read distractor, run with
:class:`~toolgym.sandbox.Toolbox` on the scenario's records, returning a sub-answer. With ``full=True`` it also
runs the scenario the way the env scores it, on a copy of the world (:func:`verify_plan`): the gold plan, turn
by turn, must solve every sub-question (FTRL's matcher and ``SolveTracker``) with schema-valid arguments and
leave every state check true; each gold call redirected to another record must not yield its sub-answer (a
write must not make its state checks true). Those hold by construction, so resets skip them; the tests run
them over every domain and kind. A failing scenario is discarded with a reason.

The kinds beyond FTRL's: an ``irrelevance`` scenario has no sub-tasks and an empty answer (the right turn is a
reply without a call); its query's hidden sub-answer is what every offered read is checked not to return, and it
must offer at least one tool besides ``ask_user``. In a ``missing_info`` scenario the world holds
``state["user"] = {"knows": <the id the query leaves out>}``, which ``ask_user`` replies with; where nothing is
missing there is no such entry and ``ask_user`` says it has nothing to add.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from functools import lru_cache
from typing import Any

from toolgym.arguments import check_arguments, parameters_validator
from toolgym.construct.decompose import Decomposition, SubQuestion
from toolgym.construct.scale import Scaled
from toolgym.construct.tool_docs import READ_OPS, Function
from toolgym.reward import Expected, SolveTracker, answer_in_output, normalize
from toolgym.sandbox import Toolbox
from toolgym.scenario import Scenario, StateCheck, SubTask

_SOURCE_CACHE: dict[str, str] = {}
_BOXES = threading.local()  # a Toolbox's guards (step budget, clock) are per Toolbox: never share one across threads
_CACHE_LIMIT = 8192
IND = "    "


# --------------------------------------------------------------------------------------------- templates


def _signature(fn: Function) -> str:
    req = [p.name for p in fn.params if p.required]
    opt = [f"{p.name}=None" for p in fn.params if not p.required]
    return ", ".join(req + opt)


def _prelude(fn: Function) -> list[str]:
    lines = []
    for p in fn.params:
        if p.role == "extra" and p.name == "locale":
            lines += [
                f'{IND}if not isinstance(locale, str) or len(locale) != 5 or locale[2] != "-":',
                f'{IND}{IND}return {{"error": "locale must look like \'en-US\'"}}',
            ]
    return lines


def _postlude(fn: Function) -> list[str]:
    lines = []
    names = {p.name for p in fn.params if p.role == "extra"}
    if "include_history" in names:
        lines += [f"{IND}if include_history:", f'{IND}{IND}out["history"] = []']
    if "notify" in names:
        lines += [f"{IND}if notify is not None:", f'{IND}{IND}out["notified"] = bool(notify)']
    return [*lines, f"{IND}return out"]


def _fields_block(known: str, fields: str | None) -> list[str]:
    """Set ``wanted`` from the optional ``fields`` argument (checked against the list named ``known``)."""
    lines = [f"{IND}wanted = {known}"]
    if fields is None:
        return lines
    return [
        *lines,
        f"{IND}if {fields} is not None:",
        f"{IND}{IND}if not isinstance({fields}, list) or not {fields}:",
        f'{IND}{IND}{IND}return {{"error": "{fields} must be a non-empty list of field names"}}',
        f"{IND}{IND}for name in {fields}:",
        f"{IND}{IND}{IND}if name not in {known}:",
        f'{IND}{IND}{IND}{IND}return {{"error": f"unknown field {{name!r}}; fields are {{\', \'.join({known})}}"}}',
        f"{IND}{IND}wanted = [name for name in {known} if name in {fields}]",
    ]


def _records_block(fn: Function, table: str, key: str, noun: str, item: list[str]) -> list[str]:
    """Look up the record(s) named by the id/ids parameter; ``item`` builds ``item`` from ``record``."""
    idp = fn.param("id")
    if idp is not None:
        x = idp.name
        return [
            f"{IND}record = {table}.get({x}.strip()) if isinstance({x}, str) else None",
            f"{IND}if record is None:",
            f'{IND}{IND}return {{"error": f"no {noun} with id {{{x}!r}}"}}',
            *[line.replace("item", "out") for line in item],
        ]
    xs = fn.param("ids").name
    return [
        f"{IND}if not isinstance({xs}, list) or not {xs}:",
        f'{IND}{IND}return {{"error": "{xs} must be a non-empty list of ids"}}',
        f"{IND}results = []",
        f"{IND}for one in {xs}:",
        f"{IND}{IND}record = {table}.get(one.strip()) if isinstance(one, str) else None",
        f"{IND}{IND}if record is None:",
        f'{IND}{IND}{IND}return {{"error": f"no {noun} with id {{one!r}}"}}',
        *[IND + line for line in item],
        f"{IND}{IND}results.append(item)",
        f'{IND}out = {{"results": results}}',
    ]


def _render_read(fn: Function) -> list[str]:
    s = fn.spec
    fields = fn.param("fields")
    head = [f"FIELDS = {s['fields']!r}", "", "", f"def {fn.name}({_signature(fn)}):"]
    item = [
        f"{IND}item = {{{s['key']!r}: record[{s['key']!r}]}}",
        f"{IND}for name in wanted:",
        f"{IND}{IND}item[name] = record[name]",
    ]
    body = [
        *_prelude(fn),
        *_fields_block("FIELDS", fields.name if fields else None),
        f"{IND}table = state[{s['table']!r}]",
        *_records_block(fn, "table", s["key"], s["entity"], item),
    ]
    return [*head, *body, *_postlude(fn)]


def _render_lookup(fn: Function) -> list[str]:
    t = fn.param("type").name
    fields = fn.param("fields")
    head = [f"TYPES = {fn.spec['types']!r}", "", "", f"def {fn.name}({_signature(fn)}):"]
    item = [
        f"{IND}item = {{{t!r}: {t}, key: record[key]}}",
        f"{IND}for name in wanted:",
        f"{IND}{IND}item[name] = record[name]",
    ]
    body = [
        *_prelude(fn),
        f"{IND}if not isinstance({t}, str) or {t} not in TYPES:",
        f'{IND}{IND}return {{"error": f"unknown {t} {{{t}!r}}; one of {{\', \'.join(TYPES)}}"}}',
        f"{IND}spec = TYPES[{t}]",
        f'{IND}known = spec["fields"]',
        f'{IND}key = spec["key"]',
        *_fields_block("known", fields.name if fields else None),
        f'{IND}table = state[spec["table"]]',
        *_records_block(fn, "table", "key", "record", item),
    ]
    return [*head, *body, *_postlude(fn)]


def _render_fake(fn: Function) -> list[str]:
    s = fn.spec
    head = [f"SYNTH = {s['synth']!r}", "", "", f"def {fn.name}({_signature(fn)}):"]
    item = [
        f"{IND}seed = 0",
        f"{IND}for ch in record[{s['key']!r}]:",
        f"{IND}{IND}seed = (seed * 31 + ord(ch)) % 1000003",
        f"{IND}item = {{{s['key']!r}: record[{s['key']!r}]}}",
        f"{IND}for name in sorted(SYNTH):",
        f"{IND}{IND}options = SYNTH[name]",
        f"{IND}{IND}item[name] = options[seed % len(options)]",
    ]
    body = [
        *_prelude(fn),
        f"{IND}table = state[{s['table']!r}]",
        *_records_block(fn, "table", s["key"], s["entity"], item),
    ]
    return [*head, *body, *_postlude(fn)]


def _value_lines(fn: Function, param: str, allowed: str | None, noun: str) -> list[str]:
    """Set ``new`` from the value or ``changes`` parameter, checked against ``allowed`` (a name or None)."""
    vp, cp = fn.param("value"), fn.param("changes")
    if cp is not None:
        c = cp.name
        lines = [f"{IND}new = {c}.get({param}) if isinstance({c}, dict) else None"]
    else:
        lines = [f"{IND}new = {vp.name}"]
    lines += [
        f"{IND}if new is None:",
        f'{IND}{IND}return {{"error": f"{noun} needs a new {{{param}}}"}}',
    ]
    if allowed is not None:
        lines += [
            f"{IND}if {allowed} is not None and new not in {allowed}:",
            f'{IND}{IND}return {{"error": f"{{new!r}} is not a valid {{{param}}}; one of {{\', \'.join({allowed})}}"}}',
        ]
    return lines


def _render_update(fn: Function) -> list[str]:
    s = fn.spec
    x = fn.param("id").name
    name = s["update"]
    lines = [f"def {fn.name}({_signature(fn)}):", *_prelude(fn)]
    if s["allowed"]:
        lines = [f"ALLOWED = {s['allowed']!r}", "", "", *lines]
    lines += [
        f"{IND}record = state[{s['table']!r}].get({x}.strip()) if isinstance({x}, str) else None",
        f"{IND}if record is None:",
        f'{IND}{IND}return {{"error": f"no {s["entity"]} with id {{{x}!r}}"}}',
    ]
    for field, want in s["require"].items():
        lines += [
            f"{IND}if record[{field!r}] != {want!r}:",
            f'{IND}{IND}return {{"error": f"cannot {name} {s["entity"]} {{{x}}}: its {field} is '
            f'{{record[{field!r}]!r}}, must be {want!r}"}}',
        ]
    if s["param"]:
        lines += _value_lines(fn, repr(s["param"]), "ALLOWED" if s["allowed"] else None, name)
    out = [f"{IND}out = {{{s['key']!r}: record[{s['key']!r}]}}"]
    for field, value in s["sets"].items():
        lines.append(f"{IND}record[{field!r}] = {value!r}")
        out.append(f"{IND}out[{field!r}] = record[{field!r}]")
    if s["param"]:
        lines.append(f"{IND}record[{s['param']!r}] = new")
        out.append(f"{IND}out[{s['param']!r}] = new")
    lines += [
        f'{IND}counters = state["counters"]',
        f"{IND}code = {s['prefix']!r} + str(counters[{name!r}])",
        f"{IND}counters[{name!r}] += 1",
        *out,
        f'{IND}out["confirmation_code"] = code',
    ]
    return [*lines, *_postlude(fn)]


def _render_manage(fn: Function) -> list[str]:
    s = fn.spec
    x = fn.param("id").name
    a = fn.param("action").name
    actions = s["actions"]
    table, key, entity = next(iter(actions.values()))["table"], next(iter(actions.values()))["key"], s["entity"]
    lines = [f"ACTIONS = {actions!r}", "", "", f"def {fn.name}({_signature(fn)}):", *_prelude(fn)]
    lines += [
        f"{IND}if not isinstance({a}, str) or {a} not in ACTIONS:",
        f'{IND}{IND}return {{"error": f"unknown {a} {{{a}!r}}; one of {{\', \'.join(ACTIONS)}}"}}',
        f"{IND}spec = ACTIONS[{a}]",
        f"{IND}record = state[{table!r}].get({x}.strip()) if isinstance({x}, str) else None",
        f"{IND}if record is None:",
        f'{IND}{IND}return {{"error": f"no {entity} with id {{{x}!r}}"}}',
        f'{IND}for field, want in spec["require"].items():',
        f"{IND}{IND}if record[field] != want:",
        f'{IND}{IND}{IND}return {{"error": f"cannot {{{a}}} {entity} {{{x}}}: its {{field}} is '
        f'{{record[field]!r}}, must be {{want!r}}"}}',
        f'{IND}param = spec["param"]',
        f"{IND}new = None",
    ]
    if fn.param("value") is not None or fn.param("changes") is not None:
        inner = _value_lines(fn, "param", "allowed", "{" + a + "}")
        lines += [f"{IND}if param is not None:", f'{IND}{IND}allowed = spec["allowed"]']
        lines += [IND + line for line in inner]
    lines += [
        f"{IND}out = {{{key!r}: record[{key!r}]}}",
        f'{IND}for field, value in spec["sets"].items():',
        f"{IND}{IND}record[field] = value",
        f"{IND}{IND}out[field] = value",
        f"{IND}if param is not None:",
        f"{IND}{IND}record[param] = new",
        f"{IND}{IND}out[param] = new",
        f'{IND}counters = state["counters"]',
        f'{IND}code = spec["prefix"] + str(counters[{a}])',
        f"{IND}counters[{a}] += 1",
        f'{IND}out["confirmation_code"] = code',
    ]
    return [*lines, *_postlude(fn)]


def _render_ask(fn: Function) -> list[str]:
    q = fn.param("question").name
    return [
        f"def {fn.name}({_signature(fn)}):",
        f"{IND}if not isinstance({q}, str) or not {q}.strip():",
        f'{IND}{IND}return {{"error": "{q} must be a non-empty string"}}',
        f"{IND}user = state.get({fn.spec['reply_from']!r}) or {{}}",
        f'{IND}value = user.get("knows")',
        f"{IND}if value is None:",
        f'{IND}{IND}return {{"reply": "I have nothing to add: everything I can tell you is in my request."}}',
        f'{IND}return {{"reply": "It is " + str(value) + "."}}',
    ]


_RENDER = {
    "read": _render_read,
    "lookup": _render_lookup,
    "fake": _render_fake,
    "update": _render_update,
    "manage": _render_manage,
    "ask": _render_ask,
}


def tool_source(fn: Function) -> str:
    """The Python source of ``fn`` (cached per :meth:`Function.code_key`: equal functions, equal text)."""
    return fn.memo("source", lambda: _source_for(fn))


def _source_for(fn: Function) -> str:
    key = fn.code_key()
    src = _SOURCE_CACHE.get(key)
    if src is None:
        if len(_SOURCE_CACHE) > _CACHE_LIMIT:
            _SOURCE_CACHE.clear()
        src = _SOURCE_CACHE[key] = "\n".join(_RENDER[fn.op](fn)) + "\n"
    return src


def toolbox_for(name: str, source: str) -> Toolbox:
    """A Toolbox holding one tool, reused across this thread's scenarios (compiled once per source, exec'd once
    per source and thread): verification runs tools, and concurrent resets (trainers' scorer threads) must not
    run one Toolbox at once, whose guards would then count both calls and reject a good scenario."""
    cache: dict[str, Toolbox] | None = getattr(_BOXES, "cache", None)
    if cache is None:
        cache = _BOXES.cache = {}
    box = cache.get(source)
    if box is None:
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        box = cache[source] = Toolbox({name: source})
    return box


# ---------------------------------------------------------------------------------------------- scenario


def copy_world(state: dict[str, Any]) -> dict[str, Any]:
    """A private copy of a spec world (tables of flat records and counters): two levels of dict copies."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out[k] = {rid: (dict(rec) if isinstance(rec, dict) else rec) for rid, rec in v.items()}
        else:
            out[k] = json.loads(json.dumps(v))
    return out


@lru_cache(maxsize=256)
def _slug(name: str) -> str:
    return "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")


def _copy_tables(state: dict[str, Any], tables: list[str]) -> dict[str, Any]:
    """A copy of ``state`` that updates may write: ``tables`` (records copied) and the counters are private."""
    out = dict(state)
    for t in tables:
        out[t] = {rid: dict(rec) for rid, rec in state[t].items()}
    out["counters"] = dict(state["counters"])
    return out


def deploy(
    decomposition: Decomposition,
    scaled: Scaled,
    state: dict[str, Any],
    metadata: dict[str, Any] | None = None,
) -> Scenario:
    """Stage 5 (assembly): the Scenario with generated tool source, gold sub-tasks and the world."""
    subtasks = []
    irrelevance = decomposition.kind == "irrelevance"
    for sq in () if irrelevance else decomposition.subquestions:
        call = scaled.calls[sq.id]
        checks = [StateCheck(list(path), value) for path, value in sq.state_checks]
        subtasks.append(SubTask(sq.id, call.tool, call.arguments, [sq.answer], list(sq.depends_on), checks))
        if sq.asks_user:
            state["user"] = {"knows": sq.answer}
    answer = "" if irrelevance else decomposition.answer
    tools = [fn.schema() for fn in scaled.functions]
    source = {fn.name: tool_source(fn) for fn in scaled.functions}
    body = repr(
        (
            decomposition.split_keys,
            decomposition.query,
            answer,
            [(t.tool, t.arguments, t.answers) for t in subtasks],
        )
    )
    return Scenario(
        id=f"{_slug(decomposition.domain)}-{hashlib.sha256(body.encode()).hexdigest()[:12]}",
        kind=decomposition.kind,
        messages=[{"role": "user", "content": decomposition.query}],
        tools=tools,
        source=source,
        state=state,
        subtasks=subtasks,
        answer=answer,
        metadata=dict(metadata or {}),
    )


# ------------------------------------------------------------------------------------------------ verify


def _call(fn: Function, source: str, args: dict[str, Any], state: dict[str, Any]):
    return toolbox_for(fn.name, source).call(fn.name, args, state)


def _redirect(fn: Function, args: dict[str, Any], other: str) -> dict[str, Any]:
    """The same call aimed at record ``other``."""
    out = dict(args)
    for p in fn.params:
        if p.role == "id":
            out[p.name] = other
        elif p.role == "ids":
            out[p.name] = [other]
    return out


def _probe(fn: Function, rid: str, entity: str) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for p in fn.params:
        if p.role == "id":
            args[p.name] = rid
        elif p.role == "ids":
            args[p.name] = [rid]
        elif p.role == "type":
            args[p.name] = entity
        elif p.role == "extra" and p.required:
            args[p.name] = p.gold
    return args


def verify(
    scenario: Scenario,
    decomposition: Decomposition,
    scaled: Scaled,
    table_of: dict[str, str],
    r: random.Random,
    *,
    full: bool = True,
) -> str | None:
    """``None`` if the scenario is sound, else the reason to discard it.

    ``table_of`` maps entity name -> world table (to find another record for the wrong-argument checks).
    ``full=False`` runs only the checks that depend on the drawn data: no sub-answer inside the query, none
    returned by a read distractor (the only ones that discard builds). The gold-plan and wrong-record checks
    (:func:`verify_plan`) hold by construction: the templates return the record the arguments name, and
    ``decompose`` picks answers that are unique to their record. The tests run them over every domain and
    kind, and the ``verify="full"`` knob runs them on every build.
    """
    reason = _answer_in_query(scenario) or _distractor_leak(scenario, decomposition, scaled, table_of)
    if reason is None and full:
        reason = verify_plan(scenario, decomposition, scaled, table_of, r)
    return reason


def _answer_in_query(scenario: Scenario) -> str | None:
    query = scenario.query.lower().replace(",", "")
    for s in scenario.subtasks:
        for a in s.answers:
            if a.lower().replace(",", "").strip() in query:
                return "answer_in_query"
    return None


def verify_plan(
    scenario: Scenario,
    decomposition: Decomposition,
    scaled: Scaled,
    table_of: dict[str, str],
    r: random.Random,
) -> str | None:
    """Run the scenario's tools as the env would: the gold plan must solve it, a wrong record must not."""
    fns = {fn.name: fn for fn in scaled.functions}
    by_id = {sq.id: sq for sq in decomposition.subquestions}
    written = [table_of[sq.entity] for sq in decomposition.subquestions if sq.update is not None]
    state = _copy_tables(scenario.state, written) if written else scenario.state
    tracker = SolveTracker(
        Expected(s.tool, a, s.id, tuple(s.state_checks)) for s in scenario.subtasks for a in s.answers
    )
    for turn in scenario.gold_plan():
        for s in turn:
            fn = fns[s.tool]
            validator = fn.memo("validator", lambda f=fn: parameters_validator(f.schema()["function"]["parameters"]))
            if check_arguments(validator, s.arguments):
                return "gold_arguments_invalid"
            out = _call(fn, scenario.source[s.tool], s.arguments, state)
            if not out.ok or out.output.startswith('{"error"'):
                return "gold_call_error"
            if tracker.match(s.tool, out.output, state) is None:
                return "gold_answer_missing"
    if tracker.n_unsolved:
        return "gold_answer_missing"
    if not all(c.holds(state) for s in scenario.subtasks for c in s.state_checks):
        return "state_check_failed"
    # the same tool on another record must not yield the answer (nor make a write's checks true)
    for s in scenario.subtasks:
        sq: SubQuestion = by_id[s.id]
        if sq.asks_user:  # the user's reply is the answer whatever is asked: there is no other record to ask
            continue
        ids = list(scenario.state[table_of[sq.entity]])
        if len(ids) < 2:
            continue
        other = ids[r.randrange(len(ids) - 1)]
        if other == sq.argument:  # uniform over the other records
            other = ids[-1]
        fn = fns[s.tool]
        args = _redirect(fn, s.arguments, other)
        if s.state_checks:
            probe = _copy_tables(scenario.state, [table_of[sq.entity]])
            _call(fn, scenario.source[s.tool], args, probe)
            if all(c.holds(probe) for c in s.state_checks):
                return "wrong_record_writes"
        else:
            out = _call(fn, scenario.source[s.tool], args, scenario.state)
            if any(answer_in_output(out.output, a) for a in s.answers):
                return "wrong_record_answers"
    return None


def _distractor_leak(
    scenario: Scenario, decomposition: Decomposition, scaled: Scaled, table_of: dict[str, str]
) -> str | None:
    """Read distractors on the scenario's records must not reveal a sub-answer (an irrelevance scenario's
    hidden one); an irrelevance scenario must offer something to not call."""
    answers = [sq.answer for sq in decomposition.subquestions]
    if decomposition.kind == "irrelevance" and not scaled.distractors:
        return "nothing_to_offer"
    fns = None
    for name in scaled.distractors:
        if fns is None:
            fns = {fn.name: fn for fn in scaled.functions}
        fn = fns[name]
        if fn.op not in READ_OPS:
            continue
        if fn.op == "fake":  # synthetic values only: check the whole vocabulary once, no need to run it
            vocab = fn.memo("vocabulary", lambda f=fn: normalize(json.dumps(f.spec["synth"], ensure_ascii=False)))
            if any(normalize(a) in vocab for a in answers):
                return "distractor_leaks_answer"
            continue
        entity = fn.spec.get("entity")
        tables = [entity] if entity else list(table_of)
        for ent in tables:
            table = scenario.state[table_of[ent]]
            rids = {sq.argument for sq in decomposition.subquestions if sq.entity == ent and not sq.asks_user}
            rids.update(sq.answer for sq in decomposition.subquestions if sq.answer in table)
            for rid in sorted(rids):
                out = _call(fn, scenario.source[name], _probe(fn, rid, ent), scenario.state)
                if any(a != rid and answer_in_output(out.output, a) for a in answers):
                    return "distractor_leaks_answer"
    return None
