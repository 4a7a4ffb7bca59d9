"""F tests of the fixed-effect terms (lmerTest's ``anova``) and the coefficient table.

Type 3 hypotheses are lmerTest's (``get_contrasts_type3``, SAS's type III for
treatment coding): the rank-deficient "cell" design rdX (every term coded
with all its levels, ``~ 0 + term``) is expressed in X's columns, L =
(X⁺ rdX)'; the columns of a term contained in others are orthogonalized
against theirs, higher-order terms first; the rows of L that are columns of
X give, per term, its contrast matrix. Without terms contained in others
this is the identity rows of each term's columns. Type 1 hypotheses are the
rows of the Doolittle (unit upper-triangular LDL') factor of X'X.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from formulaic import Formula

from ..frame import r_name
from .ddf import ddf_method


def _zapsmall(a: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall``: round to ``digits`` significant digits of the largest entry."""
    mx = np.max(np.abs(a)) if a.size else 0.0
    return np.round(a, max(0, digits - int(np.ceil(np.log10(mx)))) if mx > 0 else digits)


def fixed_terms(model) -> list[tuple[str, np.ndarray, frozenset]]:
    """The fixed-effect terms (not the intercept): R's label, columns of X, variables."""
    spec = model.frame.fixed_spec
    keep = getattr(spec, "keep", None)
    spec = getattr(spec, "model_spec", spec)
    position = {c: j for j, c in enumerate(keep if keep is not None else range(len(spec.column_names)))}
    out = []
    for st in spec.structure:
        if str(st.term) == "1":
            continue
        first = spec.column_names.index(st.columns[0]) if st.columns else 0
        cols = [position[c] for c in range(first, first + len(st.columns)) if c in position]
        out.append((str(st.term), np.array(cols, dtype=int), frozenset(str(f) for f in st.term.factors)))
    return out


def _has_intercept(model) -> bool:
    return "(Intercept)" in model.frame.fe_names


def type3_contrasts(model) -> dict[str, np.ndarray]:
    """Per fixed term, its type 3 contrast matrix (rows × p)."""
    p = len(model.frame.fe_names)
    terms = fixed_terms(model)
    contained = {name: [o for o, _, fo in terms if fs < fo] for name, _, fs in terms}
    if not any(contained.values()) or len(terms) <= 1:
        return {name: np.eye(p)[cols] for name, cols, _ in terms}
    if model.data is None:
        raise ValueError("type 3 hypotheses of a model with interactions need the data the model was fitted to")
    data = model.data.loc[model.frame.row_index]
    X = model.frame.X
    blocks, names = [], []
    if _has_intercept(model):
        blocks.append(np.ones((len(data), 1)))
        names.append("(Intercept)")
    for name, _, _ in terms:
        mm = Formula(f"0 + {name}").get_model_matrix(data)
        blocks.append(np.asarray(mm, dtype=float))
        names += [r_name(c) for c in mm.model_spec.column_names]
    rdX = np.hstack(blocks)
    L = _zapsmall(np.linalg.lstsq(X, rdX, rcond=None)[0].T)  # rows: cells of rdX, columns: X's
    colmap = {name: cols for name, cols, _ in terms}
    order = sorted(terms, key=lambda t: -len(t[2]))
    for name, cols, _ in order:
        if contained[name]:
            other = np.concatenate([colmap[o] for o in contained[name]])
            B = L[:, other]
            L[:, cols] = _zapsmall(L[:, cols] - B @ np.linalg.lstsq(B, L[:, cols], rcond=None)[0])
    rows = [names.index(c) for c in model.frame.fe_names]
    L = L[rows]
    out = {}
    for name, cols, _ in terms:
        C = L[:, cols].T
        out[name] = C[np.abs(C).sum(axis=1) > 1e-8]
    return out


def type1_contrasts(model) -> dict[str, np.ndarray]:
    """Per fixed term, the rows of the Doolittle factor of X'X (sequential hypotheses)."""
    R = np.linalg.cholesky(model.crossprod.XtX).T  # X'X (of a model read in pieces too)
    U = R / np.diag(R)[:, None]  # unit upper triangular: X'X = U' D U
    return {name: U[cols] for name, cols, _ in fixed_terms(model)}


ANOVA_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]


def anova_table(result, type: int = 3, ddf: str = "satterthwaite") -> pd.DataFrame:
    """lmerTest's ``anova(m, type, ddf)``: per fixed term Sum Sq, Mean Sq, NumDF, DenDF, F, p."""
    if type in (3, "3", "III"):
        contrasts = type3_contrasts(result.model)
    elif type in (1, "1", "I"):
        contrasts = type1_contrasts(result.model)
    else:
        raise ValueError(f"type must be 1 or 3 (lmerTest's type I or III hypotheses), not {type!r}")
    tester = ddf_method(result, ddf)
    rows = {}
    for name, L in contrasts.items():
        t = tester.test(L)
        # lmerTest: Mean Sq = F σ̂² with Kenward–Roger's F before its scaling (pbkrtest's FtestU)
        ms = (t.F if t.F_unscaled is None else t.F_unscaled) * result.scale
        rows[name] = (ms * t.num_df, ms, t.num_df, t.den_df, t.F, t.p)
    return pd.DataFrame.from_dict(rows, orient="index", columns=ANOVA_COLUMNS)


COEF_COLUMNS = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]


def coef_table(result, ddf: str = "satterthwaite") -> pd.DataFrame:
    """Per fixed effect: estimate, SE, df, t, p (lmerTest's ``summary`` table).

    ``ddf="kenward-roger"`` uses pbkrtest's adjusted covariance for the SE, as lmerTest.
    """
    tester = ddf_method(result, ddf)
    names = result.model.frame.fe_names
    rows = []
    for j in range(len(names)):
        t = tester.test(np.eye(len(names))[j])
        rows.append((t.estimate, t.se, t.den_df, t.t, t.p))
    return pd.DataFrame(rows, index=names, columns=COEF_COLUMNS)
