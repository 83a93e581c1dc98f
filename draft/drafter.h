/* drafter.h — the drafter handle: an interface plus its state (see moge_drafter_iface). */
#ifndef MOGE_DRAFTER_H
#define MOGE_DRAFTER_H

#include "moge.h"

struct moge_drafter {
    moge_drafter_iface iface;
    void *self;
};

#endif
