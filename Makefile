# The two commands of a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install system-deps compile demo test clean

install: $(STAMP)

# The test and benchmark extras (asv: `asv run --python=same --quick` works after this alone), then
# every Numba kernel compiled into its on-disk cache (python -m sparselmm.compile): no fit compiles.
$(STAMP): pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,bench]"
	$(BIN)/python -m sparselmm.compile --quiet
	touch $(STAMP)

system-deps:
	bash scripts/system-deps.sh

# Loads the kernels' cache in seconds; recompiles what a changed kernel source made stale.
compile: install
	$(BIN)/python -m sparselmm.compile --quiet

demo: compile
	$(BIN)/python -m sparselmm.demo

test: compile
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info

# The side-by-side comparison with statsmodels and lme4 (benchmarks/compare.py; with the ratings'
# 10M shape, lme4 alone may take an hour):
# `make bench-deps` (R and lme4, optional: without them lme4 is reported as
# "not installed"), then `make bench`; results in benchmarks/results/.
.PHONY: bench bench-deps bench-inference bench-ratings bench-stream bench-study bench-workloads

bench: compile
	$(BIN)/python -m benchmarks.compare

# The MovieLens shapes alone (1M and 10M ratings, ML; lme4 allowed 3,600 s a fit): results in
# benchmarks/results/ratings_comparison.*; about 70 minutes with lme4.
bench-ratings: compile
	$(BIN)/python -m benchmarks.compare --designs ratings --systems sparselmm,lme4 --name ratings_comparison

# Inference on InstEval (Satterthwaite, profile, 1,000 bootstrap refits) against lme4's times in
# benchmarks/results/lme4_inference.json (remade by `Rscript benchmarks/lme4_inference.R`, ~40 min).
bench-inference: compile
	$(BIN)/python -m benchmarks.compare_inference

# 10^8 rows of a crossed design in Parquet files (2 GB of temporary files), fitted a piece at a time,
# next to the in-memory fits of 10^6 and 10^7 rows and Dask on 2 workers: benchmarks/results/stream_large.*
bench-stream: compile
	$(BIN)/python -m benchmarks.stream_large

# Three ML fits against lme4 in one run (InstEval, nested 10^6 rows, the MovieLens-1M shape), meant for a
# fresh clone after `make install`: benchmarks/results/workloads_ml.*; about 5 minutes with lme4.
bench-workloads: compile
	$(BIN)/python -m benchmarks.compare --ml --only insteval-ml,nested_1000000-ml,ratings_1000209 --systems sparselmm,lme4 --name workloads_ml

# Prior weights and marginal means on InstEval (benchmarks/compare_study.py): the weighted against the
# unweighted ML fit, emmeans + pairs with Kenward-Roger and Satterthwaite df, and lme4/emmeans's times for
# the same work from benchmarks/lme4_study.R in the same run (R with lme4, lmerTest, emmeans; ~1 minute).
bench-study: compile
	$(BIN)/python -m benchmarks.compare_study

bench-deps:
	@if command -v Rscript >/dev/null 2>&1 && \
	    Rscript -e 'quit(status = !requireNamespace("lme4", quietly = TRUE))' >/dev/null 2>&1; then \
		echo "R and lme4 are installed."; \
	elif [ "$$(id -u)" -ne 0 ]; then \
		echo "R with lme4 is missing. Run as root: make bench-deps" >&2; \
		echo "(or: apt-get update && apt-get install -y r-base-core r-cran-lme4)" >&2; \
		exit 1; \
	else \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq r-base-core r-cran-lme4; \
	fi
