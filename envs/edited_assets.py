"""Load an edited copy of one of Rewarped's robot files, without touching the installed package."""
import os
import tempfile


def parse_edited(parse, text, filename, builder, contact, **kwargs):
    """Write `text` to `filename` in a temporary folder and load it into `builder` with Warp's `parse`
    (`wp.sim.parse_mjcf` or `wp.sim.parse_urdf`, which read from a path). `contact` (ke, kd, kf, mu) is the
    material of every collision shape."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, filename)
        with open(path, "w") as f:
            f.write(text)
        parse(path, builder, **{f"contact_{name}": value for name, value in contact.items()}, **kwargs)
