"""TRL ``GRPOTrainer`` integration: toolgym episodes as ``environment_factory`` environments, and FTRL's turn level.

TRL 1.16's contract (``trl/trainer/grpo_trainer.py``), which shapes everything here:

* ``environment_factory`` is a callable (one environment for every example) or a ``{name: callable}`` dict; with a
  dict each example's ``environment`` column picks one, and only that environment's tools are rendered into its
  prompt. toolgym scenarios offer different tool sets per episode (FlightBooking draws a subset per seed), so
  :func:`episode_dataset` builds one environment class per distinct tool set and returns the dict.
* Every public function on the class except ``reset`` and ``get_reward`` becomes a tool; its schema comes from
  ``transformers.utils.get_json_schema`` (type hints + Google docstring). So the classes have no other public
  member: a public helper would be offered to the model as a tool. Each tool method is built from the toolgym
  schema (:func:`tool_method`) so TRL renders the same schema minus the keywords it cannot express
  (:data:`LOST_KEYWORDS`: ``pattern``, ``minLength``, ``additionalProperties`` and other validation keywords;
  ``enum`` survives, as a ``Literal`` hint). The env still enforces every keyword: the methods accept any keyword
  arguments (their signature is only declared), so a missing, extra or ill-typed argument reaches toolgym's
  validator and its feedback instead of a Python ``TypeError``.
* TRL calls ``reset(**row)`` with the example's columns before generation, then calls the tool methods one call
  at a time (``method(**arguments)``) and puts ``str(result)`` in a tool message. A call to a name that is not a
  method never reaches the environment (TRL answers ``{"error": "Tool x not found."}``), and the final answer is
  never passed to the environment at all.
* Reward functions get ``completions`` (the rollout's messages: assistant turns with parsed ``tool_calls``, tool
  messages) and ``environments`` (the instance that served each rollout).

So each tool call is run live on the episode's env (the model sees toolgym's tool output), and the reward is
computed afterwards by :func:`episode_reward`: it resets the env to the same start and replays the rollout's
assistant turns as recorded in ``completions``, unknown tools and the final answer included, so every call and
the answer get toolgym's own scoring. Calls in one turn run in order on the shared world state whether stepped
together or one by one, so the replay's tool outputs equal the live ones (checked: ``live_mismatches``).

``turns="grouped"`` (the default) steps each assistant message (all its calls) as one toolgym step, which is
FTRL's per-turn reward; ``turns="call"`` steps every call alone, TRL's own granularity. They differ: the gold
episode of FlightBooking seed 1 (two turns of two parallel calls each, then the answer) returns 3.667 grouped (the
env's own return for that trajectory) and 5.0 call by call, because FTRL rewards a turn, not a call (tested in
``tests/test_integration_trl.py``).

Turn level (FTRL's own setting): :func:`turn_dataset` turns ``toolgym.export`` rl rows (a trajectory prefix and
its own tools) into the same kind of dataset, each row restored at its prefix by ``reset``; with
``GRPOConfig(max_tool_calling_iterations=0)`` a completion is exactly one assistant turn and :func:`turn_reward`
scores it with FTRL's reward through :func:`toolgym.export.compute_score` (one env cache per thread).

Prompts are stored as ``List(Json())`` so each message keeps its own keys: Arrow's struct inference would give
every message every key (``tool_calls: None``) and every call's arguments every argument name seen in the
column (``{"flight_id": "FL1", "airline_code": None}``), which the chat template would render. Tool-call
arguments are dicts in the prompts, because the Qwen2.5 template ``tojson``-encodes them (a JSON string would be
encoded twice).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import gymnasium as gym

from toolgym.export import _as_json, compute_score
from toolgym.prompts import chat_arguments

__all__ = [
    "LOST_KEYWORDS",
    "TURN_MODES",
    "chat_messages",
    "environment_class",
    "episode_dataset",
    "episode_reward",
    "tool_method",
    "toolset_key",
    "trl_visible_schema",
    "turn_dataset",
    "turn_reward",
]

TURN_MODES = ("grouped", "call")
# JSON-schema keywords TRL's schema generation (type hints + docstring) cannot express: the model does not see them
# in its prompt, but the env still enforces them (a violation is feedback and a reward component).
LOST_KEYWORDS = (
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "format",
    "default",
    "additionalProperties",
)
# An object-typed argument is declared as ``dict``: TRL shows the model neither its fields nor which are required.
_NESTED_LOST = ("properties", "required")
_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool, "object": dict, "null": type(None)}
_UNSET = inspect.Parameter.empty


class _Missing:
    """The declared default of an optional tool argument: never sent to the env, so "omitted" stays omitted."""

    def __repr__(self) -> str:
        return "<omitted>"


_OMITTED = _Missing()


# -- tool methods from toolgym schemas -------------------------------------------------------------------------


def _hint(prop: dict[str, Any]) -> Any:
    """The Python type hint ``get_json_schema`` turns back into ``prop``'s type (and enum)."""
    enum = prop.get("enum")
    if enum and all(isinstance(v, (str, int, float, bool)) for v in enum):
        return Literal[tuple(enum)]
    kind = prop.get("type")
    if isinstance(kind, list):
        hints = [_TYPES.get(k, Any) for k in kind if k != "null"] or [type(None)]
        hint = hints[0]
        for h in hints[1:]:
            hint = hint | h
        return hint | None if "null" in kind else hint
    if kind == "array":
        items = prop.get("items")
        return list[_hint(items)] if isinstance(items, dict) and items else list
    return _TYPES.get(kind, Any)


