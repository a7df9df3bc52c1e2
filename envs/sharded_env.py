"""`ShardedEnv`: N envs split over P independent Warp simulations of N/P envs, stepped concurrently on the CPU
(docs/usage.md#multi-core-simulation).

Warp runs CPU kernels serially on the calling thread, and ctypes releases the GIL for each kernel call, so P
Python threads, one per simulation, keep P cores busy. The forward pass of a step runs the P simulations'
physics in threads, and so does its backward pass: `ParallelPhysics` is one autograd node over the P shards
whose backward differentiates each shard's physics in its own thread. Everything else of a step (actions into
the control, observations, rewards, resets) runs shard after shard in the calling thread, under each shard's
own random generator. Warp keeps the tape that records launches in one global of the process; `thread_local_tape`
gives each thread its own, so that each simulation's launches land on its own tape.
"""
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import warp as wp

from .rewarped_loading import no_nonleaf_grad_warning

# While the shards step, a thread that returns from a kernel waits at most this long for the GIL (Python's
# default, 5 ms, leaves cores idle between the many short kernel launches of a simulation step)
SWITCH_INTERVAL_S = 1e-4


def shard_seed(seed, k):
    """The seed of shard k's random stream: the env's seed for shard 0 (so one simulation draws what it always
    did), a 32-bit number hashed from (seed, k) by numpy's SeedSequence for the others."""
    return seed if k == 0 else int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def thread_local_tape():
    """Make `wp.context.runtime.tape`, the tape every `wp.launch` records onto, a per-thread value."""
    runtime_class = type(wp.context.runtime)
    if isinstance(runtime_class.__dict__.get("tape"), property):
        return
    local = threading.local()
    runtime_class.tape = property(lambda self: getattr(local, "tape", None),
                                  lambda self, tape: setattr(local, "tape", tape))


class ParallelPhysics(torch.autograd.Function):
    """One simulation step of every shard, the shards in parallel threads, forward and backward.

    Inputs: each shard's state and control tensors, flattened in shard order; outputs: each shard's new state
    tensors, in the same order. Inside, each shard steps from detached copies of its inputs with its own graph,
    which the backward pass differentiates, shard by shard in parallel, with `torch.autograd.grad`.
    """

    @staticmethod
    def forward(ctx, env, *tensors):
        shards, inputs, offset = env.shards, [], 0
        for shard in shards:
            task = shard.task
            count = len(task.state_tensors) + len(task.control_tensors)
            leaves = [t.detach().requires_grad_() for t in tensors[offset:offset + count]]
            num_state = len(task.state_tensors)
            task.state_tensors, task.control_tensors = leaves[:num_state], leaves[num_state:]
            inputs.append(leaves)
            offset += count

        def physics(shard):
            with torch.enable_grad():
                shard.task.do_physics_step()
            return list(shard.task.state_tensors)

        outputs = env.map(physics)
        ctx.env, ctx.inputs, ctx.outputs = env, inputs, outputs
        return tuple(out.detach() for shard_outputs in outputs for out in shard_outputs)

    @staticmethod
    def backward(ctx, *grads):
        offsets = [0]
        for shard_outputs in ctx.outputs:
            offsets.append(offsets[-1] + len(shard_outputs))

        def differentiate(k):
            shard_grads = grads[offsets[k]:offsets[k + 1]]
            return torch.autograd.grad(ctx.outputs[k], ctx.inputs[k], shard_grads, allow_unused=True)

        per_shard = ctx.env.map(differentiate, range(len(ctx.outputs)))
        ctx.inputs = ctx.outputs = None  # the shards' graphs (and their Warp tapes) are not needed again
        return (None, *(grad for shard_grads in per_shard for grad in shard_grads))


class ShardedEnv:
    """The `DiffEnv` API over P `DiffEnv` shards of N/P envs each; env i lives in shard i // (N/P)."""

    def __init__(self, shards):
        thread_local_tape()
        self.shards = shards
        self.sim_workers = len(shards)
        first = shards[0]
        self.num_envs = sum(shard.num_envs for shard in shards)
        self.num_obs, self.num_actions = first.num_obs, first.num_actions
        self.max_episode_length, self.device = first.max_episode_length, first.device
        self.requires_grad = first.requires_grad
        self.task, self.metadata, self.render = first.task, first.metadata, first.render  # the env's first envs
        self.pool = ThreadPoolExecutor(max_workers=self.sim_workers)
        self.warm = False

    def map(self, function, items=None):
        """`function` of every shard (or item) in P threads, the results in order."""
        interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            return list(self.pool.map(function, self.shards if items is None else items))
        finally:
            sys.setswitchinterval(interval)

    def reset(self, seed=None):
        return torch.cat([shard.reset(None if seed is None else shard_seed(seed, k))
                          for k, shard in enumerate(self.shards)])

    def clear_grad(self):
        return torch.cat([shard.clear_grad() for shard in self.shards])

    def step(self, actions):
        if actions.shape != (self.num_envs, self.num_actions):
            raise ValueError(
                f"actions must have shape (num_envs, num_actions) = ({self.num_envs}, {self.num_actions}), "
                f"got {tuple(actions.shape)}"
            )
        for shard, shard_actions in zip(self.shards, actions.split(self.shards[0].num_envs)):
            shard.begin_step(shard_actions)
        with no_nonleaf_grad_warning():
            if not self.warm:  # Warp loads each kernel module at its first launch: once, from one thread
                for shard in self.shards:
                    shard.task.do_physics_step()
                self.warm = True
            elif self.requires_grad:
                tensors = [t for shard in self.shards for t in (*shard.task.state_tensors, *shard.task.control_tensors)]
                outputs = iter(ParallelPhysics.apply(self, *tensors))
                for shard in self.shards:
                    shard.task.state_tensors = [next(outputs) for _ in shard.task.state_tensors]
            else:
                self.map(lambda shard: shard.task.do_physics_step())
        results = [shard.end_step() for shard in self.shards]
        obs, reward, terminated, truncated = (torch.cat([result[i] for result in results]) for i in range(4))
        info = {"final_obs": torch.cat([result[4]["final_obs"] for result in results]),
                "nan_resets": sum(result[4]["nan_resets"] for result in results)}
        return obs, reward, terminated, truncated, info

    def state_dict(self):
        return {"sim_workers": self.sim_workers, "shards": [shard.state_dict() for shard in self.shards]}

    def load_state_dict(self, state):
        if state.get("sim_workers", 1) != self.sim_workers:
            raise ValueError(f"env state of {state.get('sim_workers', 1)} simulations cannot be loaded into an env "
                             f"of {self.sim_workers}; use --sim-workers {state.get('sim_workers', 1)}")
        for shard, shard_state in zip(self.shards, state["shards"]):
            shard.load_state_dict(shard_state)
