"""The five-stage pipeline (procedural backend): a domain spec and a seed become a verified Scenario.

``decompose -> document -> integrate -> scale -> deploy (+ verify)``; every stage's output is a dataclass with
``to_dict``/``from_dict``, so :func:`build` with ``keep_stages=True`` returns them all for inspection
(``toolgym build --save-stages DIR`` writes them as JSON).

Determinism and rebuilding: :func:`generate` draws one 63-bit seed per attempt from the caller's numpy
``Generator``; an attempt builds the world with a numpy ``Generator`` whose PCG64 state is set from the seed
(:func:`world_rng`, ten times cheaper than ``default_rng``) and makes every other choice with
``random.Random(seed)``. The seed, the config and the domain are recorded in ``Scenario.metadata``, so
``rebuild(scenario.metadata)`` reproduces the scenario exactly.

Pack manifests of spec-based domains name this module's :func:`generate` and :class:`BuildConfig` plus the
domain (a module under ``toolgym/construct/domains/`` that defines ``DOMAIN``)::

    {"generator": "toolgym.construct.pipeline:generate",
     "config": "toolgym.construct.pipeline:BuildConfig",
     "domain": "toolgym.construct.domains.hotel_booking:DOMAIN", ...}

and the registry calls ``generate(rng, config, domain=DOMAIN)``.

Train/test split (``BuildConfig.split``): see :mod:`toolgym.construct.decompose`. Each chain of a scenario has the
key ``"<domain>|<chain signature>|<starting record id>"``, and a ``"train"`` or ``"test"`` scenario uses only
keys in that split (:data:`toolgym.splits.CHAIN_KEYS`). The two sets of keys are disjoint by construction,
hence so are the scenarios (a scenario's id hashes its keys).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import random
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from toolgym.construct.decompose import Decomposition, decompose, domain_info
from toolgym.construct.deploy import deploy, verify
from toolgym.construct.document import Documents, document
from toolgym.construct.integrate import Integrated, integrate
from toolgym.construct.scale import LEVELS, MAX_DISTRACTORS, Scaled, scale
from toolgym.construct.spec import Domain
from toolgym.packs import current_ref
from toolgym.scenario import EXTRA_KINDS, KINDS, KindKnobs, Scenario

MAX_ATTEMPTS = 200
VERIFY_MODES = ("fast", "full")
PIPELINE = "procedural"
GENERATOR_REF = "toolgym.construct.pipeline:generate"
CONFIG_REF = "toolgym.construct.pipeline:BuildConfig"
DOMAINS_PACKAGE = "toolgym.construct.domains"


@dataclass
class BuildConfig(KindKnobs):
    """Knobs of the procedural pipeline (all are ``gym.make`` kwargs of a spec-based env).

    ``kind=None`` draws one of ``kinds`` per scenario: by default FTRL's four (:data:`~toolgym.scenario.KINDS`);
    ``kinds`` lists the mix to draw from instead, which may hold the extra kinds ``irrelevance`` and
    ``missing_info`` (:data:`~toolgym.scenario.EXTRA_KINDS`; ``kinds=ALL_KINDS`` mixes all six). An env whose
    ``kind`` or ``kinds`` names an extra kind offers ``ask_user`` in every scenario, so that offering it tells
    nothing; with the default mix no scenario changes. ``hops``: calls per chain of multi-hop kinds;
    ``parallel``: chains of parallel kinds; ``distractors``: extra tools offered; ``integrate``: merge the narrow
    reads of an entity into ``get_<entity>``; ``generalize``/``expand``/``type_generalize``: FTRL's complexity
    scaling levels (0 = off, see :mod:`toolgym.construct.scale`); ``write_share``: probability that a multi-hop
    scenario ends one chain with an update; ``split``: ``None``, ``"train"`` or ``"test"`` (disjoint).
    """

    kind: str | None = None
    hops: int = 2
    parallel: int = 2
    distractors: int = 3
    integrate: bool = True
    generalize: int = 0
    expand: int = 0
    type_generalize: int = 0
    write_share: float = 0.33
    split: str | None = None
    kinds: tuple[str, ...] | None = None
    verify: str = "fast"

    def validate(self) -> None:
        self.check_kinds_and_split()
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {list(VERIFY_MODES)}, got {self.verify!r}")
        bounds = {"hops": (2, 4), "parallel": (2, 4), "distractors": (0, MAX_DISTRACTORS)}
        bounds.update({k: (0, v) for k, v in LEVELS.items()})
        for name, (lo, hi) in bounds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
        if not isinstance(self.integrate, bool):
            raise ValueError(f"integrate must be True or False, got {self.integrate!r}")
        w = self.write_share
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
            raise ValueError(f"write_share must be a number in [0, 1], got {w!r}")

    def to_dict(self) -> dict[str, Any]:
        """Every knob; ``kinds`` only when set and ``verify`` only when full, so that scenarios of the default
        mix record what they always did."""
        out = {f: getattr(self, f) for f in _FIELDS}
        if out["verify"] == "fast":
            del out["verify"]
        if out["kinds"] is None:
            del out["kinds"]
        else:
            out["kinds"] = list(out["kinds"])
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


_FIELDS = tuple(f.name for f in fields(BuildConfig))
KNOBS = _FIELDS  # every BuildConfig field is a gym.make kwarg of a spec-based env


@dataclass
class BuildStats:
    """Outcome counts of build attempts: ``ok`` plus one count per discard reason."""

    counts: Counter = field(default_factory=Counter)

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1

    @property
    def attempts(self) -> int:
        return sum(self.counts.values())

    def discarded(self) -> dict[str, int]:
        return {k: v for k, v in sorted(self.counts.items()) if k != "ok"}


@dataclass
class Stages:
    """Every stage output of one scenario."""

    seed: int
    decomposition: Decomposition
    documents: Documents
    integrated: Integrated
    scaled: Scaled
    scenario: Scenario

    FILES = ("decomposition", "documents", "integrated", "scaled", "scenario")

    def save(self, folder: str | Path) -> list[Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in self.FILES:
            path = folder / f"{name}.json"
            path.write_text(json.dumps(getattr(self, name).to_dict(), indent=2, ensure_ascii=False) + "\n")
            paths.append(path)
        return paths


_M64 = (1 << 64) - 1
_LOCAL = threading.local()


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a bijection of 64-bit ints that scatters nearby seeds."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def world_rng(seed: int) -> np.random.Generator:
    """The numpy Generator a world is drawn from: PCG64 with state and stream set from ``seed``.

    One Generator per thread is re-seeded in place (setting the state costs ~3 us, ``default_rng`` ~25 us).
    """
    gen = getattr(_LOCAL, "gen", None)
    if gen is None:
        gen = _LOCAL.gen = np.random.Generator(np.random.PCG64(0))
    a, b = _mix64(seed), _mix64(seed ^ 0x5DEECE66D)
    gen.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (a << 64) | b, "inc": (((b << 64) | a) << 1 | 1) & ((1 << 128) - 1)},
        "has_uint32": 0,
        "uinteger": 0,
    }
    return gen


_REFS: dict[int, tuple[Domain, str | None]] = {}


def domain_ref(domain: Domain) -> str | None:
    """``"module:DOMAIN"`` when the domain is the ``DOMAIN`` of the module defining its world function."""
    got = _REFS.get(id(domain))
    if got is None or got[0] is not domain:
        got = _REFS[id(domain)] = (domain, _find_ref(domain))
    return got[1]


def _find_ref(domain: Domain) -> str | None:
    module = getattr(domain.world, "__module__", None)
    mod = sys.modules.get(module or "")
    return f"{module}:DOMAIN" if mod is not None and getattr(mod, "DOMAIN", None) is domain else None


def build(
    seed: int,
    config: BuildConfig,
    domain: Domain,
    stats: BuildStats | None = None,
    *,
    keep_stages: bool = False,
) -> Scenario | Stages | None:
    """One attempt from ``seed``: the verified Scenario (or all stages), or None if it was discarded."""
    r = random.Random(seed)
    state = domain.world(world_rng(seed))
    mix = config.mix
    kind = config.kind if config.kind is not None else mix[r.randrange(len(mix))]
    dec = decompose(domain, state, r, kind, config.hops, config.parallel, config.write_share, config.split)
    if dec is None:
        if stats is not None:
            stats.add("no_fitting_records")
        return None
    docs = document(domain, dec)
    merged = integrate(domain, dec, docs, config.integrate)
    scaled = scale(
        domain,
        dec,
        merged,
        r,
        generalize_level=config.generalize,
        expand_level=config.expand,
        type_level=config.type_generalize,
        distractors=config.distractors,
        ask_user=config.offers_ask_user,
    )
    metadata = {
        "domain": domain.name,
        "domain_ref": domain_ref(domain),
        "version": domain.version,
        "pipeline": PIPELINE,
        "seed": seed,
        "kind": kind,
        "config": config.to_dict(),
        "split": config.split,
        "split_keys": dec.split_keys,
        "chains": dec.chains,
    }
    scenario = deploy(dec, scaled, state, metadata)
    reason = verify(scenario, dec, scaled, domain_info(domain).tables, r, full=config.verify == "full")
    if stats is not None:
        stats.add(reason or "ok")
    if reason is not None:
        return None
    if keep_stages:
        return Stages(seed, dec, docs, merged, scaled, scenario)
    return scenario


def generate(
    rng: np.random.Generator, config: BuildConfig, domain: Domain | str, stats: BuildStats | None = None
) -> Scenario:
    """One verified scenario of ``domain``, drawn from ``rng`` (same rng state -> identical scenario).

    The generator every spec-based pack registers; ``domain`` may be a ref (see :func:`resolve_domain`).
    """
    domain = resolve_domain(domain)
    config.validate()
    local = stats if stats is not None else BuildStats()
    for _ in range(MAX_ATTEMPTS):
        seed = int(rng.integers(0, 2**63 - 1))
        got = build(seed, config, domain, local)
        if got is not None:
            return got  # type: ignore[return-value]
    raise RuntimeError(
        f"{domain.name}: no verified scenario in {MAX_ATTEMPTS} attempts with {config} "
        f"(discarded: {local.discarded()}); this domain may not support these knobs (e.g. hops)"
    )


def resolve_domain(domain: Domain | str) -> Domain:
    """A Domain, or the Domain named by ``"module:ATTR"`` / a module path (``ATTR`` defaults to ``DOMAIN``)."""
    if isinstance(domain, Domain):
        return domain
    module, _, attr = current_ref(domain).partition(":")
    found = getattr(importlib.import_module(module), attr or "DOMAIN", None)
    if not isinstance(found, Domain):
        raise TypeError(f"{domain!r} does not name a toolgym.construct.spec.Domain")
    return found


def rebuild(metadata: dict[str, Any], domain: Domain | str | None = None) -> Scenario:
    """The scenario a record's metadata describes (its seed, config and domain), rebuilt exactly."""
    ref = domain if domain is not None else metadata.get("domain_ref")
    if ref is None:
        raise ValueError("metadata has no domain_ref; pass the domain")
    got = build(int(metadata["seed"]), BuildConfig.from_dict(metadata["config"]), resolve_domain(ref))
    if got is None:  # pragma: no cover - a recorded seed built a verified scenario once
        raise RuntimeError("the recorded seed no longer yields a verified scenario (pipeline changed?)")
    return got  # type: ignore[return-value]


