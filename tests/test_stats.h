/*
 * test_stats.h — two-sample chi-square homogeneity, for the tests that check that speculative
 * sampling is distributed as target-only sampling (test_speculative, test_batch).
 */
#ifndef MOGE_TEST_STATS_H
#define MOGE_TEST_STATS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Chi-square statistic of two samples over categories (ids in [0, n_cat)), merging categories
 * with fewer than 10 observations in total into one. Returns the statistic and degrees of freedom. */
static inline double chi2_two_sample(const int32_t *a, const int32_t *b, int n, int n_cat, int *dof) {
    int *ca = calloc((size_t)n_cat, sizeof(int)), *cb = calloc((size_t)n_cat, sizeof(int));
    for (int i = 0; i < n; i++) { ca[a[i]]++; cb[b[i]]++; }
    double chi = 0;
    int cats = 0, ra = 0, rb = 0;
    for (int k = 0; k < n_cat; k++) {
        if (ca[k] + cb[k] < 10) { ra += ca[k]; rb += cb[k]; continue; }
        double e = (ca[k] + cb[k]) / 2.0;
        chi += (ca[k] - e) * (ca[k] - e) / e + (cb[k] - e) * (cb[k] - e) / e;
        cats++;
    }
    if (ra + rb > 0) {
        double e = (ra + rb) / 2.0;
        chi += (ra - e) * (ra - e) / e + (rb - e) * (rb - e) / e;
        cats++;
    }
    free(ca);
    free(cb);
    *dof = cats > 1 ? cats - 1 : 1;
    return chi;
}

/* Upper critical value of chi-square with k degrees of freedom at p = 1e-4 (Wilson–Hilferty). */
static inline double chi2_critical(int k) {
    double z = 3.719; /* standard normal quantile at 1 - 1e-4 */
    double h = 2.0 / (9.0 * k);
    return k * pow(1 - h + z * sqrt(h), 3);
}

#endif
