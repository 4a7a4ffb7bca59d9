"""Numba kernels: arrays in, arrays out, no model objects.

Thin wrappers in the backends check shapes and dtypes; these functions
assume them. One module per path: ``crossprod`` (Z'Z and Z'[X y] from the
rows), ``sparse`` (θ → Λ'Z'ZΛ, the symbolic
factor, the Takahashi selected inverse), ``dense`` (per-group factors and
gradients), ``blocked`` (the Schur pass and per-level blocks); ``common``
holds look-ups, a counting sort and the serial twins of parallel kernels.
"""

from .blocked import (
    blocked_backward,
    blocked_forward,
    blocked_inverse,
    blocked_leading,
    blocked_pattern_ok,
    blocked_rows,
    blocked_schur,
    lower_inner,
    schur_column_counts,
)
from .common import PARALLEL_MIN_WORK, counting_order, pick, serial
from .crossprod import block_fill, block_rows, one_term, rows_by_block, ztv
from .dense import (
    dense_back_solve,
    dense_blocks,
    dense_factor,
    dense_gradient,
    dense_inverse,
    dense_lambda_index,
    dense_level_sums,
)
from .sparse import (
    column_counts,
    dense_trailing_block,
    etree,
    lambda_map,
    lambda_map_apply,
    scatter_to_pattern,
    selected_gather,
    symbolic_pattern,
    takahashi,
)

__all__ = [
    "PARALLEL_MIN_WORK", "blocked_backward", "blocked_forward", "blocked_inverse", "blocked_leading",
    "blocked_pattern_ok", "blocked_rows", "blocked_schur", "block_fill", "block_rows", "column_counts", "counting_order", "dense_back_solve", "dense_blocks", "dense_factor",
    "dense_gradient", "dense_inverse", "dense_lambda_index", "dense_level_sums", "dense_trailing_block", "etree", "lambda_map",
    "lambda_map_apply", "lower_inner", "one_term", "pick", "rows_by_block", "scatter_to_pattern", "schur_column_counts", "selected_gather",
    "serial", "symbolic_pattern", "takahashi", "ztv",
]
