"""`DiffEnv`: one Rewarped task behind the small API that every algorithm script uses."""
import contextlib

import torch
import warp as wp

from .rewarped_loading import no_nonleaf_grad_warning


class DiffEnv:
    """N parallel copies of a differentiable task, auto-reset, on one device.

    obs = env.reset(seed=None)                                   # (N, num_obs)
    obs, reward, terminated, truncated, info = env.step(actions) # actions (N, num_actions), clipped to [-1, 1]
    info["final_obs"]    # observation before the auto-reset (== obs where nothing ended), differentiable
    info["nan_resets"]   # how many envs were reset this step because their obs or reward was not finite
    obs = env.clear_grad()                                       # cut autograd history, keep the physical state
    state = env.state_dict(); env.load_state_dict(state)         # checkpoint and restore every env exactly
    frame = env.render()      # (height, width, 3) uint8, the first two envs; env.metadata["render_fps"] frames/s
    results = env.call(f)     # [f(env)]; with --sim-workers P, f of each simulation's DiffEnv (sharded_env.py)
    """

    def __init__(self, task, seed):
        self.task = task
        self.num_envs = task.num_envs
        self.num_obs = task.num_obs
        self.num_actions = task.num_act
        self.max_episode_length = task.episode_length
        self.device = torch.device(task.device)
        self.requires_grad = task.requires_grad
        self.metadata = {"render_fps": round(1.0 / task.frame_dt)}
        self._renderer = None
        # Rewarped draws its random initial states from torch's global RNG and ignores its `seed` argument.
        # The env keeps a generator state of its own and swaps it in around every task call.
        self._seed(seed)

    def _seed(self, seed):
        self._rng_state = torch.Generator(self.device).manual_seed(seed).get_state()

    @contextlib.contextmanager
    def _own_rng(self):
        on_cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if on_cuda else []):
            if on_cuda:
                torch.cuda.set_rng_state(self._rng_state, self.device)
            else:
                torch.set_rng_state(self._rng_state)
            yield
            self._rng_state = torch.cuda.get_rng_state(self.device) if on_cuda else torch.get_rng_state()

    def _obs(self):
        obs = self.task.obs_buf
        return obs["obs"] if isinstance(obs, dict) else obs  # AllegroHand returns a dict

    def reset(self, seed=None):
        """Reset every env to a fresh random initial state; with `seed`, the states a new env of that seed starts in."""
        if seed is not None:
            self._seed(seed)
        with self._own_rng():
            self.task.reset()
        return self._obs()

    def clear_grad(self):
        """Start a new horizon: drop the autograd history, keep the physical state. Returns the observation."""
        if self.requires_grad:
            self.task.clear_grad()
        self.task.compute_observations()
        return self._obs()

    def state_dict(self):
        """Everything that puts every env back where it is now (for checkpoints): the simulator's state, the
        task's tensors (progress counters, last actions, goals, ...), its step counters and the env's random
        generator. Tensors only, so `torch.load(..., weights_only=True)` reads it."""
        task = self.task
        with torch.no_grad():
            sim = {name: wp.to_torch(array).clone() for name, array in vars(task.state_0).items()
                   if isinstance(array, wp.array)}
            tensors = {name: value.detach().clone() for name, value in vars(task).items()
                       if isinstance(value, torch.Tensor)}
            control = {name: getattr(task.control, name).detach().clone() for name in task.control_tensors_names}
        return {"task": type(task).__name__, "num_envs": self.num_envs, "sim": sim, "control": control,
                "tensors": tensors, "counters": {"integrator_step": task.integrator._step,
                                                 "num_frames": task.num_frames},
                "rng_state": self._rng_state.clone()}

    def load_state_dict(self, state):
        """Put every env back where `state_dict()` found it; refuses a state of another task or size."""
        task = self.task
        if (state["task"], state["num_envs"]) != (type(task).__name__, self.num_envs):
            raise ValueError(f"env state of {state['task']} with {state['num_envs']} envs cannot be loaded into "
                             f"{type(task).__name__} with {self.num_envs} envs")
        with torch.no_grad():
            for name, value in state["sim"].items():
                array = getattr(task.state_0, name, None)
                if isinstance(array, wp.array) and tuple(wp.to_torch(array).shape) == tuple(value.shape):
                    array.assign(wp.from_torch(value.to(self.device)))
            saved_state = {name: state["sim"][name].to(self.device) for name in task.state_tensors_names}
            saved_control = {name: value.to(self.device) for name, value in state["control"].items()}
        task.clear_grad({"state": saved_state, "control": saved_control})  # also drops any autograd history
        with torch.no_grad():
            for name, value in state["tensors"].items():
                current = getattr(task, name, None)
                if isinstance(current, torch.Tensor) and current.shape == value.shape:
                    if not torch.equal(current, value.to(self.device)):  # constants may be expanded views
                        current.copy_(value)  # in place: a task tensor may share memory with the simulator
                else:
                    setattr(task, name, value.to(self.device).clone())
        task.integrator._step = state["counters"]["integrator_step"]
        task.num_frames = state["counters"]["num_frames"]
        self._rng_state = state["rng_state"].clone()

    def render(self):
        """A headless RGB frame of the first two envs (render.py); reads the state, changes nothing."""
        if self._renderer is None:
            from .render import FrameRenderer

            self._renderer = FrameRenderer(self.task, num_envs=2)
        return self._renderer.frame()

    def call(self, function):
        return [function(self)]

    def step(self, actions):
        if actions.shape != (self.num_envs, self.num_actions):
            raise ValueError(
                f"actions must have shape (num_envs, num_actions) = ({self.num_envs}, {self.num_actions}), "
                f"got {tuple(actions.shape)}"
            )
        task = self.task
        with self._own_rng(), no_nonleaf_grad_warning():
            task.pre_physics_step(actions)
            task.do_physics_step()
            task.progress_buf += 1
            task.num_frames += 1
            task.reset_buf = torch.zeros_like(task.reset_buf)
            task.compute_observations()
            task.compute_reward()
            obs, reward = self._obs(), task.rew_buf

            # NaN guard (Rewarped never calls its `check_nans`): a non-finite env gets reward 0, ends as a
            # termination and is reset, instead of staying NaN forever.
            nonfinite = ~(torch.isfinite(obs).all(-1) & torch.isfinite(reward))
            reward = torch.where(nonfinite, torch.zeros_like(reward), reward)
            final_obs = torch.where(nonfinite[:, None], torch.zeros_like(obs), obs)
            # Rewarped marks the time limit as a termination in tasks without early termination.
            terminated = task.terminated_buf if task.early_termination else torch.zeros_like(nonfinite)
            terminated = terminated | nonfinite
            truncated = task.truncated_buf.clone()
            ended = task.reset_buf | nonfinite
            if ended.any():
                task.reset(ended.nonzero().squeeze(-1))
                obs = self._obs()
        info = {"final_obs": final_obs, "nan_resets": nonfinite.sum()}
        return obs, reward, terminated, truncated, info
