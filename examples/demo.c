/* The allocator at work: the three domains, size classes, a multi-threaded
 * phase with cross-thread frees, memory given back, and the statistics. */
#include <obmem.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBLOCKS 200000

static void *blocks[NBLOCKS];

static void *worker(void *arg)
{
    /* Free the other half of the blocks: frees from a thread that did not
     * allocate them go back to the owning heap through its remote list. */
    size_t start = (size_t)arg;
    for (size_t i = start; i < NBLOCKS; i += 2) {
        free(blocks[i]);
        blocks[i] = NULL;
    }
    return NULL;
}

static void show(const char *when)
{
    obm_stats st;
    obm_get_stats(&st);
    printf("%-28s in use %10zu B   mapped %10zu B   arenas %4zu (peak %zu)   large %zu\n", when,
           st.bytes_in_use, st.bytes_mapped, st.arenas_in_use, st.arenas_peak, st.large_blocks);
}

int main(void)
{
    printf("obmem demo: pymalloc-style pools behind malloc and the obm_* domains\n\n");
    show("start");

    /* Size classes: 16-byte steps to 512, then 8 per power of two. */
    size_t sizes[] = {0, 1, 17, 100, 512, 513, 600, 1000, 5000, 100000, 131072, 200000};
    printf("\nrequest -> usable size\n");
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = malloc(sizes[i]);
        printf("  %7zu -> %7zu\n", sizes[i], malloc_usable_size(p));
        free(p);
    }

    /* The domains, as PyMem_RawMalloc / PyMem_Malloc / PyObject_Malloc. */
    char *raw = obm_raw_malloc(64), *mem = obm_mem_calloc(8, 8), *obj = obm_object_malloc(0);
    strcpy(raw, "raw domain");
    printf("\ndomains: raw=%p (%s) mem=%p (zeroed: %d) obj=%p (malloc(0) is unique)\n", (void *)raw,
           raw, (void *)mem, mem[63] == 0, (void *)obj);
    obm_raw_free(raw);
    obm_mem_free(mem);
    obm_object_free(obj);

    /* Many small blocks from one thread... */
    for (size_t i = 0; i < NBLOCKS; i++) {
        blocks[i] = malloc(16 + (i * 7919) % 480);
        memset(blocks[i], (int)i, 16);
    }
    show("\nafter 200000 mallocs");

    /* ...freed by two other threads. */
    pthread_t t[2];
    for (size_t k = 0; k < 2; k++)
        pthread_create(&t[k], NULL, worker, (void *)k);
    for (size_t k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    show("after cross-thread frees");

    /* Large blocks come from their own mapping; realloc moves pages, not bytes. */
    char *big = malloc(1 << 20);
    memset(big, 'x', 1 << 20);
    big = realloc(big, 64 << 20);
    printf("\nlarge block grown to 64 MiB with mremap: first byte '%c'\n", big[0]);
    show("with a 64 MiB block");
    free(big);
    show("all freed");

    printf("\n");
    fflush(stdout);
    obm_print_stats(1);
    return 0;
}
