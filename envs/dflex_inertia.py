"""Body inertias as DFlex's model builder computes them (github imgeorgiev/DiffRL, `dflex/model.py`).

DFlex adds a body's shapes one at a time. Its inertia update, `R * I * R.T + m (|p|^2 E - p p^T)` on numpy
arrays, multiplies elementwise, so each step keeps only the diagonal of the rotated and the accumulated
inertia: I <- diag(I) + m_body S(com shift) + diag(R_ii^2 I_shape,ii) + m_shape S(shape offset). The
paper's tasks were simulated with these inertias; Warp's builder rotates properly, so it gives other values
for every shape that is not axis-aligned (the Ant's legs).

DFlex's capsule lies along its x axis, with inertia diag(Ib, Ia, Ia) from ODE's capsule formula, and an
MJCF `fromto` capsule is turned onto its axis by the shortest rotation from x. The MJCF capsules of the
Hopper (along z, and the foot along -x) get the same diagonal from that rule as from DFlex's rotations.
"""
import math

import numpy as np
import warp as wp


def _steiner(mass, offset):
    return mass * (offset @ offset * np.eye(3) - np.outer(offset, offset))


def _shortest_rotation_from_x(axis):
    x = np.array([1.0, 0.0, 0.0])
    cross = np.cross(x, axis)
    sin, cos = np.linalg.norm(cross), float(x @ axis)
    if sin < 1e-9:  # along +x: none; along -x: half a turn about z (as DFlex turns the Hopper's foot)
        return np.eye(3) if cos > 0 else np.diag([-1.0, -1.0, 1.0])
    k = cross / sin
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    angle = math.atan2(sin, cos)
    return np.eye(3) + math.sin(angle) * K + (1.0 - math.cos(angle)) * K @ K


def _shape_mass_inertia(kind, scale, density):
    """Mass and principal inertia (in DFlex's shape frame) of a sphere or capsule."""
    r = scale[0]
    sphere_mass = density * 4.0 / 3.0 * math.pi * r**3
    if kind == wp.sim.GEO_SPHERE:
        return sphere_mass, np.diag([0.4 * sphere_mass * r * r] * 3)
    if kind == wp.sim.GEO_CAPSULE:
        length = 2.0 * scale[1]
        cylinder_mass = density * math.pi * r * r * length
        along = (0.5 * cylinder_mass + 0.4 * sphere_mass) * r * r
        across = cylinder_mass * (0.25 * r * r + length * length / 12.0) + sphere_mass * (
            0.4 * r * r + 0.375 * r * length + 0.25 * length * length
        )
        return sphere_mass + cylinder_mass, np.diag([along, across, across])
    raise ValueError(f"DFlex inertia: shape type {kind} is not supported here")


def set_dflex_inertia(builder, density):
    """Overwrite every body's mass, centre of mass and inertia in `builder` with DFlex's values."""
    mass = np.zeros(builder.body_count)
    com = np.zeros((builder.body_count, 3))
    inertia = np.zeros((builder.body_count, 3, 3))
    for body, X, kind, scale in zip(builder.shape_body, builder.shape_transform, builder.shape_geo_type,
                                    builder.shape_geo_scale):
        if body < 0:
            continue
        m, I = _shape_mass_inertia(kind, scale, density)
        p = np.array(wp.transform_get_translation(X))
        warp_axes = np.array(wp.quat_to_matrix(wp.transform_get_rotation(X))).reshape(3, 3)
        R = _shortest_rotation_from_x(warp_axes[:, 1]) if kind == wp.sim.GEO_CAPSULE else np.eye(3)
        new_mass = mass[body] + m
        new_com = (com[body] * mass[body] + p * m) / new_mass
        inertia[body] = (
            np.diag(np.diag(inertia[body]))
            + _steiner(mass[body], new_com - com[body])
            + np.diag(np.diag(R) ** 2 * np.diag(I))
            + _steiner(m, new_com - p)
        )
        mass[body], com[body] = new_mass, new_com
    for body in range(builder.body_count):
        builder.body_mass[body] = mass[body]
        builder.body_inv_mass[body] = 1.0 / mass[body] if mass[body] > 0 else 0.0
        builder.body_com[body] = wp.vec3(*com[body])
        builder.body_inertia[body] = wp.mat33(*inertia[body].flatten())
        builder.body_inv_inertia[body] = wp.mat33(*np.linalg.inv(inertia[body]).flatten()) if mass[body] > 0 \
            else wp.mat33(0.0)
