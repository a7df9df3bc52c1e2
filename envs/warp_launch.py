"""Warp's kernel launch on the CPU without its per-call argument checks (docs/benchmarks.md#speed).

A simulator step is about 200 `wp.launch` calls, its forward pass and its backward pass (`Tape.backward`)
together. Warp 1.3.3 packs every argument of every launch after checking its type, dtype, dimension count and
device (`warp.context.pack_arg`); on the CPU that Python work costs about as much as the kernels themselves at
small N. `launch` keeps, per kernel, its compiled hooks and declared argument types, and passes an array whose
type, dtype, dimension count and device are exactly those declared, or None for an absent array, straight to
the kernel, as `pack_arg` would after its checks. Scalars, structs and a mismatch go through `pack_arg`, which
raises Warp's errors; a CUDA device, a generic kernel or a recorded command through Warp's own `launch`. On a
tape, a launch is recorded with its adjoint's arguments packed right away (the arrays, their gradient arrays and
the scalars that `Tape.backward` would pack for the kernel's backward hook), so that the backward pass calls the
hook without looking up adjoints and packing again; a launch with a struct argument is recorded as Warp records
it. The same kernels get the same arguments in the same order, so every number is bit-identical
(tests/test_warp_launch.py).
"""
import sys

import warp
import warp.context
import warp.types

_warp_launch = warp.context.launch
_kernels = {}  # kernel -> (its module's CPU executable, hooks, per-argument (type, name, array type, null))
_bounds = {}  # dim -> its launch bounds, which a hook takes by value


def _specs(kernel, device):
    """The cached hooks and argument types of `kernel`, or None while its module is not loaded for the CPU."""
    module_exec = kernel.module.cpu_exec
    cached = _kernels.get(kernel)
    if cached is not None and cached[0] is module_exec:
        return cached
    module_exec = kernel.module.load(device)
    if not module_exec:
        return None
    args = [(a.type, a.label, type(a.type), a.type.__ctype__()) if warp.types.is_array(a.type) else
            (a.type, a.label, None, None) for a in kernel.adj.args]
    _kernels[kernel] = cached = (module_exec, module_exec.get_kernel_hooks(kernel), args)
    return cached


def _pack(kernel, specs, values, params, device, adjoint):
    for (arg_type, name, array_type, null), value in zip(specs, values):
        if array_type is None:
            params.append(warp.context.pack_arg(kernel, arg_type, name, value, device, adjoint))
        elif value is None:  # an absent array, as an input or as the adjoint of an array without gradient
            params.append(null)
        elif ((isinstance(value, warp.array) if adjoint else type(value) is array_type)
                and value.dtype is arg_type.dtype and value.ndim == arg_type.ndim and value.device is device):
            params.append(value.__ctype__())
        else:
            params.append(warp.context.pack_arg(kernel, arg_type, name, value, device, adjoint))


def _adjoints(values, gradients):
    """What `Tape.backward` passes as the adjoints of a launch's arguments (`warp.Tape.get_adjoint`: an array's
    gradient or None, a scalar itself), each array with a gradient also entered in the tape's `gradients` (as
    `Tape.record_func` does, for `Tape.zero`); None if an argument is a struct, whose adjoint Warp's tape builds."""
    adjoints = []
    for value in values:
        if isinstance(value, warp.array):
            grad = value.grad
            if grad:
                gradients[value] = grad
                adjoints.append(grad)
            else:
                adjoints.append(None)
        elif isinstance(value, warp.codegen.StructInstance):
            return None
        else:
            adjoints.append(value)
    return adjoints


class _Adjoint:
    """A recorded launch's adjoint, its arguments (values, then adjoints) packed once when it was recorded: the
    same call of the kernel's backward hook that `Tape.backward` makes, without packing them again there."""
    __slots__ = ("hook", "params", "arrays")

    def __init__(self, hook, params, values, adjoints):
        self.hook, self.params, self.arrays = hook, params, (values, adjoints)  # the arrays live as long as this

    def __call__(self):
        self.hook(*self.params)


def launch(kernel, dim, inputs=(), outputs=(), adj_inputs=(), adj_outputs=(), device=None, stream=None,
           adjoint=False, record_tape=True, record_cmd=False, max_blocks=0):
    """`wp.launch` with the same arguments and effects."""
    args = (kernel, dim, inputs, outputs, adj_inputs, adj_outputs, device, stream, adjoint, record_tape, record_cmd,
            max_blocks)
    runtime = warp.context.runtime
    if (runtime is None or record_cmd or stream is not None or warp.config.print_launches
            or not isinstance(kernel, warp.context.Kernel) or kernel.is_generic):
        return _warp_launch(*args)
    device = runtime.get_device(device)
    if not device.is_cpu:
        return _warp_launch(*args)
    values = [*inputs, *outputs]
    cached = _specs(kernel, device)
    if cached is None or len(values) != len(cached[2]):
        return _warp_launch(*args)
    _, hooks, specs = cached
    hook = hooks.backward if adjoint else hooks.forward
    if hook is None:
        return _warp_launch(*args)
    bounds = _bounds.get(dim) if type(dim) is int else warp.types.launch_bounds_t(dim)
    if bounds is None:
        bounds = _bounds[dim] = warp.types.launch_bounds_t(dim)
    params = [bounds]
    if bounds.size > 0:
        _pack(kernel, specs, values, params, device, False)
        _pack(kernel, specs, [*adj_inputs, *adj_outputs], params, device, True)
        hook(*params)
    tape = runtime.tape
    if tape and record_tape and bounds.size > 0 and not adjoint and hooks.backward is not None:
        adjoints = _adjoints(values, tape.gradients)
        if adjoints is not None:
            _pack(kernel, specs, adjoints, params, device, True)
            tape.launches.append(_Adjoint(hooks.backward, params, values, adjoints))  # as Tape.record_func
            return
    if tape and record_tape:
        frame = sys._getframe(1)
        caller = {"file": frame.f_code.co_filename, "lineno": frame.f_lineno, "func": frame.f_code.co_name}
        runtime.tape.record_launch(kernel, dim, max_blocks, inputs, outputs, device, metadata={"caller": caller})


def install():
    """Route `wp.launch` (Warp's own modules, Rewarped and ours call it by that name) through `launch`."""
    warp.launch = warp.context.launch = launch
