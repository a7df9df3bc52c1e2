"""AHAC's DFlex Anymal (github imgeorgiev/DiffRL, `dflex/envs/anymal.py`) on Rewarped's `WarpEnv` and DFlex's substep.

Rewarped 1.3.3 ships only a stub of this task. `AnymalTask` holds what Rewarped's task classes hold for the
other tasks (robot, start pose, observation, reward); `Anymal` adds DFlex's dynamics, as for Ant, Hopper and
Humanoid. To match DFlex:
- Robot: the `anymal_c.urdf` inside the Rewarped package has the joints and links of AHAC's
  `anymal_minimal.urdf`; it is edited to that file's collision shapes (base cylinder, knee drives 0.12 m long
  at -0.05 m, feet; no shank cylinders, no visuals) and to its joints without limits. Both parsers turn URDF
  cylinders into capsules. Warp's parser lists joints in the reverse of the file's order, DFlex's in file order
  (LF, RF, LH, RH x HAA, HFE, KFE): the file's joints are reversed before parsing, so the orders agree.
- Y-up, the robot turned -90 degrees about x, at 0.55 m in IsaacGymEnvs' Anymal pose.
- Masses from the collision shapes at density 1000 (37.25 kg) with DFlex's inertias; armature 0.006 on the
  hinges (DFlex's free joints have none).
- Joint law (dflex_integrator.py): tau = 200 a - 85 q - (2 + 10) qd in every substep (AHAC's stiffness 85 and
  damping 2, plus DFlex's always-on limit damping 10); mass matrix every 16 of the 16 substeps.
- Ground contact: DFlex's law with the shapes' material (2e3, 5e2, 1e2, mu 0.75), no self-collision.
- Reward timing, the last-action part of the observation (37:49) and start noise (dflex_task.py); termination
  below 0.25 m, and, as DFlex, on a joint coordinate or velocity beyond 1e6.
"""
import math
import os
import xml.etree.ElementTree as ET

import torch
import warp as wp
from rewarped.environment import IntegratorType
from rewarped.envs.dflex.utils.torch_utils import normalize, quat_conjugate, quat_mul, quat_rotate
from rewarped.warp_env import WarpEnv

from .dflex_inertia import set_dflex_inertia
from .dflex_integrator import DFlexIntegrator
from .dflex_task import DFlexTask, free_root_start_noise, parse_edited

JOINT_NAMES = [f"{leg}_{joint}" for leg in ("LF", "RF", "LH", "RH") for joint in ("HAA", "HFE", "KFE")]
START_JOINT_Q = [0.03, 0.4, -0.8, -0.03, 0.4, -0.8, 0.03, -0.4, 0.8, -0.03, -0.4, 0.8]  # IsaacGymEnvs' Anymal
START_HEIGHT = 0.55
ACTION_SCALE, STIFFNESS, DAMPING, LIMIT_KD, ARMATURE = 200.0, 85.0, 2.0, 10.0, 0.006
CONTACT = dict(ke=2.0e3, kd=5.0e2, kf=1.0e2, mu=0.75)
KNEE_DRIVE = dict(xyz="-0.05 0 0", length="0.12")  # anymal_minimal.urdf's collision cylinder of each *_KFE link


def minimal_urdf(urdf):
    """Return Rewarped's `anymal_c.urdf` text edited to AHAC's `anymal_minimal.urdf` (module docstring)."""
    root = ET.fromstring(urdf)
    for link in root.iter("link"):
        unwanted = link.findall("visual")
        if link.get("name").endswith("_SHANK"):
            unwanted += link.findall("collision")
        for element in unwanted:
            link.remove(element)
        if link.get("name").endswith("_KFE"):
            collision = link.find("collision")
            collision.find("origin").set("xyz", KNEE_DRIVE["xyz"])
            collision.find("geometry/cylinder").set("length", KNEE_DRIVE["length"])
    joints = root.findall("joint")
    for joint in reversed(joints):
        limit = joint.find("limit")
        if limit is not None:
            limit.attrib.pop("lower", None)
            limit.attrib.pop("upper", None)
        root.remove(joint)
        root.append(joint)
    return ET.tostring(root, encoding="unicode")


