"""Corrections to Rewarped 1.3.3's `WarpEnv`, placed between each task class and `WarpEnv`.

`make_env` builds `class Task(RewarpedTask, WarpEnvFixes)`, so the method order is
Task → RewarpedTask → WarpEnvFixes → WarpEnv, and a task's own method that calls `super()` reaches the
corrected one below.
"""
import torch
import warp as wp
from rewarped.environment import IntegratorType
from rewarped.warp_env import WarpEnv

from .featherstone_fix import FeatherstoneIntegrator
from .low_memory import RecomputedStep
from .state_pool import StatePool


class WarpEnvFixes(WarpEnv):
    low_memory = False  # make_env(low_memory=True): recompute each step's forward in its backward pass

    state_pool = None  # with gradients, the states that Rewarped's step takes where it calls model.state

    def do_physics_step(self):
        """With `low_memory`, one frame through `RecomputedStep` (low_memory.py). Otherwise Rewarped's step, with
        gradients on Featherstone's integrator on the CPU into states of a `StatePool` (state_pool.py) instead of
        new ones."""
        if self.requires_grad and self.low_memory:
            self.state_1 = self.state_0
            self.state_tensors = list(RecomputedStep.apply(self, *self.state_tensors, *self.control_tensors))
            self.control_0 = self.model.control()
            self.control_tensors = [wp.to_torch(getattr(self.control_0, k)) for k in self.control_tensors_names]
            self.sim_time += self.frame_dt
            return
        if (not self.requires_grad or self.integrator_type != IntegratorType.FEATHERSTONE
                or not wp.get_device(self.device).is_cpu):  # on CUDA: Rewarped's step (a captured graph by default)
            return super().do_physics_step()
        if self.state_pool is None:
            self.state_pool = StatePool(self.model, self.integrator)
        model_state, self.model.state = self.model.state, self.state_pool.zeros
        try:
            super().do_physics_step()
        finally:
            self.model.state = model_state

    def create_integrator(self, model):
        """Rewarped's Featherstone integrator, its double-counted `body_q` adjoint corrected (featherstone_fix.py)."""
        if self.integrator_type != IntegratorType.FEATHERSTONE:
            return super().create_integrator(model)
        return self.sim_substeps_featherstone, FeatherstoneIntegrator(model, **self.featherstone_settings)

    def reset_idx(self, env_ids):
        """Reset `env_ids`; every other env keeps its state *and* its autograd history.

        Rewarped copies the surviving envs in place into a detached tensor, which cuts the gradient path of
        every env as soon as one env resets, and it refuses partial resets in tasks without early
        termination (the NaN guard needs them). Copying out of place gives the same values and keeps the graph.
        """
        n = self.num_envs
        keep = torch.ones(n, dtype=torch.bool, device=self.device)
        keep[env_ids] = False
        keep_ids = keep.nonzero().squeeze(-1)
        prev_state, prev_actions = self.state, self.actions

        self.actions = torch.zeros((n, self.num_actions), dtype=torch.float, device=self.device)
        self.state_0 = self.model.state()
        self.control_0 = self.model.control()
        if self.requires_grad:
            self.state_tensors = [wp.to_torch(getattr(self.state_0, k)) for k in self.state_tensors_names]
            self.control_tensors = [wp.to_torch(getattr(self.control_0, k)) for k in self.control_tensors_names]
        if self.randomize:
            self.randomize_init(env_ids)
        if self.eval_fk:
            wp.sim.eval_fk(self.model, self.state_0.joint_q, self.state_0.joint_qd, None, self.state_0)
        if len(keep_ids) == 0:
            return

        self.actions = self.actions.index_copy(0, keep_ids, prev_actions[keep_ids])
        for name, array in vars(self.state_0).items():
            if isinstance(array, wp.array):
                fresh, prev = getattr(self.state, name), getattr(prev_state, name)
                kept = fresh.view(n, -1).index_copy(0, keep_ids, prev.view(n, -1)[keep_ids])
                self.state.assign(name, kept.view(fresh.shape))
