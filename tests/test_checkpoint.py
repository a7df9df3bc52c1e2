"""Checkpoint and exact resume: the env's own state (`DiffEnv.state_dict`) and the four scripts'."""
import io

import pytest
import torch
from helpers import random_actions

from envs import make_env


def roll(env, actions):
    """From the current state: a fresh horizon through `actions`; observations, rewards, ends and the gradient
    of the summed reward with respect to the first action."""
    first = actions[0].clone().requires_grad_(env.requires_grad)
    obs, rewards, ends = [env.clear_grad()], [], []
    for a in torch.cat([first[None], actions[1:]]):
        o, r, terminated, truncated, _ = env.step(a)
        obs.append(o.detach())
        rewards.append(r)
        ends.append(terminated | truncated)
    rewards = torch.stack(rewards)
    grad = torch.autograd.grad(rewards.sum(), first)[0] if env.requires_grad else None
    return torch.stack(obs), rewards.detach(), torch.stack(ends), grad


# CartPole and the Rewarped Ant (Warp's collision pipeline reads the maximal coordinates) on Warp's
# Featherstone step, the Ant on DFlex's; episodes of 12 steps so that envs reset inside the compared window
@pytest.mark.parametrize("env_id", ["CartPole", "Ant", "RewarpedAnt"])
def test_a_restored_env_steps_like_the_original(env_id):
    env = make_env(env_id, 3, seed=3, episode_length=12)
    env.reset()
    for a in random_actions(env, 7, seed=1):
        env.step(a)
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    copy = make_env(env_id, 3, seed=8, episode_length=12)  # elsewhere: other seed, other steps
    copy.reset()
    for a in random_actions(copy, 4, seed=2):
        copy.step(a)
    copy.load_state_dict(state)

    actions = random_actions(env, 10, seed=4)
    original, restored = roll(env, actions), roll(copy, actions)
    assert original[2].any(), "no env reset inside the window: the test would not cover the random generator"
    for a, b in zip(original, restored):
        assert torch.equal(a, b)


def test_an_env_state_of_another_task_or_size_is_refused():
    state = make_env("CartPole", 2).state_dict()
    with pytest.raises(ValueError, match="env state of Cartpole with 2 envs cannot be loaded into Cartpole with 3"):
        make_env("CartPole", 3).load_state_dict(state)
