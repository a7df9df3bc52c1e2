"""RPO's own properties (docs/algorithms.md#rpo), each checked against an independent computation."""
import math

import pytest
import rewarped.autograd
import torch
import torch.nn as nn

import rpo_continuous_dflex as rpo
from envs import make_env


def rpo_args(**overrides):
    return rpo.complete_args(rpo.Args(env_id="CartPole", cuda=False, **overrides))


class StateFreePolicy(nn.Module):
    """A Gaussian policy whose mean and log-std are parameters, the same for every observation."""

    def __init__(self, mean, log_std):
        super().__init__()
        self.mean = nn.Parameter(torch.tensor(mean, dtype=torch.float64))
        self.log_std = nn.Parameter(torch.tensor(log_std, dtype=torch.float64))

    def forward(self, obs):
        return self.mean.expand(len(obs), -1), self.log_std.expand(len(obs), -1)


def test_per_task_coefficients_apply_unless_given_and_bad_clip_ranges_are_refused():
    ant = rpo.complete_args(rpo.Args(env_id="Ant"))
    assert (ant.kl_coef, ant.ent_coef) == (0.25, 0.2)
    assert (rpo_args().kl_coef, rpo_args().ent_coef) == (0.2, 0.2)
    assert rpo.complete_args(rpo.Args(env_id="Ant", kl_coef=0.0)).kl_coef == 0.0  # the no-KL ablation
    for low, high, flag in ((1.0, 1.0, "--clip-low"), (-0.1, 1.0, "--clip-low"), (0.8, -0.5, "--clip-high")):
        with pytest.raises(ValueError, match=flag):  # the ratio range [1 - low, 1 + high] must contain 1
            rpo_args(clip_low=low, clip_high=high)
    with pytest.raises(ValueError, match="--update-epochs"):
        rpo_args(update_epochs=0)


def test_first_epoch_regenerates_the_stored_actions_with_ratio_one_and_zero_kl():
    torch.manual_seed(0)
    actor = rpo.Actor(5, 3, (16, 16))
    b_obs = torch.randn(64, 5)
    with torch.no_grad():
        _, b_u, _ = actor.get_action(b_obs)
        old_mean, old_log_std = actor(b_obs)
    b_action_grads = torch.randn(64, 3)
    _, stats = rpo.policy_loss(actor, b_obs, b_u, b_action_grads, old_mean, old_log_std, -1.5, rpo_args())
    torch.testing.assert_close(stats["u_regen"], b_u, rtol=0, atol=1e-6)
    assert torch.equal(stats["ratio"], torch.ones(64))
    assert stats["kl"].item() == 0.0
    kl_grads = torch.autograd.grad(stats["kl"], list(actor.parameters()), allow_unused=True)
    assert all(g is None or g.abs().max() < 1e-7 for g in kl_grads)


def test_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mean_old, log_std_old = torch.tensor([0.2, -1.0, 0.5]), torch.tensor([-0.3, 0.1, -1.0])
    mean, log_std = torch.tensor([0.5, -0.6, 0.3]), torch.tensor([0.0, -0.2, -0.7])
    u = mean_old + log_std_old.exp() * torch.randn(400_000, 3, generator=g)
    # log pi_old(a) - log pi(a) of the squashed policies at a = tanh(u): its mean under pi_old is the KL
    log_ratio = rpo.squashed_normal_log_prob(u, mean_old, log_std_old) - rpo.squashed_normal_log_prob(u, mean, log_std)
    monte_carlo, standard_error = log_ratio.mean(), log_ratio.std() / math.sqrt(len(u))
    closed_form = rpo.gaussian_kl(mean_old, log_std_old, mean, log_std)
    assert abs(closed_form - monte_carlo) < 4 * standard_error, (closed_form, monte_carlo, standard_error)
    assert closed_form > 20 * standard_error  # the check has power: the KL is far from 0


