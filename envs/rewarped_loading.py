"""Loading Rewarped, which patches `warp.sim` on import (the tasks depend on it), and building and stepping its
tasks without their start-up chatter on the console."""
import contextlib
import io
import os
import sys
import warnings


@contextlib.contextmanager
def silenced_file_descriptors():
    """Send what is written to stdout/stderr, by Python or native code, to /dev/null inside the block.

    Needed once, for importing Rewarped: its `wp.init()` reports missing CUDA drivers from C code on file
    descriptor 2, and gym (imported by `rewarped.warp_env`) prints a deprecation notice.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)


def import_rewarped():
    """Import Warp in quiet mode (no banner, no per-module compile lines) and Rewarped without its notices."""
    import warp

    from .warp_launch import install

    warp.config.quiet = True
    with silenced_file_descriptors():
        import rewarped.warp_env  # noqa: F401  (patches warp.sim, calls wp.init(), imports gym)
    install()  # Warp's CPU launch without its per-call checks, the same numbers (warp_launch.py)


@contextlib.contextmanager
def quiet_construction():
    """Swallow the prints and the two known warnings of building a task (options, model dumps, gym's Box)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Box bound precision lowered", category=UserWarning)
        warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf")
        yield


@contextlib.contextmanager
def no_nonleaf_grad_warning():
    """`wp.from_torch` reads `.grad` of the (non-leaf) action tensor on every step; torch warns about that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf")
        yield
