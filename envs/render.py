"""Headless RGB frames of a task, on any machine (no display, no GPU); `wrappers.RecordVideo` makes MP4s of them.

Warp 1.3.3's OpenGL renderer needs a CUDA device, so frames are drawn here with matplotlib's Agg backend: a
side view (orthographic, along the axis that is neither forward x nor up) of every collision shape of the first
few envs, one panel per env, each panel following its robot's root body along x (the view's size is set from
the first frame), with ground ticks every 0.5 m so that motion shows. Spheres are discs, capsules and cylinders
stadiums, boxes and meshes the outline of their corners or vertices; nearer shapes are drawn over farther ones,
over "bones" from each body to its parent and its shapes. Rendering reads the simulator state and changes nothing.
"""
import numpy as np
import warp as wp


def _hull(points):
    """Convex hull (counter-clockwise) of 2-D points: Andrew's monotone chain."""
    points = sorted(map(tuple, np.round(points, 6)))
    if len(points) < 3:
        return np.array(points)

    def turns_left(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]) > 0

    def half(seq):
        chain = []
        for p in seq:
            while len(chain) >= 2 and not turns_left(chain[-2], chain[-1], p):
                chain.pop()
            chain.append(p)
        return chain[:-1]

    return np.array(half(points) + half(points[::-1]))


def _stadium(a, b, radius, sides=12):
    """Outline of a capsule seen from the side: the segment a-b widened by `radius`, round ends."""
    direction = np.arctan2(*(b - a)[::-1]) if np.linalg.norm(b - a) > 1e-9 else 0.0
    right = direction - np.pi / 2 + np.linspace(0, np.pi, sides)
    left = right + np.pi
    return np.concatenate([b + radius * np.stack([np.cos(right), np.sin(right)], 1),
                           a + radius * np.stack([np.cos(left), np.sin(left)], 1)])


