/* finite.h — NaN and Inf in a forward's logits, and the weight that caused them (runtime/finite.c). */
#ifndef MOGE_FINITE_H
#define MOGE_FINITE_H

#include <stdbool.h>
#include <stdint.h>
#include "runtime/model.h"

/* True when every one of x[0..n) is finite. */
bool logits_finite(const float *x, int64_t n);

/* Scans every weight of m (vectors first, then matrices in model_for_each_matrix's order) for the
 * first NaN or Inf: true with "tensor NAME holds NaN at element K" in msg, else false with why
 * none was named (every weight is finite, or the scan could not run). Slow: for error paths. */
bool model_find_nonfinite(const moge_model *m, char *msg, size_t cap);

#endif
