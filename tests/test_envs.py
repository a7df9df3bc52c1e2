"""Properties of `envs.make_env`: the API contract and each fix to Rewarped 1.3.3
(docs/tasks.md#what-envs-fixes-in-rewarped-133)."""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from envs import make_env
from helpers import random_actions

REPO = Path(__file__).resolve().parents[1]


def rollout(env, actions):
    """Step `env` through `actions` (T, N, A); return the per-step (obs, reward, terminated, truncated, info)."""
    return [env.step(a) for a in actions]


@pytest.mark.parametrize(
    "env_id, num_obs, num_actions, episode_length",
    [
        ("CartPole", 5, 1, 240),
        ("Ant", 37, 8, 1000),
        ("Hopper", 11, 3, 1000),
        ("Humanoid", 76, 21, 1000),
        ("Anymal", 49, 12, 1000),
        ("HandReorient", 72, 16, 600),
    ],
)
def test_shapes_dtypes_and_task_sizes(env_id, num_obs, num_actions, episode_length):
    env = make_env(env_id, 2)
    assert (env.num_envs, env.num_obs, env.num_actions) == (2, num_obs, num_actions)
    assert env.max_episode_length == episode_length
    assert env.device == torch.device("cpu")
    obs = env.reset()
    assert obs.shape == (2, num_obs) and obs.dtype == torch.float32
    obs, reward, terminated, truncated, info = env.step(torch.zeros(2, num_actions))
    assert obs.shape == info["final_obs"].shape == (2, num_obs)
    assert reward.shape == (2,) and reward.dtype == torch.float32
    assert terminated.dtype == truncated.dtype == torch.bool and terminated.shape == truncated.shape == (2,)
    assert torch.isfinite(obs).all() and torch.isfinite(reward).all()
    assert info["nan_resets"] == 0


def test_same_seed_gives_bit_identical_rollouts_whatever_else_draws_random_numbers():
    runs = []
    for disturb in (False, True):
        torch.manual_seed(123)
        env = make_env("CartPole", 4, seed=7, episode_length=5)  # two auto-resets inside the rollout
        obs0 = env.reset()
        if disturb:  # an algorithm sampling actions uses torch's global RNG between env calls
            torch.rand(1000)
        steps = rollout(env, random_actions(env, 12))
        runs.append([obs0] + [x for s in steps for x in s[:4]])
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    other = make_env("CartPole", 4, seed=8).reset()
    assert not torch.equal(other, runs[0][0])


def test_reset_with_a_seed_restarts_from_the_initial_states_of_that_seed_whatever_the_history():
    fresh = make_env("CartPole", 4, seed=7).reset()
    env = make_env("CartPole", 4, seed=3, episode_length=5)
    env.reset()
    rollout(env, random_actions(env, 12))
    assert torch.equal(env.reset(seed=7), fresh)


def test_reward_gradient_wrt_earlier_action_matches_finite_difference():
    actions = 0.3 * random_actions(make_env("CartPole", 2), 8)

    def return_of_env0(first_action):
        env = make_env("CartPole", 2, seed=1)
        env.reset()
        steps = rollout(env, torch.cat([first_action[None], actions[1:]]))
        return sum(reward[0] for _, reward, *_ in steps)

    a0 = actions[0].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(return_of_env0(a0), a0)
    eps = 1e-2
    bump = torch.tensor([[eps], [0.0]])
    finite_difference = (return_of_env0(actions[0] + bump) - return_of_env0(actions[0] - bump)) / (2 * eps)
    assert grad[0, 0] != 0
    assert torch.isclose(grad[0, 0], finite_difference, rtol=2e-3)
    assert grad[1, 0] == 0  # envs do not interact


def test_contact_rich_reward_has_finite_nonzero_gradient_wrt_first_action():
    env = make_env("Ant", 2, seed=0)
    env.reset()
    actions = random_actions(env, 16)
    a0 = actions[0].clone().requires_grad_(True)
    steps = rollout(env, torch.cat([a0[None], actions[1:]]))
    (grad,) = torch.autograd.grad(steps[-1][1].sum(), a0)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_termination_of_one_env_keeps_the_gradient_path_of_the_others():
    """Env 0 terminates on every step (Rewarped resets it mid-horizon); env 1 never does. Env 1's gradient
    must equal the one from a run where nobody terminates."""
    grads = []
    for env0_height_limit in (-1e3, 1e3):
        env = make_env("Ant", 2, seed=0)
        env.reset()
        env.task.termination_height = torch.tensor([env0_height_limit, -1e3])
        actions = random_actions(env, 10)
        a0 = actions[0].clone().requires_grad_(True)
        steps = rollout(env, torch.cat([a0[None], actions[1:]]))
        assert all(terminated[0] == (env0_height_limit > 0) for _, _, terminated, *_ in steps)
        (grad,) = torch.autograd.grad(sum(reward[1] for _, reward, *_ in steps), a0)
        grads.append(grad[1])
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("env_id", ["CartPole", "Ant"])
def test_time_limit_is_a_truncation_not_a_termination(env_id):
    env = make_env(env_id, 2, episode_length=3)
    env.reset()
    steps = rollout(env, torch.zeros(3, 2, env.num_actions))
    assert [s[3].tolist() for s in steps] == [[False, False], [False, False], [True, True]]
    assert not any(s[2].any() for s in steps)