def _arg_description(name: str, prop: dict[str, Any]) -> str:
    """One line (TRL joins a description's lines with spaces); the argument's name when the schema has none,
    because ``get_json_schema`` refuses an argument without a docstring line."""
    return " ".join(str(prop.get("description") or "").split()) or name


def tool_method(tool: dict[str, Any]):
    """A function ``(self, **arguments) -> str`` that TRL offers as ``tool`` and that runs the call on the env.

    Its declared signature, type hints and Google docstring make ``get_json_schema`` produce the toolgym schema
    (minus :data:`LOST_KEYWORDS`); the body takes any keyword arguments so toolgym, not Python, judges them.
    """
    fn = tool.get("function", tool)
    name = fn.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"tool name {name!r} is not a Python identifier, so TRL cannot offer it as a method")
    params = fn.get("parameters") or {}
    props: dict[str, Any] = params.get("properties") or {}
    required = set(params.get("required") or ())
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    arg_lines = []
    for pname in props:  # keyword-only, so the schema's order is kept whatever is required
        if not pname.isidentifier():
            raise ValueError(f"tool {name!r}: argument {pname!r} is not a Python identifier, so TRL cannot declare it")
        hint = annotations[pname] = _hint(props[pname])
        default = _UNSET if pname in required else _OMITTED
        try:
            parameters.append(
                inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint)
            )
        except ValueError as exc:  # a Python keyword such as "from"
            raise ValueError(f"tool {name!r}: argument {pname!r} cannot be a Python parameter ({exc})") from None
        arg_lines.append(f"    {pname}: {_arg_description(pname, props[pname])}")
    description = str(fn.get("description") or name).strip()
    doc = description + ("\n\nArgs:\n" + "\n".join(arg_lines) if arg_lines else "")

    def method(self, **arguments):
        return self._call(name, {k: v for k, v in arguments.items() if v is not _OMITTED})

    method.__name__ = method.__qualname__ = name
    method.__doc__ = doc
    method.__annotations__ = annotations
    method.__signature__ = inspect.Signature(parameters)  # no return hint: TRL would render a "return" schema
    return method


