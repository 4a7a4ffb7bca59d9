"""Inference after the fit: tests of the fixed effects, likelihood-ratio tests, intervals, bootstrap."""


def interval_columns(level: float) -> list[str]:
    """R's column names of a confidence interval at ``level``: ``["2.5 %", "97.5 %"]``."""
    return [f"{100 * (1 - level) / 2:.3g} %", f"{100 * (1 + level) / 2:.3g} %"]