class FrameRenderer:
    """`frame()`: an (height, width, 3) uint8 image of the task's first `num_envs` envs."""

    def __init__(self, task, num_envs=2, panel_size=(320, 320)):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.task, self.model = task, task.model
        self.num_envs = min(num_envs, task.num_envs)
        up = {"X": 0, "Y": 1, "Z": 2}[str(task.up_axis).upper()[-1]]
        self.axes = (0, up, 3 - up)  # screen right = world x (forward), screen up = up axis, depth = the third
        self.scratch = self.model.state(requires_grad=False)
        geo = self.model.shape_geo
        # meshes: at most 200 of their vertices (their outline is drawn)
        sources = [np.asarray(src.vertices)[:: max(1, len(src.vertices) // 200)] if kind == wp.sim.GEO_MESH else None
                   for kind, src in zip(geo.type.numpy(), self.model.shape_geo_src)]
        self.shapes = list(zip(self.model.shape_body.numpy(), geo.type.numpy(), geo.scale.numpy(),
                               self.model.shape_transform.numpy(), sources))
        self.bodies_per_env = self.model.body_count // task.num_envs
        self.links = list(zip(self.model.joint_parent.numpy(), self.model.joint_child.numpy()))
        self.view = None  # (side of the square view, its bottom), set by the first frame
        width, height = panel_size
        self.figure = Figure(figsize=(width * self.num_envs / 100, height / 100), dpi=100)
        self.canvas = FigureCanvasAgg(self.figure)
        self.panels = self.figure.subplots(1, self.num_envs, squeeze=False)[0]
        self.figure.subplots_adjust(0, 0, 1, 1, 0.02, 0)

    def _outline(self, kind, scale, world, source):
        """The 2-D outline (screen coordinates) and depth of one shape at world transform `world`."""
        x, y, depth = self.axes
        rotation = np.array(wp.quat_to_matrix(wp.transform_get_rotation(world))).reshape(3, 3)
        position = np.array(wp.transform_get_translation(world))

        def to_screen(points):
            world_points = np.asarray(points, dtype=np.float64) @ rotation.T + position
            return world_points[:, [x, y]], world_points[:, depth].mean()

        if kind == wp.sim.GEO_SPHERE:
            (centre,), d = to_screen([(0.0, 0.0, 0.0)])
            angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            return centre + scale[0] * np.stack([np.cos(angles), np.sin(angles)], 1), d
        if kind in (wp.sim.GEO_CAPSULE, wp.sim.GEO_CYLINDER, wp.sim.GEO_CONE):  # axis: the shape's y
            (a, b), d = to_screen([(0.0, -scale[1], 0.0), (0.0, scale[1], 0.0)])
            return _stadium(a, b, scale[0]), d
        if kind == wp.sim.GEO_BOX:
            corners = [(sx * scale[0], sy * scale[1], sz * scale[2]) for sx in (-1, 1) for sy in (-1, 1)
                       for sz in (-1, 1)]
            points, d = to_screen(corners)
            return _hull(points), d
        if kind == wp.sim.GEO_MESH and source is not None:
            points, d = to_screen(source * scale)
            return _hull(points), d
        return None, 0.0

    def _outlines(self, env, body_q):
        """(depth, outline) of every shape of `env`, farthest first, and the bones: segments from each body's
        origin to its parent's and to its shapes' centres (robots whose collision shapes do not touch, such
        as Anymal's knees and feet, still read as legs)."""
        outlines, bones = [], []
        for body, kind, scale, local, source in self.shapes:
            if body < 0 or body // self.bodies_per_env != env:
                continue
            world = wp.transform_multiply(wp.transform(wp.vec3(*body_q[body][:3]), wp.quat(*body_q[body][3:])),
                                          wp.transform(wp.vec3(*local[:3]), wp.quat(*local[3:])))
            outline, depth = self._outline(kind, scale, world, source)
            if outline is not None and len(outline) >= 3:
                outlines.append((depth, outline))
            bones.append((body_q[body][:3], np.array(wp.transform_get_translation(world))))
        bones += [(body_q[parent][:3], body_q[child][:3]) for parent, child in self.links
                  if parent >= 0 and child // self.bodies_per_env == env]
        return sorted(outlines, key=lambda item: item[0]), [np.stack(bone)[:, list(self.axes[:2])] for bone in bones]

    def frame(self):
        state = self.task.state_0
        wp.sim.eval_fk(self.model, state.joint_q, state.joint_qd, None, self.scratch)
        body_q = self.scratch.body_q.numpy()
        drawn = [self._outlines(env, body_q) for env in range(self.num_envs)]
        if self.view is None:  # fixed from the first frame: a square around the robot, the ground in it if near
            points = np.concatenate([outline for _, outline in drawn[0][0]])
            low, high = points[:, 1].min(), points[:, 1].max()
            size = 1.8 * max(np.ptp(points[:, 0]), high - low, 0.3)
            self.view = (size, -0.1 * size if low < 0.5 * size else (low + high - size) / 2)
        size, bottom = self.view
        for panel, (outlines, bones), env in zip(self.panels, drawn, range(self.num_envs)):
            panel.clear()
            for bone in bones:
                panel.plot(bone[:, 0], bone[:, 1], color=(0.25, 0.25, 0.25), lw=3, solid_capstyle="round")
            for rank, (_, outline) in enumerate(outlines):
                shade = 0.35 + 0.45 * rank / max(len(outlines) - 1, 1)  # farther shapes darker
                panel.fill(outline[:, 0], outline[:, 1], color=(shade, 0.45 * shade, 0.15), ec="black", lw=0.5)
            centre = body_q[env * self.bodies_per_env][self.axes[0]]  # follow the root body
            panel.set_xlim(centre - size / 2, centre + size / 2)
            panel.set_ylim(bottom, bottom + size)
            panel.axhspan(bottom - size, 0.0, color=(0.55, 0.6, 0.55), zorder=0)
            ticks = np.arange(np.floor((centre - size) / 0.5) * 0.5, centre + size, 0.5)
            panel.vlines(ticks, -0.03 * size, 0.0, color="white", lw=1, zorder=1)
            panel.set_aspect("equal", adjustable="box")
            panel.set_axis_off()
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()
