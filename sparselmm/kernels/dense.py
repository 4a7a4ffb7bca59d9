"""Kernels of the dense per-group path."""

from __future__ import annotations

import numba as nb
import numpy as np

from .common import QFIX


# --- dense per-group kernels ---------------------------------------------------
#
# Group g owns the local columns gptr[g]:gptr[g+1] of Z (reordered so that
# groups are contiguous); its dense blocks Z_g'Z_g are packed row-major at
# zoff[g], and so are the blocks Λ_g (``lam``, refilled per θ through
# :func:`dense_lambda_index`). Column j belongs to term lterm[j] as component
# lcomp[j] of a level block.
#
# Kernels that loop over groups read a group's size as ``QFIX if QFIX else
# gptr[g + 1] - gptr[g]``: in the variants ``kernels.pick(kernel, work, size)``
# compiles for equal groups, QFIX is that size, a constant (see common.QFIX).


@nb.njit(cache=True, parallel=True)
def dense_blocks(indptr, indices, data, ZtXy, order, col_group, loc, gptr, zoff, ztz, ztxy):
    """Cut the group blocks Z_g'Z_g out of Z'Z (CSC) into ``ztz`` (packed), and gather Z'[X y] in the
    groups' column order (``order``) into ``ztxy``. Returns False if an entry of Z'Z joins two groups.
    """
    q = len(order)
    bad = np.zeros(q, dtype=np.bool_)
    for lc in nb.prange(q):
        c = order[lc]
        g = col_group[c]
        lo, z0 = gptr[g], zoff[g]
        size = gptr[g + 1] - lo
        for x in range(indptr[c], indptr[c + 1]):
            r = indices[x]
            if col_group[r] != g:
                bad[lc] = True
            else:
                ztz[z0 + (loc[r] - lo) * size + lc - lo] = data[x]
        for f in range(ZtXy.shape[1]):
            ztxy[lc, f] = ZtXy[c, f]
    return not bad.any()


@nb.njit(cache=True, parallel=True)
def dense_lambda_index(gptr, zoff, lterm, lcomp, toff, p):
    """Where each entry of every Λ_g comes from: its index in the flat T blocks, or -1 for a zero.

    Packed like the Z_g'Z_g blocks. Λ_g[i, j] = T_k[a, b] when local columns
    i and j are components a and b of one level block of term k, else 0.
    """
    out = np.full(zoff[-1], -1, dtype=np.int64)
    for g in nb.prange(len(gptr) - 1):
        lo, q = gptr[g], gptr[g + 1] - gptr[g]
        for i in range(q):
            for j in range(q):
                a, b = lcomp[lo + i], lcomp[lo + j]
                k = lterm[lo + j]
                if lterm[lo + i] == k and i - a == j - b:
                    out[zoff[g] + i * q + j] = toff[k] + a * p[k] + b
    return out


