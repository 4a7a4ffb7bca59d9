"""Kernels of the sparse path: the map from θ to Λ'Z'ZΛ, the symbolic factor, and the selected inverse."""

from __future__ import annotations

import numba as nb
import numpy as np

from .common import _find


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
                        if col == c and a2 == a:  # the entry itself (always, for scalar terms)
                            src[m] = k
                        else:
                            src[m] = _find(indices, indptr[col], indptr[col + 1], r0 + a2)
                        t1[m] = i1
                        t2[m] = i2
                    m += 1
            e += 1
    if fill:
        lptr[q] = e
        ptr[e] = m
    return e, m


@nb.njit(cache=True)
def lambda_map_apply(ptr, src, t1, t2, theta, data, out):
    """Fill ``out`` with the lower triangle of Λ'Z'ZΛ (see :func:`lambda_map`)."""
    for e in range(len(ptr) - 1):
        s = 0.0
        for m in range(ptr[e], ptr[e + 1]):
            s += theta[t1[m]] * theta[t2[m]] * data[src[m]]
        out[e] = s


@nb.njit(cache=True, inline="always")
def _zlookup(i, k, j0, Z22, indptr, indices, zval):
    """Entry (i, k) of the selected inverse (symmetric; only lower triangles are read)."""
    if i < k:
        i, k = k, i
    if k >= j0:
        return Z22[i - j0, k - j0]
    pos = _find(indices, indptr[k], indptr[k + 1], i)
    if pos < 0:
        raise ValueError("selected inverse: the factor's pattern is not closed")
    return zval[pos]


@nb.njit(cache=True, inline="always")
def _takahashi_column(j, indptr, indices, data, j0, Z22, zval):
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


@nb.njit(cache=True, parallel=True)
def takahashi(indptr, indices, data, j0, Z22, zval):
    """Selected inverse of L L' on the pattern of L (Takahashi recurrences).

    Columns ``j0:`` of L form a trailing block whose inverse ``Z22`` (lower
    triangle) is given, computed with LAPACK by the caller. For the sparse
    leading columns j < j0, with I the rows below the diagonal of column j,
    l = L[I, j] and d = L[j, j]:

        Z[I, j] = -Z[I, I] l / d,       Z[j, j] = 1/d² - l' Z[I, j] / d

    (Takahashi, Fagan and Chin 1973; Erisman and Tinney 1975). A column whose
    rows all lie in the trailing block reads only ``Z22``: those columns run
    first, in parallel; the others follow serially from the last to the first.
    ``zval`` receives Z on L's pattern for columns below ``j0``.
    """
    leaf = np.empty(j0, dtype=np.bool_)
    for j in range(j0):
        leaf[j] = indptr[j + 1] - indptr[j] == 1 or indices[indptr[j] + 1] >= j0
    for j in nb.prange(j0):
        if leaf[j]:
            _takahashi_column(j, indptr, indices, data, j0, Z22, zval)
    for j in range(j0 - 1, -1, -1):
        if not leaf[j]:
            _takahashi_column(j, indptr, indices, data, j0, Z22, zval)


@nb.njit(cache=True)
def dense_trailing_block(indptr, indices, data, j0, out):
    """Columns and rows ``j0:`` of a lower-triangular CSC matrix into ``out`` (m × m, Fortran order)."""
    m = len(indptr) - 1 - j0
    for j in range(m):
        for i in range(m):
            out[i, j] = 0.0
    for j in range(j0, j0 + m):
        for k in range(indptr[j], indptr[j + 1]):
            out[indices[k] - j0, j - j0] = data[k]


@nb.njit(cache=True)
def selected_gather(rows, cols, j0, Z22, indptr, indices, zval, out):
    """``out[m] = Z[rows[m], cols[m]]`` from a selected inverse (see :func:`takahashi`)."""
    for m in range(len(rows)):
        out[m] = _zlookup(rows[m], cols[m], j0, Z22, indptr, indices, zval)


@nb.njit(cache=True)
def _lower_rows(indptr, indices):
    """Rows of the strictly lower triangle of a CSC matrix: for row i, the columns j < i with A[i, j] ≠ 0."""
    n = len(indptr) - 1
    rcount = np.zeros(n + 1, dtype=np.int64)
    for j in range(n):
        for k in range(indptr[j], indptr[j + 1]):
            if indices[k] > j:
                rcount[indices[k] + 1] += 1
    rptr = np.cumsum(rcount)
    rcols = np.empty(rptr[n], dtype=np.int64)
    fill = rptr[:n].copy()
    for j in range(n):
        for k in range(indptr[j], indptr[j + 1]):
            i = indices[k]
            if i > j:
                rcols[fill[i]] = j
                fill[i] += 1
    return rptr, rcols


