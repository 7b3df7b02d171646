"""Gymnasium spaces for chat observations and assistant-turn actions.

Neither fits a stock space: an observation is an OpenAI chat plus function schemas, an action is free text
(or an OpenAI message dict). ``Text`` would reject most completions for its charset, so these spaces check
structure, not characters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

_ROLES = frozenset({"system", "user", "assistant", "tool"})
_WORDS = ("flight", "book", "the", "answer", "is", "<tool_call>", "{", "}", '"name"', ":", "search", "42")


class ChatObservation(spaces.Space):
    """``{"messages": [OpenAI chat messages], "tools": [OpenAI function schemas]}``."""

    def __init__(self, seed: int | np.random.Generator | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        if not isinstance(x, dict) or set(x) != {"messages", "tools"}:
            return False
        msgs, tools = x["messages"], x["tools"]
        if not isinstance(msgs, list) or not isinstance(tools, list):
            return False
        if not all(isinstance(m, dict) and m.get("role") in _ROLES for m in msgs):
            return False
        return all(isinstance(t, dict) and isinstance(t.get("function"), dict) for t in tools)

    def sample(self, mask: Any = None, probability: Any = None) -> dict[str, Any]:
        n = int(self.np_random.integers(1, 4))
        words = [_WORDS[i] for i in self.np_random.integers(len(_WORDS), size=n)]
        return {"messages": [{"role": "user", "content": " ".join(words)}], "tools": []}

    def __repr__(self) -> str:
        return "ChatObservation()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChatObservation)


class AssistantTurn(spaces.Space):
    """One assistant turn: completion text, an OpenAI assistant message dict, or a number (a bare final answer).

    Numbers are in the space because action parsers in trainers (verifiers, for one) turn a completion such as
    "154" into an int before it reaches the env; the env steps it as its text.
    """

    def __init__(self, max_length: int = 1_000_000, seed: int | np.random.Generator | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)
        self.max_length = max_length

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        if isinstance(x, str):
            return len(x) <= self.max_length
        return isinstance(x, (dict, int, float, np.integer, np.floating)) and not isinstance(x, bool)

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        n = int(self.np_random.integers(0, 8))
        return " ".join(_WORDS[i] for i in self.np_random.integers(len(_WORDS), size=n))

    def __repr__(self) -> str:
        return f"AssistantTurn(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AssistantTurn) and other.max_length == self.max_length
