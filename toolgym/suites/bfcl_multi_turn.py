"""BFCL v4 multi-turn categories: BFCL's stateful classes run in the sandbox, scored by its state and response checks.

An entry of ``multi_turn_base`` (and of ``multi_turn_long_context``, ``multi_turn_miss_param``,
``multi_turn_miss_func``) is a dialogue of several user turns over a few of BFCL's classes (a file system, a
trading bot, a travel agency, ...) whose instances start from the entry's ``initial_config``. The data and the
classes' source are read from the installed ``bfcl-eval`` package, never vendored: the eight class files and
``long_context.py`` run as one tool package in a :class:`~toolgym.sandbox.Toolbox` (built once per env; each
episode gets fresh instances), so the model's calls execute the real classes as BFCL's executor does, under the
sandbox's guards.

An episode (:class:`BFCLMultiTurnEnv`) follows BFCL's function-calling inference loop:

* the observation is the first user turn and the OpenAI schemas of every function of the involved classes (BFCL
  offers them all; its ``excluded_function`` field is unused by BFCL too). A miss_func entry holds some back
  until a later turn, whose user message is then BFCL's "I have updated some more functions ..." prompt;
  long_context loads the classes' long-context scenario;
* a call runs on the instance whose class has that method; when two involved classes share a name, the later one
  in ``involved_classes`` wins, as BFCL's name-to-instance mapping does. Results read as BFCL's executor writes
  them: a ``dict`` as ``json.dumps``, a string as is, anything else as ``str()``, a failure as ``Error during
  execution: <message>``;
* an assistant turn without calls ends the user turn: the env checks it, then appends the next user turn; after
  the last one the episode terminates. More than BFCL's ``MAXIMUM_STEP_LIMIT`` (20) calling steps in one user
  turn is BFCL's force-quit: the episode is truncated and fails. An unreadable call block does not end the turn
  (toolgym's rule: the model gets feedback and retries; it counts as a step).

The check of a user turn is BFCL's ``multi_turn_checker``: the turn's ground-truth calls run on a parallel set of
gold instances (same Toolbox, their own objects, carried over from turn to turn). A turn without gold calls
(miss_param's and miss_func's turns the model cannot complete) is not checked, as in BFCL's checker; any other
fails, in BFCL's order, when the model made no call in it (``empty_turn``), when an involved class's
public attributes differ between the model's and the gold instance (``state``), or when a gold result of the turn
is missing from the model's results of all turns so far, matched as a multiset (``response``). The episode passes
(``bfcl_multi_turn`` = 1.0, BFCL's accuracy) when every turn does.

``tests/test_suite_bfcl_multi_turn.py`` plays every entry's ground truth and compares the verdicts with BFCL's own
checker on gold and perturbed plays.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from toolgym.arguments import check_arguments, parameters_validator
from toolgym.calls import format_hermes
from toolgym.env import COMPONENT_KEYS as ENV_COMPONENT_KEYS
from toolgym.env import ToolEnv
from toolgym.sandbox import Toolbox, ToolObject
from toolgym.scenario import Scenario
from toolgym.sources import StaticSource
from toolgym.suites.bfcl import SUITE, VERSION, data_dir, missing_message, tool_schema

__all__ = [
    "CATEGORIES",
    "CLASS_FILES",
    "MAXIMUM_STEP_LIMIT",
    "BFCLMultiTurnEnv",
    "Entry",
    "TurnVerdict",
    "load_entries",
    "make_env",
    "manifests",
    "parse_call",
]

# toolgym category -> whether BFCL loads the classes' long-context scenario (``long_context=True``).
CATEGORIES = {
    "multi_turn_base": False,
    "multi_turn_long_context": True,
    "multi_turn_miss_param": False,
    "multi_turn_miss_func": False,
}
# The user turn of a miss_func entry in which the held-out functions are offered (BFCL's default_prompts).
ADDITIONAL_FUNCTION_PROMPT = "I have updated some more functions you can choose from. What about now?"
PACKAGE_PREFIX = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
# BFCL class -> (its module's file stem, its function-doc file): constants/executable_backend_config.py.
CLASS_FILES = {
    "GorillaFileSystem": ("gorilla_file_system", "gorilla_file_system.json"),
    "MathAPI": ("math_api", "math_api.json"),
    "MessageAPI": ("message_api", "message_api.json"),
    "TwitterAPI": ("posting_api", "posting_api.json"),
    "TicketAPI": ("ticket_api", "ticket_api.json"),
    "TradingBot": ("trading_bot", "trading_bot.json"),
    "TravelAPI": ("travel_booking", "travel_booking.json"),
    "VehicleControlAPI": ("vehicle_control", "vehicle_control.json"),
}
HELPER_MODULES = ("long_context",)  # imported by the class files
STATELESS_CLASSES = ("MathAPI",)  # BFCL loads no scenario into these
MAXIMUM_STEP_LIMIT = 20  # bfcl_eval.constants.default_prompts: calling steps per user turn before force-quit
# Method names BFCL's executor refuses to run (multi_turn_utils.execute_multi_turn_func_call).
BLOCKED_METHODS = frozenset({"kill", "exit", "quit", "remove", "unlink", "popen", "Popen", "run"})
_SANDBOX_ERROR = re.compile(r"Error: (?:bad arguments for tool '[^']*': )?[A-Za-z_][\w.]*(?:: (.*))?", re.S)


# ------------------------------------------------------------------------------------------------ data
def source_dir() -> Path | None:
    """``func_source_code`` of the installed package (the classes' source), or ``None``."""
    root = data_dir()
    if root is None:
        return None
    path = root.parent / "eval_checker" / "multi_turn_eval" / "func_source_code"
    return path if path.is_dir() else None


def _present(category: str) -> bool:
    root, src = data_dir(), source_dir()
    if root is None or src is None:
        return False
    files = [root / f"BFCL_v4_{category}.json", root / "possible_answer" / f"BFCL_v4_{category}.json"]
    files += [root / "multi_turn_func_doc" / doc for _, doc in CLASS_FILES.values()]
    files += [src / f"{stem}.py" for stem, _ in CLASS_FILES.values()]
    files += [src / f"{stem}.py" for stem in HELPER_MODULES]
    return all(p.is_file() for p in files)


def manifests() -> list[dict[str, Any]]:
    """One registry manifest per multi-turn category whose data and class sources are present (file checks)."""
    return [
        {
            "name": f"BFCL-{category}",
            "version": VERSION,
            "type": "static",
            "env": "toolgym.suites.bfcl_multi_turn:make_env",  # its own env class: turns, user turns, checks
            "env_args": {"category": category},
            "description": f"BFCL v4 {category} (multi-turn, stateful classes), scored by BFCL's state and "
            "response checks as bfcl_multi_turn",
        }
        for category in CATEGORIES
        if _present(category)
    ]


def module_name(stem: str) -> str:
    return f"{PACKAGE_PREFIX}.{stem}"


@cache
def package_sources() -> dict[str, str]:
    """Dotted module name -> source text of the class files and their helper, read from the installed package."""
    src = source_dir()
    if src is None:
        raise ModuleNotFoundError(missing_message())
    stems = [stem for stem, _ in CLASS_FILES.values()] + list(HELPER_MODULES)
    return {module_name(stem): (src / f"{stem}.py").read_text(encoding="utf-8") for stem in stems}


@cache
def method_parameters() -> dict[tuple[str, str], tuple[str, ...]]:
    """(class, method) -> its parameter names after ``self``, read from the source: BFCL's ground truth passes
    some arguments by position, a tool call passes them by name."""
    sources = package_sources()
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for cls, (stem, _) in CLASS_FILES.items():
        tree = ast.parse(sources[module_name(stem)])
        node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
        for fn in node.body:
            if isinstance(fn, ast.FunctionDef):
                args = fn.args.posonlyargs + fn.args.args
                out[cls, fn.name] = tuple(a.arg for a in args[1:])
    return out


@cache
def mutable_defaults() -> dict[tuple[str, str], dict[str, Any]]:
    """(class, method) -> its parameters whose default is a list, dict or set literal, with that value.

    The sandbox keeps function defaults read-only, and BFCL's ``post_tweet(tags=[], mentions=[])`` keeps its
    default lists in the tweet, which ``mention`` then extends: a call that leaves such a parameter out gets a
    fresh copy of its default, the value a first call in a fresh BFCL process binds (in BFCL the shared default
    then grows for every later call).
    """
    sources = package_sources()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for cls, (stem, _) in CLASS_FILES.items():
        tree = ast.parse(sources[module_name(stem)])
        node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
        for fn in node.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            args = fn.args.posonlyargs + fn.args.args
            pairs = [
                *zip(args[len(args) - len(fn.args.defaults) :], fn.args.defaults, strict=True),
                *((a, d) for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True) if d is not None),
            ]
            found = {a.arg: ast.literal_eval(d) for a, d in pairs if isinstance(d, (ast.List, ast.Dict, ast.Set))}
            if found:
                out[cls, fn.name] = found
    return out


