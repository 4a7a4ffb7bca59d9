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
    if np.ndim(df2):
        return np.where(np.isinf(df2), special.chdtrc(df1, F * df1), special.fdtrc(df1, np.minimum(df2, 1e300), F))
    return special.chdtrc(df1, F * df1) if np.isinf(df2) else special.fdtrc(df1, df2, F)


def chi2_sf(x, df):
    return special.chdtrc(df, x)


def chi2_ppf(p, df):
    return special.chdtri(df, 1.0 - p)


def norm_ppf(p):
    return special.ndtri(p)


def t_ppf(p, df):
    """Quantile of Student's t (df = ∞: the normal)."""
    return special.ndtri(p) if np.isinf(df) else special.stdtrit(df, p)


def f_ppf(p, df1, df2):
    return special.chdtri(df1, 1.0 - p) / df1 if np.isinf(df2) else special.fdtri(df1, df2, p)


# --- the studentized range (R's ptukey and qtukey, AS 190: Copenhaver and Holland 1988) ---------------
# The same quadratures as R's nmath, so that Tukey-adjusted p-values are R's to rounding: the range
# of cc normal means by Legendre quadrature of Hartley's form (12 nodes on two or three intervals up
# to 8), then, for finite df, 16 nodes on up to 50 intervals of the chi density (df above 25,000:
# the limit ∞, as R). scipy.stats.studentized_range differs there (1.6e-4 at df 36,843) and takes
# half a second to import.

_XLEG = np.array([0.981560634246719250690549090149, 0.904117256370474856678465866119,
                  0.769902674194304687036893833213, 0.587317954286617447296702418941,
                  0.367831498998180193752691536644, 0.125233408511468915472441369464])
_ALEG = np.array([0.047175336386511827194615961485, 0.106939325995318430960254718194,
                  0.160078328543346226334652529543, 0.203167426723065921749064455810,
                  0.233492536538354808760849898925, 0.249147045813402785000562436043])
#: the 12 nodes from left to right and their weights
_NODES12 = np.concatenate([-_XLEG, _XLEG[::-1]])
_WEIGHTS12 = np.concatenate([_ALEG, _ALEG[::-1]])
_XLEGQ = np.array([0.989400934991649932596154173450, 0.944575023073232576077988415535,
                   0.865631202387831743880467897712, 0.755404408355003033895101194847,
                   0.617876244402643748446671764049, 0.458016777657227386342419442984,
                   0.281603550779258913230460501460, 0.950125098376374401853193354250e-1])
_ALEGQ = np.array([0.271524594117540948517805724560e-1, 0.622535239386478928628438369944e-1,
                   0.951585116824927848099251076022e-1, 0.124628971255533872052476282192,
                   0.149595988816576732081501730547, 0.169156519395002538189312079030,
                   0.182603415044923588866763667969, 0.189450610455068496285396723208])


def _range_cdf(w: np.ndarray, cc: float) -> np.ndarray:
    """P(range of cc standard normals ≤ w), elementwise (R's ``wprob`` with rr = 1)."""
    w = np.asarray(w, dtype=float)
    half = 0.5 * w
    pr = 2.0 * special.ndtr(half) - 1.0
    pr = np.where(pr >= np.exp(-50.0 / cc), pr ** cc, 0.0)
    incr = np.where(w > 3.0, 2, 3)
    total = np.zeros_like(w)
    for k in range(3):  # the intervals of (w/2, 8)
        width = (8.0 - half) / incr
        lo = half + k * width
        a, b = lo + 0.5 * width, 0.5 * width
        ac = a[..., None] + b[..., None] * _NODES12
        inner = special.ndtr(ac) - special.ndtr(ac - w[..., None])
        ok = (ac * ac <= 60.0) & (inner >= np.exp(-30.0 / (cc - 1.0)))
        terms = np.where(ok, _WEIGHTS12 * np.exp(-0.5 * ac * ac) * np.where(ok, inner, 1.0) ** (cc - 1.0), 0.0)
        total += np.where(k < incr, terms.sum(axis=-1) * 2.0 * b * cc / np.sqrt(2.0 * np.pi), 0.0)
    pr = pr + total
    out = np.where(pr <= np.exp(-30.0), 0.0, np.minimum(pr, 1.0))
    return np.where(half >= 8.0, 1.0, out)


def ptukey(q: float, nmeans: float, df: float) -> float:
    """P(Q ≤ q) for the studentized range of ``nmeans`` means with ``df`` degrees of freedom (R's
    ``ptukey``; nmeans need not be an integer, as emmeans' Dunnett approximation uses it)."""
    if q <= 0:
        return 0.0
    if not np.isfinite(q):
        return 1.0
    if df > 25000.0 or np.isinf(df):
        return float(_range_cdf(np.array(q), nmeans))
    f2 = 0.5 * df
    ulen = 1.0 if df <= 100 else 0.5 if df <= 800 else 0.25 if df <= 5000 else 0.125
    lead = f2 * np.log(df) - df * np.log(2.0) - special.gammaln(f2) + np.log(ulen)
    i = np.arange(1, 51)[:, None]
    mid = (2 * i - 1) * ulen
    u = np.concatenate([-_XLEGQ, _XLEGQ]) * ulen  # the 16 nodes of each interval
    weights = np.concatenate([_ALEGQ, _ALEGQ])
    t1 = lead + (f2 - 1.0) * np.log(mid + u) - (mid + u) * 0.25 * df
    use = t1 >= -30.0
    wprob = _range_cdf(q * np.sqrt(0.5 * (mid + u)), nmeans)
    parts = np.where(use, wprob * weights * np.exp(np.where(use, t1, 0.0)), 0.0).sum(axis=1)
    stop = np.flatnonzero((i[:, 0] * ulen >= 1.0) & (parts <= 1e-14))
    total = parts[:stop[0]].sum() if stop.size else parts.sum()
    return float(min(total, 1.0))


def ptukey_sf(q: float, nmeans: float, df: float) -> float:
    return 1.0 - ptukey(q, nmeans, df)


def qtukey(p: float, nmeans: float, df: float) -> float:
    """The p quantile of the studentized range (R's ``qtukey``: its starting value and secant steps
    to 1e-4)."""
    if p <= 0:
        return 0.0
    if p >= 1:
        return np.inf
    ps = 0.5 - 0.5 * p
    yi = np.sqrt(np.log(1.0 / (ps * ps)))
    t = yi + ((((yi * -0.453642210148e-04 - 0.204231210125) * yi - 0.342242088547) * yi - 1.0) * yi
              + 0.322232421088) / ((((yi * 0.38560700634e-02 + 0.103537752850) * yi + 0.531103462366) * yi
                                    + 0.588581570495) * yi + 0.993484626060e-01)
    if df < 120.0:
        t += (t * t * t + t) / df / 4.0
    qq = 0.8832 - 0.2368 * t
    if df < 120.0:
        qq += -1.214 / df + 1.208 * t / df
    x0 = t * (qq * np.log(nmeans - 1.0) + 1.4142)
    v0 = ptukey(x0, nmeans, df) - p
    x1 = max(0.0, x0 - 1.0) if v0 > 0 else x0 + 1.0
    v1 = ptukey(x1, nmeans, df) - p
    for _ in range(50):
        x = x1 - v1 * (x1 - x0) / (v1 - v0)
        v0, x0 = v1, x1
        x = max(x, 0.0)
        v1, x1 = ptukey(x, nmeans, df) - p, x
        if abs(x1 - x0) < 1e-4:
            return float(x)
    return float(x1)
