"""The scenario data model: plain, JSON-serialisable data that every other layer speaks.

A :class:`Scenario` is one task instance; it carries everything needed to replay it (tools, tool source,
world state, sub-tasks, answer) and metadata saying what produced it, so any score can be traced back.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from toolgym.splits import SPLITS, TEST_SHARE, check_split, split_of  # re-exported: a scenario's split, by its id

KINDS = ("single_hop", "parallel_single_hop", "multi_hop", "parallel_multi_hop")  # FTRL's four: the default mix
# Kinds beyond FTRL's, which join a mix only when asked for (so FTRL's envs and numbers stay as they are): in
# ``irrelevance`` no offered tool answers the query and the right turn is a plain reply without a call; in
# ``missing_info`` a value the calls need is in neither the query nor any tool, and the right first call asks the
# user for it.
EXTRA_KINDS = ("irrelevance", "missing_info")
ALL_KINDS = KINDS + EXTRA_KINDS
# Kinds whose right final turn is a reply without any call: whatever non-empty text it holds is the right answer.
NO_CALL_KINDS = ("irrelevance",)
__all__ = [
    "ALL_KINDS",
    "EXTRA_KINDS",
    "KINDS",
    "NO_CALL_KINDS",
    "SPLITS",
    "TEST_SHARE",
    "KindKnobs",
    "Scenario",
    "StateCheck",
    "SubTask",
    "check_kinds",
    "kind_mix",
    "offers_ask_user",
    "split_of",
    "tool_schema",
]


# The kind knobs every procedural generator takes (spec-built domains and hand-written ones alike), defined once
# so that ``kind``/``kinds`` mean the same in every env and a mixture can pass them to all its members.


def check_kinds(kind: str | None, kinds: tuple[str, ...] | None) -> None:
    """Raise ValueError unless ``kind`` is None or a kind, and ``kinds`` None or a non-empty tuple of distinct kinds."""
    if kind is not None and kind not in ALL_KINDS:
        raise ValueError(f"kind must be None or one of {ALL_KINDS}, got {kind!r}")
    if kinds is not None:
        ks = kinds
        if not isinstance(ks, tuple) or not ks or any(k not in ALL_KINDS for k in ks) or len(set(ks)) < len(ks):
            raise ValueError(f"kinds must be None or distinct kinds of {ALL_KINDS}, got {ks!r}")


def kind_mix(kinds: tuple[str, ...] | None) -> tuple[str, ...]:
    """The kinds ``kind=None`` draws from: ``kinds``, or FTRL's four by default."""
    return KINDS if kinds is None else kinds


def offers_ask_user(kind: str | None, kinds: tuple[str, ...] | None) -> bool:
    """Whether every scenario offers ``ask_user``: ``kind`` or ``kinds`` names a kind beyond FTRL's.

    ``kinds`` counts even when ``kind`` fixes the kind, so that ``kind="single_hop", kinds=ALL_KINDS`` plays the
    single-hop scenarios of the six-kind env, with the same tools (offering ``ask_user`` then tells nothing).
    """
    return kind in EXTRA_KINDS or any(k in EXTRA_KINDS for k in kind_mix(kinds))


class KindKnobs:
    """The ``kind``/``kinds`` (and ``split``) knobs of a generator config (a dataclass declaring them), read one way.

    A plain base, not a dataclass, so each config keeps its own field order (and its ``to_dict``/cache keys)."""

    kind: str | None
    kinds: tuple[str, ...] | None
    split: str | None

    def __post_init__(self) -> None:
        if isinstance(self.kinds, list):  # from JSON metadata or a gym.make list: one hashable, comparable form
            self.kinds = tuple(self.kinds)

    @property
    def mix(self) -> tuple[str, ...]:
        """The kinds ``kind=None`` draws from."""
        return kind_mix(self.kinds)

    @property
    def offers_ask_user(self) -> bool:
        """Whether every scenario offers ``ask_user`` (:func:`offers_ask_user`)."""
        return offers_ask_user(self.kind, self.kinds)

    def check_kinds_and_split(self) -> None:
        check_kinds(self.kind, self.kinds)
        check_split(self.split)


