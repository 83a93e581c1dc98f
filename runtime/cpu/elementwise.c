/*
 * elementwise.c — the cpu backend's row-wise ops (backend_ops.rmsnorm, rope, swiglu): each value
 * depends on its own row only, so they are batch-invariant as they stand. Built per kernel
 * variant (kernels.h).
 */
#include "runtime/cpu/kernels.h"

/* y = x / sqrt(mean(x²) + eps) * w per row. With AVX2 the sum of squares runs in four 8-lane
 * partial sums (one scalar chain of 1024 dependent adds took about 3 µs a row: 1 ms of a 16-row
 * pass of the 1.6 GB MoGE stand-in's 36 norms), then the scalar tail, in a fixed order: a row's
 * result depends on that row alone. */
void cpu_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (int64_t)r * dim;
        float *yr = y + (int64_t)r * dim;
        float ss = 0.0f;
        int i = 0;
#ifdef MOGE_AVX2
        __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (; i + 32 <= dim; i += 32)
            UNROLL for (int j = 0; j < 4; j++) {
                __m256 v = _mm256_loadu_ps(xr + i + 8 * j);
                s[j] = _mm256_fmadd_ps(v, v, s[j]);
            }
        for (; i + 8 <= dim; i += 8) {
            __m256 v = _mm256_loadu_ps(xr + i);
            s[0] = _mm256_fmadd_ps(v, v, s[0]);
        }
        ss = hsum(_mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3])));
#endif
        for (; i < dim; i++) ss += xr[i] * xr[i];
        float scale = 1.0f / sqrtf(ss / (float)dim + eps);
        i = 0;
#ifdef MOGE_AVX2
        __m256 sc = _mm256_set1_ps(scale); /* y may be x (in place): each element is read before it is written */
        for (; i + 8 <= dim; i += 8) _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), sc), _mm256_loadu_ps(w + i)));
#endif
        for (; i < dim; i++) yr[i] = xr[i] * scale * w[i];
    }
}

/* Rotates each head's pairs (j, j + half) of every row by pos[r] * inv_freq[j]. A row's cosines
 * and sines are computed once for all its heads (512 pairs at a time); with AVX2 eight pairs of a
 * head turn at once (the same multiplies and subtractions per element as the scalar loop). */
void cpu_rope(float *x, const int32_t *pos, int n, int n_heads, int head_dim, const float *inv_freq) {
    int half = head_dim / 2;
    float cs[2][512];
    for (int r = 0; r < n; r++)
        for (int j0 = 0; j0 < half; j0 += 512) {
            int j1 = half - j0 < 512 ? half : j0 + 512;
            for (int j = j0; j < j1; j++) {
                float angle = (float)pos[r] * inv_freq[j];
                cs[0][j - j0] = cosf(angle), cs[1][j - j0] = sinf(angle);
            }
            for (int h = 0; h < n_heads; h++) {
                float *v = x + ((int64_t)r * n_heads + h) * head_dim;
                int j = j0;
#ifdef MOGE_AVX2
                for (; j + 8 <= j1; j += 8) {
                    __m256 a = _mm256_loadu_ps(v + j), b = _mm256_loadu_ps(v + j + half), cv = _mm256_loadu_ps(cs[0] + j - j0),
                           sv = _mm256_loadu_ps(cs[1] + j - j0);
                    _mm256_storeu_ps(v + j, _mm256_sub_ps(_mm256_mul_ps(a, cv), _mm256_mul_ps(b, sv)));
                    _mm256_storeu_ps(v + j + half, _mm256_add_ps(_mm256_mul_ps(b, cv), _mm256_mul_ps(a, sv)));
                }
#endif
                for (; j < j1; j++) {
                    float a = v[j], b = v[j + half];
                    v[j] = a * cs[0][j - j0] - b * cs[1][j - j0];
                    v[j + half] = b * cs[0][j - j0] + a * cs[1][j - j0];
                }
            }
        }
}

#ifdef MOGE_AVX2
static inline __m256 silu_mul8(__m256 x, __m256 u) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
    return _mm256_mul_ps(_mm256_mul_ps(x, sig), u);
}
#endif

/* g = silu(g) * u = g / (1 + exp(-g)) * u, element-wise. Every element goes through the same
 * vector code (the tail through a padded copy), so a value's result does not depend on where it
 * sits in the batch: batch-invariant. */
void cpu_swiglu(float *g, const float *u, int64_t n) {
#ifdef MOGE_AVX2
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(g + i, silu_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) {
        float gt[8] = {0}, ut[8] = {0};
        memcpy(gt, g + i, (size_t)(n - i) * sizeof(float));
        memcpy(ut, u + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(gt, silu_mul8(_mm256_loadu_ps(gt), _mm256_loadu_ps(ut)));
        memcpy(g + i, gt, (size_t)(n - i) * sizeof(float));
    }
#else
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
#endif
}
