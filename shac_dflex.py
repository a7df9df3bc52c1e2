# SHAC, Short-Horizon Actor-Critic (Xu et al., ICLR 2022), in the improved variant of SAPO (Xing et al.,
# ICLR 2025) that the RPO paper compares against. Specification: SPEC.md §1-2; usage: README.md.
import importlib.util
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.utils.tensorboard import SummaryWriter

from envs import ENV_IDS, make_env
from envs.render import VideoRecorder, check_video_support

# Per-task settings of the papers (SPEC §1, §6); CartPole's small networks follow DiffRL's cart-pole config.
PAPER_NUM_ENVS = {"Hopper": 1024, "Ant": 128, "Humanoid": 64, "Anymal": 128, "HandReorient": 64, "CartPole": 64,
                  "RewarpedAnt": 128, "RewarpedHumanoid": 64}
ACTOR_HIDDEN = {"HandReorient": (512, 256), "CartPole": (64, 64)}
CRITIC_HIDDEN = {"HandReorient": (256, 256), "CartPole": (64, 64)}
DEFAULT_HIDDEN = (400, 200, 100)
SCRIPT = os.path.basename(__file__)
RESUME_MUST_MATCH = ("env_id", "num_envs", "horizon", "actor_hidden", "critic_hidden")


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
    """if toggled, track the run with Weights and Biases (needs `pip install wandb`)"""
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
    """write the whole training state to `runs/{run_name}/checkpoint.pt` every this many iterations (0: only
    when SIGTERM or Ctrl-C stops the run)"""
    resume: Optional[str] = None
    """path of a checkpoint.pt: continue that run where it stopped (run the same command with this added)"""

    # Algorithm specific arguments
    env_id: str = "Ant"
    """the id of the task, one of envs.ENV_IDS"""
    num_envs: Optional[int] = None
    """the number of parallel environments (default: the paper's value for the task)"""
    episode_length: Optional[int] = None
    """the task's time limit in steps (default: the task's own)"""
    low_memory: bool = False
    """keep only each simulation step's input for the backward pass and recompute the step there (less memory,
    a second forward pass)"""
    total_timesteps: int = 8_000_000
    """total env steps of the experiment"""
    horizon: int = 32
    """the number of steps of one rollout, backpropagated through (H)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    td_lambda: float = 0.95
    """the lambda of the critic's TD(lambda) targets"""
    actor_lr: float = 2e-3
    """the actor's initial learning rate (decayed linearly to `end_lr`)"""
    critic_lr: float = 5e-4
    """the critics' initial learning rate (decayed linearly to `end_lr`)"""
    end_lr: float = 1e-5
    """the learning rate reached at the last iteration"""
    betas: Tuple[float, float] = (0.7, 0.95)
    """AdamW's betas for actor and critics"""
    max_grad_norm: float = 0.5
    """the maximum norm of the actor's gradient"""
    critic_max_grad_norm: float = 0.5
    """the maximum norm of the critics' gradient"""
    critic_iterations: int = 16
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
    if args.env_id not in ENV_IDS:
        raise ValueError(f"unknown --env-id {args.env_id!r}; known ids: {', '.join(ENV_IDS)}")
    if args.track and importlib.util.find_spec("wandb") is None:
        raise ValueError("--track needs the wandb package: pip install wandb")
    if args.num_envs is None:
        args.num_envs = PAPER_NUM_ENVS[args.env_id]
    if args.eval_model is not None:
        if not os.path.isfile(args.eval_model):
            raise ValueError(f"--eval-model {args.eval_model}: no such file")
        saved = torch.load(args.eval_model, map_location="cpu", weights_only=True)["args"]
        if saved["env_id"] != args.env_id:
            raise ValueError(
                f"{args.eval_model} holds a model for {saved['env_id']}; run with --env-id {saved['env_id']}"
            )
        args.actor_hidden, args.critic_hidden = saved["actor_hidden"], saved["critic_hidden"]
    args.actor_hidden = tuple(args.actor_hidden or ACTOR_HIDDEN.get(args.env_id, DEFAULT_HIDDEN))
    args.critic_hidden = tuple(args.critic_hidden or CRITIC_HIDDEN.get(args.env_id, DEFAULT_HIDDEN))
    if args.capture_video:
        if not args.evaluate:
            raise ValueError("--capture-video renders the final evaluation: drop --no-evaluate")
        check_video_support()
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be 0 (off) or positive, got {args.checkpoint_every}")
    if args.resume is not None:
        if args.eval_model is not None:
            raise ValueError("--resume continues training and --eval-model skips it: give one of them")
        check_checkpoint(args)
    for name in ("num_envs", "horizon", "critic_iterations", "num_minibatches", "max_skipped_updates"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    args.batch_size = args.num_envs * args.horizon
    if args.eval_model is None and args.total_timesteps < args.batch_size:
        raise ValueError(
            f"--total-timesteps {args.total_timesteps} is less than one iteration (num_envs * horizon = "
            f"{args.batch_size}); raise it or lower --num-envs / --horizon"
        )
    if args.num_minibatches > args.batch_size:
        raise ValueError(f"--num-minibatches {args.num_minibatches} exceeds the {args.batch_size} samples per iteration")
    args.num_iterations = 0 if args.eval_model else args.total_timesteps // args.batch_size
    return args


def layer_init(layer):
    torch.nn.init.orthogonal_(layer.weight, 1.0)
    torch.nn.init.constant_(layer.bias, 0.0)
    return layer


def mlp(in_size, hidden):
    """Hidden layers Linear -> LayerNorm -> SiLU (SPEC §1)."""
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
        self.log_std = layer_init(nn.Linear(hidden[-1], num_actions))

    def forward(self, obs):
        h = self.trunk(obs)
        return self.mean(h), self.log_std(h).clamp(-5.0, 2.0)

    def get_action(self, obs, deterministic=False):
        """Reparameterised sample u = mu + sigma * eps, squashed a = tanh(u)."""
        mean, log_std = self(obs)
        if deterministic:
            return torch.tanh(mean)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u)


