"""SkyRL-Gym adapter: toolgym envs as the ``skyrl_gym`` text env ``toolgym`` (dataset column ``env_class``).

SkyRL's generator builds one env per trajectory with
``skyrl_gym.make(row["env_class"], env_config=cfg.environment.skyrl_gym.toolgym, extras=<the row's other columns>)``,
calls ``init(prompt)`` once and then ``step(<the model's text turn>)`` until ``done``. The rows are toolgym's ``rl``
export: ``reward_spec.ground_truth`` (or, for rows exported before that column existed, ``reward_model.ground_truth``:
the same JSON string) names the toolgym env, its kwargs, the seed and the trajectory prefix, so ``init`` restores
the env exactly where the row's prompt stands and every step is scored by the env itself: FTRL's turn reward, with
the reward components as metadata. SkyRL places each step's reward at that turn's last token, which is FTRL's
turn-level credit assignment.

SkyRL applies the tokenizer's chat template to the chat without a ``tools=`` argument, so the model can only see
the tools in the text: ``init`` returns the env's chat in toolgym's text mode (the Hermes tools prompt in the
system message, earlier calls as ``<tool_call>`` text, tool results as ``<tool_response>`` blocks), the format
the model answers in and that ``step`` parses.

``env_config`` keys (``environment.skyrl_gym.toolgym`` in SkyRL's config), all optional:

* ``observation_role``: ``"user"`` (default) sends a step's tool results as one user message of
  ``<tool_response>`` blocks (works with every chat template); ``"tool"`` sends one ``tool`` message per result,
  for templates that render the tool role themselves (Qwen2.5/3 turn them into the same blocks).
* ``tools_prompt``: ``True`` (default) adds the tools prompt to the system message; ``False`` when the dataset's
  prompt already describes the tools some other way (then the chat is the env's chat, rendered as text).
* ``check``: ``True`` (default) raises :class:`~toolgym.export.RestoreError` when the restored env's chat or
  unsolved set differs from the row's (the env or its code changed since the export), instead of training on
  rewards of a different task.
* ``env_kwargs``: ``gym.make`` kwargs put over every row's, e.g. ``{"isolation": "process"}``.

The toolgym env's own turn limit is cut to SkyRL's ``generator.max_turns`` (passed as ``extras["max_turns"]``)
turns after the prefix, so the env itself truncates and its reward knows the episode ended.

Envs are pooled per (env id, kwargs) and handed back on ``close()``: SkyRL makes an env per trajectory and
``gym.make`` costs several times a reset; a pooled env is owned by one SkyRL env at a time, so trajectories that
SkyRL interleaves on one thread (``max_env_workers: 0``) or runs on its env thread pool never share one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

try:
    from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput
    from skyrl_gym.envs.registration import register as _skyrl_register
    from skyrl_gym.envs.registration import registry as _skyrl_registry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("toolgym.integrations.skyrl needs skyrl-gym: pip install 'toolgym[skyrl]'") from exc

import toolgym
from toolgym.calls import format_hermes
from toolgym.env import ToolEnv
from toolgym.export import RestoreError, _strip_none, prompt_matches
from toolgym.pool import EnvPool
from toolgym.prompts import TEXT_TOOLS_PROMPT, tool_lines, with_system

ENV_CLASS = "toolgym"
ENTRY_POINT = "toolgym.integrations.skyrl:ToolGymTextEnv"
CONFIG_KEYS = ("observation_role", "tools_prompt", "check", "env_kwargs")
_POOL_PER_KEY = 64

__all__ = ["CONFIG_KEYS", "ENV_CLASS", "GroundTruthError", "ToolGymTextEnv", "ground_truth", "register"]


class GroundTruthError(ValueError):
    """A row's ``reward_spec.ground_truth`` is missing or does not name a restorable toolgym env."""


