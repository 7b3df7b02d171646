"""Built-in baseline agents that need no model: ``gold`` (the scenario's plan) and ``random``.

The gold agent bounds what a policy can score; the random agent shows what chance scores. Both act
through the same action interface a language model uses (Hermes ``<tool_call>`` text).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from toolgym.calls import format_hermes

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-:.]*")


class GoldAgent:
    """Plays the scenario's gold plan: every ready sub-task in one turn, then the gold final answer."""

    name = "gold"

    def reset(self, env: Any, obs: dict, info: dict, seed: int | None = None) -> None:
        self.env = env.unwrapped

    def act(self, obs: dict) -> str:
        return self.env.gold_actions()[0]


class RandomAgent:
    """Calls random offered tools with schema-typed arguments drawn from strings seen in the chat.

    It answers (ends the episode) with probability ``p_answer`` per turn, quoting a random seen token.
    """

    name = "random"

    def __init__(self, p_answer: float = 0.25, max_calls: int = 3):
        self.p_answer = p_answer
        self.max_calls = max_calls

    def reset(self, env: Any, obs: dict, info: dict, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def _vocab(self, obs: dict) -> list[str]:
        words: list[str] = []
        for m in obs["messages"]:
            if m["role"] in ("user", "tool") and isinstance(m.get("content"), str):
                words.extend(_TOKEN.findall(m["content"]))
        return words or ["x"]

    def _value(self, schema: dict[str, Any], vocab: list[str]) -> Any:
        rng = self.rng
        if "enum" in schema:
            return schema["enum"][int(rng.integers(len(schema["enum"])))]
        kind = schema.get("type", "string")
        if isinstance(kind, list):
            kind = kind[0]
        if kind == "integer":
            return int(rng.integers(0, 1000))
        if kind == "number":
            return float(np.round(rng.uniform(0, 1000), 2))
        if kind == "boolean":
            return bool(rng.integers(2))
        if kind == "array":
            return [self._value(schema.get("items", {}), vocab) for _ in range(int(rng.integers(0, 3)))]
        if kind == "object":
            return {}
        return vocab[int(rng.integers(len(vocab)))]

    def act(self, obs: dict) -> str:
        vocab = self._vocab(obs)
        rng = self.rng
        if rng.random() < self.p_answer or not obs["tools"]:
            return " ".join(vocab[int(i)] for i in rng.integers(len(vocab), size=int(rng.integers(1, 4))))
        calls = []
        for _ in range(int(rng.integers(1, self.max_calls + 1))):
            fn = obs["tools"][int(rng.integers(len(obs["tools"])))]["function"]
            params = fn.get("parameters") or {}
            props = params.get("properties", {})
            required = set(params.get("required", []))
            args = {k: self._value(s, vocab) for k, s in props.items() if k in required or rng.random() < 0.3}
            calls.append((fn["name"], json.loads(json.dumps(args))))
        return format_hermes(calls)


AGENTS = {"gold": GoldAgent, "random": RandomAgent}


def make_agent(name: str) -> GoldAgent | RandomAgent:
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; built-in agents: {', '.join(AGENTS)}")
    return AGENTS[name]()
