"""Simulator states that a horizon's steps reuse instead of allocating anew (docs/benchmarks.md#speed).

With gradients, Rewarped's step makes 16 new states per frame (one per substep, each with the integrator's
per-substep arrays): about 30 Warp arrays and their gradients per state, 16,000 a horizon, each built in Python.
`StatePool.zeros()` returns a state equal to a new `model.state(copy="zeros")` with those per-substep arrays, all
of them views of one values buffer and one gradient buffer, which two memsets zero. A state is reused only when
nothing but the pool holds it or any of its arrays: no autograd graph, tape, torch tensor or task attribute, so
a graph kept alive across horizons keeps its states. States are handed out in a ring, a held one skipped, so
that the pool holds about one horizon's states, as many as the tape held before.
"""
import sys

import warp as wp

_ALIGN = 16
_LOOK_AHEAD = 3  # the task's current state and the one before it stay held into the next horizon


class StatePool:
    def __init__(self, model, integrator):
        self.model, self.integrator = model, integrator
        self.new_state = model.state  # the model's own, which the step's model.state points here while it runs
        self.states, self.next = [], 0

    def zeros(self, copy="zeros"):
        """A zeroed state with gradients (`model.state(copy="zeros")`'s signature, which Rewarped calls)."""
        if copy != "zeros":
            raise ValueError(f"StatePool makes zeroed states only, got copy={copy!r}")
        for _ in range(min(_LOOK_AHEAD, len(self.states))):
            i, self.next = self.next, (self.next + 1) % len(self.states)
            if self._refcounts(i) == self.states[i]._pool_free:
                return self._reset(self.states[i])
        # all held (a graph still alive), or the ring is still growing: a new state, where the ring goes on
        self.states.insert(self.next, self._new())
        self.states[self.next]._pool_free = self._refcounts(self.next)  # as counted when nothing else holds it
        self.next = (self.next + 1) % len(self.states)
        return self.states[self.next - 1]

    @staticmethod
    def _reset(state):
        """Zero the state and drop what a step attached to it (the integrator's mass matrices)."""
        attrs, saved, free = vars(state), state._pool_attrs, state._pool_free
        attrs.clear()
        attrs.update(saved)
        state._pool_attrs, state._pool_free = saved, free
        state._pool_values.zero_()
        state._pool_grads.zero_()
        return state

    def _refcounts(self, i):
        """References to the state, its arrays and their gradients; an array's reference from the state itself is
        left out, so that an array a step put aside (an attribute set to another array) still counts as held."""
        state = self.states[i]
        attrs = vars(state)
        return (sys.getrefcount(state),
                *(sys.getrefcount(array) - (attrs.get(name) is array) for name, array in state._pool_arrays),
                *(sys.getrefcount(array.grad) for _, array in state._pool_arrays))

    def _new(self):
        state = self.new_state(copy="zeros")
        self.integrator.allocate_state_aux_vars(self.model, state, True)
        arrays = {name: value for name, value in vars(state).items() if isinstance(value, wp.array) and value.size}
        offsets, size = {}, 0
        for name, array in arrays.items():
            offsets[name] = size
            size += -(-array.capacity // _ALIGN) * _ALIGN
        device = self.model.device
        values = wp.zeros(size, dtype=wp.uint8, device=device)
        grads = wp.zeros(size, dtype=wp.uint8, device=device)
        views = []
        for name, array in arrays.items():
            view = wp.array(ptr=values.ptr + offsets[name], dtype=array.dtype, shape=array.shape, device=device)
            view._ref = values  # keeps the buffer alive as long as any view (or a tensor of it) lives
            grad = wp.array(ptr=grads.ptr + offsets[name], dtype=array.dtype, shape=array.shape, device=device)
            grad._ref = grads
            view.grad = grad
            setattr(state, name, view)
            views.append((name, view))
        state._pool_values, state._pool_grads, state._pool_arrays = values, grads, views
        state._pool_attrs = dict(vars(state))
        return state
