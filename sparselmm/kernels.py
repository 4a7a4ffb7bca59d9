"""Numba kernels: arrays in, arrays out, no model objects.

Thin wrappers in the backends check shapes and dtypes; these functions
assume them.
"""

from __future__ import annotations

import types

import numba as nb
import numpy as np

#: Below this many independent pieces of work (groups, leading columns) a
#: parallel kernel runs its serial twin: waking a thread pool costs more
#: than small problems take (16 ms against 45 µs, seen on a loaded machine).
PARALLEL_MIN_WORK = 1000


@nb.njit(cache=True, inline="always")
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


# --- dense per-group kernels ---------------------------------------------------
#
# Group g owns the local columns gptr[g]:gptr[g+1] of Z (reordered so that
# groups are contiguous); its dense blocks Z_g'Z_g are packed row-major at
# zoff[g], and so are the blocks Λ_g (``lam``, refilled per θ through
# :func:`dense_lambda_index`). Column j belongs to term lterm[j] as component
# lcomp[j] of a level block.


@nb.njit(cache=True)
def dense_lambda_index(gptr, zoff, lterm, lcomp, toff, p):
    """Where each entry of every Λ_g comes from: its index in the flat T blocks, or -1 for a zero.

    Packed like the Z_g'Z_g blocks. Λ_g[i, j] = T_k[a, b] when local columns
    i and j are components a and b of one level block of term k, else 0.
    """
    out = np.full(zoff[-1], -1, dtype=np.int64)
    for g in range(len(gptr) - 1):
        lo, q = gptr[g], gptr[g + 1] - gptr[g]
        for i in range(q):
            for j in range(q):
                a, b = lcomp[lo + i], lcomp[lo + j]
                k = lterm[lo + j]
                if lterm[lo + i] == k and i - a == j - b:
                    out[zoff[g] + i * q + j] = toff[k] + a * p[k] + b
    return out


@nb.njit(cache=True, inline="always")
def _group_factor(g, gptr, zoff, ztz, ztxy, lam, Lbuf, Cbuf, W):
    """Factor A_g = Λ_g'Z_g'Z_gΛ_g + I into Lbuf and solve L_g C_g = Λ_g'Z_g'[X y] into Cbuf.

    ``lam`` holds every Λ_g, packed like ``ztz``; ``W`` is workspace. Returns log|A_g|.
    """
    lo, hi = gptr[g], gptr[g + 1]
    q = hi - lo
    z0 = zoff[g]
    ncol = ztxy.shape[1]
    # W = Z_g'Z_g Λ_g (q × q), then A = Λ_g' W + I
    for i in range(q):
        for j in range(q):
            s = 0.0
            for k in range(q):
                s += ztz[z0 + i * q + k] * lam[z0 + k * q + j]
            W[i, j] = s
    for i in range(q):
        for j in range(i + 1):
            s = 1.0 if i == j else 0.0
            for k in range(q):
                s += lam[z0 + k * q + i] * W[k, j]
            Lbuf[z0 + i * q + j] = s
    # in-place lower Cholesky (row-major, lower triangle)
    logdet = 0.0
    for j in range(q):
        d = Lbuf[z0 + j * q + j]
        for k in range(j):
            d -= Lbuf[z0 + j * q + k] ** 2
        d = np.sqrt(d)
        Lbuf[z0 + j * q + j] = d
        logdet += 2.0 * np.log(d)
        for i in range(j + 1, q):
            s = Lbuf[z0 + i * q + j]
            for k in range(j):
                s -= Lbuf[z0 + i * q + k] * Lbuf[z0 + j * q + k]
            Lbuf[z0 + i * q + j] = s / d
    # C = L⁻¹ Λ' Z'[X y]
    for c in range(ncol):
        for i in range(q):
            s = 0.0
            for k in range(q):
                s += lam[z0 + k * q + i] * ztxy[lo + k, c]
            for k in range(i):
                s -= Lbuf[z0 + i * q + k] * Cbuf[lo + k, c]
            Cbuf[lo + i, c] = s / Lbuf[z0 + i * q + i]
    return logdet


@nb.njit(cache=True)
def _max_group(gptr):
    qmax = 0
    for g in range(len(gptr) - 1):
        qmax = max(qmax, gptr[g + 1] - gptr[g])
    return qmax


