/* bigalloc.h — memory for the weights a model holds (packed panels, quantized blocks). */
#ifndef MOGE_BIGALLOC_H
#define MOGE_BIGALLOC_H

#include <stddef.h>

/* bytes of memory aligned to 64 bytes, released with free(); NULL when out of memory. A buffer
 * of 2 MiB or more is aligned to 2 MiB and asks the kernel for transparent huge pages
 * (MADV_HUGEPAGE: Debian's default THP mode, "madvise", gives them only when asked) before it is
 * first touched. A decode streams its whole weights once per token; on 4 KiB pages that is a TLB
 * miss and a page walk every 4 KiB of the stream. */
void *big_alloc(size_t bytes);

#endif
