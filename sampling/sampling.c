/* sampling.c — RNG, argmax, the processed distribution and drawing from it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampling/sampling.h"

moge_sampler_params moge_sampler_default_params(void) {
    moge_sampler_params p = {
        .temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.0f,
        .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 42,
    };
    return p;
}

uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float rng_uniform(uint64_t *s) { return (float)(rng_next(s) >> 40) / 16777216.0f; }

int32_t sampling_argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void penalise(const float *logits, int32_t n, const moge_sampler_params *p, const int32_t *recent, int32_t n_recent, float *out);

/* Sort helper: indices by descending probability, ties by ascending index. */
static int cmp_desc(const void *a, const void *b, void *arg) {
    const float *sort_probs = arg;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (sort_probs[i] != sort_probs[j]) return sort_probs[i] > sort_probs[j] ? -1 : 1;
    return i < j ? -1 : 1;
}

void sampling_probs(const float *logits, int32_t n, const moge_sampler_params *p,
                    const int32_t *recent, int32_t n_recent, float *probs, int32_t *idx) {
    penalise(logits, n, p, recent, n_recent, probs);
    float maxl = probs[sampling_argmax(probs, n)];
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        probs[i] = expf((probs[i] - maxl) / p->temperature);
        sum += probs[i];
    }
    for (int32_t i = 0; i < n; i++) probs[i] = (float)(probs[i] / sum);
    int filter = (p->top_k > 0 && p->top_k < n) || p->top_p < 1.0f || p->min_p > 0.0f;
    if (!filter) return;
    for (int32_t i = 0; i < n; i++) idx[i] = i;
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_desc, probs);
    int32_t keep = (p->top_k > 0 && p->top_k < n) ? p->top_k : n;
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int32_t i = 0; i < keep; i++) {
            cum += probs[idx[i]];
            if (cum >= p->top_p) { keep = i + 1; break; }
        }
    }
    if (p->min_p > 0.0f) {
        float floor_p = p->min_p * probs[idx[0]];
        for (int32_t i = 1; i < keep; i++)
            if (probs[idx[i]] < floor_p) { keep = i; break; }
    }
    sum = 0;
    for (int32_t i = 0; i < keep; i++) sum += probs[idx[i]];
    for (int32_t i = keep; i < n; i++) probs[idx[i]] = 0.0f;
    for (int32_t i = 0; i < keep; i++) probs[idx[i]] = (float)(probs[idx[i]] / sum);
}

int32_t sampling_draw(const float *probs, int32_t n, float coin) {
    double cum = 0;
    int32_t last = 0;
    for (int32_t i = 0; i < n; i++) {
        if (probs[i] <= 0) continue;
        cum += probs[i];
        last = i;
        if (coin < cum) return i;
    }
    return last; /* rounding: coin beyond the summed mass */
}

/* Repetition penalty of sampling_probs, applied to a copy of the logits in out. */
static void penalise(const float *logits, int32_t n, const moge_sampler_params *p, const int32_t *recent, int32_t n_recent, float *out) {
    memcpy(out, logits, (size_t)n * sizeof(float));
    if (p->repeat_penalty == 1.0f || !recent) return;
    int32_t from = n_recent > p->repeat_last_n ? n_recent - p->repeat_last_n : 0;
    for (int32_t i = from; i < n_recent; i++) {
        int32_t t = recent[i];
        if (t < 0 || t >= n) continue;
        int seen = 0; /* penalise each token once */
        for (int32_t j = from; j < i; j++) if (recent[j] == t) { seen = 1; break; }
        if (!seen) out[t] = out[t] > 0 ? out[t] / p->repeat_penalty : out[t] * p->repeat_penalty;
    }
}

int32_t sampling_choose(const float *logits, int32_t n, const moge_sampler_params *p, const int32_t *recent,
                        int32_t n_recent, float *probs, int32_t *idx, uint64_t *rng) {
    if (p->temperature <= 0.0f) {
        if (p->repeat_penalty == 1.0f) return sampling_argmax(logits, n);
        penalise(logits, n, p, recent, n_recent, probs);
        return sampling_argmax(probs, n);
    }
    sampling_probs(logits, n, p, recent, n_recent, probs, idx);
    return sampling_draw(probs, n, rng_uniform(rng));
}

moge_rng moge_rng_seed(uint64_t seed) { return (moge_rng){.state = seed}; }

moge_status moge_sample(const float *logits, int32_t n_vocab, const moge_sampler_params *sp, const int32_t *recent,
                        int32_t n_recent, moge_rng *rng, int32_t *out) {
    if (!logits || !sp || !rng || !out || n_vocab < 1 || n_recent < 0 || (n_recent > 0 && !recent)) return MOGE_ERR_ARG;
    if (!isfinite(sp->temperature) || !isfinite(sp->top_p) || !isfinite(sp->min_p) || !isfinite(sp->repeat_penalty) ||
        sp->repeat_penalty <= 0.0f)
        return MOGE_ERR_ARG;
    if (sp->temperature <= 0.0f && (sp->repeat_penalty == 1.0f || !recent)) { /* no scratch needed */
        *out = sampling_argmax(logits, n_vocab);
        return MOGE_OK;
    }
    float *probs = malloc((size_t)n_vocab * (sizeof(float) + sizeof(int32_t)));
    if (!probs) return MOGE_ERR_NOMEM;
    *out = sampling_choose(logits, n_vocab, sp, recent, n_recent, probs, (int32_t *)(probs + n_vocab), &rng->state);
    free(probs);
    return MOGE_OK;
}
