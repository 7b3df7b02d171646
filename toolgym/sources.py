"""Scenario sources: where an env gets the scenario of each episode.

A *procedural* source calls a generator ``(rng, config) -> Scenario`` (infinite); a *static* source holds
a finite list. The env only sees this interface, so it never imports the pipeline that made the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from toolgym.scenario import Scenario


class ScenarioSource(Protocol):
    name: str

    def sample(self, rng: np.random.Generator) -> Scenario: ...


class ProceduralSource:
    """Draws a fresh scenario from ``generate(rng, config)`` on every reset.

    ``fresh``: each scenario is new and unshared, so the env plays its world in place instead of copying it
    (``env.scenario.state`` is then the live world of the episode).
    """

    fresh = True

    def __init__(self, name: str, generate: Callable[[np.random.Generator, Any], Scenario], config: Any):
        if hasattr(config, "validate"):
            config.validate()
        self.name = name
        self.generate = generate
        self.config = config

    def sample(self, rng: np.random.Generator) -> Scenario:
        return self.generate(rng, self.config)


class StaticSource:
    """A finite list of scenarios; ``sample`` picks one uniformly, ``get(i)`` a given one."""

    def __init__(self, name: str, scenarios: Sequence[Scenario]):
        if not scenarios:
            raise ValueError(f"static pack {name!r} holds no scenarios")
        self.name = name
        self.scenarios = list(scenarios)

    def __len__(self) -> int:
        return len(self.scenarios)

    def get(self, index: int) -> Scenario:
        return self.scenarios[index]

    def sample(self, rng: np.random.Generator) -> Scenario:
        return self.scenarios[int(rng.integers(len(self.scenarios)))]


class MixtureSource:
    """Samples a member source uniformly per episode, then draws that member's scenario (e.g. across domains)."""

    def __init__(self, name: str, members: Sequence[ScenarioSource]):
        if not members:
            raise ValueError(f"mixture {name!r} has no members")
        self.name = name
        self.members = list(members)
        self.fresh = all(getattr(m, "fresh", False) for m in self.members)

    def sample(self, rng: np.random.Generator) -> Scenario:
        return self.members[int(rng.integers(len(self.members)))].sample(rng)