@dataclass
class StateCheck:
    """A world-state condition a write sub-task must cause: the value at ``path`` equals ``equals``.

    ``path`` is a list of keys / indices into the world state.
    """

    path: list[Any]
    equals: Any

    def holds(self, state: dict) -> bool:
        node: Any = state
        for key in self.path:
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                return False
        return node == self.equals


@dataclass
class SubTask:
    """One sub-question: the call that solves it, the sub-answer(s) its output must contain, its dependencies.

    ``answers`` are the expected sub-answers registered under ``tool`` (FTRL's ``unsolved_set`` entries).
    In a multi-hop scenario ``arguments`` hold values that are sub-answers of the tasks in ``depends_on``;
    ``arguments`` is ``None`` when the gold call is unknown (imported FTRL records carry only answers).
    ``state_checks`` are set for write sub-tasks (book, cancel, pay): they are checked on the world state.
    """

    id: str
    tool: str
    arguments: dict[str, Any] | None
    answers: list[str]
    depends_on: list[str] = field(default_factory=list)
    state_checks: list[StateCheck] = field(default_factory=list)

    @property
    def is_write(self) -> bool:
        return bool(self.state_checks)


@dataclass
class Scenario:
    """One task instance: the query, the tools offered and their source, the world, the sub-tasks, the answer.

    ``tools`` are OpenAI function schemas (``{"type": "function", "function": {...}}``), needed tools plus
    distractors. ``source`` maps each tool name to Python source defining that function (several tools may
    share one source text). ``messages`` is the chat before the first assistant turn (system + user), or a
    longer prefix for records that start mid-dialogue. ``answer`` is the gold final answer (may be empty
    when a scenario has no text answer to check).
    """

    id: str
    kind: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    source: dict[str, str]
    state: dict[str, Any]
    subtasks: list[SubTask]
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def query(self) -> str:
        return next((m["content"] for m in self.messages if m.get("role") == "user"), "")

    @property
    def reply_answer(self) -> str | None:
        """The text the reward looks for in the final reply; None when there is none to check.

        A scenario of a no-call kind keeps its empty answer: FTRL's containment test then holds for every
        non-empty reply, which is the right final turn there (a reply after no call scores 1, as the answer does).
        """
        if self.kind in NO_CALL_KINDS:
            return self.answer
        return self.answer or None

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    def unsolved_set(self) -> dict[str, list[str]]:
        """FTRL's ``unsolved_set``: tool name -> expected sub-answers still to be found."""
        out: dict[str, list[str]] = {}
        for sub in self.subtasks:
            out.setdefault(sub.tool, []).extend(sub.answers)
        return out

    def gold_plan(self) -> list[list[SubTask]]:
        """The gold calls grouped into turns: each turn holds every sub-task whose dependencies are done.

        Parallel sub-tasks share a turn (that is what maximises FTRL's per-turn reward 2q/(p+1)).
        """
        done: set[str] = set()
        left = list(self.subtasks)
        turns: list[list[SubTask]] = []
        while left:
            ready = [s for s in left if all(d in done for d in s.depends_on)]
            if not ready:
                raise ValueError(f"scenario {self.id}: sub-task dependencies form a cycle or name missing ids")
            turns.append(ready)
            done.update(s.id for s in ready)
            left = [s for s in left if s.id not in done]
        return turns

    def fresh_state(self) -> dict[str, Any]:
        """A private copy of the world state for one episode (tools mutate it)."""
        return copy.deepcopy(self.state)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        subs = [
            SubTask(
                id=s["id"],
                tool=s["tool"],
                arguments=None if s.get("arguments") is None else dict(s["arguments"]),
                answers=[str(a) for a in s["answers"]],
                depends_on=list(s.get("depends_on", [])),
                state_checks=[StateCheck(list(c["path"]), c["equals"]) for c in s.get("state_checks", [])],
            )
            for s in data["subtasks"]
        ]
        return cls(
            id=str(data["id"]),
            kind=data["kind"],
            messages=list(data["messages"]),
            tools=list(data["tools"]),
            source=dict(data["source"]),
            state=dict(data.get("state", {})),
            subtasks=subs,
            answer=str(data.get("answer", "")),
            metadata=dict(data.get("metadata", {})),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    def digest(self) -> str:
        """A content hash: equal scenarios have equal digests in any process."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def tool_schema(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """An OpenAI function schema (the ``tools=`` entry format)."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }
