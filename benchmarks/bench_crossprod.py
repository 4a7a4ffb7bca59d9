"""The crossproduct pass alone: ``crossproducts(model.layout, model.frame.X, model.frame.y)``.

The only step of a fit whose cost grows with n: one pass over the rows forms
Z'Z (with its block pattern, by a block Gustavson product over each level's
rows, Z never formed), Z'X, Z'y, X'X, X'y and y'y. Measured on lme4's
InstEval (73,421 rows, three crossed intercept terms) and on simulated
crossed (three intercept terms) and nested (intercept and slope per subject)
designs of 10⁵ and 10⁶ rows. The model is built in ``setup``; the benchmark
recomputes its crossproducts from its layout and model matrices.
"""

from __future__ import annotations

from sparselmm import LinearMixedModel
from sparselmm.crossprod import crossproducts

from ._common import dataset, warm_jit


class Crossproducts:
    params = ["insteval", "crossed_100000", "crossed_1000000", "nested_100000", "nested_1000000"]
    param_names = ["data"]
    timeout = 300.0

    def setup(self, data):
        warm_jit()
        formula, frame = dataset(data)
        self.model = LinearMixedModel(formula, frame)

    def time_crossproducts(self, data):
        crossproducts(self.model.layout, self.model.frame.X, self.model.frame.y)

    def peakmem_crossproducts(self, data):
        crossproducts(self.model.layout, self.model.frame.X, self.model.frame.y)
