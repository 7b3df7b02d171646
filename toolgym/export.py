"""Exporting envs as datasets for SFT and RL trainers (Hugging Face ``datasets``, TRL, verl).

Three formats, each one JSONL file per (env, split, format), plus a parquet copy when ``pyarrow`` is installed:

* ``sft``: one row per episode, the gold trajectory as OpenAI-style ``messages`` (system, user, assistant turns
  with ``tool_calls``, ``tool`` messages, the final answer) and the offered ``tools``. TRL's ``SFTTrainer`` reads
  the ``messages`` and ``tools`` columns as they are.
* ``rl``: FTRL's turn-level prompts. For every gold episode, one row per assistant turn: the trajectory prefix
  before that turn (``prompt``), the reward metadata (``unsolved_set``, ``answer``, ``solve_rate``) and what
  ``reset(options={"prefix": ...})`` needs to restore the env there (``env_id``, ``env_kwargs``, ``seed``,
  ``prefix``). The columns also follow verl's RL convention (``data_source``, ``prompt``, ``ability``,
  ``reward_model``, ``extra_info``), and :func:`compute_score` is a verl ``custom_reward_function``.
* ``ftrl``: FTRL's own record format (``messages``, ``tools``, ``codes``, ``unsolved_set``, ``answer``,
  ``solve_rate``), only for scenarios whose tools keep no world state (FTRL's tools are stateless functions).

Call arguments are dicts by default (``arguments="json"`` writes OpenAI's JSON strings instead): the models' own
chat templates expect dicts (Qwen2.5 and gpt-oss render a string double-encoded, Qwen3.5 and GLM raise on it).
``tools_in_prompt`` says how an rl prompt carries its tools: ``template`` (the row's ``tools`` column, for the
model's chat template: TRL, toolgym's verl agent loop), ``hermes`` (listed in the system message as the eval
harness's text mode does, for rollouts that apply one global tool list, e.g. verl's stock agent loops; its length
then counts in verl's overlong-prompt filter) or ``none``. ``agent_name`` (rl only) adds verl's per-row
``agent_name`` column, which picks the agent loop of each row (e.g. ``toolgym_agent``; without it verl's
``default_agent_loop`` does), so toolgym rows can share a run with other datasets.

Arrow needs one type per column across rows. Chat columns (``messages``, ``prompt``) are stored with the
``datasets`` ``Json`` feature, one JSON value per message, so that every call keeps exactly its own arguments
(a struct column would give each call the union of all calls' argument keys, filled with None, which a chat
template renders as ``null`` arguments). Other columns whose nested JSON differs from row to row (tool parameter
schemas, the unsolved set, env kwargs, the prefix actions) are JSON strings. TRL decodes a string ``tools``
column itself; :func:`decode_row` decodes every JSON-string column for other consumers.

Exports are resumable and idempotent: rows are keyed by ``(env_id, split, seed)`` (and ``turn`` for ``rl``),
written one line at a time (append + flush), and a rerun with more episodes appends only the missing rows. A
truncated last line left by an interrupted run is dropped and rewritten.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from toolgym.env import ToolEnv
from toolgym.prompts import ARGUMENTS, TOOLS_IN_PROMPT, chat_arguments, n_multi_call_turns, render_prompt
from toolgym.registry import manifest_for, replay_registrations, runtime_registrations

FORMATS = ("sft", "rl", "ftrl")
ABILITY = "tool_use"
ENV_CLASS = "toolgym"  # SkyRL's env_class of rl rows (toolgym.integrations.skyrl registers it)
CHAT_COLUMNS = ("messages", "prompt")
JSON_COLUMNS = ("tools", "env_kwargs", "unsolved_set", "prefix", "codes", "ground_truth")


class ExportError(ValueError):
    """An export cannot proceed (no gold trajectory, mismatched options, a corrupt output file)."""


class RestoreError(RuntimeError):
    """A restored env does not match the exported row (the env or its code changed since the export)."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def env_kwargs_for(env_id: str, split: str | None = "train", **knobs: Any) -> dict[str, Any]:
    """The ``gym.make`` kwargs of an export: the knobs and the split for procedural packs and mixtures, nothing
    for any other env (a static pack's records, a suite's items or a τ-bench domain's tasks are what they are)."""
    manifest = manifest_for(env_id)
    if manifest["type"] not in ("procedural", "mixture"):
        if knobs:
            what = "a static pack" if manifest["type"] == "static" else f"a {manifest['type']} env"
            raise ExportError(f"{env_id} is {what}; it takes no generator options {sorted(knobs)}")
        return {}
    kwargs = {k: v for k, v in knobs.items() if v is not None}
    if split is not None:
        kwargs["split"] = split
    return kwargs


