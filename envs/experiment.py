"""What every script does around its algorithm (docs/usage.md): the argument checks they share, the run's
TensorBoard (and wandb) logs, the progress line and the final evaluation."""
import importlib.util
import math
import random
import sys
import time

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from . import UsageError, check_env_id, check_sim_workers
from .checkpoint import check_checkpoint, finish_wandb_run, flag, read_model
from .wrappers import RecordVideo, check_video_support

# the defaults of --num-envs and --total-timesteps for your own env (docs/env_contract.md)
OWN_ENV_NUM_ENVS, OWN_ENV_TIMESTEPS = 64, 1_000_000


def check_run_args(args, script, paper_num_envs, paper_timesteps):
    """The checks of the options every script has, before any simulation starts. --num-envs and --total-timesteps
    default to the paper's values for the task (`paper_num_envs`, `paper_timesteps`); with --eval-model, the
    network sizes become the saved model's."""
    check_env_id(args.env_id)
    if args.num_envs is None:
        args.num_envs = paper_num_envs.get(args.env_id, OWN_ENV_NUM_ENVS)
    if args.total_timesteps is None:
        args.total_timesteps = paper_timesteps.get(args.env_id, OWN_ENV_TIMESTEPS)
    check_ranges(args, at_least_one=("num_envs",))
    check_sim_workers(args.sim_workers, args.num_envs, "cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    if args.track and importlib.util.find_spec("wandb") is None:
        raise UsageError("--track needs the wandb package: pip install wandb")
    if args.eval_model is not None:
        if args.resume is not None:
            raise UsageError("--resume continues training and --eval-model skips it: give one of them")
        saved = read_model(args.eval_model, script)["args"]
        if saved["env_id"] != args.env_id:
            raise UsageError(f"--eval-model {args.eval_model} holds a model for {saved['env_id']}; run with "
                             f"--env-id {saved['env_id']}")
        args.actor_hidden, args.critic_hidden = saved["actor_hidden"], saved["critic_hidden"]  # the model's sizes
    if args.capture_video:
        if not args.evaluate:
            raise UsageError("--capture-video renders the final evaluation: drop --no-evaluate")
        check_video_support()
    check_ranges(args, non_negative=("seed", "checkpoint_every"), at_least_one=("episode_length",))


RANGES = {  # kind: (test, what the error says)
    "at_least_one": (lambda x: x >= 1, "at least 1"),
    "positive": (lambda x: x > 0, "positive"),
    "non_negative": (lambda x: x >= 0, "0 or more"),
    "fraction": (lambda x: 0 <= x <= 1, "in [0, 1]"),
    "below_one": (lambda x: 0 <= x < 1, "in [0, 1)"),
}


def check_ranges(args, **names_by_kind):
    """Refuse a numeric option (or any element of a tuple option) outside its range, e.g.
    `check_ranges(args, positive=("actor_lr",), fraction=("gamma",))`; None (a default to come) passes."""
    for kind, names in names_by_kind.items():
        test, expected = RANGES[kind]
        for name in names:
            value = getattr(args, name)
            values = value if isinstance(value, tuple) else (value,)
            if value is not None and not all(math.isfinite(x) and test(x) for x in values):
                raise UsageError(f"{flag(name)} must be {expected}, got {value}")


def seed_everything(seed, torch_deterministic):
    """Python's, numpy's and torch's generators (the env has its own, seeded by `make_env`)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic


def count_iterations(args):
    """total_timesteps // batch_size (0 with --eval-model); refuses a run shorter than one iteration."""
    if args.eval_model:
        return 0
    if args.total_timesteps < args.batch_size:
        raise UsageError(f"--total-timesteps {args.total_timesteps} is less than one iteration (num_envs * horizon = "
                         f"{args.batch_size}); raise it or lower --num-envs / --horizon")
    return args.total_timesteps // args.batch_size


class WandbMirroredWriter(SummaryWriter):
    """A TensorBoard writer whose every scalar also goes to the wandb run of --track, one history row per point
    with its env step as `global_step`. (wandb's own TensorBoard sync keeps one value per tag and step, so the
    returns of episodes that end at the same step would collapse into one.)"""

    def add_scalar(self, tag, scalar_value, global_step=None, *args, **kwargs):
        super().add_scalar(tag, scalar_value, global_step, *args, **kwargs)
        import wandb

        wandb.log({tag: scalar_value, "global_step": global_step})


def start_run(args, script, must_match):
    """The run's name, its TensorBoard writer on `runs/{run_name}` (mirrored to wandb with --track) and the
    checkpoint that --resume names (None without it), refused unless `script` saved it with the same values of the
    `must_match` arguments: a resumed run keeps its name and appends to its directory."""
    checkpoint = check_checkpoint(args, script, must_match)
    run_name = f"{args.env_id.replace(':', '.')}__{args.exp_name}__{args.seed}__{int(time.time())}"  # module:Class
    if checkpoint:
        run_name = checkpoint["run_name"]
    writer_class = SummaryWriter
    if args.track:  # a resumed run continues its wandb run
        import wandb

        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=vars(args), name=run_name,
                   save_code=True, id=checkpoint.get("wandb_id") if checkpoint else None,
                   resume="allow" if checkpoint else None)
        wandb.define_metric("global_step")
        wandb.define_metric("*", step_metric="global_step")  # plotted against env steps, as in TensorBoard
        writer_class = WandbMirroredWriter
    writer = writer_class(f"runs/{run_name}")
    if checkpoint is None:
        table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
        writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    resumed = ""
    if checkpoint:
        resumed = f" (resumed after iteration {checkpoint['progress']['iteration']} of {args.num_iterations})"
    print(f"run directory: runs/{run_name}{resumed}", flush=True)  # benchmark/sweep.py resumes jobs from it
    return run_name, writer, checkpoint


