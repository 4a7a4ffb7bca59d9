"""Regenerate the diagnostic-plot images of the README (docs/images/*.png).

    python scripts/make_plot_images.py

sleepstudy with correlated random intercept and slope for the residual and
Q–Q plots and (fitted by ML) the profile ζ plot; penicillin's crossed plate
and sample for the caterpillar plot. Needs the ``[plot]`` extra (matplotlib).
The profile takes a few seconds.
"""

from pathlib import Path

import pandas as pd

import sparselmm
from sparselmm import plots

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
OUT = ROOT / "docs" / "images"
DPI = 90


def main() -> None:
    sleep = pd.read_csv(DATA / "sleepstudy.csv", dtype={"Subject": str})
    pen = pd.read_csv(DATA / "penicillin.csv", dtype={"plate": str, "sample": str})
    m_sleep = sparselmm.fit("Reaction ~ 1 + Days + (1 + Days|Subject)", sleep)
    m_pen = sparselmm.fit("diameter ~ 1 + (1|plate) + (1|sample)", pen)
    m_sleep_ml = sparselmm.fit("Reaction ~ 1 + Days + (1 + Days|Subject)", sleep, reml=False)

    OUT.mkdir(parents=True, exist_ok=True)
    figures = {
        "caterpillar.png": plots.caterpillar(m_pen),
        "residuals_vs_fitted.png": plots.residuals_vs_fitted(m_sleep, figsize=(5, 3.5)),
        "qq_residuals.png": plots.qq_residuals(m_sleep, figsize=(5, 3.5)),
        "qq_random_effects.png": plots.qq_random_effects(m_sleep),
        "profile_zeta.png": plots.profile_zeta(m_sleep_ml, figsize=(8, 4.6)),
    }
    for name, fig in figures.items():
        fig.savefig(OUT / name, dpi=DPI)
        print(OUT.relative_to(ROOT) / name)


if __name__ == "__main__":
    main()
