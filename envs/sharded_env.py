"""`ShardedEnv`: N envs split over P Warp simulations of N/P envs, each in a process of its own, stepped
concurrently on the CPU (docs/usage.md#multi-core-simulation).

Warp runs a CPU simulation on the thread that launches its kernels, and between kernels a step is Python that
holds the interpreter's lock, so threads of one process overlap little. Here each simulation is a `DiffEnv` of
N/P envs in a worker process (`serve`), which steps, observes, rewards and resets its envs under its own random
generator. The calling process sends each step's actions and receives observations, rewards and episode ends.
For BPTT, each step is one autograd node, `ShardStep`: its backward sends the gradients of the step's outputs
to the workers, and each worker differentiates that step's graph, which starts from detached leaves of the
task's tensors with autograd history (the simulator state, the last observation), and keeps the gradients of
those leaves for the step before. A link tensor chains the nodes, so that
autograd differentiates the steps from the last to the first.
"""
import gc
import multiprocessing
import signal
import traceback
import weakref

import numpy as np
import torch


def shard_seed(seed, k):
    """The seed of shard k's random stream: the env's seed for shard 0 (so one simulation draws what it always
    did), a 32-bit number hashed from (seed, k) by numpy's SeedSequence for the others."""
    return seed if k == 0 else int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def cut_history(task):
    """Replace every tensor of `task` that has autograd history (the simulator state, the last observation that
    the next reward reads, ...), also inside its lists and dicts, by a detached leaf that requires grad.
    Returns the tensors replaced and their leaves, in the same order."""
    leaves = {}  # id(tensor) -> (tensor, leaf): a tensor held twice gets one leaf

    def cut(value):
        if not isinstance(value, torch.Tensor) or value.grad_fn is None:
            return value
        if id(value) not in leaves:
            leaves[id(value)] = (value, value.detach().requires_grad_())
        return leaves[id(value)][1]

    for name, value in list(vars(task).items()):
        if type(value) in (list, tuple):
            new = type(value)(cut(v) for v in value)
            changed = any(a is not b for a, b in zip(new, value))
        elif type(value) is dict:
            new = {key: cut(v) for key, v in value.items()}
            changed = any(new[key] is not value[key] for key in value)
        else:
            new = cut(value)
            changed = new is not value
        if changed:  # a container without such tensors stays the object it is
            setattr(task, name, new)
    return [tensor for tensor, _ in leaves.values()], [leaf for _, leaf in leaves.values()]


class Shard:
    """A worker's side: its `DiffEnv` and, for BPTT, the graph of every step since the last `clear_grad`."""

    def __init__(self, env):
        self.env = env
        self.forget()

    def forget(self):
        # per step: [inputs: action, leaves of the task's tensors; outputs: obs, reward, final obs; carried: the
        # task's tensors at its end, which the next step's leaves replaced]
        self.steps = []
        self.carried_grads = {}  # step index -> gradients of its carried tensors, from the step after it
        self.chained = False  # whether the next recorded step continues the last one's graph

    def reset(self, seed):
        self.forget()
        return self.env.reset(seed).detach().numpy()

    def clear_grad(self):
        self.forget()
        return self.env.clear_grad().detach().numpy()

    def step(self, actions, record):
        actions = torch.from_numpy(actions)
        if record:
            carried, leaves = cut_history(self.env.task)
            if self.chained and self.steps[-1] is not None:
                self.steps[-1][2] = carried
            inputs = [actions.requires_grad_(), *leaves]
        with torch.set_grad_enabled(record):
            obs, reward, terminated, truncated, info = self.env.step(actions)
        if record:
            self.steps.append([inputs, [obs, reward, info["final_obs"]], []])
        self.chained = record
        outputs = (obs, reward, terminated, truncated, info["final_obs"])
        return [x.detach().numpy() for x in outputs] + [int(info["nan_resets"])]

    def backward(self, index, grads):
        """The action-gradient of step `index` from its outputs' gradients and its carried tensors' (from step
        index + 1)."""
        inputs, outputs, carried = self.steps[index]
        self.steps[index] = None  # each step is differentiated once
        outputs = outputs + carried
        grads = [None if g is None else torch.from_numpy(g) for g in grads]
        grads += self.carried_grads.pop(index, [None] * len(carried))
        pairs = [(out, grad) for out, grad in zip(outputs, grads) if grad is not None and out.requires_grad]
        input_grads = [None] * len(inputs)
        if pairs:
            input_grads = torch.autograd.grad([out for out, _ in pairs], inputs, [grad for _, grad in pairs],
                                              allow_unused=True)
        if index > 0:
            self.carried_grads[index - 1] = list(input_grads[1:])
        return None if input_grads[0] is None else input_grads[0].numpy()

    def state_dict(self):
        return self.env.state_dict()

    def load_state_dict(self, state):
        self.forget()
        self.env.load_state_dict(state)

    def render(self):
        return self.env.render()

    def call(self, function):
        return function(self.env)


