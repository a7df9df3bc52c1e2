"""AHAC's DFlex Ant (github imgeorgiev/DiffRL, `dflex/envs/ant.py`), on Rewarped's Ant and DFlex's substep.

What differs from Rewarped's Ant (kept as `RewarpedAnt`), each time to match DFlex:
- Masses: density 1000 for every shape. Warp's MJCF parser reads the file's default `density="5.0"` for
  the torso sphere (117 kg robot instead of 182 kg); DFlex ignores it. Inertias as DFlex computes them
  (dflex_inertia.py).
- Joints: armature 0.05 on the hinges and 0 on the root; damping 1 plus DFlex's always-on limit damping 10.
- Ground contact: DFlex's law and points with the shapes' material (4e4, 1e4, 3e3, mu 0.75), no
  shape-shape contacts (dflex_step.py).
- Reward timing: each step is scored from the observation *before* it (DFlex `step`); termination reads
  the one after it.
- Start noise: DFlex draws the root's velocity as a twist directly (Rewarped converts it from the COM's).
- The observation's last-action part (29:37): DFlex's gradient mode always shows 0 there, its no-gradient
  mode the clipped action; `last_action_obs` (make_env) chooses, and defaults to DFlex's behaviour.
"""
import math
import os

import torch
import warp as wp
from rewarped.envs.dflex.ant import Ant as RewarpedAnt
from rewarped.envs.dflex.utils.torch_utils import quat_from_angle_axis, quat_mul

from .dflex_inertia import set_dflex_inertia
from .dflex_step import DFlexIntegrator
from .edited_assets import parse_edited

CONTACT = dict(ke=4.0e4, kd=1.0e4, kf=3.0e3, mu=0.75)
ARMATURE, DAMPING, LIMIT_KE, LIMIT_KD = 0.05, 1.0, 1.0e3, 10.0
START_JOINT_Q = [0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0]


class Ant(RewarpedAnt):
    ground_plane = False  # DFlex's ground contact is part of the substep
    last_action_obs = None  # None: DFlex's (the action without gradients, 0 with them)

    def create_articulation(self, builder):
        with open(os.path.join(self.asset_dir, "dflex/ant.xml")) as f:
            mjcf = f.read().replace(' density="5.0"', "")
        parse_edited(
            wp.sim.parse_mjcf,
            mjcf,
            "ant.xml",
            builder,
            CONTACT,
            density=1000.0,
            stiffness=0.0,
            limit_ke=LIMIT_KE,
            limit_kd=0.0,  # DFlex's limit damping acts at all times: it is part of DAMPING below
            enable_self_collisions=False,
            up_axis="y",
        )
        set_dflex_inertia(builder, density=1000.0)
        builder.joint_armature = [0.0] * 6 + [ARMATURE] * (len(builder.joint_armature) - 6)
        builder.joint_axis_mode = [wp.sim.JOINT_MODE_FORCE] * len(builder.joint_axis_mode)
        builder.joint_act = [0.0] * len(builder.joint_act)
        builder.joint_q[:7] = [0.0, 0.75, 0.0, *wp.quat_from_axis_angle(wp.vec3(1.0, 0.0, 0.0), -math.pi * 0.5)]
        builder.joint_q[7:] = START_JOINT_Q

    def create_integrator(self, model):
        n = model.joint_act.shape[0]
        integrator = DFlexIntegrator(model, stiffness=[0.0] * n, damping=[DAMPING + LIMIT_KD] * n, target=[0.0] * n,
                                     update_mass_matrix_every=self.sim_substeps_featherstone)
        return self.sim_substeps_featherstone, integrator

    @torch.no_grad()
    def randomize_init(self, env_ids):
        """DFlex's stochastic start: position ±0.1, tilt up to 7.5 deg, joints ±0.2, all velocities ±0.25."""
        joint_q = self.state.joint_q.view(self.num_envs, -1)
        joint_qd = self.state.joint_qd.view(self.num_envs, -1)
        n = len(env_ids)
        joint_q[env_ids, 0:3] += 0.1 * (torch.rand((n, 3), device=self.device) - 0.5) * 2.0
        angle = (torch.rand(n, device=self.device) - 0.5) * math.pi / 12.0
        axis = torch.nn.functional.normalize(torch.rand((n, 3), device=self.device) - 0.5)
        joint_q[env_ids, 3:7] = quat_mul(joint_q[env_ids, 3:7], quat_from_angle_axis(angle, axis))
        joint_q[env_ids, 7:] += 0.2 * (torch.rand((n, 8), device=self.device) - 0.5) * 2.0
        joint_qd[env_ids, :] = 0.5 * (torch.rand((n, 14), device=self.device) - 0.5)

    def pre_physics_step(self, actions):
        self.obs_before_step = self.obs_buf
        self.actions = torch.clip(actions.view(self.num_envs, -1), -1.0, 1.0)
        self.control.assign("joint_act", (self.action_scale * self.actions).flatten())

    def compute_observations(self):
        super().compute_observations()
        show_action = self.last_action_obs if self.last_action_obs is not None else not self.requires_grad
        if not show_action:
            self.obs_buf = torch.cat([self.obs_buf[:, :29], torch.zeros_like(self.obs_buf[:, 29:])], dim=-1)

    def compute_reward(self):
        obs = self.obs_before_step  # DFlex scores the state the action was taken in
        self.rew_buf = (
            obs[:, 5]
            + 0.1 * obs[:, 27]
            + obs[:, 28]
            + (obs[:, 0] - self.termination_height)
            + self.action_penalty * (self.actions**2).sum(-1)
        )
        self.truncated_buf = self.progress_buf > self.episode_length - 1
        self.terminated_buf = torch.zeros_like(self.truncated_buf)
        if self.early_termination:
            self.terminated_buf = self.obs_buf[:, 0] < self.termination_height
        self.reset_buf = self.truncated_buf | self.terminated_buf
