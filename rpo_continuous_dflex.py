# RPO, Reparameterization Proximal Policy Optimization (arXiv 2508.06214): SAPO's rollout, one backward pass
# that caches the action-gradients dJ/du_t, then several clipped, KL-regularised policy epochs that reuse them.
# Equations: docs/algorithms.md#rpo; details: docs/rpo.md.
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Literal, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import tyro

from envs import UsageError, make_env
from envs.checkpoint import Checkpointer, load_model, save_model
from envs.experiment import (NonFiniteGuard, ProgressReport, check_ranges, check_run_args, close_run,
                             count_iterations, final_evaluation, seed_everything, start_run)
from envs.wrappers import RecordEpisodeStatistics

# Per-task settings of the papers (docs/algorithms.md#hyperparameters): env counts, env steps (AHAC's SHAC epochs x
# 32 x env count), and CartPole's small networks from DiffRL's cart-pole config.
PAPER_NUM_ENVS = {"Hopper": 1024, "Ant": 128, "Humanoid": 64, "Anymal": 128, "HandReorient": 64, "CartPole": 64,
                  "RewarpedAnt": 128, "RewarpedHumanoid": 64}
PAPER_TIMESTEPS = {"Hopper": 16_384_000, "Ant": 8_192_000, "Humanoid": 10_240_000, "Anymal": 12_288_000,
                   "HandReorient": 4_096_000, "CartPole": 1_024_000, "RewarpedAnt": 8_192_000,
                   "RewarpedHumanoid": 10_240_000}