class AnymalTask(WarpEnv):
    """The robot, start pose, observation and reward of AHAC's `AnymalEnv`."""

    sim_name = "AnymalDFlex"
    env_offset = (0.0, 0.0, 0.0)

    integrator_type = IntegratorType.FEATHERSTONE
    sim_substeps_featherstone = 16
    featherstone_settings = dict(angular_damping=0.0, update_mass_matrix_every=sim_substeps_featherstone)
    eval_fk = True
    eval_ik = False

    frame_dt = 1.0 / 60.0
    up_axis = "Y"

    state_tensors_names = ("joint_q", "joint_qd")
    control_tensors_names = ("joint_act",)

    def __init__(self, num_envs=64, episode_length=1000, early_termination=True, **kwargs):
        super().__init__(num_envs, 49, 12, episode_length, early_termination, **kwargs)
        self.action_scale = ACTION_SCALE
        self.termination_height = 0.25
        self.action_penalty = -5e-3
        self.up_rew_scale = 0.1
        self.heading_rew_scale = 1.0
        self.joint_vel_obs_scaling = 0.1

    def create_articulation(self, builder):
        with open(os.path.join(self.asset_dir, "legged_gym/robots/anymal_c/urdf/anymal_c.urdf")) as f:
            urdf = minimal_urdf(f.read())
        self.start_rotation = wp.quat_from_axis_angle(wp.vec3(1.0, 0.0, 0.0), -math.pi * 0.5)
        parse_edited(
            wp.sim.parse_urdf,
            urdf,
            "anymal_c.urdf",
            builder,
            CONTACT,
            xform=wp.transform((0.0, START_HEIGHT, 0.0), self.start_rotation),
            floating=True,
            density=1000.0,
            armature=ARMATURE,
            limit_ke=1.0e3,
            limit_kd=0.0,  # DFlex's limit damping acts at all times: it is part of the damping in Anymal
            enable_self_collisions=False,
            collapse_fixed_joints=True,
        )
        builder.joint_q[7:] = START_JOINT_Q

    def init_sim(self):
        super().init_sim()
        with torch.no_grad():
            self.joint_act = wp.to_torch(self.model.joint_act).view(self.num_envs, -1).clone()
            self.joint_act_indices = ...
            self.start_pos = torch.tensor([0.0, START_HEIGHT, 0.0], device=self.device)
            self.target = torch.tensor([10000.0, 0.0, 0.0], device=self.device)  # far ahead on +x
            self.inv_start_rot = quat_conjugate(torch.tensor([*self.start_rotation], device=self.device))
            self.inv_start_rot = self.inv_start_rot.expand(self.num_envs, 4)
            self.x_axis = torch.tensor([1.0, 0.0, 0.0], device=self.device).expand(self.num_envs, 3)
            self.y_axis = torch.tensor([0.0, 1.0, 0.0], device=self.device).expand(self.num_envs, 3)
            self.horizontal = torch.tensor([1.0, 0.0, 1.0], device=self.device)

    def compute_observations(self):
        joint_q = self.state.joint_q.view(self.num_envs, -1)
        joint_qd = self.state.joint_qd.view(self.num_envs, -1)
        pos, rot = joint_q[:, 0:3], joint_q[:, 3:7]
        ang_vel = joint_qd[:, 0:3]
        lin_vel = joint_qd[:, 3:6] - torch.cross(pos, ang_vel, dim=-1)  # twist about the origin -> at the base

        to_target = (self.target + self.start_pos - pos) * self.horizontal
        torso_rot = quat_mul(rot, self.inv_start_rot)
        up = quat_rotate(torso_rot, self.y_axis)[:, 1:2]
        heading = (quat_rotate(torso_rot, self.x_axis) * normalize(to_target)).sum(-1, keepdim=True)

        self.obs_buf = torch.cat(
            [
                pos[:, 1:2],  # 0: base height
                rot,  # 1:5
                lin_vel,  # 5:8
                ang_vel,  # 8:11
                joint_q[:, 7:],  # 11:23
                self.joint_vel_obs_scaling * joint_qd[:, 6:],  # 23:35
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


class Anymal(DFlexTask, AnymalTask):
    last_action_start = 37

    def create_articulation(self, builder):
        super().create_articulation(builder)
        set_dflex_inertia(builder, density=1000.0)
        builder.joint_axis_mode = [wp.sim.JOINT_MODE_FORCE] * len(builder.joint_axis_mode)
        builder.joint_act = [0.0] * len(builder.joint_act)

    def create_integrator(self, model):
        n = model.joint_act.shape[0]
        integrator = DFlexIntegrator(model, stiffness=[STIFFNESS] * n, damping=[DAMPING + LIMIT_KD] * n,
                                     target=[0.0] * n, update_mass_matrix_every=self.sim_substeps_featherstone)
        return self.sim_substeps_featherstone, integrator

    def randomize_init(self, env_ids):
        free_root_start_noise(self, env_ids)

    def compute_reward(self):
        super().compute_reward()
        joint_q = self.state.joint_q.view(self.num_envs, -1)
        joint_qd = self.state.joint_qd.view(self.num_envs, -1)
        invalid = (joint_q.abs() > 1e6).any(-1) | (joint_qd.abs() > 1e6).any(-1)
        self.terminated_buf = self.terminated_buf | invalid
        self.reset_buf = self.reset_buf | invalid
