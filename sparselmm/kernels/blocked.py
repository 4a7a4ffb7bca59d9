"""Kernels of the blocked path (``backends/blocked.py``)."""

from __future__ import annotations

import numba as nb
import numpy as np

from .common import _find


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
def schur_lower_pattern(indptr, indices, q1, capacity):
    """The lower triangle of S's pattern as CSC (``ptr``, ``rows``; rows unsorted within a column),
    S = A22 − L21 L21' of Z'Z's full symmetric pattern (``indptr, indices``, sorted): column j of S
    holds its own trailing rows of A22 and the trailing rows ≥ j of every first-term column c < q1
    that meets j. One pass, a mark per row (the work of the Schur pass's pairs); ``capacity`` bounds
    the entries (the pairs of rows of L21 plus A22's lower entries and the diagonal)."""
    m = len(indptr) - 1 - q1
    ptr = np.zeros(m + 1, dtype=np.int64)
    mark = np.full(m, -1, dtype=np.int64)
    rows = np.empty(capacity, dtype=np.int64)
    n = 0
    for j in range(m):
        col = q1 + j
        mark[j] = j
        rows[n] = j  # the diagonal, always
        n += 1
        for x in range(indptr[col], indptr[col + 1]):
            c = indices[x]
            if c > col:
                if mark[c - q1] != j:
                    mark[c - q1] = j
                    rows[n] = c - q1
                    n += 1
            elif c < q1:
                for y in range(indptr[c + 1] - 1, indptr[c] - 1, -1):  # sorted: the trailing rows last
                    r = indices[y]
                    if r <= col:
                        break
                    if mark[r - q1] != j:
                        mark[r - q1] = j
                        rows[n] = r - q1
                        n += 1
        ptr[j + 1] = n
    return ptr, rows[:n].copy()


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
def blocked_rows(lptr, lidx, q1, m):
    """L21 by rows: ``(rptr, rpos, rcol)``, row r's entries at positions ``rpos[rptr[r]:rptr[r+1]]``
    of A's lower pattern, in columns ``rcol`` (increasing). A counting sort of the first q1 columns'
    rows ≥ q1."""
    rptr = np.zeros(m + 1, dtype=np.int64)
    for k in range(lptr[q1]):
        if lidx[k] >= q1:
            rptr[lidx[k] - q1 + 1] += 1
    for r in range(m):
        rptr[r + 1] += rptr[r]
    nxt = rptr[:-1].copy()
    rpos = np.empty(rptr[m], dtype=np.int32)  # positions in A's lower pattern and columns: < 2³¹
    rcol = np.empty(rptr[m], dtype=np.int32)
    for c in range(q1):
        for k in range(lptr[c], lptr[c + 1]):
            if lidx[k] >= q1:
                x = nxt[lidx[k] - q1]
                nxt[lidx[k] - q1] += 1
                rpos[x] = k
                rcol[x] = c
    return rptr, rpos, rcol


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
def blocked_schur(lptr, lidx, aval, lval, q1, rptr, rpos, rcol, w, S, M, rval, nchunks):
    """S = A22 + I − L21 L21' and, if M has rows, M = Σ_c w_c L21[:, c] L21[:, c]', lower triangles;
    and L21's values by rows into ``rval`` (``rval[x] = lval[rpos[x]]``, for the forward solves).

    Column by column (m × m, Fortran order): column r's entries of A22,
    then, for every column c of L21 with a row q1 + r, L21[s, c] L21[r, c]
    for the rows s ≥ r of c (contiguous writes into column r). The weighted
    Gram matrix M, which the gradient needs (see
    ``BlockedBackend._level_block_sums``), costs little more in the same
    pass. Columns are dealt out in turn over ``nchunks`` chunks run in
    parallel (the early columns carry more work); one thread writes each.
    """
    m = S.shape[0]
    gram = w.shape[0] > 0
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
                rval[x] = v
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
def blocked_forward(lptr, lidx, lval, q1, p1, rptr, rval, rcol, B):
    """B1 ← L11⁻¹ B1, then B2 ← B2 − L21 B1, in place (B: q × k); L22⁻¹ is left to the caller.

    L21 by rows: row r's entries are ``rval[rptr[r]:rptr[r+1]]`` in columns ``rcol``
    (read in order; :func:`blocked_schur` writes them)."""
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
            v = rval[x]
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


