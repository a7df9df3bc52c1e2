"""AHAC's DFlex Humanoid (github imgeorgiev/DiffRL, `dflex/envs/humanoid.py`), on Rewarped's Humanoid and DFlex's substep.

What differs from Rewarped's Humanoid (kept as `RewarpedHumanoid`), each time to match DFlex:
- One body per joint: DFlex chains a multi-hinge body's hinges (abdomen, hips, ankles, shoulders) through
  massless links; Warp merges them into one universal or compound joint, and for the hips (axes x, z, y)
  that does not reproduce DFlex's motion (0.2 rad apart after one step). DFlex also ignores body
  orientations in the file (0.2 degrees at the waist and pelvis). The robot file is edited for both.
- Dynamics (dflex_integrator.py, dflex_inertia.py): DFlex's inertias; each hinge's spring (MJCF stiffness 2-20)
  and damping (0.1-5) plus DFlex's always-on limit damping 10, in every substep (Warp's force mode applies
  neither); ground contact with the shapes' own material (2e4, 2e3, 1e3, mu 0.75), DFlex's law, no
  self-collision.
- Actions without Rewarped's sign flip, reward timing and the last-action part of the observation (55:76)
  as DFlex has them (dflex_task.py); DFlex's start noise.
"""
import math
import os
import xml.etree.ElementTree as ET

import warp as wp
from rewarped.envs.dflex.humanoid import Humanoid as RewarpedHumanoid

from .dflex_inertia import set_dflex_inertia
from .dflex_integrator import DFlexIntegrator
from .dflex_task import DFlexTask, free_root_start_noise, parse_edited

CONTACT = dict(ke=2.0e4, kd=2.0e3, kf=1.0e3, mu=0.75)
LIMIT_KD = 10.0


def one_body_per_joint(mjcf):
    """Return the MJCF text as DFlex's parser reads it: body orientations dropped, and every body that has
    several joints split into a chain of bodies with one joint each: new massless bodies carry all but the
    last joint, the original body keeps the last one with its geoms and children."""
    root = ET.fromstring(mjcf)
    for body in root.iter("body"):
        body.attrib.pop("quat", None)  # DFlex's parser ignores body orientations (lower waist, pelvis: 0.2 deg)

    def split(parent):
        for index, body in enumerate(list(parent.findall("body"))):
            joints = body.findall("joint")
            if len(joints) > 1:
                parent.remove(body)
                outer = ET.Element("body", {"pos": body.attrib.pop("pos")} if "pos" in body.attrib else {})
                chain = None
                for joint in joints[:-1]:
                    body.remove(joint)
                    link = outer if chain is None else ET.SubElement(chain, "body")
                    link.set("name", body.get("name") + "_" + joint.get("name"))
                    link.append(joint)
                    chain = link
                chain.append(body)
                parent.insert(index, outer)
            split(body)

    split(root.find("worldbody"))
    return ET.tostring(root, encoding="unicode")


class Humanoid(DFlexTask, RewarpedHumanoid):
    last_action_start = 55

    def create_articulation(self, builder):
        with open(os.path.join(self.asset_dir, "dflex/humanoid.xml")) as f:
            mjcf = one_body_per_joint(f.read())
        parse_edited(
            wp.sim.parse_mjcf,
            mjcf,
            "humanoid.xml",
            builder,
            CONTACT,
            density=1000.0,
            stiffness=5.0,  # the MJCF's values where it has them, as DFlex reads them
            damping=0.1,
            armature=0.007,
            limit_ke=1.0e3,
            limit_kd=LIMIT_KD,
            enable_self_collisions=False,
            up_axis="y",
        )
        set_dflex_inertia(builder, density=1000.0)  # also: the added links get no mass, as in DFlex
        builder.joint_axis_mode = [wp.sim.JOINT_MODE_FORCE] * len(builder.joint_axis_mode)
        builder.joint_act = [0.0] * len(builder.joint_act)
        builder.joint_q[:7] = [0.0, 1.35, 0.0, *wp.quat_from_axis_angle(wp.vec3(1.0, 0.0, 0.0), -math.pi * 0.5)]

    def create_integrator(self, model):
        """Springs and damping (plus the always-on limit damping) move from the model into DFlex's joint law."""
        stiffness = model.joint_target_ke.numpy().tolist()
        damping = (model.joint_target_kd.numpy() + model.joint_limit_kd.numpy()).tolist()
        model.joint_limit_kd.zero_()  # it lives in `damping` now, as for the Ant and Hopper
        integrator = DFlexIntegrator(model, stiffness=stiffness, damping=damping, target=[0.0] * len(stiffness),
                                     update_mass_matrix_every=self.sim_substeps_featherstone)
        return self.sim_substeps_featherstone, integrator

    def randomize_init(self, env_ids):
        free_root_start_noise(self, env_ids)
