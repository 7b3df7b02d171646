"""Shared pieces of the trainers: envs, rollouts, evaluation, the advantage maths, logging and checkpoints.

A *policy* here is anything with the small interface both :class:`~toolgym_rl.small_policy.SmallPolicy` and
:class:`~toolgym_rl.hf_policy.HFPolicy` implement:

* ``act(observations, greedy=False) -> (texts, actions, logp)``: one assistant turn per observation, as the text
  the env parses, the policy's own record of the choice, and its per-token log-probs ``[B, L]``;
* ``log_probs(observations, actions) -> (logp, entropy, mask)``: the same ``[B, L]`` matrices with gradients
  (a "token" is a sub-word for a language model and one factorised decision for the small policy);
* ``parse_action(observation, text)``: the action that produces ``text`` (for warm starts on gold turns);
* ``reference()``: a frozen copy for the KL term; ``parameters()``, ``train()``, ``save(path)``.

torch is imported inside the functions that need it, so the env helpers stay light.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import toolgym  # registers the ToolGym/ ids


# ----------------------------------------------------------------------------------------------- envs
def env_kwargs(env_id: str, split: str | None, **kwargs: Any) -> dict[str, Any]:
    """``gym.make`` kwargs for ``env_id``: ``split`` is passed only to packs that have splits.

    A static pack such as ``ToolGym/FTRLSample-v0`` has no train/test split: train and evaluation then use the
    same records, and :func:`has_split` says so, so reports can say it.
    """
    if split is not None and has_split(env_id):
        kwargs["split"] = split
    return kwargs


def has_split(env_id: str) -> bool:
    try:
        gym.make(env_id, split="test").close()
        return True
    except (TypeError, ValueError):  # no split option, or (a static pack) no record of the test split
        return False


def make_envs(env_id: str, num_envs: int, split: str | None = None, **kwargs: Any) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` as toolgym's batched env (``gym.make_vec``: a ``ToolVectorEnv``).

    Observations come back as a tuple of per-env dicts; every slot is reset once, so any slot can be stepped.
    """
    envs = gym.make_vec(env_id, num_envs=num_envs, **env_kwargs(env_id, split, **kwargs))
    envs.reset(seed=list(range(num_envs)))
    return envs


def make_curriculum(levels: str | None, threshold: float, window: int) -> toolgym.CurriculumState | None:
    """The trainer's curriculum from ``--curriculum`` (knob levels as JSON, easiest first), or None.

    One state for all training envs: a GRPO group replays one scenario in several envs, so they must all draw
    from the same stage (a per-env :class:`toolgym.CurriculumEnv` could not promise that).
    """
    if not levels:
        return None
    rule = toolgym.Curriculum.per_knob(json.loads(levels), threshold=threshold, window=window)
    return toolgym.CurriculumState(rule)


def advance_curriculum(
    curriculum: toolgym.CurriculumState | None,
    episodes: list[dict[str, float]],
    envs: gym.vector.VectorEnv,
    env_id: str,
    env_kw: dict[str, Any],
) -> gym.vector.VectorEnv:
    """Record a step's training episodes; on a change of stage, the training envs remade at the new knobs."""
    if curriculum is None:
        return envs
    # Episodes after a move were still played at the old stage: they must not count towards the new one.
    if not any(curriculum.record(e["solve_f1"]) for e in episodes):
        return envs
    num_envs = envs.num_envs
    envs.close()
    return make_envs(env_id, num_envs, split="train", **{**env_kw, **curriculum.knobs})


def _at(info: dict[str, Any], key: str, i: int) -> Any:
    """Env ``i``'s value of ``key`` in a vector env's batched info (None when it did not report it)."""
    if key in info and info.get("_" + key, np.ones(i + 1, bool))[i]:
        return info[key][i]
    return None


# ----------------------------------------------------------------------------------------------- rollouts
@dataclass
class Turn:
    """One decision: the observation, the turn the policy wrote, its record and log-probs, the env's reward."""

    obs: dict[str, Any]
    text: str
    action: Any
    logp: Any  # [L] tensor of the behaviour policy's per-token log-probs
    reward: float = 0.0
    group: int = 0  # turns sampled from the same prompt share a group
    episode: dict[str, float] | None = None  # episode metrics when this turn ended the episode


@dataclass
class Episode:
    seed: int
    turns: list[Turn] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def prefixes(self) -> list[list[str]]:
        """The states this episode visited, as the assistant turns before each (``reset(options={"prefix"})``)."""
        texts = [t.text for t in self.turns]
        return [texts[:i] for i in range(len(texts))]


