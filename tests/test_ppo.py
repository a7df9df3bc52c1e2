"""PPO's own properties (docs/algorithms.md#ppo), each checked against an independent computation."""
import math

import pytest
import torch
from helpers import random_episode_flags, record_env_steps

import ppo_dflex


def brute_force_advantages(rewards, values, next_values, terminated, truncated, gamma, lam):
    """A_t = sum_k (gamma lam)^k delta_{t+k} up to the end of t's segment (episode end or horizon end), with
    delta_j = r_j + gamma * V(after step j) - V(s_j) and V(after step j) = 0 when step j terminated."""
    H, N = rewards.shape
    advantages = torch.zeros(H, N, dtype=torch.float64)
    for i in range(N):
        for t in range(H):
            end = next(j for j in range(t, H) if terminated[j, i] or truncated[j, i] or j == H - 1)
            for j in range(t, end + 1):
                bootstrap = 0.0 if terminated[j, i] else next_values[j, i]
                delta = rewards[j, i] + gamma * bootstrap - values[j, i]
                advantages[t, i] += (gamma * lam) ** (j - t) * delta
    return advantages


def test_gae_equals_brute_force_and_bootstraps_truncation_but_not_termination():
    H, N, gamma, lam = 12, 6, 0.99, 0.95
    g = torch.Generator().manual_seed(0)
    rewards, values, next_values = (torch.randn(H, N, generator=g, dtype=torch.float64) for _ in range(3))
    terminated, truncated = random_episode_flags(H, N, seed=1)
    assert terminated.any() and truncated.any()
    advantages = ppo_dflex.gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    expected = brute_force_advantages(rewards, values, next_values, terminated, truncated, gamma, lam)
    torch.testing.assert_close(advantages, expected, rtol=1e-12, atol=1e-12)
    # a single step that ends the episode: its advantage is r + gamma * V(final obs) - V(s) only when truncated
    one = torch.ones(1, 1, dtype=torch.float64)
    yes, no = torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.bool)
    assert ppo_dflex.gae(one, 0 * one, 10 * one, no, yes, 0.5, lam).item() == 1 + 0.5 * 10
    assert ppo_dflex.gae(one, 0 * one, 10 * one, yes, no, 0.5, lam).item() == 1


@pytest.mark.parametrize("kl, lr, expected", [
    (0.0161, 1e-3, 1e-3 / 1.5),   # above 2 * target: shrink
    (0.016, 1e-3, 1e-3),          # exactly 2 * target: keep
    (0.008, 1e-3, 1e-3),          # between: keep
    (0.004, 1e-3, 1e-3),          # exactly target / 2: keep
    (0.0039, 1e-3, 1e-3 * 1.5),   # below target / 2: grow
    (0.5, 1.2e-6, 1e-6),          # shrinking stops at min_lr
    (0.0, 9e-3, 1e-2),            # growing stops at max_lr
])
def test_kl_adaptive_learning_rate_at_each_threshold(kl, lr, expected):
    args = ppo_dflex.Args()
    assert (args.target_kl, args.min_lr, args.max_lr) == (0.008, 1e-6, 1e-2)
    assert ppo_dflex.kl_adaptive_lr(lr, kl, args) == pytest.approx(expected, rel=1e-12)


def test_policy_std_stays_in_its_range_and_mean_in_the_action_range():
    actor = ppo_dflex.Actor(3, 2, (8,))
    with torch.no_grad():
        for layer in (actor.mean, actor.std):
            layer.bias.fill_(1e3)
        mean_high, std_high = actor(torch.zeros(1, 3))
        for layer in (actor.mean, actor.std):
            layer.bias.fill_(-1e3)
        mean_low, std_low = actor(torch.zeros(1, 3))
    assert torch.allclose(std_high, torch.tensor(1.0)) and torch.allclose(std_low, torch.tensor(0.1))
    assert torch.allclose(mean_high, torch.tensor(1.0)) and torch.allclose(mean_low, torch.tensor(-1.0))


def test_observations_are_normalised_and_clamped():
    rms = ppo_dflex.RunningMeanStd(2)
    rms.update(torch.tensor([[0.0, 10.0], [2.0, 10.0]]))  # with the prior: mean (2/3, 20/3)
    normalized = rms.normalize(torch.tensor([[1e6, 20 / 3]]), clip=5.0)
    torch.testing.assert_close(normalized, torch.tensor([[5.0, 0.0]]))  # 0 up to the float32 rounding of 20/3


def test_rollout_bootstraps_with_the_value_of_the_state_after_each_step(tmp_path, monkeypatch):
    """With identity normalisation, the critic's second call of every rollout step must get info["final_obs"]:
    the state after the step, before any reset (its first call gets the state the step started from)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ppo_dflex.RunningMeanStd, "normalize", lambda self, x, clip=math.inf: x)
    steps = record_env_steps(monkeypatch, ppo_dflex)
    rollout_inputs = []  # critic inputs of 4 rows (the updates use minibatches of 16)
    forward = ppo_dflex.Critic.forward

    def recording_forward(self, obs):
        if len(obs) == 4:
            rollout_inputs.append(obs.detach().clone())
        return forward(self, obs)

    monkeypatch.setattr(ppo_dflex.Critic, "forward", recording_forward)
    ppo_dflex.main(ppo_dflex.Args(exp_name="bootstrap", env_id="CartPole", num_envs=4, horizon=8, total_timesteps=64,
                                  episode_length=5, minibatch_size=16, cuda=False, evaluate=False))
    assert len(rollout_inputs) == 2 * len(steps) == 32
    assert any(not torch.equal(obs, final_obs) for obs, *_, final_obs in steps)  # resets happened
    for next_value_input, (_, _, _, _, final_obs) in zip(rollout_inputs[1::2], steps):
        assert torch.equal(next_value_input, final_obs)
