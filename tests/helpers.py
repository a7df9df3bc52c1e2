"""Helpers shared by several test files."""
import torch


def random_episode_flags(H, N, seed):
    g = torch.Generator().manual_seed(seed)
    terminated = torch.rand(H, N, generator=g) < 0.15
    truncated = (torch.rand(H, N, generator=g) < 0.15) & ~terminated
    return terminated, truncated
