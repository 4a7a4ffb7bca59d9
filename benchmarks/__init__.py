"""asv benchmarks for sparselmm (run from the repository top: ``asv run``).

Modules:

``bench_fit``        full fits of lme4's InstEval (REML and ML)
``bench_synthetic``  full fits of simulated crossed and nested designs, n = 10⁴ … 10⁶
``bench_objective``  one evaluation of the profiled objective on each backend
``bench_crossprod``  the one pass over the rows that forms the crossproducts

``_common`` holds the shared data sets and warm-up helpers.

Each ``peakmem_*`` is the peak resident memory of the benchmark's process,
so it includes the imports and the data and model built in ``setup``.
"""