class Critic(nn.Module):
    def __init__(self, num_obs, hidden):
        super().__init__()
        self.net = nn.Sequential(mlp(num_obs, hidden), layer_init(nn.Linear(hidden[-1], 1)))

    def forward(self, obs):
        return self.net(obs).squeeze(-1)


class ObsNormalizer(nn.Module):
    """Running per-dimension mean and variance in float64 (SPEC §1), saved with the model."""

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


def critic_value(critics, obs, reduce):
    values = torch.stack([critic(obs) for critic in critics])
    return values.mean(0) if reduce == "mean" else values.min(0).values


def segment_returns(rewards, next_values, terminated, truncated, gamma):
    """Per env, the sum over segments of [sum_k gamma^k r_k + gamma^K * bootstrap] (SPEC §1, step 4).

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
    """TD(lambda) targets computed backwards over the horizon, same segments as `segment_returns` (SPEC §1)."""
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


@torch.no_grad()
def evaluate(env, actor, normalize, deterministic, seed, video_path=None):
    """Mean undiscounted return of one complete episode per env, from the initial states of `seed` (SPEC §6);
    with `video_path`, a video of the first envs."""
    video = VideoRecorder(env, video_path) if video_path else None
    obs = env.reset(seed=seed)
    returns = torch.zeros(env.num_envs, device=env.device)
    running = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
    for _ in range(env.max_episode_length):
        obs, reward, terminated, truncated, _ = env.step(actor.get_action(normalize(obs), deterministic))
        if video:
            video.capture()
        returns += reward * running
        running &= ~(terminated | truncated)
        if not running.any():
            break
    if video:
        video.close()
    return returns.mean().item()


def atomic_save(obj, path):
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)  # a crash while writing leaves the previous file intact


def save_model(path, args, actor, critics, obs_normalizer):
    model = {
        "args": asdict(args),
        "actor": actor.state_dict(),
        "critics": [critic.state_dict() for critic in critics],
        "obs_normalizer": obs_normalizer.state_dict(),
    }
    atomic_save(model, path)


def load_model(path, actor, critics, obs_normalizer):
    model = torch.load(path, map_location="cpu", weights_only=True)
    actor.load_state_dict(model["actor"])
    for critic, state in zip(critics, model["critics"]):
        critic.load_state_dict(state)
    obs_normalizer.load_state_dict(model["obs_normalizer"])


def read_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupt or not a checkpoint
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise ValueError(f"--resume {path}: not a readable checkpoint ({reason})") from None


def check_checkpoint(args):
    """Refuse a checkpoint of another script, task, number of envs, horizon or network size."""
    saved = read_checkpoint(args.resume)
    if saved["script"] != SCRIPT:
        raise ValueError(f"--resume {args.resume} is a checkpoint of {saved['script']}; resume it with that script")
    for name in RESUME_MUST_MATCH:
        if saved["args"][name] != getattr(args, name):
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"--resume {args.resume} was saved with {flag} {saved['args'][name]}, this run has "
                             f"{flag} {getattr(args, name)}; run with the checkpoint's value")


def rng_states():
    """Python's, numpy's (its key as a tensor: checkpoints hold tensors only), torch's and CUDA's generators."""
    numpy = np.random.get_state()
    return {"python": random.getstate(), "numpy": (numpy[0], torch.from_numpy(numpy[1].astype(np.int64)), *numpy[2:]),
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(rng):
    random.setstate(rng["python"])
    np.random.set_state((rng["numpy"][0], rng["numpy"][1].numpy().astype(np.uint32), *rng["numpy"][2:]))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])


class StopRequest:
    """SIGTERM (a cluster's preemption) or Ctrl-C: finish the iteration, checkpoint and exit; a second one
    exits at once."""

    def __init__(self):
        self.signal = None
        self.previous = {signum: signal.signal(signum, self.handle) for signum in (signal.SIGTERM, signal.SIGINT)}

    def release(self):
        """Give the signals back to their previous handlers (training is over)."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def handle(self, signum, frame):
        if self.signal is not None:
            sys.exit(f"{signal.Signals(signum).name} again: stopped without a checkpoint")
        self.signal = signum


def main(args):
    args = complete_args(args)
    checkpoint = read_checkpoint(args.resume) if args.resume else None
    run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    if checkpoint:
        run_name = checkpoint["run_name"]
    if args.track:
        import wandb

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            sync_tensorboard=True,
            config=vars(args),
            name=run_name,
            save_code=True,
        )
    writer = SummaryWriter(f"runs/{run_name}")  # a resumed run appends to its own directory
    if checkpoint is None:
        writer.add_text(
            "hyperparameters",
            "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])),
        )

    # seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    # env setup
    env = make_env(args.env_id, args.num_envs, str(device), args.seed, episode_length=args.episode_length,
                   low_memory=args.low_memory)

    actor = Actor(env.num_obs, env.num_actions, args.actor_hidden).to(device)
    critics = nn.ModuleList([Critic(env.num_obs, args.critic_hidden) for _ in range(2)]).to(device)
    obs_normalizer = ObsNormalizer(env.num_obs).to(device)
    if args.eval_model:
        load_model(args.eval_model, actor, critics, obs_normalizer)
    # fused: one kernel per optimiser step (CPU and CUDA), not a dozen small ops per parameter tensor
    actor_optimizer = torch.optim.AdamW(actor.parameters(), lr=args.actor_lr, betas=args.betas, fused=True)
    critic_optimizer = torch.optim.AdamW(critics.parameters(), lr=args.critic_lr, betas=args.betas, fused=True)

    # storage for the critic update, (horizon, num_envs, ...)
    H, N = args.horizon, args.num_envs
    obs_storage = torch.zeros((H, N, env.num_obs), device=device)
    rewards = torch.zeros((H, N), device=device)
    next_values = torch.zeros((H, N), device=device)
    terminations = torch.zeros((H, N), dtype=torch.bool, device=device)
    truncations = torch.zeros((H, N), dtype=torch.bool, device=device)

    global_step = 0
    start_time = last_print = time.time()
    skipped_in_a_row = skipped_updates = 0
    episode_return = torch.zeros(N, device=device)
    episode_length = torch.zeros(N, device=device)
    finished = []  # (env step, return, length) of every episode that ended in this iteration
    returns_since_print, episodes_ended = [], 0  # for the progress line
    obs = env.reset()
    stateful = {"actor": actor, "critics": critics, "obs_normalizer": obs_normalizer,
                "actor_optimizer": actor_optimizer, "critic_optimizer": critic_optimizer, "env": env}
    checkpoint_path, stop, start_iteration = f"runs/{run_name}/checkpoint.pt", StopRequest(), 0
    if checkpoint:
        for name, value in stateful.items():
            value.load_state_dict(checkpoint["state"][name])
        set_rng_states(checkpoint["rng"])
        p = checkpoint["progress"]
        start_iteration, global_step, skipped_in_a_row, skipped_updates = (
            p["iteration"], p["global_step"], p["skipped_in_a_row"], p["skipped_updates"])
        episode_return, episode_length = p["episode_return"].to(device), p["episode_length"].to(device)
        returns_since_print, episodes_ended = p["returns_since_print"], p["episodes_ended"]
        start_time = time.time() - p["elapsed"]
        obs = env.clear_grad()
    resumed = f" (resumed after iteration {start_iteration} of {args.num_iterations})" if checkpoint else ""
    print(f"run directory: runs/{run_name}{resumed}", flush=True)  # benchmark/sweep.py resumes jobs from it

    for iteration in range(start_iteration, args.num_iterations):
        frac = iteration / args.num_iterations
        actor_lr = args.actor_lr + frac * (args.end_lr - args.actor_lr)
        actor_optimizer.param_groups[0]["lr"] = actor_lr
        critic_optimizer.param_groups[0]["lr"] = args.critic_lr + frac * (args.end_lr - args.critic_lr)

        # Rollout of H steps, differentiable through the simulator (SPEC §1, steps 1-3)
        sim_start = time.time()
        obs = env.clear_grad()
        normalize = obs_normalizer.frozen()
        step_rewards, step_values = [], []
        for t in range(H):
            obs_normalizer.update(obs)
            obs_storage[t] = normalize(obs).detach()
            action = actor.get_action(normalize(obs))
            obs, reward, terminated, truncated, info = env.step(action)
            # value of the state after the step (its final observation where the episode ended)
            step_values.append(critic_value(critics, normalize(info["final_obs"]), args.critic_reduce))
            step_rewards.append(reward)
            terminations[t], truncations[t] = terminated, truncated

            episode_return += reward.detach()
            episode_length += 1
            ended = terminated | truncated
            if ended.any():
                step = global_step + (t + 1) * N  # the env step at which these episodes ended
                finished += [(step, episodic_return, episodic_length) for episodic_return, episodic_length
                             in zip(episode_return[ended].tolist(), episode_length[ended].tolist())]
                episode_return[ended] = 0
                episode_length[ended] = 0
        global_step += N * H
        step_rewards, step_values = torch.stack(step_rewards), torch.stack(step_values)
        rewards[:], next_values[:] = step_rewards.detach(), step_values.detach()

        # Actor: one step on -J, the short-horizon objective of Eq. (4), J = 1/(N*H) * sum of segment returns
        # (SPEC §1, step 4)
        objective = segment_returns(step_rewards, step_values, terminations, truncations, args.gamma).sum() / (N * H)
        actor_loss = -objective
        actor_optimizer.zero_grad()
        actor_loss.backward()
        # Free this rollout's graph now, not when these names are next assigned: its nodes keep every step's
        # simulator tape and states alive (backward frees the saved tensors, not the nodes)
        actor_loss = actor_loss.detach()
        del objective, step_rewards, step_values, obs, action, reward, info
        sim_s = time.time() - sim_start
        update_start = time.time()
        grad_norm = nn.utils.clip_grad_norm_(actor.parameters(), args.max_grad_norm)
        if torch.isfinite(grad_norm):
            actor_optimizer.step()
            skipped_in_a_row = 0
        else:
            skipped_updates += 1
            skipped_in_a_row += 1
            if skipped_updates == 1:
                print(f"warning: non-finite actor gradient at iteration {iteration}; update skipped", file=sys.stderr)
            if skipped_in_a_row >= args.max_skipped_updates:
                raise RuntimeError(
                    f"actor gradient non-finite for {skipped_in_a_row} iterations in a row; "
                    "lower --actor-lr or --horizon, or check the task for NaN states"
                )

        # Critics: TD(lambda) targets, MSE of both critics, minibatches over the flattened rollout
        targets = td_lambda_targets(rewards, next_values, terminations, truncations, args.gamma, args.td_lambda)
        targets = targets.flatten()
        b_obs = obs_storage.reshape(-1, env.num_obs)
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
                if torch.isfinite(critic_grad_norm):
                    critic_optimizer.step()
                else:
                    skipped_updates += 1
                value_losses.append(value_loss.item())
        update_s = time.time() - update_start

        sps = int(global_step / (time.time() - start_time))
        writer.add_scalar("charts/learning_rate", actor_lr, global_step)
        writer.add_scalar("charts/SPS", sps, global_step)
        writer.add_scalar("losses/actor_loss", actor_loss.item(), global_step)
        writer.add_scalar("losses/value_loss", np.mean(value_losses), global_step)
        writer.add_scalar("losses/grad_norm", grad_norm.item(), global_step)
        writer.add_scalar("losses/skipped_updates", skipped_updates, global_step)
        writer.add_scalar("perf/sim_s", sim_s, global_step)
        writer.add_scalar("perf/update_s", update_s, global_step)
        for step, episodic_return, episodic_length in finished:  # one point per episode, as CleanRL logs them
            writer.add_scalar("charts/episodic_return", episodic_return, step)
            writer.add_scalar("charts/episodic_length", episodic_length, step)
        writer.add_scalar("charts/episodes_ended", len(finished), global_step)
        returns_since_print += [episodic_return for _, episodic_return, _ in finished]
        episodes_ended += len(finished)
        finished = []
        if time.time() - last_print > 5 or iteration == args.num_iterations - 1:
            if returns_since_print:
                returns = f"episodic_return={np.mean(returns_since_print):.2f} over {len(returns_since_print)} episodes"
            else:
                returns = "no episode ended " + ("since the last line" if episodes_ended else "yet")
            elapsed = time.time() - start_time
            eta = elapsed / (iteration + 1) * (args.num_iterations - iteration - 1)
            print(
                f"iteration {iteration + 1}/{args.num_iterations}  global_step={global_step}  SPS={sps}  {returns}  "
                f"elapsed {elapsed / 60:.1f} min  ETA {eta / 60:.1f} min"
            )
            last_print = time.time()
            returns_since_print = []

        if stop.signal or (args.checkpoint_every and (iteration + 1) % args.checkpoint_every == 0):
            progress = dict(iteration=iteration + 1, global_step=global_step, skipped_in_a_row=skipped_in_a_row,
                            skipped_updates=skipped_updates, episode_return=episode_return,
                            episode_length=episode_length, returns_since_print=returns_since_print,
                            episodes_ended=episodes_ended, elapsed=time.time() - start_time)
            atomic_save({"script": SCRIPT, "run_name": run_name, "args": asdict(args),
                         "progress": progress, "rng": rng_states(),
                         "state": {name: value.state_dict() for name, value in stateful.items()}}, checkpoint_path)
            if stop.signal:
                writer.close()
                sys.exit(f"stopped by {signal.Signals(stop.signal).name} after iteration {iteration + 1}: run the "
                         f"same command with --resume {checkpoint_path} to continue")

    stop.release()
    if args.save_model:
        model_path = f"runs/{run_name}/{args.exp_name}.model"
        save_model(model_path, args, actor, critics, obs_normalizer)
        print(f"model saved to {model_path}")

    eval_returns = {}
    if args.evaluate:
        normalize = obs_normalizer.frozen()
        for mode in ("deterministic", "stochastic"):
            video_path = f"videos/{run_name}/eval_{mode}.mp4" if args.capture_video else None
            eval_returns[mode] = evaluate(env, actor, normalize, mode == "deterministic", args.seed, video_path)
            writer.add_scalar(f"eval/{mode}_return", eval_returns[mode], global_step)
        print(f"eval: deterministic_return={eval_returns['deterministic']:.2f}  "
              f"stochastic_return={eval_returns['stochastic']:.2f}")
    writer.close()
    return run_name, eval_returns


if __name__ == "__main__":
    args = tyro.cli(Args)
    try:
        complete_args(args)
    except ValueError as error:
        sys.exit(f"error: {error}")
    main(args)
