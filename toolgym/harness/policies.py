"""Who acts in an episode: a chat model behind an OpenAI-compatible server, or a built-in agent.

Both policies have the same face for the episode runner (:mod:`toolgym.harness.episode`): ``stats``, ``close()``,
and either ``act()`` (a model: one request per turn through :class:`~toolgym.model_client.ChatClient`, which owns
the retries) or ``start()`` (an agent object per episode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from toolgym.agents import make_agent
from toolgym.harness.config import EvalConfig
from toolgym.model_client import ChatClient, RetriesExhausted, decoding_schema, error_text, reply_message
from toolgym.prompts import (
    JSON_TOOLS_PROMPT,
    action_schema,
    json_to_action,
    native_history,
    text_history,
    text_prompt,
    tool_lines,
    with_system,
)


class EpisodeFailed(Exception):
    """Requests of an episode kept failing after the retries: the episode is not written (a rerun redoes it)."""


@dataclass
class Turn:
    action: Any  # what the env steps with
    record: Any  # what the model produced (message dict or text), stored in the episode line
    history: dict[str, Any] | None = None  # the assistant message the model sees next turn (None: the env's)
    note: str | None = None


def run_client(cfg: EvalConfig, base_url: str | None, api_key: str | None) -> ChatClient:
    """A client of the server at ``base_url`` with the run's timeout, retries, back-off and seed."""
    return ChatClient(
        base_url or "", api_key, timeout=cfg.timeout, retries=cfg.retries, backoff=cfg.backoff, seed=cfg.seed
    )


class ModelPolicy:
    """One OpenAI-compatible chat model, shared by all running episodes (one client, one retry loop)."""

    def __init__(self, cfg: EvalConfig):
        self.cfg = cfg
        self.client = run_client(cfg, cfg.base_url, cfg.api_key)
        self.stats = self.client.stats

    async def close(self) -> None:
        await self.client.close()

    def request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
        """The chat-completion request of a turn, in the run's mode."""
        cfg = self.cfg
        req: dict[str, Any] = {"model": cfg.model, "temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        if cfg.mode == "native":
            req["messages"] = native_history(messages)
            if tools:
                req["tools"] = tools
        elif cfg.json_schema:
            req["messages"] = with_system(text_history(messages), JSON_TOOLS_PROMPT.format(tools=tool_lines(tools)))
            schema = decoding_schema(action_schema(tools))
            if cfg.response_format == "json_object":
                req["response_format"] = {"type": "json_object", "schema": schema}
            else:
                req["response_format"] = {"type": "json_schema", "json_schema": {"name": "turn", "schema": schema}}
        else:
            req["messages"] = text_prompt(messages, tools)
        return req

    async def act(self, obs: dict[str, Any], turn: int, errors: list[dict[str, Any]]) -> Turn:
        """The model's turn; every failed request is listed in ``errors`` (the episode line keeps them)."""

        def note(attempt: int, exc: BaseException) -> None:
            errors.append({"turn": turn, "attempt": attempt, "type": type(exc).__name__, "message": error_text(exc)})

        try:
            resp = await self.client.complete(self.request(obs["messages"], obs["tools"]), on_error=note)
        except RetriesExhausted as exc:
            raise EpisodeFailed(str(exc)) from exc
        msg = reply_message(resp)
        content = msg["content"]
        if self.cfg.mode == "native":
            out: dict[str, Any] = {"role": "assistant", "content": content}
            calls = msg.get("tool_calls")
            if isinstance(calls, list):
                calls = [_wire_call(tc, turn, i) for i, tc in enumerate(calls)]
            if calls:
                out["tool_calls"] = calls
            return Turn(out, out, out)
        history = {"role": "assistant", "content": content}
        if self.cfg.json_schema:
            action, fmt_note = json_to_action(content, turn)
            return Turn(action, content, history, fmt_note)
        return Turn(content, content, history)


def _wire_call(tc: Any, turn: int, i: int) -> Any:
    """A reply's tool call in the OpenAI wire form, with an id; what is not a call object is left for the env to
    report as unreadable."""
    if not isinstance(tc, dict):
        return tc
    fn = tc.get("function")
    if isinstance(fn, dict):
        fn = {"name": fn.get("name"), "arguments": fn.get("arguments")}
    return {"id": tc.get("id") or f"call_{turn}_{i}", "type": "function", "function": fn}


class AgentPolicy:
    """A built-in agent (``gold``, ``random``) behind the same interface; one agent object per episode."""

    def __init__(self, name: str):
        self.name = name
        self.stats: dict[str, int] = {}

    async def close(self) -> None:
        pass

    def start(self, env: gym.Env, obs: dict, info: dict, seed: int) -> Any:
        agent = make_agent(self.name)
        agent.reset(env, obs, info, seed=seed)
        return agent


def make_user_client(cfg: EvalConfig, policy: ModelPolicy | AgentPolicy) -> ChatClient | None:
    """The client of the model that plays the user (None: no model user): the agent's own client when both talk
    to one server with one key (one connection pool, one set of counters), else one with the same retries."""
    if cfg.user_model is None:
        return None
    if isinstance(policy, ModelPolicy) and (cfg.user_base_url, cfg.user_api_key) == (cfg.base_url, cfg.api_key):
        return policy.client
    return run_client(cfg, cfg.user_base_url, cfg.user_api_key)


def request_stats(policy: ModelPolicy | AgentPolicy, user_client: ChatClient | None) -> dict[str, int]:
    """The run's request counters: the policy's, and a user client's of its own as ``user_<counter>``."""
    stats = dict(policy.stats)
    if user_client is not None and user_client is not getattr(policy, "client", None):
        stats.update({f"user_{k}": v for k, v in user_client.stats.items()})
    return stats


def make_policy(cfg: EvalConfig) -> ModelPolicy | AgentPolicy:
    """The run's policy: the model when one is given, else the built-in agent."""
    return ModelPolicy(cfg) if cfg.model else AgentPolicy(cfg.agent or "")