@nb.njit(cache=True, parallel=True)
def dense_factor(gptr, zoff, ztz, ztxy, lam, Lbuf, Cbuf, nchunks):
    """Factor every group into Lbuf, solve for Cbuf; return Σ_g log|A_g|.

    Groups are split into ``nchunks`` chunks, each with its own workspace.
    """
    m = len(gptr) - 1
    qmax = _max_group(gptr)
    logdets = np.zeros(nchunks)
    for c in nb.prange(nchunks):
        W = np.empty((qmax, qmax))
        for g in range(c * m // nchunks, (c + 1) * m // nchunks):
            logdets[c] += _group_factor(g, gptr, zoff, ztz, ztxy, lam, Lbuf, Cbuf, W)
    return logdets.sum()


@nb.njit(cache=True, parallel=True)
def dense_back_solve(gptr, zoff, Lbuf, rhs, out):
    """out_g = L_g'⁻¹ rhs_g for every group (rhs in local column order)."""
    m = len(gptr) - 1
    for g in nb.prange(m):
        lo, hi = gptr[g], gptr[g + 1]
        q = hi - lo
        z0 = zoff[g]
        for i in range(q - 1, -1, -1):
            s = rhs[lo + i]
            for k in range(i + 1, q):
                s -= Lbuf[z0 + k * q + i] * out[lo + k]
            out[lo + i] = s / Lbuf[z0 + i * q + i]


@nb.njit(cache=True, inline="always")
def _group_inverse(Lbuf, z0, q, Linv, Ainv):
    """Ainv[:q, :q] = A_g⁻¹ = L_g'⁻¹ L_g⁻¹ from the packed factor at ``z0``; Linv is workspace."""
    for j in range(q):
        for i in range(j):
            Linv[i, j] = 0.0
        Linv[j, j] = 1.0 / Lbuf[z0 + j * q + j]
        for i in range(j + 1, q):
            s = 0.0
            for k in range(j, i):
                s -= Lbuf[z0 + i * q + k] * Linv[k, j]
            Linv[i, j] = s / Lbuf[z0 + i * q + i]
    for i in range(q):
        for j in range(i + 1):
            s = 0.0
            for k in range(i, q):
                s += Linv[k, i] * Linv[k, j]
            Ainv[i, j] = s
            Ainv[j, i] = s


@nb.njit(cache=True, parallel=True)
def dense_inverse(gptr, zoff, Lbuf, out):
    """out_g = A_g⁻¹ = L_g'⁻¹ L_g⁻¹ for every group (packed like Lbuf, full)."""
    m = len(gptr) - 1
    for g in nb.prange(m):
        q = gptr[g + 1] - gptr[g]
        z0 = zoff[g]
        Linv = np.empty((q, q))
        Ainv = np.empty((q, q))
        _group_inverse(Lbuf, z0, q, Linv, Ainv)
        for i in range(q):
            for j in range(q):
                out[z0 + i * q + j] = Ainv[i, j]


@nb.njit(cache=True, inline="always")
def _group_gradient(g, gptr, zoff, ztz, ztxy, lam, lterm, lcomp, toff, p, tindex, Lbuf, beta, u, gtr, gr2, gD,
                    Linv, Ainv, LtZtZ, LtZtX, MX, LMX, Lu):
    """Add group g's terms of the gradient (see :func:`dense_gradient`); the last seven are workspace."""
    lo, hi = gptr[g], gptr[g + 1]
    q = hi - lo
    z0 = zoff[g]
    nfe = len(beta)
    _group_inverse(Lbuf, z0, q, Linv, Ainv)
    # Λ'Z'Z, Λ'Z'X and Λu
    for i in range(q):
        Lu[i] = 0.0
        for c in range(q):
            LtZtZ[i, c] = 0.0
        for c in range(nfe):
            LtZtX[i, c] = 0.0
    for i in range(q):
        for k in range(q):
            lki = lam[z0 + k * q + i]
            if lki != 0.0:
                Lu[k] += lki * u[lo + i]
                for c in range(q):
                    LtZtZ[i, c] += lki * ztz[z0 + k * q + c]
                for c in range(nfe):
                    LtZtX[i, c] += lki * ztxy[lo + k, c]
    # MX = A⁻¹Λ'Z'X and ΛMX
    for i in range(q):
        for c in range(nfe):
            s = 0.0
            for k in range(q):
                s += Ainv[i, k] * LtZtX[k, c]
            MX[i, c] = s
    for i in range(q):
        for c in range(nfe):
            s = 0.0
            for k in range(q):
                s += lam[z0 + i * q + k] * MX[k, c]
            LMX[i, c] = s
    # θ_j with T_k entry (a, b): Λ_j = Σ_levels e_{c(a)} e_{c(b)}'
    for jb in range(q):
        k = lterm[lo + jb]
        b = lcomp[lo + jb]
        for a in range(b, p[k]):
            t = tindex[toff[k] + a * p[k] + b]
            if t < 0:
                continue
            ja = jb - b + a
            # tr(A⁻¹Λ'Z'ZΛ_j) picks (A⁻¹Λ'Z'Z)[jb, ja]
            s = 0.0
            for c in range(q):
                s += Ainv[jb, c] * LtZtZ[c, ja]
            gtr[t] += s
            # res[ja] = (Z'y − Z'Xβ − Z'ZΛu)[ja];  B[ja] = (Z'X − Z'ZΛ MX)[ja]
            r = ztxy[lo + ja, nfe]
            for c in range(nfe):
                r -= ztxy[lo + ja, c] * beta[c]
            for c in range(q):
                r -= ztz[z0 + ja * q + c] * Lu[c]
            gr2[t] -= 2.0 * r * u[lo + jb]
            for rr in range(nfe):
                brow = ztxy[lo + ja, rr]
                for c in range(q):
                    brow -= ztz[z0 + ja * q + c] * LMX[c, rr]
                for ss in range(nfe):
                    gD[t, rr, ss] += brow * MX[jb, ss]


@nb.njit(cache=True, parallel=True)
def dense_gradient(gptr, zoff, ztz, ztxy, lam, lterm, lcomp, toff, p, tindex, Lbuf, beta, u, ntheta, nchunks):
    """Per-θ sums over groups of the three gradient pieces (DESIGN.md §4).

    For θ_j with Λ_j = ∂Λ/∂θ_j, summed over groups:

    * ``tr[j]  = tr(A⁻¹ Λ'Z'Z Λ_j)``            (half of ∂log|A|/∂θ_j)
    * ``r2[j]  = −2 (Z'y − Z'Xβ̂ − Z'ZΛû)' Λ_j û``  (= ∂r²/∂θ_j)
    * ``D[j]   = (Λ_j'Z'V₀⁻¹X)' A⁻¹Λ'Z'X``         (∂(X'V₀⁻¹X)/∂θ_j = −(D + D'))

    ``u`` is û in the local (group) column order. Groups are split into
    ``nchunks`` chunks, each with its own workspace and partial sums.
    Returns ``(tr, r2, D)``.
    """
    m = len(gptr) - 1
    nfe = len(beta)
    qmax = _max_group(gptr)
    gtr = np.zeros((nchunks, ntheta))
    gr2 = np.zeros((nchunks, ntheta))
    gD = np.zeros((nchunks, ntheta, nfe, nfe))
    for c in nb.prange(nchunks):
        Linv = np.empty((qmax, qmax))
        Ainv = np.empty((qmax, qmax))
        LtZtZ = np.empty((qmax, qmax))
        LtZtX = np.empty((qmax, nfe))
        MX = np.empty((qmax, nfe))
        LMX = np.empty((qmax, nfe))
        Lu = np.empty(qmax)
        for g in range(c * m // nchunks, (c + 1) * m // nchunks):
            _group_gradient(g, gptr, zoff, ztz, ztxy, lam, lterm, lcomp, toff, p, tindex, Lbuf, beta, u,
                            gtr[c], gr2[c], gD[c], Linv, Ainv, LtZtZ, LtZtX, MX, LMX, Lu)
    return gtr.sum(axis=0), gr2.sum(axis=0), gD.sum(axis=0)


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


# --- blocked kernels -------------------------------------------------------------
#
# A = Λ'Z'ZΛ + I split after the first term's q1 columns: A11 is block diagonal
# (one p1 × p1 block per level of the first term, since two levels of one factor
# never meet in a row), A21 sparse, and the trailing m × m block dense:
#
#     L11 = chol(A11),  L21 = A21 L11⁻ᵀ,  S = A22 − L21 L21',  L22 = chol(S).
#
# A (without I) and L11, L21 share the lower CSC pattern (lptr, lidx) of
# :func:`lambda_map`; column c of level block i (c0 = i p1, a = c − c0) holds
# first its p1 − a rows inside the block (the diagonal first), then the tail:
# rows ≥ q1, the same for every column of the block. rptr/rpos/rcol list L21
# by rows: row q1 + r is at positions rpos[rptr[r]:rptr[r+1]], of columns rcol.
#
# The pass over pairs of L21's rows (the Schur update, with the weighted Gram
# matrix of the gradient) is bound by memory latency and runs in parallel
# over columns of the output, as do the triangular solves; the backend
# takes their serial twins for small problems. Indices are int32: a third
# less memory traffic in the Schur pass.


@nb.njit(cache=True)
def counting_order(keys, nkeys):
    """The stable sort order of integer ``keys`` in ``0 .. nkeys - 1`` (a counting sort, O(n))."""
    start = np.zeros(nkeys + 1, dtype=np.int64)
    for k in keys:
        start[k + 1] += 1
    for k in range(nkeys):
        start[k + 1] += start[k]
    order = np.empty(len(keys), dtype=np.int64)
    for i in range(len(keys)):
        order[start[keys[i]]] = i
        start[keys[i]] += 1
    return order


@nb.njit(cache=True, parallel=True)
def schur_column_counts(indptr, indices, q1, columns):
    """Structural nonzeros on and below the diagonal in the given columns of S (see ``blocked.schur_density``).

    ``indptr, indices``: the full symmetric pattern of Z'Z (CSC, sorted).
    Column j of S (row q1 + j of Z'Z) meets the trailing rows of every
    first-term column c < q1 in its pattern, and its own trailing rows.
    """
    m = len(indptr) - 1 - q1
    out = np.zeros(len(columns), dtype=np.int64)
    for t in nb.prange(len(columns)):
        j = q1 + columns[t]
        mark = np.zeros(m, dtype=np.bool_)
        for x in range(indptr[j], indptr[j + 1]):
            c = indices[x]
            if c >= q1:
                mark[c - q1] = True
            else:
                for y in range(indptr[c + 1] - 1, indptr[c] - 1, -1):  # sorted: the trailing rows come last
                    if indices[y] < j:
                        break
                    mark[indices[y] - q1] = True
        mark[j - q1] = True
        out[t] = mark[j - q1:].sum()
    return out


@nb.njit(cache=True, inline="always")
def _tail(lptr, c, p1):
    """First position of column c's rows ≥ q1."""
    return lptr[c] + p1 - c % p1


@nb.njit(cache=True)
def blocked_pattern_ok(lptr, lidx, q1, p1):
    """Whether the first q1 columns have the layout the blocked kernels assume."""
    for c in range(q1):
        c0 = c - c % p1
        t = _tail(lptr, c, p1)
        if t > lptr[c + 1] or lptr[c + 1] - t != lptr[c0 + 1] - _tail(lptr, c0, p1):
            return False
        for k in range(lptr[c], t):
            if lidx[k] != c + k - lptr[c]:
                return False
        t0 = _tail(lptr, c0, p1)
        for k in range(t, lptr[c + 1]):
            if lidx[k] < q1 or lidx[k] != lidx[t0 + k - t] or (k > t and lidx[k] <= lidx[k - 1]):
                return False
    return True


@nb.njit(cache=True)
def blocked_leading(lptr, lidx, aval, q1, p1, lval):
    """L11 and L21 into ``lval`` (on A's pattern, columns below q1); returns log|A11|."""
    nl = q1 // p1
    logs = np.zeros(nl)
    for i in range(nl):
        c0 = i * p1
        L = np.zeros((p1, p1))
        for a in range(p1):
            for b in range(a, p1):
                L[b, a] = aval[lptr[c0 + a] + b - a]
            L[a, a] += 1.0
        for a in range(p1):  # Cholesky of the block, in place
            d = L[a, a]
            for k in range(a):
                d -= L[a, k] * L[a, k]
            d = np.sqrt(d)
            L[a, a] = d
            logs[i] += np.log(d)
            for b in range(a + 1, p1):
                v = L[b, a]
                for k in range(a):
                    v -= L[b, k] * L[a, k]
                L[b, a] = v / d
        for a in range(p1):
            for b in range(a, p1):
                lval[lptr[c0 + a] + b - a] = L[b, a]
        ntail = lptr[c0 + 1] - _tail(lptr, c0, p1)
        for t in range(ntail):  # each row of L21's block: L11 x = a_r (forward substitution)
            for a in range(p1):
                pos = _tail(lptr, c0 + a, p1) + t
                v = aval[pos]
                for k in range(a):
                    v -= L[a, k] * lval[_tail(lptr, c0 + k, p1) + t]
                lval[pos] = v / L[a, a]
    return 2.0 * logs.sum()


@nb.njit(cache=True, parallel=True)
def blocked_schur(lptr, lidx, aval, lval, q1, rptr, rpos, rcol, w, S, M, nchunks):
    """S = A22 + I − L21 L21' and, if M has rows, M = Σ_c w_c L21[:, c] L21[:, c]', lower triangles.

    Column by column (m × m, Fortran order): column r's entries of A22,
    then, for every column c of L21 with a row q1 + r, L21[s, c] L21[r, c]
    for the rows s ≥ r of c (contiguous writes into column r). The weighted
    Gram matrix M, which the gradient needs (see
    ``BlockedBackend._level_block_sums``), costs little more in the same
    pass. Columns are dealt out in turn over ``nchunks`` chunks run in
    parallel (the early columns carry more work); one thread writes each.
    """
    m = S.shape[0]
    gram = M.shape[0] > 0
    for chunk in nb.prange(nchunks):
        for r in range(chunk, m, nchunks):
            for s in range(r, m):
                S[s, r] = 0.0
            S[r, r] = 1.0
            if gram:
                for s in range(r, m):
                    M[s, r] = 0.0
            for k in range(lptr[q1 + r], lptr[q1 + r + 1]):
                S[lidx[k] - q1, r] += aval[k]
            for x in range(rptr[r], rptr[r + 1]):
                e = rpos[x]
                v = lval[e]
                if gram:
                    vw = v * w[rcol[x]]
                    for f in range(e, lptr[rcol[x] + 1]):
                        row = lidx[f] - q1
                        S[row, r] -= v * lval[f]
                        M[row, r] += vw * lval[f]
                else:
                    for f in range(e, lptr[rcol[x] + 1]):
                        S[lidx[f] - q1, r] -= v * lval[f]


@nb.njit(cache=True)
def lower_inner(A, B):
    """Σ_ij A_ij B_ij of two symmetric matrices given by their lower triangles."""
    m = A.shape[0]
    total = 0.0
    for r in range(m):
        total += A[r, r] * B[r, r]
        off = 0.0
        for s in range(r + 1, m):
            off += A[s, r] * B[s, r]
        total += 2.0 * off
    return total


@nb.njit(cache=True, parallel=True)
def blocked_forward(lptr, lidx, lval, q1, p1, rptr, rpos, rcol, B):
    """B1 ← L11⁻¹ B1, then B2 ← B2 − L21 B1, in place (B: q × k); L22⁻¹ is left to the caller."""
    nl, k = q1 // p1, B.shape[1]
    for i in nb.prange(nl):
        c0 = i * p1
        for j in range(k):
            for a in range(p1):
                v = B[c0 + a, j]
                for b in range(a):
                    v -= lval[lptr[c0 + b] + a - b] * B[c0 + b, j]
                B[c0 + a, j] = v / lval[lptr[c0 + a]]
    m = B.shape[0] - q1
    for r in nb.prange(m):
        for x in range(rptr[r], rptr[r + 1]):
            v = lval[rpos[x]]
            for j in range(k):
                B[q1 + r, j] -= v * B[rcol[x], j]


@nb.njit(cache=True, parallel=True)
def blocked_backward(lptr, lidx, lval, q1, p1, B):
    """B1 ← L11⁻ᵀ (B1 − L21' B2), in place, with B2 already L22⁻ᵀ B2 (B: q × k)."""
    nl, k = q1 // p1, B.shape[1]
    for i in nb.prange(nl):
        c0 = i * p1
        for a in range(p1):
            c = c0 + a
            for f in range(_tail(lptr, c, p1), lptr[c + 1]):
                for j in range(k):
                    B[c, j] -= lval[f] * B[lidx[f], j]
        for j in range(k):
            for a in range(p1 - 1, -1, -1):
                v = B[c0 + a, j]
                for b in range(a + 1, p1):
                    v -= lval[lptr[c0 + a] + b - a] * B[c0 + b, j]
                B[c0 + a, j] = v / lval[lptr[c0 + a]]


@nb.njit(cache=True)
def blocked_inverse(lptr, lidx, lval, q1, p1, rptr, rpos, rcol, Z22, zval, work):
    """A⁻¹ on the first q1 columns of A's pattern into ``zval``, given Z22 = S⁻¹ (lower triangle).

    Per level block i, with l = L21's rows of the block (tail rows R):

        X = (A⁻¹)[R, i] = −S⁻¹[R, R] l L11⁻¹,    (A⁻¹)[i, i] = L11⁻ᵀ (L11⁻¹ − l' X).

    Y = S⁻¹[R, R] l is built in ``zval``'s tail positions column of Z22 by
    column (as :func:`blocked_schur` builds S): each pair of rows of a column
    of L21 is met once, at the column of Z22 of the smaller row, which stays
    in cache while every column of L21 with that row reads it. ``work``
    (ℓ1 × p1 × p1) holds each level's small blocks.
    """
    m = Z22.shape[0]
    for c in range(q1):
        for f in range(_tail(lptr, c, p1), lptr[c + 1]):
            zval[f] = 0.0
    for r in range(m):
        for x in range(rptr[r], rptr[r + 1]):
            e = rpos[x]
            v = lval[e]
            acc = Z22[r, r] * v
            for f in range(e + 1, lptr[rcol[x] + 1]):
                z = Z22[lidx[f] - q1, r]
                zval[f] += z * v
                acc += z * lval[f]
            zval[e] += acc
    for i in range(q1 // p1):
        c0 = i * p1
        nt = lptr[c0 + 1] - _tail(lptr, c0, p1)
        for t in range(nt):  # X = −Y L11⁻¹, row by row: x L11 = −y
            for a in range(p1 - 1, -1, -1):
                ta = _tail(lptr, c0 + a, p1)
                v = -zval[ta + t]
                for b in range(a + 1, p1):
                    v -= zval[_tail(lptr, c0 + b, p1) + t] * lval[lptr[c0 + a] + b - a]
                zval[ta + t] = v / lval[lptr[c0 + a]]
        M = work[i]  # L11⁻¹ − l'X, then L11⁻ᵀ times it
        for a in range(p1):  # L11⁻¹ by forward substitution, row by row
            for b in range(p1):
                v = 1.0 if a == b else 0.0
                for k in range(b, a):
                    v -= lval[lptr[c0 + k] + a - k] * M[k, b]
                M[a, b] = v / lval[lptr[c0 + a]] if a >= b else 0.0
        for a in range(p1):
            ta = _tail(lptr, c0 + a, p1)
            for b in range(p1):
                tb = _tail(lptr, c0 + b, p1)
                v = 0.0
                for t in range(nt):
                    v += lval[ta + t] * zval[tb + t]
                M[a, b] -= v
        for b in range(p1):  # back substitution with L11'
            for a in range(p1 - 1, -1, -1):
                v = M[a, b]
                for k in range(a + 1, p1):
                    v -= lval[lptr[c0 + a] + k - a] * M[k, b]
                M[a, b] = v / lval[lptr[c0 + a]]
        for a in range(p1):
            for b in range(a, p1):
                zval[lptr[c0 + a] + b - a] = M[b, a]


# --- serial twins of the parallel kernels --------------------------------------


def _serial_twin(kernel):
    """The same code compiled without ``parallel`` (``prange`` then runs as ``range``)."""
    py = kernel.py_func
    f = types.FunctionType(py.__code__, py.__globals__, py.__name__ + "_serial", py.__defaults__, py.__closure__)
    f.__qualname__ = py.__qualname__ + "_serial"  # its own cache entry
    f.__doc__ = py.__doc__
    return nb.njit(cache=True)(f)


_SERIAL = {k: _serial_twin(k) for k in (takahashi, dense_factor, dense_back_solve, dense_inverse, dense_gradient,
                                        blocked_schur, blocked_forward, blocked_backward)}


def serial(kernel):
    """The serial twin of a parallel kernel."""
    return _SERIAL[kernel]


def pick(kernel, work: int):
    """``kernel`` itself for ``work`` ≥ PARALLEL_MIN_WORK pieces of work, else its serial twin."""
    return kernel if work >= PARALLEL_MIN_WORK else _SERIAL[kernel]
