"""DFlex's articulated-body substep (github imgeorgiev/DiffRL, `dflex/sim.py`) on Warp, for the paper's tasks.

It runs Rewarped's Featherstone kernels in DFlex's order, with DFlex's two force laws in place of Warp's:

- Joint torque, every substep, on each hinge and slide (DFlex `jcalc_tau`):
      tau = act - ke (q - target) - (kd + limit_kd) qd + limit_ke * (limit violation)
  DFlex damps with limit_kd at all times; Warp's force mode ignores ke and kd and damps only past a limit.
  The task's `joint_limit_kd` therefore lives in `damping` here and is zero in the model.
- Ground contact (DFlex `eval_rigid_contacts_art`): fixed contact points (sphere: its centre; capsule: the
  two ends of its axis; box: its 8 corners) against the plane through the origin normal to the up axis,
  with the shape's own material (ke, kd, kf, mu) and depth d = -(n.p - radius) > 0:
      f = n (ke d + kd d max(-v_n, 0)) - normalize(v_t) min(kf |v_t|, mu ke d)
  Warp instead averages shape and ground materials, damps without the depth factor, caps friction by the
  normal force, and runs its general collision pipeline. Shapes do not collide with each other (DFlex).

The output state's maximal coordinates (`body_q`, `body_qd`) are not updated, as in DFlex; `eval_fk` them
before rendering. Each substep writes `body_q` into an array of its own, so that the backward pass counts
each adjoint once (see featherstone_fix.py).
"""
import numpy as np
import warp as wp
from rewarped.warp import integrator_featherstone as fs

from .featherstone_fix import FeatherstoneIntegrator


@wp.kernel
def dflex_joint_drive(
    joint_act: wp.array(dtype=float),
    joint_q: wp.array(dtype=float),
    joint_qd: wp.array(dtype=float),
    axis_q: wp.array(dtype=int),
    axis_qd: wp.array(dtype=int),
    target: wp.array(dtype=float),
    stiffness: wp.array(dtype=float),
    damping: wp.array(dtype=float),
    # output
    act_out: wp.array(dtype=float),
):
    i = wp.tid()  # one joint axis (hinge or slide)
    q = joint_q[axis_q[i]]
    qd = joint_qd[axis_qd[i]]
    act_out[i] = joint_act[i] - stiffness[i] * (q - target[i]) - damping[i] * qd


@wp.kernel
def dflex_ground_contact(
    body_q: wp.array(dtype=wp.transform),
    body_v_s: wp.array(dtype=wp.spatial_vector),
    contact_body: wp.array(dtype=int),
    contact_point: wp.array(dtype=wp.vec3),
    contact_radius: wp.array(dtype=float),
    contact_material: wp.array(dtype=wp.vec4),
    up: wp.vec3,
    # output
    body_f: wp.array(dtype=wp.spatial_vector),
):
    tid = wp.tid()
    body = contact_body[tid]
    p = wp.transform_point(body_q[body], contact_point[tid]) - up * contact_radius[tid]
    c = wp.dot(up, p)  # < 0: below the ground
    if c >= 0.0:
        return
    mat = contact_material[tid]  # ke, kd, kf, mu
    v_s = body_v_s[body]  # spatial twist: the point's velocity is v + w x p
    dpdt = wp.spatial_bottom(v_s) + wp.cross(wp.spatial_top(v_s), p)
    vn = wp.dot(up, dpdt)
    vt = dpdt - up * vn
    fn = c * mat[0]
    fd = wp.min(vn, 0.0) * mat[1] * (0.0 - c)
    ft = wp.normalize(vt) * wp.min(mat[2] * wp.length(vt), 0.0 - mat[3] * c * mat[0])
    f = up * (fn + fd) + ft  # Featherstone's sign convention for body_f, as Warp's own contact kernel
    wp.atomic_add(body_f, body, wp.spatial_vector(wp.cross(p, f), f))


