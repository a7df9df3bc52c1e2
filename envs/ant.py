"""AHAC's DFlex Ant (github imgeorgiev/DiffRL, `dflex/envs/ant.py`), on Rewarped's Ant and DFlex's substep.

What differs from Rewarped's Ant (kept as `RewarpedAnt`), each time to match DFlex:
- Masses: density 1000 for every shape. Warp's MJCF parser reads the file's default `density="5.0"` for
  the torso sphere (117 kg robot instead of 182 kg); DFlex ignores it. Inertias as DFlex computes them
  (dflex_inertia.py).
- Joints: armature 0.05 on the hinges and 0 on the root; damping 1 plus DFlex's always-on limit damping 10.
- Ground contact: DFlex's law and points with the shapes' material (4e4, 1e4, 3e3, mu 0.75), no
  shape-shape contacts (dflex_integrator.py).
- Actions without Rewarped's sign flip, reward timing and the last-action part of the observation (29:37)
  as DFlex has them (dflex_task.py).
- Start noise: DFlex draws the root's velocity as a twist directly (Rewarped converts it from the COM's).
"""
import math
import os

import warp as wp
from rewarped.envs.dflex.ant import Ant as RewarpedAnt

from .dflex_inertia import set_dflex_inertia
from .dflex_integrator import DFlexIntegrator
from .dflex_task import DFlexTask, free_root_start_noise, parse_edited

CONTACT = dict(ke=4.0e4, kd=1.0e4, kf=3.0e3, mu=0.75)
ARMATURE, DAMPING, LIMIT_KE, LIMIT_KD = 0.05, 1.0, 1.0e3, 10.0
START_JOINT_Q = [0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0]


class Ant(DFlexTask, RewarpedAnt):
    last_action_start = 29

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

    def randomize_init(self, env_ids):
        free_root_start_noise(self, env_ids)
