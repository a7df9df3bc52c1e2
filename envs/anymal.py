"""AHAC's DFlex Anymal, rebuilt on Rewarped's `WarpEnv` (Rewarped 1.3.3 ships only a stub).

The robot is the `anymal_c.urdf` inside the Rewarped package, loaded Z-up with masses from the collision
shapes' volume (density 1000, as DFlex does), and driven by a PD law that Warp evaluates in every substep:
tau = 200 a - 85 q - 12 qd. Observations (49), reward and termination follow AHAC's `AnymalEnv`.
"""
import math
import os
import xml.etree.ElementTree as ET

import torch
import warp as wp
from rewarped.environment import IntegratorType
from rewarped.envs.dflex.utils.torch_utils import normalize, quat_from_angle_axis, quat_mul, quat_rotate
from rewarped.warp_env import WarpEnv

from .edited_assets import parse_edited

# Observation and action order (AHAC's), and the start pose (IsaacGymEnvs' Anymal) in that order.
JOINT_NAMES = [f"{leg}_{joint}" for leg in ("LF", "RF", "LH", "RH") for joint in ("HAA", "HFE", "KFE")]
START_JOINT_Q = [0.03, 0.4, -0.8, -0.03, 0.4, -0.8, 0.03, -0.4, 0.8, -0.03, -0.4, 0.8]
START_HEIGHT = 0.55
ACTION_SCALE, STIFFNESS, DAMPING = 200.0, 85.0, 12.0
CONTACT = dict(ke=2.0e3, kd=5.0e2, kf=1.0e2, mu=0.75)


def minimal_urdf(urdf):
    """Return the URDF text without <visual> elements (their meshes are not shipped with Rewarped) and without
    the shanks' collision cylinders, which AHAC's `anymal_minimal.urdf` leaves out too: their contacts make the
    BPTT gradients of a few envs per batch explode (10^4 to inf after 32 steps of random actions)."""
    root = ET.fromstring(urdf)
    for link in root.iter("link"):
        unwanted = link.findall("visual")
        if link.get("name").endswith("_SHANK"):
            unwanted += link.findall("collision")
        for element in unwanted:
            link.remove(element)
    return ET.tostring(root, encoding="unicode")


