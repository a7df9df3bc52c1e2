# PPO, Proximal Policy Optimization (Schulman et al., 2017): the model-free baseline of the RPO paper, on the
# same tasks with the simulator's backward pass switched off. Equations: docs/algorithms.md#ppo; details:
# docs/ppo.md.
import functools
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional, Tuple

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
    total_timesteps: Optional[int] = None
    """total env steps of the experiment (default: per task, the paper's budget, Ant 8,192,000; own envs 1,000,000)"""
    horizon: int = 32
    """the number of steps of one rollout per env"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda of generalised advantage estimation"""
    learning_rate: float = 5e-4
    """the initial learning rate of actor and critic (then adapted to the KL, see `target_kl`)"""
    adam_eps: float = 1e-5
    """AdamW's epsilon"""
    target_kl: float = 0.008
    """the learning rate shrinks by 1.5 above 2 * target_kl and grows by 1.5 below target_kl / 2"""
    min_lr: float = 1e-6
    """the smallest learning rate the KL rule may set"""
    max_lr: float = 1e-2
    """the largest learning rate the KL rule may set"""
    update_epochs: int = 5
    """the number of passes over the rollout"""
    minibatch_size: Optional[int] = None
    """the number of samples per minibatch (default: 2048, or the whole rollout when that is smaller)"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient epsilon"""
    ent_coef: float = 0.0
    """the coefficient of the entropy bonus"""
    norm_adv: bool = True
    """if toggled, normalise the advantages over the rollout"""
    obs_clip: float = 5.0
    """normalised observations are clamped to [-obs_clip, obs_clip]"""
    max_grad_norm: float = 0.5
    """the maximum norm of the actor's and of the critic's gradient"""
    actor_hidden: Optional[Tuple[int, ...]] = None
    """hidden sizes of the actor (default: per task, (400, 200, 100) for the locomotion tasks)"""
    critic_hidden: Optional[Tuple[int, ...]] = None
    """hidden sizes of the critic (default: per task, (400, 200, 100) for the locomotion tasks)"""
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
    args.batch_size = args.num_envs * args.horizon
    if args.minibatch_size is None:
        args.minibatch_size = min(2048, args.batch_size)
    check_ranges(args, at_least_one=("num_envs", "horizon", "update_epochs", "minibatch_size", "max_skipped_updates",
                                     "actor_hidden", "critic_hidden"),
                 positive=("learning_rate", "adam_eps", "target_kl", "min_lr", "max_lr", "clip_coef", "obs_clip",
                           "max_grad_norm"),
                 non_negative=("ent_coef",), fraction=("gamma", "gae_lambda"))
    if args.minibatch_size > args.batch_size:
        raise UsageError(f"--minibatch-size {args.minibatch_size} exceeds the {args.batch_size} samples per iteration; "
                         "lower it or raise --num-envs / --horizon")
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




class Actor(nn.Module):
    def __init__(self, num_obs, num_actions, hidden):
        super().__init__()
        self.trunk = mlp(num_obs, hidden)
        self.mean = layer_init(nn.Linear(hidden[-1], num_actions))
        self.std = layer_init(nn.Linear(hidden[-1], num_actions))

    def forward(self, obs):
        """Gaussian policy with mean tanh(mu_raw) and std 0.9 * sigmoid(l_raw + 2) + 0.1: eq. (23)."""
        h = self.trunk(obs)
        return torch.tanh(self.mean(h)), 0.9 * torch.sigmoid(self.std(h) + 2) + 0.1

    def get_action(self, obs, deterministic=False):
        """A sample u ~ N(mean, std), not yet clamped to the action range, and its log-prob summed over dims."""
        mean, std = self(obs)
        if deterministic:
            return mean, None
        u = mean + std * torch.randn_like(mean)
        return u, torch.distributions.Normal(mean, std).log_prob(u).sum(-1)


class Critic(nn.Module):
    def __init__(self, num_obs, hidden):
        super().__init__()
        self.net = nn.Sequential(mlp(num_obs, hidden), layer_init(nn.Linear(hidden[-1], 1)))

    def forward(self, obs):
        return self.net(obs).squeeze(-1)