def output_path(out_dir: str | Path, env_id: str, split: str | None, fmt: str) -> Path:
    """``<out_dir>/<Name-vN>.<split>.<fmt>.jsonl``."""
    return Path(out_dir) / f"{env_id.split('/')[-1]}.{split or 'all'}.{fmt}.jsonl"


# -- gold episodes ------------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One assistant turn of a gold episode, with the state just before it."""

    index: int
    messages: list[dict[str, Any]]  # the chat before this turn (the prompt)
    unsolved_set: dict[str, list[str]]
    action: str | None  # the gold completion for this turn (None when the scenario has no gold calls)
    reward: float | None  # FTRL's reward of the gold action


@dataclass
class Episode:
    seed: int
    scenario_id: str
    kind: str
    tools: list[dict[str, Any]]
    answer: str
    solve_rate: float | None
    turns: list[Turn]
    messages: list[dict[str, Any]]  # the whole dialogue after the last gold turn
    complete: bool  # a gold trajectory was played to the end
    scenario: Any


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False))


def gold_episode(env: gym.Env, seed: int) -> Episode:
    """Reset ``env`` with ``seed`` and play the gold trajectory to the episode's end, recording the state before
    every turn.

    An env whose gold comes one user turn at a time (BFCL's multi-turn dialogues, whose next user message follows
    the reply that ends a turn) is asked for the next turn's gold actions until its episode ends. An env whose
    turn limit ends the episode once every gold call is made, before the closing reply (BFCL's single-turn
    categories: one assistant turn), gives the trajectory up to there. For scenarios without gold arguments
    (imported FTRL records) only the opening turn is recorded.
    """
    obs, info = env.reset(seed=seed)
    u: ToolEnv = env.unwrapped
    sc = u.scenario
    try:
        actions: list[str | None] = list(u.gold_actions())
        complete = True
    except ValueError:
        actions, complete = [None], False
    turns: list[Turn] = []
    while actions:
        action = actions.pop(0)
        turn = Turn(len(turns), _copy(obs["messages"]), u.tracker.unsolved_set(), action, None)
        turns.append(turn)
        if action is None:
            break
        obs, reward, terminated, truncated, _ = env.step(action)
        turn.reward = float(reward)
        if terminated or truncated:
            cut_before_reply = truncated and not terminated and len(actions) == 1  # only the closing reply left
            if actions and not cut_before_reply:
                raise ExportError(f"seed {seed}: the gold trajectory of {sc.id} ended early at turn {turn.index}")
            break
        if not actions:  # the episode goes on (the env's turn limit ends it at the latest): the next user turn's gold
            actions = list(u.gold_actions())
    return Episode(
        seed=seed,
        scenario_id=info["scenario_id"],
        kind=info["kind"],
        tools=_copy(sc.tools),
        answer=sc.answer,
        solve_rate=sc.metadata.get("solve_rate"),
        turns=turns,
        messages=_copy(obs["messages"]),
        complete=complete,
        scenario=sc,
    )


# -- rows ---------------------------------------------------------------------------------------------------


