"""Checkpoints that resume a run bit for bit, and saved models (docs/usage.md#checkpoints-and-resuming).

A checkpoint holds the state dicts of the objects a script lists, the script's progress counters, the state of
every random generator, the arguments and the run name. It is written atomically, checked against the resuming
run before any simulation starts, and written when SIGTERM (a cluster's preemption) or Ctrl-C stops the run.
"""
import os
import random
import signal
import sys
from dataclasses import asdict

import numpy as np
import torch

from . import UsageError


def flag(name):
    """The command-line flag of an `Args` field: num_envs -> --num-envs."""
    return "--" + name.replace("_", "-")


def atomic_save(obj, path):
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)  # a crash while writing leaves the previous file intact


def _read(path, flag, what):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # missing, truncated, corrupt or not a torch file
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise UsageError(f"{flag} {path}: not a readable {what} ({reason})") from None


def read_checkpoint(path):
    checkpoint = _read(path, "--resume", "checkpoint")
    if not isinstance(checkpoint, dict) or not {"script", "args", "run_name"} <= set(checkpoint):
        raise UsageError(f"--resume {path}: not a checkpoint (a model saved with --save-model? evaluate it with "
                         "--eval-model)")
    return checkpoint


def save_model(path, script, args, modules):
    """--save-model: the `modules`' state dicts (name -> module), with the script and its arguments."""
    atomic_save({"script": script, "args": asdict(args), **{name: m.state_dict() for name, m in modules.items()}}, path)
    print(f"model saved to {path}")


def load_model(path, script, modules):
    """--eval-model: load the state of every one of the `modules` (name -> module) from the saved model."""
    model = read_model(path, script)
    for name, module in modules.items():
        module.load_state_dict(model[name])


def read_model(path, script):
    """A model that `script` saved with --save-model, read on the CPU; refuses anything else in one line."""
    if not os.path.isfile(path):
        raise UsageError(f"--eval-model {path}: no such file")
    model = _read(path, "--eval-model", "model")
    if not isinstance(model, dict) or "actor" not in model or "args" not in model:
        raise UsageError(f"--eval-model {path}: not a model saved with --save-model (a checkpoint? continue it "
                         "with --resume)")
    if model.get("script", script) != script:
        raise UsageError(f"--eval-model {path} is a model of {model['script']}; evaluate it with that script")
    return model


def check_checkpoint(args, script, must_match):
    """With --resume: the checkpoint, refused if another script saved it or saved it with other values of the
    `must_match` arguments (None without --resume)."""
    if args.resume is None:
        return None
    saved = read_checkpoint(args.resume)
    if saved["script"] != script:
        raise UsageError(f"--resume {args.resume} is a checkpoint of {saved['script']}; resume it with that script")
    for name in must_match:
        if saved["args"].get(name) != getattr(args, name):
            raise UsageError(f"--resume {args.resume} was saved with {flag(name)} {saved['args'].get(name)}, this run "
                             f"has {flag(name)} {getattr(args, name)}; run with the checkpoint's value")
    return saved


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


def wandb_run_id():
    """The id of the wandb run of --track, if one is active (a checkpoint keeps it, so that --resume continues it)."""
    wandb = sys.modules.get("wandb")
    return wandb.run.id if wandb is not None and wandb.run is not None else None


def finish_wandb_run():
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


class StopRequest:
    """SIGTERM (a cluster's preemption) or Ctrl-C: noted, so that the run can finish its iteration, checkpoint and
    exit; a second one exits at once."""

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


class Checkpointer:
    """`runs/{run_name}/checkpoint.pt` every `args.checkpoint_every` iterations (0: never) and when a signal asks
    the run to stop, which then closes `writer` and exits with the command that resumes it.

    `stateful` maps names to the objects with `state_dict()` / `load_state_dict()` that the checkpoint holds.
    """

    def __init__(self, script, run_name, args, stateful, writer):
        self.script, self.run_name, self.args, self.stateful, self.writer = script, run_name, args, stateful, writer
        self.path = f"runs/{run_name}/checkpoint.pt"
        self.stop = StopRequest()

    def restore(self, checkpoint):
        """Load every object's state and the random generators'; returns the progress counters saved with them."""
        for name, value in self.stateful.items():
            value.load_state_dict(checkpoint["state"][name])
        set_rng_states(checkpoint["rng"])
        return checkpoint["progress"]

    def save_if_due(self, progress):
        """After iteration `progress["iteration"]`: write the checkpoint if one is due, and exit if a signal came."""
        every, iteration = self.args.checkpoint_every, progress["iteration"]
        if not (self.stop.signal or (every and iteration % every == 0)):
            return
        atomic_save({"script": self.script, "run_name": self.run_name, "args": asdict(self.args),
                     "wandb_id": wandb_run_id(), "progress": progress, "rng": rng_states(),
                     "state": {name: value.state_dict() for name, value in self.stateful.items()}}, self.path)
        if self.stop.signal:
            self.writer.close()
            finish_wandb_run()
            sys.exit(f"stopped by {signal.Signals(self.stop.signal).name} after iteration {iteration}: run the same "
                     f"command with --resume {self.path} to continue")

    def close(self):
        """Training is over: the signals go back to their previous handlers."""
        self.stop.release()
