#!/usr/bin/env bash
# The GPU checks of issue 25, for a machine lent with a GPU (CuPy, NumPy, SciPy, Numba, pandas and
# formulaic there; no SuiteSparse, nothing installed): run from the repository's root, e.g. with the
# device tool's `run`: `bash scripts/device_check.sh`. Writes its logs and results to $OUT (or
# benchmarks/results): the GPU tests, then the MovieLens-10M and -25M shapes fitted with device="cuda".
# TESTS=0 skips the tests; SHAPES=25M (say) fits one shape: to split the work over two runs.
set -o pipefail
out=${OUT:-benchmarks/results}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import cupy, numba, numpy; print('cupy', cupy.__version__, 'numba', numba.__version__, 'numpy', numpy.__version__)" | tee -a "$out/gpu.txt"
if [ "${TESTS:-1}" != 0 ]; then
    python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_device.py 2>&1 | tee "$out/gpu_tests.log"
fi
python3 -m benchmarks.gpu_ratings --shapes "${SHAPES:-10M,25M}" --out "$out" 2>&1 | tee "$out/gpu_ratings.log"