class RunningMeanStd(nn.Module):
    """Running per-dimension mean and variance in float64 (eqs. 4-5), saved with the model."""

    def __init__(self, size, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("var", torch.ones(size, dtype=torch.float64))
        self.register_buffer("count", torch.ones((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x):
        x = x.detach().to(torch.float64)
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, total = batch_mean - self.mean, self.count + n
        self.var.copy_((self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total)

    def normalize(self, x, clip=float("inf")):
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-clip, clip).float()

    def denormalize(self, x):
        return (x * torch.sqrt(self.var + self.eps) + self.mean).float()


@torch.no_grad()
def gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Generalised advantage estimates, all inputs (H, N). next_values[t] is the value of the state after step t
    (of its final observation where the episode ended): it bootstraps truncations and the horizon end, while a
    termination bootstraps 0. An episode end also stops the sum over later steps."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        next_value = torch.where(terminated[t], torch.zeros_like(next_values[t]), next_values[t])
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * torch.where(terminated[t] | truncated[t], torch.zeros_like(running), running)
        advantages[t] = running
    return advantages


def kl_adaptive_lr(lr, kl, args):
    """Eq. (26), docs/algorithms.md#ppo: divide the learning rate by 1.5 when kl > 2 * target_kl, multiply it by
    1.5 when kl < target_kl / 2, keep it otherwise; always within [min_lr, max_lr]."""
    if kl > 2 * args.target_kl:
        return max(lr / 1.5, args.min_lr)
    if kl < 0.5 * args.target_kl:
        return min(lr * 1.5, args.max_lr)
    return lr


def main(args):
    # TRY NOT TO MODIFY: arguments, run directory, seeding, env (PPO needs no gradients from the simulator)
    args = complete_args(args)
    run_name, writer, checkpoint = start_run(args, SCRIPT, RESUME_MUST_MATCH)  # TensorBoard (+ wandb); --resume
    seed_everything(args.seed, args.torch_deterministic)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    env = make_env(args.env_id, args.num_envs, str(device), args.seed, requires_grad=False,
                   episode_length=args.episode_length, sim_workers=args.sim_workers, render=args.capture_video)
    env = RecordEpisodeStatistics(env)

    # ALGO LOGIC: networks, optimisers and rollout storage
    actor = Actor(env.num_obs, env.num_actions, args.actor_hidden).to(device)
    critic = Critic(env.num_obs, args.critic_hidden).to(device)
    obs_rms = RunningMeanStd(env.num_obs).to(device)
    value_rms = RunningMeanStd(()).to(device)  # the critic predicts value targets normalised by these statistics
    model = {"actor": actor, "critic": critic, "obs_rms": obs_rms, "value_rms": value_rms}  # what --save-model saves
    if args.eval_model:
        load_model(args.eval_model, SCRIPT, model)
    # fused: one kernel per optimiser step (CPU and CUDA), not a dozen small ops per parameter tensor
    actor_optimizer = torch.optim.AdamW(actor.parameters(), lr=args.learning_rate, eps=args.adam_eps, fused=True)
    critic_optimizer = torch.optim.AdamW(critic.parameters(), lr=args.learning_rate, eps=args.adam_eps, fused=True)
    normalize = functools.partial(obs_rms.normalize, clip=args.obs_clip)

    # the rollout, (horizon, num_envs, ...)
    H, N = args.horizon, args.num_envs
    obs_storage = torch.zeros((H, N, env.num_obs), device=device)
    actions = torch.zeros((H, N, env.num_actions), device=device)
    logprobs = torch.zeros((H, N), device=device)
    rewards = torch.zeros((H, N), device=device)
    values = torch.zeros((H, N), device=device)
    next_values = torch.zeros((H, N), device=device)
    terminations = torch.zeros((H, N), dtype=torch.bool, device=device)
    truncations = torch.zeros((H, N), dtype=torch.bool, device=device)

    # TRY NOT TO MODIFY: counters, progress line, checkpoint and resume
    start_iteration = global_step = 0
    nonfinite = NonFiniteGuard("gradient", args.max_skipped_updates, "lower --learning-rate")
    learning_rate = args.learning_rate
    report = ProgressReport(writer, args.num_iterations)
    obs = env.reset()
    # what a checkpoint holds, with the random generators and the counters saved below (envs/checkpoint.py)
    stateful = {**model, "actor_optimizer": actor_optimizer, "critic_optimizer": critic_optimizer,
                "env": env, "report": report, "nonfinite": nonfinite}
    checkpointer = Checkpointer(SCRIPT, run_name, args, stateful, writer)
    if checkpoint:
        p = checkpointer.restore(checkpoint)
        start_iteration, global_step = p["iteration"], p["global_step"]
        learning_rate = actor_optimizer.param_groups[0]["lr"]  # adapted to the KL so far
        obs = env.clear_grad()

    for iteration in range(start_iteration, args.num_iterations):
        # ALGO LOGIC: rollout of H steps per env, without gradients
        sim_start = time.time()
        with torch.no_grad():
            for t in range(H):
                obs_rms.update(obs)
                obs_storage[t] = normalize(obs)
                actions[t], logprobs[t] = actor.get_action(obs_storage[t])
                values[t] = value_rms.denormalize(critic(obs_storage[t]))
                # the sample is clamped to the action range; its log-prob is that of the unclamped sample
                obs, reward, terminated, truncated, info = env.step(actions[t].clamp(-1, 1))
                # value of the state after the step (its final observation where the episode ended)
                next_values[t] = value_rms.denormalize(critic(normalize(info["final_obs"])))
                rewards[t], terminations[t], truncations[t] = reward, terminated, truncated
                report.add_episodes(info, step=global_step + (t + 1) * N)  # the episodes that ended at this step
        global_step += N * H
        sim_s = time.time() - sim_start
        update_start = time.time()

        advantages = gae(rewards, values, next_values, terminations, truncations, args.gamma, args.gae_lambda)
        returns = advantages + values
        value_rms.update(returns.flatten())
        b_obs = obs_storage.reshape(-1, env.num_obs)
        b_actions = actions.reshape(-1, env.num_actions)
        b_logprobs = logprobs.flatten()
        b_advantages = advantages.flatten()
        if args.norm_adv:
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)
        b_targets = value_rms.normalize(returns.flatten())

        # Clipped surrogate and value regression over minibatches; the KL sets the learning rate (eqs. 25-26)
        clipfracs, approx_kls, entropies, pg_losses, value_losses = [], [], [], [], []
        finite = True
        for _ in range(args.update_epochs):
            b_inds = torch.randperm(args.batch_size, device=device)
            for start in range(0, args.batch_size, args.minibatch_size):
                mb_inds = b_inds[start : start + args.minibatch_size]
                mean, std = actor(b_obs[mb_inds])
                dist = torch.distributions.Normal(mean, std)
                logratio = dist.log_prob(b_actions[mb_inds]).sum(-1) - b_logprobs[mb_inds]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()  # k3 estimator of KL(pi_old || pi)
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
                mb_advantages = b_advantages[mb_inds]
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()
                entropy = dist.entropy().sum(-1).mean()
                actor_loss = pg_loss - args.ent_coef * entropy
                value_loss = ((critic(b_obs[mb_inds]) - b_targets[mb_inds]) ** 2).mean()

                actor_optimizer.zero_grad()
                critic_optimizer.zero_grad()
                actor_loss.backward()
                value_loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(actor.parameters(), args.max_grad_norm)
                critic_grad_norm = nn.utils.clip_grad_norm_(critic.parameters(), args.max_grad_norm)
                if torch.isfinite(grad_norm) and torch.isfinite(critic_grad_norm):
                    actor_optimizer.step()
                    critic_optimizer.step()
                else:
                    finite = False
                learning_rate = kl_adaptive_lr(learning_rate, approx_kl.item(), args)
                for optimizer in (actor_optimizer, critic_optimizer):
                    optimizer.param_groups[0]["lr"] = learning_rate
                approx_kls.append(approx_kl.item())
                entropies.append(entropy.item())
                pg_losses.append(pg_loss.item())
                value_losses.append(value_loss.item())
        nonfinite.check(finite, iteration)  # the minibatch steps with a non-finite gradient were skipped, reported
        update_s = time.time() - update_start

        # TRY NOT TO MODIFY: record the iteration, checkpoint
        writer.add_scalar("charts/learning_rate", learning_rate, global_step)
        writer.add_scalar("losses/actor_loss", np.mean(pg_losses), global_step)
        writer.add_scalar("losses/value_loss", np.mean(value_losses), global_step)
        writer.add_scalar("losses/grad_norm", grad_norm.item(), global_step)
        writer.add_scalar("losses/skipped_updates", nonfinite.skipped, global_step)
        writer.add_scalar("losses/approx_kl", np.mean(approx_kls), global_step)
        writer.add_scalar("losses/clipfrac", np.mean(clipfracs), global_step)
        writer.add_scalar("losses/entropy", np.mean(entropies), global_step)
        writer.add_scalar("perf/sim_s", sim_s, global_step)
        writer.add_scalar("perf/update_s", update_s, global_step)
        report.end_iteration(iteration, global_step)  # episodes, SPS and the progress line
        checkpointer.save_if_due(dict(iteration=iteration + 1, global_step=global_step))

    # TRY NOT TO MODIFY: save the model, evaluate it, close the logs
    checkpointer.close()
    if args.save_model:
        save_model(f"runs/{run_name}/{args.exp_name}.model", SCRIPT, args, model)
    eval_returns = final_evaluation(
        env, lambda obs, deterministic: actor.get_action(normalize(obs), deterministic)[0].clamp(-1, 1),
        args, run_name, writer, global_step)
    close_run(writer)  # TensorBoard, and wandb with --track
    return run_name, eval_returns


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as error:  # bad input, refused before any simulation starts
        sys.exit(f"error: {error}")
