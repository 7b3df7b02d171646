"""Stage 1, scenario decomposition: a world and a kind become sub-questions, a user query and a final answer.

A *chain* follows ref attributes from a starting record (``guest -> last_reservation -> hotel_id``) and ends
by reading an answerable attribute or performing an :class:`~toolgym.construct.spec.Update`; call k's argument is
call k-1's answer. The four FTRL kinds are one chain of one call (``single_hop``), ``parallel`` independent
one-call chains (``parallel_single_hop``), one chain of ``hops`` calls (``multi_hop``) and ``parallel``
independent chains (``parallel_multi_hop``). In multi-hop kinds a share of scenarios (``write_share``) ends
one chain with an update, whose answer is the confirmation code ``<prefix><counter>`` read in advance from
``state["counters"]``.

The kinds beyond FTRL's (:data:`toolgym.scenario.EXTRA_KINDS`) reuse the chains. ``irrelevance`` is one chain of
one call (a read of a plain value, not an id, or with ``write_share`` an update) whose answering tools stage 4
withholds, so no tool offered answers its query. ``missing_info`` is one chain of one or ``hops`` calls whose query
names the starting record only as "my <entity>", preceded by a sub-question that asks the user for the record's id
(its answer); every tool needs an id and none lists records, so nothing but the user can reveal that one.

Records are picked so answers are distinctive under FTRL's substring matching: no sub-answer occurs in the
query or inside another sub-answer, and no other record of the same table holds it (so the same tool called
on a wrong record cannot return it). Stage 5 re-checks all of this by running the tools.

Train/test split: every chain has a *split key* ``"<domain>|<chain signature>|<starting record id>"``, and
``split="train"`` / ``"test"`` only starts chains whose key is in that split under
:data:`toolgym.splits.CHAIN_KEYS`. A key is in exactly one split, so no (domain, chain, start record) appears
in both: the splits are disjoint by construction, whatever the seeds.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from toolgym import splits
from toolgym.construct.spec import Domain, SpecError
from toolgym.reward import normalize
from toolgym.scenario import ALL_KINDS
from toolgym.splits import SPLITS as SPLITS  # re-exported

SPLIT_BUCKETS = splits.BUCKETS
TRAIN_BUCKETS = splits.CHAIN_KEYS.test_buckets.start  # chain-key buckets below it are train

READ_TEMPLATES = (
    "What is the {noun} of {target}?",
    "Can you tell me the {noun} of {target}?",
    "Please look up the {noun} of {target}.",
    "I need the {noun} of {target}.",
)
WRITE_TEMPLATES = (
    "Please {request} and tell me the confirmation code.",
    "I would like to {request}. What is the confirmation code?",
    "Could you {request}? Give me the confirmation code.",
)
INTROS = ("I have {n} requests.", "Please help me with these {n} things.", "Answer all of the following.")


@dataclass(frozen=True)
class Chain:
    """A chain template: ref hops ``steps`` from ``start``, then a read of ``final_attr`` or ``final_update``."""

    start: str
    steps: tuple[tuple[str, str], ...]
    final_entity: str
    final_attr: str | None = None
    final_update: str | None = None
    signature: str = ""

    def __post_init__(self) -> None:
        hops = [f"{e}.{a}" for e, a in self.steps]
        hops.append(f"{self.final_entity}.{self.final_attr}" if self.final_attr else f"{self.final_update}()")
        object.__setattr__(self, "signature", ">".join(hops))

    @property
    def n_calls(self) -> int:
        return len(self.steps) + 1


@dataclass
class SubQuestion:
    """One sub-question: read ``attr`` of (or apply ``update`` to) the ``entity`` record ``argument``.

    ``answer`` is its sub-answer; ``value`` the update's parameter value (``param`` names the field);
    ``state_checks`` are ``[path, equals]`` pairs an update must make true; ``text`` phrases it, with
    ``{qN}`` standing for the answer of sub-question ``qN``. With neither ``attr`` nor ``update`` it asks the
    user (``missing_info``) for the id ``answer`` of the ``entity`` record the query leaves out (``param``
    names the key).
    """

    id: str
    entity: str
    argument: str
    answer: str
    attr: str | None = None
    update: str | None = None
    param: str | None = None
    value: Any = None
    depends_on: list[str] = field(default_factory=list)
    state_checks: list[list[Any]] = field(default_factory=list)
    text: str = ""

    @property
    def asks_user(self) -> bool:
        return self.attr is None and self.update is None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SubQuestion:
        return cls(
            **{**d, "depends_on": list(d.get("depends_on", [])), "state_checks": list(d.get("state_checks", []))}
        )


@dataclass
class Decomposition:
    """Stage 1 output: the sub-questions of one scenario, its query and final answer."""

    domain: str
    kind: str
    query: str
    answer: str
    subquestions: list[SubQuestion]
    branches: list[list[str]]
    chains: list[str]
    split_keys: list[str]
    templates: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decomposition:
        return cls(
            domain=d["domain"],
            kind=d["kind"],
            query=d["query"],
            answer=d["answer"],
            subquestions=[SubQuestion.from_dict(s) for s in d["subquestions"]],
            branches=[list(b) for b in d["branches"]],
            chains=list(d["chains"]),
            split_keys=list(d["split_keys"]),
            templates=list(d["templates"]),
        )

    def subquestion(self, qid: str) -> SubQuestion:
        for sq in self.subquestions:
            if sq.id == qid:
                return sq
        raise KeyError(qid)


# ------------------------------------------------------------------------------------------- domain analysis


RESERVED_PARAMS = frozenset(
    {"fields", "record_type", "record_id", "action", "value", "changes", "locale"}
    | {"language", "include_history", "detail_level", "notify", "reason"}
)


def pipeline_problems(domain: Domain) -> list[str]:
    """What stops the pipeline from building this (spec-valid) domain; empty when it can.

    Names become Python identifiers in generated tool code, chains start from entities whose label shows
    their key, and an update parameter must not reuse a name the scaling stage adds.
    """
    out = []
    for e in domain.entities:
        for a in e.attrs:
            if not a.name.isidentifier() or a.name.startswith("_"):
                out.append(f"{e.name}.{a.name}: attribute names must be identifiers not starting with '_'")
        if e.name.startswith("_") or e.key.startswith("_") or e.table.startswith("_"):
            out.append(f"entity {e.name}: names must not start with '_'")
    for u in domain.updates:
        if not u.name.isidentifier() or u.name.startswith("_"):
            out.append(f"update {u.name!r}: name must be an identifier not starting with '_'")
        if u.param is not None and u.param.name in RESERVED_PARAMS:
            out.append(f"update {u.name}: parameter name {u.param.name!r} is reserved for scaling")
    if not any("{" + e.key + "}" in e.label for e in domain.entities):
        out.append("no entity label names its key (e.g. 'hotel {hotel_id}'): chains have nowhere to start")
    return out


class DomainInfo:
    """What decomposition needs from a domain, computed once per Domain object."""

    def __init__(self, domain: Domain):
        problems = pipeline_problems(domain)
        if problems:
            raise SpecError(f"domain {domain.name} cannot be built: " + "; ".join(problems))
        self.domain = domain
        self.entities = {e.name: e for e in domain.entities}
        self.updates = {u.name: u for u in domain.updates}
        self.tables = {e.name: e.table for e in domain.entities}
        self.startable = [e.name for e in domain.entities if "{" + e.key + "}" in e.label]
        self.chains: dict[tuple[int, bool], list[Chain]] = {}
        for n_calls in range(1, 5):
            for write in (False, True):
                self.chains[(n_calls, write)] = self._chains(n_calls, write)

    def _paths(self, length: int) -> list[tuple[str, tuple[tuple[str, str], ...], str]]:
        paths = [(s, (), s) for s in self.startable]
        for _ in range(length):
            nxt = []
            for start, steps, at in paths:
                for a in self.entities[at].attrs:
                    if a.ref and a.answerable and a.type == "string":
                        nxt.append((start, (*steps, (at, a.name)), a.ref))
            paths = nxt
        return paths

    def _chains(self, n_calls: int, write: bool) -> list[Chain]:
        out = []
        for start, steps, at in self._paths(n_calls - 1):
            if write:
                for u in self.domain.updates:
                    if u.entity == at and (u.sets or u.param):
                        out.append(Chain(start, steps, at, final_update=u.name))
            else:
                for a in self.entities[at].attrs:
                    if a.answerable and a.type != "boolean":
                        out.append(Chain(start, steps, at, final_attr=a.name))
        return out


_INFO: dict[int, DomainInfo] = {}


def domain_info(domain: Domain) -> DomainInfo:
    info = _INFO.get(id(domain))
    if info is None or info.domain is not domain:
        info = _INFO[id(domain)] = DomainInfo(domain)
    return info


# ------------------------------------------------------------------------------------------------- split


def split_bucket(key: str) -> int:
    """The split bucket of a chain key (:data:`toolgym.splits.CHAIN_KEYS`)."""
    return splits.CHAIN_KEYS.bucket(key)


def in_split(key: str, split: str | None) -> bool:
    """Whether a chain may start from ``key`` in ``split`` (:data:`toolgym.splits.CHAIN_KEYS`)."""
    return splits.in_split(key, split, splits.CHAIN_KEYS)


# ------------------------------------------------------------------------------------------------- walking


class _World:
    """Lazy per-table text of a world, to check that a value belongs to one record only."""

    def __init__(self, state: dict[str, Any]):
        self.state = state
        self._text: dict[str, tuple[str, dict[str, str]]] = {}

    def text(self, table: str) -> tuple[str, dict[str, str]]:
        """The whole table's normalised text (records joined by a separator no value holds), and per record."""
        got = self._text.get(table)
        if got is None:
            per = {
                rid: "\x1f".join(map(str, rec.values())).lower().replace(",", "")
                for rid, rec in self.state[table].items()
            }
            got = self._text[table] = ("\x1e".join(per.values()), per)
        return got

    def unique(self, table: str, rid: str, value: str) -> bool:
        """``value`` occurs in no record of ``table`` other than ``rid``."""
        v = normalize(value)
        if not v:
            return False
        whole, per = self.text(table)
        return whole.count(v) == per[rid].count(v)


