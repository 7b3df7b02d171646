"""A curriculum over the scaling knobs: the env moves to harder scenarios as the policy's Solve-F1 rises.

``gym.make(id, curriculum=Curriculum.per_knob({"hops": [2, 3, 4], "distractors": [0, 4, 8]}))`` starts every
knob at its first value. After each finished episode the wrapper adds the episode's Solve-F1 to a window of the
current stage; when the window is full and its mean reaches ``threshold``, the next ``reset`` draws from the next
stage (and the window starts over); with ``demote_below`` set, a full window whose mean falls below it moves one
stage back. ``info["curriculum"]`` reports the stage on every reset and step.

Why per env, also under ``make_vec``: every env keeps its own stage and window. A stage shared across the envs of
a vector env would depend on the order in which they finish episodes, which differs between sync, async and Ray
runs; per env, the same seeds and actions give the same stages everywhere. With n envs, each sees about 1/n of the
episodes, so a shared-speed schedule uses ``window // n``.

No randomness is involved: promotion is a function of the episodes played, and scenarios still come from the
env's ``np_random``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from toolgym.sources import ScenarioSource

__all__ = ["Curriculum", "CurriculumEnv", "CurriculumState"]


@dataclass(frozen=True)
class Curriculum:
    """Stages of knob values (easiest first) and the rule that moves between them.

    ``stages[i]`` maps knob names (``gym.make`` kwargs of the env: ``hops``, ``distractors``, ``kind``, ...) to
    their values at stage ``i``; knobs a stage leaves out keep the value given to ``gym.make``.
    """

    stages: tuple[Mapping[str, Any], ...]
    threshold: float = 0.8
    window: int = 50
    demote_below: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(dict(s) for s in self.stages))
        if not self.stages:
            raise ValueError("a curriculum needs at least one stage")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.demote_below is not None and not 0.0 <= self.demote_below < self.threshold:
            raise ValueError(f"demote_below must be in [0, threshold), got {self.demote_below}")

    @classmethod
    def per_knob(cls, levels: Mapping[str, Sequence[Any]], **rule: Any) -> Curriculum:
        """Levels per knob; each promotion raises the next knob, in the given order, that has a level left.

        ``per_knob({"hops": [2, 3], "distractors": [0, 4, 8]})`` gives the stages (2, 0), (3, 0), (3, 4), (3, 8).
        """
        if not levels or any(len(v) == 0 for v in levels.values()):
            raise ValueError("every knob needs at least one level")
        at = dict.fromkeys(levels, 0)
        stages = [{k: v[0] for k, v in levels.items()}]
        while any(at[k] < len(v) - 1 for k, v in levels.items()):
            for knob, values in levels.items():
                if at[knob] < len(values) - 1:
                    at[knob] += 1
                    stages.append({k: levels[k][i] for k, i in at.items()})
        return cls(tuple(stages), **rule)


class CurriculumState:
    """Where a curriculum stands: the stage and the window of its recent Solve-F1s (no env attached).

    :class:`CurriculumEnv` holds one per env. A trainer that needs one stage for all its envs (GRPO groups must
    replay the same scenario, so every env of a step must draw from the same stage) holds one itself, feeds it
    the episodes of each step and remakes its envs with :attr:`knobs` when :meth:`record` reports a move.
    """

    def __init__(self, curriculum: Curriculum):
        self.curriculum = curriculum
        self.stage = 0
        self.episodes_at_stage = 0
        self._scores: deque[float] = deque(maxlen=curriculum.window)

    @property
    def knobs(self) -> dict[str, Any]:
        """The knob values of the current stage."""
        return dict(self.curriculum.stages[self.stage])

    def info(self) -> dict[str, Any]:
        scores = self._scores
        return {
            "stage": self.stage,
            "moved": 0,
            "episodes_at_stage": self.episodes_at_stage,
            "rolling_solve_f1": sum(scores) / len(scores) if scores else float("nan"),
        }

    def record(self, solve_f1: float) -> int:
        """Add one finished episode; returns +1 (promoted), -1 (demoted) or 0."""
        self._scores.append(float(solve_f1))
        self.episodes_at_stage += 1
        if len(self._scores) < self.curriculum.window:
            return 0
        mean = sum(self._scores) / len(self._scores)
        last = len(self.curriculum.stages) - 1
        if mean >= self.curriculum.threshold and self.stage < last:
            return self._move(+1)
        if self.curriculum.demote_below is not None and mean < self.curriculum.demote_below and self.stage > 0:
            return self._move(-1)
        return 0

    def _move(self, by: int) -> int:
        self.stage += by
        self._scores.clear()
        self.episodes_at_stage = 0
        return by


class CurriculumEnv(gym.Wrapper):
    """A ToolEnv whose scenario source follows a :class:`Curriculum` (see the module docstring).

    ``make_source(knobs)`` builds the source of one stage (the registry passes the pack's own); sources are
    built once per stage and kept, so returning to a stage reuses its source and its reset cache.
    """

    def __init__(self, env: gym.Env, curriculum: Curriculum, make_source: Callable[[dict[str, Any]], ScenarioSource]):
        super().__init__(env)
        # Every stage's source is built now, so a bad knob at any stage fails at make time, not mid-run.
        self._sources = [make_source(dict(stage)) for stage in curriculum.stages]
        self.state = CurriculumState(curriculum)

    @property
    def stage(self) -> int:
        return self.state.stage

    @property
    def knobs(self) -> dict[str, Any]:
        return self.state.knobs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.env.unwrapped.source = self._sources[self.state.stage]
        obs, info = self.env.reset(seed=seed, options=options)
        info["curriculum"] = self.state.info()
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        played_at = self.state.stage
        episode = info.get("episode")
        moved = self.state.record(float(episode["solve_f1"])) if episode is not None else 0
        # ``stage`` is the stage this episode is played at; ``moved`` (+1 / -1 / 0) says where the next one will be.
        info["curriculum"] = {**self.state.info(), "stage": played_at, "moved": moved}
        return obs, reward, terminated, truncated, info