@nb.njit(cache=True, inline="always")
def _sym_at(Z, m, rfp, i, j):
    """Entry (i, j), i ≥ j, of a symmetric m × m matrix held by its lower triangle in the flat array Z:
    column-major (``rfp`` False) or in LAPACK's rectangular full packed format (TRANSR = 'N',
    UPLO = 'L'; ``dtrttf``): the first n1 = ⌈m/2⌉ columns as they are, below one spare row when m is
    even, and the trailing triangle transposed into the space above them."""
    if not rfp:
        return Z[i + j * m]
    n1 = m - m // 2
    lda = m + 1 - m % 2
    if j < n1:
        return Z[i + 1 - m % 2 + j * lda]
    return Z[(m % 2) * m + (j - n1) + (i - n1) * lda]


@nb.njit(cache=True)
def blocked_gather(rows, cols, q1, Z, rfp, lptr, lidx, zval, out):
    """``out[t] = A⁻¹[rows[t], cols[t]]`` on A's pattern: S⁻¹ (``Z``, ``rfp``: see :func:`_sym_at`) for
    two trailing indices, else the first q1 columns' values from :func:`blocked_inverse`."""
    m = len(lptr) - 1 - q1
    for t in range(len(rows)):
        i, k = rows[t], cols[t]
        if i < k:
            i, k = k, i
        if k >= q1:
            out[t] = _sym_at(Z, m, rfp, i - q1, k - q1)
            continue
        pos = _find(lidx, lptr[k], lptr[k + 1], i)
        if pos < 0:
            raise ValueError("blocked gather: entry outside A's pattern")
        out[t] = zval[pos]


@nb.njit(cache=True, parallel=True)
def blocked_inverse(lptr, lidx, lval, q1, p1, rptr, rpos, rcol, Z, rfp, zval, work, nchunks):
    """A⁻¹ on the first q1 columns of A's pattern into ``zval``, given S⁻¹ in ``Z`` (its lower triangle,
    flat: see :func:`_sym_at`).

    Per level block i, with l = L21's rows of the block (tail rows R):

        X = (A⁻¹)[R, i] = −S⁻¹[R, R] l L11⁻¹,    (A⁻¹)[i, i] = L11⁻ᵀ (L11⁻¹ − l' X).

    Y = S⁻¹[R, R] l is built in ``zval``'s tail positions by a pass over the
    pairs of rows of each column of L21, in the order S⁻¹ is stored (as
    :func:`blocked_schur` builds S): a pair of rows r ≤ s is met at S⁻¹'s
    column r, contiguous in s — except in the packed format's trailing
    triangle (r, s ≥ n1), stored by rows, where it is met at row s. The
    pass is dealt out over ``nchunks`` chunks, each with its own
    accumulator (chunk 0 writes into ``zval``). ``work`` (ℓ1 × p1 × p1)
    holds each level's small blocks.
    """
    m = len(rptr) - 1
    half = m - m // 2 if rfp else m  # columns stored as columns
    for c in range(q1):
        for f in range(_tail(lptr, c, p1), lptr[c + 1]):
            zval[f] = 0.0
    extra = np.zeros((nchunks - 1, len(zval)))
    for chunk in nb.prange(nchunks):
        out = zval if chunk == 0 else extra[chunk - 1]
        for r in range(chunk, half, nchunks):  # pairs with a smaller row r < half, at column r
            for x in range(rptr[r], rptr[r + 1]):
                e = rpos[x]
                v = lval[e]
                acc = _sym_at(Z, m, rfp, r, r) * v
                for f in range(e + 1, lptr[rcol[x] + 1]):
                    z = _sym_at(Z, m, rfp, lidx[f] - q1, r)
                    out[f] += z * v
                    acc += z * lval[f]
                out[e] += acc
        for s in range(half + chunk, m, nchunks):  # pairs of rows r ≤ s, both ≥ half, at row s
            for x in range(rptr[s], rptr[s + 1]):
                f = rpos[x]
                v = lval[f]
                lo, hi = _tail(lptr, rcol[x], p1), f  # the column's first row ≥ half, by bisection
                while lo < hi:
                    mid = (lo + hi) // 2
                    if lidx[mid] - q1 < half:
                        lo = mid + 1
                    else:
                        hi = mid
                acc = _sym_at(Z, m, rfp, s, s) * v
                for e in range(lo, f):
                    z = _sym_at(Z, m, rfp, s, lidx[e] - q1)
                    out[e] += z * v
                    acc += z * lval[e]
                out[f] += acc
    if nchunks > 1:
        for c in nb.prange(q1):
            for f in range(_tail(lptr, c, p1), lptr[c + 1]):
                for k in range(nchunks - 1):
                    zval[f] += extra[k, f]
    for i in nb.prange(q1 // p1):
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

