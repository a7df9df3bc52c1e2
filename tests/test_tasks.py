"""Task behaviour beyond the DFlex trajectories of test_parity.py: long-run stability, reward and termination
formulas, start poses and finite BPTT gradients (Hopper, Anymal)."""
import math

import pytest
import torch
import warp as wp
from helpers import random_actions

from envs import make_env
from envs.anymal import JOINT_NAMES, START_JOINT_Q


def run(env, actions):
    """Step through `actions` (T, N, A); return stacked final observations, rewards, terminations, NaN resets."""
    final_obs, rewards, terminated, nan_resets = [], [], [], 0
    for a in actions:
        _, reward, term, _, info = env.step(a)
        final_obs.append(info["final_obs"])
        rewards.append(reward)
        terminated.append(term)
        nan_resets += int(info["nan_resets"])
    return torch.stack(final_obs), torch.stack(rewards), torch.stack(terminated), nan_resets


@pytest.mark.parametrize("mode", ["zero", "random"])
def test_hopper_stays_finite_for_1000_steps_on_64_envs(mode):
    env = make_env("Hopper", 64, requires_grad=False)
    env.reset()
    actions = random_actions(env, 1000) if mode == "random" else torch.zeros(1000, 64, 3)
    obs, rewards, terminated, nan_resets = run(env, actions)
    assert nan_resets == 0 and torch.isfinite(obs).all() and torch.isfinite(rewards).all()
    assert obs[..., 5:].abs().max() < 50  # joint velocities; Rewarped's Hopper reached 1e16 before NaN
    assert terminated.sum() > 0  # without a policy the hopper falls, and falling is a termination, not a NaN


def test_hopper_observation_reward_and_termination_follow_dflex():
    """The reward scores the observation the action was taken in (DFlex); termination reads the one after."""
    env = make_env("Hopper", 8, requires_grad=False)
    before = env.reset()
    actions = 1.5 * random_actions(env, 60, seed=1)  # beyond [-1, 1]: the task clips
    task = env.task
    for a in actions:
        obs, reward, terminated, _, info = env.step(a)
        o = info["final_obs"]
        joint_q, joint_qd = task.state.joint_q.view(8, -1), task.state.joint_qd.view(8, -1)
        ended = terminated | info["nan_resets"].bool()
        kept = ~ended  # the state of an env that ended has been reset already
        assert torch.equal(o[kept], torch.cat([joint_q[:, 1:], joint_qd], -1)[kept])
        height = torch.clip(before[:, 0] - (-0.45 + 0.15), -1.0, 0.3)
        height = torch.where(height < 0, -200.0 * height**2, height)
        angle = 1.0 - before[:, 1] ** 2 / (math.pi / 6) ** 2
        expected = before[:, 5] + height + angle - 0.1 * (a.clip(-1, 1) ** 2).sum(-1)
        assert torch.allclose(reward, expected, atol=1e-5)
        assert torch.equal(terminated, o[:, 0] < -0.45)
        before = obs


def test_hopper_torso_pitches_about_itself_wherever_it_is():
    """The fix for Warp's D6 root: pitching a torso that slid to x = 30 m leaves the torso where it was."""
    env = make_env("Hopper", 1, requires_grad=False)
    model = env.task.model
    state = model.state()
    for pitch in (0.0, 1.0):
        q = wp.array([30.0, 0.2, pitch, 0.0, 0.0, 0.0], dtype=wp.float32)
        wp.sim.eval_fk(model, q, model.joint_qd, None, state)
        torso = state.body_q.numpy()[2]
        assert torso[:3] == pytest.approx([30.0, 1.25 + 0.2, 0.0], abs=1e-5)


def test_anymal_starts_in_the_named_pose_and_action_i_drives_joint_i():
    env = make_env("Anymal", 12, requires_grad=False)
    env.task.randomize = False
    obs = env.reset()
    assert obs[:, 11:23] == pytest.approx(torch.tensor(START_JOINT_Q).expand(12, -1), abs=1e-6)
    assert obs[:, 0] == pytest.approx(torch.full((12,), 0.55))
    rest = obs[:, 11:23].clone()
    for _ in range(3):
        obs = env.step(torch.eye(12))[0]  # env k pushes action k alone
    moved = (obs[:, 11:23] - rest).abs()
    zero = make_env("Anymal", 1, requires_grad=False)
    zero.task.randomize = False
    zero.reset()
    for _ in range(3):
        settle = zero.step(torch.zeros(1, 12))[0][:, 11:23] - rest[:1]
    assert torch.equal((moved - settle.abs()).argmax(1), torch.arange(12)), JOINT_NAMES


def test_anymal_reward_and_termination_follow_ahac():
    """The reward scores the observation the action was taken in (DFlex), with the action just applied;
    termination reads the observation after it, which shows that action (no-gradient mode)."""
    env = make_env("Anymal", 8, requires_grad=False)
    before = env.reset()
    for a in random_actions(env, 40, seed=2):
        obs, reward, terminated, _, info = env.step(a)
        o = info["final_obs"]
        assert torch.equal(o[:, 37:49], a)
        expected = before[:, 5] + 0.1 * before[:, 35] + before[:, 36] + (before[:, 0] - 0.25) - 5e-3 * (a**2).sum(-1)
        assert torch.allclose(reward, expected, atol=1e-5)
        assert torch.equal(terminated, o[:, 0] < 0.25)
        before = obs


def test_anymal_stays_up_for_300_steps_with_zero_action():
    """With tau = -85 q - 12 qd alone the legs give way and the robot settles onto its knee drives at
    about 0.31 m (docs/tasks.md#anymal); it must get there without falling over or ending an episode."""
    env = make_env("Anymal", 16, requires_grad=False)
    env.reset()
    obs, _, terminated, nan_resets = run(env, torch.zeros(300, 16, 12))
    assert nan_resets == 0 and not terminated.any()
    assert obs[..., 0].min() > 0.28 and obs[..., 35].min() > 0.8  # base height; tilt below 37 degrees


def test_anymal_stays_finite_for_1000_steps_of_random_actions_on_64_envs():
    env = make_env("Anymal", 64, requires_grad=False)
    env.reset()
    obs, rewards, _, nan_resets = run(env, random_actions(env, 1000))
    assert nan_resets == 0 and torch.isfinite(obs).all() and torch.isfinite(rewards).all()


@pytest.mark.parametrize("env_id, num_envs", [("Hopper", 32), ("Anymal", 32)])
def test_bptt_gradient_of_a_32_step_return_wrt_the_first_actions_is_finite_and_nonzero(env_id, num_envs):
    """Three horizons in a row under random actions, as training sees them: every env's gradient is
    finite, non-zero and not exploding (Anymal with shank collisions fails this at 1e4 to inf)."""
    env = make_env(env_id, num_envs, seed=0)
    env.reset()
    for horizon in range(3):
        actions = random_actions(env, 32, seed=horizon)
        first = actions[0].clone().requires_grad_(True)
        env.clear_grad()
        _, rewards, _, _ = run(env, torch.cat([first[None], actions[1:]]))
        (grad,) = torch.autograd.grad(rewards.sum(), first)
        per_env = grad.norm(dim=1)
        assert torch.isfinite(per_env).all() and (per_env > 0).all() and per_env.max() < 1e4, per_env
