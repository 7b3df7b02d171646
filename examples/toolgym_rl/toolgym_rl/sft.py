"""Warm start by supervised fine-tuning on gold turns of the TRAIN split (``env.unwrapped.gold_actions()``).

Deliberately short by default: the point is a policy that is decent but imperfect, so the RL stage
(``grpo.py``, ``reinforce_pp.py``) has room to improve it. Evaluates on the held-out TEST split at the end.

    python -m toolgym_rl.sft --env-id ToolGym/FlightBooking-v0 --steps 40 --out runs/sft
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import tyro

from toolgym_rl import common


@dataclass
class Args:
    env_id: str = "ToolGym/FlightBooking-v0"
    """the env whose train split provides the gold turns"""
    policy: str = "small"
    """`small`, or a Hugging Face model id / folder"""
    gguf_file: str | None = None
    """GGUF file inside the `--policy` folder, for a GGUF checkpoint"""
    checkpoint: str | None = None
    """start from this checkpoint instead of a new policy"""
    small_dim: int = 64
    """width of a new small policy"""
    small_layers: int = 2
    """transformer layers of a new small policy"""
    episodes: int = 200
    """train-split episodes whose gold turns form the data set"""
    steps: int = 40
    """gradient steps (short on purpose: a warm start that leaves room for RL)"""
    batch_size: int = 32
    """gold turns per step"""
    lr: float = 3e-3
    """Adam learning rate (1e-5 is a sensible value for an LLM)"""
    eval_episodes: int = 100
    """greedy test-split episodes for the final evaluation (0 = skip)"""
    seed: int = 0
    """seed of the data order and of the new policy"""
    device: str = "auto"
    """`auto` (CUDA when present, else CPU), `cpu` or `cuda`"""
    threads: int = 1
    """torch CPU threads (0 = torch's default; 1 is fastest for the small policy, many-fold on a busy CPU)"""
    out: str = "runs/sft"
    """run folder: metrics.csv, curve.png, the checkpoint"""


def main(args: Args) -> dict:
    import torch

    common.threads(args.threads)
    common.seed_everything(args.seed)
    device = common.pick_device(args.device)
    small = {"dim": args.small_dim, "layers": args.small_layers}
    policy = common.make_policy(args.policy, args.checkpoint, device, args.seed, args.gguf_file, small=small)
    log = common.RunLog(args.out, title=f"SFT {args.env_id}")

    pairs = common.gold_turns(args.env_id, args.episodes, seed=args.seed, split="train")
    data = [(obs, a) for obs, text in pairs if (a := policy.parse_action(obs, text)) is not None]
    print(f"{len(data)} gold turns usable of {len(pairs)} from {args.episodes} train episodes of {args.env_id}")
    if not data:
        raise SystemExit(f"{args.env_id} has no gold turns this policy can produce (no gold arguments?)")
    opt = torch.optim.Adam(policy.parameters(), lr=args.lr)
    rng = random.Random(args.seed)
    start = time.time()
    for step in range(1, args.steps + 1):
        batch = rng.sample(data, min(args.batch_size, len(data)))
        logp, _, mask = policy.log_probs([b[0] for b in batch], [b[1] for b in batch])
        loss = -(logp * mask).sum(1).mean()  # negative log-likelihood of each gold turn
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        if step % 10 == 0 or step == args.steps:
            log.log(step, loss=loss.item(), sps=step * len(batch) / (time.time() - start))
    result = {"env_id": args.env_id, "steps": args.steps, "seconds": time.time() - start}
    if args.eval_episodes:
        result["test"] = common.evaluate(policy, args.env_id, args.eval_episodes, split="test")
        log.log(args.steps, **{f"eval_{k}": v for k, v in result["test"].items()})
    common.save_policy(policy, log.dir / ("policy.pt" if policy.kind == "small" else "policy"))
    log.plot()
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