def register(env_class: str = ENV_CLASS) -> str:
    """Register the adapter in ``skyrl_gym`` as ``env_class`` (idempotent); returns the id.

    Importing this module registers ``"toolgym"`` already; call this in the process that runs SkyRL's generator
    (its Ray entrypoint), or to register under another name.
    """
    spec = _skyrl_registry.get(env_class)
    if spec is not None:
        if spec.entry_point in (ENTRY_POINT, ToolGymTextEnv):
            return env_class
        raise ValueError(f"skyrl_gym env {env_class!r} is already registered to {spec.entry_point!r}")
    _skyrl_register(id=env_class, entry_point=ENTRY_POINT)
    return env_class


# -- the pool of toolgym envs ----------------------------------------------------------------------------------

_POOL = EnvPool(_POOL_PER_KEY)


def _checkout(env_id: str, env_kwargs: dict[str, Any]) -> tuple[gym.Env, int]:
    """An env of (id, kwargs) owned by the caller until :func:`_checkin`, with its own ``max_turns``."""
    env = _POOL.checkout(env_id, env_kwargs)
    if not isinstance(env.unwrapped, ToolEnv):
        env.close()
        raise GroundTruthError(f"reward_spec.ground_truth.env_id {env_id!r} is a gymnasium env but not a toolgym env")
    if not hasattr(env.unwrapped, "_skyrl_max_turns"):
        env.unwrapped._skyrl_max_turns = env.unwrapped.max_turns  # init() narrows max_turns per trajectory
    return env, env.unwrapped._skyrl_max_turns


def _checkin(env_id: str, env_kwargs: dict[str, Any], env: gym.Env, base_max_turns: int) -> None:
    env.unwrapped.max_turns = base_max_turns
    _POOL.checkin(env_id, env_kwargs, env)


# -- reading a row ---------------------------------------------------------------------------------------------


def _json_field(value: Any, field: str, kind: type) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise GroundTruthError(f"{field} is not valid JSON: {exc}") from None
    if isinstance(value, Mapping) and kind is dict:
        return _strip_none(dict(value))  # Arrow fills a struct's absent keys with None
    if kind is list and isinstance(value, list | tuple):
        return list(value)
    if hasattr(value, "tolist") and kind is list:  # numpy arrays from pandas-loaded parquet
        return list(value.tolist())
    raise GroundTruthError(f"{field} must be a {kind.__name__} (or its JSON string), got {type(value).__name__}")


def ground_truth(extras: Mapping[str, Any] | None) -> dict[str, Any]:
    """The decoded ground truth of a row's extras: ``env_id``, ``env_kwargs``, ``seed``, ``prefix`` (+ reward data).

    Looks in ``reward_spec.ground_truth`` (SkyRL's column) and falls back to ``reward_model.ground_truth`` (verl's,
    the same JSON string in toolgym's rl rows).
    """
    extras = extras or {}
    raw = None
    for column in ("reward_spec", "reward_model"):
        spec = extras.get(column)
        if isinstance(spec, Mapping) and spec.get("ground_truth") is not None:
            raw = spec["ground_truth"]
            break
    if raw is None:
        raise GroundTruthError(
            "extras['reward_spec']['ground_truth'] is missing: the row needs a reward_spec column "
            "{'method': 'rule', 'ground_truth': <toolgym rl row's reward_model.ground_truth>}"
            f" (the row has columns {sorted(extras)})"
        )
    gt = _json_field(raw, "reward_spec.ground_truth", dict)
    for key in ("env_id", "seed"):
        if gt.get(key) is None:
            raise GroundTruthError(f"reward_spec.ground_truth.{key} is missing (ground truth keys: {sorted(gt)})")
    env_id = gt["env_id"]
    if not isinstance(env_id, str) or env_id not in gym.envs.registry:
        known = ", ".join(toolgym.registered_ids())
        raise GroundTruthError(f"reward_spec.ground_truth.env_id {env_id!r} is not a registered env ({known})")
    try:
        seed = int(gt["seed"])
    except (TypeError, ValueError):
        raise GroundTruthError(f"reward_spec.ground_truth.seed must be an integer, got {gt['seed']!r}") from None
    return {
        **gt,
        "env_id": env_id,
        "seed": seed,
        "env_kwargs": _json_field(gt.get("env_kwargs") or {}, "reward_spec.ground_truth.env_kwargs", dict),
        "prefix": _json_field(gt.get("prefix") or [], "reward_spec.ground_truth.prefix", list),
    }