def _label(entity: Any, record: dict[str, Any]) -> str:
    return entity.label.format(**record)


def _branch(
    info: DomainInfo,
    world: _World,
    r: random.Random,
    chain: Chain,
    start_id: str,
    first: int,
    read_tpl: int,
    write_tpl: int,
    ask: str | None = None,
) -> tuple[list[SubQuestion], str, str] | None:
    """Walk ``chain`` from ``start_id``; returns (sub-questions, sentence, final answer) or None if unfit.

    With ``ask`` (the id of a sub-question asking the user for ``start_id``) the sentence names the start only
    as "my <entity>" and the first call depends on that sub-question.
    """
    state = world.state
    ent = info.entities[chain.start]
    rec = state[ent.table][start_id]
    target = _label(ent, rec) if ask is None else f"my {ent.name}"
    subs: list[SubQuestion] = []
    prev: str | None = ask
    arg = start_id
    visited = {start_id}
    for k, (ename, aname) in enumerate(chain.steps):
        e = info.entities[ename]
        value = rec[aname]
        ref = info.entities[e.attr(aname).ref]
        if value in visited:  # the chain walks back to a record it came from: its answer is already known
            return None
        if not isinstance(value, str) or value not in state[ref.table] or not world.unique(e.table, arg, value):
            return None
        visited.add(value)
        qid = f"q{first + k}"
        noun = e.attr(aname).noun
        who = _label(e, rec) if prev is None else f"{e.name} {{{prev}}}"
        subs.append(
            SubQuestion(
                id=qid,
                entity=ename,
                argument=arg,
                answer=value,
                attr=aname,
                depends_on=[prev] if prev else [],
                text=f"What is the {noun} of {who}?",
            )
        )
        target = f"the {noun} of {target}"
        prev, arg, rec = qid, value, state[ref.table][value]
    e = info.entities[chain.final_entity]
    qid = f"q{first + len(chain.steps)}"
    who = _label(e, rec) if prev is None else f"{e.name} {{{prev}}}"
    deps = [prev] if prev else []
    if chain.final_attr is not None:
        a = e.attr(chain.final_attr)
        value = rec[a.name]
        answer = str(value)
        if value in visited or isinstance(value, bool) or not world.unique(e.table, arg, answer):
            return None
        text = f"What is the {a.noun} of {who}?"
        subs.append(SubQuestion(qid, e.name, arg, answer, attr=a.name, depends_on=deps, text=text))
        sentence = READ_TEMPLATES[read_tpl].format(noun=a.noun, target=target)
        return (subs, sentence, answer) if _distinct(subs, sentence) else None
    u = info.updates[chain.final_update]
    if any(rec.get(f) != v for f, v in u.require.items()):
        return None
    checks = [[e.table, arg, f, v] for f, v in u.sets.items()]
    value = None
    if u.param is not None:
        value = _new_value(r, u.param, rec, state[e.table])
        if value is None:
            return None
        checks.append([e.table, arg, u.param.name, value])
    if all(rec.get(c[2]) == c[3] for c in checks):
        return None  # the update would change nothing: a wrong call could not be told apart
    counters = state["counters"]
    code = f"{u.confirmation_prefix}{counters[u.name]}"
    req = u.request.format(target=target, value=value)
    subs.append(
        SubQuestion(
            qid,
            e.name,
            arg,
            code,
            update=u.name,
            param=u.param.name if u.param else None,
            value=value,
            depends_on=deps,
            state_checks=[[[t, rid, f], v] for t, rid, f, v in checks],
            text="Please " + u.request.format(target=who, value=value) + ".",
        )
    )
    sentence = WRITE_TEMPLATES[write_tpl].format(request=req)
    return (subs, sentence, code) if _distinct(subs, sentence) else None