def test_importance_weighted_regenerated_action_gradient_is_unbiased_on_a_quadratic():
    """Q(u) = sum_i w_i u_i^2 + b_i u_i under u ~ N(mu, sigma^2) has E[Q] = sum_i w_i (mu_i^2 + sigma_i^2) + b_i mu_i,
    so dE/dmu = 2 w mu + b and dE/dlog(sigma) = 2 w sigma^2. The samples come from a different policy pi_old;
    each contributes ratio * <dQ/du, u_regen> (no clipping, no KL, no entropy)."""
    w, b = torch.tensor([-0.5, 0.3], dtype=torch.float64), torch.tensor([1.0, -2.0], dtype=torch.float64)
    policy = StateFreePolicy([0.3, -0.2], [math.log(0.8), math.log(0.6)])
    old_mean = torch.tensor([0.0, 0.0], dtype=torch.float64)
    old_log_std = torch.tensor([0.0, math.log(0.9)], dtype=torch.float64)
    num_samples = 400_000
    g = torch.Generator().manual_seed(1)
    b_u = old_mean + old_log_std.exp() * torch.randn(num_samples, 2, generator=g, dtype=torch.float64)
    action_grads = 2 * w * b_u + b  # dQ/du
    b_obs = torch.zeros(num_samples, 1)
    args = rpo_args(clip=False, kl_coef=0.0, ent_coef=0.0)
    loss, stats = rpo.policy_loss(policy, b_obs, b_u, action_grads, old_mean.expand(num_samples, -1),
                                  old_log_std.expand(num_samples, -1), -1.0, args)
    grad_mean, grad_log_std = (-g / num_samples for g in torch.autograd.grad(loss, [policy.mean, policy.log_std]))

    mean, std = policy.mean.detach(), policy.log_std.detach().exp()
    expected_mean, expected_log_std = 2 * w * mean + b, 2 * w * std**2
    # per-sample contributions, for the standard error of the estimate
    ratio = stats["ratio"][:, None]
    per_sample_mean, per_sample_log_std = ratio * action_grads, ratio * action_grads * (b_u - mean)
    for estimate, expected, per_sample in ((grad_mean, expected_mean, per_sample_mean),
                                           (grad_log_std, expected_log_std, per_sample_log_std)):
        standard_error = per_sample.std(0) / math.sqrt(num_samples)
        assert (estimate - expected).abs().le(4 * standard_error).all(), (estimate, expected, standard_error)
    # without the importance weights the same samples give a clearly wrong answer
    unweighted = action_grads.mean(0)
    assert (unweighted - expected_mean).abs().max() > 20 * (per_sample_mean.std(0) / math.sqrt(num_samples)).max()


def test_clip_mask_drops_samples_outside_the_asymmetric_range_whatever_the_gradient_sign():
    """Ratios of 0.1, 0.5, 1.9 and 3.0 against the range [0.2, 2.0]; action-gradients of both signs."""
    policy = StateFreePolicy([0.0], [0.0])
    ratios = torch.tensor([0.1, 0.5, 1.9, 3.0, 0.1, 0.5, 1.9, 3.0], dtype=torch.float64)
    action_grads = torch.tensor([[1.0], [1.0], [1.0], [1.0], [-1.0], [-1.0], [-1.0], [-1.0]], dtype=torch.float64)
    b_u = torch.zeros(8, 1, dtype=torch.float64)  # at u = mean = 0 the ratio is sigma_old / sigma
    old_log_std = torch.log(ratios)[:, None]
    old_mean = torch.zeros(8, 1, dtype=torch.float64)
    inside = torch.tensor([False, True, True, False] * 2)
    for clip, kept in ((True, inside), (False, torch.ones(8, dtype=torch.bool))):
        args = rpo_args(clip=clip, kl_coef=0.0, ent_coef=0.0)
        per_sample = []
        for i in range(8):
            loss, stats = rpo.policy_loss(policy, torch.zeros(1, 1), b_u[i : i + 1], action_grads[i : i + 1],
                                          old_mean[i : i + 1], old_log_std[i : i + 1], -0.5, args)
            torch.testing.assert_close(stats["ratio"], ratios[i : i + 1])
            per_sample.append(torch.autograd.grad(loss, policy.mean)[0].item())
        per_sample = torch.tensor(per_sample, dtype=torch.float64)
        # d(-ratio * g * u_regen)/d(mean) = -ratio * g for a kept sample, 0 for a masked one
        expected = torch.where(kept, -ratios * action_grads[:, 0], torch.zeros(8, dtype=torch.float64))
        torch.testing.assert_close(per_sample, expected)


def differentiable_rollout(H=8):
    """A CartPole rollout whose episodes end inside the horizon, kept differentiable in the actor's parameters:
    the actor, the observations, the pre-tanh actions and the (H, N) rewards, critic values after each step,
    termination and truncation flags."""
    torch.manual_seed(0)
    env = make_env("CartPole", 4, seed=2, episode_length=5)
    actor = rpo.Actor(env.num_obs, env.num_actions, (32, 32))
    critic = rpo.Critic(env.num_obs, (32, 32))
    obs = env.reset()
    observations, step_actions, rewards, next_values, terminations, truncations = [], [], [], [], [], []
    for _ in range(H):
        observations.append(obs)
        action, u, _ = actor.get_action(obs)
        step_actions.append(u)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        next_values.append(critic(info["final_obs"]))
        terminations.append(terminated)
        truncations.append(truncated)
    assert torch.stack(truncations).any()
    return actor, observations, step_actions, *(torch.stack(x) for x in (rewards, next_values, terminations,
                                                                        truncations))