def play_episodes(policy: Any, envs: gym.vector.VectorEnv, seeds: list[int], greedy: bool = False) -> list[Episode]:
    """Play one episode per seed, the policy acting for every running env in one batch."""
    n = envs.num_envs
    queue = list(seeds)
    episodes: list[Episode] = []
    slot: list[Episode | None] = [None] * n
    obs: tuple = ()

    def start(slots: list[int]) -> tuple:
        seed_list = [0] * n
        mask = np.zeros(n, dtype=bool)
        for i in slots:
            slot[i] = Episode(queue.pop(0))
            episodes.append(slot[i])
            seed_list[i], mask[i] = slot[i].seed, True
        return envs.reset(seed=seed_list, options={"reset_mask": mask})[0]

    obs = start([i for i in range(min(n, len(queue)))])
    while any(s is not None for s in slot):
        live = [i for i in range(n) if slot[i] is not None]
        seen = [obs[i] for i in live]
        texts, actions, logp = policy.act(seen, greedy=greedy)
        full = [""] * n
        for k, i in enumerate(live):
            full[i] = texts[k]
        obs, rewards, term, trunc, info = envs.step(full)
        done = []
        for k, i in enumerate(live):
            turn = Turn(seen[k], texts[k], actions[k], logp[k], float(rewards[i]))
            slot[i].turns.append(turn)
            if term[i] or trunc[i]:
                slot[i].metrics = turn.episode = _episode_metrics(info, i)
                slot[i] = None
                done.append(i)
        if done and queue:
            obs = start(done[: len(queue)])
    return episodes


def _episode_metrics(info: dict[str, Any], i: int) -> dict[str, float]:
    return {k: float(v[i]) for k, v in info["episode"].items() if not k.startswith("_")}


def sample_turns(
    policy: Any, envs: gym.vector.VectorEnv, prompts: list[tuple[int, list[str]]], group_size: int
) -> list[Turn]:
    """FTRL's turn-level sampling: for each prompt ``(seed, prefix)`` restore that state in ``group_size`` envs
    (``reset(seed, options={"prefix": prefix})``), sample one turn in each, and score it with the env's reward.

    Turns of prompt ``p`` get ``group = p``; the policy acts on every env of a chunk in one batch.
    """
    n = envs.num_envs
    if group_size > n:
        raise ValueError(f"group_size {group_size} needs at least as many envs (have {n})")
    per_chunk = n // group_size
    turns: list[Turn] = []
    for c in range(0, len(prompts), per_chunk):
        chunk = prompts[c : c + per_chunk]
        obs: tuple = ()
        for p, (seed, prefix) in enumerate(chunk):
            mask = np.zeros(n, dtype=bool)
            mask[p * group_size : (p + 1) * group_size] = True
            obs = envs.reset(seed=[seed] * n, options={"prefix": prefix, "reset_mask": mask})[0]
        used = len(chunk) * group_size
        seen = list(obs[:used])
        texts, actions, logp = policy.act(seen)
        _, rewards, term, trunc, info = envs.step(texts + [""] * (n - used))
        for k in range(used):
            ended = bool(term[k] or trunc[k])
            turns.append(
                Turn(
                    seen[k],
                    texts[k],
                    actions[k],
                    logp[k],
                    float(rewards[k]),
                    group=c + k // group_size,
                    episode=_episode_metrics(info, k) if ended else None,
                )
            )
    return turns


def evaluate(
    policy: Any,
    env_id: str,
    episodes: int,
    split: str | None = "test",
    seed: int = 1_000_000,
    num_envs: int = 16,
    **kwargs: Any,
) -> dict[str, float]:
    """Greedy episodes on the held-out split: mean Solve-P / Solve-R / Solve-F1 (0..1), return and turns."""
    envs = make_envs(env_id, min(num_envs, episodes), split=split, **kwargs)
    try:
        eps = play_episodes(policy, envs, list(range(seed, seed + episodes)), greedy=True)
    finally:
        envs.close()
    keys = ("solve_p", "solve_r", "solve_f1", "return", "turns")
    return {k: float(np.mean([e.metrics[k] for e in eps])) for k in keys}


def gold_turns(env_id: str, episodes: int, seed: int = 0, split: str | None = "train", **kwargs: Any):
    """``(observation, gold turn text)`` pairs from the scenario's gold plan (``env.unwrapped.gold_actions()``).

    Packs whose scenarios carry no gold arguments (imported FTRL records) yield nothing.
    """
    env = gym.make(env_id, **env_kwargs(env_id, split, **kwargs))
    pairs = []
    try:
        for s in range(seed, seed + episodes):
            obs, _ = env.reset(seed=s)
            while True:
                try:
                    text = env.unwrapped.gold_actions()[0]
                except ValueError:
                    return pairs
                pairs.append((obs, text))
                obs, _, term, trunc, _ = env.step(text)
                if term or trunc:
                    break
    finally:
        env.close()
    return pairs


# ----------------------------------------------------------------------------------------------- maths
def reference_log_probs(reference: Any, observations: list, actions: list, batch_size: int):
    """The frozen reference's per-token log-probs ``[N, L]`` for every sample, or None without a reference.

    Scored once per update step (not once per epoch and minibatch): the reference does not change.
    """
    if reference is None:
        return None
    import torch

    with torch.no_grad():
        parts = [
            reference.log_probs(observations[lo : lo + batch_size], actions[lo : lo + batch_size])[0]
            for lo in range(0, len(observations), batch_size)
        ]
    return torch.cat(parts)