def sft_row(
    ep: Episode,
    env_id: str,
    split: str | None,
    env_kwargs: dict[str, Any],
    *,
    arguments: str = "dict",
    one_call_per_turn: bool = False,
    **_: Any,
) -> dict[str, Any]:
    if not ep.complete:
        raise ExportError(f"{env_id}: scenario {ep.scenario_id} has no gold calls, so no SFT trajectory")
    messages = list(ep.messages)
    while messages and messages[-1]["role"] != "assistant":
        # what follows the last gold turn is not trained on: a simulated user's stop message (τ-bench), or the
        # results of calls the episode ended on (BFCL's single turn)
        messages.pop()
    return {
        "messages": render_prompt(messages, ep.tools, "template", arguments, one_call_per_turn),
        "tools": _dumps(ep.tools),
        "arguments": arguments,
        "one_call_per_turn": one_call_per_turn,
        "n_multi_call_turns": n_multi_call_turns(messages),
        "env_id": env_id,
        "scenario_id": ep.scenario_id,
        "kind": ep.kind,
        "split": split,
        "seed": ep.seed,
        "env_kwargs": _dumps(env_kwargs),
        "answer": ep.answer,
        "n_turns": len(ep.turns),
    }


# What a row written before an option existed was exported with (it has no column for the option).
_OPTION_BEFORE_IT_WAS_WRITTEN = {"arguments": "json", "tools_in_prompt": "template", "agent_name": None}


def rl_rows(
    ep: Episode,
    env_id: str,
    split: str | None,
    env_kwargs: dict[str, Any],
    *,
    arguments: str = "dict",
    tools_in_prompt: str = "template",
    one_call_per_turn: bool = False,
    agent_name: str | None = None,
) -> Iterator[dict[str, Any]]:
    prefix: list[str] = []
    agent = {"agent_name": agent_name} if agent_name else {}
    for turn in ep.turns:
        unsolved = _dumps(turn.unsolved_set)
        restore = {"env_id": env_id, "env_kwargs": env_kwargs, "seed": ep.seed, "prefix": list(prefix)}
        ground_truth = _dumps({"unsolved_set": turn.unsolved_set, "answer": ep.answer, **restore})
        yield {
            # verl's RL dataset convention
            "data_source": env_id,
            "prompt": render_prompt(turn.messages, ep.tools, tools_in_prompt, arguments, one_call_per_turn),
            "ability": ABILITY,
            "reward_model": {"style": "rule", "ground_truth": ground_truth},
            # SkyRL's: the env class and the same ground truth
            "env_class": ENV_CLASS,
            "reward_spec": {"method": "rule", "ground_truth": ground_truth},
            "extra_info": {
                "index": 0,  # the row's position in the file, set when written
                "split": split,
                "env_id": env_id,
                "seed": ep.seed,
                "turn": turn.index,
                "scenario_id": ep.scenario_id,
                "tools_in_prompt": tools_in_prompt,
                "one_call_per_turn": one_call_per_turn,
            },
            # FTRL's turn-level record fields
            "tools": _dumps(ep.tools),
            "unsolved_set": unsolved,
            "answer": ep.answer,
            "solve_rate": ep.solve_rate,
            # how to restore the env at this prefix, and the gold continuation
            "env_id": env_id,
            "env_kwargs": _dumps(env_kwargs),
            "split": split,
            "seed": ep.seed,
            "turn": turn.index,
            "prefix": _dumps(prefix),
            "scenario_id": ep.scenario_id,
            "kind": ep.kind,
            "n_turns": len(ep.turns),
            "gold_response": turn.action,
            "gold_reward": turn.reward,
            "arguments": arguments,
            "tools_in_prompt": tools_in_prompt,
            "one_call_per_turn": one_call_per_turn,
            "n_multi_call_turns": n_multi_call_turns(turn.messages),
            **agent,  # verl's agent loop for this row
        }
        if turn.action is not None:
            prefix.append(turn.action)