@nb.njit(cache=True)
def etree(indptr, indices):
    """Elimination tree of a symmetric matrix given by its lower triangle (CSC).

    Liu's algorithm with path compression, walking the rows of the lower
    triangle (built here as a CSR of the same entries).
    """
    n = len(indptr) - 1
    rptr, rcols = _lower_rows(indptr, indices)
    parent = np.full(n, -1, dtype=np.int64)
    ancestor = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        for k in range(rptr[i], rptr[i + 1]):
            j = rcols[k]
            while j != -1 and j < i:
                nxt = ancestor[j]
                ancestor[j] = i
                if nxt == -1:
                    parent[j] = i
                j = nxt
    return parent


@nb.njit(cache=True)
def symbolic_pattern(indptr, indices, parent):
    """Exact pattern of the Cholesky factor L (CSC, sorted, diagonal first).

    struct(L_j) = {j} ∪ rows of A below j ∪ ⋃_{children c} struct(L_c) \\ {c}
    over the elimination tree ``parent``. CHOLMOD's supernodal factor holds
    more (relaxed supernodes store explicit zeros); this is the closed
    pattern the Takahashi recurrences need, and no more.
    """
    n = len(indptr) - 1
    ccount = np.zeros(n + 1, dtype=np.int64)
    for j in range(n):
        if parent[j] >= 0:
            ccount[parent[j] + 1] += 1
    cptr = np.cumsum(ccount)
    kids = np.empty(cptr[n], dtype=np.int64)
    cfill = cptr[:n].copy()
    for j in range(n):
        p = parent[j]
        if p >= 0:
            kids[cfill[p]] = j
            cfill[p] += 1
    lptr = np.zeros(n + 1, dtype=np.int64)
    lidx = np.empty(max(16, 2 * len(indices)), dtype=np.int64)
    mark = np.full(n, -1, dtype=np.int64)
    buf = np.empty(n, dtype=np.int64)
    for j in range(n):
        m = 0
        mark[j] = j
        buf[m] = j
        m += 1
        for k in range(indptr[j], indptr[j + 1]):
            i = indices[k]
            if i > j and mark[i] != j:
                mark[i] = j
                buf[m] = i
                m += 1
        for t in range(cptr[j], cptr[j + 1]):
            c = kids[t]
            for k in range(lptr[c], lptr[c + 1]):
                i = lidx[k]
                if i > j and mark[i] != j:
                    mark[i] = j
                    buf[m] = i
                    m += 1
        start = lptr[j]
        if start + m > len(lidx):  # grow by doubling
            grown = np.empty(max(2 * len(lidx), start + m), dtype=np.int64)
            grown[:start] = lidx[:start]
            lidx = grown
        lidx[start:start + m] = np.sort(buf[:m])
        lptr[j + 1] = start + m
    return lptr, lidx[:lptr[n]].copy()


@nb.njit(cache=True)
def scatter_to_pattern(sub_ptr, sub_idx, indptr, indices, data, out):
    """Values of a CSC matrix (sorted) on another sorted pattern, into ``out``; 0 where it has none.

    Entries of the matrix outside ``sub`` are dropped (they are the explicit
    zeros of CHOLMOD's relaxed supernodes when ``sub`` is the exact pattern).
    """
    out[:] = 0.0
    for j in range(len(sub_ptr) - 1):
        k, end = indptr[j], indptr[j + 1]
        for t in range(sub_ptr[j], sub_ptr[j + 1]):
            row = sub_idx[t]
            while k < end and indices[k] < row:
                k += 1
            if k < end and indices[k] == row:
                out[t] = data[k]


@nb.njit(cache=True)
def column_counts(indptr, indices, parent, limit):
    """Number of entries in each column of the Cholesky factor, without forming it.

    Row i of L holds the etree paths from each j < i with A[i, j] ≠ 0 up to
    i; walking them with a mark per row visits every off-diagonal entry of L
    once, in O(n) memory. Returns ``(total, counts)``; stops early, with
    empty counts, once the total passes ``limit`` (a model too large to
    factor is refused without paying for its size).
    """
    n = len(indptr) - 1
    rptr, rcols = _lower_rows(indptr, indices)
    counts = np.ones(n, dtype=np.int64)
    mark = np.full(n, -1, dtype=np.int64)
    total = n
    for i in range(n):
        mark[i] = i
        for t in range(rptr[i], rptr[i + 1]):
            k = rcols[t]
            while k != -1 and mark[k] != i:
                counts[k] += 1
                mark[k] = i
                total += 1
                k = parent[k]
        if total > limit:
            return total, counts[:0]
    return total, counts

