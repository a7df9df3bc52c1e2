"""What AHAC's DFlex tasks share beyond their dynamics (github imgeorgiev/DiffRL, `dflex/envs/dflex_env.py`).

`DFlexTask` goes before the Rewarped task class in a task's bases (with DFlexIntegrator, dflex_integrator.py) and
changes, to match DFlex:
- actions: clipped and scaled, without the sign flip some Rewarped tasks apply;
- reward timing: a step is scored from the observation before it (`calculate_reward(self.obs_buf, actions)`
  before `obs_buf` is updated); termination reads the observation after it (`obs[:, 0] < termination_height`);
- the last-action part of the observation (tasks that set `last_action_start`): DFlex's gradient mode shows 0
  there (each step's output state is fresh, its `joint_act` zero), its no-gradient mode the clipped action;
  `last_action_obs` (make_env) chooses, None does as DFlex did.
"""
import math
import os
import tempfile
import types

import torch
from rewarped.envs.dflex.utils.torch_utils import quat_from_angle_axis, quat_mul
from rewarped.warp.model_monkeypatch import Model_state


class DFlexTask:
    ground_plane = False  # DFlex's ground contact is part of its substep (dflex_integrator.py)
    last_action_obs = None
    last_action_start = None  # first observation index of the last action, where the observation has one

    def create_model(self):
        """Rewarped's model, whose `state()` leaves the per-substep arrays to DFlexIntegrator: Rewarped's gives
        every state all of Featherstone's matrices (mass matrix, Jacobian, ...), which DFlex's substep
        computes only once per mass-matrix period (Humanoid, 32 envs: 0.29 -> 0.035 GiB per step)."""
        model = super().create_model()
        model.state = types.MethodType(Model_state, model)  # Rewarped's, without integrator_type
        return model

    def pre_physics_step(self, actions):
        self.obs_before_step = self.obs_buf
        self.actions = torch.clip(actions.view(self.num_envs, -1), -1.0, 1.0)
        acts = self.action_scale * self.actions
        if self.joint_act_indices is not ...:
            acts = self.scatter_actions(self.joint_act, self.joint_act_indices, acts)
        self.control.assign("joint_act", acts.flatten())

    def compute_observations(self):
        super().compute_observations()
        if self.last_action_start is None:
            return
        shown = self.last_action_obs if self.last_action_obs is not None else not self.requires_grad
        if not shown:
            start = self.last_action_start
            self.obs_buf = torch.cat([self.obs_buf[:, :start], torch.zeros_like(self.obs_buf[:, start:])], dim=-1)

    def compute_reward(self):
        """The Rewarped task's reward formula (DFlex's) on the observation before the step."""
        obs_after = self.obs_buf
        self.obs_buf = self.obs_before_step
        super().compute_reward()
        self.obs_buf = obs_after
        self.terminated_buf = torch.zeros_like(self.truncated_buf)
        if self.early_termination:
            self.terminated_buf = obs_after[:, 0] < self.termination_height
        self.reset_buf = self.terminated_buf | self.truncated_buf


@torch.no_grad()
def free_root_start_noise(task, env_ids):
    """DFlex's stochastic start for a robot on a free joint (Ant, Humanoid, Anymal): position ±0.1, a tilt up to 7.5
    degrees about a random axis, joints ±0.2, and every velocity ±0.25, the root's drawn as a twist directly."""
    joint_q = task.state.joint_q.view(task.num_envs, -1)
    joint_qd = task.state.joint_qd.view(task.num_envs, -1)
    n, device = len(env_ids), task.device
    joint_q[env_ids, 0:3] += 0.1 * (torch.rand((n, 3), device=device) - 0.5) * 2.0
    angle = (torch.rand(n, device=device) - 0.5) * math.pi / 12.0
    axis = torch.nn.functional.normalize(torch.rand((n, 3), device=device) - 0.5)
    joint_q[env_ids, 3:7] = quat_mul(joint_q[env_ids, 3:7], quat_from_angle_axis(angle, axis))
    joint_q[env_ids, 7:] += 0.2 * (torch.rand((n, joint_q.shape[1] - 7), device=device) - 0.5) * 2.0
    joint_qd[env_ids, :] = 0.5 * (torch.rand((n, joint_qd.shape[1]), device=device) - 0.5)


def parse_edited(parse, text, filename, builder, contact, **kwargs):
    """Load an edited copy of one of Rewarped's robot files without touching the installed package: write `text`
    to `filename` in a temporary folder and load it into `builder` with Warp's `parse` (`wp.sim.parse_mjcf` or
    `wp.sim.parse_urdf`, which read from a path). `contact` (ke, kd, kf, mu) is the material of every shape."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, filename)
        with open(path, "w") as f:
            f.write(text)
        parse(path, builder, **{f"contact_{name}": value for name, value in contact.items()}, **kwargs)
