/*
 * allocinfo: run with an allocator preloaded, prints which library malloc
 * resolved to and, for mimalloc, the version of the mimalloc that is
 * running (mi_version(): 209 for 2.0.9, 30302 for 3.3.2; 0 if there is no
 * mimalloc in the process).  Used by benches/allocators.sh for the header.
 */
#include "bench_common.h"

int main(void)
{
    int (*mi_version)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "mi_version");
    void *p = malloc(100);
    free(p);
    printf("malloc_from=%s mi_version=%d\n", malloc_from(), mi_version ? mi_version() : 0);
    return 0;
}
