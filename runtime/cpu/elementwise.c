/*
 * elementwise.c — the cpu backend's row-wise ops (backend_ops.rmsnorm, rope, swiglu): each value
 * depends on its own row only, so they are batch-invariant as they stand. Built per kernel
 * variant (kernels.h).
 */
#include "runtime/cpu/kernels.h"

void cpu_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (int64_t)r * dim;
        float *yr = y + (int64_t)r * dim;
        float ss = 0.0f;
        for (int i = 0; i < dim; i++) ss += xr[i] * xr[i];
        float scale = 1.0f / sqrtf(ss / (float)dim + eps);
        for (int i = 0; i < dim; i++) yr[i] = xr[i] * scale * w[i];
    }
}

void cpu_rope(float *x, const int32_t *pos, int n, int n_heads, int head_dim, const float *inv_freq) {
    int half = head_dim / 2;
    for (int r = 0; r < n; r++)
        for (int j = 0; j < half; j++) {
            float angle = (float)pos[r] * inv_freq[j], c = cosf(angle), s = sinf(angle);
            for (int h = 0; h < n_heads; h++) {
                float *v = x + ((int64_t)r * n_heads + h) * head_dim;
                float a = v[j], b = v[j + half];
                v[j] = a * c - b * s;
                v[j + half] = b * c + a * s;
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
