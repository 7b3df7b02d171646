"""τ-bench-format tasks: a domain folder, task records with gold actions, and a simulated user.

τ-bench (Yao et al., 2024) scores a tool-using agent in a dialogue: a user (played by a model) pursues a goal
written in the task's instruction, the agent follows the domain's policy (``wiki.md``) and calls tools that read
and write a shared world (the domain's data tables). The episode passes (pass^1, FTRL's rule too) when the world
after the episode equals the world after the task's gold actions and every required output string was said to
the user. A folder in that layout loads, is checked at load, and registers as ``ToolGym/TauBench-<name>-v0``::

    DOMAIN_DIR/tools.json    list of OpenAI function schemas
    DOMAIN_DIR/codes.json    tool name -> Python source of ``def name(data, ...)`` (``data``: the world)
    DOMAIN_DIR/data/*.json   the world: file stem -> table (e.g. ``users``, ``orders``, ``products``)
    DOMAIN_DIR/wiki.md       the agent's policy: the system prompt
    DOMAIN_DIR/tasks.jsonl   records {"id"?, "user_id"?, "instruction", "actions": [{"name", "arguments"}], "outputs"}

The env (:class:`TauBenchEnv`) is a :class:`~toolgym.env.ToolEnv`: same observation and action, same sandbox,
same per-call checks and feedback. What differs is the turn without tool calls: it is a message to the user,
and the user's reply (a :class:`ScriptedUser` or a :class:`ModelUser`) becomes the next ``user`` message. The
episode ends when that reply holds :data:`STOP_TOKEN` (terminated) or after ``max_turns`` assistant turns
(truncated). The reward is τ-bench's, sparse: 0 on every step but the last, ``pass`` on the last, so a return
is the pass^1 of the episode; FTRL's per-call components stay in ``info["reward_components"]`` for shaping.

Gold end states are computed once at load, by running each task's gold actions through the sandbox on a copy of
the world; only the table entries they change are kept, so a large world costs one copy, not one per task.
Tools must therefore be deterministic (τ-bench's are).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym

from toolgym.arguments import check_arguments, parameters_validator
from toolgym.calls import format_hermes
from toolgym.env import COMPONENT_KEYS as ENV_COMPONENT_KEYS
from toolgym.env import ToolEnv
from toolgym.packs import PackError, _check_tools
from toolgym.sandbox import Toolbox, ToolSourceError, check_tool_sources
from toolgym.scenario import Scenario
from toolgym.sources import StaticSource

__all__ = [
    "STOP_TOKEN",
    "ModelUser",
    "ScriptedUser",
    "SimulatedUser",
    "TauBenchEnv",
    "TauDomain",
    "TauTask",
    "load_domain",
    "make_env",
    "make_user",
    "manifest",
    "register",
]

STOP_TOKEN = "###STOP###"  # τ-bench's: a user reply holding it ends the episode
NAMESPACE = "ToolGym"
_TASK_KEYS = frozenset({"id", "user_id", "annotator", "instruction", "actions", "outputs"})
_ACTION_KEYS = frozenset({"name", "arguments", "kwargs"})  # "kwargs": τ-bench's own name for the arguments
_NAME = re.compile(r"[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*")
# Defaults of ToolEnv's sandbox, so a gold action that fits at load fits in an episode.
_GOLD_SANDBOX = {"step_budget": 100_000, "time_limit": 2.0}


# -- the gold end state ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GoldWorld:
    """The world after a task's gold actions, as what they changed in the initial world.

    ``whole``: tables that are new or replaced (not both dicts); ``entries``/``removed``: per dict table, the
    entries that are new or changed and the keys that are gone; ``dropped``: tables that are gone.
    """

    whole: dict[str, Any]
    entries: dict[str, dict[str, Any]]
    removed: dict[str, frozenset[str]]
    dropped: frozenset[str]

    @classmethod
    def between(cls, initial: dict[str, Any], final: dict[str, Any]) -> GoldWorld:
        whole: dict[str, Any] = {}
        entries: dict[str, dict[str, Any]] = {}
        removed: dict[str, frozenset[str]] = {}
        for stem, table in final.items():
            if stem in initial and initial[stem] == table:
                continue
            base = initial.get(stem)
            if isinstance(base, dict) and isinstance(table, dict):
                entries[stem] = {k: v for k, v in table.items() if k not in base or base[k] != v}
                removed[stem] = frozenset(base.keys() - table.keys())
            else:
                whole[stem] = table
        return cls(whole, entries, removed, frozenset(initial.keys() - final.keys()))

    def differing(self, world: dict[str, Any], initial: dict[str, Any]) -> list[str]:
        """The tables in which ``world`` differs from this gold world (deep equality), sorted; [] when equal."""
        stems = (initial.keys() - self.dropped) | self.whole.keys()
        out = sorted(stems ^ world.keys())
        for stem in stems & world.keys():
            table = world[stem]
            if stem in self.whole:
                same = table == self.whole[stem]
            elif stem in self.entries:
                same = self._same_entries(table, initial[stem], self.entries[stem], self.removed[stem])
            else:
                same = table == initial[stem]
            if not same:
                out.append(stem)
        return sorted(out)

    @staticmethod
    def _same_entries(table: Any, base: dict, changed: dict, gone: frozenset) -> bool:
        if not isinstance(table, dict):
            return False
        if len(table) != len(base) - len(gone) + sum(k not in base for k in changed):
            return False
        for key, value in table.items():
            if key in changed:
                if value != changed[key]:
                    return False
            elif key in gone or key not in base or value != base[key]:
                return False
        return True


# -- the domain ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TauTask:
    """One task: the user's instruction, the gold actions (``{"name", "arguments"}``), the outputs to say."""

    id: str
    instruction: str
    actions: tuple[dict[str, Any], ...]
    outputs: tuple[str, ...]
    user_id: str | None
    gold: GoldWorld

    def gold_reply(self) -> str:
        """A message to the user that holds every required output: the gold agent's last turn."""
        if not self.outputs:
            return "Your request is complete. Is there anything else I can help you with?"
        return "Here is what you asked for: " + "; ".join(self.outputs) + "."