def serve(connection, make_env_kwargs):
    """A worker process: build the shard's env, then carry out the calling process's commands until it ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the calling process stops the run (after its checkpoint)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)
    from . import make_env

    try:
        shard = Shard(make_env(**make_env_kwargs))
        gc.collect()
        gc.freeze()  # Warp's kernels and the env, ~400k objects, out of the cycle collector's full passes
        env = shard.env
        reply = ("ok", (env.num_obs, env.num_actions, env.max_episode_length, env.requires_grad, env.metadata))
    except Exception as error:
        shard, reply = None, ("error", with_traceback_note(error))
    connection.send(reply)
    while shard is not None:
        try:
            command, args = connection.recv()
        except EOFError:  # the calling process has ended
            return
        try:
            reply = ("ok", getattr(shard, command)(*args))
        except Exception as error:
            reply = ("error", with_traceback_note(error))
        connection.send(reply)


def with_traceback_note(error):
    error.add_note("in a simulation's worker process:\n" + "".join(traceback.format_exception(error)))
    return error


def stop(connections, processes):
    for connection in connections:
        connection.close()  # a worker ends when its connection does
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()


class ShardStep(torch.autograd.Function):
    """One step of every shard: the actions in; observations, rewards and final observations out, all
    differentiable, and the link to the next step's node."""

    @staticmethod
    def forward(ctx, env, link, actions):
        ctx.env, ctx.horizon, ctx.index = env, env.horizon, env.recorded
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None, and the workers skip it
        env.recorded += 1
        obs, reward, terminated, truncated, final_obs = env.send_step(actions, record=True)
        ctx.mark_non_differentiable(terminated, truncated)
        return obs, reward, final_obs, link.detach().clone(), terminated, truncated

    @staticmethod
    def backward(ctx, grad_obs, grad_reward, grad_final_obs, grad_link, *_):
        env = ctx.env
        if ctx.horizon != env.horizon:
            raise RuntimeError("backward through env steps taken before the last clear_grad(), reset() or "
                               "load_state_dict(): differentiate a horizon before starting the next")
        size = env.num_envs // env.sim_workers

        def per_shard(grad):
            return [None] * env.sim_workers if grad is None else [g.numpy() for g in grad.split(size)]

        grads = zip(per_shard(grad_obs), per_shard(grad_reward), per_shard(grad_final_obs))
        action_grads = env.call_all("backward", [(ctx.index, list(shard_grads)) for shard_grads in grads])
        action_grads = [torch.zeros(size, env.num_actions) if g is None else torch.from_numpy(g)
                        for g in action_grads]
        return None, torch.zeros(()), torch.cat(action_grads)


