/* Out of memory, tested rather than assumed: under a low RLIMIT_AS, and
 * with every mapping failing (OBMEM_FAIL_MMAP), allocation returns NULL
 * with ENOMEM, nothing crashes, and once memory is freed allocation
 * works again. Each scenario runs in a forked child. */
#include <obmem.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            _exit(1);                                                             \
        }                                                                         \
    } while (0)

enum { MAXB = 1 << 20 };
static void *blocks[MAXB];

/* Allocates `size`-byte blocks until malloc fails; returns how many. */
static size_t exhaust(size_t size)
{
    size_t n = 0;
    while (n < MAXB) {
        errno = 0;
        void *p = malloc(size);
        if (!p) {
            CHECK(errno == ENOMEM);
            break;
        }
        memset(p, 1, size < 64 ? size : 64);
        blocks[n++] = p;
    }
    return n;
}

static void rlimit_child(void)
{
    struct rlimit rl = {256u << 20, 256u << 20};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    for (int round = 0; round < 3; round++) {
        size_t sizes[] = {1000, 5000, 300000};
        size_t size = sizes[round];
        size_t n = exhaust(size);
        CHECK(n > 10 && n < MAXB);
        errno = 0;
        CHECK(calloc(1, size) == NULL && errno == ENOMEM);
        for (size_t i = 0; i < n; i++)
            free(blocks[i]);
        /* Memory came back: the same amount fits again. */
        void *p = malloc(size);
        CHECK(p != NULL);
        free(p);
    }
    _exit(0);
}

static void failmap_child(void)
{
    /* OBMEM_FAIL_MMAP=N was set by the parent: after N mappings every
     * mapping fails. Exhaust what is mapped, then free and reuse it. */
    size_t n = exhaust(200);
    CHECK(n > 0);
    errno = 0;
    CHECK(malloc(1 << 20) == NULL && errno == ENOMEM); /* large blocks need a mapping */
    void *p = NULL;
    CHECK(posix_memalign(&p, 1 << 20, 100) == ENOMEM && p == NULL);
    for (size_t i = 0; i < n; i++)
        free(blocks[i]);
    for (size_t i = 0; i < n; i++)
        CHECK((blocks[i] = malloc(200)) != NULL); /* the freed arenas serve again */
    _exit(0);
}

static int run(const char *name, void (*child)(void), const char *env)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (env) {
            /* Re-exec so the library reads the variable at start-up. */
            char *argv[] = {"/proc/self/exe", (char *)name, NULL};
            char *envp[] = {(char *)env, NULL};
            execve("/proc/self/exe", argv, envp);
            _exit(127);
        }
        child();
    }
    int status;
    waitpid(pid, &status, 0);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    printf("%s %s (status %#x)\n", ok ? "ok  " : "FAIL", name, status);
    return !ok;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "failmap") == 0)
        failmap_child();
    int bad = 0;
    bad += run("rlimit", rlimit_child, NULL);
    bad += run("failmap", failmap_child, "OBMEM_FAIL_MMAP=20");
    return bad != 0;
}