def _is_ref(info: DomainInfo, chain: Chain) -> bool:
    return info.entities[chain.final_entity].attr(chain.final_attr).ref is not None


def ask_question(entity: str) -> str:
    """What a ``missing_info`` scenario's gold call asks the user: the id of the ``entity`` record it is about
    (hand-written domains ask in the same words)."""
    return f"Which {entity} do you mean? Please tell me its id."


def _ask_user(info: DomainInfo, first: SubQuestion, qid: str) -> SubQuestion:
    """The sub-question asking the user which record ``first`` starts from: its answer is that record's id."""
    e = info.entities[first.entity]
    return SubQuestion(qid, e.name, "", first.argument, param=e.key, text=ask_question(e.name))


def _distinct(subs: list[SubQuestion], sentence: str) -> bool:
    """No sub-answer occurs in the sentence or inside another sub-answer."""
    q = normalize(sentence)
    answers = [normalize(s.answer) for s in subs]
    for i, a in enumerate(answers):
        if not a or a in q or any(i != j and a in other for j, other in enumerate(answers)):
            return False
    return True


def _new_value(r: random.Random, attr: Any, rec: dict[str, Any], table: dict[str, Any]) -> Any:
    current = rec.get(attr.name)
    if attr.enum:
        options = [v for v in attr.enum if v != current]
    elif attr.type == "boolean":
        options = [not current]
    elif attr.type in ("integer", "number"):
        options = [current + 10 * k for k in range(1, 10)] if isinstance(current, (int, float)) else []
    else:
        options = sorted({other.get(attr.name) for other in table.values()} - {current, None})
    return options[r.randrange(len(options))] if options else None


