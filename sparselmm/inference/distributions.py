"""The few distribution functions the tests need, from ``scipy.special`` (``scipy.stats`` takes a
quarter of a second to import, more than a fit of InstEval's Satterthwaite table)."""

from __future__ import annotations

import numpy as np
from scipy import special


def t_two_sided(t, df):
    """P(|T| ≥ |t|) for Student's t with ``df`` degrees of freedom (df = ∞: the normal)."""
    return 2.0 * special.stdtr(df, -np.abs(t))


def f_sf(F, df1, df2):
    """P(F' ≥ F) for the F distribution (df2 = ∞: χ²_df1 / df1)."""
    return special.chdtrc(df1, F * df1) if np.isinf(df2) else special.fdtrc(df1, df2, F)


def chi2_sf(x, df):
    return special.chdtrc(df, x)


def chi2_ppf(p, df):
    return special.chdtri(df, 1.0 - p)


def norm_ppf(p):
    return special.ndtri(p)