def rpo_first_epoch_gradient(actor, observations, step_actions, objective, target_entropy, ent_coef):
    """The actor-parameter gradient of -L_pi (eq. 22) in RPO's first epoch, from the action-gradients of `objective`."""
    action_grads = torch.cat(torch.autograd.grad(objective, step_actions, retain_graph=True))
    b_obs = torch.cat([obs.detach() for obs in observations])
    b_u = torch.cat([u.detach() for u in step_actions])
    with torch.no_grad():
        old_mean, old_log_std = actor(b_obs)
    args = rpo_args(update_epochs=1, ent_coef=ent_coef)  # the KL term stays on: its gradient is 0 in epoch 1
    loss, _ = rpo.policy_loss(actor, b_obs, b_u, action_grads, old_mean, old_log_std, target_entropy, args)
    return [-g for g in torch.autograd.grad(loss, list(actor.parameters()))]


def test_one_epoch_gradient_equals_shac_bptt_gradient_on_the_same_rollout():
    """SHAC backpropagates J straight to the policy parameters. RPO backpropagates J to the actions, then the
    cached action-gradients through the policy. With c_ent = 0 (no entropy bonus in the reward, no entropy term) and
    theta = theta_old both must give the same parameter gradient. Episodes end inside the horizon."""
    actor, observations, step_actions, rewards, next_values, terminations, truncations = differentiable_rollout()
    H, N = rewards.shape
    objective = rpo.segment_returns(rewards, next_values, terminations, truncations, 0.99).sum() / (N * H)
    shac_grads = torch.autograd.grad(objective, list(actor.parameters()), retain_graph=True)
    rpo_grads = rpo_first_epoch_gradient(actor, observations, step_actions, objective, -0.5, ent_coef=0.0)
    assert max(g.abs().max() for g in shac_grads) > 1e-3
    for rpo_grad, shac_grad in zip(rpo_grads, shac_grads):
        torch.testing.assert_close(rpo_grad, shac_grad, rtol=1e-4, atol=1e-7)


def test_explicit_entropy_term_is_the_same_step_gradient_that_the_action_gradients_cannot_carry():
    """SAPO differentiates J of the soft reward (eq. 12) straight to the parameters: through the actions, and
    through every entropy estimate's own dependence on theta at its state. RPO's action-gradients carry the
    first (an estimate's pull on the earlier actions that led to its state), the explicit term of eq. (21) must
    supply the second, with the reward's coefficient and undiscounted (paper, Appendix C). With gamma = 1 nothing
    is discounted, so for SAPO's temperature held at c_ent, theta = theta_old and the same noise in both entropy
    estimates RPO's gradient equals SAPO's; without the explicit term it does not."""
    actor, observations, step_actions, rewards, next_values, terminations, truncations = differentiable_rollout()
    H, N = rewards.shape
    ent_coef, target_entropy = 0.7, -0.5
    torch.manual_seed(1)  # every step's estimate in one draw, so that policy_loss can draw the same noise
    entropies = rpo.entropy_estimate(*actor(torch.cat(observations))).reshape(H, N)
    soft_rewards = rewards + ent_coef * 0.5 * (1 + entropies / abs(target_entropy))
    objective = rpo.segment_returns(soft_rewards, next_values, terminations, truncations, 1.0).sum() / (N * H)
    sapo_grads = torch.autograd.grad(objective, list(actor.parameters()), retain_graph=True)
    for term_coef in (ent_coef, 0.0):
        torch.manual_seed(1)
        rpo_grads = rpo_first_epoch_gradient(actor, observations, step_actions, objective, target_entropy, term_coef)
        difference = max((r - s).abs().max() for r, s in zip(rpo_grads, sapo_grads))
        scale = max(s.abs().max() for s in sapo_grads)
        if term_coef:
            assert difference < 1e-4 * scale, (difference, scale)
        else:
            assert difference > 0.05 * scale, (difference, scale)


def count_simulator_backwards(monkeypatch):
    calls = []
    backward = rewarped.autograd.UpdateFunction.backward

    def counting_backward(ctx, *adj_tensors):
        calls.append(1)
        return backward(ctx, *adj_tensors)

    monkeypatch.setattr(rewarped.autograd.UpdateFunction, "backward", staticmethod(counting_backward))
    return calls


def test_simulator_backward_runs_once_per_iteration_whatever_the_number_of_epochs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = count_simulator_backwards(monkeypatch)
    env = make_env("CartPole", 4)
    env.reset()
    obs, *_ = env.step(torch.zeros(4, 1, requires_grad=True))
    obs.sum().backward()
    per_step = len(calls)  # simulator backward calls for one backpropagated step
    assert per_step >= 1
    H, iterations = 8, 2
    for epochs in (1, 4):
        calls.clear()
        args = rpo.Args(exp_name=f"epochs{epochs}", env_id="CartPole", num_envs=4, horizon=H,
                        total_timesteps=4 * H * iterations, update_epochs=epochs, cuda=False)
        rpo.main(args)
        assert len(calls) == per_step * H * iterations, epochs
