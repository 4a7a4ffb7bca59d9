"""Copy statsmodels' own MixedLM tests into tests/statsmodels/, run against sparselmm.

    python scripts/vendor_statsmodels_tests.py

Copies the installed statsmodels' ``regression/tests/test_lme.py`` and the
result files it reads, changing one import: ``MixedLM`` and
``MixedLMParams`` come from sparselmm. The tests of statsmodels' private
helpers ``_smw_solver`` and ``_smw_logdet`` (TestSMWSolver, TestSMWLogdet)
keep statsmodels' import: sparselmm has no such functions. Everything else
in the file is statsmodels' text, unchanged.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import statsmodels

SOURCE = Path(statsmodels.__file__).parent / "regression" / "tests"
TARGET = Path(__file__).resolve().parents[1] / "tests" / "statsmodels"
RESULTS = ["__init__.py", "lme_r_results.py", "dietox.csv", "pastes.csv"]

IMPORT = re.compile(r"from statsmodels\.regression\.mixed_linear_model import \(\n"
                    r"    MixedLM,\n    MixedLMParams,\n    _smw_logdet,\n    _smw_solver,\n\)\n")
REPLACEMENT = ("from sparselmm import MixedLM, MixedLMParams\n"
               "from statsmodels.regression.mixed_linear_model import _smw_logdet, _smw_solver\n")


def main() -> None:
    text = (SOURCE / "test_lme.py").read_text(encoding="utf-8")
    text, count = IMPORT.subn(REPLACEMENT, text)
    if count != 1:
        raise SystemExit(f"statsmodels {statsmodels.__version__}: the MixedLM import of test_lme.py has changed")
    header = (f"# statsmodels {statsmodels.__version__}'s regression/tests/test_lme.py, with sparselmm's MixedLM and\n"
              "# MixedLMParams imported in place of statsmodels'. Regenerate: scripts/vendor_statsmodels_tests.py\n")
    (TARGET / "results").mkdir(parents=True, exist_ok=True)
    (TARGET / "__init__.py").write_text("", encoding="utf-8")
    (TARGET / "test_lme.py").write_text(header + text, encoding="utf-8")
    names = RESULTS + sorted(p.name for p in (SOURCE / "results").glob("lme[0-9][0-9].csv"))
    for name in names:
        shutil.copyfile(SOURCE / "results" / name, TARGET / "results" / name)
    print(f"statsmodels {statsmodels.__version__}: test_lme.py and {len(names)} result files -> tests/statsmodels/")


if __name__ == "__main__":
    main()
