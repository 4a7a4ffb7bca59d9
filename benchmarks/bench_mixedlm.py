"""asv: the statsmodels door, ``sparselmm.MixedLM``, on the synthetic designs.

``NestedMixedLM``: ``MixedLM.from_formula("y ~ time", groups="subject",
re_formula="1 + time")`` (the nested design, one correlated block per group).
``CrossedMixedLM``: the crossed design written statsmodels' way, one group
and a variance component per factor (``vc_formula={"student": "0 +
C(student)", ...}``). ``time_fit`` is ``from_formula`` and ``fit`` (REML),
standard errors included; the lme4 door on the same data is
``bench_synthetic``'s ``time_fit``.
"""

from __future__ import annotations

import warnings

from ._common import SIZES, OneSample, dataset, warm_jit


class _DoorFit(OneSample):
    params = SIZES
    param_names = ["n"]
    kind = ""

    def setup(self, n):
        from sparselmm import MixedLM

        _, self.data = dataset(f"{self.kind}_{n}")
        self.MixedLM = MixedLM
        warm_jit()
        if self.kind == "crossed":
            self.data = self.data.assign(one=1)
        self.time_fit(n)  # the door's own first use (statsmodels' imports, formula machinery)

    def time_fit(self, n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.kind == "nested":
                model = self.MixedLM.from_formula("y ~ time", self.data, groups="subject", re_formula="1 + time")
            else:
                vc = {g: f"0 + C({g})" for g in ("student", "item", "dept")}
                model = self.MixedLM.from_formula("y ~ x + treat", self.data, groups="one", re_formula="0",
                                                  vc_formula=vc)
            model.fit()


class CrossedMixedLM(_DoorFit):
    kind = "crossed"


class NestedMixedLM(_DoorFit):
    kind = "nested"