def group_advantages(rewards, group_size: int, eps: float = 1e-6):
    """GRPO: ``A = (r - mean_group) / (std_group + eps)`` over consecutive groups of ``group_size`` rewards.

    ``std`` is the unbiased sample std (torch's default, as in verl's GRPO); a group whose rewards are all equal
    gets advantage 0.
    """
    import torch

    r = torch.as_tensor(rewards, dtype=torch.float32).view(-1, group_size)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)).view(-1)


def whiten(x, eps: float = 1e-8):
    """REINFORCE++: normalise over the whole batch, ``(x - mean) / (std + eps)``."""
    import torch

    x = torch.as_tensor(x, dtype=torch.float32)
    return (x - x.mean()) / (x.std() + eps)


def kl_k3(logp, ref_logp):
    """The k3 estimator of KL(pi || ref) per token: ``exp(ref - logp) - (ref - logp) - 1`` (>= 0, unbiased)."""
    import torch

    d = (ref_logp - logp).clamp(-20.0, 20.0)
    return torch.exp(d) - d - 1.0


def masked_mean(x, mask):
    """Mean over the valid entries of a ``[B, L]`` batch."""
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def aggregate(loss, mask, how: str = "seq-mean-token-sum"):
    """Reduce per-token losses ``[B, L]`` to a scalar.

    ``token-mean`` (verl's default) weights a sample by its length; with a zero-mean advantage in a group, the
    longer (often wrong) samples then outweigh the short ones. ``seq-mean-token-sum`` gives each sample its
    summed per-token loss, then averages samples.
    """
    if how == "token-mean":
        return masked_mean(loss, mask)
    return (loss * mask).sum(1).mean()


# ----------------------------------------------------------------------------------------------- running
def pick_device(name: str = "auto") -> str:
    """``cuda`` when a GPU is present (and ``name`` is ``auto``), else ``cpu``."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_policy(
    policy: str,
    checkpoint: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    gguf_file: str | None = None,
    lora_rank: int = 0,
    max_new_tokens: int = 96,
    small: dict | None = None,
):
    """A policy from a checkpoint (a small-policy ``.pt`` file or an HF model folder), or a new one.

    ``policy`` is ``small`` or a Hugging Face model id / folder (with ``gguf_file`` for a GGUF checkpoint).
    """
    if checkpoint:
        return load_policy(checkpoint, device=device)
    if policy == "small":
        from toolgym_rl.small_policy import SmallConfig, SmallPolicy

        return SmallPolicy(SmallConfig(**(small or {})), device=device, seed=seed)
    from toolgym_rl.hf_policy import HFPolicy

    return HFPolicy(policy, gguf_file=gguf_file, lora_rank=lora_rank, device=device, max_new_tokens=max_new_tokens)


def save_policy(policy: Any, path: str | Path) -> None:
    """Small policy: one ``.pt`` file; HF policy: a ``save_pretrained`` folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    policy.save(path)


def load_policy(path: str | Path, device: str = "cpu"):
    path = Path(path)
    if path.is_dir():
        from toolgym_rl.hf_policy import HFPolicy

        return HFPolicy.load(path, device=device)
    from toolgym_rl.small_policy import SmallPolicy

    return SmallPolicy.load(path, device=device)


class RunLog:
    """Metrics of one run: ``metrics.csv`` (one row per logged step), a printed line, ``curve.png``."""

    PLOTS = (
        ("reward", "train reward"),
        ("solve_f1", "train Solve-F1"),
        ("eval_solve_f1", "test Solve-F1"),
        ("kl", "KL to reference"),
        ("entropy", "entropy"),
        ("loss", "loss"),
    )

    def __init__(self, run_dir: str | Path, title: str = ""):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.rows: list[dict[str, float]] = []
        self.start = time.time()

    def log(self, step: int, quiet: bool = False, **metrics: float) -> None:
        row = {"step": step, "time": round(time.time() - self.start, 2), **{k: float(v) for k, v in metrics.items()}}
        self.rows.append(row)
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(self.dir / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fields)
            w.writeheader()
            w.writerows(self.rows)
        if not quiet:
            print(f"step {step:>4} " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)

    def plot(self, name: str = "curve.png") -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        shown = [(k, label) for k, label in self.PLOTS if any(k in r for r in self.rows)]
        fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(3.2 * max(1, len(shown)), 2.8), squeeze=False)
        for ax, (k, label) in zip(axes[0], shown, strict=False):
            pts = [(r["step"], r[k]) for r in self.rows if k in r and not math.isnan(r[k])]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if k.startswith("eval") else None, ms=3)
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.suptitle(self.title, fontsize=10)
        fig.tight_layout()
        out = self.dir / name
        fig.savefig(out, dpi=90)
        plt.close(fig)
        return out

    def write_json(self, name: str, data: Any) -> None:
        (self.dir / name).write_text(json.dumps(data, indent=2))


def threads(n: int) -> None:
    """Cap torch's CPU threads (0 = leave torch's default)."""
    if n > 0:
        import torch

        torch.set_num_threads(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
