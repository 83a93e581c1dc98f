/* bigalloc.c — see bigalloc.h. */
#include <stdlib.h>
#include <sys/mman.h>

#include "base/bigalloc.h"

#define HUGE_PAGE ((size_t)2 << 20)

void *big_alloc(size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes < HUGE_PAGE) return aligned_alloc(64, (bytes + 63) / 64 * 64);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, (bytes + 4095) / 4096 * 4096, MADV_HUGEPAGE); /* advice: failure only costs speed */
#endif
    return p;
}
