/* A program built without obmem that uses glibc's malloc introspection:
 * mallopt, mallinfo2, mallinfo and malloc_stats. Its stdout is the same
 * under glibc and under LD_PRELOAD=libobmem.so; on stderr, when obmem is
 * preloaded (obm_get_stats is found), it says whether mallinfo2 gives
 * obmem's figures. obmem.h is included for the obm_stats layout only. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include <obmem.h>

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

int main(void)
{
    printf("mallopt M_MXFAST 64: %d\n", mallopt(M_MXFAST, 64));
    printf("mallopt M_MXFAST 161: %d\n", mallopt(M_MXFAST, 161));
    printf("mallopt M_MMAP_THRESHOLD 1 MiB: %d\n", mallopt(M_MMAP_THRESHOLD, 1 << 20));
    printf("mallopt M_MMAP_THRESHOLD 64 MiB: %d\n", mallopt(M_MMAP_THRESHOLD, 64 << 20));
    printf("mallopt M_TRIM_THRESHOLD: %d\n", mallopt(M_TRIM_THRESHOLD, 1 << 20));

    struct mallinfo2 before = mallinfo2();
    enum { N = 1000 };
    static void *blocks[N];
    for (int i = 0; i < N; i++)
        blocks[i] = malloc(600);
    struct mallinfo2 during = mallinfo2();
    struct mallinfo old = mallinfo();
    printf("mallinfo2 uordblks grew by >= 600000: %s\n",
           during.uordblks - before.uordblks >= 600000 ? "yes" : "no");
    printf("mallinfo agrees: %s\n", (size_t)old.uordblks == during.uordblks ? "yes" : "no");

    void (*get_stats)(obm_stats *) = (void (*)(obm_stats *))dlsym(RTLD_DEFAULT, "obm_get_stats");
    if (get_stats) {
        obm_stats st;
        get_stats(&st);
        fprintf(stderr, "mallinfo2 is obmem's: %s\n",
                during.uordblks == st.bytes_in_use - st.large_bytes ? "yes" : "no");
    }
    malloc_stats();
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    return 0;
}
