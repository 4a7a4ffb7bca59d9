"""Reporting a fit: lmerTest's summary as text and HTML, and every number as a dict or JSON.

:class:`Summary` holds the tables of ``summary()`` (lmerTest's layout: the
criterion, scaled residuals, random effects, the fixed-effect table with
Satterthwaite df and p-values, their correlations) and renders them as text
(``str``) or HTML (``_repr_html_``, for notebooks). :func:`to_dict` gathers
the fit and whatever inference is asked for into plain Python values that
``json.dumps`` takes as they are (NaN becomes ``None``).
"""

from __future__ import annotations

import html
import json
import math

import numpy as np
import pandas as pd

#: lme4 prints the correlation of the fixed effects up to this many of them.
CORRELATION_MAX = 12

#: R's ``symnum`` codes of a p-value.
_STARS = [(0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, "."), (1.0, " ")]
SIGNIF_LEGEND = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"


def stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return next(code for bound, code in _STARS if p <= bound)


def format_pvalue(p: float) -> str:
    """R's ``format.pval`` with 3 digits: ``< 2e-16`` below machine precision."""
    if not np.isfinite(p):
        return "NA"
    return "< 2e-16" if p < 2.2e-16 else f"{p:.3g}"


def _format_column(values, digits: int = 4) -> list[str]:
    """R's ``format(x, digits)`` in spirit: common decimals that give every nonzero entry at least
    ``digits`` significant digits; scientific notation when that would take more than 7."""
    finite = [abs(v) for v in values if np.isfinite(v) and v != 0]
    d = max([digits - 1 - math.floor(math.log10(v)) for v in finite] or [0])
    if d > 7:
        return [f"{v:.{digits - 1}e}" if np.isfinite(v) else "NA" for v in values]
    return [f"{v:.{max(d, 0)}f}" if np.isfinite(v) else "NA" for v in values]


