"""``MixedLM.from_formula``'s random-effects inputs.

``formula`` itself goes through statsmodels' formula handling (names,
environment, ``model.data.frame``, ``predict`` on new data). ``re_formula``
is evaluated as statsmodels evaluates it. Each ``vc_formula`` is evaluated
once over all rows as a sparse matrix (formulaic), a group taking the
columns that are nonzero in it: what statsmodels gets by evaluating the
formula group by group, without a dense matrix per group (a crossed design
written with one group has one column per level).
"""

from __future__ import annotations

import sys

import formulaic
import numpy as np
import pandas as pd
from statsmodels.formula._manager import FormulaManager
from statsmodels.regression.mixed_linear_model import _handle_missing

from ..errors import DataError
from .design import Component


def caller_namespace(eval_env, depth: int) -> dict:
    """statsmodels' ``eval_env`` as a namespace: None or k ≥ 0, the caller's (k frames up); -1, empty."""
    if isinstance(eval_env, dict):
        return eval_env
    if eval_env == -1:
        return {}
    frame = sys._getframe(depth + 1 + (eval_env or 0))
    return {**frame.f_globals, **frame.f_locals}


def model_inputs(data: pd.DataFrame, groups, formula, re_formula, vc_formula, subset, missing, eval_env) -> tuple:
    """(data, inputs): the rows used and ``exog_re``, its names, ``groups``, the components."""
    env = caller_namespace(eval_env, 2)
    group_name = "Group"
    if isinstance(groups, str):
        if groups not in data.columns:
            raise DataError(f"groups column {groups!r} is not in the data", column=groups)
        group_name, groups = groups, np.asarray(data[groups])
    else:
        groups = np.asarray(groups)
    if len(groups) != len(data):
        raise DataError(f"groups has {len(groups)} entries, data has {len(data)} rows", column="groups")
    if subset is not None:
        keep = pd.Series(np.arange(len(data)), index=data.index).loc[subset].to_numpy()
        data, groups = data.iloc[keep], groups[keep]
    used = []
    for f in [formula, re_formula, *(vc_formula or {}).values()]:
        names = [] if f is None else sorted(formulaic.Formula(f).required_variables)
        absent = [v for v in names if v not in data.columns and v not in env]
        if absent and f is not formula:
            raise DataError(f"column {absent[0]!r} of formula {f!r} is not in the data", column=absent[0])
        used += [v for v in names if v in data.columns and v not in used]
    if missing != "drop":
        with_na = [c for c in used if data[c].isna().any()]
        if with_na:
            raise DataError(f"column {with_na[0]!r} has {int(data[with_na[0]].isna().sum())} missing values "
                            f"(missing={missing!r}); use missing='drop' to drop those rows", column=with_na[0])
    if missing == "drop":
        data, groups = _handle_missing(data, groups, formula, re_formula, vc_formula)
        missing = "none"
    elif pd.isna(groups).any():
        raise DataError(f"groups has {int(pd.isna(groups).sum())} missing values (missing={missing!r}); "
                        "use missing='drop'", column="groups")
    if re_formula is None:
        exog_re, names = None, ([group_name] if vc_formula is None else [])
    elif re_formula.strip() == "1":
        exog_re, names = np.ones((len(data), 1)), [group_name]
    else:
        mgr = FormulaManager()
        mat = mgr.get_matrices(re_formula, data, eval_env=env)
        names = [x.replace("Intercept", group_name) for x in mgr.get_column_names(mat)]
        exog_re = np.asarray(mat, dtype=float)
        if exog_re.ndim == 1:
            exog_re = exog_re[:, None]
    components = None
    if vc_formula is not None:
        codes = pd.factorize(groups, sort=True)[0].astype(np.int64)
        components = []
        for name in sorted(vc_formula):
            mm = formulaic.model_matrix(vc_formula[name], data, output="sparse", na_action="ignore", context=env)
            components.append(Component.from_matrix(name, mm, mm.model_spec.column_names, codes))
    return data, dict(exog_re=exog_re, exog_re_names=names, groups=groups, missing=missing,
                      components=components, eval_env=env)
