/* Double frees that cross threads: freed by another thread then by the
 * owner, freed by the owner then by another thread, and freed twice by
 * another thread; and realloc (which frees) of a block another thread
 * freed, by the owner and by a third thread. Each must abort with an
 * `obmem: ` report of a double free naming the address, never corrupt the
 * free lists silently. Run in forked children. */
#include <obmem.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *victim;

static void *free_it(void *arg)
{
    (void)arg;
    free(victim);
    return NULL;
}

static void free_in_thread(void)
{
    pthread_t t;
    pthread_create(&t, NULL, free_it, NULL);
    pthread_join(t, NULL);
}

/* realloc to the same size: a size that would keep a live block in place. */
static void *realloc_it(void *arg)
{
    (void)arg;
    void *volatile q = realloc(victim, 100);
    (void)q;
    return NULL;
}

static void realloc_in_thread(void)
{
    pthread_t t;
    pthread_create(&t, NULL, realloc_it, NULL);
    pthread_join(t, NULL);
}

/* Returns 0 if the child died of SIGABRT with the right report. */
static int expect_abort(const char *name, int scenario)
{
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        /* Neighbours, so the pool is neither empty nor released. */
        void *keep[8];
        for (int i = 0; i < 8; i++)
            keep[i] = malloc(100);
        victim = malloc(100);
        fprintf(stderr, "victim %p\n", victim);
        switch (scenario) {
        case 0: free_in_thread(); free(victim); break;       /* remote, then owner */
        case 1: free(victim); free_in_thread(); break;       /* owner, then remote */
        case 2: free_in_thread(); free_in_thread(); break;   /* remote twice */
        case 3: free_in_thread(); realloc_it(NULL); break;   /* remote, then the owner's realloc */
        case 4: free(victim); realloc_in_thread(); break;    /* owner, then another's realloc */
        }
        for (int i = 0; i < 8; i++)
            free(keep[i]);
        _exit(0);
    }
    close(fds[1]);
    char buf[4096] = {0};
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    char addr[64] = "";
    sscanf(buf, "victim %63s", addr);
    int ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(buf, "obmem: ") &&
             strstr(buf, "free") && strstr(buf, "double free") && addr[0] && strstr(strstr(buf, "obmem: "), addr);
    printf("%s %s\n", ok ? "ok  " : "FAIL", name);
    if (!ok)
        fprintf(stderr, "%s: status %#x, stderr:\n%s\n", name, status, buf);
    return !ok;
}

int main(void)
{
    int bad = 0;
    bad += expect_abort("freed by another thread, then by the owner", 0);
    bad += expect_abort("freed by the owner, then by another thread", 1);
    bad += expect_abort("freed twice by another thread", 2);
    bad += expect_abort("freed by another thread, then realloc by the owner", 3);
    bad += expect_abort("freed by the owner, then realloc by another thread", 4);
    return bad != 0;
}