ACTOR_HIDDEN = {"HandReorient": (512, 256), "CartPole": (64, 64)}
CRITIC_HIDDEN = {"HandReorient": (256, 256), "CartPole": (64, 64)}
DEFAULT_HIDDEN = (400, 200, 100)
SCRIPT = os.path.basename(__file__)
RESUME_MUST_MATCH = ("env_id", "num_envs", "sim_workers", "horizon", "actor_hidden", "critic_hidden")
# (kl_coef, ent_coef): Ant and Hopper from the paper's Table 4 as a re-implementation cites it
# (docs/algorithms.md#hyperparameters)
KL_ENT_COEFS = {"Ant": (0.25, 0.2), "Hopper": (0.2, 0.25)}
DEFAULT_KL_ENT_COEFS = (0.2, 0.2)  # unconfirmed


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, use the GPU when there is one"""
    track: bool = False
    """if toggled, mirror the TensorBoard log to Weights & Biases (offline: WANDB_MODE=offline, then `wandb sync`)"""
    wandb_project_name: str = "dflex-rl"
    """the wandb's project name"""
    wandb_entity: Optional[str] = None
    """the entity (team) of wandb's project"""
    save_model: bool = False
    """whether to save the model to `runs/{run_name}/{exp_name}.model`"""
    eval_model: Optional[str] = None
    """path of a saved model: load it (with its network sizes), skip training and only evaluate"""
    evaluate: bool = True
    """if toggled, evaluate the final policy (one episode per env, deterministic and stochastic)"""
    capture_video: bool = False
    """if toggled, render the final evaluation's first two envs to `videos/{run_name}/eval_{mode}.mp4`"""
    checkpoint_every: int = 0
    """checkpoint to `runs/{run_name}/checkpoint.pt` every this many iterations (0: only on SIGTERM or Ctrl-C)"""
    resume: Optional[str] = None
    """path of a checkpoint.pt: continue that run where it stopped (run the same command with this added)"""

    # Algorithm specific arguments
    env_id: str = "Ant"
    """the task: Ant, Hopper, Humanoid, Anymal, HandReorient, CartPole, RewarpedAnt, RewarpedHumanoid, or your own
    env as module:Class (docs/env_contract.md)"""
    num_envs: Optional[int] = None
    """the number of parallel environments (default: the paper's value for the task)"""
    episode_length: Optional[int] = None
    """the task's time limit in steps (default: the task's own)"""
    sim_workers: int = 1
    """the number of simulations the envs are split over, stepped in parallel processes on the CPU"""
    low_memory: bool = False
    """keep only each step's input for the backward pass and recompute the step there (less memory, more time)"""
    total_timesteps: Optional[int] = None
    """total env steps of the experiment (default: per task, the paper's budget, Ant 8,192,000; own envs 1,000,000)"""
    horizon: int = 32
    """the number of steps of one rollout, backpropagated through (H)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    td_lambda: float = 0.95
    """the lambda of the critic's TD(lambda) targets"""
    actor_lr: float = 2e-3
    """the actor's initial learning rate, SAPO's (decayed exponentially to `end_lr`; unconfirmed)"""
    critic_lr: float = 5e-4
    """the critics' initial learning rate, SAPO's (decayed exponentially to `end_lr`; unconfirmed)"""
    update_epochs: int = 5
    """the number of full-batch policy epochs per rollout (M), all reusing one set of action-gradients"""
    kl_coef: Optional[float] = None
    """the coefficient of KL(pi_old || pi) (default: per task, Ant 0.25, Hopper 0.2, others 0.2 unconfirmed)"""
    ent_coef: Optional[float] = None
    """c_ent, the entropy coefficient: of the reward's bonus and of the explicit entropy term (default: per task,
    Ant 0.2, Hopper 0.25, others 0.2 unconfirmed)"""
    clip: bool = True
    """if toggled, mask samples whose importance ratio leaves [1 - clip_low, 1 + clip_high]; --no-clip keeps all"""
    clip_low: float = 0.8
    """c_low: samples whose ratio is below 1 - c_low (0.2 by default) give no gradient"""
    clip_high: float = 1.0
    """c_high: samples whose ratio is above 1 + c_high (2.0 by default) give no gradient (unconfirmed)"""
    target_entropy_scale: float = 0.5
    """the target entropy, which scales the entropy bonus, is -target_entropy_scale * num_actions"""
    end_lr: float = 1e-5
    """the learning rate reached at the last iteration"""
    betas: Tuple[float, float] = (0.7, 0.95)
    """AdamW's betas for actor and critics"""
    max_grad_norm: float = 0.5
    """the maximum norm of the actor's gradient"""
    critic_max_grad_norm: float = 0.5
    """the maximum norm of the critics' gradient"""
    critic_iterations: int = 32
    """the number of passes over the rollout to train the critics"""
    num_minibatches: int = 4
    """the number of critic minibatches per pass"""
    critic_reduce: Literal["mean", "min"] = "mean"
    """how bootstrap values combine the two critics (RPO paper: mean; SAPO's code: min)"""
    actor_hidden: Optional[Tuple[int, ...]] = None
    """hidden sizes of the actor (default: per task, (400, 200, 100) for the locomotion tasks)"""
    critic_hidden: Optional[Tuple[int, ...]] = None
    """hidden sizes of each critic (default: per task, (400, 200, 100) for the locomotion tasks)"""
    max_skipped_updates: int = 10
    """abort after this many iterations in a row with a non-finite gradient"""

    # to be filled in runtime
    batch_size: int = 0
    """the number of env steps per iteration (num_envs * horizon)"""
    num_iterations: int = 0
    """the number of iterations (total_timesteps // batch_size; 0 with --eval-model)"""