def _config(env_config: Any) -> dict[str, Any]:
    if type(env_config).__module__.startswith("omegaconf"):  # SkyRL's DictConfig: plain containers inside
        from omegaconf import OmegaConf

        env_config = OmegaConf.to_container(env_config, resolve=True)
    if env_config is None:
        cfg: dict[str, Any] = {}
    elif hasattr(env_config, "items"):
        cfg = {k: v for k, v in env_config.items()}
    else:  # a dataclass or namespace
        cfg = {k: v for k, v in vars(env_config).items() if not k.startswith("_")}
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown toolgym env_config keys {unknown}; known: {', '.join(CONFIG_KEYS)}")
    role = cfg.get("observation_role", "user")
    if role not in ("user", "tool"):
        raise ValueError(f"env_config.observation_role must be 'user' or 'tool', got {role!r}")
    kwargs = cfg.get("env_kwargs") or {}
    if not hasattr(kwargs, "items"):
        raise ValueError(f"env_config.env_kwargs must be a mapping, got {type(kwargs).__name__}")
    return {
        "observation_role": role,
        "tools_prompt": bool(cfg.get("tools_prompt", True)),
        "check": bool(cfg.get("check", True)),
        "env_kwargs": {k: v for k, v in kwargs.items()},
    }


# -- chat rendering --------------------------------------------------------------------------------------------


def _arguments(args: Any) -> Any:
    if isinstance(args, str):
        try:
            return json.loads(args)
        except ValueError:
            return args
    return _strip_none(args)


def _tool_observations(tool_msgs: list[dict[str, Any]], role: str) -> list[dict[str, str]]:
    if not tool_msgs:
        return []
    if role == "tool":
        return [{"role": "tool", "content": m.get("content") or ""} for m in tool_msgs]
    blocks = [f"<tool_response>\n{m.get('content') or ''}\n</tool_response>" for m in tool_msgs]
    return [{"role": "user", "content": "\n".join(blocks)}]


def _render(messages: list[dict[str, Any]], prefix: list[Any], role: str) -> list[dict[str, str]]:
    """The env's chat as text turns; the prefix's assistant turns keep the text the policy wrote.

    The last ``len(prefix)`` assistant messages are the prefix's turns; the ones before (a scenario's own
    history) and non-text prefix actions are rendered as Hermes text from their calls.
    """
    n_assistant = sum(m.get("role") == "assistant" for m in messages)
    first_prefix = n_assistant - len(prefix)
    out: list[dict[str, str]] = []
    pending: list[dict[str, Any]] = []
    k = 0
    for m in messages:
        r = m.get("role")
        if r == "tool":
            pending.append(m)
            continue
        out += _tool_observations(pending, role)
        pending = []
        if r == "assistant":
            action = prefix[k - first_prefix] if k >= first_prefix else None
            k += 1
            if not isinstance(action, str):
                calls = [
                    (tc["function"]["name"], _arguments(tc["function"].get("arguments")))
                    for tc in m.get("tool_calls") or []
                ]
                action = format_hermes(calls, m.get("content") or "")
            out.append({"role": "assistant", "content": action})
        else:
            out.append({"role": r, "content": m.get("content") or ""})
    out += _tool_observations(pending, role)
    return out


# -- the env ---------------------------------------------------------------------------------------------------