@wp.kernel(enable_backward=False)
def eval_spatial_mass_gemm_batched(
    articulation_start: wp.array(dtype=int),
    J_rows: wp.array(dtype=int),
    J_cols: wp.array(dtype=int),
    J_start: wp.array(dtype=int),
    body_I_s: wp.array(dtype=wp.spatial_matrix),
    J: wp.array(dtype=float),
    # output
    P: wp.array(dtype=float),
):
    """P = M J, one articulation per thread, for the spatial mass matrix M = diag(I_1, ..., I_b) of the bodies'
    6 x 6 spatial inertias (`body_I_s`), without building M: Rewarped's `eval_rigid_mass` followed by
    `eval_dense_gemm_batched`, with the sum over M's row cut to its block, the same products added in the same
    order, so that P is the same floats. Its adjoint is `adj_eval_spatial_mass_gemm_batched`."""
    batch = wp.tid()
    first_body, rows, cols, start = articulation_start[batch], J_rows[batch], J_cols[batch], J_start[batch]
    for i in range(rows):
        I = body_I_s[first_body + i // 6]
        row, block = i % 6, (i // 6) * 6
        for j in range(cols):
            sum = float(0.0)
            for k in range(6):
                sum += I[row, k] * J[start + (block + k) * cols + j]
            P[start + i * cols + j] = sum


@wp.kernel(enable_backward=False)
def adj_eval_spatial_mass_gemm_batched(
    articulation_start: wp.array(dtype=int),
    J_rows: wp.array(dtype=int),
    J_cols: wp.array(dtype=int),
    J_start: wp.array(dtype=int),
    body_I_s: wp.array(dtype=wp.spatial_matrix),
    J: wp.array(dtype=float),
    adj_P: wp.array(dtype=float),
    # outputs, added to
    adj_body_I_s: wp.array(dtype=wp.spatial_matrix),
    adj_J: wp.array(dtype=float),
):
    """The adjoint of P = M J: adj_J[k, j] += M[i, k] adj_P[i, j] and adj_M[i, k] = sum_j J[k, j] adj_P[i, j],
    added to adj_I of M's block. Each entry's terms are added in the order of Warp's generated adjoints of
    `eval_dense_gemm_batched` (i, then j, downwards; every term as 0 + x; the terms of M's zeros are +0) and
    of `eval_rigid_mass` (adj_M summed from zero, then added to adj_I once), so that they are the same floats."""
    batch = wp.tid()
    first_body, rows, cols, start = articulation_start[batch], J_rows[batch], J_cols[batch], J_start[batch]
    for body in range(rows // 6):
        I = body_I_s[first_body + body]
        adj_I = wp.spatial_matrix()
        for row_down in range(6):
            row = 5 - row_down
            i = body * 6 + row
            for col in range(6):
                k = body * 6 + col
                adj_M_ik = float(0.0)
                for j_down in range(cols):
                    j = cols - 1 - j_down
                    adj_P_ij = 0.0 + adj_P[start + i * cols + j]
                    adj_J[start + k * cols + j] += 0.0 + I[row, col] * adj_P_ij
                    adj_M_ik += 0.0 + J[start + k * cols + j] * adj_P_ij
                adj_I[row, col] = adj_M_ik
        adj_body_I_s[first_body + body] = adj_body_I_s[first_body + body] + adj_I


def launch_with_adjoint(kernel, adjoint, dim, sizes, A, B, C, device):
    """C = kernel(sizes, A, B), and on the active tape `adjoint`, which adds C's gradient's share to A's and B's."""
    wp.launch(kernel, dim=dim, device=device, inputs=[*sizes, A, B], outputs=[C], record_tape=False)
    tape = wp.context.runtime.tape
    if tape is not None and C.requires_grad:
        tape.record_func(lambda: wp.launch(adjoint, dim=dim, device=device, inputs=[*sizes, A, B, C.grad],
                                           outputs=[A.grad, B.grad]),
                         arrays=[A, B, C])


def spatial_mass_gemm(dim, sizes, body_I_s, J, P, device):
    """P = M J by `eval_spatial_mass_gemm_batched` (`sizes`: its articulation_start, J_rows, J_cols, J_start)."""
    launch_with_adjoint(eval_spatial_mass_gemm_batched, adj_eval_spatial_mass_gemm_batched, dim, sizes, body_I_s, J,
                        P, device)


@wp.kernel(enable_backward=False)
def eval_transposed_gemm_batched(
    m: wp.array(dtype=int),
    n: wp.array(dtype=int),
    p: wp.array(dtype=int),
    A_start: wp.array(dtype=int),
    B_start: wp.array(dtype=int),
    C_start: wp.array(dtype=int),
    A: wp.array(dtype=float),
    B: wp.array(dtype=float),
    # output
    C: wp.array(dtype=float),
):
    """C = A^T B for p x m matrices A and p x n matrices B, one articulation per thread (the mass matrix's
    H = J^T P, J mostly zeros): Rewarped's `eval_dense_gemm_batched` with `transpose_A`, each sum over k in the
    same order, the products of A's zeros left out. A sum starts at +0 and never becomes -0, and adding a zero
    product (finite B) leaves it as it is, so C is the same floats. Its adjoint is
    `adj_eval_transposed_gemm_batched`."""
    batch = wp.tid()
    rows, cols_A, cols_B = p[batch], m[batch], n[batch]
    a0, b0, c0 = A_start[batch], B_start[batch], C_start[batch]
    for i in range(cols_A):
        c = c0 + i * cols_B
        for j in range(cols_B):
            C[c + j] = 0.0
        for k in range(rows):  # row i of C summed over k in Rewarped's order, a row of B at a time
            a = A[a0 + k * cols_A + i]
            if a != 0.0:
                b = b0 + k * cols_B
                for j in range(cols_B):
                    C[c + j] = C[c + j] + a * B[b + j]


@wp.kernel(enable_backward=False)
def adj_eval_transposed_gemm_batched(
    m: wp.array(dtype=int),
    n: wp.array(dtype=int),
    p: wp.array(dtype=int),
    A_start: wp.array(dtype=int),
    B_start: wp.array(dtype=int),
    C_start: wp.array(dtype=int),
    A: wp.array(dtype=float),
    B: wp.array(dtype=float),
    adj_C: wp.array(dtype=float),
    # outputs, added to
    adj_A: wp.array(dtype=float),
    adj_B: wp.array(dtype=float),
):
    """The adjoint of C = A^T B: adj_B[k, j] += A[k, i] adj_C[i, j] and adj_A[k, i] += B[k, j] adj_C[i, j],
    each entry's terms added in the order of Warp's generated adjoint of `eval_dense_gemm_batched` (i, then j,
    downwards; every term as 0 + x), so that they are the same floats. B's adjoint skips A's zeros, whose terms
    are +0, and is never -0 (P's adjoint comes from here only)."""
    batch = wp.tid()
    rows, cols_A, cols_B = p[batch], m[batch], n[batch]
    a0, b0, c0 = A_start[batch], B_start[batch], C_start[batch]
    for k in range(rows):
        for i_down in range(cols_A):
            i = cols_A - 1 - i_down
            a = a0 + k * cols_A + i
            A_ki = A[a]
            adj_A_ki = adj_A[a]
            for j_down in range(cols_B):
                j = cols_B - 1 - j_down
                adj_C_ij = 0.0 + adj_C[c0 + i * cols_B + j]
                b = b0 + k * cols_B + j
                if A_ki != 0.0:
                    adj_B[b] += 0.0 + A_ki * adj_C_ij
                adj_A_ki += 0.0 + B[b] * adj_C_ij
            adj_A[a] = adj_A_ki


def transposed_gemm(dim, sizes, A, B, C, device):
    """C = A^T B by `eval_transposed_gemm_batched` (`sizes`: its m, n, p and the three starts)."""
    launch_with_adjoint(eval_transposed_gemm_batched, adj_eval_transposed_gemm_batched, dim, sizes, A, B, C, device)


def contact_points(model):
    """DFlex's ground-contact points of every shape: (body, point in the body frame, radius, (ke, kd, kf, mu))."""
    points = []
    geo = model.shape_geo
    types, scales = geo.type.numpy(), geo.scale.numpy()
    transforms, bodies = model.shape_transform.numpy(), model.shape_body.numpy()
    mat = model.shape_materials
    materials = np.stack([mat.ke.numpy(), mat.kd.numpy(), mat.kf.numpy(), mat.mu.numpy()], axis=1)
    for shape, (kind, scale, body) in enumerate(zip(types, scales, bodies)):
        if body < 0:
            continue
        if kind == wp.sim.GEO_SPHERE:
            local, radius = [(0.0, 0.0, 0.0)], scale[0]
        elif kind == wp.sim.GEO_CAPSULE:  # Warp's capsule axis is the shape's y axis
            local, radius = [(0.0, -scale[1], 0.0), (0.0, scale[1], 0.0)], scale[0]
        elif kind == wp.sim.GEO_BOX:
            local, radius = [(sx * scale[0], sy * scale[1], sz * scale[2]) for sx in (-1, 1) for sy in (-1, 1)
                             for sz in (-1, 1)], 0.0
        else:
            raise ValueError(f"DFlex ground contact has no points for shape type {kind} (shape {shape})")
        X = wp.transform(wp.vec3(*transforms[shape][:3]), wp.quat(*transforms[shape][3:]))
        for point in local:
            points.append((body, wp.transform_point(X, wp.vec3(*point)), radius, materials[shape]))
    return points


class DFlexIntegrator(FeatherstoneIntegrator):
    """Featherstone substep with DFlex's joint torque and ground contact (module docstring).

    `stiffness`, `damping` and `target` are per joint axis (the order of `model.joint_act`); `damping` is
    DFlex's target_kd + limit_kd.
    """

    def __init__(self, model, stiffness, damping, target, update_mass_matrix_every=1):
        super().__init__(model, angular_damping=0.0, update_mass_matrix_every=update_mass_matrix_every)
        device = model.device
        axis_q, axis_qd = [], []
        q_start, qd_start = model.joint_q_start.numpy(), model.joint_qd_start.numpy()
        axis_dim, types = model.joint_axis_dim.numpy(), model.joint_type.numpy()
        for j, kind in enumerate(types):
            count = axis_dim[j].sum()
            if count and kind in (wp.sim.JOINT_BALL, wp.sim.JOINT_FREE, wp.sim.JOINT_DISTANCE):
                raise ValueError(f"the DFlex joint law covers joints with one coordinate per axis; joint {j} "
                                 f"has type {kind}")
            axis_q += [q_start[j] + i for i in range(count)]  # hinge, slide, universal, compound, D6
            axis_qd += [qd_start[j] + i for i in range(count)]
        n = len(axis_q)
        if not (len(stiffness) == len(damping) == len(target) == n == model.joint_act.shape[0]):
            raise ValueError(f"stiffness, damping and target need one value per joint axis ({n})")
        self.axis_q = wp.array(axis_q, dtype=int, device=device)
        self.axis_qd = wp.array(axis_qd, dtype=int, device=device)
        self.stiffness = wp.array(stiffness, dtype=float, device=device)
        self.damping = wp.array(damping, dtype=float, device=device)
        self.target = wp.array(target, dtype=float, device=device)
        self.no_limit_damping = wp.zeros(n, dtype=float, device=device)

        body, point, radius, material = zip(*contact_points(model))
        self.contact_body = wp.array(body, dtype=int, device=device)
        self.contact_point = wp.array(point, dtype=wp.vec3, device=device)
        self.contact_radius = wp.array(radius, dtype=float, device=device)
        self.contact_material = wp.array(np.array(material), dtype=wp.vec4, device=device)

    def allocate_state_aux_vars(self, model, target, requires_grad):
        """The per-substep arrays of Rewarped's integrator, without the system matrices (M, J, P, H, L): those
        are made only in the substeps that compute them and shared by the substeps that reuse them."""
        def zeros(shape, dtype=float):
            return wp.zeros(shape, dtype=dtype, device=model.device, requires_grad=requires_grad)

        dofs, bodies = model.joint_dof_count, model.body_count
        target.joint_qdd, target.joint_tau, target.joint_solve_tmp = zeros(dofs), zeros(dofs), zeros(dofs)
        target.joint_S_s = zeros(dofs, wp.spatial_vector)
        target.body_q_com = zeros(bodies, wp.transform)
        target.body_I_s = zeros(bodies, wp.spatial_matrix)
        for name in ("body_v_s", "body_a_s", "body_f_s", "body_ft_s"):
            setattr(target, name, zeros(bodies, wp.spatial_vector))
        target.joint_act_drive = zeros(len(self.axis_q))  # the joint torque law's output (dflex_joint_drive)
        if requires_grad:  # the substep's own body_q (module docstring)
            target.body_q_fk = zeros(bodies, wp.transform)
        target._featherstone_augmented = target._dflex_augmented = True

    def simulate(self, model, state_in, state_out, dt, control=None):
        requires_grad = state_in.requires_grad
        for state in (state_in, state_out):
            if not getattr(state, "_dflex_augmented", False):  # also a state that Rewarped's integrator augmented
                self.allocate_state_aux_vars(model, state, requires_grad)
        if control is None:
            control = model.control(clone_variables=False)
        device = model.device
        # body_q: written here and read below; an array of the substep's own when taped (one writer per array)
        body_q = state_in.body_q_fk if requires_grad else state_in.body_q
        body_f = state_in.body_f  # zeroed by the caller before each substep

        wp.launch(
            fs.eval_rigid_fk,
            dim=model.articulation_count,
            inputs=[model.articulation_start, model.joint_type, model.joint_parent, model.joint_child,
                    model.joint_q_start, state_in.joint_q, model.joint_X_p, model.joint_X_c, model.fs_body_X_com,
                    model.joint_axis, model.joint_axis_start, model.joint_axis_dim],
            outputs=[body_q, state_in.body_q_com],
            device=device,
        )
        state_in.body_f_s.zero_()
        wp.launch(
            fs.eval_rigid_id,
            dim=model.articulation_count,
            inputs=[model.articulation_start, model.joint_type, model.joint_parent, model.joint_child,
                    model.joint_q_start, model.joint_qd_start, state_in.joint_q, state_in.joint_qd, model.joint_axis,
                    model.joint_axis_start, model.joint_axis_dim, model.fs_body_I_m, body_q, state_in.body_q_com,
                    model.joint_X_p, model.joint_X_c, model.gravity],
            outputs=[state_in.joint_S_s, state_in.body_I_s, state_in.body_v_s, state_in.body_f_s,
                     state_in.body_a_s],
            device=device,
        )
        wp.launch(
            dflex_ground_contact,
            dim=len(self.contact_body),
            inputs=[body_q, state_in.body_v_s, self.contact_body, self.contact_point, self.contact_radius,
                    self.contact_material, wp.vec3(*model.up_vector)],
            outputs=[body_f],
            device=device,
        )
        act = state_in.joint_act_drive
        wp.launch(
            dflex_joint_drive,
            dim=len(self.axis_q),
            inputs=[control.joint_act, state_in.joint_q, state_in.joint_qd, self.axis_q, self.axis_qd, self.target,
                    self.stiffness, self.damping],
            outputs=[act],
            device=device,
        )
        state_in.body_ft_s.zero_()
        state_in.joint_tau.zero_()
        wp.launch(
            fs.eval_rigid_tau,
            dim=model.articulation_count,
            inputs=[model.articulation_start, model.joint_type, model.joint_parent, model.joint_child,
                    model.joint_q_start, model.joint_qd_start, model.joint_axis_start, model.joint_axis_dim,
                    model.joint_axis_mode, state_in.joint_q, state_in.joint_qd, act, model.joint_target_ke,
                    model.joint_target_kd, model.joint_limit_lower, model.joint_limit_upper, model.joint_limit_ke,
                    self.no_limit_damping, state_in.joint_S_s, state_in.body_f_s, body_f],
            outputs=[state_in.body_ft_s, state_in.joint_tau],
            device=device,
        )
        if self._step % self.update_mass_matrix_every == 0:
            self._mass_matrix(model, state_in, state_out)
        else:  # DFlex reuses the last mass matrix and its factor
            state_out.H, state_out.L = state_in.H, state_in.L
        state_in.joint_qdd.zero_()
        wp.launch(
            fs.eval_dense_solve_batched,
            dim=model.articulation_count,
            inputs=[model.fs_articulation_H_start, model.fs_articulation_H_rows, model.fs_articulation_dof_start,
                    state_out.H, state_out.L, state_in.joint_tau],
            outputs=[state_in.joint_qdd, state_in.joint_solve_tmp],
            device=device,
        )
        wp.launch(
            fs.integrate_generalized_joints,
            dim=model.joint_count,
            inputs=[model.joint_type, model.joint_q_start, model.joint_qd_start, model.joint_axis_dim,
                    state_in.joint_q, state_in.joint_qd, state_in.joint_qdd, dt],
            outputs=[state_out.joint_q, state_out.joint_qd],
            device=device,
        )
        self._step += 1
        return state_out

    def _mass_matrix(self, model, state_in, state_out):
        """H = J^T M J with the armature on its diagonal, and its Cholesky factor L, into `state_out`."""
        n, device = model.articulation_count, model.device
        for name, size in (("J", model.fs_J_size), ("P", model.fs_J_size), ("H", model.fs_H_size),
                           ("L", model.fs_H_size)):
            setattr(state_out, name, wp.zeros(int(size), dtype=float, device=device, requires_grad=state_in.requires_grad))
        wp.launch(fs.eval_rigid_jacobian, dim=n, device=device,
                  inputs=[model.articulation_start, model.fs_articulation_J_start, model.joint_ancestor,
                          model.joint_qd_start, state_in.joint_S_s],
                  outputs=[state_out.J])
        spatial_mass_gemm(n, [model.articulation_start, model.fs_articulation_J_rows, model.fs_articulation_J_cols,
                              model.fs_articulation_J_start], state_in.body_I_s, state_out.J, state_out.P, device)  # P = M J
        transposed_gemm(n, [model.fs_articulation_J_cols, model.fs_articulation_J_cols, model.fs_articulation_J_rows,
                            model.fs_articulation_J_start, model.fs_articulation_J_start,
                            model.fs_articulation_H_start], state_out.J, state_out.P, state_out.H, device)  # H = J^T P
        wp.launch(fs.eval_dense_cholesky_batched, dim=n, device=device,
                  inputs=[model.fs_articulation_H_start, model.fs_articulation_H_rows, state_out.H,
                          model.joint_armature],
                  outputs=[state_out.L])
