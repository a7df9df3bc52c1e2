"""`DiffEnv`: one Rewarped task behind the small API that every algorithm script uses."""
import contextlib

import torch

from .quiet import no_nonleaf_grad_warning


class DiffEnv:
    """N parallel copies of a differentiable task, auto-reset, on one device.

    obs = env.reset(seed=None)                                   # (N, num_obs)
    obs, reward, terminated, truncated, info = env.step(actions) # actions (N, num_actions), clipped to [-1, 1]
    info["final_obs"]    # observation before the auto-reset (== obs where nothing ended), differentiable
    info["nan_resets"]   # how many envs were reset this step because their obs or reward was not finite
    obs = env.clear_grad()                                       # cut autograd history, keep the physical state
    """

    def __init__(self, task, seed):
        self.task = task
        self.num_envs = task.num_envs
        self.num_obs = task.num_obs
        self.num_actions = task.num_act
        self.max_episode_length = task.episode_length
        self.device = torch.device(task.device)
        self.requires_grad = task.requires_grad
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