class Anymal(WarpEnv):
    sim_name = "AnymalDFlex"
    env_offset = (0.0, 0.0, 0.0)

    integrator_type = IntegratorType.FEATHERSTONE
    sim_substeps_featherstone = 16
    featherstone_settings = dict(angular_damping=0.0, update_mass_matrix_every=sim_substeps_featherstone)
    eval_fk = True
    eval_ik = False

    frame_dt = 1.0 / 60.0
    up_axis = "Z"
    ground_plane = True
    # DFlex's ground contact uses the shapes' material alone; Warp averages it with the ground plane's.
    ground_plane_settings = CONTACT

    state_tensors_names = ("joint_q", "joint_qd")
    control_tensors_names = ("joint_act",)

    def __init__(self, num_envs=64, episode_length=1000, early_termination=True, **kwargs):
        super().__init__(num_envs, 49, 12, episode_length, early_termination, **kwargs)
        self.termination_height = 0.25
        self.action_penalty = -5e-3
        self.up_rew_scale = 0.1
        self.heading_rew_scale = 1.0
        self.joint_vel_obs_scaling = 0.1

    def create_modelbuilder(self):
        builder = super().create_modelbuilder()
        builder.rigid_contact_margin = 0.05
        return builder

    def create_articulation(self, builder):
        urdf_dir = os.path.join(self.asset_dir, "legged_gym/robots/anymal_c/urdf")
        with open(os.path.join(urdf_dir, "anymal_c.urdf")) as f:
            urdf = minimal_urdf(f.read())
        parse_edited(
            wp.sim.parse_urdf,
            urdf,
            "anymal_c.urdf",
            builder,
            CONTACT,
            xform=wp.transform((0.0, 0.0, START_HEIGHT), wp.quat_identity()),
            floating=True,
            density=1000.0,
            armature=0.006,
            limit_ke=1.0e3,
            limit_kd=1.0e1,
            enable_self_collisions=False,
            collapse_fixed_joints=True,
        )
        # PD in every substep: Warp's target-position mode gives ke (act - q) - kd qd, so act = 200 a / 85.
        # The URDF's damping="0.0" overrides the parser's damping argument, hence the explicit gains.
        n = len(builder.joint_axis_mode)
        builder.joint_axis_mode = [wp.sim.JOINT_MODE_TARGET_POSITION] * n
        builder.joint_target_ke = [STIFFNESS] * n
        builder.joint_target_kd = [DAMPING] * n
        builder.joint_act = [0.0] * n
        # The parser orders the legs RH, LH, RF, LF: place each joint by name.
        q_start = {name: builder.joint_q_start[j] for j, name in enumerate(builder.joint_name)}
        for name, q in zip(JOINT_NAMES, START_JOINT_Q):
            builder.joint_q[q_start[name]] = q
        self.joint_order = [q_start[name] - 7 for name in JOINT_NAMES]  # -7: the root's position and quaternion

    def init_sim(self):
        super().init_sim()
        with torch.no_grad():
            self.joint_order = torch.tensor(self.joint_order, device=self.device)
            self.start_pos = self.state.joint_q.view(self.num_envs, -1)[:, 0:3].clone()
            self.target = torch.tensor([10000.0, 0.0, 0.0], device=self.device)  # far ahead on +x
            self.x_axis = torch.tensor([1.0, 0.0, 0.0], device=self.device).expand(self.num_envs, 3)
            self.z_axis = torch.tensor([0.0, 0.0, 1.0], device=self.device).expand(self.num_envs, 3)

    @torch.no_grad()
    def randomize_init(self, env_ids):
        joint_q = self.state.joint_q.view(self.num_envs, -1)
        joint_qd = self.state.joint_qd.view(self.num_envs, -1)
        n = len(env_ids)

        joint_q[env_ids, 0:3] += 0.1 * (torch.rand((n, 3), device=self.device) * 2.0 - 1.0)
        angle = (torch.rand(n, device=self.device) - 0.5) * math.pi / 12.0
        axis = normalize(torch.rand((n, 3), device=self.device) - 0.5)
        joint_q[env_ids, 3:7] = quat_mul(joint_q[env_ids, 3:7], quat_from_angle_axis(angle, axis))
        joint_q[env_ids, 7:] += 0.2 * (torch.rand((n, 12), device=self.device) * 2.0 - 1.0)
        joint_qd[env_ids, :] = 0.5 * (torch.rand((n, 18), device=self.device) - 0.5)
        # Warp's root velocity is a twist about the world origin: turn the sampled COM velocity into one.
        joint_qd[env_ids, 3:6] += torch.cross(joint_q[env_ids, 0:3], joint_qd[env_ids, 0:3], dim=-1)

    def pre_physics_step(self, actions):
        self.actions = torch.clip(actions.view(self.num_envs, -1), -1.0, 1.0)
        targets = torch.empty_like(self.actions).index_copy(1, self.joint_order, self.actions)
        self.control.assign("joint_act", (ACTION_SCALE / STIFFNESS * targets).flatten())

    def compute_observations(self):
        joint_q = self.state.joint_q.view(self.num_envs, -1)
        joint_qd = self.state.joint_qd.view(self.num_envs, -1)
        pos, rot = joint_q[:, 0:3], joint_q[:, 3:7]
        ang_vel = joint_qd[:, 0:3]
        lin_vel = joint_qd[:, 3:6] - torch.cross(pos, ang_vel, dim=-1)  # twist about the origin -> at the base

        to_target = self.target + self.start_pos - pos
        to_target = torch.cat([to_target[:, :2], torch.zeros_like(to_target[:, 2:])], dim=-1)
        up = quat_rotate(rot, self.z_axis)[:, 2:3]
        heading = (quat_rotate(rot, self.x_axis) * normalize(to_target)).sum(-1, keepdim=True)

        self.obs_buf = torch.cat(
            [
                pos[:, 2:3],  # 0: base height
                rot,  # 1:5
                lin_vel,  # 5:8
                ang_vel,  # 8:11
                joint_q[:, 7:][:, self.joint_order],  # 11:23
                self.joint_vel_obs_scaling * joint_qd[:, 6:][:, self.joint_order],  # 23:35
                up,  # 35
                heading,  # 36
                self.actions,  # 37:49
            ],
            dim=-1,
        )

    def compute_reward(self):
        obs = self.obs_buf
        self.rew_buf = (
            obs[:, 5]
            + self.up_rew_scale * obs[:, 35]
            + self.heading_rew_scale * obs[:, 36]
            + (obs[:, 0] - self.termination_height)
            + self.action_penalty * (self.actions**2).sum(-1)
        )
        self.truncated_buf = self.progress_buf > self.episode_length - 1
        self.terminated_buf = ~torch.isfinite(obs).all(-1)
        if self.early_termination:
            self.terminated_buf |= obs[:, 0] < self.termination_height
        self.reset_buf = self.truncated_buf | self.terminated_buf
