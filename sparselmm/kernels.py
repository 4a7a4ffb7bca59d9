"""Numba kernels: arrays in, arrays out, no model objects.

Thin wrappers in the backends check shapes and dtypes; these functions
assume them.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def _find(indices, start, stop, row):
    """Position of ``row`` in the sorted ``indices[start:stop]`` (or -1)."""
    lo, hi = start, stop
    while lo < hi:
        mid = (lo + hi) // 2
        if indices[mid] < row:
            lo = mid + 1
        else:
            hi = mid
    if lo < stop and indices[lo] == row:
        return lo
    return -1


@nb.njit(cache=True)
def _lambda_map_pass(indptr, indices, term, comp, p, tindex, toff, fill, ptr, lptr, lidx, src, t1, t2):
    q = len(indptr) - 1
    e = 0
    m = 0
    for c in range(q):
        if fill:
            lptr[c] = e
        tc = term[c]
        b = comp[c]
        c0 = c - b
        for k in range(indptr[c], indptr[c + 1]):
            r = indices[k]
            if r < c:
                continue
            tr = term[r]
            a = comp[r]
            r0 = r - a
            if fill:
                ptr[e] = m
                lidx[e] = r
            for a2 in range(a, p[tr]):
                i1 = tindex[toff[tr] + a2 * p[tr] + a]
                if i1 < 0:
                    continue
                for b2 in range(b, p[tc]):
                    i2 = tindex[toff[tc] + b2 * p[tc] + b]
                    if i2 < 0:
                        continue
                    if fill:
                        col = c0 + b2
                        src[m] = _find(indices, indptr[col], indptr[col + 1], r0 + a2)
                        t1[m] = i1
                        t2[m] = i2
                    m += 1
            e += 1
    if fill:
        lptr[q] = e
        ptr[e] = m
    return e, m


def lambda_map(indptr, indices, term, comp, p, tindex, toff):
    """Map from θ and the full Z'Z to the lower triangle of Λ'Z'ZΛ.

    For each stored entry (r, c), r ≥ c, of the lower triangle,

        (Λ'Z'ZΛ)[r, c] = Σ_m θ[t1[m]] θ[t2[m]] ZtZ.data[src[m]],  m ∈ ptr[e]:ptr[e+1]

    since Λ[r', r] = T_k[a', a] for r' = r − a + a' in the same level block.

    Returns
    -------
    lptr, lidx : ndarray
        CSC pattern (indptr, indices) of the lower triangle.
    ptr, src, t1, t2 : ndarray
        The map.
    """
    z = np.zeros(0, dtype=np.int64)
    ne, nm = _lambda_map_pass(indptr, indices, term, comp, p, tindex, toff, False, z, z, z, z, z, z)
    ptr = np.empty(ne + 1, dtype=np.int64)
    lptr = np.empty(len(indptr), dtype=np.int32)
    lidx = np.empty(ne, dtype=np.int32)
    src = np.empty(nm, dtype=np.int64)
    t1 = np.empty(nm, dtype=np.int64)
    t2 = np.empty(nm, dtype=np.int64)
    _lambda_map_pass(indptr, indices, term, comp, p, tindex, toff, True, ptr, lptr, lidx, src, t1, t2)
    return lptr, lidx, ptr, src, t1, t2


@nb.njit(cache=True)
def lambda_map_apply(ptr, src, t1, t2, theta, data, out):
    """Fill ``out`` with the lower triangle of Λ'Z'ZΛ (see :func:`lambda_map`)."""
    for e in range(len(ptr) - 1):
        s = 0.0
        for m in range(ptr[e], ptr[e + 1]):
            s += theta[t1[m]] * theta[t2[m]] * data[src[m]]
        out[e] = s


@nb.njit(cache=True)
def _zlookup(i, k, j0, Z22, indptr, indices, zval):
    """Entry (i, k) of the selected inverse (symmetric; stored lower)."""
    if i < k:
        i, k = k, i
    if k >= j0:
        return Z22[i - j0, k - j0]
    pos = _find(indices, indptr[k], indptr[k + 1], i)
    if pos < 0:
        raise ValueError("selected inverse: the factor's pattern is not closed")
    return zval[pos]


@nb.njit(cache=True)
def takahashi(indptr, indices, data, j0, Z22, zval):
    """Selected inverse of L L' on the pattern of L (Takahashi recurrences).

    Columns ``j0:`` of L form a dense trailing block whose inverse ``Z22`` is
    given (computed with LAPACK by the caller). For the sparse leading
    columns j = j0-1, ..., 0, with I the rows below the diagonal of column j,
    l = L[I, j] and d = L[j, j]:

        Z[I, j] = -Z[I, I] l / d,       Z[j, j] = 1/d² - l' Z[I, j] / d

    (Takahashi, Fagan and Chin 1973; Erisman and Tinney 1975). ``zval``
    receives Z on L's pattern for columns below ``j0``.
    """
    for j in range(j0 - 1, -1, -1):
        start, stop = indptr[j], indptr[j + 1]
        d = data[start]  # the diagonal comes first in a sorted column
        diag = 1.0 / (d * d)
        for a in range(start + 1, stop):
            i = indices[a]
            s = 0.0
            for b in range(start + 1, stop):
                s += _zlookup(i, indices[b], j0, Z22, indptr, indices, zval) * data[b]
            zval[a] = -s / d
        for a in range(start + 1, stop):
            diag -= data[a] * zval[a] / d
        zval[start] = diag


@nb.njit(cache=True)
def selected_gather(rows, cols, j0, Z22, indptr, indices, zval, out):
    """``out[m] = Z[rows[m], cols[m]]`` from a selected inverse (see :func:`takahashi`)."""
    for m in range(len(rows)):
        out[m] = _zlookup(rows[m], cols[m], j0, Z22, indptr, indices, zval)
