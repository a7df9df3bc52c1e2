"""What RPO's extra critic passes cost, and how much of that no implementation of the algorithm avoids.

    python benchmark/critic_floor.py --env-id Ant --num-envs 32

RPO trains its two critics for 32 passes over each rollout, SHAC and SAPO for 16
(docs/algorithms.md#critic-training). This times the 16 extra passes of the scripts' own critic update (both
critics, 4 minibatches of the H·N samples, clipping, AdamW) on random data of the rollout's shape, then the
matrix products of those passes alone, and prints their FLOPs. The extra passes and RPO's 5 policy epochs make
the gap between RPO's and SHAC's "network updates" columns of `benchmark/speed.py`; the matrix products are the
part of it that is fixed by the specified network sizes.
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from envs import make_env  # noqa: E402
from rpo_continuous_dflex import CRITIC_HIDDEN, DEFAULT_HIDDEN, Critic  # noqa: E402


def critic_passes(critics, optimizer, obs, targets, passes, num_minibatches):
    """The scripts' critic update: MSE of both critics, minibatches of a fresh permutation per pass."""
    minibatch_size = len(obs) // num_minibatches
    for _ in range(passes):
        b_inds = torch.randperm(len(obs), device=obs.device)
        for start in range(0, minibatch_size * num_minibatches, minibatch_size):
            mb_inds = b_inds[start : start + minibatch_size]
            value_loss = torch.stack([((critic(obs[mb_inds]) - targets[mb_inds]) ** 2).mean() for critic in critics])
            optimizer.zero_grad()
            value_loss.mean().backward()
            if torch.isfinite(nn.utils.clip_grad_norm_(critics.parameters(), 0.5)):
                optimizer.step()


def matmul_seconds(layers, minibatch_size, repeats):
    """Seconds of one minibatch's matrix products for one critic: forward, input gradients (not for the first
    layer: the observations need none) and weight gradients; and their FLOPs."""
    seconds, flops = 0.0, 0
    for i, layer in enumerate(layers):
        weight = layer.weight.detach()
        x, grad_out = torch.randn(minibatch_size, weight.shape[1]), torch.randn(minibatch_size, weight.shape[0])
        products = [(x, weight.t()), (grad_out.t(), x)] + ([(grad_out, weight)] if i > 0 else [])
        for a, b in products:
            a @ b
            start = time.perf_counter()
            for _ in range(repeats):
                a @ b
            seconds += (time.perf_counter() - start) / repeats
            flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
    return seconds, flops


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env-id", default="Ant")
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--horizon", type=int, default=32)
    parser.add_argument("--extra-passes", type=int, default=16, help="RPO's passes minus SHAC's (32 - 16)")
    parser.add_argument("--num-minibatches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--repeats", type=int, default=3, help="timings of which the fastest is printed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    num_obs = make_env(args.env_id, 1, "cpu", 0).num_obs
    hidden = CRITIC_HIDDEN.get(args.env_id, DEFAULT_HIDDEN)
    critics = nn.ModuleList([Critic(num_obs, hidden) for _ in range(2)])
    optimizer = torch.optim.AdamW(critics.parameters(), lr=5e-4, fused=True)
    batch_size = args.num_envs * args.horizon
    obs, targets = torch.randn(batch_size, num_obs), torch.randn(batch_size)

    critic_passes(critics, optimizer, obs, targets, 1, args.num_minibatches)  # warm-up
    update_s = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        critic_passes(critics, optimizer, obs, targets, args.extra_passes, args.num_minibatches)
        update_s.append(time.perf_counter() - start)
    layers = [m for m in critics[0].modules() if isinstance(m, nn.Linear)]
    steps = 2 * args.extra_passes * args.num_minibatches  # both critics, every minibatch
    matmul = min(matmul_seconds(layers, batch_size // args.num_minibatches, 50) for _ in range(args.repeats))
    print(f"{args.env_id}, {batch_size} samples, critics {num_obs}-{'-'.join(map(str, hidden))}-1, "
          f"{args.extra_passes} extra passes x {args.num_minibatches} minibatches, {args.threads} torch thread(s)")
    print(f"critic update: {min(update_s):.3f} s")
    print(f"its matrix products alone: {matmul[0] * steps:.3f} s ({matmul[0] * steps / min(update_s):.0%} of it), "
          f"{matmul[1] * steps / 1e9:.1f} GFLOP at {matmul[1] / matmul[0] / 1e9:.0f} GFLOPS")


if __name__ == "__main__":
    main()