class ShardedEnv:
    """The `DiffEnv` API over P `DiffEnv` shards of N/P envs each, one per worker process (CPU); env i lives in
    shard i // (N/P). `make_env_kwargs`: the `make_env` arguments of each shard."""

    def __init__(self, make_env_kwargs):
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or Warp state forked
        self.connections, self.processes = [], []
        self.sim_workers = len(make_env_kwargs)
        for kwargs in make_env_kwargs:
            connection, worker_end = context.Pipe()
            process = context.Process(target=serve, args=(worker_end, kwargs), daemon=True)
            process.start()
            worker_end.close()
            self.connections.append(connection)
            self.processes.append(process)
        weakref.finalize(self, stop, self.connections, self.processes)
        self.num_envs = sum(kwargs["num_envs"] for kwargs in make_env_kwargs)
        self.device = torch.device("cpu")
        first = self.receive_all()[0]
        self.num_obs, self.num_actions, self.max_episode_length, self.requires_grad, self.metadata = first
        self.horizon = 0
        self.start_horizon()

    def receive_all(self, shards=None):
        """The replies of every shard (or of `shards`), all received before an error in one is raised."""
        replies = []
        for k in range(self.sim_workers) if shards is None else shards:
            try:
                replies.append(self.connections[k].recv())
            except EOFError:
                replies.append(("error", RuntimeError(f"the worker process of simulation {k} ended (exit code "
                                                      f"{self.processes[k].exitcode})")))
        for status, value in replies:
            if status == "error":
                raise value
        return [value for _, value in replies]

    def call_all(self, command, args):
        """`command` with `args[k]` in every shard's worker at once; the results in shard order."""
        for connection, shard_args in zip(self.connections, args):
            connection.send((command, shard_args))
        return self.receive_all()

    def start_horizon(self):
        """Drop the recorded steps: a new horizon's first node links to a fresh leaf."""
        self.horizon += 1
        self.recorded = 0
        self.link = torch.zeros((), requires_grad=True)

    def send_step(self, actions, record):
        size = self.num_envs // self.sim_workers
        replies = self.call_all("step", [(a.numpy(), record) for a in actions.detach().split(size)])
        self.nan_resets = torch.tensor(sum(reply[5] for reply in replies))
        return tuple(torch.cat([torch.from_numpy(reply[i]) for reply in replies]) for i in range(5))

    def reset(self, seed=None):
        self.start_horizon()
        seeds = [None if seed is None else shard_seed(seed, k) for k in range(self.sim_workers)]
        return torch.cat([torch.from_numpy(obs) for obs in self.call_all("reset", [(s,) for s in seeds])])

    def clear_grad(self):
        self.start_horizon()
        return torch.cat([torch.from_numpy(obs) for obs in self.call_all("clear_grad", [()] * self.sim_workers)])

    def step(self, actions):
        if actions.shape != (self.num_envs, self.num_actions):
            raise ValueError(
                f"actions must have shape (num_envs, num_actions) = ({self.num_envs}, {self.num_actions}), "
                f"got {tuple(actions.shape)}"
            )
        if self.requires_grad and torch.is_grad_enabled():
            obs, reward, final_obs, self.link, terminated, truncated = ShardStep.apply(self, self.link, actions)
        else:
            obs, reward, terminated, truncated, final_obs = self.send_step(actions, record=False)
        return obs, reward, terminated, truncated, {"final_obs": final_obs, "nan_resets": self.nan_resets}

    def render(self):
        """A frame of shard 0's first two envs (the env's first two where a shard has two or more)."""
        self.connections[0].send(("render", ()))
        return self.receive_all(shards=[0])[0]

    def call(self, function):
        """`function(shard_env)` in every shard's worker (a module-level function: it is pickled); the results."""
        return self.call_all("call", [(function,)] * self.sim_workers)

    def state_dict(self):
        return {"sim_workers": self.sim_workers, "shards": self.call_all("state_dict", [()] * self.sim_workers)}

    def load_state_dict(self, state):
        if state.get("sim_workers", 1) != self.sim_workers:
            raise ValueError(f"env state of {state.get('sim_workers', 1)} simulations cannot be loaded into an env "
                             f"of {self.sim_workers}; use --sim-workers {state.get('sim_workers', 1)}")
        self.start_horizon()
        self.call_all("load_state_dict", [(shard_state,) for shard_state in state["shards"]])
