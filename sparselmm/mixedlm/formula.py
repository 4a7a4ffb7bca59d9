"""``MixedLM.from_formula``: statsmodels' formulas, through formulaic.

``formula`` gives endog and exog; ``re_formula`` the grouped random
effects (``"1"`` by default: a random intercept named after the groups);
``vc_formula`` a dict of variance-component formulas, each evaluated once on
all rows and cut per group to the columns that occur in it (for indicator
and slope-by-level formulas, what statsmodels gets by evaluating it group
by group).
"""

from __future__ import annotations

import formulaic
import numpy as np
import pandas as pd

from ..errors import DataError


def _matrix(formula: str, data: pd.DataFrame):
    return formulaic.model_matrix(formula, data, na_action="ignore")


def _variables(*formulas) -> list[str]:
    names = set()
    for f in formulas:
        if f:
            names |= set(formulaic.Formula(f).required_variables)
    return sorted(names)


def model_inputs(formula, data, groups, re_formula, vc_formula, missing) -> dict:
    """Arguments of ``MixedLM(...)`` built from formulas and a DataFrame (never modified)."""
    group_name = "Group"
    if isinstance(groups, str):
        if groups not in data.columns:
            raise DataError(f"groups column {groups!r} is not in the data", column=groups)
        group_name, groups = groups, data[groups].to_numpy()
    groups = np.asarray(groups)
    if len(groups) != len(data):
        raise DataError(f"groups has {len(groups)} entries, data has {len(data)} rows", column="groups")
    used = _variables(formula, re_formula, *(vc_formula or {}).values())
    unknown = [c for c in used if c not in data.columns]
    if unknown:
        raise DataError(f"column {unknown[0]!r} used in a formula is not in the data", column=unknown[0])
    bad = data[used].isna().any(axis=1).to_numpy() | pd.isna(groups)
    if bad.any() and missing != "drop":
        cols = [c for c in used if data[c].isna().any()] + (["groups"] if pd.isna(groups).any() else [])
        raise DataError(f"{int(bad.sum())} rows have missing values in {cols} (missing={missing!r}); "
                        "use missing='drop' to drop them", column=cols[0])
    if bad.any() and missing == "drop":
        data, groups = data.loc[~bad], groups[~bad]
    mm = _matrix(formula, data)
    endog = mm.lhs.to_numpy(dtype=float).ravel()
    exog = mm.rhs.to_numpy(dtype=float)
    out = dict(endog=endog, exog=exog, groups=groups, exog_names=list(mm.rhs.columns),
               endog_name=str(mm.lhs.columns[0]))
    if re_formula is None or re_formula.strip() == "1":
        # statsmodels: a random intercept named after the groups, unless only variance components
        exog_re = np.ones((len(data), 1)) if re_formula is not None or vc_formula is None else None
        names = [group_name] if exog_re is not None else []
    else:
        re = _matrix(re_formula, data)
        exog_re, names = re.to_numpy(dtype=float), [c.replace("Intercept", group_name) for c in re.columns]
    out.update(exog_re=exog_re, exog_re_names=names or None)
    if vc_formula:
        from .model import VCSpec

        labels = sorted(set(groups.tolist()))
        rows_of = [np.flatnonzero(groups == g) for g in labels]
        vnames, colnames, mats = sorted(vc_formula), [], []
        for name in vnames:
            M = _matrix(vc_formula[name], data)
            arr, cols = M.to_numpy(dtype=float), list(M.columns)
            cn, ms = [], []
            for rows in rows_of:
                sub = arr[rows]
                keep = np.flatnonzero(np.any(sub != 0, axis=0))
                cn.append([cols[k] for k in keep])
                ms.append(sub[:, keep])
            colnames.append(cn)
            mats.append(ms)
        out["exog_vc"] = VCSpec(vnames, colnames, mats)
    return out
