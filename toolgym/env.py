"""The tool-use environment: one episode plays one scenario, one step is one assistant turn.

``step`` parses the turn, checks each call against its schema, runs it in the sandbox on the episode's
world state, answers each with a ``role: tool`` message and scores the turn with FTRL's reward. Every
mistake (unreadable call, unknown tool, bad arguments, a tool that raises or runs away) becomes feedback
and a reward component; nothing the policy sends can crash ``step``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from toolgym import reward as R
from toolgym.arguments import check_arguments, parameters_validator
from toolgym.calls import (
    LONE_SURROGATE_REASON,
    MalformedCall,
    ParsedTurn,
    find_lone_surrogate,
    format_hermes,
    parse_action,
    replace_lone_surrogates,
)
from toolgym.packs import scenario_from_record
from toolgym.sandbox import Toolbox
from toolgym.sandbox.process import ISOLATION_MODES, ProcessSandbox
from toolgym.scenario import Scenario
from toolgym.sources import SCENARIO_CACHE, ScenarioSource, StaticSource, source_cache_key
from toolgym.spaces import AssistantTurn, ChatObservation

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant with access to tools. Call tools to find what the user asks for; "
    "you may make several calls in one turn when they do not depend on each other. "
    "When you know the answer, reply with it in plain text without calling a tool."
)
REWARDS = (*R.TURN_VARIANTS, "episode_f1", "answer_only")
# Reward components every step reports (numbers, so they can be logged and averaged).
COMPONENT_KEYS = (
    "reward_ftrl",
    "n_calls",
    "n_solved_now",
    "n_unsolved",
    "n_bad_json",
    "n_unknown_tool",
    "n_missing_args",
    "n_extra_args",
    "n_wrong_types",
    "n_schema_violation",
    "n_tool_errors",
    "n_timeouts",
    "precision",
    "recall",
    "f1",
    "format_ok",
    "args_valid",
    "answer_correct",
    "state_ok",
)
_ZERO_COMPONENTS = dict.fromkeys(COMPONENT_KEYS, 0.0)
_FTRL_TURN = R.TURN_VARIANTS["ftrl"]  # R.call_turn_reward(p, q, "ftrl") without its lookup, on every call turn
RewardFn = Callable[[dict[str, float], "ToolEnv"], float]
# A suite's own score of one turn (e.g. BFCL's AST rule): extra reward components, merged into each step's.
TurnScorer = Callable[[Scenario, ParsedTurn], dict[str, float]]
_ENCODE_MARKERS: dict[int, Any] = {}  # circular-reference check, as json.dumps does
_C_ENCODE = (
    # json.dumps(..., ensure_ascii=False) without rebuilding the C encoder (and its Python wrappers) every call
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        *(_ENCODE_MARKERS, json.JSONEncoder().default, json.encoder.encode_basestring),
        *(None, ": ", ", ", False, False, True),  # indent, separators, sort_keys, skipkeys, allow_nan
    )
    if json.encoder.c_make_encoder is not None  # type: ignore[attr-defined]
    else None
)


# A tool reports a failed call by returning a dict whose first key is "error" (its text starts with this); the env
# counts it in n_tool_errors, as it does a tool that raises.
_ERROR_RESULT = '{"error"'


def _encode(arguments: dict[str, Any]) -> str:
    """``json.dumps(arguments, ensure_ascii=False)`` of a call's arguments dict, with the same errors."""
    if _C_ENCODE is None:  # pragma: no cover - pure-Python json build
        return json.dumps(arguments, ensure_ascii=False)
    try:
        return "".join(_C_ENCODE(arguments, 0))
    except BaseException:
        _ENCODE_MARKERS.clear()  # the C encoder leaves markers behind when it fails part-way
        raise


def _given_scenario(value: Any) -> Scenario:
    """``options["scenario"]``: a Scenario, or its dict, checked field by field as a pack record is."""
    if isinstance(value, Scenario):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"options['scenario'] must be a Scenario or its dict, got {type(value).__name__}")
    return scenario_from_record(value, "options['scenario']")