class ProgressReport:
    """Logs every finished episode (charts/episodic_return and charts/episodic_length, one point each at the env
    step it ended, as CleanRL does), charts/episodes_ended and charts/SPS per iteration, and prints a progress
    line every 5 s and after the last iteration. Its state travels with a checkpoint."""

    def __init__(self, writer, num_iterations):
        self.writer, self.num_iterations = writer, num_iterations
        self.start_time = self.last_print = time.time()
        self.returns_since_print, self.episodes_ended, self.in_iteration = [], 0, 0

    def add_episodes(self, info, step):
        """The episodes that `RecordEpisodeStatistics` reports in `info` (if any), ended at env step `step`."""
        if "episode" not in info:
            return
        ended = info["_episode"]
        for episodic_return, episodic_length in zip(info["episode"]["r"][ended].tolist(),
                                                    info["episode"]["l"][ended].tolist()):
            self.writer.add_scalar("charts/episodic_return", episodic_return, step)
            self.writer.add_scalar("charts/episodic_length", episodic_length, step)
            self.returns_since_print.append(episodic_return)
        self.in_iteration += int(ended.sum())

    def end_iteration(self, iteration, global_step):
        elapsed = time.time() - self.start_time
        sps = int(global_step / elapsed)
        self.writer.add_scalar("charts/SPS", sps, global_step)
        self.writer.add_scalar("charts/episodes_ended", self.in_iteration, global_step)
        self.episodes_ended += self.in_iteration
        self.in_iteration = 0
        if time.time() - self.last_print > 5 or iteration == self.num_iterations - 1:
            if self.returns_since_print:
                returns = (f"episodic_return={np.mean(self.returns_since_print):.2f} over "
                           f"{len(self.returns_since_print)} episodes")
            else:
                returns = "no episode ended " + ("since the last line" if self.episodes_ended else "yet")
            eta = elapsed / (iteration + 1) * (self.num_iterations - iteration - 1)
            print(f"iteration {iteration + 1}/{self.num_iterations}  global_step={global_step}  SPS={sps}  {returns}  "
                  f"elapsed {elapsed / 60:.1f} min  ETA {eta / 60:.1f} min")
            self.last_print = time.time()
            self.returns_since_print = []

    def state_dict(self):
        return {"returns_since_print": self.returns_since_print, "episodes_ended": self.episodes_ended,
                "elapsed": time.time() - self.start_time}

    def load_state_dict(self, state):
        self.returns_since_print, self.episodes_ended = state["returns_since_print"], state["episodes_ended"]
        self.start_time = time.time() - state["elapsed"]


@torch.no_grad()
def evaluate(env, policy, seed, video_path=None):
    """Mean undiscounted return of one complete episode per env, from the initial states of `seed`, with the
    actions `policy(obs)`; with `video_path`, an MP4 of the first envs (docs/usage.md#videos)."""
    if video_path:
        env = RecordVideo(env, video_path)
    obs = env.reset(seed=seed)
    returns = torch.zeros(env.num_envs, device=env.device)
    running = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
    for _ in range(env.max_episode_length):
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        returns += reward * running
        running &= ~(terminated | truncated)
        if not running.any():
            break
    if video_path:
        env.close()
    return returns.mean().item()


def close_run(writer):
    """Flush and close the TensorBoard log, then finish the wandb run that mirrors it (if any)."""
    writer.close()
    finish_wandb_run()


def final_evaluation(env, policy, args, run_name, writer, global_step):
    """Deterministic and stochastic `evaluate` of `policy(obs, deterministic)`, logged as eval/{mode}_return and
    printed; videos under videos/{run_name}/ with --capture-video; nothing with --no-evaluate."""
    eval_returns = {}
    if not args.evaluate:
        return eval_returns
    for mode in ("deterministic", "stochastic"):
        video_path = f"videos/{run_name}/eval_{mode}.mp4" if args.capture_video else None
        eval_returns[mode] = evaluate(env, lambda obs: policy(obs, mode == "deterministic"), args.seed, video_path)
        writer.add_scalar(f"eval/{mode}_return", eval_returns[mode], global_step)
        if video_path and args.track:
            import wandb

            wandb.log({f"videos/eval_{mode}": wandb.Video(video_path, format="mp4"), "global_step": global_step})
    print(f"eval: deterministic_return={eval_returns['deterministic']:.2f}  "
          f"stochastic_return={eval_returns['stochastic']:.2f}")
    return eval_returns


class NonFiniteGuard:
    """Updates skipped for a non-finite gradient of `what` (an actor's iteration, a critics' minibatch) are counted
    (`skipped`, which the scripts log), the first is reported on stderr, and `max_in_a_row` in a row abort the run
    with `advice`. Its state travels with a checkpoint."""

    def __init__(self, what, max_in_a_row, advice):
        self.what, self.max_in_a_row, self.advice = what, max_in_a_row, advice
        self.skipped = self.in_a_row = 0
        self.reported = False

    def check(self, finite, iteration):
        """Whether this update's gradient was finite; counts, reports or aborts when it was not."""
        if finite:
            self.in_a_row = 0
            return True
        self.skipped += 1
        self.in_a_row += 1
        if not self.reported:
            self.reported = True
            print(f"warning: non-finite {self.what} at iteration {iteration}; its update skipped", file=sys.stderr)
        if self.in_a_row >= self.max_in_a_row:
            raise RuntimeError(f"{self.what} non-finite in {self.in_a_row} updates in a row; {self.advice}, or "
                               "check the task for NaN states")
        return False

    def state_dict(self):
        return {"skipped": self.skipped, "in_a_row": self.in_a_row}

    def load_state_dict(self, state):
        self.skipped, self.in_a_row = state["skipped"], state["in_a_row"]
