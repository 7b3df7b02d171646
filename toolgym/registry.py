"""Wiring packs to Gymnasium ids: every manifest in ``envs_generated/`` becomes ``ToolGym/<Name>-v<N>``.

This is the one place that connects the env (which knows only scenario sources) to the generators of the
build pipeline, the static scenario files and the external suites (:mod:`toolgym.suites`). Registration happens
on ``import toolgym``; the generator module of a procedural pack, and a suite's data, are read only when its env
is made.

A manifest with an ``entry`` (``"module:function"``, called with its ``entry_args`` and the ``gym.make``
kwargs named in its ``options``) is an env of its own kind, not a ToolEnv over a scenario source: a
τ-bench-format domain (:func:`toolgym.suites.taubench.manifest`). A lower layer that registers such an id with
``gym.register`` puts its manifest in the spec's kwargs (``{"pack": id, "manifest": ...}``), so it needs no
import of this module; :func:`manifest_for` reads it from there.

Another process (a Ray worker) knows only the ids ``import toolgym`` registers: :func:`runtime_registrations`
lists the manifests this process registered beyond those (``--suite ftrl:PATH`` files, packs of
:func:`register_pack`, manifests carried in gym specs), and :func:`replay_registrations` registers them there.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import gymnasium as gym

from toolgym.curriculum import Curriculum, CurriculumEnv
from toolgym.env import ToolEnv
from toolgym.packs import ALL_PROCEDURAL, MANIFEST, PackError, load_scenarios, packs_dir, read_manifest, resolve_ref
from toolgym.sources import MixtureSource, ProceduralSource, StaticSource
from toolgym.suites import manifests as suite_manifests

NAMESPACE = "ToolGym"
# gym.make kwargs that go to the env rather than the scenario source: ToolEnv's keyword-only parameters.
ENV_KWARGS = tuple(
    name
    for name, p in inspect.signature(ToolEnv.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)
_MANIFESTS: dict[str, dict[str, Any]] = {}
# The manifests ``import toolgym`` registers (register_all's default): every process has these of its own, read
# from its own install, so only registrations beyond them need forwarding to another process.
_BUILTIN: dict[str, dict[str, Any]] = {}


@lru_cache(maxsize=64)
def _static_scenarios(path: str, fmt: str) -> tuple:
    return tuple(load_scenarios(path, fmt))


@lru_cache(maxsize=64)
def _suite_scenarios(loader: str, args_json: str) -> tuple:
    return tuple(resolve_ref(loader)(**json.loads(args_json)))


def make_source(manifest: dict[str, Any], **config_kwargs: Any):
    """The scenario source a manifest describes, with generator knobs from ``config_kwargs``."""
    if manifest["type"] == "procedural":
        generate = resolve_ref(manifest["generator"])
        if "domain" in manifest:  # a spec-based domain: one shared generator, told which domain to build
            generate = partial(generate, domain=resolve_ref(manifest["domain"]))
        config_cls = resolve_ref(manifest["config"])
        fields = {f.name for f in dataclasses.fields(config_cls)}
        unknown = set(config_kwargs) - fields
        if unknown:
            raise TypeError(f"{manifest['name']}: {_unknown_options(unknown, fields)}")
        config = config_cls(**{**manifest.get("defaults", {}), **config_kwargs})
        if "max_hops" in manifest and getattr(config, "hops", 0) > manifest["max_hops"]:
            raise ValueError(
                f"{manifest['name']}: hops={config.hops} exceeds its worlds' max_hops={manifest['max_hops']}"
            )
        return ProceduralSource(manifest["name"], generate, config)
    if manifest["type"] == "mixture":
        # Knobs pass to every member; each member must accept them (all procedural domains share kind/hops/...).
        members = [make_source(manifest_for(m), **config_kwargs) for m in manifest["members"]]
        return MixtureSource(manifest["name"], members)
    split = config_kwargs.pop("split", None)
    if config_kwargs:
        raise TypeError(
            f"{manifest['name']} is a static pack; it takes only split=, no generator options {sorted(config_kwargs)}"
        )
    if "loader" in manifest:  # an external suite's items, read from its installed data on first make
        args = json.dumps(manifest.get("loader_args", {}), sort_keys=True)
        scenarios = _suite_scenarios(manifest["loader"], args)
    else:
        scenarios = _static_scenarios(str(Path(manifest["_dir"]) / manifest["data"]), manifest.get("format", "toolgym"))
    if split is not None:
        kept = [s for s in scenarios if s.metadata.get("split") == split]
        if not kept:
            have = sorted({str(s.metadata.get("split")) for s in scenarios})
            raise ValueError(f"{manifest['name']}: no record has split={split!r} (the records' splits: {have})")
        scenarios = tuple(kept)
    return StaticSource(manifest["name"], scenarios)


def make_env(pack: str, manifest: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Gymnasium entry point for every registered pack (``manifest``: one carried in the spec's kwargs)."""
    manifest = manifest if manifest is not None else _MANIFESTS[pack]
    if "entry" in manifest:
        return _make_entry(manifest, kwargs)
    curriculum = kwargs.pop("curriculum", None)
    if "env" in manifest:  # a suite with its own env class (e.g. BFCL's multi-turn dialogues): kwargs go to it
        if curriculum is not None:
            raise TypeError(f"{pack} has no generator knobs to stage: it takes no curriculum")
        return resolve_ref(manifest["env"])(**manifest.get("env_args", {}), **kwargs)
    env_kwargs = {k: kwargs.pop(k) for k in ENV_KWARGS if k in kwargs}
    env_kwargs.setdefault("max_turns", manifest.get("max_turns", 20))
    if "turn_scorer" in manifest:  # a suite's own score of each turn, added to the reward components
        env_kwargs["turn_scorer"] = resolve_ref(manifest["turn_scorer"])
    if curriculum is None:
        return ToolEnv(make_source(manifest, **kwargs), **env_kwargs)
    if not isinstance(curriculum, Curriculum):
        raise TypeError(f"curriculum must be a toolgym.Curriculum, got {type(curriculum).__name__}")
    stage_source = partial(_stage_source, manifest, kwargs)
    return CurriculumEnv(ToolEnv(stage_source(curriculum.stages[0]), **env_kwargs), curriculum, stage_source)