class ToolEnv(gym.Env):
    """A Gymnasium env over a :class:`~toolgym.sources.ScenarioSource`.

    Observation: ``{"messages": [...], "tools": [...]}`` (OpenAI chat and function schemas).
    Action: one assistant turn (Hermes ``<tool_call>`` text, an OpenAI message dict, or python-call text).
    A turn without any call is the final answer and terminates; ``max_turns`` truncates. A turn whose calls
    are all unreadable does not terminate: it gets FTRL's malformed-call reward and feedback to retry.

    ``reset(options=...)`` accepts ``{"scenario": Scenario | dict}`` to play a given scenario,
    ``{"index": i}`` for a static pack, and ``{"prefix": [turn, ...]}`` to restore the episode after those
    assistant turns (FTRL trains turn-level, from prefixes the policy visited).

    ``tool_step_budget`` counts loop iterations and calls per tool call (a deterministic time limit); 100k is
    far above what a lookup tool needs and keeps pathological recursion far from C-level stack limits.
    ``tool_time_limit`` is the wall-clock backstop in seconds.

    ``isolation="process"`` runs the tool calls in a forked worker process that is killed when a call overruns
    the time limit (even inside one C call, which the in-process guards cannot stop) and re-forked on the next
    call; see :mod:`toolgym.sandbox.process`. The default ``"none"`` runs them in this process (faster).
    ``close()`` stops the worker.

    ``scenario_cache`` (default on): ``reset(seed=s)`` of a procedural source reuses the scenario generated
    for ``s`` before, from the third reset of ``s`` on (it is stored the second time; a process-wide LRU,
    :data:`toolgym.sources.SCENARIO_CACHE`, shared by envs whose sources have equal keys). A hit is exact: the
    episode gets a private copy of the untouched world and ``np_random`` ends where generating leaves it.
    ``scenario_cache=False`` (or ``SCENARIO_CACHE.enabled = False``) always generates.

    ``turn_scorer(scenario, parsed_turn)`` (set by the registry for suite packs) returns extra components, such
    as BFCL's ``bfcl_ast``, added to each step's ``reward_components``; a ``reward`` callable can use them.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # a text dialogue; the fps only satisfies the checker

    def __init__(
        self,
        source: ScenarioSource,
        *,
        max_turns: int = 20,
        reward: str | RewardFn = "ftrl",
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        tool_step_budget: int = 100_000,
        tool_time_limit: float = 2.0,
        max_output_chars: int = 16_384,
        render_mode: str | None = None,
        isolation: str = "none",
        scenario_cache: bool = True,
        turn_scorer: TurnScorer | None = None,
    ):
        if not callable(reward) and reward not in REWARDS:
            raise ValueError(f"unknown reward {reward!r}; choose one of {', '.join(REWARDS)} or pass a callable")
        if max_turns < 1:
            raise ValueError("max_turns must be >= 1")
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"unknown isolation {isolation!r}; choose one of {', '.join(ISOLATION_MODES)}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"unsupported render_mode {render_mode!r} (only 'ansi')")
        self.source = source
        self.max_turns = max_turns
        self.reward_spec = reward
        self.system_prompt = system_prompt
        self.render_mode = render_mode
        self.isolation = isolation
        self.scenario_cache = bool(scenario_cache)
        self.turn_scorer = turn_scorer
        self._process = ProcessSandbox() if isolation == "process" else None
        self._sandbox_opts = {
            "step_budget": tool_step_budget,
            "time_limit": tool_time_limit,
            "max_output_chars": max_output_chars,
        }
        self.observation_space = ChatObservation()
        self.action_space = AssistantTurn()
        self._toolboxes: dict[str, tuple[Toolbox, frozenset[str]]] = {}
        self.scenario: Scenario | None = None
        self.state: dict[str, Any] = {}
        self._messages: list[dict[str, Any]] = []
        self._done = True

    # -- episode setup -------------------------------------------------------------------------------
    def _bind_tools(self, scenario: Scenario) -> dict[str, Toolbox]:
        """Tool name -> the Toolbox running it; one Toolbox per distinct source text, holding every function the
        text defines.

        Generated scenarios offer varying subsets of a stable set of tool sources (one module holding every
        tool, or one text per function); one Toolbox per source text means each is exec'd once per env, not once
        per episode or per new subset (a rebuilt Toolbox also leaves a reference cycle for the collector).
        """
        by_source: dict[str, list[str]] = {}
        for name, src in scenario.source.items():
            by_source.setdefault(src, []).append(name)
        bound: dict[str, Toolbox] = {}
        for src, names in by_source.items():
            entry = self._toolboxes.get(src)
            if entry is None or not entry[1].issuperset(names):
                if len(self._toolboxes) >= 512:
                    self._toolboxes.clear()
                    if self._process is not None:
                        self._process.forget()
                every = (entry[1] if entry else frozenset()) | frozenset(names)
                box = Toolbox(dict.fromkeys(every, src), every_function=True, **self._sandbox_opts)
                entry = self._toolboxes[src] = (box, frozenset(box.names))
            for name in names:
                bound[name] = entry[0]
        return bound

    def _start(self, scenario: Scenario, owned: bool = False) -> None:
        self.scenario = scenario
        # A freshly generated scenario's world is the episode's own; a shared one (static pack, options) is copied.
        if owned:
            self.state = scenario.state
        else:
            self.state = json.loads(json.dumps(scenario.state)) if scenario.state else {}
        self._boxes = self._bind_tools(scenario)
        seed = int(self.np_random.bit_generator.random_raw())  # the tools' random/uuid4, per episode
        for box in set(self._boxes.values()):
            box.reseed(seed)
        self._schemas = {t["function"]["name"]: t["function"] for t in scenario.tools}
        self._validators = {n: parameters_validator(f.get("parameters") or {}) for n, f in self._schemas.items()}
        self._tool_names = frozenset(self._schemas)
        self.tracker = R.SolveTracker(
            R.Expected(s.tool, a, s.id, tuple(s.state_checks)) for s in scenario.subtasks for a in s.answers
        )
        self._answer = scenario.reply_answer
        self._solve_scores = R.solve_scores_for(scenario.kind)
        self._checks = [c for s in scenario.subtasks for c in s.state_checks]
        msgs = list(scenario.messages)
        if self.system_prompt and not (msgs and msgs[0].get("role") == "system"):
            msgs.insert(0, {"role": "system", "content": self.system_prompt})
        self._messages = msgs
        self._turn = 0
        self._suite_scores: dict[str, float] = {}
        self._n_calls = 0
        self._done = False
        self.episode_return = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if options is None:
            options = {}
        elif not isinstance(options, dict):
            raise TypeError(f"reset options must be a dict, got {type(options).__name__}")
        if not isinstance(options.get("prefix", ()), (list, tuple)):
            raise TypeError(
                f"options['prefix'] must be a list of actions (the turns to replay), "
                f"got {type(options['prefix']).__name__}"
            )
        owned = False
        scenario = None
        key = None  # the (source key, seed) this reset may read from and store into the scenario cache
        if "scenario" not in options and "index" not in options:
            owned = getattr(self.source, "fresh", False)
            if seed is not None and owned and getattr(self, "scenario_cache", True) and SCENARIO_CACHE.enabled:
                source_key = source_cache_key(self.source)
                if source_key is not None:
                    key = (source_key, int(seed))
                    scenario = self._cache_hit(key)
        if scenario is None:
            super().reset(seed=seed)
            if "scenario" in options:
                scenario = _given_scenario(options["scenario"])
            elif "index" in options:
                if not isinstance(self.source, StaticSource):
                    raise ValueError("reset(options={'index': ...}) needs a static pack")
                index, n = options["index"], len(self.source)
                if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
                    raise IndexError(f"options['index'] must be an integer in 0..{n - 1}, got {index!r}")
                scenario = self.source.get(int(index))
            else:
                scenario = self.source.sample(self.np_random)
                if key is not None and SCENARIO_CACHE.seen_before(key):
                    SCENARIO_CACHE.put(key, scenario, self.np_random.bit_generator.state)
        self._start(scenario, owned)
        for turn in options.get("prefix", ()):
            if self._done:
                break
            self.step(turn)
        return self._obs(), self._reset_info()

    def _cache_hit(self, key: tuple[Any, int]) -> Scenario | None:
        """The cached scenario for ``key`` (source key, seed), or ``None``: then reset generates it, and stores it
        the second time (:meth:`~toolgym.sources.ScenarioCache.seen_before`).

        Generation is a pure function of (source key, seed): the cache stores the scenario (pickled) before the
        episode mutates its world, and the bit generator's state after generation. A hit sets ``np_random`` to
        that state directly: seeding a new generator first (what ``Env.reset(seed=)`` does) would be overwritten
        at once and cost a quarter of a hit.
        """
        entry = SCENARIO_CACHE.get(key)
        if entry is None:
            return None
        scenario, rng_state = entry
        seed = key[1]
        rng = self._np_random
        if rng is None or type(rng.bit_generator).__name__ != rng_state["bit_generator"]:
            rng, _ = seeding.np_random(seed)
        rng.bit_generator.state = rng_state
        self._np_random, self._np_random_seed = rng, seed
        return scenario

    def _obs(self) -> dict[str, Any]:
        return {"messages": list(self._messages), "tools": self.scenario.tools}

    def _reset_info(self) -> dict[str, Any]:
        sc = self.scenario
        return {
            "scenario_id": sc.id,
            "kind": sc.kind,
            "n_unsolved": self.tracker.n_unsolved,
            "unsolved_set": self.tracker.unsolved_set(),
            "metadata": dict(sc.metadata),
        }

    # -- stepping --------------------------------------------------------------------------------------
    def step(self, action: Any):
        if self.scenario is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            info = {
                "reward_components": dict.fromkeys(COMPONENT_KEYS, 0.0),
                "feedback": ["episode is over"],
                "new_messages": [],
            }
            return self._obs(), 0.0, True, False, info
        self._turn = turn = self._turn + 1
        parsed = parse_action(action, self._tool_names, f"call_{turn}_", self._schemas)
        calls, malformed = parsed.calls, parsed.malformed
        comp = _ZERO_COMPONENTS.copy()
        feedback: list[str] = []
        content = parsed.content
        if not content.isascii() and find_lone_surrogate(content):  # isascii reads a flag: free on ASCII text
            content = replace_lone_surrogates(content)
        assistant: dict[str, Any] = {"role": "assistant", "content": content}
        tool_msgs: list[dict[str, Any]] = []
        n_solved = 0
        n_valid = 0
        p = len(calls)
        if calls:
            tool_calls = assistant["tool_calls"] = []
            for call in calls:
                name, arguments = call.name, call.arguments
                encoded = _encode(arguments)
                call_id = call.id
                if not (encoded.isascii() and name.isascii() and call_id.isascii()) and (
                    find_lone_surrogate(encoded) or find_lone_surrogate(name) or find_lone_surrogate(call_id)
                ):
                    call_id = replace_lone_surrogates(call_id)
                    if find_lone_surrogate(encoded) or find_lone_surrogate(name):
                        text = json.dumps({"name": name, "arguments": arguments}, default=str)  # escaped: valid
                        malformed = [*malformed, MalformedCall(text[:200], LONE_SURROGATE_REASON, call_id)]
                        p -= 1
                        continue
                tool_calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": encoded}})
                text, solved, valid = self._run_call(name, arguments, comp)
                n_solved += solved
                n_valid += valid
                feedback.append(text)
                tool_msgs.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": text})
        for bad in malformed:
            comp["n_bad_json"] += 1
            text = f"Error: could not read tool call: {bad.reason}."
            feedback.append(text)
            tool_msgs.append(
                {"role": "tool", "tool_call_id": replace_lone_surrogates(bad.id), "name": "", "content": text}
            )
        if calls and not p:
            del assistant["tool_calls"]
        self._messages.append(assistant)
        self._messages.extend(tool_msgs)

        self._n_calls = n_calls = self._n_calls + p
        tracker = self.tracker
        t, n_exp = tracker.n_unsolved, tracker.n_expected
        s = n_exp - t
        terminated = not p and not malformed
        if p:
            r_ftrl = _FTRL_TURN(p, n_solved)
        else:
            r_ftrl = R.answer_turn_reward(content, self._answer, t, malformed=bool(malformed))
        comp["reward_ftrl"] = r_ftrl
        comp["n_calls"] = float(p)
        comp["n_solved_now"] = float(n_solved)
        comp["n_unsolved"] = float(t)
        comp["precision"], comp["recall"], comp["f1"] = self._solve_scores(s, n_calls, n_exp)
        comp["format_ok"] = 0.0 if malformed else 1.0
        comp["args_valid"] = n_valid / p if p else 1.0
        comp["answer_correct"] = float(terminated and R.answer_correct(content, self._answer))
        comp["state_ok"] = float(self._state_ok()) if self._checks else 1.0
        if self.turn_scorer is not None:
            scores = self.turn_scorer(self.scenario, parsed)
            comp.update(scores)
            self._suite_scores = scores  # the last turn's: the episode's score in the suite's own terms
        truncated = not terminated and turn >= self.max_turns
        self._done = done = terminated or truncated
        spec = self.reward_spec
        reward = r_ftrl if type(spec) is str and spec == "ftrl" else self._reward(comp, parsed, p, n_solved, done)
        self.episode_return += reward
        info: dict[str, Any] = {
            "reward_components": comp,
            "feedback": feedback,
            "turn": turn,
            "new_messages": [assistant, *tool_msgs],  # what this step appended to the chat
        }
        if done:
            info["episode"] = self.episode_metrics()
        return self._obs(), reward, terminated, truncated, info

    def _run_call(self, name: str, arguments: dict[str, Any], comp: dict[str, float]) -> tuple[str, int, int]:
        """Check and run one call; returns (tool message text, solved 0/1, arguments valid 0/1)."""
        if name not in self._tool_names:
            comp["n_unknown_tool"] += 1
            return f"Error: unknown tool {name!r}. Available tools: {', '.join(sorted(self._tool_names))}.", 0, 0
        validator = self._validators[name]
        if not validator.is_valid(arguments):  # the common valid call skips check_arguments' frame
            kind, msg = check_arguments(validator, arguments)
            comp["n_" + kind] += 1
            label = kind.replace("_", " ")
            return f"Error: invalid arguments for {name!r} ({label}): {msg}.", 0, 0
        box = self._boxes[name]
        if self._process is None:
            outcome = box.call(name, arguments, self.state)
        else:
            outcome = self._process.call(box, name, arguments, self.state)
        if not outcome.ok:
            if outcome.error == "timeout":
                comp["n_timeouts"] += 1
            elif outcome.error == "bad_arguments":
                extra = set(arguments) - set((self._schemas[name].get("parameters") or {}).get("properties", {}))
                comp["n_extra_args" if extra else "n_missing_args"] += 1
                return outcome.output, 0, 0
            else:
                comp["n_tool_errors"] += 1
            return outcome.output, 0, 1
        if outcome.output.startswith(_ERROR_RESULT):  # the tool's own error result, e.g. {"error": "unknown id"}
            comp["n_tool_errors"] += 1
        solved = self.tracker.match(name, outcome.output, self.state)
        return outcome.output, 0 if solved is None else 1, 1

    def _state_ok(self) -> bool:
        return not self._checks or all(c.holds(self.state) for c in self._checks)

    def _reward(self, comp: dict[str, float], parsed: ParsedTurn, p: int, q: int, done: bool) -> float:
        spec = self.reward_spec
        if callable(spec):
            return float(spec(comp, self))
        if spec in R.TURN_VARIANTS:
            return R.call_turn_reward(p, q, spec) if p else comp["reward_ftrl"]
        if spec == "episode_f1":
            return comp["f1"] if done else 0.0
        return comp["answer_correct"]  # answer_only

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
        super().close()

    # -- pickling: compiled tools, validators and the tool worker are rebuilt, not copied ---------------------
    _REBUILT = ("_boxes", "_toolboxes", "_validators", "_process")

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._REBUILT}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._toolboxes = {}
        self._process = ProcessSandbox() if self.isolation == "process" else None
        if self.scenario is not None:
            self._boxes = self._bind_tools(self.scenario)
            self._validators = {n: parameters_validator(f.get("parameters") or {}) for n, f in self._schemas.items()}

    # -- introspection -----------------------------------------------------------------------------------
    def episode_metrics(self) -> dict[str, float]:
        """Solve-P / Solve-R / Solve-F1 of the episode so far (the paper's definitions)."""
        n_exp = self.tracker.n_expected
        s = n_exp - self.tracker.n_unsolved
        solve_p, solve_r, solve_f1 = self._solve_scores(s, self._n_calls, n_exp)
        return {
            "solve_p": solve_p,
            "solve_r": solve_r,
            "solve_f1": solve_f1,
            "n_calls": float(self._n_calls),
            "n_obtained": float(s),
            "n_expected": float(n_exp),
            "turns": float(self._turn),
            "return": self.episode_return,
            "state_ok": float(self._state_ok()),
            **self._suite_scores,
        }

    def gold_plan(self) -> list[list[dict[str, Any]]]:
        """The gold calls still to make, grouped into turns (parallel calls share a turn).

        Raises ``ValueError`` for scenarios without gold arguments (e.g. imported FTRL records).
        """
        left = self.tracker.unsolved_ids()
        plan = []
        for turn in self.scenario.gold_plan():
            calls = [{"name": s.tool, "arguments": s.arguments} for s in turn if s.id in left]
            if any(s.id in left and s.arguments is None for s in turn):
                raise ValueError(f"scenario {self.scenario.id} has no gold arguments")
            if calls:
                plan.append(calls)
        return plan

    def gold_actions(self) -> list[str]:
        """The gold remaining turns as Hermes completions, ending with the final answer."""
        turns = [format_hermes([(c["name"], c["arguments"]) for c in turn]) for turn in self.gold_plan()]
        return [*turns, self.scenario.answer or "Done."]

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lines = []
        for m in self._messages:
            head = m["role"] + (f" [{m.get('name')}]" if m["role"] == "tool" else "")
            body = m.get("content") or ""
            for tc in m.get("tool_calls", []):
                body += f"\n  -> {tc['function']['name']}({tc['function']['arguments']})"
            lines.append(f"{head}: {body}")
        return "\n".join(lines) + "\n"