def complete_args(args):
    """Fill per-task defaults and derived sizes; refuse impossible values before any simulation starts."""
    check_run_args(args, SCRIPT, PAPER_NUM_ENVS, PAPER_TIMESTEPS)  # env id, --num-envs, --total-timesteps, ...
    args.actor_hidden = tuple(args.actor_hidden or ACTOR_HIDDEN.get(args.env_id, DEFAULT_HIDDEN))
    args.critic_hidden = tuple(args.critic_hidden or CRITIC_HIDDEN.get(args.env_id, DEFAULT_HIDDEN))
    kl_coef, ent_coef = KL_ENT_COEFS.get(args.env_id, DEFAULT_KL_ENT_COEFS)
    args.kl_coef = kl_coef if args.kl_coef is None else args.kl_coef
    args.ent_coef = ent_coef if args.ent_coef is None else args.ent_coef
    check_ranges(args, at_least_one=("num_envs", "horizon", "update_epochs", "critic_iterations", "num_minibatches",
                                     "max_skipped_updates", "actor_hidden", "critic_hidden"),
                 positive=("actor_lr", "critic_lr", "end_lr", "max_grad_norm", "critic_max_grad_norm",
                           "target_entropy_scale"),
                 non_negative=("kl_coef", "ent_coef", "clip_high"),  # the ratio range [1 - clip_low, 1 + clip_high]
                 fraction=("gamma", "td_lambda"), below_one=("betas", "clip_low"))
    args.batch_size = args.num_envs * args.horizon
    if args.num_minibatches > args.batch_size:
        raise UsageError(f"--num-minibatches {args.num_minibatches} exceeds the batch of {args.batch_size} samples")
    args.num_iterations = count_iterations(args)  # refuses a run shorter than one iteration
    return args


def layer_init(layer):
    torch.nn.init.orthogonal_(layer.weight, 1.0)
    torch.nn.init.constant_(layer.bias, 0.0)
    return layer


def mlp(in_size, hidden):
    """Hidden layers Linear -> LayerNorm -> SiLU (docs/algorithms.md#policy)."""
    layers = []
    for size in hidden:
        layers += [layer_init(nn.Linear(in_size, size)), nn.LayerNorm(size), nn.SiLU()]
        in_size = size
    return nn.Sequential(*layers)


def gaussian_log_prob(u, mean, log_std):
    """log N(u; mean, exp(log_std)) summed over action dims."""
    return (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def squashed_normal_log_prob(u, mean, log_std):
    """log pi(a|s) of a = tanh(u), u ~ N(mean, exp(log_std)), summed over action dims (eq. 2); log(1 - tanh(u)^2)
    is written as 2 (log 2 - u - softplus(-2u)), finite for any u."""
    log_det_jacobian = 2 * (math.log(2) - u - nn.functional.softplus(-2 * u))
    return gaussian_log_prob(u, mean, log_std) - log_det_jacobian.sum(-1)


def entropy_estimate(mean, log_std):
    """-log pi(a'|s) of a fresh reparameterised sample a' = tanh(mean + sigma * eps'), eq. (11)."""
    u_fresh = mean + log_std.exp() * torch.randn_like(mean)
    return -squashed_normal_log_prob(u_fresh, mean, log_std)


def gaussian_kl(mean_old, log_std_old, mean, log_std):
    """Eq. (20), the paper's Eq. 9: KL(N_old || N) in closed form, summed over action dims. tanh is invertible, so
    this is also the KL between the squashed policies."""
    var_old, var = (2 * log_std_old).exp(), (2 * log_std).exp()
    return (log_std - log_std_old + (var_old + (mean_old - mean) ** 2) / (2 * var) - 0.5).sum(-1)


class Actor(nn.Module):
    def __init__(self, num_obs, num_actions, hidden):
        super().__init__()
        self.trunk = mlp(num_obs, hidden)
        self.mean = layer_init(nn.Linear(hidden[-1], num_actions))
        self.log_std = layer_init(nn.Linear(hidden[-1], num_actions))

    def forward(self, obs):
        h = self.trunk(obs)
        return self.mean(h), self.log_std(h).clamp(-5.0, 2.0)

    def get_action(self, obs, deterministic=False):
        """a = tanh(u) of the reparameterised u = mu + sigma * eps (eq. 1), u, and a fresh sample's entropy (eq. 11)."""
        mean, log_std = self(obs)
        if deterministic:
            return torch.tanh(mean), mean, None
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), u, entropy_estimate(mean, log_std)


class Critic(nn.Module):
    def __init__(self, num_obs, hidden):
        super().__init__()
        self.net = nn.Sequential(mlp(num_obs, hidden), layer_init(nn.Linear(hidden[-1], 1)))

    def forward(self, obs):
        return self.net(obs).squeeze(-1)