def test_nonfinite_env_is_reset_counted_and_leaves_the_others_alone():
    clean, broken = make_env("CartPole", 3, seed=2), make_env("CartPole", 3, seed=2)
    clean.reset()
    broken.reset()
    with torch.no_grad():
        broken.task.state.joint_qd.view(3, -1)[1] = math.nan
    zeros = torch.zeros(1, 3, 1)
    ((clean_obs, clean_reward, *_),) = rollout(clean, zeros)
    ((obs, reward, terminated, truncated, info),) = rollout(broken, zeros)
    assert info["nan_resets"] == 1
    assert reward[1] == 0 and terminated.tolist() == [False, True, False]
    assert (info["final_obs"][1] == 0).all()
    assert torch.isfinite(obs).all()
    assert torch.equal(obs[[0, 2]], clean_obs[[0, 2]]) and torch.equal(reward[[0, 2]], clean_reward[[0, 2]])
    for obs, reward, _, _, info in rollout(broken, torch.zeros(5, 3, 1)):  # and it stays healthy
        assert torch.isfinite(obs).all() and torch.isfinite(reward).all() and info["nan_resets"] == 0


def test_final_obs_is_the_pre_reset_observation_and_stays_differentiable():
    env = make_env("CartPole", 2, episode_length=2)
    env.reset()
    a0 = torch.full((2, 1), 0.5, requires_grad=True)
    env.step(a0)
    obs2, _, _, truncated, info = env.step(torch.zeros(2, 1))
    assert truncated.all()
    assert not torch.equal(info["final_obs"], obs2)  # obs2 is already the next episode's first observation
    (grad,) = torch.autograd.grad(info["final_obs"].sum(), a0)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()
    obs3, _, _, truncated, info = env.step(torch.zeros(2, 1))
    assert not truncated.any()
    assert torch.equal(info["final_obs"], obs3)  # nothing ended: final_obs is the observation


def test_clear_grad_cuts_the_history_and_keeps_the_physical_state():
    kept, cut = make_env("CartPole", 2, seed=3), make_env("CartPole", 2, seed=3)
    actions = random_actions(kept, 4)
    a0 = actions[0].clone().requires_grad_(True)
    for env in (kept, cut):
        env.reset()
        rollout(env, torch.cat([a0[None], actions[1:3]]))
    before = cut.task.obs_buf.detach().clone()
    obs = cut.clear_grad()
    assert torch.equal(obs, before) and obs.grad_fn is None
    a3 = actions[3].clone().requires_grad_(True)
    (kept_obs, *_), (cut_obs, cut_reward, *_) = kept.step(a3), cut.step(a3)
    assert torch.equal(kept_obs, cut_obs)
    grad_a0, grad_a3 = torch.autograd.grad(cut_reward.sum(), [a0, a3], allow_unused=True)
    assert grad_a0 is None and grad_a3.abs().sum() > 0


def test_envs_share_the_origin_instead_of_a_grid_of_offsets():
    env = make_env("Ant", 8)
    env.reset()
    root_xz = env.task.state.joint_q.view(8, -1)[:, [0, 2]]
    assert root_xz.abs().max() <= 0.1 + 1e-6  # only the ±0.1 m initial-position noise


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(env_id="Pendulum", num_envs=2), "known ids: Ant, Hopper, Humanoid, Anymal, HandReorient, CartPole"),
        (dict(env_id="CartPole", num_envs=0), "num_envs must be a positive integer"),
        (dict(env_id="CartPole", num_envs=2.5), "num_envs must be a positive integer"),
        (dict(env_id="CartPole", num_envs=2, episode_length=0), "episode_length must be a positive integer"),
        (dict(env_id="CartPole", num_envs=2, device="tpu"), "use 'cpu' or 'cuda'"),
        (dict(env_id="CartPole", num_envs=2, graph_capture=True), "graph_capture=True needs a CUDA device"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_env(**kwargs)


def test_cuda_on_a_machine_without_gpu_names_the_cpu_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no usable CUDA GPU; use device='cpu'"):
        make_env("CartPole", 2, device="cuda")


def test_wrong_action_shape_is_refused():
    env = make_env("CartPole", 2)
    env.reset()
    with pytest.raises(ValueError, match=r"actions must have shape \(num_envs, num_actions\) = \(2, 1\), got \(2,\)"):
        env.step(torch.zeros(2))


def test_building_and_stepping_prints_nothing():
    code = (
        "import torch; from envs import make_env\n"
        "for env_id in ('Ant', 'Hopper', 'Anymal', 'CartPole'):\n"
        "    env = make_env(env_id, 4); env.reset()\n"
        "    env.step(torch.zeros(4, env.num_actions, requires_grad=True))[1].sum().backward()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
