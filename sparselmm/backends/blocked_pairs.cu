/* The blocked backend's two passes over pairs of rows of L21, on a GPU (backends/cuda.py).

   L's first q1 columns (L11 and L21) are in CSC: column c's entries at positions lptr[c] to
   lptr[c+1], rows lidx, values lval, its rows >= q1 (L21's) last and sorted. L21 by rows: its
   entry x (x < nx) sits at position rpos[x] of column rcol[x], in row q1 + xrow[x], with the
   entries in the order of their rows. A pair of rows r <= s of a column of L21 lands in S's column
   r (column-major, order m). One warp takes an entry x (row r, position e, column c) and its lanes
   the positions f >= e of column c, which hold the rows s >= r: consecutive warps work on one
   column of S, each lane reads lidx and lval in step with its neighbours.

   Lanes share nothing but atomic additions and one warp sum, so the source also runs as C++, one
   thread after another (tests/test_cuda_source.py, with atomicAdd a plain addition and
   ADD_LANES and ATOMIC_ADD_LANES each lane's own addition). */

#define LANES 32

#ifdef __CUDACC__
__device__ __forceinline__ double warp_sum(double v)
{
    for (int offset = LANES / 2; offset > 0; offset >>= 1)
        v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}
/* *dst = the sum over the warp's lanes of v (every lane of the warp calls it); ATOMIC_ADD_LANES adds
   the sum to *dst, which other warps may add to too */
#define ADD_LANES(dst, v, lane) do { double s_ = warp_sum(v); if ((lane) == 0) *(dst) = s_; } while (0)
#define ATOMIC_ADD_LANES(dst, v, lane) do { double s_ = warp_sum(v); if ((lane) == 0) atomicAdd(dst, s_); } while (0)
#endif

/* S[s, r] -= L21[s, c] L21[r, c] for every column c and pair of its rows r <= s (S's lower
   triangle, already holding A22 + I). */
extern "C" __global__ void schur_pairs(const long long *lptr, const int *lidx, const double *lval,
                                       const int *rpos, const int *rcol, const int *xrow,
                                       long long nx, long long q1, long long m, double *S)
{
    long long thread = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long lane = thread % LANES;
    long long warps = (long long)gridDim.x * blockDim.x / LANES;
    for (long long x = thread / LANES; x < nx; x += warps) {
        long long e = rpos[x], end = lptr[rcol[x] + 1], column = (long long)xrow[x] * m - q1;
        double v = lval[e];
        for (long long f = e + lane; f < end; f += LANES)
            atomicAdd(S + (column + lidx[f]), -v * lval[f]);
    }
}

/* part[x] = w[c] L21[r, c] Σ_s Sinv[s, r] L21[s, c] (s over column c's rows, the off-diagonal
   pairs twice), so that Σ_x part[x] = Σ_c w[c] l_c' S⁻¹ l_c; Sinv's lower triangle is read.
   part must be zero (the C++ run adds each lane's share). */
extern "C" __global__ void gram_pairs(const long long *lptr, const int *lidx, const double *lval,
                                      const int *rpos, const int *rcol, const int *xrow,
                                      long long nx, long long q1, long long m, const double *Sinv,
                                      const double *w, double *part)
{
    long long thread = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long lane = thread % LANES;
    long long warps = (long long)gridDim.x * blockDim.x / LANES;
    for (long long x = thread / LANES; x < nx; x += warps) {
        long long e = rpos[x], end = lptr[rcol[x] + 1], column = (long long)xrow[x] * m - q1;
        double acc = 0.0;
        for (long long f = e + lane; f < end; f += LANES) {
            double z = Sinv[column + lidx[f]] * lval[f];
            acc += f == e ? z : 2.0 * z;
        }
        ADD_LANES(part + x, w[rcol[x]] * lval[e] * acc, lane);
    }
}

/* Y[f] = Σ_s Sinv[lidx[f] - q1, s] L21[s, c] for every position f of column c of L21 (the rows of
   each column c), i.e. Y = S⁻¹[R, R] l_c over the column's rows R: kernels.blocked_inverse's pass
   over the pairs, whose per-level rest runs on the CPU (backends/gpu.py). A pair r < s adds to
   both of its positions; Y must be zero on L21's positions. */
extern "C" __global__ void inverse_pairs(const long long *lptr, const int *lidx, const double *lval,
                                         const int *rpos, const int *rcol, const int *xrow,
                                         long long nx, long long q1, long long m, const double *Sinv,
                                         double *Y)
{
    long long thread = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long lane = thread % LANES;
    long long warps = (long long)gridDim.x * blockDim.x / LANES;
    for (long long x = thread / LANES; x < nx; x += warps) {
        long long e = rpos[x], end = lptr[rcol[x] + 1], column = (long long)xrow[x] * m - q1;
        double v = lval[e], acc = 0.0;
        for (long long f = e + lane; f < end; f += LANES) {
            double z = Sinv[column + lidx[f]];
            if (f == e) {
                acc += z * v;
            } else {
                atomicAdd(Y + f, z * v);
                acc += z * lval[f];
            }
        }
        ATOMIC_ADD_LANES(Y + e, acc, lane);
    }
}