def _visible(prop: dict[str, Any]) -> dict[str, Any]:
    """One argument's schema as a type hint carries it: no :data:`LOST_KEYWORDS`, and an object's own
    ``properties`` / ``required`` are lost too (the hint is ``dict``), at any depth of array items."""
    out = {key: v for key, v in prop.items() if key not in LOST_KEYWORDS and key not in _NESTED_LOST}
    if isinstance(out.get("items"), dict):
        out["items"] = _visible(out["items"])
    enum = out.get("enum")
    if enum and all(isinstance(v, (str, int, float, bool)) for v in enum):
        # a Literal hint: its type is the values' type, whatever the schema declares (suites' enums may disagree)
        kinds = list(dict.fromkeys(_JSON_TYPES[type(v)] for v in enum))
        out["type"] = kinds[0] if len(kinds) == 1 else kinds
    return out


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def trl_visible_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """The toolgym schema as TRL renders it from :func:`tool_method`: :data:`LOST_KEYWORDS` removed, and the
    fields of object-typed arguments (:data:`_NESTED_LOST`)."""
    fn = tool.get("function", tool)
    params = fn.get("parameters") or {}
    props = {}
    for k, p in (params.get("properties") or {}).items():
        props[k] = _visible(p)
        props[k]["description"] = _arg_description(k, p)
    out: dict[str, Any] = {"type": "object", "properties": props}
    if params.get("required"):
        out["required"] = list(params["required"])
    return {
        "type": "function",
        "function": {"name": fn["name"], "description": fn.get("description"), "parameters": out},
    }


def toolset_key(tools: Sequence[dict[str, Any]]) -> str:
    """A stable name for a tool set (its schemas, order-free): the ``environment`` column's value."""
    canon = sorted(json.dumps(t, sort_keys=True, ensure_ascii=False) for t in tools)
    names = sorted(t.get("function", t)["name"] for t in tools)
    digest = hashlib.sha1("\n".join(canon).encode()).hexdigest()[:12]
    return f"toolset_{len(names)}_{digest}"


# -- the environment ------------------------------------------------------------------------------------------