def ftrl_rows(
    ep: Episode, env_id: str, split: str | None, env_kwargs: dict[str, Any], **_: Any
) -> Iterator[dict[str, Any]]:
    """FTRL records (JSON-string fields, as FTRL stores them), one per turn; stateless scenarios only."""
    sc = ep.scenario
    if sc.state:
        raise ExportError(
            f"{env_id}: scenario {sc.id} keeps world state, which FTRL's record format cannot carry; "
            "use --format rl (its rows restore the env, world included)"
        )
    sourceless = [n for n in sc.tool_names if n not in sc.source]
    if sourceless:
        raise ExportError(
            f"{env_id}: scenario {sc.id}'s tools {', '.join(sourceless[:3])}{', ...' if len(sourceless) > 3 else ''} "
            "have no code of their own (they are methods of the suite's classes), which FTRL's records need as "
            "stateless functions; use --format rl (its rows restore the env)"
        )
    for turn in ep.turns:
        yield {
            "messages": _dumps(turn.messages),
            "tools": _dumps(ep.tools),
            "codes": _dumps({n: sc.source[n] for n in sc.tool_names}),
            "unsolved_set": _dumps(turn.unsolved_set),
            "answer": ep.answer,
            "solve_rate": ep.solve_rate,
            "kind": ep.kind,
            "env_id": env_id,
            "split": split,
            "seed": ep.seed,
            "turn": turn.index,
            "n_turns": len(ep.turns),
        }


_ROWS = {"sft": lambda ep, *a, **kw: iter([sft_row(ep, *a, **kw)]), "rl": rl_rows, "ftrl": ftrl_rows}


def row_key(row: dict[str, Any]) -> tuple:
    """The identity of a row: (env_id, split, seed) and, for turn-level rows, the turn."""
    return (row["env_id"], row.get("split"), int(row["seed"]), int(row.get("turn", -1)))


# -- the output file ----------------------------------------------------------------------------------------


def read_rows(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The rows of an export JSONL.

    An unterminated last line (an interrupted write) or an unreadable last line is dropped, and with ``repair``
    cut off the file so appending continues on a clean line; an unreadable line elsewhere is an error.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]  # complete lines only
    rows: list[dict[str, Any]] = []
    good = 0
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                if lineno < len(lines):
                    raise ExportError(f"{path}:{lineno}: not a JSON row ({exc}); remove the line") from None
                break
        good += len(line) + 1
    if repair and good < len(data):
        with open(path, "r+b") as f:
            f.truncate(good)
    return rows


def write_parquet(jsonl_path: str | Path) -> Path | None:
    """Rewrite ``<name>.parquet`` beside the JSONL from all its rows (atomically); None without ``datasets``.

    Chat columns get the ``Json`` feature (see the module docstring), recorded in the file's schema metadata, so
    ``datasets.load_dataset("parquet", ...)`` gives back each message exactly as the JSONL holds it.
    """
    try:
        import datasets
        import pyarrow as pa
    except ImportError:
        return None
    jsonl_path = Path(jsonl_path)
    rows = read_rows(jsonl_path)
    out = jsonl_path.with_suffix(".parquet")
    tmp = out.with_suffix(".parquet.tmp")
    if not rows:
        return None
    chat = [c for c in CHAT_COLUMNS if c in rows[0] and isinstance(rows[0][c], list)]
    rest = pa.Table.from_pylist([{k: v for k, v in r.items() if k not in chat} for r in rows])
    features = datasets.Features.from_arrow_schema(rest.schema)
    for c in chat:
        features[c] = datasets.List(datasets.Json())
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp))
    os.replace(tmp, out)
    return out


@dataclass
class ExportResult:
    path: Path
    parquet: Path | None
    rows_written: int
    rows_total: int
    episodes: int
    multi_call_rows: int = 0  # rows with several-call turns, which one-call chat templates cannot render