@nb.njit(cache=True, inline="always")
def _group_factor(lo, q, z0, ztz, ztxy, lam, Lbuf, Cbuf, W):
    """Factor A_g = Λ_g'Z_g'Z_gΛ_g + I into Lbuf and solve L_g C_g = Λ_g'Z_g'[X y] into Cbuf.

    The group's q columns start at ``lo``, its packed blocks at ``z0``; ``lam`` holds every Λ_g,
    packed like ``ztz``; ``W`` is workspace. Returns log|A_g|.
    """
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
def dense_factor(gptr, zoff, ztz, ztxy, lam_index, tflat, lam, Lbuf, Cbuf, nchunks):
    """Fill every Λ_g into ``lam`` (entry e is ``tflat[lam_index[e]]``, or 0 where the index is -1:
    :func:`dense_lambda_index`), factor every group into Lbuf and solve for Cbuf.

    Returns Σ_g log|A_g| and C'C. Groups are split into ``nchunks`` chunks,
    each with its own workspace and partial sums.
    """
    m = len(gptr) - 1
    ncol = ztxy.shape[1]
    qmax = QFIX if QFIX else _max_group(gptr)
    logdets = np.zeros(nchunks)
    grams = np.zeros((nchunks, ncol, ncol))
    for c in nb.prange(nchunks):
        W = np.empty((qmax, qmax))
        G = grams[c]
        for g in range(c * m // nchunks, (c + 1) * m // nchunks):
            lo, z0 = gptr[g], zoff[g]
            q = QFIX if QFIX else gptr[g + 1] - lo
            for e in range(z0, z0 + q * q):
                ix = lam_index[e]
                lam[e] = tflat[ix] if ix >= 0 else 0.0
            logdets[c] += _group_factor(lo, q, z0, ztz, ztxy, lam, Lbuf, Cbuf, W)
            for i in range(lo, lo + q):
                for a in range(ncol):
                    v = Cbuf[i, a]
                    for b in range(a + 1):
                        G[a, b] += v * Cbuf[i, b]
    gram = grams.sum(axis=0)
    for a in range(ncol):
        for b in range(a):
            gram[b, a] = gram[a, b]
    return logdets.sum(), gram


@nb.njit(cache=True, parallel=True)
def dense_back_solve(gptr, zoff, Lbuf, rhs, out):
    """out_g = L_g'⁻¹ rhs_g for every group (rhs in local column order)."""
    m = len(gptr) - 1
    for g in nb.prange(m):
        lo, z0 = gptr[g], zoff[g]
        q = QFIX if QFIX else gptr[g + 1] - lo
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
        q = QFIX if QFIX else gptr[g + 1] - gptr[g]
        z0 = zoff[g]
        Linv = np.empty((q, q))
        Ainv = np.empty((q, q))
        _group_inverse(Lbuf, z0, q, Linv, Ainv)
        for i in range(q):
            for j in range(q):
                out[z0 + i * q + j] = Ainv[i, j]


@nb.njit(cache=True, parallel=True)
def dense_level_sums(gptr, zoff, Lbuf, lterm, lcomp, p, nchunks):
    """Per term k, Σ over its levels of the blocks A⁻¹_ll (p_k × p_k, in ``out[k, :p_k, :p_k]``)."""
    m = len(gptr) - 1
    qmax = QFIX if QFIX else _max_group(gptr)
    pmax = 0
    for k in range(len(p)):
        pmax = max(pmax, p[k])
    out = np.zeros((nchunks, len(p), pmax, pmax))
    for ch in nb.prange(nchunks):
        Linv = np.empty((qmax, qmax))
        Ainv = np.empty((qmax, qmax))
        for g in range(ch * m // nchunks, (ch + 1) * m // nchunks):
            lo = gptr[g]
            q = QFIX if QFIX else gptr[g + 1] - lo
            _group_inverse(Lbuf, zoff[g], q, Linv, Ainv)
            for i in range(q):
                k, a = lterm[lo + i], lcomp[lo + i]
                for b in range(p[k]):
                    out[ch, k, a, b] += Ainv[i, i - a + b]
    return out.sum(axis=0)


@nb.njit(cache=True, inline="always")
def _group_entries(lo, q, lterm, lcomp, toff, p, tindex, ent):
    """The θ entries on the group at (lo, q), as rows (t, ja, jb) of ``ent``; returns their number.

    θ_t is entry (a, b) of T_k: Λ_t = Σ_levels e_{c(a)} e_{c(b)}', and ja, jb are the group's
    columns of components a and b of one level of term k.
    """
    n = 0
    for jb in range(q):
        k = lterm[lo + jb]
        b = lcomp[lo + jb]
        for a in range(b, p[k]):
            t = tindex[toff[k] + a * p[k] + b]
            if t >= 0:
                ent[n, 0], ent[n, 1], ent[n, 2] = t, jb - b + a, jb
                n += 1
    return n


@nb.njit(cache=True, inline="always")
def _group_residual(lo, q, z0, ztz, ztxy, lam, beta, u, Lu, ztr):
    """Λu into ``Lu`` and Z'r = Z'y − Z'Xβ − Z'ZΛu into ``ztr``, for the group at (lo, q, z0)."""
    nfe = len(beta)
    for i in range(q):
        s = 0.0
        for k in range(q):
            s += lam[z0 + i * q + k] * u[lo + k]
        Lu[i] = s
    for i in range(q):
        s = ztxy[lo + i, nfe]
        for f in range(nfe):
            s -= ztxy[lo + i, f] * beta[f]
        for k in range(q):
            s -= ztz[z0 + i * q + k] * Lu[k]
        ztr[i] = s


@nb.njit(cache=True, inline="always")
def _group_gradient(lo, q, z0, ztz, ztxy, lam, ent, nent, Lbuf, u, ztr, gtr, gr2, gD,
                    Linv, Ainv, LtZtZ, LtZtX, MX, B):
    """Add the terms of the group at (lo, q, z0) to the gradient (see :func:`dense_gradient`), given
    its θ entries (:func:`_group_entries`) and Z'r (``ztr``); the last six are workspace."""
    nfe = ztxy.shape[1] - 1
    _group_inverse(Lbuf, z0, q, Linv, Ainv)
    # Λ'Z'Z and Λ'Z'X
    for i in range(q):
        for c in range(q):
            LtZtZ[i, c] = 0.0
        for c in range(nfe):
            LtZtX[i, c] = 0.0
    for i in range(q):
        for k in range(q):
            lki = lam[z0 + k * q + i]
            if lki != 0.0:
                for c in range(q):
                    LtZtZ[i, c] += lki * ztz[z0 + k * q + c]
                for c in range(nfe):
                    LtZtX[i, c] += lki * ztxy[lo + k, c]
    # MX = A⁻¹Λ'Z'X, then B = Z'X − Z'ZΛ MX (= Z'V₀⁻¹X), with ΛMX in LtZtX
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
            LtZtX[i, c] = s
    for i in range(q):
        for c in range(nfe):
            s = ztxy[lo + i, c]
            for k in range(q):
                s -= ztz[z0 + i * q + k] * LtZtX[k, c]
            B[i, c] = s
    for e in range(nent):
        t, ja, jb = ent[e, 0], ent[e, 1], ent[e, 2]
        # tr(A⁻¹Λ'Z'ZΛ_t) picks (A⁻¹Λ'Z'Z)[jb, ja]
        s = 0.0
        for c in range(q):
            s += Ainv[jb, c] * LtZtZ[c, ja]
        gtr[t] += s
        gr2[t] -= 2.0 * ztr[ja] * u[lo + jb]
        for rr in range(nfe):
            for ss in range(nfe):
                gD[t, rr, ss] += B[ja, rr] * MX[jb, ss]


@nb.njit(cache=True, inline="always")
def _group_information(lo, q, z0, ztz, ztxy, lam, ent, nent, Lbuf, Cbuf, u, ztr, ww, xw, rw, c, w, z, nt):
    """Add the terms of the group at (lo, q, z0) to the average information (see
    :func:`dense_gradient`; ``ww`` only for t2 ≤ t1), given its θ entries and Z'r (``ztr``);
    ``c``, ``w`` and ``z`` are workspace, ``nt`` is dim θ."""
    nfe = ztxy.shape[1] - 1
    # c_t = Λ_t u + Λ Λ_t'Z'r, with Λ_t'Z'r gathered in z first
    for i in range(q):
        for t in range(nt):
            c[i, t] = 0.0
            z[i, t] = 0.0
    for e in range(nent):
        t, ja, jb = ent[e, 0], ent[e, 1], ent[e, 2]
        c[ja, t] += u[lo + jb]
        z[jb, t] += ztr[ja]
    for i in range(q):
        for t in range(nt):
            s = 0.0
            for k in range(q):
                s += lam[z0 + i * q + k] * z[k, t]
            c[i, t] += s
    # w = Z'Z c; z = L⁻¹ Λ'w
    for i in range(q):
        for t in range(nt):
            s = 0.0
            for k in range(q):
                s += ztz[z0 + i * q + k] * c[k, t]
            w[i, t] = s
    for t in range(nt):
        for i in range(q):
            s = 0.0
            for k in range(q):
                s += lam[z0 + k * q + i] * w[k, t]
            for k in range(i):
                s -= Lbuf[z0 + i * q + k] * z[k, t]
            z[i, t] = s / Lbuf[z0 + i * q + i]
    for t1 in range(nt):
        s = 0.0
        for i in range(q):
            s += ztr[i] * c[i, t1]
        rw[t1] += s
        for t2 in range(t1 + 1):
            s = 0.0
            for i in range(q):
                s += c[i, t1] * w[i, t2] - z[i, t1] * z[i, t2]
            ww[t1, t2] += s
        for f in range(nfe):
            s = 0.0
            for i in range(q):
                s += ztxy[lo + i, f] * c[i, t1] - Cbuf[lo + i, f] * z[i, t1]
            xw[f, t1] += s


@nb.njit(cache=True, parallel=True)
def dense_gradient(gptr, zoff, ztz, ztxy, lam, lterm, lcomp, toff, p, tindex, Lbuf, Cbuf, beta, u, ntheta, info,
                   nchunks):
    """Per-θ sums over groups of the three gradient pieces (DESIGN.md §4), and, if ``info``, of the
    average information's.

    For θ_j with Λ_j = ∂Λ/∂θ_j, summed over groups:

    * ``tr[j]  = tr(A⁻¹ Λ'Z'Z Λ_j)``            (half of ∂log|A|/∂θ_j)
    * ``r2[j]  = −2 (Z'y − Z'Xβ̂ − Z'ZΛû)' Λ_j û``  (= ∂r²/∂θ_j)
    * ``D[j]   = (Λ_j'Z'V₀⁻¹X)' A⁻¹Λ'Z'X``         (∂(X'V₀⁻¹X)/∂θ_j = −(D + D'))

    and with r the residual, c_j = Λ_j û + ΛΛ_j'Z'r (w_j = Z c_j), z_j = L⁻¹Λ'Z'w_j
    (``ProfiledBackend.approximate_hessian``):

    * ``ww[i, j] = c_i'Z'Z c_j − z_i'z_j``
    * ``xw[:, j] = X'Z c_j − C_X' z_j``     (C_X = L⁻¹Λ'Z'X, the factor's Cbuf)
    * ``rw[j]    = (Z'r)' c_j``

    ``u`` is û in the local (group) column order, β in the stored response's
    coordinates. One pass: the information costs little more than the
    gradient once a group's blocks are in cache. Groups are split into
    ``nchunks`` chunks, each with its own workspace and partial sums.
    Returns ``(tr, r2, D, ww, xw, rw)`` (the last three zero without ``info``).
    """
    m = len(gptr) - 1
    nfe = len(beta)
    qmax = QFIX if QFIX else _max_group(gptr)
    pmax = p.max()
    gtr = np.zeros((nchunks, ntheta))
    gr2 = np.zeros((nchunks, ntheta))
    gD = np.zeros((nchunks, ntheta, nfe, nfe))
    ww = np.zeros((nchunks, ntheta, ntheta))
    xw = np.zeros((nchunks, nfe, ntheta))
    rw = np.zeros((nchunks, ntheta))
    for c in nb.prange(nchunks):
        Linv = np.empty((qmax, qmax))
        Ainv = np.empty((qmax, qmax))
        LtZtZ = np.empty((qmax, qmax))
        LtZtX = np.empty((qmax, nfe))
        MX = np.empty((qmax, nfe))
        B = np.empty((qmax, nfe))
        Lu = np.empty(qmax)
        ztr = np.empty(qmax)
        cj = np.empty((qmax, ntheta))
        wj = np.empty((qmax, ntheta))
        zj = np.empty((qmax, ntheta))
        ent = np.empty((qmax * pmax, 3), dtype=np.int64)
        for g in range(c * m // nchunks, (c + 1) * m // nchunks):
            lo, z0 = gptr[g], zoff[g]
            q = QFIX if QFIX else gptr[g + 1] - lo
            nent = _group_entries(lo, q, lterm, lcomp, toff, p, tindex, ent)
            _group_residual(lo, q, z0, ztz, ztxy, lam, beta, u, Lu, ztr)
            _group_gradient(lo, q, z0, ztz, ztxy, lam, ent, nent, Lbuf, u, ztr, gtr[c], gr2[c], gD[c],
                            Linv, Ainv, LtZtZ, LtZtX, MX, B)
            if info:
                _group_information(lo, q, z0, ztz, ztxy, lam, ent, nent, Lbuf, Cbuf, u, ztr, ww[c], xw[c], rw[c],
                                   cj, wj, zj, ntheta)
    wsum = ww.sum(axis=0)
    for t1 in range(ntheta):
        for t2 in range(t1):
            wsum[t2, t1] = wsum[t1, t2]
    return gtr.sum(axis=0), gr2.sum(axis=0), gD.sum(axis=0), wsum, xw.sum(axis=0), rw.sum(axis=0)
