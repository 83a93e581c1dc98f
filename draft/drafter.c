/* drafter.c — drafter handles and default draft parameters. */
#include <stdlib.h>

#include "draft/drafter.h"

moge_draft_params moge_draft_default_params(void) {
    moge_draft_params p = {.draft_max = 6, .tree_nodes = 24, .branch = 4, .shape = NULL, .n_shape = 0,
                           .min_path_prob = 0.01f, .sampled = false};
    return p;
}

moge_status moge_drafter_new_custom(const moge_drafter_iface *iface, void *self, moge_drafter **out) {
    if (!out) return MOGE_ERR_ARG;
    *out = NULL;
    if (!iface || !iface->propose) return MOGE_ERR_ARG;
    moge_drafter *d = malloc(sizeof *d);
    if (!d) return MOGE_ERR_NOMEM;
    d->iface = *iface;
    d->self = self;
    *out = d;
    return MOGE_OK;
}

void moge_drafter_free(moge_drafter *d) {
    if (!d) return;
    if (d->iface.free) d->iface.free(d->self);
    free(d);
}