def find_domains() -> dict[str, str]:
    """Module name -> ``"module:DOMAIN"`` for every module under ``toolgym/construct/domains`` that defines DOMAIN."""
    package = importlib.import_module(DOMAINS_PACKAGE)
    out = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        name = f"{DOMAINS_PACKAGE}.{info.name}"
        if isinstance(getattr(importlib.import_module(name), "DOMAIN", None), Domain):
            out[info.name] = f"{name}:DOMAIN"
    return out


def manifest(
    domain: Domain, ref: str, defaults: dict[str, Any] | None = None, max_hops: int | None = None
) -> dict[str, Any]:
    """The pack manifest of a spec-based domain (what ``toolgym build`` writes).

    ``max_hops`` (found by ``toolgym build``) is the longest chain the domain's worlds support; larger
    ``hops`` make ``generate`` raise after its attempts run out.
    """
    out = {
        "name": domain.name,
        "version": domain.version,
        "type": "procedural",
        "generator": GENERATOR_REF,
        "config": CONFIG_REF,
        "domain": ref,
        "description": domain.description,
        "defaults": dict(defaults or {}),
        "kinds": list(KINDS),
        "extra_kinds": list(EXTRA_KINDS),
        "knobs": list(KNOBS),
        "max_turns": 20,
    }
    if max_hops is not None:
        out["max_hops"] = max_hops
    return out
