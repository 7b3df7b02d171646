"""The procedural backend's entry points: what a manifest names, and how a domain module becomes a pack.

A spec-based domain is one module under ``toolgym/build/domains/`` that defines ``DOMAIN`` (a
:class:`~toolgym.build.spec.Domain`); nothing else. Its pack manifest (written by ``toolgym build``) names this
module's :func:`generate`, the :class:`~toolgym.build.pipeline.BuildConfig` and the domain::

    {"generator": "toolgym.build.procedural:generate",
     "config": "toolgym.build.pipeline:BuildConfig",
     "domain": "toolgym.build.domains.hotel_booking:DOMAIN", ...}

and the registry calls ``generate(rng, config, domain=DOMAIN)``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import numpy as np

from toolgym.build import pipeline
from toolgym.build.pipeline import BuildConfig, BuildStats
from toolgym.build.spec import Domain
from toolgym.scenario import KINDS, Scenario

GENERATOR_REF = "toolgym.build.procedural:generate"
CONFIG_REF = "toolgym.build.pipeline:BuildConfig"
DOMAINS_PACKAGE = "toolgym.build.domains"
KNOBS = (
    "kind",
    "hops",
    "parallel",
    "distractors",
    "integrate",
    "generalize",
    "expand",
    "type_generalize",
    "write_share",
    "split",
)


def resolve_domain(domain: Domain | str) -> Domain:
    """A Domain, or the Domain named by ``"module:ATTR"`` / a module path (``ATTR`` defaults to ``DOMAIN``)."""
    if isinstance(domain, Domain):
        return domain
    module, _, attr = domain.partition(":")
    found = getattr(importlib.import_module(module), attr or "DOMAIN", None)
    if not isinstance(found, Domain):
        raise TypeError(f"{domain!r} does not name a toolgym.build.spec.Domain")
    return found


def generate(
    rng: np.random.Generator, config: BuildConfig, domain: Domain | str, stats: BuildStats | None = None
) -> Scenario:
    """The generator every spec-based pack registers: one verified scenario of ``domain``."""
    return pipeline.generate(rng, config, resolve_domain(domain), stats)


def rebuild(metadata: dict[str, Any], domain: Domain | str | None = None) -> Scenario:
    """The scenario a record's metadata describes (its seed, config and domain), rebuilt exactly."""
    ref = domain if domain is not None else metadata.get("domain_ref")
    if ref is None:
        raise ValueError("metadata has no domain_ref; pass the domain")
    got = pipeline.build(int(metadata["seed"]), BuildConfig.from_dict(metadata["config"]), resolve_domain(ref))
    if got is None:  # pragma: no cover - a recorded seed built a verified scenario once
        raise RuntimeError("the recorded seed no longer yields a verified scenario (pipeline changed?)")
    return got  # type: ignore[return-value]


def find_domains() -> dict[str, str]:
    """Module name -> ``"module:DOMAIN"`` for every module under ``toolgym/build/domains`` that defines DOMAIN."""
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
        "knobs": list(KNOBS),
        "max_turns": 20,
    }
    if max_hops is not None:
        out["max_hops"] = max_hops
    return out
