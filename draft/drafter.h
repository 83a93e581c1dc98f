/* drafter.h — the drafter handle: an interface plus its state (see moge_drafter_iface). */
#ifndef MOGE_DRAFTER_H
#define MOGE_DRAFTER_H

#include "moge.h"

struct moge_drafter {
    moge_drafter_iface iface;
    void *self;
};

/* The sequences d serves: iface.n_seq for a drafter with every per-sequence method, else 1. */
static inline int32_t drafter_n_seq(const moge_drafter *d) {
    const moge_drafter_iface *f = &d->iface;
    return f->n_seq && f->propose_seqs && f->accept_seq && f->reset_seq ? f->n_seq(d->self) : 1;
}

#endif