def _text_table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned, the others right."""
    cells = [header] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return [" ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in cells]


class Summary:
    """The tables of a fit's summary; ``str()`` and ``_repr_html_`` lay them out as lmerTest's.

    Attributes: ``title``, ``formula``, ``criterion`` (name → value: the REML criterion, or AIC,
    BIC, logLik, deviance and df.resid), ``scaled_residuals``, ``random_effects`` (Groups, Name,
    Variance, Std.Dev. and the correlations), ``groups`` (factor → levels), ``nobs``,
    ``fixed_effects`` (the coefficient table), ``correlation`` (of the fixed effects; None above
    :data:`CORRELATION_MAX` of them), ``optimizer`` (one line).
    """

    def __init__(self, result, ddf: str | None = "satterthwaite"):
        self.ddf = ddf
        method = {"satterthwaite": "Satterthwaite's", "kenward-roger": "Kenward-Roger's",
                  "residual": "residual-df", "asymptotic": "z"}.get(ddf or "", "")
        kind = "REML" if result.reml else "maximum likelihood"
        tests = f". t-tests use {method} method" if method else ""
        self.title = f"Linear mixed model fit by {kind}{tests} (sparselmm)"
        self.formula = result.model.formula
        self.inputs = self.inputs_of(result)
        self.nobs = result.nobs
        if result.reml:
            self.criterion = {"REML criterion at convergence": result.objective}
        else:
            self.criterion = {"AIC": result.aic, "BIC": result.bic, "logLik": result.llf,
                              "deviance": result.objective, "df.resid": result.nobs - result.df_modelwise}
        self.scaled_residuals = result.scaled_residual_quantiles
        self.random_effects = _random_effects_table(result.varcorr)
        self.groups = {t.group: t.nlevels for t in result.model.layout.terms}
        self.fixed_effects = self._fixed_effects(result)
        corr = None
        if 1 < len(result.fe_params) <= CORRELATION_MAX:
            C = result.cov_fe.to_numpy()
            sd = np.sqrt(np.diag(C))
            corr = pd.DataFrame(C / np.outer(sd, sd), index=result.cov_fe.index, columns=result.cov_fe.columns)
        self.correlation = corr
        o = result.optinfo
        steps = "step" if o.nem == 1 else "steps"
        status = "converged" if result.converged else "NOT converged"
        self.optimizer = (f"Optimizer: {o.method} ({o.nem} EM {steps}, {o.nfev} objective and {o.ngrad} gradient "
                          f"evaluations, {result.nfactor} factorizations), {status}"
                          f"{', singular fit' if result.singular else ''}; |projected gradient| {o.pgnorm:.1e}; "
                          f"fit time {result.fit_seconds:.3f} s")

    @staticmethod
    def inputs_of(result) -> dict:
        """lme4's "Weights:" and "Offset:" lines: the arguments' columns (or "values"), where given."""
        frame = result.model.frame
        return {i.what.capitalize(): i.column if i.column is not None else "values"
                for i in (frame.weights_input, frame.offset_input) if i is not None}

    def _fixed_effects(self, result) -> pd.DataFrame:
        if self.ddf is None:
            fe, se = result.fe_params, result.bse_fe
            return pd.DataFrame({"Estimate": fe, "Std. Error": se, "t value": fe / se})
        return result.coef_table(self.ddf)

    # --- text ----------------------------------------------------------------
    def _fixed_rows(self) -> tuple[list[str], list[list[str]]]:
        fe = self.fixed_effects
        header = [""] + list(fe.columns)
        # Estimate and Std. Error share their decimals, as R's printCoefmat
        coef = _format_column(np.concatenate([fe.iloc[:, 0], fe.iloc[:, 1]]))
        cols = [coef[:len(fe)], coef[len(fe):]]
        for name in fe.columns[2:]:
            v = fe[name].to_numpy(dtype=float)
            if name.startswith("Pr("):
                cols.append([format_pvalue(p) for p in v])
            else:
                cols.append([f"{x:.3f}" if np.isfinite(x) else "NA" for x in v])
        rows = [[str(n)] + [c[i] for c in cols] for i, n in enumerate(fe.index)]
        if any(c.startswith("Pr(") for c in fe.columns):
            p = fe.iloc[:, -1].to_numpy(dtype=float)
            header.append("")
            for row, pv in zip(rows, p):
                row.append(stars(pv))
        return header, rows

    def as_text(self) -> str:
        lines = [self.title, f"Formula: {self.formula}", *(f"{k}: {v}" for k, v in self.inputs.items()), ""]
        crit = self.criterion
        if len(crit) == 1:
            (name, value), = crit.items()
            lines.append(f"{name}: {value:.4f}")
        else:
            lines += _text_table(list(crit), [[f"{v:.1f}" if k != "df.resid" else f"{v:d}"
                                              for k, v in crit.items()]], left=0)
        lines += ["", "Scaled residuals:"]
        lines += _text_table(list(self.scaled_residuals.index),
                             [[f"{v:.4f}" for v in self.scaled_residuals]], left=0)
        lines += ["", "Random effects:"]
        re = self.random_effects
        lines += [" " + s for s in _text_table(list(re.columns), re.to_numpy().tolist(), left=2)]
        groups = ", ".join(f"{g}, {n}" for g, n in self.groups.items())
        lines += [f"Number of obs: {self.nobs}, groups:  {groups}", "", "Fixed effects:"]
        header, rows = self._fixed_rows()
        lines += _text_table(header, rows)
        if header[-1] == "":
            lines += ["---", SIGNIF_LEGEND]
        if self.correlation is not None:
            lines += ["", "Correlation of Fixed Effects:"]
            C = self.correlation
            short = [_abbreviate(c) for c in C.columns[:-1]]
            rows = [[_abbreviate(n, 12)] + [f"{C.iloc[i, j]:.3f}" if j < i else "" for j in range(len(short))]
                    for i, n in enumerate(C.index)][1:]
            lines += _text_table([""] + short, rows)
        lines += ["", self.optimizer]
        return "\n".join(lines)

    __str__ = as_text

    def __repr__(self) -> str:
        return self.as_text()

    # --- HTML ----------------------------------------------------------------
    def as_html(self) -> str:
        esc = html.escape
        crit = pd.DataFrame([self.criterion])
        parts = [f"<div class='sparselmm-summary'><p><b>{esc(self.title)}</b><br>"
                 f"Formula: <code>{esc(self.formula)}</code>"
                 + "".join(f"<br>{k}: <code>{esc(v)}</code>" for k, v in self.inputs.items()) + "</p>",
                 crit.to_html(index=False, float_format=lambda v: f"{v:.4f}"),
                 "<p>Scaled residuals:</p>",
                 self.scaled_residuals.to_frame().T.to_html(index=False, float_format=lambda v: f"{v:.4f}"),
                 "<p>Random effects:</p>", self.random_effects.to_html(index=False),
                 f"<p>Number of obs: {self.nobs}, groups: "
                 f"{esc(', '.join(f'{g}, {n}' for g, n in self.groups.items()))}</p>",
                 "<p>Fixed effects:</p>"]
        header, rows = self._fixed_rows()
        fe = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows], columns=header[1:])
        parts.append(fe.to_html())
        if self.correlation is not None:
            parts += ["<p>Correlation of fixed effects:</p>",
                      self.correlation.to_html(float_format=lambda v: f"{v:.3f}")]
        parts.append(f"<p><small>{esc(self.optimizer)}</small></p></div>")
        return "\n".join(parts)

    _repr_html_ = as_html


def format_table(table: pd.DataFrame) -> str:
    """A test table (anova, ranova, intervals) as R prints it: p-value columns by
    :func:`format_pvalue` with significance stars, counts as integers, other columns with 5
    significant digits."""
    header = [""] + [str(c) for c in table.columns]
    cols, pcol = [], None
    for name in table.columns:
        v = table[name].to_numpy(dtype=float)
        if str(name).startswith("Pr("):
            cols.append([format_pvalue(p) if np.isfinite(p) else "" for p in v])
            pcol = v
        elif np.all(np.isnan(v) | (v == np.round(v))) and str(name) in ("npar", "Df", "NumDF", "Chi Df"):
            cols.append([f"{x:.0f}" if np.isfinite(x) else "" for x in v])
        else:
            cols.append([c if c != "NA" else "" for c in _format_column(v, 5)])
    rows = [[str(n)] + [c[i] for c in cols] for i, n in enumerate(table.index)]
    if pcol is not None:
        header.append("")
        for row, p in zip(rows, pcol):
            row.append(stars(p))
    lines = _text_table(header, rows)
    if pcol is not None:
        lines += ["---", SIGNIF_LEGEND]
    return "\n".join(lines)


def _abbreviate(name: str, width: int = 6) -> str:
    """R's ``abbreviate(name, width)`` (lme4's labels of the correlation table): drop lower-case
    vowels from the right, then lower-case letters, never the first character; then truncate."""
    chars = list(name)
    for droppable in ("aeiou", "abcdefghijklmnopqrstuvwxyz"):
        i = len(chars) - 1
        while len(chars) > width and i > 0:
            if chars[i] in droppable:
                del chars[i]
            i -= 1
    return "".join(chars[:width])


def _random_effects_table(vc: pd.DataFrame) -> pd.DataFrame:
    """lme4's printed VarCorr: a row per variance, the correlations with earlier columns beside it."""
    rows = []
    width = 0
    last = None
    for _, row in vc[vc.var2.isna()].iterrows():
        corrs = vc[(vc.grp == row.grp) & (vc.var2 == row.var1)].sdcor.tolist() if row.grp != "Residual" else []
        width = max(width, len(corrs))
        name = row.var1 if isinstance(row.var1, str) else ""
        rows.append([row.grp if row.grp != last else "", name, row.vcov, row.sdcor, [f"{c:.2f}" for c in corrs]])
        last = row.grp
    variance = _format_column([r[2] for r in rows])
    sd = _format_column([r[3] for r in rows])
    header = ["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] + [""] * (width - 1) if width else [])
    table = [r[:2] + [v, s] + r[4] + [""] * (width - len(r[4])) for r, v, s in zip(rows, variance, sd)]
    return pd.DataFrame(table, columns=header)


# --- dict / JSON -----------------------------------------------------------
def _plain(x):
    """Python floats, ints, strings, lists and dicts; NaN and ±inf as None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if x is None or isinstance(x, str):
        return x
    if pd.isna(x):
        return None
    return str(x)


def _records(table: pd.DataFrame) -> dict:
    """A table keyed by its row names: {row: {column: value}}."""
    return {str(i): {str(c): v for c, v in row.items()} for i, row in table.iterrows()}


def to_dict(result, ddf: str | None = "satterthwaite", anova: bool = True, confint: str | None = "wald",
            level: float = 0.95, ranova: bool = False, **boot) -> dict:
    """The fit and its inference as plain values (see :meth:`LMMResults.to_dict`)."""
    o = result.optinfo
    out = {
        "formula": result.model.formula,
        **{k.lower(): v for k, v in Summary.inputs_of(result).items()},
        "criterion": "REML" if result.reml else "ML",
        "nobs": result.nobs,
        "groups": {t.group: t.nlevels for t in result.model.layout.terms},
        "backend": type(result.model.backend).__name__,
        "fit": {"objective": result.objective, "logLik": result.llf, "AIC": result.aic, "BIC": result.bic,
                "npar": result.df_modelwise, "df.resid": result.nobs - result.df_modelwise,
                "converged": result.converged, "singular": result.singular, "message": result.message,
                "method": o.method, "nfev": o.nfev, "ngrad": o.ngrad, "nfactor": result.nfactor,
                "projected_gradient": o.pgnorm, "seconds": result.fit_seconds},
        "beta": result.fe_params.to_dict(),
        "theta": result.theta.to_dict(),
        "sigma": result.sigma,
        "varcorr": result.varcorr.to_dict(orient="records"),
        "cov_fe": _records(result.cov_fe),
    }
    if ddf is not None:
        out["coef_table"] = {"ddf": ddf, "table": _records(result.coef_table(ddf))}
        table = result.anova(3, ddf) if anova else ()
        if len(table):  # not for an intercept-only model
            out["anova"] = {"type": 3, "ddf": ddf, "table": _records(table)}
    if confint is not None:
        out["confint"] = {"method": confint, "level": level,
                          "table": _records(result.confint(level=level, method=confint, **boot))}
    if ranova:
        out["ranova"] = _records(result.ranova())
    return _plain(out)


def to_json(result, path=None, indent: int | None = 2, **kwargs) -> str:
    """:func:`to_dict` as JSON text; written to ``path`` too when given."""
    text = json.dumps(to_dict(result, **kwargs), indent=indent)
    if path is not None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return text