def chat_messages(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """toolgym messages as chat templates want them: tool-call arguments as dicts, no None-valued keys."""
    return [{k: v for k, v in m.items() if v is not None} for m in chat_arguments(list(messages))]


class _ToolGymEnvironment:
    """Base of the generated per-tool-set classes. Only ``reset`` is public: TRL offers every other public
    function as a tool. The subclass adds one method per tool (see :func:`tool_method`)."""

    _tools: tuple[dict[str, Any], ...] = ()
    _turns: str = "grouped"
    _env_make_kwargs: dict[str, Any] = {}

    def __init__(self) -> None:
        self._envs: dict[str, gym.Env] = {}
        self._max_turns: dict[str, int] = {}  # each env's configured turn limit
        self._key = ""
        self._env: gym.Env | None = None
        self._spec: dict[str, Any] | None = None
        self._live: list[tuple[str, dict[str, Any], str]] = []
        self._result: dict[str, Any] | None = None
        self._result_for: Any = None

    def reset(self, **row: Any) -> None:
        """Start the row's episode: ``env_id``, ``seed``, ``env_kwargs`` and ``prefix`` (restore point) columns."""
        missing = [k for k in ("env_id", "seed") if row.get(k) is None]
        if missing:
            raise ValueError(
                f"the example has no {missing} column(s); build the dataset with "
                "toolgym.integrations.trl.episode_dataset or turn_dataset"
            )
        spec = {
            "env_id": row["env_id"],
            "seed": int(row["seed"]),
            "env_kwargs": _as_json(row.get("env_kwargs")) or {},
            "prefix": _as_json(row.get("prefix")) or [],
        }
        key = spec["env_id"] + json.dumps(spec["env_kwargs"], sort_keys=True)
        env = self._envs.get(key)
        if env is None:
            env = self._envs[key] = gym.make(spec["env_id"], **spec["env_kwargs"], **self._env_make_kwargs)
        u = env.unwrapped
        u.max_turns = self._max_turns.setdefault(key, u.max_turns)
        obs, _ = env.reset(seed=spec["seed"], options={"prefix": spec["prefix"]})
        if self._turns == "grouped":
            # live calls are one step each; the turn limit applies to the grouped replay, not to them
            u.max_turns = sys.maxsize
        if toolset_key(obs["tools"]) != toolset_key(self._tools):
            raise ValueError(
                f"{spec['env_id']} seed {spec['seed']} offers tools {[t['function']['name'] for t in obs['tools']]} "
                f"but this environment ({type(self).__name__}) serves {[t['function']['name'] for t in self._tools]}; "
                "the example's `environment` column does not match its episode"
            )
        prompt = row.get("prompt")
        if prompt is not None and chat_messages(obs["messages"]) != chat_messages(prompt):
            raise ValueError(
                f"{spec['env_id']} seed {spec['seed']}: the restored chat differs from the example's prompt "
                "(the env or its code changed since the dataset was built)"
            )
        self._env, self._spec, self._key = env, spec, key
        self._live = []
        self._result = None
        self._result_for = None
        return None

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        """Run one tool call on the episode's env (one toolgym step) and return its tool message text."""
        if self._env is None:
            raise RuntimeError("reset() was not called")
        msg = {"role": "assistant", "content": "", "tool_calls": [_tool_call(name, arguments)]}
        _, _, _, _, info = self._env.step(msg)
        text = info["feedback"][0] if info["feedback"] else ""
        self._live.append((name, arguments, text))
        return text

    def _score(self, completion: list[dict[str, Any]]) -> dict[str, Any]:
        """Replay ``completion`` from the episode's start; cached per rollout (several reward functions read it)."""
        marker = id(completion)
        if self._result is not None and self._result_for == marker:
            return self._result
        if self._env is None or self._spec is None:
            raise RuntimeError("reset() was not called")
        spec = self._spec
        env = self._env
        env.unwrapped.max_turns = self._max_turns[self._key]
        env.reset(seed=spec["seed"], options={"prefix": spec["prefix"]})
        names = self._names()
        total, steps, terminated = 0.0, 0, False
        replay: list[tuple[str, str]] = []
        last_info: dict[str, Any] = {}
        for action in _actions(completion, self._turns):
            _, reward, terminated, truncated, last_info = env.step(action)
            total += float(reward)
            steps += 1
            replay += [(m["name"], m["content"]) for m in last_info["new_messages"] if m.get("name") in names]
            if terminated or truncated:
                break
        live = [(name, text) for name, _, text in self._live]
        mismatches = sum(a != b for a, b in zip(replay, live, strict=False)) + abs(len(replay) - len(live))
        metrics = env.unwrapped.episode_metrics()
        self._result = {
            "reward": total,
            "steps": steps,
            "terminated": bool(terminated),
            "answer_correct": float(last_info.get("reward_components", {}).get("answer_correct", 0.0)),
            "solve_f1": metrics["solve_f1"],
            "solve_p": metrics["solve_p"],
            "solve_r": metrics["solve_r"],
            "live_calls": len(live),
            "live_mismatches": mismatches,
        }
        self._result_for = marker
        return self._result

    def _names(self) -> frozenset[str]:
        return frozenset(t["function"]["name"] for t in self._tools)


def _tool_call(name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def _actions(completion: list[dict[str, Any]], turns: str) -> Iterable[Any]:
    """The toolgym actions of a TRL rollout: its assistant messages, whole (grouped) or one call each."""
    for m in completion:
        if m.get("role") != "assistant":
            continue
        calls = m.get("tool_calls") or []
        if not calls:
            yield m.get("content") or ""  # the final answer (or unparsed text, which toolgym reads itself)
        elif turns == "grouped":
            yield {"role": "assistant", "content": m.get("content") or "", "tool_calls": list(calls)}
        else:
            for i, tc in enumerate(calls):
                yield {"role": "assistant", "content": (m.get("content") or "") if i == 0 else "", "tool_calls": [tc]}


_CLASSES: dict[tuple, type] = {}
_CLASSES_LOCK = threading.Lock()


def environment_class(
    tools: Sequence[dict[str, Any]], *, turns: str = "grouped", env_make_kwargs: dict[str, Any] | None = None
) -> type:
    """The environment class serving one tool set (cached): ``reset`` plus one public method per tool.

    ``env_make_kwargs`` go to ``gym.make`` on top of the row's ``env_kwargs`` (e.g. ``{"max_turns": 8}``).
    """
    if turns not in TURN_MODES:
        raise ValueError(f"unknown turns {turns!r}; choose one of {', '.join(TURN_MODES)}")
    tools = tuple(json.loads(json.dumps(list(tools))))
    extra = dict(env_make_kwargs or {})
    key = (toolset_key(tools), turns, json.dumps(extra, sort_keys=True))
    with _CLASSES_LOCK:
        cls = _CLASSES.get(key)
        if cls is None:
            methods: dict[str, Any] = {}
            for tool in tools:
                m = tool_method(tool)
                if m.__name__ in methods or m.__name__ in ("reset", "get_reward"):
                    raise ValueError(f"tool name {m.__name__!r} is duplicated or reserved by TRL")
                methods[m.__name__] = m
            doc = f"toolgym tools {', '.join(sorted(methods))} ({turns} turns)."
            namespace = {"_tools": tools, "_turns": turns, "_env_make_kwargs": extra, "__doc__": doc, **methods}
            cls = _CLASSES[key] = type(key[0], (_ToolGymEnvironment,), namespace)
        return cls


# -- datasets ---------------------------------------------------------------------------------------------------


def _dataset(records: list[dict[str, Any]], turns: str, env_make_kwargs: dict[str, Any] | None):
    from datasets import Dataset, Features, Json, List, Value

    if not records:
        raise ValueError("no examples: pass at least one seed or row")
    factories: dict[str, type] = {}
    rows = []
    for r in records:
        cls = environment_class(r["tools"], turns=turns, env_make_kwargs=env_make_kwargs)
        factories[cls.__name__] = cls
        rows.append(
            {
                "prompt": chat_messages(r["prompt"]),
                "environment": cls.__name__,
                "env_id": r["env_id"],
                "env_kwargs": json.dumps(r["env_kwargs"], ensure_ascii=False),
                "seed": int(r["seed"]),
                "prefix": json.dumps(r["prefix"], ensure_ascii=False),
                "data_source": r["env_id"],
                "ground_truth": r.get("ground_truth") or "",
            }
        )
    features = Features(
        {
            "prompt": List(Json()),
            **{k: Value("string") for k in ("environment", "env_id", "env_kwargs", "prefix", "data_source")},
            "seed": Value("int64"),
            "ground_truth": Value("string"),
        }
    )
    return Dataset.from_list(rows, features=features), factories


def episode_dataset(
    env_id: str,
    seeds: Iterable[int],
    *,
    env_kwargs: dict[str, Any] | None = None,
    turns: str = "grouped",
    env_make_kwargs: dict[str, Any] | None = None,
):
    """``(dataset, environment_factory)`` for whole episodes of ``env_id``, one example per seed.

    The dataset has TRL's ``prompt`` (the episode's opening chat) and ``environment`` (its tool set's class)
    columns, plus what ``reset`` needs. Pass both to ``GRPOTrainer`` with ``reward_funcs=episode_reward``.
    """
    env_kwargs = dict(env_kwargs or {})
    env = gym.make(env_id, **env_kwargs, **(env_make_kwargs or {}))  # as reset() will make it
    records = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=int(seed))
            records.append(
                {
                    "prompt": obs["messages"],
                    "tools": obs["tools"],
                    "env_id": env_id,
                    "env_kwargs": env_kwargs,
                    "seed": int(seed),
                    "prefix": [],
                }
            )
    finally:
        env.close()
    return _dataset(records, turns, env_make_kwargs)


def turn_dataset(rows: Iterable[dict[str, Any]], *, env_make_kwargs: dict[str, Any] | None = None):
    """``(dataset, environment_factory)`` for FTRL's turn-level GRPO from ``toolgym.export`` rl rows.

    Each example is a trajectory prefix (the row's ``prompt``) rendered with that row's own ``tools``; train with
    ``GRPOConfig(max_tool_calling_iterations=0)`` (one assistant turn per completion) and
    ``reward_funcs=turn_reward``. Rows may come as written (JSON-string columns) or as loaded by ``datasets``.
    """
    records = []
    for row in rows:
        gt = row.get("reward_model", {}).get("ground_truth") if isinstance(row.get("reward_model"), dict) else None
        if gt is None:
            raise ValueError("not a toolgym rl row (no reward_model.ground_truth); export with --format rl")
        spec = _as_json(gt)
        tools = _as_json(row.get("tools"))
        if not tools:
            raise ValueError("the rl row has no tools column")
        mode = row.get("tools_in_prompt") or (row.get("extra_info") or {}).get("tools_in_prompt") or "template"
        if mode == "hermes":  # its prompt lists the tools as text, and TRL renders them again from the class
            raise ValueError("turn_dataset takes rl rows exported with --tools-in-prompt template (TRL renders tools)")
        records.append(
            {
                "prompt": [{k: v for k, v in m.items() if v is not None} for m in row["prompt"]],
                "tools": tools,
                "env_id": spec["env_id"],
                "env_kwargs": spec.get("env_kwargs") or {},
                "seed": int(spec["seed"]),
                "prefix": spec.get("prefix") or [],
                "ground_truth": gt if isinstance(gt, str) else json.dumps(gt, ensure_ascii=False),
            }
        )
    return _dataset(records, "grouped", env_make_kwargs)


# -- reward functions ---------------------------------------------------------------------------------------------


def episode_reward(completions, environments=None, log_metric=None, **_: Any) -> list[float | None]:
    """TRL reward function: the rollout's toolgym return (FTRL's reward summed over its replayed turns).

    ``None`` (ignored by TRL) for a rollout not served by a toolgym environment. Logs the batch means of
    Solve-P/R/F1, answer accuracy and replay mismatches under ``toolgym/...`` through TRL's ``log_metric``.
    """
    if environments is None:
        raise ValueError("episode_reward needs GRPOTrainer(environment_factory=...) from episode_dataset()")
    out: list[float | None] = []
    results = []
    for completion, env in zip(completions, environments, strict=True):
        if not isinstance(env, _ToolGymEnvironment):
            out.append(None)
            continue
        if isinstance(completion, str):
            completion = [{"role": "assistant", "content": completion}]
        res = env._score(completion)
        results.append(res)
        out.append(res["reward"])
    if log_metric is not None and results:
        for key in ("solve_f1", "solve_p", "solve_r", "answer_correct", "live_mismatches", "steps"):
            log_metric(f"toolgym/{key}", sum(r[key] for r in results) / len(results))
    return out


def _first_turn(completion: Any) -> Any:
    if isinstance(completion, str):
        return completion
    for m in completion:
        if m.get("role") == "assistant":
            return {k: v for k, v in m.items() if k in ("role", "content", "tool_calls")}
    return ""


def turn_reward(completions, data_source, ground_truth, **_: Any) -> list[float]:
    """TRL reward function: FTRL's reward of each completion's first assistant turn at its row's prefix.

    Scored by :func:`toolgym.export.compute_score` (one env cache per thread, so TRL's async or threaded scoring
    is safe); the turn goes in as TRL parsed it (tool calls as dicts) or as text when TRL could not parse it.
    """
    return [
        float(compute_score(ds, _first_turn(c), gt)["score"])
        for c, ds, gt in zip(completions, data_source, ground_truth, strict=True)
    ]