@cache
def function_docs(cls: str) -> tuple[dict[str, Any], ...]:
    root = data_dir()
    if root is None:
        raise ModuleNotFoundError(missing_message())
    path = root / "multi_turn_func_doc" / CLASS_FILES[cls][1]
    with path.open(encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


def parse_call(text: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """BFCL's ground-truth call text (``mv(source='a', destination='b')``) as (name, positional, keyword) values."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a plain function call: {text!r}")
    args = tuple(ast.literal_eval(a) for a in node.args)
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    return node.func.id, args, kwargs


@dataclass(frozen=True, eq=False)
class Entry:
    """One BFCL multi-turn entry: its user turns, classes, initial configuration and ground truth per turn.

    ``gold`` holds, per user turn, the ground-truth calls as (method, keyword arguments): positional arguments
    named after the method's parameters, so they can be played as tool calls. ``tools`` are offered from the
    start; ``added`` maps a user turn to the schemas offered from then on (miss_func's held-out functions).
    """

    id: str
    category: str
    turns: tuple[tuple[dict[str, Any], ...], ...]
    involved_classes: tuple[str, ...]
    initial_config: dict[str, Any]
    ground_truth: tuple[tuple[str, ...], ...]
    gold: tuple[tuple[tuple[str, dict[str, Any]], ...], ...]
    tools: list[dict[str, Any]]
    added: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def long_context(self) -> bool:
        return CATEGORIES[self.category]


def _owner(classes: tuple[str, ...], method: str) -> str | None:
    """The class whose instance runs ``method``: the last involved class defining it (BFCL's mapping)."""
    params = method_parameters()
    return next((c for c in reversed(classes) if (c, method) in params and not method.startswith("_")), None)


def _named(classes: tuple[str, ...], text: str) -> tuple[str, dict[str, Any]]:
    name, args, kwargs = parse_call(text)
    owner = _owner(classes, name)
    if owner is None:
        raise ValueError(f"ground-truth call {text!r} names no method of {', '.join(classes)}")
    params = method_parameters()[owner, name]
    if len(args) > len(params):
        raise ValueError(f"ground-truth call {text!r} passes more positional arguments than {name} takes")
    return name, {**dict(zip(params, args, strict=False)), **kwargs}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@cache
def _load(category: str) -> tuple[Entry, ...]:
    root = data_dir()
    if root is None or not _present(category):
        raise ModuleNotFoundError(missing_message())
    items = _read_jsonl(root / f"BFCL_v4_{category}.json")
    answers = {a["id"]: a["ground_truth"] for a in _read_jsonl(root / "possible_answer" / f"BFCL_v4_{category}.json")}
    out = []
    for item in items:
        classes = tuple(item["involved_classes"])
        unknown = [c for c in classes if c not in CLASS_FILES]
        if unknown:
            raise ValueError(f"BFCL entry {item['id']}: classes {unknown} are not multi-turn classes")
        truth = answers.get(item["id"])
        if truth is None or len(truth) != len(item["question"]):
            raise ValueError(f"BFCL entry {item['id']}: no ground truth for each of its user turns")
        docs = [f for c in classes for f in function_docs(c)]
        added = {}
        turns = [[dict(m) for m in turn] for turn in item["question"]]
        for key, names in item.get("missed_function", {}).items():  # BFCL: held out, offered at that turn
            held = []
            for name in names:
                i = next(i for i, f in enumerate(docs) if f["name"] == name)
                held.append(tool_schema(docs.pop(i)))
            added[int(key)] = held
            if turns[int(key)]:
                raise ValueError(f"BFCL entry {item['id']}: the turn offering {names} has a user message")
            turns[int(key)] = [{"role": "user", "content": ADDITIONAL_FUNCTION_PROMPT}]
        tools = [tool_schema(f) for f in docs]
        out.append(
            Entry(
                id=item["id"],
                category=category,
                turns=tuple(tuple(turn) for turn in turns),
                involved_classes=classes,
                initial_config=item["initial_config"],
                ground_truth=tuple(tuple(turn) for turn in truth),
                gold=tuple(tuple(_named(classes, c) for c in turn) for turn in truth),
                tools=tools,
                added=added,
            )
        )
    return tuple(out)


def load_entries(category: str) -> list[Entry]:
    """Every entry of a BFCL multi-turn category (read once per process)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL multi-turn category {category!r}; choose one of {', '.join(CATEGORIES)}")
    return list(_load(category))


def _scenario(entry: Entry) -> Scenario:
    return Scenario(
        id=entry.id,
        kind="multi_turn",
        messages=list(entry.turns[0]),
        tools=entry.tools,
        source={},  # the tools are the instances' methods, run by the env
        state={},
        subtasks=[],
        answer="",
        metadata={
            "suite": SUITE,
            "category": entry.category,
            "bfcl_id": entry.id,
            "involved_classes": list(entry.involved_classes),
            "n_user_turns": len(entry.turns),
        },
    )


# ------------------------------------------------------------------------------------------------ execution
def bfcl_result(output: str) -> str:
    """A successful call's text as BFCL's executor writes the result: ``json.dumps`` (ASCII) for a dict,
    ``str()`` for a list (the sandbox writes both as non-ASCII JSON), anything else as the sandbox wrote it."""
    if output[:1] not in ("{", "["):
        return output
    try:
        value = json.loads(output)
    except ValueError:
        return output  # a string result that only starts like JSON (or a truncated one)
    if type(value) is dict:
        return json.dumps(value)
    if type(value) is list:
        return str(value)
    return output


def bfcl_error(output: str) -> str:
    """A failed call's text as BFCL's executor writes it: ``Error during execution: <the exception's message>``."""
    m = _SANDBOX_ERROR.fullmatch(output)
    return f"Error during execution: {m.group(1) or ''}" if m else f"Error during execution: {output}"


class Instances:
    """The instances of one entry's classes in a Toolbox, and the method -> instance mapping BFCL uses."""

    def __init__(self, box: Toolbox, entry: Entry):
        self.box = box
        self.objects: dict[str, ToolObject] = {}
        for cls in entry.involved_classes:
            obj = box.instantiate(module_name(CLASS_FILES[cls][0]), cls)
            if cls not in STATELESS_CLASSES:
                config = copy.deepcopy(entry.initial_config.get(cls, {}))
                box.invoke(obj, "_load_scenario", config, long_context=entry.long_context)
            self.objects[cls] = obj
        self.classes = entry.involved_classes

    def run(self, method: str, arguments: dict[str, Any]) -> tuple[str, str | None]:
        """(BFCL's result text, the failure kind or ``None``) of one call."""
        if method in BLOCKED_METHODS:
            return f"Error during execution: Function call {method} is not allowed.", "blocked"
        owner = _owner(self.classes, method)
        if owner is None:
            return f"Error during execution: name '{method}' is not defined", "unknown"
        fresh = mutable_defaults().get((owner, method))
        if fresh:
            arguments = {**{k: copy.deepcopy(v) for k, v in fresh.items() if k not in arguments}, **arguments}
        try:
            outcome = self.box.call_method(self.objects[owner], method, arguments)
        except KeyError:
            return f"Error during execution: name '{method}' is not defined", "unknown"
        if not outcome.ok:
            return bfcl_error(outcome.output), outcome.error or "exception"
        return bfcl_result(outcome.output), None

    def differences(self, other: Instances) -> dict[str, list[str]]:
        """Class -> the public attributes whose values differ from ``other``'s (BFCL's state check; ``other`` is
        the gold side, whose attributes BFCL walks)."""
        out = {}
        for cls, gold in other.objects.items():
            diff = self.box.differences(gold, self.objects[cls])
            if diff:
                out[cls] = diff
        return out


@dataclass(frozen=True)
class TurnVerdict:
    """BFCL's check of one user turn: ``reason`` is ``""`` (passed), ``empty_turn``, ``state``, ``response`` or
    ``step_limit``; ``state_diff`` names the differing attributes per class, ``missing`` the gold results absent
    from the model's results."""

    turn: int
    reason: str
    state_diff: dict[str, list[str]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "turn": self.turn,
            "passed": self.passed,
            "reason": self.reason,
            "state_diff": {k: list(v) for k, v in self.state_diff.items()},
            "missing": list(self.missing),
        }


def missing_results(model_results: list[str], gold_results: list[str]) -> list[str]:
    """BFCL's ``_is_subsequence_unordered``: the gold results not found among the model's, each model result
    used at most once."""
    pool = list(model_results)
    missing = []
    for item in gold_results:
        try:
            pool.remove(item)
        except ValueError:
            missing.append(item)
    return missing


# ------------------------------------------------------------------------------------------------ the env
# FTRL's components that need sub-answers are dropped (this suite has none); the per-call ones stay.
_SUB_ANSWER_KEYS = ("reward_ftrl", "n_solved_now", "n_unsolved", "precision", "recall", "f1", "answer_correct")
_KEPT = tuple(k for k in ENV_COMPONENT_KEYS if k not in _SUB_ANSWER_KEYS and k != "state_ok")
COMPONENT_KEYS = (*_KEPT, "turn_end", "turn_passed", "state_ok", "response_ok", "bfcl_multi_turn")
_REWARDS = ("bfcl_multi_turn", "turn_passed")
_NO_STEP_LIMIT = 1 << 30


class BFCLMultiTurnEnv(ToolEnv):
    """A :class:`~toolgym.env.ToolEnv` over a BFCL multi-turn category (see the module docstring).

    ``reset`` picks an entry (from ``np_random``, or ``options={"index": i}``) and builds its model and gold
    instances. ``info`` of a step that ends a user turn holds ``bfcl_turn`` (that turn's verdict:
    ``passed``, ``reason``, ``state_diff``, ``missing``); the last step's holds ``bfcl_turns`` (every turn's) and
    ``bfcl_multi_turn`` (1.0 iff all passed).

    ``info["reward_components"]`` holds :data:`COMPONENT_KEYS`: FTRL's per-call counts (calls, unreadable calls,
    unknown tools, schema problems, tool errors, timeouts, ``format_ok``, ``args_valid``), ``turn_end`` and
    ``turn_passed`` (this step ended a user turn, which passed), ``state_ok`` and ``response_ok`` (its checks), and
    ``bfcl_multi_turn`` (on the last step). A call whose arguments break its schema still runs (BFCL runs what the
    model wrote), and so does a call of a method not on offer (a miss_func function before its turn, an
    undocumented public method); both are counted. ``reward="bfcl_multi_turn"`` (default) is sparse:
    ``bfcl_multi_turn`` on the last step, 0 before; ``"turn_passed"`` rewards each passed user turn; a callable
    ``(components, env) -> float`` is called on every step. ``max_steps_per_turn`` is BFCL's per-turn step limit;
    ``max_turns`` (default: none) caps the assistant steps of the whole episode, as in every toolgym env (an
    episode cut short fails).
    """

    def __init__(
        self,
        category: str = "multi_turn_base",
        *,
        reward: Any = "bfcl_multi_turn",
        max_steps_per_turn: int = MAXIMUM_STEP_LIMIT,
        max_turns: int | None = None,
        max_output_chars: int = 1 << 20,
        **kwargs: Any,
    ):
        if reward not in _REWARDS and not callable(reward):
            raise ValueError(f"unknown reward {reward!r}: {' or '.join(map(repr, _REWARDS))} or a callable")
        if max_steps_per_turn < 1:
            raise ValueError("max_steps_per_turn must be >= 1")
        entries = load_entries(category)
        super().__init__(
            StaticSource(f"BFCL-{category}", [_scenario(e) for e in entries]),
            max_turns=_NO_STEP_LIMIT if max_turns is None else max_turns,
            max_output_chars=max_output_chars,
            **kwargs,
        )
        self.category = category
        self.entries = {e.id: e for e in entries}
        self.bfcl_reward = reward
        self.max_steps_per_turn = max_steps_per_turn
        self._box: Toolbox | None = None

    # -- episode setup ---------------------------------------------------------------------------------------------
    def toolbox(self) -> Toolbox:
        """The env's one Toolbox running BFCL's class package (built on first use: loading it takes seconds)."""
        if self._box is None:
            opts = self._sandbox_opts
            self._box = Toolbox({}, modules=package_sources(), **opts)
        return self._box

    def _start(self, scenario: Scenario, owned: bool = False) -> None:
        entry = self.entries.get(scenario.id)
        if entry is None:
            raise ValueError(f"{scenario.id!r} is not an entry of BFCL's {self.category}")
        super()._start(scenario, owned)
        box = self.toolbox()
        self._seed = int(self.np_random.bit_generator.random_raw())  # the classes' random, if unseeded
        box.reseed(self._seed)
        self.entry = entry
        self.model = Instances(box, entry)
        self.gold = Instances(box, entry)
        self._user_turn = 0
        self._turn_steps = 0  # calling steps in this user turn
        self._turn_calls = 0  # calls made in this user turn
        self._gold_done = 0  # how many of this turn's gold calls, in order, the model has made
        self._results: list[str] = []  # every call's result, all turns: BFCL's response check reads them all
        self._log: list[tuple[int, str, dict[str, Any]]] = []  # (user turn, method, arguments): for pickling
        self.verdicts: list[TurnVerdict] = []
        self._tools = scenario.tools
        self._offer(0)

    def _offer(self, turn: int) -> None:
        """Add the functions a miss_func entry holds out until ``turn`` to the tools on offer (BFCL appends them)."""
        new = self.entry.added.get(turn)
        if not new:
            return
        self._tools = [*self._tools, *new]
        for tool in new:
            f = tool["function"]
            self._schemas[f["name"]] = f
            self._validators[f["name"]] = parameters_validator(f.get("parameters") or {})
        self._tool_names = frozenset(self._schemas)

    def _obs(self) -> dict[str, Any]:
        return {"messages": list(self._messages), "tools": self._tools}

    def _reset_info(self) -> dict[str, Any]:
        return {**super()._reset_info(), "bfcl_id": self.entry.id, "n_user_turns": len(self.entry.turns)}

    # -- stepping --------------------------------------------------------------------------------------------------
    def step(self, action: Any):
        if self.scenario is None or self._done:
            obs, reward, terminated, truncated, info = super().step(action)
            info["reward_components"] = dict.fromkeys(COMPONENT_KEYS, 0.0)
            return obs, reward, terminated, truncated, info
        obs, base_reward, terminated, truncated, info = super().step(action)
        self.episode_return -= base_reward  # FTRL's turn reward: this env's reward is BFCL's
        base = info["reward_components"]
        comp = {k: base[k] for k in _KEPT}
        comp.update(dict.fromkeys(COMPONENT_KEYS[len(_KEPT) :], 0.0))
        verdict = None
        if terminated:  # no call, nothing unreadable: the reply that ends this user turn
            verdict = self._check_turn()
            self._user_turn += 1
            self._turn_steps = self._turn_calls = self._gold_done = 0
            if self._user_turn < len(self.entry.turns):
                turn = [dict(m) for m in self.entry.turns[self._user_turn]]
                self._messages.extend(turn)
                self._offer(self._user_turn)
                info["new_messages"].extend(turn)
                terminated = False
        else:
            self._turn_steps += 1
            if self._turn_steps > self.max_steps_per_turn:  # BFCL's force-quit: the entry fails
                verdict = TurnVerdict(self._user_turn, "step_limit")
                self.verdicts.append(verdict)
                truncated = True
        truncated = truncated or (not terminated and self._turn >= self.max_turns)
        self._done = done = terminated or truncated
        if verdict is not None:
            comp["turn_end"] = 1.0
            comp["turn_passed"] = float(verdict.passed)
            comp["state_ok"] = float(verdict.reason in ("", "response"))  # the state check ran and passed
            comp["response_ok"] = float(verdict.passed)
            info["bfcl_turn"] = verdict.to_dict()
        if done:
            comp["bfcl_multi_turn"] = self.score()
            info["bfcl_turns"] = [v.to_dict() for v in self.verdicts]
            info["bfcl_multi_turn"] = comp["bfcl_multi_turn"]
        info["reward_components"] = comp
        spec = self.bfcl_reward
        reward = float(spec(comp, self)) if callable(spec) else comp[spec]
        self.episode_return += reward
        info.pop("episode", None)
        if done:
            info["episode"] = self.episode_metrics()
        return self._obs(), reward, terminated, truncated, info

    def _run_call(self, name: str, arguments: dict[str, Any], comp: dict[str, float]) -> tuple[str, int, int]:
        """Run one call on the episode's instances; schema problems are counted, the call runs anyway."""
        self._turn_calls += 1
        self._log.append((self._user_turn, name, copy.deepcopy(arguments)))
        valid = 1
        if name not in self._tool_names:
            comp["n_unknown_tool"] += 1
            valid = 0
        else:
            problem = self._schema_problem(name, arguments)
            if problem is not None:
                comp["n_" + problem] += 1
                valid = 0
        gold = self.entry.gold[self._user_turn] if self._user_turn < len(self.entry.gold) else ()
        if self._gold_done < len(gold) and gold[self._gold_done] == (name, arguments):
            self._gold_done += 1
        text, failure = self.model.run(name, arguments)
        if failure == "timeout":
            comp["n_timeouts"] += 1
        elif failure is not None or text.startswith('{"error"'):  # an exception, or the class's own error result
            comp["n_tool_errors"] += 1
        self._results.append(text)
        return text, 0, valid

    def _schema_problem(self, name: str, arguments: dict[str, Any]) -> str | None:
        problem = check_arguments(self._validators[name], arguments)
        return None if problem is None else problem[0]

    # -- the check -------------------------------------------------------------------------------------------------
    def _check_turn(self) -> TurnVerdict:
        """BFCL's check of the user turn that just ended (gold calls run on the gold instances first)."""
        t = self._user_turn
        # copies: a call may keep its arguments (post_tweet keeps its lists, mention extends them later)
        gold_results = [self.gold.run(name, copy.deepcopy(args))[0] for name, args in self.entry.gold[t]]
        verdict = self._verdict(t, gold_results)
        self.verdicts.append(verdict)
        return verdict

    def _verdict(self, t: int, gold_results: list[str]) -> TurnVerdict:
        if not self.entry.gold[t]:  # BFCL: a turn without gold calls (irrelevance) is not checked here
            return TurnVerdict(t, "")
        if self._turn_calls == 0:
            return TurnVerdict(t, "empty_turn")
        diff = self.model.differences(self.gold)
        if diff:
            return TurnVerdict(t, "state", state_diff=diff)
        missing = missing_results(self._results, gold_results)
        if missing:
            return TurnVerdict(t, "response", missing=tuple(missing))
        return TurnVerdict(t, "")

    def score(self) -> float:
        """BFCL's accuracy of the episode: 1.0 iff every user turn was played and passed."""
        played = len(self.verdicts) == len(self.entry.turns)
        return float(played and all(v.passed for v in self.verdicts))

    def episode_metrics(self) -> dict[str, float]:
        metrics = super().episode_metrics()
        metrics["bfcl_multi_turn"] = self.score()
        metrics["turns_passed"] = float(sum(v.passed for v in self.verdicts))
        metrics["user_turns"] = float(len(self.entry.turns))
        metrics["state_ok"] = float(all(v.reason in ("", "response") for v in self.verdicts))
        return metrics

    # -- gold play -------------------------------------------------------------------------------------------------
    def gold_plan(self) -> list[list[dict[str, Any]]]:
        """The gold calls of the current user turn still to make, as one turn (BFCL runs them in order)."""
        if self._done or self._user_turn >= len(self.entry.gold):
            return []
        left = self.entry.gold[self._user_turn][self._gold_done :]
        return [[{"name": n, "arguments": copy.deepcopy(a)} for n, a in left]] if left else []

    def gold_actions(self) -> list[str]:
        """The current user turn's remaining gold calls as a Hermes completion, then the reply that ends it."""
        turns = [format_hermes([(c["name"], c["arguments"]) for c in turn]) for turn in self.gold_plan()]
        return [*turns, "Done."]

    # -- pickling: the instances live in the Toolbox, so a copy rebuilds them by replaying the episode's calls ---------
    _REBUILT = (*ToolEnv._REBUILT, "_box", "model", "gold")

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._box = None
        if self.scenario is None:
            return
        box = self.toolbox()
        box.reseed(self._seed)
        self.model = Instances(box, self.entry)
        self.gold = Instances(box, self.entry)
        for _, name, arguments in self._log:
            self.model.run(name, copy.deepcopy(arguments))
        checked = [v for v in self.verdicts if v.reason != "step_limit"]  # the turns whose gold calls have run
        for t in range(len(checked)):
            for name, arguments in self.entry.gold[t]:
                self.gold.run(name, copy.deepcopy(arguments))


def make_env(category: str = "multi_turn_base", **kwargs: Any) -> BFCLMultiTurnEnv:
    """The registry's entry point for ``ToolGym/BFCL-<multi-turn category>-v0``."""
    return BFCLMultiTurnEnv(category, **kwargs)