def _search(
    domain: Domain,
    info: DomainInfo,
    world: _World,
    r: random.Random,
    chains: list[Chain],
    used: set[str],
    split: str | None,
    first: int,
    read_tpl: int,
    write_tpl: int,
    ask: str | None = None,
) -> tuple[Chain, str, tuple[list[SubQuestion], str, str]] | None:
    """The first (chain, start record) that fits, from a random chain and a random record on."""
    if not chains:
        return None
    n, c0 = len(chains), r.randrange(len(chains))
    for ci in range(n):
        chain = chains[(c0 + ci) % n]
        ids = list(world.state[info.entities[chain.start].table])
        m, s0 = len(ids), r.randrange(len(ids))
        for si in range(m):
            start = ids[(s0 + si) % m]
            key = f"{domain.name}|{chain.signature}|{start}"
            if start in used or not in_split(key, split):
                continue
            got = _branch(info, world, r, chain, start, first, read_tpl, write_tpl, ask)
            if got is not None and not {s.argument for s in got[0]} & used:
                return chain, key, got
    return None


def decompose(
    domain: Domain,
    state: dict[str, Any],
    r: random.Random,
    kind: str,
    hops: int = 2,
    parallel: int = 2,
    write_share: float = 0.33,
    split: str | None = None,
) -> Decomposition | None:
    """Stage 1: the sub-questions of one scenario of ``kind`` on ``state``, or None if none fits this world."""
    if kind not in ALL_KINDS:
        raise ValueError(f"kind must be one of {ALL_KINDS}, got {kind!r}")
    info = domain_info(domain)
    world = _World(state)
    n_branches = parallel if kind.startswith("parallel") else 1
    n_calls = hops if kind.endswith("multi_hop") else 1
    ask = None
    if kind == "missing_info":
        n_calls = hops if r.random() < 0.5 else 1
        ask = "q1"
    writes = n_calls > 1 or kind in ("irrelevance", "missing_info")
    writer = r.randrange(n_branches) if writes and r.random() < write_share else -1
    read_tpl, write_tpl = r.randrange(len(READ_TEMPLATES)), r.randrange(len(WRITE_TEMPLATES))
    subs: list[SubQuestion] = []
    sentences: list[str] = []
    finals: list[str] = []
    branches: list[list[str]] = []
    signatures: list[str] = []
    keys: list[str] = []
    used: set[str] = set()
    for b in range(n_branches):
        # the writing branch tries update chains first, then falls back to reads if none fits this world
        pools = [info.chains.get((n_calls, True)) or []] if b == writer else []
        pools.append(info.chains.get((n_calls, False)) or [])
        if kind == "irrelevance":
            # an id also sits in every record that refers to it; a plain value only in its own, which no tool reads
            pools = [[c for c in p if c.final_attr is None or not _is_ref(info, c)] for p in pools]
        got = None
        first = len(subs) + (2 if ask else 1)
        for chains in pools:
            got = _search(domain, info, world, r, chains, used, split, first, read_tpl, write_tpl, ask)
            if got is not None:
                break
        if got is None:
            return None
        chain, key, (bsubs, sentence, final) = got
        used |= {s.argument for s in bsubs}
        subs.extend(bsubs)
        sentences.append(sentence)
        finals.append(final)
        branches.append([s.id for s in bsubs])
        signatures.append(chain.signature)
        keys.append(key)
    if n_branches == 1:
        query = sentences[0]
        intro = -1
    else:
        intro = r.randrange(len(INTROS))
        query = " ".join([INTROS[intro].format(n=n_branches), *(f"({i}) {s}" for i, s in enumerate(sentences, 1))])
    if n_branches > 1 and not _distinct(subs, query):
        return None
    if ask is not None:
        subs.insert(0, _ask_user(info, subs[0], ask))
        branches[0].insert(0, ask)
        if not _distinct(subs, query):
            return None
    return Decomposition(
        domain=domain.name,
        kind=kind,
        query=query,
        answer=", ".join(finals),
        subquestions=subs,
        branches=branches,
        chains=signatures,
        split_keys=keys,
        templates=[read_tpl, write_tpl, intro],
    )
