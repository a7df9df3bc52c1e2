"""AHAC's DFlex Hopper (github imgeorgiev/DiffRL, `dflex/envs/hopper.py`) on Rewarped's Hopper and DFlex's substep.

Rewarped 1.3.3's own `Hopper` diverges within a few hundred steps. Where ours differs from it, each time to
match DFlex:
- Warp merges the torso's three MJCF joints (slide x, slide z, hinge y) into one D6 joint. Its Featherstone
  solver then rotates the torso about the world origin instead of about the torso, so the velocities drift
  from the motion as the hopper travels, and energy grows until NaN. DFlex gives each joint a link of its
  own; so do we, by nesting the torso in two massless bodies that carry one slide each.
- DFlex's 11 observations are joint_q without x, then joint_qd; Rewarped returns all 12, so its reward and
  termination read the wrong entries.
- Dynamics (dflex_integrator.py, dflex_inertia.py): DFlex's inertias, armature 1 on all six joints, damping 2 on the
  hinges (0 on the root joints) plus DFlex's always-on limit damping 10 on all six, in every substep; ground
  contact with the shapes' own material (2e4, 2e3, 1e3, mu 0.9) and DFlex's law; the mass matrix every 4
  substeps (AHAC's `MM_caching_frequency` for Hopper).
- Reward timing: each step is scored from the observation before it (DFlex `step`; dflex_task.py).
"""
import math
import os
import xml.etree.ElementTree as ET

import torch
import warp as wp
from rewarped.envs.dflex.hopper import Hopper as RewarpedHopper

from .dflex_inertia import set_dflex_inertia
from .dflex_integrator import DFlexIntegrator
from .dflex_task import DFlexTask, parse_edited

ARMATURE, LIMIT_KD = 1.0, 10.0
DAMPING = [0.0, 0.0, 0.0, 2.0, 2.0, 2.0]  # slide x, slide z, hinge (root: MJCF damping 0), thigh, leg, foot
CONTACT = dict(ke=2.0e4, kd=2.0e3, kf=1.0e3, mu=0.9)
MASS_MATRIX_EVERY = 4


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


class Hopper(DFlexTask, RewarpedHopper):
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
            limit_kd=0.0,  # DFlex's limit damping acts at all times: it is part of the damping below
            enable_self_collisions=False,
        )
        # MJCF is Z-up, the simulation Y-up: turn the first slide's frame -90 degrees about x.
        z_up_to_y_up = wp.quat_from_axis_angle(wp.vec3(1.0, 0.0, 0.0), -math.pi / 2)
        builder.joint_X_p[0] = wp.transform((0.0, 0.0, 0.0), z_up_to_y_up)
        builder.joint_armature = [ARMATURE] * len(builder.joint_armature)
        set_dflex_inertia(builder, density=1000.0)  # also: the slide links get no mass, as in DFlex
        builder.joint_axis_mode = [wp.sim.JOINT_MODE_FORCE] * len(builder.joint_axis_mode)

    def create_integrator(self, model):
        n = model.joint_act.shape[0]
        damping = [d + LIMIT_KD for d in DAMPING] * self.num_envs
        integrator = DFlexIntegrator(model, stiffness=[0.0] * n, damping=damping, target=[0.0] * n,
                                     update_mass_matrix_every=MASS_MATRIX_EVERY)
        return self.sim_substeps_featherstone, integrator

    def compute_observations(self):
        joint_q = self.state.joint_q.view(self.num_envs, -1)
        joint_qd = self.state.joint_qd.view(self.num_envs, -1)
        self.obs_buf = torch.cat([joint_q[:, 1:], joint_qd], dim=-1)