def export(
    env_id: str,
    fmt: str,
    episodes: int,
    out_dir: str | Path = "exports",
    *,
    split: str | None = "train",
    seed: int = 0,
    parquet: bool = True,
    backend: str = "local",
    ray_address: str | None = None,
    num_workers: int | None = None,
    arguments: str = "dict",
    tools_in_prompt: str = "template",
    one_call_per_turn: bool = False,
    agent_name: str | None = None,
    **knobs: Any,
) -> ExportResult:
    """Export episodes ``seed .. seed+episodes-1`` of ``env_id`` in ``fmt``; appends only rows not yet written.

    ``arguments`` (``dict`` or ``json``), ``tools_in_prompt`` (``template``, ``hermes``, ``none``; rl only) and
    ``one_call_per_turn`` shape the chat columns of sft and rl rows, ``agent_name`` (rl only) names verl's agent
    loop per row (module docstring); a file keeps the options it was started with.
    ``ExportResult.multi_call_rows`` counts rows whose chat has several-call turns.

    ``backend="ray"`` generates the episodes on Ray worker actors (``ray_address``, else ``RAY_ADDRESS``, else a
    local Ray instance; ``num_workers`` actors, default the cluster's CPUs); this process writes their rows in
    the order episodes finish, with the same keys, so the file holds the same rows as a local export and resumes
    the same way (only ``extra_info.index``, a row's position in the file, follows the writing order).
    """
    if backend not in ("local", "ray"):
        raise ExportError(f"unknown backend {backend!r}; choose local or ray")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if episodes < 0:
        raise ExportError("episodes must be >= 0")
    if arguments not in ARGUMENTS:
        raise ExportError(f"unknown arguments form {arguments!r}; choose one of {', '.join(ARGUMENTS)}")
    if tools_in_prompt not in TOOLS_IN_PROMPT:
        raise ExportError(f"unknown tools_in_prompt {tools_in_prompt!r}; choose one of {', '.join(TOOLS_IN_PROMPT)}")
    if agent_name is not None and (not isinstance(agent_name, str) or not agent_name.strip()):
        raise ExportError(f"agent_name must be a non-empty string (a verl agent loop's name), got {agent_name!r}")
    if agent_name is not None and fmt != "rl":
        raise ExportError(f"agent_name is a column of rl rows (verl's agent loop per row), not of {fmt} rows")
    opts = {
        "sft": {"arguments": arguments, "one_call_per_turn": one_call_per_turn},
        "rl": {
            "arguments": arguments,
            "tools_in_prompt": tools_in_prompt,
            "one_call_per_turn": one_call_per_turn,
            "agent_name": agent_name,
        },
    }
    opts = opts.get(fmt, {})
    env_kwargs = env_kwargs_for(env_id, split, **knobs)
    path = output_path(out_dir, env_id, split, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = read_rows(path, repair=True)
    want = _dumps(env_kwargs)
    for row in existing:
        have = row.get("env_kwargs") if fmt != "ftrl" else want
        if row.get("env_id") != env_id or (have is not None and _as_json(have) != env_kwargs):
            raise ExportError(
                f"{path} holds rows of {row.get('env_id')} with env kwargs {have}, not {want}; "
                "export to another --out directory"
            )
        for key, value in opts.items():
            have = row.get(key, _OPTION_BEFORE_IT_WAS_WRITTEN.get(key, False))
            if have != value:
                raise ExportError(
                    f"{path} holds rows written with {key}={have!r}, not {value!r}; export to another --out directory"
                )
    done = {row_key(r) for r in existing}
    per_seed: dict[int, int] = {}
    for r in existing:
        per_seed[int(r["seed"])] = per_seed.get(int(r["seed"]), 0) + 1
    # an episode is complete when all its rows are there (sft: one row; rl/ftrl: one per turn)
    complete = {int(r["seed"]) for r in existing if per_seed[int(r["seed"])] >= (1 if fmt == "sft" else r["n_turns"])}
    todo = [s for s in range(seed, seed + episodes) if s not in complete]
    written = 0
    spec = (env_id, fmt, split, env_kwargs, opts)
    if backend == "ray":
        produced = _ray_episode_rows(spec, todo, ray_address, num_workers)
    else:
        produced = _local_episode_rows(spec, todo)
    try:
        with open(path, "a", encoding="utf-8") as f:
            for rows in produced:  # one episode's rows at a time, in the order episodes finish
                for row in rows:
                    key = row_key(row)
                    if key in done:
                        continue
                    if "extra_info" in row:
                        row["extra_info"]["index"] = len(done)
                    f.write(_dumps(row) + "\n")  # one write per row, then flush: a crash loses at most this row
                    f.flush()
                    done.add(key)
                    written += 1
    finally:
        produced.close()  # closes the env, or stops the Ray workers
        if path.exists() and path.stat().st_size == 0:
            path.unlink()  # nothing was written (e.g. the format does not fit the env): leave no empty file
    pq_path = write_parquet(path) if parquet else None
    multi = sum(1 for r in read_rows(path) if r.get("n_multi_call_turns") and not r.get("one_call_per_turn"))
    return ExportResult(path, pq_path, written, len(existing) + written, episodes, multi)


def episode_rows(
    env: gym.Env, env_id: str, fmt: str, split: str | None, env_kwargs: dict, seed: int, opts: dict | None = None
) -> list[dict]:
    """The rows of one gold episode (``extra_info.index`` is set by the writer); both backends call this.

    ``opts``: the row options of :func:`export` (``arguments``, ``tools_in_prompt``, ``one_call_per_turn``)."""
    return list(_ROWS[fmt](gold_episode(env, seed), env_id, split, env_kwargs, **(opts or {})))


def _local_episode_rows(spec: tuple, seeds: list[int]) -> Iterator[list[dict[str, Any]]]:
    env_id, _, _, env_kwargs, _ = spec
    env = gym.make(env_id, **env_kwargs)
    try:
        for s in seeds:
            yield episode_rows(env, *spec[:4], s, spec[4])
    finally:
        env.close()


def _ray_make_env(env_id: str, env_kwargs: dict[str, Any], registrations: tuple = ()) -> gym.Env:
    """A worker's env; ``registrations``: the driver's runtime registrations, which a worker does not have."""
    replay_registrations(registrations)
    return gym.make(env_id, **env_kwargs)


def _ray_rows(spec: tuple, env: gym.Env, seed: int) -> list[dict[str, Any]] | ExportError:
    try:
        return episode_rows(env, *spec[:4], seed, spec[4])
    except ExportError as exc:  # the data cannot be exported: returned (not raised) so it is not retried
        return exc


def _ray_episode_rows(
    spec: tuple, seeds: list[int], address: str | None, num_workers: int | None
) -> Iterator[list[dict[str, Any]]]:
    """Episodes generated by Ray worker actors (each owning one env), yielded as they finish."""
    import functools

    from toolgym import distributed

    if not seeds:
        return
    distributed.init(address)
    setup = functools.partial(_ray_make_env, spec[0], spec[3], runtime_registrations())
    results = distributed.map_unordered(functools.partial(_ray_rows, spec), seeds, setup=setup, num_workers=num_workers)
    try:
        for _, rows in results:
            if isinstance(rows, ExportError):
                raise rows
            yield rows
    finally:
        results.close()  # kills the workers, also when the writer stops early


# -- scoring a response through the env --------------------------------------------------------------------


def _strip_none(value: Any) -> Any:
    """Drop None-valued keys (Arrow fills keys a message lacks with None) so loaded rows compare to live ones."""
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A copy of an exported row with its JSON-string columns decoded and Arrow's None fillers removed."""
    out = _strip_none(dict(row))
    for key in JSON_COLUMNS:
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


_LOCAL = threading.local()  # one env cache per thread: trainers score a batch's rows concurrently


def _env(env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """The calling thread's cached env for (id, kwargs); no env is ever shared between threads."""
    envs: dict[str, gym.Env] | None = getattr(_LOCAL, "envs", None)
    if envs is None:
        envs = _LOCAL.envs = {}
    key = env_id + _dumps(sorted(env_kwargs.items()))
    env = envs.get(key)
    if env is None:
        if len(envs) >= 16:
            for old in envs.values():
                old.close()
            envs.clear()
        env = envs[key] = gym.make(env_id, **env_kwargs)
    return env


def prompt_matches(obs: dict[str, Any], row: dict[str, Any], prompt: Any = None) -> bool:
    """Whether the env's chat, shown as the row shows it (its tools_in_prompt and one_call_per_turn), is the row's
    prompt (or ``prompt``); arguments compare as dicts and Arrow's None fillers are ignored."""
    extra = row.get("extra_info") or {}
    mode = row.get("tools_in_prompt") or extra.get("tools_in_prompt") or "template"
    split = bool(row.get("one_call_per_turn", extra.get("one_call_per_turn", False)))
    want = chat_arguments(render_prompt(_strip_none(obs["messages"]), obs["tools"], mode, "dict", split), "dict")
    got = chat_arguments(_strip_none(list(row["prompt"] if prompt is None else prompt)), "dict")
    return want == got


def restore(row: dict[str, Any], *, check: bool = True) -> gym.Env:
    """An env restored at the row's prefix (cached per thread, env id and kwargs; safe to call from many threads).

    With ``check``, the restored chat must equal the row's ``prompt`` and its unsolved set the row's
    ``unsolved_set``; otherwise :class:`RestoreError` (the env or its code changed since the export).
    Accepts an ``rl`` row as written or as loaded by ``datasets`` (JSON-string columns, None fillers).
    """
    spec = row
    if "env_id" not in row and "extra_info" in row:  # a verl row trimmed to its own columns
        spec = {**_as_json(row["reward_model"]["ground_truth"]), **row}
    env_kwargs = _as_json(spec.get("env_kwargs") or {})
    prefix = _as_json(spec.get("prefix") or [])
    env = _env(spec["env_id"], env_kwargs)
    obs, info = env.reset(seed=int(spec["seed"]), options={"prefix": prefix})
    if check:
        if "prompt" in row and not prompt_matches(obs, row):
            raise RestoreError(f"{spec['env_id']} seed {spec['seed']}: restored messages differ from the row's prompt")
        unsolved = spec.get("unsolved_set")
        if unsolved is not None and info["unsolved_set"] != _strip_none(_as_json(unsolved)):
            raise RestoreError(
                f"{spec['env_id']} seed {spec['seed']}: restored unsolved_set {info['unsolved_set']} "
                f"differs from the row's {unsolved}"
            )
    return env


def score_response(row: dict[str, Any], response: Any, *, check: bool = True) -> tuple[float, dict[str, Any]]:
    """FTRL's reward of ``response`` (one assistant turn) at the row's prefix, stepped through the restored env.

    Returns ``(reward, info)`` with the step's ``reward_components`` (``reward_ftrl``, ``n_calls``,
    ``n_solved_now``, ``n_unsolved``, ...), ``feedback`` (the tool messages' texts), ``terminated`` and
    ``truncated``.
    """
    env = restore(row, check=check)
    _, reward, terminated, truncated, info = env.step(response)
    return float(reward), {**info, "terminated": terminated, "truncated": truncated}


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict[str, Any] | None = None, **_: Any
) -> dict[str, Any]:
    """verl ``custom_reward_function``: ``{"score": FTRL reward, **reward components}`` for one rl row."""
    spec = {**_as_json(ground_truth), "data_source": data_source}
    reward, info = score_response(spec, solution_str, check=True)
    return {"score": reward, **info["reward_components"]}
