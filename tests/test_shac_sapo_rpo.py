"""The computations that shac_dflex.py, sapo_dflex.py and rpo_continuous_dflex.py share, each checked against an
independent computation. RPO's own properties are in test_rpo.py, the command-line behaviour of all four
scripts in test_scripts.py."""
import math
import weakref

import pytest
import torch
from helpers import random_episode_flags, record_env_steps

import rpo_continuous_dflex
import sapo_dflex
import shac_dflex
from envs.rewarped_loading import import_rewarped

SCRIPTS = [shac_dflex, sapo_dflex, rpo_continuous_dflex]


def brute_force_lambda_returns(rewards, next_values, terminated, truncated, gamma, lam):
    """lambda-return by its definition: (1 - lam) sum_n lam^(n-1) G^(n) + lam^(K-1) G^(K), where the K-step
    return G^(K) reaches the end of the segment (episode end or horizon end) and n-step returns bootstrap
    with the value after step t+n-1 (0 after a termination)."""
    H, N = rewards.shape
    targets = torch.zeros(H, N, dtype=torch.float64)
    for i in range(N):
        for t in range(H):
            end = next(j for j in range(t, H) if terminated[j, i] or truncated[j, i] or j == H - 1)
            K = end - t + 1

            def n_step(n):
                ret = sum(gamma**k * rewards[t + k, i] for k in range(n))
                value = 0.0 if terminated[t + n - 1, i] else next_values[t + n - 1, i]
                return ret + gamma**n * value

            shorter = sum(lam ** (n - 1) * n_step(n) for n in range(1, K))
            targets[t, i] = (1 - lam) * shorter + lam ** (K - 1) * n_step(K)
    return targets