class ToolGymTextEnv(BaseTextEnv):
    """One SkyRL trajectory over a toolgym env restored at a row's prefix; see the module docstring."""

    def __init__(self, env_config: Any = None, extras: Mapping[str, Any] | None = None):
        super().__init__()
        self.config = _config(env_config)
        self.extras = dict(extras or {})
        self.truth = ground_truth(self.extras)
        self.env_id = self.truth["env_id"]
        self.seed = self.truth["seed"]
        self.prefix = self.truth["prefix"]
        self.env_kwargs = {**self.truth["env_kwargs"], **self.config["env_kwargs"]}
        max_turns = self.extras.get("max_turns")
        self.max_turns = int(max_turns) if max_turns is not None else None
        if self.max_turns is not None and self.max_turns < 1:
            raise ValueError(f"extras['max_turns'] must be >= 1, got {max_turns!r}")
        try:
            self.env, self._base_max_turns = _checkout(self.env_id, self.env_kwargs)
        except TypeError as exc:
            raise GroundTruthError(
                f"reward_spec.ground_truth.env_kwargs {self.env_kwargs} do not fit {self.env_id}: {exc}"
            ) from None
        self.episode_return = 0.0
        self.done = False
        self._initialized = False
        self._closed = False
        self._last_info: dict[str, Any] = {}

    def init(self, prompt: Any = None) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """Restore the env at the row's prefix; returns the chat for the model and the restore info.

        With ``check``, ``prompt`` (the row's ``prompt`` column, as SkyRL passes it) must equal the restored chat.
        """
        u: ToolEnv = self.env.unwrapped
        cut = len(self.prefix) + self.max_turns if self.max_turns is not None else self._base_max_turns
        u.max_turns = min(self._base_max_turns, cut)
        obs, info = self.env.reset(seed=self.seed, options={"prefix": self.prefix})
        if self.config["check"]:
            where = f"{self.env_id} seed {self.seed} prefix of {len(self.prefix)} turns"
            if prompt is not None and len(prompt) and not prompt_matches(obs, self.extras, list(prompt)):
                raise RestoreError(f"{where}: the restored chat differs from the row's prompt")
            unsolved = self.truth.get("unsolved_set")
            if unsolved is not None and info["unsolved_set"] != _json_field(unsolved, "unsolved_set", dict):
                raise RestoreError(f"{where}: restored unsolved_set {info['unsolved_set']} differs from {unsolved}")
        if u._done:
            raise RestoreError(f"{self.env_id} seed {self.seed}: the episode already ended inside the prefix")
        chat = _render(obs["messages"], self.prefix, self.config["observation_role"])
        if self.config["tools_prompt"]:
            chat = with_system(chat, TEXT_TOOLS_PROMPT.format(tools=tool_lines(obs["tools"])))
        self.turns = 0
        self.episode_return = 0.0
        self.done = False
        self._initialized = True
        return chat, {"env_id": self.env_id, "seed": self.seed, "prefix_turns": len(self.prefix), **info}

    def step(self, action: str) -> BaseTextEnvStepOutput:
        """Step the env with one model turn: its tool results as observations, FTRL's reward, done, components."""
        if not self._initialized:
            raise RuntimeError("call init() before step()")
        if not isinstance(action, str):
            raise TypeError(f"a SkyRL action is the model's text turn (str), got {type(action).__name__}")
        self.turns += 1
        _, reward, terminated, truncated, info = self.env.step(action)
        reward = float(reward)
        self.episode_return += reward
        self.done = done = bool(terminated or truncated)
        tool_msgs = [m for m in info.get("new_messages", []) if m.get("role") == "tool"]
        self._last_info = info
        metadata = {
            "reward_components": info["reward_components"],
            "feedback": info["feedback"],
            "turn": self.turns,
            "terminated": bool(terminated),
            "truncated": bool(truncated),
        }
        if "episode" in info:
            metadata["episode"] = info["episode"]
        observations = [] if done else _tool_observations(tool_msgs, self.config["observation_role"])
        return BaseTextEnvStepOutput(observations=observations, reward=reward, done=done, metadata=metadata)

    def get_metrics(self) -> dict[str, Any]:
        """Solve-P/R/F1 and calls of the whole episode (prefix included, the paper's definitions); ``return`` and
        ``turns`` of this trajectory (from ``init``)."""
        if not self._initialized:
            return {}
        m = {k: v for k, v in self.env.unwrapped.episode_metrics().items() if k not in ("return", "turns")}
        return {**m, "return": self.episode_return, "turns": float(self.turns)}

    def close(self) -> None:
        """Hand the toolgym env back to the pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        _checkin(self.env_id, self.env_kwargs, self.env, self._base_max_turns)


register()