class ObsNormalizer(nn.Module):
    """Running per-dimension mean and variance in float64 (eqs. 4-5), saved with the model."""

    def __init__(self, num_obs, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(num_obs, dtype=torch.float64))
        self.register_buffer("var", torch.ones(num_obs, dtype=torch.float64))
        self.register_buffer("count", torch.ones((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, obs):
        x = obs.detach().to(torch.float64)
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, total = batch_mean - self.mean, self.count + n
        self.var.copy_((self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total)

    def frozen(self):
        """A normalisation function with the current statistics, fixed for one rollout (differentiable in obs)."""
        mean, std = self.mean.float().clone(), torch.sqrt(self.var + self.eps).float()
        return lambda obs: (obs - mean) / std


def policy_loss(actor, b_obs, b_u, b_action_grads, old_mean, old_log_std, target_entropy, args):
    """RPO's actor loss on the stored rollout, -(L_clip - c_KL * KL + c_ent * L_ent), eq. (22), and the
    quantities the epoch loop logs. b_action_grads holds the cached g_t = dJ/du_t."""
    mean, log_std = actor(b_obs)
    # eq. (16), the paper's Eq. 12: action regeneration, the noise with which the current policy emits the stored u
    eps_regen = ((b_u - mean) / log_std.exp()).detach()
    u_regen = mean + log_std.exp() * eps_regen
    # eq. (17): importance ratio pi/pi_old at u (the tanh terms cancel), not differentiated
    ratio = (gaussian_log_prob(b_u, mean, log_std) - gaussian_log_prob(b_u, old_mean, old_log_std)).exp().detach()
    # eqs. (18)-(19), the paper's Eq. 8 and 13: a sample gives gradient only while its ratio is inside
    # [1 - c_low, 1 + c_high]; no min with an unclipped term as in PPO
    outside = (ratio < 1 - args.clip_low) | (ratio > 1 + args.clip_high)
    mask = (~outside).float() if args.clip else torch.ones_like(ratio)
    # a sum, not a mean: g already carries J's 1/(N*H)
    surrogate = (mask * ratio * (b_action_grads * u_regen).sum(-1)).sum()
    kl = gaussian_kl(old_mean, old_log_std, mean, log_std).mean()
    # eq. (21): the soft reward's entropy bonus (eq. 12') at the stored states. g carries its pull on earlier actions,
    # not its own dependence on theta; that same-step gradient is put back here, with the reward's coefficient c_ent
    # and not discounted (paper, Appendix C)
    entropy = (0.5 * (1 + entropy_estimate(mean, log_std) / abs(target_entropy))).mean()
    loss = -(surrogate - args.kl_coef * kl + args.ent_coef * entropy)
    return loss, {"u_regen": u_regen, "ratio": ratio, "outside": outside, "surrogate": surrogate, "kl": kl,
                  "entropy": entropy}


def critic_value(critics, obs, reduce):
    """The bootstrap value: the two critics' mean (eq. 3), or their minimum with --critic-reduce min."""
    values = torch.stack([critic(obs) for critic in critics])
    return values.mean(0) if reduce == "mean" else values.min(0).values


def segment_returns(rewards, next_values, terminated, truncated, gamma):
    """Per env, the sum over segments of [sum_k gamma^k r_k + gamma^K * bootstrap]: eq. (7), docs/algorithms.md#rollout.

    All inputs are (H, N). next_values[t] is the value of the state after step t (of its final observation
    where the episode ended). An episode end splits the horizon into segments; the bootstrap at a segment end
    is 0 on termination, next_values on truncation and at the horizon end.
    """
    total = torch.zeros_like(rewards[0])
    running = torch.zeros_like(rewards[0])
    discount = torch.ones_like(rewards[0])
    for t in range(rewards.shape[0]):
        running = running + discount * rewards[t]
        discount = discount * gamma
        bootstrap = torch.where(terminated[t], torch.zeros_like(running), next_values[t])
        segment_end = terminated[t] | truncated[t] | (t == rewards.shape[0] - 1)
        total = total + torch.where(segment_end, running + discount * bootstrap, torch.zeros_like(running))
        running = torch.where(segment_end, torch.zeros_like(running), running)
        discount = torch.where(segment_end, torch.ones_like(discount), discount)
    return total


@torch.no_grad()
def td_lambda_targets(rewards, next_values, terminated, truncated, gamma, lam):
    """TD(lambda) targets computed backwards over the horizon, same segments as `segment_returns`: eq. (8)."""
    targets = torch.zeros_like(rewards)
    for t in reversed(range(rewards.shape[0])):
        next_value = torch.where(terminated[t], torch.zeros_like(next_values[t]), next_values[t])
        if t == rewards.shape[0] - 1:
            targets[t] = rewards[t] + gamma * next_value
        else:
            blended = (1 - lam) * next_value + lam * targets[t + 1]
            segment_end = terminated[t] | truncated[t]
            targets[t] = rewards[t] + gamma * torch.where(segment_end, next_value, blended)
    return targets


def main(args):
    # TRY NOT TO MODIFY: arguments, run directory, seeding, env
    args = complete_args(args)
    run_name, writer, checkpoint = start_run(args, SCRIPT, RESUME_MUST_MATCH)  # TensorBoard (+ wandb); --resume
    seed_everything(args.seed, args.torch_deterministic)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    env = make_env(args.env_id, args.num_envs, str(device), args.seed, episode_length=args.episode_length,
                   low_memory=args.low_memory, sim_workers=args.sim_workers, render=args.capture_video)
    env = RecordEpisodeStatistics(env)

    # ALGO LOGIC: networks, optimisers and rollout storage
    actor = Actor(env.num_obs, env.num_actions, args.actor_hidden).to(device)
    critics = nn.ModuleList([Critic(env.num_obs, args.critic_hidden) for _ in range(2)]).to(device)
    obs_normalizer = ObsNormalizer(env.num_obs).to(device)
    model = {"actor": actor, "critics": critics, "obs_normalizer": obs_normalizer}  # what --save-model saves
    if args.eval_model:
        load_model(args.eval_model, SCRIPT, model)
    # fused: one kernel per optimiser step (CPU and CUDA), not a dozen small ops per parameter tensor
    actor_optimizer = torch.optim.AdamW(actor.parameters(), lr=args.actor_lr, betas=args.betas, fused=True)
    critic_optimizer = torch.optim.AdamW(critics.parameters(), lr=args.critic_lr, betas=args.betas, fused=True)
    target_entropy = -args.target_entropy_scale * env.num_actions

    # the rollout, detached, (horizon, num_envs, ...): read by the policy epochs and the critic update
    H, N = args.horizon, args.num_envs
    obs_storage = torch.zeros((H, N, env.num_obs), device=device)
    u_storage = torch.zeros((H, N, env.num_actions), device=device)
    soft_rewards = torch.zeros((H, N), device=device)
    next_values = torch.zeros((H, N), device=device)
    terminations = torch.zeros((H, N), dtype=torch.bool, device=device)
    truncations = torch.zeros((H, N), dtype=torch.bool, device=device)

    # TRY NOT TO MODIFY: counters, progress line, checkpoint and resume
    start_iteration = global_step = 0
    nonfinite = NonFiniteGuard("actor gradient", args.max_skipped_updates, "lower --actor-lr or --horizon")
    critic_nonfinite = NonFiniteGuard("critic gradient", args.max_skipped_updates, "lower --critic-lr")
    report = ProgressReport(writer, args.num_iterations)
    obs = env.reset()
    # what a checkpoint holds, with the random generators and the counters saved below (envs/checkpoint.py)
    stateful = {**model, "actor_optimizer": actor_optimizer, "critic_optimizer": critic_optimizer,
                "env": env, "report": report, "nonfinite": nonfinite,
                "critic_nonfinite": critic_nonfinite}
    checkpointer = Checkpointer(SCRIPT, run_name, args, stateful, writer)
    if checkpoint:
        p = checkpointer.restore(checkpoint)
        start_iteration, global_step = p["iteration"], p["global_step"]

    for iteration in range(start_iteration, args.num_iterations):
        # ALGO LOGIC: exponential schedule lr_0 * (lr_end / lr_0)^(k / K), eq. (14)
        frac = iteration / args.num_iterations
        actor_lr = args.actor_lr * (args.end_lr / args.actor_lr) ** frac
        actor_optimizer.param_groups[0]["lr"] = actor_lr
        critic_optimizer.param_groups[0]["lr"] = args.critic_lr * (args.end_lr / args.critic_lr) ** frac

        # Rollout of H steps, differentiable through the simulator (docs/algorithms.md#rollout)
        sim_start = time.time()
        obs = env.clear_grad()  # BPTT stops here: the rollout starts from the envs' state, not from its history
        normalize = obs_normalizer.frozen()
        step_u, step_soft_rewards, step_values, entropies = [], [], [], []
        for t in range(H):
            obs_normalizer.update(obs)
            norm_obs = normalize(obs)
            obs_storage[t] = norm_obs.detach()
            action, u, entropy = actor.get_action(norm_obs)  # action = tanh(u)
            step_u.append(u)
            u_storage[t] = u.detach()
            entropies.append(entropy.detach())
            obs, reward, terminated, truncated, info = env.step(action)
            # value of the state after the step (its final observation where the episode ended)
            step_values.append(critic_value(critics, normalize(info["final_obs"]), args.critic_reduce))
            # soft reward r + c_ent * normalised entropy bonus, 1/2 (1 + H / |target entropy|), eq. (12'): SAPO's
            # eq. (12) with a fixed coefficient in place of the learned temperature (docs/algorithms.md#rpo)
            step_soft_rewards.append(reward + args.ent_coef * 0.5 * (1 + entropy / abs(target_entropy)))
            terminations[t], truncations[t] = terminated, truncated
            report.add_episodes(info, step=global_step + (t + 1) * N)  # the episodes that ended at this step
        global_step += N * H
        step_soft_rewards, step_values = torch.stack(step_soft_rewards), torch.stack(step_values)
        soft_rewards[:], next_values[:] = step_soft_rewards.detach(), step_values.detach()

        # Action-gradients g_t = dJ/du_t (eq. 15) of the short-horizon objective J = 1/(N*H) * sum of segment
        # returns (eq. 7, the paper's Eq. 4), in the one backward pass through the simulator of this iteration
        returns = segment_returns(step_soft_rewards, step_values, terminations, truncations, args.gamma)
        objective = returns.sum() / (N * H)
        action_grads = torch.stack(torch.autograd.grad(objective, step_u))
        # Free this rollout's graph now, not when these names are next assigned: its nodes keep every step's
        # simulator tape and states alive (backward frees the saved tensors, not the nodes)
        del objective, returns, step_u, step_soft_rewards, step_values, obs, norm_obs, action, u, entropy, reward, info
        sim_s = time.time() - sim_start
        update_start = time.time()

        # Policy epochs, all on the cached action-gradients (eqs. 16-22, docs/algorithms.md#rpo)
        b_obs = obs_storage.reshape(-1, env.num_obs)
        b_u = u_storage.reshape(-1, env.num_actions)
        b_action_grads = action_grads.reshape(-1, env.num_actions)
        with torch.no_grad():  # pi_before (pi_old): the actor that collected the rollout, before the first epoch
            old_mean, old_log_std = actor(b_obs)
        clipfracs, surrogates, ratio_maxes = [], [], []
        for _ in range(args.update_epochs):
            actor_loss, stats = policy_loss(actor, b_obs, b_u, b_action_grads, old_mean, old_log_std, target_entropy,
                                            args)
            actor_optimizer.zero_grad()
            actor_loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(actor.parameters(), args.max_grad_norm)
            if not torch.isfinite(grad_norm):
                break
            actor_optimizer.step()
            clipfracs.append(stats["outside"].float().mean().item())
            surrogates.append(stats["surrogate"].item())
            ratio_maxes.append(stats["ratio"].max().item())
        nonfinite.check(torch.isfinite(grad_norm), iteration)  # the remaining epochs were skipped, reported
        with torch.no_grad():  # KL(pi_before || pi_after) per state, eq. (20): the paper's Figure 1 measure
            kl = gaussian_kl(old_mean, old_log_std, *actor(b_obs))

        # Critics: TD(lambda) targets, MSE of both critics, minibatches over the flattened rollout (eqs. 8-9)
        targets = td_lambda_targets(soft_rewards, next_values, terminations, truncations, args.gamma, args.td_lambda)
        targets = targets.flatten()
        minibatch_size = args.batch_size // args.num_minibatches
        value_losses = []
        for _ in range(args.critic_iterations):
            b_inds = torch.randperm(args.batch_size, device=device)
            for start in range(0, minibatch_size * args.num_minibatches, minibatch_size):
                mb_inds = b_inds[start : start + minibatch_size]
                mse = [((critic(b_obs[mb_inds]) - targets[mb_inds]) ** 2).mean() for critic in critics]
                value_loss = torch.stack(mse).mean()
                critic_optimizer.zero_grad()
                value_loss.backward()
                critic_grad_norm = nn.utils.clip_grad_norm_(critics.parameters(), args.critic_max_grad_norm)
                if critic_nonfinite.check(torch.isfinite(critic_grad_norm), iteration):  # else: skipped, reported
                    critic_optimizer.step()
                value_losses.append(value_loss.item())
        update_s = time.time() - update_start

        # TRY NOT TO MODIFY: record the iteration, checkpoint
        writer.add_scalar("charts/learning_rate", actor_lr, global_step)
        writer.add_scalar("losses/actor_loss", actor_loss.item(), global_step)
        writer.add_scalar("losses/value_loss", np.mean(value_losses), global_step)
        writer.add_scalar("losses/grad_norm", grad_norm.item(), global_step)
        writer.add_scalar("losses/skipped_updates", nonfinite.skipped, global_step)
        writer.add_scalar("losses/skipped_critic_updates", critic_nonfinite.skipped, global_step)
        writer.add_scalar("losses/kl", kl.mean().item(), global_step)
        writer.add_scalar("losses/kl_max", kl.max().item(), global_step)
        writer.add_scalar("losses/entropy", torch.stack(entropies).mean().item(), global_step)
        writer.add_scalar("losses/clipfrac", np.mean(clipfracs or [np.nan]), global_step)
        writer.add_scalar("losses/ratio_max", np.max(ratio_maxes or [np.nan]), global_step)
        writer.add_scalar("losses/action_grad_norm", action_grads.norm().item(), global_step)
        writer.add_scalar("losses/surrogate", np.mean(surrogates or [np.nan]), global_step)
        writer.add_scalar("perf/sim_s", sim_s, global_step)
        writer.add_scalar("perf/update_s", update_s, global_step)
        report.end_iteration(iteration, global_step)  # episodes, SPS and the progress line
        checkpointer.save_if_due(dict(iteration=iteration + 1, global_step=global_step))

    # TRY NOT TO MODIFY: save the model, evaluate it, close the logs
    checkpointer.close()
    if args.save_model:
        save_model(f"runs/{run_name}/{args.exp_name}.model", SCRIPT, args, model)
    normalize = obs_normalizer.frozen()
    eval_returns = final_evaluation(
        env, lambda obs, deterministic: actor.get_action(normalize(obs), deterministic)[0],
        args, run_name, writer, global_step)
    close_run(writer)  # TensorBoard, and wandb with --track
    return run_name, eval_returns


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as error:  # bad input, refused before any simulation starts
        sys.exit(f"error: {error}")