@pytest.mark.parametrize("script", SCRIPTS)
def test_td_lambda_targets_equal_brute_force_lambda_returns(script):
    H, N, gamma, lam = 12, 6, 0.99, 0.95
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(H, N, generator=g, dtype=torch.float64)
    next_values = torch.randn(H, N, generator=g, dtype=torch.float64)
    terminated, truncated = random_episode_flags(H, N, seed=1)
    assert terminated.any() and truncated.any()
    targets = script.td_lambda_targets(rewards, next_values, terminated, truncated, gamma, lam)
    expected = brute_force_lambda_returns(rewards, next_values, terminated, truncated, gamma, lam)
    torch.testing.assert_close(targets, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("script", SCRIPTS)
def test_segment_returns_bootstrap_in_each_segment_end_case(script):
    """Three steps, three envs: env 0 terminates at step 1, env 1 is truncated at step 0, env 2 runs through."""
    g = 0.9
    rewards = torch.tensor([[1.0, 4.0, 7.0], [2.0, 5.0, 8.0], [3.0, 6.0, 9.0]])  # (H=3, N=3)
    next_values = torch.tensor([[10.0, 40.0, 70.0], [20.0, 50.0, 80.0], [30.0, 60.0, 90.0]])
    terminated = torch.tensor([[False, False, False], [True, False, False], [False, False, False]])
    truncated = torch.tensor([[False, True, False], [False, False, False], [False, False, False]])
    expected = torch.tensor([
        (1 + g * 2 + g**2 * 0) + (3 + g * 30),  # termination: bootstrap 0; then horizon end
        (4 + g * 40) + (5 + g * 6 + g**2 * 60),  # truncation: bootstrap V(final obs); then horizon end
        7 + g * 8 + g**2 * 9 + g**3 * 90,  # horizon end only: V(s_H)
    ])
    torch.testing.assert_close(script.segment_returns(rewards, next_values, terminated, truncated, g), expected)


@pytest.mark.parametrize("script", [sapo_dflex, rpo_continuous_dflex])
def test_squashed_normal_log_prob_matches_change_of_variables(script):
    """log pi(a) = log N(u) - log |da/du|. |da/du| by central differences of tanh (float64) for moderate u;
    in the tails, where those differences drown in rounding, by the identity 1 - tanh(u)^2 = 1 / cosh(u)^2."""
    u = torch.tensor([[-3.0, -0.5, 0.0, 0.7, 2.5, -12.0, 9.0, 15.0]], dtype=torch.float64)
    mean, log_std = torch.full_like(u, 0.3), torch.full_like(u, -0.4)
    h = 1e-6
    finite_difference = (torch.tanh(u + h) - torch.tanh(u - h)) / (2 * h)
    log_dtanh = torch.where(u.abs() < 4, torch.log(finite_difference), -2 * torch.log(torch.cosh(u)))
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(u) - log_dtanh
    for i in range(u.shape[1]):  # one action dim at a time, so the sum over dims is trivial
        got = script.squashed_normal_log_prob(u[:, i : i + 1], mean[:, i : i + 1], log_std[:, i : i + 1])
        assert math.isclose(got.item(), expected[0, i].item(), rel_tol=1e-7, abs_tol=1e-6), (u[0, i], got)
    far = torch.tensor([[-40.0, 40.0]])  # |a| rounds to 1 in float32; the log-prob must stay finite
    assert torch.isfinite(script.squashed_normal_log_prob(far, torch.zeros_like(far), torch.zeros_like(far)))


@pytest.mark.parametrize("script", SCRIPTS)
def test_rollout_bootstraps_with_the_value_of_the_state_after_each_step(script, tmp_path, monkeypatch):
    """With identity normalisation the critics must see info["final_obs"] of every step: the state after the
    step, before any reset (docs/algorithms.md#rollout), never the state the step started from."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(script.ObsNormalizer, "frozen", lambda self: (lambda obs: obs))
    steps = record_env_steps(monkeypatch, script)
    critic_inputs = []
    critic_value = script.critic_value

    def recording_critic_value(critics, obs, reduce):
        critic_inputs.append(obs.detach().clone())
        return critic_value(critics, obs, reduce)

    monkeypatch.setattr(script, "critic_value", recording_critic_value)
    script.main(script.Args(exp_name="bootstrap", env_id="CartPole", num_envs=4, horizon=8, total_timesteps=64,
                            episode_length=5, cuda=False, evaluate=False))
    assert len(critic_inputs) == len(steps) == 16
    assert any(not torch.equal(obs, final_obs) for obs, *_, final_obs in steps)  # resets happened
    for critic_obs, (_, _, _, _, final_obs) in zip(critic_inputs, steps):
        assert torch.equal(critic_obs, final_obs)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_previous_iterations_graph_is_gone_when_the_next_rollout_starts(script, tmp_path, monkeypatch):
    """Every simulator step's Warp tape is held by its autograd node; at the first step of iteration k + 1 no
    tape of iteration k may be alive any more (without the fix all 8 were, so peak memory held two graphs)."""
    import_rewarped()
    from rewarped.autograd import UpdateFunction

    monkeypatch.chdir(tmp_path)
    tapes, alive = [], []  # weak references to every step's tape; how many of the earlier ones live, per rollout
    forward = UpdateFunction.forward

    def recording_forward(ctx, *args):
        outputs = forward(ctx, *args)
        tapes.append(weakref.ref(ctx.update_params[0]))
        return outputs

    make_env = script.make_env

    def probing_make_env(*args, **kwargs):
        env = make_env(*args, **kwargs)
        clear_grad, step = env.clear_grad, env.step
        earlier = []

        def marking_clear_grad():
            earlier.append(len(tapes))
            return clear_grad()

        def probing_step(actions):
            if earlier:  # the first step of a rollout
                alive.append(sum(tape() is not None for tape in tapes[: earlier.pop()]))
            return step(actions)

        env.clear_grad, env.step = marking_clear_grad, probing_step
        return env

    monkeypatch.setattr(UpdateFunction, "forward", staticmethod(recording_forward))
    monkeypatch.setattr(script, "make_env", probing_make_env)
    script.main(script.Args(exp_name="graph", env_id="CartPole", num_envs=4, horizon=8, total_timesteps=96,
                            episode_length=5, cuda=False, evaluate=False))
    assert len(tapes) == 3 * 8 and alive == [0, 0, 0]


@pytest.mark.parametrize("script", SCRIPTS)
def test_gaussian_kl_equals_torchs_closed_form_and_is_zero_between_equal_policies(script):
    g = torch.Generator().manual_seed(5)
    mean_old, mean = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    log_std_old, log_std = torch.randn(6, 3, generator=g) * 0.5, torch.randn(6, 3, generator=g) * 0.5
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mean_old, log_std_old.exp()),
                                                 torch.distributions.Normal(mean, log_std.exp())).sum(-1)
    torch.testing.assert_close(script.gaussian_kl(mean_old, log_std_old, mean, log_std), expected)
    assert torch.equal(script.gaussian_kl(mean, log_std, mean, log_std), torch.zeros(6))


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_logged_kl_is_the_closed_form_kl_of_the_policy_update(script, shift, tmp_path, monkeypatch):
    """An actor whose log-std is 0 in every state and whose optimiser step only adds `shift` to it: every update
    multiplies sigma by e^shift and leaves the mean, so KL(pi_before || pi_after) is
    A * (shift + (e^(-2 shift) - 1) / 2) in every state, and 0 when the update changes nothing."""
    from test_scripts import scalars_of, tiny_cartpole_args

    monkeypatch.chdir(tmp_path)
    actors = []

    class KnownActor(script.Actor):
        def __init__(self, *args):
            super().__init__(*args)
            torch.nn.init.zeros_(self.log_std.weight)
            torch.nn.init.zeros_(self.log_std.bias)
            actors.append(self)

    adamw_step = torch.optim.AdamW.step

    def step(self, closure=None):
        if any(p is actors[0].log_std.bias for p in self.param_groups[0]["params"]):
            with torch.no_grad():
                actors[0].log_std.bias += shift
        else:
            adamw_step(self, closure)

    monkeypatch.setattr(script, "Actor", KnownActor)
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    epochs = {"update_epochs": 1} if script is rpo_continuous_dflex else {}
    run_name, _ = script.main(tiny_cartpole_args(script, "kl", evaluate=False, **epochs))
    scalars = scalars_of(tmp_path / "runs" / run_name)
    num_actions = 1  # CartPole
    expected = num_actions * (shift + (math.exp(-2 * shift) - 1) / 2)
    for tag in ("losses/kl", "losses/kl_max"):
        assert len(scalars[tag]) == 2  # one per iteration
        if shift == 0:
            assert scalars[tag] == [0.0, 0.0], tag
        else:
            assert scalars[tag] == pytest.approx([expected, expected], rel=1e-5), tag
