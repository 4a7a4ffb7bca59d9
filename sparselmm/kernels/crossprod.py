"""Kernels of the crossproducts (:mod:`sparselmm.crossprod`): rows grouped by block, Z'Z's pattern
and values, Z'[X y]; ``one_term`` the fused pass of a single term."""

import numba as nb
import numpy as np

from .common import QFIX


@nb.njit(cache=True, parallel=True)
def rows_by_block(blk, X, nblocks, nchunks):
    """Every level block's rows, gathered (a counting sort): ``(ptr, gblk, gX)``.

    Rows ``ptr[B]:ptr[B+1]`` of ``gblk`` and ``gX`` are the block ids and model
    columns of block B's rows, so the passes over a block's rows read in order.
    The rows are split into ``nchunks`` contiguous chunks, counted and placed
    in parallel (each chunk's rows of a block after the earlier chunks').
    """
    n, K = blk.shape
    counts = np.zeros((nchunks, nblocks), dtype=np.int64)
    for c in nb.prange(nchunks):
        for r in range(c * n // nchunks, (c + 1) * n // nchunks):
            for k in range(K):
                if blk[r, k] >= 0:
                    counts[c, blk[r, k]] += 1
    ptr = np.zeros(nblocks + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(counts.sum(axis=0))
    nxt = np.empty((nchunks, nblocks), dtype=np.int64)
    for b in range(nblocks):
        at = ptr[b]
        for c in range(nchunks):
            nxt[c, b] = at
            at += counts[c, b]
    gblk = np.empty((ptr[-1], K), dtype=blk.dtype)
    gX = np.empty((ptr[-1], X.shape[1]))
    for c in nb.prange(nchunks):
        cur = nxt[c]
        for r in range(c * n // nchunks, (c + 1) * n // nchunks):
            for k in range(K):
                b = blk[r, k]
                if b >= 0:
                    x = cur[b]
                    cur[b] += 1
                    for k2 in range(K):
                        gblk[x, k2] = blk[r, k2]
                    for j in range(X.shape[1]):
                        gX[x, j] = X[r, j]
    return ptr, gblk, gX


@nb.njit(cache=True, parallel=True)
def block_rows(gblk, bsize, ptr, bounds):
    """Rows of Z'Z in each column of block B: Σ of the sizes of the blocks B meets, itself included.

    ``gblk[ptr[B]:ptr[B+1]]``: the block ids of block B's rows (rows gathered by block). The
    blocks ``bounds[c]:bounds[c+1]`` make chunk c (run in parallel).
    """
    Q = len(ptr) - 1
    counts = np.empty(Q, dtype=np.int64)
    for chunk in nb.prange(len(bounds) - 1):
        marker = np.full(Q, -1, dtype=np.int64)
        for B in range(bounds[chunk], bounds[chunk + 1]):
            marker[B] = B
            cnt = bsize[B]
            for x in range(ptr[B], ptr[B + 1]):
                for k2 in range(gblk.shape[1]):
                    B2 = gblk[x, k2]
                    if B2 >= 0 and marker[B2] != B:
                        marker[B2] = B
                        cnt += bsize[B2]
            counts[B] = cnt
    return counts


@nb.njit(cache=True, parallel=True)
def block_fill(gblk, gX, xoff, bsize, bterm, bcol, bstart, counts, ptr, bounds, indices, data):
    """Indices (sorted) and values of every block column of Z'Z (Gustavson's product, a marker per block).

    Column j of block B holds ``counts[B]`` rows from ``bstart[B] + j counts[B]``. ``gblk`` and
    ``gX``: block ids and model columns of the rows, gathered by block (``ptr``).
    """
    Q = len(ptr) - 1
    K = gblk.shape[1]
    for chunk in nb.prange(len(bounds) - 1):
        marker = np.full(Q, -1, dtype=np.int64)
        pos = np.empty(Q, dtype=np.int64)
        blist = np.empty(Q, dtype=np.int64)
        for B in range(bounds[chunk], bounds[chunk + 1]):
            marker[B] = B
            blist[0] = B
            nb_ = 1
            for x in range(ptr[B], ptr[B + 1]):
                for k2 in range(K):
                    B2 = gblk[x, k2]
                    if B2 >= 0 and marker[B2] != B:
                        marker[B2] = B
                        blist[nb_] = B2
                        nb_ += 1
            blocks = blist[:nb_]
            blocks.sort()  # in place: no allocation per block
            nrows, p = counts[B], bsize[B]
            at = 0
            for t in range(nb_):
                B2 = blocks[t]
                pos[B2] = at
                for j in range(p):
                    for i in range(bsize[B2]):
                        indices[bstart[B] + j * nrows + at + i] = bcol[B2] + i
                at += bsize[B2]
            for j in range(p * nrows):
                data[bstart[B] + j] = 0.0
            x0 = xoff[bterm[B]]
            for x in range(ptr[B], ptr[B + 1]):
                for k2 in range(K):
                    B2 = gblk[x, k2]
                    if B2 >= 0:
                        for j in range(p):
                            v = gX[x, x0 + j]
                            o = bstart[B] + j * nrows + pos[B2]
                            for i in range(bsize[B2]):
                                data[o + i] += v * gX[x, xoff[k2] + i]


@nb.njit(cache=True, parallel=True)
def ztv(blk, Xz, xoff, bsize, bcol, X, y, q, nchunks):
    """Z'[X y] (q × (p+1)): chunks of rows in parallel, each into its own sum."""
    n, K = blk.shape
    p = X.shape[1]
    parts = np.zeros((nchunks, q, p + 1))
    for c in nb.prange(nchunks):
        out = parts[c]
        for r in range(c * n // nchunks, (c + 1) * n // nchunks):
            for k in range(K):
                B = blk[r, k]
                if B >= 0:
                    for j in range(bsize[B]):
                        v = Xz[r, xoff[k] + j]
                        row = bcol[B] + j
                        for s in range(p):
                            out[row, s] += v * X[r, s]
                        out[row, p] += v * y[r]
    return parts.sum(axis=0)


@nb.njit(cache=True, parallel=True)
def one_term(codes, Xz, X, y, bounds, grouped, blocks, ztv):
    """Add one term's level blocks of Z'Z (into ``blocks``, ℓ × p_z × p_z) and Z'[X y] (into ``ztv``,
    ℓ p_z × (p+1)); one term: Z'Z is block diagonal.

    Rows ``bounds[c]:bounds[c+1]`` make chunk c, run in parallel and added into ``blocks[c]`` and
    ``ztv[c]``; or, ``grouped`` (each level's rows one run, no level in two chunks), written into
    ``blocks[0]`` and ``ztv[0]``, which need no zeros (adding to a page of calloc's zeros faults
    twice: on the read, then on the write). Rows are summed in runs of one level and each run
    added once: grouped rows (data sorted by the factor) cost one update per level. Compiled for
    p_z = QFIX by ``kernels.pick`` (the run's sums then stay in registers: twice as fast).
    """
    pz = QFIX if QFIX else Xz.shape[1]
    p = X.shape[1]
    for c in nb.prange(len(bounds) - 1):
        bout, vout = blocks[c % blocks.shape[0]], ztv[c % blocks.shape[0]]  # shared: blocks[0]
        bb = np.empty((pz, pz))
        vv = np.empty((pz, p + 1))
        r, stop = bounds[c], bounds[c + 1]
        while r < stop:
            lev = codes[r]
            bb[:] = 0.0
            vv[:] = 0.0
            while r < stop and codes[r] == lev:
                for i in range(pz):
                    v = Xz[r, i]
                    for j in range(pz):
                        bb[i, j] += v * Xz[r, j]
                    for s in range(p):
                        vv[i, s] += v * X[r, s]
                    vv[i, p] += v * y[r]
                r += 1
            for i in range(pz):
                for j in range(pz):
                    bout[lev, i, j] = bb[i, j] if grouped else bout[lev, i, j] + bb[i, j]
                for s in range(p + 1):
                    vout[lev * pz + i, s] = vv[i, s] if grouped else vout[lev * pz + i, s] + vv[i, s]
