"""A thread-safe pool of envs keyed by (env id, kwargs): each env has one owner at a time.

Trainer adapters run many episodes at once (verl's agent loops interleave on one event loop, SkyRL's generator
runs envs on threads), so an env cannot be cached per thread as ``toolgym.export``'s scorer does: an episode
borrows an env for its whole length and returns it. ``gym.make`` costs far more than a reset, hence the reuse.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import gymnasium as gym


class EnvPool:
    """Free envs per (id, kwargs), at most ``per_key`` kept; the rest are closed when returned."""

    def __init__(self, per_key: int = 64):
        self.per_key = per_key
        self._free: dict[str, list[gym.Env]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(env_id: str, env_kwargs: dict[str, Any]) -> str:
        return env_id + json.dumps(env_kwargs, sort_keys=True, default=repr)

    def checkout(self, env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
        """An env of (id, kwargs) owned by the caller until :meth:`checkin` (a new one when none is free)."""
        with self._lock:
            free = self._free.get(self.key(env_id, env_kwargs))
            if free:
                return free.pop()
        return gym.make(env_id, **env_kwargs)

    def checkin(self, env_id: str, env_kwargs: dict[str, Any], env: gym.Env) -> None:
        with self._lock:
            free = self._free.setdefault(self.key(env_id, env_kwargs), [])
            if len(free) < self.per_key:
                free.append(env)
                return
        env.close()