@dataclass(frozen=True, eq=False)
class TauDomain:
    """A loaded, checked domain: tools, their sources, the initial world, the policy and the tasks."""

    name: str
    root: Path
    tools: list[dict[str, Any]]
    codes: dict[str, str]
    world: dict[str, Any]
    wiki: str
    tasks: tuple[TauTask, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {t.id: t for t in self.tasks})

    def task(self, task_id: str) -> TauTask:
        try:
            return self._by_id[task_id]  # type: ignore[attr-defined]
        except KeyError:
            raise ValueError(f"{task_id!r} is not a task of the τ-bench domain {self.name!r}") from None

    def scenarios(self) -> list[Scenario]:
        """One scenario per task, all sharing the one initial world (each episode plays a copy)."""
        system = [{"role": "system", "content": self.wiki}]
        return [
            Scenario(
                id=t.id,
                kind="unknown",
                messages=list(system),
                tools=self.tools,
                source=self.codes,
                state=self.world,
                subtasks=[],
                answer="",
                metadata={
                    "format": "taubench",
                    "domain": self.name,
                    "user_id": t.user_id,
                    "instruction": t.instruction,
                    "n_actions": len(t.actions),
                },
            )
            for t in self.tasks
        ]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise PackError(str(path), "<file>", "not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PackError(f"{path}:{exc.lineno}", "<json>", f"not valid JSON: {exc.msg}") from None


def _read_tools(path: Path) -> list[dict[str, Any]]:
    tools = _check_tools(_read_json(path), str(path))
    seen: set[str] = set()
    for i, t in enumerate(tools):
        name = t["function"]["name"]
        if name in seen:
            raise PackError(str(path), f"tools[{i}].function.name", f"tool {name!r} is defined twice")
        seen.add(name)
    return tools


def _read_codes(path: Path, names: list[str]) -> dict[str, str]:
    codes = _read_json(path)
    where = str(path)
    if not isinstance(codes, dict):
        raise PackError(where, "<root>", "expected an object mapping tool name to Python source")
    for name, src in codes.items():
        if not isinstance(src, str):
            raise PackError(where, name, f"expected Python source (a string), got {type(src).__name__}")
        if name not in names:
            raise PackError(where, name, "no schema for this tool in tools.json")
    for name in names:
        if name not in codes:
            raise PackError(where, name, "tools.json offers this tool but codes.json has no source for it")
    for name in names:  # one at a time, so the error names its tool's field
        try:
            check_tool_sources({name: codes[name]})
        except ToolSourceError as exc:
            raise PackError(where, name, str(exc)) from None
    return {name: codes[name] for name in names}


def _read_world(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise PackError(str(folder), "<dir>", "not found: the world's tables go in data/<table>.json")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise PackError(str(folder), "<dir>", "holds no .json tables")
    return {p.stem: _read_json(p) for p in files}


def _records(path: Path) -> list[tuple[str, Any]]:
    """(where, record) of every task record in a JSONL file or a JSON list."""
    if not path.is_file():
        raise PackError(str(path), "<file>", "not found (give the tasks file, or put tasks.jsonl in the domain)")
    if path.suffix == ".json":
        records = _read_json(path)
        if not isinstance(records, list):
            raise PackError(str(path), "<root>", "expected a JSON list of task records")
        out = [(f"{path}[{i}]", r) for i, r in enumerate(records)]
    else:
        out = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append((f"{path}:{lineno}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise PackError(f"{path}:{lineno}", "<json>", f"not valid JSON: {exc.msg}") from None
    if not out:
        raise PackError(str(path), "<root>", "holds no task records")
    return out


def _read_task(record: Any, index: int, where: str, domain: dict[str, Any], box: Toolbox, world_json: str) -> TauTask:
    if not isinstance(record, dict):
        raise PackError(where, "<record>", "expected a JSON object")
    task_id = record.get("id", f"task-{index}")
    if not isinstance(task_id, str) or not task_id:
        raise PackError(where, "id", "expected a non-empty string")

    def fail(field: str, problem: str) -> PackError:
        return PackError(where, field, f"record {task_id!r}: {problem}")

    for key in sorted(record.keys() - _TASK_KEYS):
        raise fail(key, f"unknown field (a task has {', '.join(sorted(_TASK_KEYS))})")
    instruction = record.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise fail("instruction", "missing or not a non-empty string")
    user_id = record.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise fail("user_id", f"expected a string, got {type(user_id).__name__}")
    outputs = record.get("outputs", [])
    if not isinstance(outputs, list):
        raise fail("outputs", "expected a list of strings")
    for j, out in enumerate(outputs):
        if not isinstance(out, str) or not out.strip():
            raise fail(f"outputs[{j}]", "expected a non-empty string")
        if "," in out:  # τ-bench drops commas from the replies before matching
            raise fail(f"outputs[{j}]", f"{out!r} holds a comma, which is removed from replies, so never matches")
    actions = record.get("actions")
    if not isinstance(actions, list):
        raise fail("actions", "missing or not a list of {'name', 'arguments'} objects")
    state = json.loads(world_json)
    gold: list[dict[str, Any]] = []
    for j, action in enumerate(actions):
        field = f"actions[{j}]"
        if not isinstance(action, dict):
            raise fail(field, "expected an object with 'name' and 'arguments'")
        for key in sorted(action.keys() - _ACTION_KEYS):
            raise fail(f"{field}.{key}", "unknown field (an action has 'name' and 'arguments')")
        if "arguments" in action and "kwargs" in action:
            raise fail(field, "give 'arguments' or 'kwargs', not both")
        name = action.get("name")
        if name not in domain["schemas"]:
            raise fail(f"{field}.name", f"unknown tool {name!r}; tools: {', '.join(sorted(domain['schemas']))}")
        arguments = action.get("arguments", action.get("kwargs", {}))
        if not isinstance(arguments, dict):
            raise fail(f"{field}.arguments", f"expected an object, got {type(arguments).__name__}")
        problem = check_arguments(domain["validators"][name], arguments)
        if problem is not None:
            raise fail(f"{field}.arguments", f"{problem[0].replace('_', ' ')} for {name!r}: {problem[1]}")
        outcome = box.call(name, arguments, state)
        if not outcome.ok:
            raise fail(field, f"gold action {name!r} failed: {outcome.output}")
        if outcome.output.startswith(("Error", '{"error"')):
            raise fail(field, f"gold action {name!r} returned an error: {outcome.output[:300]}")
        gold.append({"name": name, "arguments": arguments})
    return TauTask(
        id=task_id,
        instruction=instruction,
        actions=tuple(gold),
        outputs=tuple(outputs),
        user_id=user_id,
        gold=GoldWorld.between(domain["world"], state),
    )


def load_domain(path: str | os.PathLike[str], tasks: str | os.PathLike[str] | None = None, name: str = "") -> TauDomain:
    """Load and check a τ-bench-format domain folder; ``tasks`` defaults to its ``tasks.jsonl`` (or ``tasks.json``).

    Everything is checked now, so a broken domain fails here with one :class:`~toolgym.packs.PackError` naming
    the file (and line), the record and the field: schemas, sources (compiled by the sandbox's policy), tables,
    task fields, gold actions naming unknown tools, arguments failing their tool's schema, gold actions that
    raise or return an error. The gold end state of every task is computed here.
    """
    root = Path(path)
    if not root.is_dir():
        raise PackError(str(root), "<dir>", "not a folder (a τ-bench domain is a folder with tools.json, ...)")
    tools = _read_tools(root / "tools.json")
    names = [t["function"]["name"] for t in tools]
    codes = _read_codes(root / "codes.json", names)
    world = _read_world(root / "data")
    wiki_path = root / "wiki.md"
    if not wiki_path.is_file():
        raise PackError(str(wiki_path), "<file>", "not found (the agent's policy: the system prompt)")
    wiki = wiki_path.read_text(encoding="utf-8").strip()
    if not wiki:
        raise PackError(str(wiki_path), "<file>", "is empty")
    tasks_path = Path(tasks) if tasks is not None else _default_tasks(root)
    schemas = {t["function"]["name"]: t["function"] for t in tools}
    domain = {
        "schemas": schemas,
        "validators": {n: parameters_validator(f.get("parameters") or {}) for n, f in schemas.items()},
        "world": world,
    }
    box = Toolbox(codes, **_GOLD_SANDBOX)
    world_json = json.dumps(world)
    read: list[TauTask] = []
    seen: dict[str, str] = {}
    for i, (where, record) in enumerate(_records(tasks_path)):
        task = _read_task(record, i, where, domain, box, world_json)
        if task.id in seen:
            raise PackError(where, "id", f"record {task.id!r}: the id of an earlier record ({seen[task.id]})")
        seen[task.id] = where
        read.append(task)
    return TauDomain(name or root.name, root, tools, codes, world, wiki, tuple(read))


def _default_tasks(root: Path) -> Path:
    jsonl = root / "tasks.jsonl"
    return jsonl if jsonl.is_file() or not (root / "tasks.json").is_file() else root / "tasks.json"


def _stamp(root: Path, tasks: Path | None) -> tuple:
    """Modification times of a domain's files: a cached domain is reloaded when one changes."""
    files = [root / "tools.json", root / "codes.json", root / "wiki.md", tasks or _default_tasks(root)]
    files += sorted((root / "data").glob("*.json"))
    return tuple((str(p), p.stat().st_mtime_ns) if p.exists() else (str(p), None) for p in files)


@lru_cache(maxsize=16)
def _cached_domain(path: str, tasks: str | None, name: str, stamp: tuple) -> TauDomain:
    return load_domain(path, tasks, name)


def cached_domain(path: str, tasks: str | None = None, name: str = "") -> TauDomain:
    """:func:`load_domain`, loaded once per process while its files stay unchanged (``gym.make`` calls this)."""
    return _cached_domain(path, tasks, name, _stamp(Path(path), Path(tasks) if tasks else None))


# -- simulated users -------------------------------------------------------------------------------------------------
class SimulatedUser(Protocol):
    """Plays the user: ``reply(task, messages)`` is the user's next message.

    ``messages`` is the chat so far as the agent sees it (system, user, assistant and tool messages); the first
    call, at reset, sees only the system message and gives the user's opening message.
    """

    def reply(self, task: TauTask, messages: list[dict[str, Any]]) -> str: ...


def _n_user_messages(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if m.get("role") == "user")


class ScriptedUser:
    """A deterministic user for tests and gold runs: the instruction first, then the scripted replies, then stop.

    ``replies`` is one script for every task or a mapping task id -> script; reply *k* (after the opening) is
    ``script[k]``, and once a script is used up the user says :data:`STOP_TOKEN`. The reply is chosen by how many
    user messages the chat already holds, so one ScriptedUser can serve many envs (a vector env) at once.
    ``opening`` replaces the instruction as the first message. ``ScriptedUser()`` states the instruction and stops
    at the agent's first message to it: the user ``gym.make`` gives an env when none is passed.
    """

    def __init__(self, replies: Sequence[str] | Mapping[str, Sequence[str]] = (), *, opening: str | None = None):
        if isinstance(replies, str):
            raise TypeError("replies is a list of messages (or a mapping task id -> list), not one string")
        self.replies = replies
        self.opening = opening

    def reply(self, task: TauTask, messages: list[dict[str, Any]]) -> str:
        k = _n_user_messages(messages)
        if k == 0:
            return self.opening if self.opening is not None else task.instruction
        script = self.replies.get(task.id, ()) if isinstance(self.replies, Mapping) else self.replies
        return str(script[k - 1]) if k - 1 < len(script) else STOP_TOKEN

    def __repr__(self) -> str:
        return f"ScriptedUser({self.replies!r})"


USER_PROMPT = """You are a customer talking to a customer-service agent. Play this customer.

Your goal, and everything you know:
{instruction}

How to play:
- Write one short message at a time, in your own words, as the customer would.
- Reveal information only when the agent asks for it; never state the whole goal at once.
- Do not make up facts that are not above: if the agent asks for something you do not know, say so.
- When your goal is reached, or the agent cannot help you further, reply with {stop} and nothing else."""
GREETING = "Hi! How can I help you today?"  # what the user model is told the agent said first, as in τ-bench


class ModelUser:
    """A user played by a chat model behind an OpenAI-compatible server, through toolgym's :class:`ChatClient`.

    ``client`` is a :class:`~toolgym.model_client.ChatClient` (shared with other users, its retry policy and
    stats with them) or a base URL to build one from (``api_key`` and ``client_kwargs`` go to it). The model gets
    :data:`USER_PROMPT` with the task's instruction and the dialogue with the roles flipped (the agent's
    messages to the user as ``user``, the user's as ``assistant``; tool traffic is not shown), and samples with
    ``temperature`` (0: greedy) and ``seed``, so a server that honours them replies the same way every time.
    An empty reply counts as the user leaving: it becomes :data:`STOP_TOKEN`.

    The env's ``step`` is synchronous, so ``reply`` runs the request on one background event loop (a thread
    shared by every ModelUser of the process, so a shared client always runs on one loop); it blocks its caller,
    also when that caller is a coroutine. ``loop`` names the loop a shared client runs on instead (the eval
    harness's, whose client the user then shares, retries and counters included): ``reply`` submits the request
    there, so it must be called from another thread (the harness steps such envs with ``asyncio.to_thread``).
    ``await areply(...)`` is the same request for async callers that use the client on their own loop. Failures
    are the client's: :class:`~toolgym.model_client.RunAborted` and :class:`~toolgym.model_client.BadRequest`
    propagate out of ``step``; ``on_error(attempt, exc)``, when set, sees every failed attempt first.
    """

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        api_key: str | None = None,
        temperature: float = 0.0,
        seed: int | None = 0,
        max_tokens: int = 256,
        prompt: str = USER_PROMPT,
        loop: asyncio.AbstractEventLoop | None = None,
        **client_kwargs: Any,
    ):
        self.model = model
        self.temperature = temperature
        self.seed = seed
        self.max_tokens = max_tokens
        self.prompt = prompt
        self.loop = loop
        self.on_error: Any = None  # (attempt, exc) of every failed request: how a caller records them
        if isinstance(client, str):
            if loop is not None:
                raise TypeError("loop= is the loop of a shared client; a client built from a URL runs on its own")
            self._client_args: tuple | None = (client, api_key, client_kwargs)
            self.client = self._build_client()
        else:
            if api_key is not None or client_kwargs:
                raise TypeError("api_key and client options go to the ChatClient: pass them where it is built")
            self._client_args = None
            self.client = client

    def _build_client(self) -> Any:
        from toolgym.model_client import ChatClient

        base_url, api_key, kwargs = self._client_args  # type: ignore[misc]
        return ChatClient(base_url, api_key, **kwargs)

    def conversation(self, task: TauTask, messages: list[dict[str, Any]]) -> list[dict[str, str]]:
        """The chat the user model sees: its instructions, then the dialogue from the user's side."""
        flipped = [{"role": "user", "content": GREETING}]
        for m in messages:
            role, content = m.get("role"), m.get("content") or ""
            if role == "user":
                flipped.append({"role": "assistant", "content": content})
            elif role == "assistant" and not m.get("tool_calls"):
                flipped.append({"role": "user", "content": content})
        system = self.prompt.format(instruction=task.instruction, stop=STOP_TOKEN)
        return [{"role": "system", "content": system}, *flipped]

    def request(self, task: TauTask, messages: list[dict[str, Any]]) -> dict[str, Any]:
        req: dict[str, Any] = {
            "model": self.model,
            "messages": self.conversation(task, messages),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            req["seed"] = self.seed
        return req

    async def areply(self, task: TauTask, messages: list[dict[str, Any]]) -> str:
        from toolgym.model_client import reply_message

        resp = await self.client.complete(self.request(task, messages), on_error=self.on_error)
        text = reply_message(resp)["content"].strip()
        return text or STOP_TOKEN

    def reply(self, task: TauTask, messages: list[dict[str, Any]]) -> str:
        return _run(self.areply(task, messages), self.loop)

    def close(self) -> None:
        """Close the client when this user built it (a shared client is its owner's to close)."""
        if self._client_args is not None:
            _run(self.client.close())

    def __getstate__(self) -> dict[str, Any]:
        if self._client_args is None:
            raise TypeError("a ModelUser on a shared ChatClient cannot be pickled: build it from a base URL")
        return {k: v for k, v in self.__dict__.items() if k not in ("client", "on_error")} | {"on_error": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.client = self._build_client()

    def __repr__(self) -> str:
        return f"ModelUser(model={self.model!r}, temperature={self.temperature}, seed={self.seed})"


_LOOP: dict[str, Any] = {}
_LOOP_LOCK = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """The process's user-model event loop, running in a daemon thread (started on first use, again after fork)."""
    with _LOOP_LOCK:
        if _LOOP.get("pid") != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="toolgym-user-model", daemon=True)
            thread.start()
            _LOOP.update(pid=os.getpid(), loop=loop, thread=thread)
        return _LOOP["loop"]


def _run(coro: Any, loop: asyncio.AbstractEventLoop | None = None) -> Any:
    """Run ``coro`` on ``loop`` (default: the background loop) and wait for it, from any other thread."""
    if loop is None:
        loop = _background_loop()
        on_it = threading.current_thread() is _LOOP["thread"]
    else:
        try:
            on_it = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_it = False
    if on_it:  # waiting here would block the very loop the request needs
        coro.close()
        raise RuntimeError(
            "ModelUser.reply called on the loop its client runs on: step the env in another thread "
            "(asyncio.to_thread) or await areply() there"
        )
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def make_user(spec: Any = None, client: Any = None, loop: asyncio.AbstractEventLoop | None = None) -> SimulatedUser:
    """The simulated user a ``user=`` env kwarg names.

    ``spec`` is a user object (anything with ``reply``), ``None`` or ``"scripted"`` (``ScriptedUser()``), or a
    JSON-able dict, so that it can travel as an env kwarg through ``gym.make``, the eval harness and its
    ``config.json``: ``{"kind": "scripted", "replies": [...], "opening": ...}`` or ``{"kind": "model", "model":
    M, "temperature": 0.0, "seed": 0, "max_tokens": 256, "base_url": URL}``. A model user talks through
    ``client``: a :class:`~toolgym.model_client.ChatClient` shared with the caller (``loop``: the event loop it
    runs on), else a base URL (default: the spec's ``base_url``; API key from ``TOOLGYM_USER_API_KEY``).
    """
    if spec is None or spec == "scripted":
        return ScriptedUser()
    if hasattr(spec, "reply"):
        return spec
    if not isinstance(spec, Mapping) or spec.get("kind") not in _USER_KEYS:
        raise ValueError(f"user must be a user object, 'scripted' or a dict with kind in {sorted(_USER_KEYS)}")
    kind = spec["kind"]
    unknown = set(spec) - _USER_KEYS[kind] - {"kind"}
    if unknown:
        raise ValueError(f"a {kind} user takes {sorted(_USER_KEYS[kind])}, not {sorted(unknown)}")
    if kind == "scripted":
        return ScriptedUser(spec.get("replies", ()), opening=spec.get("opening"))
    if not isinstance(spec.get("model"), str) or not spec["model"]:
        raise ValueError("a model user needs 'model': the name the server knows it by")
    options = {k: spec[k] for k in ("temperature", "seed", "max_tokens") if k in spec}
    if client is None or isinstance(client, str):
        url = client or spec.get("base_url")
        if not url:
            raise ValueError("a model user needs a client: user_client= (a ChatClient or a URL) or 'base_url'")
        return ModelUser(url, spec["model"], api_key=os.environ.get("TOOLGYM_USER_API_KEY"), **options)
    return ModelUser(client, spec["model"], loop=loop, **options)


_USER_KEYS = {
    "scripted": frozenset({"replies", "opening"}),
    "model": frozenset({"model", "temperature", "seed", "max_tokens", "base_url"}),
}


# -- the env ---------------------------------------------------------------------------------------------------------
# FTRL's components that mean something without sub-answers, then the dialogue's and τ-bench's own.
_SUB_ANSWER_KEYS = (  # and state_ok: this env's world check is world_ok
    "reward_ftrl",
    "n_solved_now",
    "n_unsolved",
    "precision",
    "recall",
    "f1",
    "answer_correct",
    "state_ok",
)
_KEPT = tuple(k for k in ENV_COMPONENT_KEYS if k not in _SUB_ANSWER_KEYS)
COMPONENT_KEYS = (*_KEPT, "to_user", "world_ok", "outputs_ok", "pass")
_ERROR_COUNTS = ("n_tool_errors", "n_timeouts", "n_missing_args", "n_extra_args")


@dataclass(frozen=True)
class Verdict:
    """τ-bench's check of an episode: the tables that differ from the gold world, the outputs never said."""

    world_diff: tuple[str, ...]
    missing_outputs: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.world_diff and not self.missing_outputs


class TauBenchEnv(ToolEnv):
    """A :class:`~toolgym.env.ToolEnv` over a τ-bench-format domain, with a simulated user.

    ``reset`` picks a task (``options={"index": i}`` for a given one), starts the chat with the domain's wiki as
    the system message and the user's opening message. A ``step`` with tool calls runs them on the episode's
    world; a ``step`` without calls is a message to the user, answered by ``user`` (default: ``ScriptedUser()``;
    any spec :func:`make_user` reads, e.g. ``{"kind": "model", "model": M}`` with ``user_client`` a ChatClient
    or a base URL and ``user_loop`` the loop a shared client runs on).
    On the last step ``info`` holds ``pass`` (1.0 iff the world equals the gold world and every output string
    was said to the user, case-insensitive, commas dropped: τ-bench's rule), ``world_diff`` (the tables that
    differ) and ``missing_outputs``. ``reward="pass"`` (default) gives 0 before the last step and ``pass`` on it;
    a callable ``(components, env) -> float`` is called on every step instead.

    ``info["reward_components"]`` holds :data:`COMPONENT_KEYS`: FTRL's per-call counts (calls, unreadable calls,
    argument errors, tool errors, timeouts, ``format_ok``, ``args_valid``), ``to_user`` (the turn was a message to
    the user), and ``world_ok``, ``outputs_ok`` and ``pass`` (0 before the last step). A tool result that starts
    with ``Error`` (τ-bench's tools report failures so) counts as a tool error.
    """

    def __init__(
        self,
        domain: TauDomain,
        *,
        user: Any = None,
        user_client: Any = None,
        user_loop: asyncio.AbstractEventLoop | None = None,
        max_turns: int = 30,
        reward: Any = "pass",
        **kwargs: Any,
    ):
        if "system_prompt" in kwargs:
            raise TypeError("a τ-bench env's system prompt is its domain's wiki.md")
        if reward != "pass" and not callable(reward):
            raise ValueError(f"unknown reward {reward!r}: 'pass' or a callable (components, env) -> float")
        super().__init__(
            StaticSource(f"TauBench-{domain.name}", domain.scenarios()),
            max_turns=max_turns,
            system_prompt=None,
            **kwargs,
        )
        self.domain = domain
        self.user = make_user(user, user_client, user_loop)
        self.pass_reward = reward

    # -- episode setup ---------------------------------------------------------------------------------------------
    def _start(self, scenario: Scenario, owned: bool = False) -> None:
        task = self.domain.task(scenario.id)
        super()._start(scenario, owned)
        self.task = task
        self._said: list[str] = []  # the agent's messages to the user
        self._gold_done = 0  # how many of the gold actions, in order, the episode has made
        self._verdict: tuple[int, Verdict] | None = None
        self._messages.append({"role": "user", "content": self._user_reply()})

    def _reset_info(self) -> dict[str, Any]:
        return {**super()._reset_info(), "task_id": self.task.id, "user_id": self.task.user_id}

    def _user_reply(self) -> str:
        reply = self.user.reply(self.task, list(self._messages))
        if not isinstance(reply, str):
            raise TypeError(f"{type(self.user).__name__}.reply returned {type(reply).__name__}, not a str")
        return reply

    # -- stepping --------------------------------------------------------------------------------------------------
    def step(self, action: Any):
        if self.scenario is None or self._done:
            obs, reward, terminated, truncated, info = super().step(action)
            info["reward_components"] = dict.fromkeys(COMPONENT_KEYS, 0.0)
            return obs, reward, terminated, truncated, info
        obs, base_reward, terminated, truncated, info = super().step(action)
        self.episode_return -= base_reward  # FTRL's turn reward: this env's reward is τ-bench's
        self._verdict = None  # ToolEnv's end-of-episode metrics ran before this turn's message was counted
        to_user = terminated  # a turn with no call and nothing unreadable: a message to the user
        if to_user:
            self._said.append(info["new_messages"][0].get("content") or "")
            message = {"role": "user", "content": self._user_reply()}
            self._messages.append(message)
            info["new_messages"].append(message)
            terminated = STOP_TOKEN in message["content"]
            truncated = not terminated and self._turn >= self.max_turns
            self._done = terminated or truncated
            obs = self._obs()
        done = terminated or truncated
        base = info["reward_components"]
        comp = {k: base[k] for k in _KEPT}
        comp["to_user"] = float(to_user)
        verdict = self.verdict() if done else None
        comp["world_ok"] = float(verdict is not None and not verdict.world_diff)
        comp["outputs_ok"] = float(verdict is not None and not verdict.missing_outputs)
        comp["pass"] = float(verdict is not None and verdict.passed)
        info["reward_components"] = comp
        spec = self.pass_reward
        reward = float(spec(comp, self)) if callable(spec) else comp["pass"]
        self.episode_return += reward
        info.pop("episode", None)
        if verdict is not None:
            info["pass"] = comp["pass"]
            info["world_diff"] = list(verdict.world_diff)
            info["missing_outputs"] = list(verdict.missing_outputs)
            info["episode"] = self.episode_metrics()
        return obs, reward, terminated, truncated, info

    def _run_call(self, name: str, arguments: dict[str, Any], comp: dict[str, float]) -> tuple[str, int, int]:
        errors = sum(comp[k] for k in _ERROR_COUNTS)
        text, solved, valid = super()._run_call(name, arguments, comp)
        clean = valid and sum(comp[k] for k in _ERROR_COUNTS) == errors
        if clean and text.startswith("Error"):  # τ-bench's tools return "Error: ..." for a failed request
            comp["n_tool_errors"] += 1
            clean = False
        actions = self.task.actions
        if clean and self._gold_done < len(actions):
            gold = actions[self._gold_done]
            if gold["name"] == name and gold["arguments"] == arguments:
                self._gold_done += 1
        return text, solved, valid

    # -- the check -------------------------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        """τ-bench's check of the episode so far: world against the gold world, outputs against what was said."""
        if self._verdict is not None and self._verdict[0] == self._turn:
            return self._verdict[1]
        said = [text.lower().replace(",", "") for text in self._said]
        missing = tuple(o for o in self.task.outputs if not any(o.lower() in s for s in said))
        diff = tuple(self.task.gold.differing(self.state, self.domain.world))
        verdict = Verdict(diff, missing)
        self._verdict = (self._turn, verdict)
        return verdict

    def episode_metrics(self) -> dict[str, float]:
        """ToolEnv's metrics plus ``pass``, ``world_ok``, ``outputs_ok`` and ``user_turns``; ``state_ok`` is
        ``world_ok`` (the world equals the gold world)."""
        metrics = super().episode_metrics()
        verdict = self.verdict()
        metrics["state_ok"] = metrics["world_ok"] = float(not verdict.world_diff)
        metrics["outputs_ok"] = float(not verdict.missing_outputs)
        metrics["pass"] = float(verdict.passed)
        metrics["user_turns"] = float(len(self._said))
        return metrics

    def gold_plan(self) -> list[list[dict[str, Any]]]:
        """The gold actions still to make, one per turn (a write may depend on the one before)."""
        return [[dict(a)] for a in self.task.actions[self._gold_done :]]

    def gold_actions(self) -> list[str]:
        """The gold remaining turns as Hermes completions, ending with a message to the user holding the outputs."""
        turns = [format_hermes([(c["name"], c["arguments"])]) for (c,) in self.gold_plan()]
        return [*turns, self.task.gold_reply()]


# -- registration ----------------------------------------------------------------------------------------------------
# What gym.make takes for a τ-bench id: this env's own keyword arguments and ToolEnv's, but the system prompt.
OPTIONS = tuple(
    sorted(
        {
            name
            for cls in (TauBenchEnv, ToolEnv)
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        - {"system_prompt"}
    )
)


def make_env(path: str, tasks: str | None = None, name: str = "", **kwargs: Any) -> TauBenchEnv:
    """The env of a τ-bench manifest's ``entry`` (see :func:`manifest`); ``kwargs`` go to :class:`TauBenchEnv`."""
    return TauBenchEnv(cached_domain(path, tasks, name), **kwargs)


def manifest(
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    tasks: str | os.PathLike[str] | None = None,
    version: int = 0,
) -> dict[str, Any]:
    """Check the domain at ``path`` and describe it as a registry manifest of type ``"taubench"``.

    The manifest names its ``entry`` (:func:`make_env`) with ``entry_args`` (the files) and the ``options``
    ``gym.make`` takes, so the registry makes, lists and vectorizes the env like any other, and the eval harness
    hands it the env kwargs it takes (``user``, ...) and not the generator knobs it does not.
    """
    root = Path(path).resolve()
    name = root.name if name is None else name
    if not _NAME.fullmatch(name) or re.search(r"-v\d+$", name):
        raise ValueError(f"name {name!r}: use letters, digits, '_', '.' and inner '-' (no '-v<N>' suffix)")
    if not isinstance(version, int) or version < 0:
        raise ValueError("version must be an integer >= 0")
    tasks_arg = str(Path(tasks).resolve()) if tasks is not None else None
    domain = cached_domain(str(root), tasks_arg, name)  # fail now, with the file, record and field
    return {
        "name": f"TauBench-{name}",
        "version": version,
        "type": "taubench",
        "description": f"τ-bench-format domain {root.name}: {len(domain.tasks)} tasks, a simulated user",
        "entry": "toolgym.suites.taubench:make_env",
        "entry_args": {"path": str(root), "tasks": tasks_arg, "name": name},
        "options": list(OPTIONS),
        "max_turns": 30,
    }


def register(
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    tasks: str | os.PathLike[str] | None = None,
    version: int = 0,
) -> str:
    """Check the domain at ``path`` and register it as ``ToolGym/TauBench-<name>-v<version>``; returns the id.

    ``name`` defaults to the folder's name. ``gym.make(id, user=ScriptedUser(...) | ModelUser(...), max_turns=...)``
    then makes a :class:`TauBenchEnv` (the domain is loaded once per process while its files are unchanged), and
    ``gym.make_vec(id, num_envs=n, user=...)`` a vector env. Registering the same id again replaces it.

    The id is registered as every ToolGym id is, through the registry's entry points, with its manifest
    (:func:`manifest`) in the spec's kwargs: the registry reads it from there, so this module imports nothing
    above it.
    """
    m = manifest(path, name, tasks=tasks, version=version)
    env_id = f"{NAMESPACE}/{m['name']}-v{m['version']}"
    if env_id in gym.registry:
        del gym.registry[env_id]
    gym.register(
        id=env_id,
        entry_point="toolgym.registry:make_env",
        vector_entry_point="toolgym.vector:make_vector_env",
        kwargs={"pack": env_id, "manifest": m},
    )
    return env_id
