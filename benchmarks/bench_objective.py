"""One evaluation of the profiled objective (REML criterion) on each backend.

This is the unit of work the optimizer repeats: update Λθ'Z'ZΛθ + I, factor
it (CHOLMOD numeric factorization on ``"sparse"``; the first term's levels in
closed form, a Schur pass and LAPACK on the dense rest on ``"blocked"``; one
small Cholesky per group on ``"dense"``), solve for β̂ and the penalized
residual sum of squares. It depends on the number of random effects q and
the fixed-effects width, not on n.

Data sets: lme4's InstEval (``y ~ 1 + service + (1|s) + (1|d) + (1|dept)``,
crossed), a simulated crossed design with 10⁵ rows, and simulated nested
designs (``y ~ time + (1 + time|subject)``, n/10 subjects) with 10⁵ and 10⁶
rows. The dense backend only applies to the nested designs, the blocked one
to the crossed designs (where its trailing block is dense); the other
combinations are skipped. The backends cache the factor of the last θ, so
each call alternates between two θ values; the symbolic analysis and JIT
compilation happen in ``setup``.
"""

from __future__ import annotations

from sparselmm import LinearMixedModel

from ._common import dataset, two_thetas, warm_jit


class Objective:
    params = (["insteval", "crossed_100000", "nested_100000", "nested_1000000"], ["sparse", "blocked", "dense"])
    param_names = ["data", "backend"]
    timeout = 300.0

    def setup(self, data, backend):
        if backend == "dense" and not data.startswith("nested"):
            raise NotImplementedError("the dense backend needs nested random effects")
        if backend == "blocked" and data.startswith("nested"):
            raise NotImplementedError("nested designs leave the blocked backend a sparse block: not its case")
        warm_jit()
        formula, frame = dataset(data)
        self.model = LinearMixedModel(formula, frame, backend=backend)
        self.thetas = two_thetas(self.model)
        for theta in self.thetas:
            self.model.objective(theta)
        # the last θ evaluated is thetas[1]; each call flips i first, so the
        # first timed call is at thetas[0] and no call hits the cache
        self.i = 1

    def time_objective(self, data, backend):
        self.i ^= 1
        self.model.objective(self.thetas[self.i])

    def peakmem_objective(self, data, backend):
        self.i ^= 1
        self.model.objective(self.thetas[self.i])


class Gradient(Objective):
    """One analytic gradient of the objective (DESIGN.md §4), including the factorization at θ.

    Sparse: CHOLMOD factor, selected inversion (Takahashi recurrences on the
    leading columns, LAPACK on the dense trailing block), crossproduct
    sums; blocked: LAPACK's inverse of the dense block and an inner product
    with the Gram matrix of the Schur pass; dense: the per-group Numba kernel.
    """

    def time_gradient(self, data, backend):
        self.i ^= 1
        self.model.backend.gradient(self.thetas[self.i])

    def peakmem_gradient(self, data, backend):
        self.i ^= 1
        self.model.backend.gradient(self.thetas[self.i])

    # inherited objective benchmarks are not repeated here
    time_objective = None
    peakmem_objective = None