def _make_entry(manifest: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    """The env of a manifest with its own ``entry``: the kwargs it names in ``options``, nothing else."""
    options = set(manifest.get("options", ()))
    unknown = set(kwargs) - options
    if unknown:
        hints = [
            f"{k} (did you mean {c[0]}?)" if (c := difflib.get_close_matches(k, options, n=1)) else k for k in unknown
        ]
        raise TypeError(
            f"{manifest['name']}: unknown option(s) {', '.join(sorted(hints))}; options are {sorted(options)}"
        )
    if "max_turns" in manifest and "max_turns" in options:
        kwargs.setdefault("max_turns", manifest["max_turns"])
    return resolve_ref(manifest["entry"])(**manifest.get("entry_args", {}), **kwargs)


def _stage_source(manifest: dict[str, Any], kwargs: dict[str, Any], knobs: dict[str, Any]):
    """The source of one curriculum stage: the stage's knobs over the ones given to ``gym.make``."""
    return make_source(manifest, **{**kwargs, **knobs})


def env_id(manifest: dict[str, Any]) -> str:
    return f"{NAMESPACE}/{manifest['name']}-v{manifest['version']}"


def register_pack(path: str | Path) -> str:
    """Register the pack whose manifest is at ``path`` (a file or its folder); returns its env id."""
    path = Path(path)
    path = path / MANIFEST if path.is_dir() else path
    manifest = read_manifest(path)
    if manifest["type"] == "mixture" and manifest["members"] == ALL_PROCEDURAL:
        manifest = {**manifest, "members": procedural_ids(path.parent.parent)}
    return register_manifest(manifest)


def register_manifest(manifest: dict[str, Any]) -> str:
    """Register an already checked manifest (a pack's, or a suite's from :mod:`toolgym.suites`); returns its id."""
    eid = env_id(manifest)
    _MANIFESTS[eid] = manifest
    if eid in gym.registry:
        del gym.registry[eid]
    gym.register(
        id=eid,
        entry_point="toolgym.registry:make_env",
        vector_entry_point="toolgym.vector:make_vector_env",
        kwargs={"pack": eid},
    )
    return eid


# AsyncVectorEnv's own options: make_vec hands any kwarg it does not know to each env, so these land here.
_VECTOR_OPTIONS = ("shared_memory", "copy", "context", "daemon", "observation_mode", "autoreset_mode")


def _unknown_options(unknown: set[str], fields: set[str]) -> str:
    """The message for options neither the env nor the generator takes: what to pass instead, if we can tell."""
    vector = sorted(unknown & set(_VECTOR_OPTIONS))
    if vector:
        return (
            f"{', '.join(vector)} is an option of the vector env, not of each env: pass "
            f"vector_kwargs={{{', '.join(f'{k!r}: ...' for k in vector)}}} to gym.make_vec "
            "(for async mode toolgym.vector.make_async(id, num_envs) sets shared_memory=False)"
        )
    known = [*ENV_KWARGS, *sorted(fields)]
    hints = [f"{k} (did you mean {c[0]}?)" if (c := difflib.get_close_matches(k, known, n=1)) else k for k in unknown]
    return (
        f"unknown option(s) {', '.join(sorted(hints))}; "
        f"env options are {list(ENV_KWARGS)}, generator options are {sorted(fields)}"
    )


def env_options(env_id: str) -> frozenset[str]:
    """The ``gym.make`` kwargs ``env_id`` takes: the env's options, and for a procedural pack or a mixture its
    generator knobs too (``split`` for a static pack); unknown ids raise as :func:`manifest_for` does."""
    manifest = manifest_for(env_id)
    if "entry" in manifest:
        return frozenset(manifest.get("options", ()))
    return frozenset(ENV_KWARGS) | {"curriculum"} | _knob_names(manifest)


def generator_knobs(env_id: str) -> tuple[str, ...]:
    """The generator knobs ``env_id`` takes, sorted, read from the code: a procedural pack's config fields, the
    ones every member of a mixture takes, ``split`` for a static pack; none for an env of its own kind."""
    manifest = manifest_for(env_id)
    return () if "entry" in manifest else tuple(sorted(_knob_names(manifest)))


def _knob_names(manifest: dict[str, Any]) -> frozenset[str]:
    if manifest["type"] == "procedural":
        return frozenset(f.name for f in dataclasses.fields(resolve_ref(manifest["config"])))
    if manifest["type"] == "mixture":  # a knob goes to every member, so each must take it
        members = [_knob_names(manifest_for(m)) for m in manifest["members"]]
        return frozenset.intersection(*members) if members else frozenset()
    return frozenset({"split"})


def kwargs_for(env_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The part of ``kwargs`` that ``env_id`` takes (:func:`env_options`): how one set of env kwargs (an eval's
    knobs, a τ-bench user) is handed to several envs of different kinds."""
    options = env_options(env_id)
    return {k: v for k, v in kwargs.items() if k in options}


SUITE_SPECS = ("bfcl", "ftrl:PATH", "taubench:PATH")


def suite_env_ids(spec: str) -> list[str]:
    """The env ids a ``toolgym eval --suite`` spec names, registering what a path holds.

    ``bfcl``: every BFCL category whose data is installed; ``ftrl:PATH``: a folder with a ``manifest.json`` or
    a file of FTRL records (``.jsonl`` / ``.json``), registered as a static pack named after it;
    ``taubench:PATH``: a τ-bench-format domain folder (its tasks play against the scripted user, who states the
    instruction and ends after the agent's first reply, unless the env kwargs name another ``user``).
    """
    name, _, arg = spec.partition(":")
    if name == "bfcl" and not arg:
        ids = sorted(e for e in _MANIFESTS if e.startswith(f"{NAMESPACE}/BFCL-"))
        if not ids:
            raise ValueError("BFCL's data is not installed: run `bash .ci/suites_setup.sh` (bfcl-eval, --no-deps)")
        return ids
    if name == "ftrl" and arg:
        path = Path(arg)
        if path.is_dir():
            return [register_pack(path)]
        if not path.is_file():
            raise ValueError(f"ftrl:{arg}: no such file or folder")
        manifest = {
            "name": "FTRL-" + "".join(c if c.isalnum() else "-" for c in path.stem),
            "version": 0,
            "type": "static",
            "format": "ftrl",
            "data": path.name,
            "_dir": str(path.resolve().parent),
        }
        return [register_manifest(manifest)]
    if name == "taubench" and arg:
        from toolgym.suites import taubench

        return [taubench.register(arg)]
    raise ValueError(f"unknown suite {spec!r}; suites are {', '.join(SUITE_SPECS)}")


def procedural_ids(root: Path) -> list[str]:
    """Env ids of the procedural packs under ``root``, sorted: what a mixture with ``"members": "*"`` draws from.

    A new domain's pack joins such a mixture without an edit to the mixture's manifest.
    """
    manifests = (read_manifest(p) for p in root.glob(f"*/{MANIFEST}"))
    return sorted(env_id(m) for m in manifests if m["type"] == "procedural")


def register_all(root: Path | None = None) -> list[str]:
    """Register every pack under ``root`` (default: the shipped ``envs_generated``)."""
    default = root is None
    root = root or packs_dir()
    ids = []
    for manifest in sorted(root.glob(f"*/{MANIFEST}")):
        ids.append(register_pack(manifest))
    if default:  # external suites whose data is installed (file checks only; their data loads on gym.make)
        ids.extend(register_manifest(m) for m in suite_manifests())
        _BUILTIN.update((eid, _MANIFESTS[eid]) for eid in ids)
    return ids


def runtime_registrations() -> tuple[dict[str, Any], ...]:
    """The manifests this process registered beyond what ``import toolgym`` registers, in registration order.

    These are the ids a fresh process (a Ray worker) does not know: packs registered with :func:`register_pack`
    or :func:`register_manifest` (``--suite ftrl:PATH``, a pack built elsewhere, a re-registered shipped pack),
    and manifests carried in gym specs by a lower layer (``--suite taubench:PATH``). Manifests are plain data
    (refs and paths, no loaded scenarios), so the tuple pickles small; :func:`replay_registrations` registers it
    in the other process. Paths in them must be readable there too (on a cluster: a shared filesystem).
    """
    own = [m for eid, m in _MANIFESTS.items() if _BUILTIN.get(eid) != m]
    carried = [m for eid, spec in gym.registry.items() if eid not in _MANIFESTS and (m := _carried(spec)) is not None]
    return (*own, *carried)


def replay_registrations(manifests: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[str]:
    """Register the manifests of another process's :func:`runtime_registrations` here; returns their ids.

    Nothing is read from disk (each manifest was checked where it was first registered; its data loads on
    ``gym.make`` as usual), and replaying the same manifests again changes nothing."""
    return [register_manifest(m) for m in manifests]


def registered_ids() -> list[str]:
    """Every ToolGym id: the packs' and suites' manifests, and the manifests carried in gym specs."""
    carried = (eid for eid, spec in gym.registry.items() if _carried(spec) is not None)
    return sorted({*_MANIFESTS, *carried})


def _carried(spec: Any) -> dict[str, Any] | None:
    """The manifest a gym spec carries in its kwargs (an id a lower layer registered), else None."""
    if spec.entry_point != "toolgym.registry:make_env":
        return None
    manifest = spec.kwargs.get("manifest")
    return manifest if isinstance(manifest, dict) else None


def takes_knobs(env_id: str) -> bool:
    """Whether ``env_id`` takes generator knobs (a procedural pack or a mixture); unknown ids raise as
    :func:`manifest_for` does."""
    return manifest_for(env_id)["type"] in ("procedural", "mixture")


def manifest_for(env_id: str) -> dict[str, Any]:
    if env_id in _MANIFESTS:
        return _MANIFESTS[env_id]
    carried = _carried(gym.registry[env_id]) if env_id in gym.registry else None
    if carried is None:
        close = difflib.get_close_matches(env_id, registered_ids(), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise PackError(env_id, "id", f"not a registered toolgym env; {hint}known: {', '.join(registered_ids())}")
    return carried
