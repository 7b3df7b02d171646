"""Batched envs: N :class:`~toolgym.env.ToolEnv` instances stepped in one process, with Gymnasium's vector API.

``gym.make_vec("ToolGym/<Name>-v<N>", num_envs=n, **env_kwargs)`` returns a :class:`ToolVectorEnv` (every
ToolGym id registers :func:`make_vector_env` as its ``vector_entry_point``). Batching follows Gymnasium's
conventions for spaces it cannot stack into arrays:

* observations: a tuple of the n per-env observation dicts (``observation_space`` is
  ``batch_space(ChatObservation(), n)``, a ``Tuple`` of n ``ChatObservation``);
* actions: a tuple or list of n per-env actions (completion text or OpenAI message dicts);
* rewards: ``float64`` array; terminations / truncations: ``bool`` arrays;
* infos: Gymnasium's vector info dict, built exactly as ``VectorEnv._add_info`` builds it: ``info[key]`` is an
  array over envs and ``info["_" + key]`` a bool mask of the envs that reported the key; nested dicts (such as
  ``reward_components`` or ``episode``) are batched recursively, so ``info["reward_components"]["f1"]`` is a
  ``float64`` array with mask ``info["reward_components"]["_f1"]``.

Autoreset (``metadata["autoreset_mode"]``) is ``AutoresetMode.NEXT_STEP`` by default, exactly as in Gymnasium's
``SyncVectorEnv``: the step on which env i terminates or truncates returns its last observation; on the *next*
``step`` env i ignores its action and is reset (without a seed; its generator carries on), returning the new
scenario's first observation, reward 0.0, ``terminated = truncated = False`` and the reset info (``scenario_id``,
``kind``, ...) instead of step info. ``autoreset_mode="SameStep"`` and ``"Disabled"`` are supported too.

The observations are what each ``ToolEnv`` returns (a fresh ``messages`` list per step, message dicts and the
``tools`` list shared with the env): treat them as read-only, as with the single env. They are not deep-copied.

Gymnasium's ``AsyncVectorEnv`` keeps observations in shared memory by default, which holds only fixed-size
arrays; chat observations need ``vector_kwargs={"shared_memory": False}`` (or use :func:`make_async`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from gymnasium.vector.utils.shared_memory import create_shared_memory

from toolgym.env import ToolEnv
from toolgym.spaces import ChatObservation

__all__ = [
    "SharedMemoryError",
    "ToolVectorEnv",
    "batch_infos",
    "make_async",
    "make_vector_env",
]

_SCALAR_TYPES = (int, float, bool)


class ToolVectorEnv(VectorEnv):
    """``num_envs`` ToolEnvs stepped in a loop in this process (see the module docstring for the batch format).

    Args:
        env_fns: callables that each create one :class:`ToolEnv` (or a wrapper around one).
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (default), ``SAME_STEP`` or ``DISABLED`` (or their values).
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], ToolEnv]],
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
    ) -> None:
        super().__init__()
        self.envs: list[ToolEnv] = [fn() for fn in env_fns]
        if not self.envs:
            raise ValueError("ToolVectorEnv needs at least one env")
        self.num_envs = len(self.envs)
        self.autoreset_mode = (
            autoreset_mode if isinstance(autoreset_mode, AutoresetMode) else AutoresetMode(autoreset_mode)
        )
        first = self.envs[0]
        self.metadata = {**first.metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        for env in self.envs:
            if env.observation_space != self.single_observation_space or env.action_space != self.single_action_space:
                raise RuntimeError("all sub-environments must share one observation space and one action space")
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._observations: list[Any] = [None] * self.num_envs
        self._autoreset = [False] * self.num_envs

    # -- gymnasium API -----------------------------------------------------------------------------------
    @property
    def np_random_seed(self) -> tuple[int, ...]:
        return self.get_attr("np_random_seed")

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:
        return self.get_attr("np_random")

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
        """Reset the envs: ``seed=s`` seeds env i with ``s + i``; a list gives one seed per env.

        ``options["reset_mask"]`` (a bool array of shape ``(num_envs,)``) resets only those envs, as in
        Gymnasium; the other options are passed to every reset env.
        """
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"got {len(seeds)} seeds for num_envs={n}")
        mask = None
        if options is not None and "reset_mask" in options:
            options = dict(options)
            mask = options.pop("reset_mask")
            if not isinstance(mask, np.ndarray) or mask.shape != (n,) or mask.dtype != np.bool_:
                raise TypeError(f"options['reset_mask'] must be a bool numpy array of shape ({n},)")
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one env")
        items: list[tuple[int, dict[str, Any]]] = []
        obs = self._observations
        for i, env in enumerate(self.envs):
            if mask is not None and not mask[i]:
                continue
            obs[i], info = env.reset(seed=seeds[i], options=options)
            self._autoreset[i] = False
            items.append((i, info))
        return tuple(obs), batch_infos(items, n)

    def step(
        self, actions: Sequence[Any]
    ) -> tuple[tuple[dict[str, Any], ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env with its action (a sequence of ``num_envs`` actions); see the module docstring."""
        n = self.num_envs
        if isinstance(actions, (str, dict)) or len(actions) != n:
            raise ValueError(f"expected a sequence of {n} actions, one per env")
        mode = self.autoreset_mode
        obs = self._observations
        auto = self._autoreset
        rewards = [0.0] * n
        terms = [False] * n
        truncs = [False] * n
        items: list[tuple[int, dict[str, Any]]] = []
        if mode is AutoresetMode.NEXT_STEP:
            for i, env in enumerate(self.envs):
                if auto[i]:
                    obs[i], info = env.reset()
                    auto[i] = False
                else:
                    obs[i], rewards[i], te, tr, info = env.step(actions[i])
                    if te or tr:
                        terms[i] = te
                        truncs[i] = tr
                        auto[i] = True
                items.append((i, info))
        elif mode is AutoresetMode.SAME_STEP:
            for i, env in enumerate(self.envs):
                o, rewards[i], te, tr, info = env.step(actions[i])
                if te or tr:
                    terms[i] = te
                    truncs[i] = tr
                    items.append((i, {"final_obs": o, "final_info": info}))
                    o, info = env.reset()
                obs[i] = o
                items.append((i, info))
        elif mode is AutoresetMode.DISABLED:
            for i, env in enumerate(self.envs):
                if auto[i]:
                    raise RuntimeError(
                        f"env {i} is done and autoreset is disabled: reset it with options={{'reset_mask': ...}}"
                    )
                obs[i], rewards[i], te, tr, info = env.step(actions[i])
                if te or tr:
                    terms[i] = te
                    truncs[i] = tr
                    auto[i] = True
                items.append((i, info))
        else:  # pragma: no cover - AutoresetMode has three members
            raise ValueError(f"unexpected autoreset mode {mode}")
        return (
            tuple(obs),
            np.array(rewards, dtype=np.float64),
            np.array(terms, dtype=np.bool_),
            np.array(truncs, dtype=np.bool_),
            batch_infos(items, n),
        )

    def render(self) -> tuple[Any, ...]:
        return tuple(env.render() for env in self.envs)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method ``name`` of every env (or read attribute ``name``), like ``SyncVectorEnv.call``."""
        results = []
        for env in self.envs:
            attr = env.get_wrapper_attr(name)
            results.append(attr(*args, **kwargs) if callable(attr) else attr)
        return tuple(results)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return tuple(env.get_wrapper_attr(name) for env in self.envs)

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | Any) -> None:
        """Set attribute ``name`` of every env: one value each (list/tuple of ``num_envs``) or the same value."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"got {len(values)} values for num_envs={self.num_envs}")
        for env, value in zip(self.envs, values, strict=True):
            env.set_wrapper_attr(name, value)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()


# -- infos ---------------------------------------------------------------------------------------------------
def batch_infos(items: Iterable[tuple[int, dict[str, Any]]], num_envs: int) -> dict[str, Any]:
    """Batch ``(env index, info)`` pairs (in env order) into Gymnasium's vector info dict.

    Produces what calling ``VectorEnv._add_info`` once per pair gives (same keys, masks, dtypes and object
    arrays, ``final_obs`` as an object array), grouping by key first so each key costs a few array operations.
    """
    by_key: dict[str, tuple[list[int], list[Any]]] = {}
    for i, info in items:
        for key, value in info.items():
            group = by_key.get(key)
            if group is None:
                by_key[key] = ([i], [value])
            else:
                group[0].append(i)
                group[1].append(value)
    out: dict[str, Any] = {}
    all_true = np.ones(num_envs, dtype=np.bool_)
    for key, (idx, vals) in by_key.items():
        full = len(idx) == num_envs
        first = vals[0]
        kind = type(first)
        if key == "final_obs":
            array: Any = _object_array(idx, vals, num_envs)
        elif isinstance(first, dict):
            array = batch_infos(((i, v) for i, v in zip(idx, vals, strict=True) if isinstance(v, dict)), num_envs)
        elif kind in _SCALAR_TYPES or issubclass(kind, np.number):
            if full and all(type(v) is kind for v in vals):
                array = np.array(vals, dtype=kind)
            else:
                array = np.zeros(num_envs, dtype=kind)
                for i, value in zip(idx, vals, strict=True):
                    array[i] = value
        elif isinstance(first, np.ndarray):
            array = np.zeros((num_envs, *first.shape), dtype=first.dtype)
            for i, value in zip(idx, vals, strict=True):
                array[i] = value
        else:
            array = _object_array(idx, vals, num_envs)
        if full:
            mask = all_true.copy()
        else:
            mask = np.zeros(num_envs, dtype=np.bool_)
            mask[idx] = True
        out[key] = array
        out["_" + key] = mask
    return out


def _object_array(idx: list[int], vals: list[Any], num_envs: int) -> np.ndarray:
    array = np.full(num_envs, None, dtype=object)
    for i, value in zip(idx, vals, strict=True):
        array[i] = value
    return array


# -- construction --------------------------------------------------------------------------------------------
def make_vector_env(
    num_envs: int = 1,
    *,
    pack: str,
    autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
    **kwargs: Any,
) -> ToolVectorEnv:
    """``vector_entry_point`` of every ToolGym id: ``gym.make_vec(id, num_envs, **kwargs)`` lands here.

    ``kwargs`` are the env's (``kind``, ``distractors``, ``reward``, ``max_turns``, ...), as for ``gym.make``.
    """
    from toolgym.registry import make_env

    if num_envs < 1:
        raise ValueError("num_envs must be >= 1")
    return ToolVectorEnv([lambda: make_env(pack, **kwargs)] * num_envs, autoreset_mode=autoreset_mode)


def make_async(
    env_id: str, num_envs: int, *, vector_kwargs: dict[str, Any] | None = None, **kwargs: Any
) -> gym.vector.AsyncVectorEnv:
    """``gym.make_vec(env_id, num_envs, vectorization_mode="async")`` with ``shared_memory=False``.

    Equivalent to passing ``vector_kwargs={"shared_memory": False}`` yourself; ``vector_kwargs`` adds others
    (``context``, ``autoreset_mode``, ...).
    """
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="async",
        vector_kwargs={"shared_memory": False, **(vector_kwargs or {})},
        **kwargs,
    )


class SharedMemoryError(ValueError):
    """Async vector env asked to keep chat observations in shared memory (it holds only fixed-size arrays)."""


@create_shared_memory.register(ChatObservation)
def _no_shared_memory(space: ChatObservation, n: int = 1, ctx: Any = None) -> Any:
    # Not a CustomSpaceError: AsyncVectorEnv would replace this message with its generic one. Gymnasium gives no
    # way to default shared_memory per env id (an id's own vector_kwargs would override the caller's).
    raise SharedMemoryError(
        "ToolGym chat observations are variable-size and cannot live in shared memory: use "
        "gym.make_vec(id, num_envs, vectorization_mode='async', vector_kwargs={'shared_memory': False}) "
        "or toolgym.vector.make_async(id, num_envs)"
    )
