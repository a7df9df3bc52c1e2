"""DFlex's Hopper (DiffRL / AHAC) on Rewarped 1.3.3, whose own `Hopper` diverges within a few hundred steps.

Where it differs from Rewarped's task, each time to match DFlex:
- Warp merges the torso's three MJCF joints (slide x, slide z, hinge y) into one D6 joint. Its Featherstone
  solver then rotates the torso about the world origin instead of about the torso, so the velocities drift
  from the motion as the hopper travels, and energy grows until NaN. DFlex gives each joint a link of its
  own; so do we, by nesting the torso in two massless bodies that carry one slide each.
- DFlex's 11 observations are joint_q without x, then joint_qd; Rewarped returns all 12, so its reward and
  termination read the wrong entries.
- DFlex applies armature 1 to all six joints and damping 2 to the three hinges together with the motor
  torque. Warp 1.3.3's force mode ignores joint damping, so the damping is part of the torque here, once per
  frame from the frame's start velocities.
- DFlex's contacts use the shapes' material alone; Warp averages it with the ground plane's (ke 1e5 by
  default), so the ground gets the shapes' material.
"""
import math
import os
import xml.etree.ElementTree as ET

import torch
import warp as wp
from rewarped.envs.dflex.hopper import Hopper as RewarpedHopper

from .edited_assets import parse_edited

ARMATURE = 1.0
HINGE_DAMPING = 2.0
CONTACT = dict(ke=2.0e4, kd=1.0e3, kf=1.0e3, mu=0.9)


def nest_root_joints(mjcf):
    """Return the MJCF text with the torso's slide joints moved onto two new massless parent bodies."""
    root = ET.fromstring(mjcf)
    world = root.find("worldbody")
    world.remove(world.find("geom"))  # the MJCF floor: the ground plane takes its place, as in DFlex
    torso = world.find("body")
    world.remove(torso)
    parent = world
    for joint in torso.findall("joint")[:2]:
        torso.remove(joint)
        joint.attrib.pop("pos", None)
        joint.attrib.pop("ref", None)
        parent = ET.SubElement(parent, "body", name=joint.get("name") + "_link")
        parent.append(joint)
    parent.append(torso)
    return ET.tostring(root, encoding="unicode")


class Hopper(RewarpedHopper):
    ground_plane_settings = CONTACT  # Warp averages shape and ground materials: make them equal

    def create_articulation(self, builder):
        with open(os.path.join(self.asset_dir, "dflex/hopper.xml")) as f:
            mjcf = nest_root_joints(f.read())
        parse_edited(
            wp.sim.parse_mjcf,
            mjcf,
            "hopper.xml",
            builder,
            CONTACT,
            density=1000.0,
            stiffness=0.0,
            limit_ke=1.0e3,
            limit_kd=1.0e1,
            enable_self_collisions=False,
        )
        # MJCF is Z-up, the simulation Y-up: turn the first slide's frame -90 degrees about x.
        z_up_to_y_up = wp.quat_from_axis_angle(wp.vec3(1.0, 0.0, 0.0), -math.pi / 2)
        builder.joint_X_p[0] = wp.transform((0.0, 0.0, 0.0), z_up_to_y_up)
        builder.joint_armature = [ARMATURE] * len(builder.joint_armature)
        for body in range(2):  # the slide links: Warp gives shapeless bodies 0.01 kg, DFlex none
            builder.body_mass[body], builder.body_inv_mass[body] = 0.0, 0.0
            builder.body_inertia[body], builder.body_inv_inertia[body] = wp.mat33(0.0), wp.mat33(0.0)
        builder.joint_axis_mode = [wp.sim.JOINT_MODE_FORCE] * len(builder.joint_axis_mode)

    def pre_physics_step(self, actions):
        self.actions = torch.clip(actions.view(self.num_envs, -1), -1.0, 1.0)
        hinge_qd = self.state.joint_qd.view(self.num_envs, -1)[:, 3:]
        torques = self.action_scale * self.actions - HINGE_DAMPING * hinge_qd
        joint_act = self.scatter_actions(self.joint_act, self.joint_act_indices, torques)
        self.control.assign("joint_act", joint_act.flatten())

    def compute_observations(self):
        joint_q = self.state.joint_q.view(self.num_envs, -1)
        joint_qd = self.state.joint_qd.view(self.num_envs, -1)
        self.obs_buf = torch.cat([joint_q[:, 1:], joint_qd], dim=-1)
