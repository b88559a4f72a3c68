/* fork while another thread holds obm_lock: the child, where that thread
 * does not exist, can still take the lock and collect (CPython re-creates
 * its GIL in the child the same way). A deadlock shows as SIGALRM. */
#include <obmem.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int locked, release;

static void *holder(void *arg)
{
    (void)arg;
    obm_lock();
    pthread_mutex_lock(&m);
    locked = 1;
    pthread_cond_broadcast(&c);
    while (!release)
        pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);
    obm_unlock();
    return NULL;
}

static const obm_type plain = {.name = "plain", .size = sizeof(obm_object)};

int main(void)
{
    pthread_t t;
    pthread_create(&t, NULL, holder, NULL);
    pthread_mutex_lock(&m);
    while (!locked)
        pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);

    pid_t pid = fork();
    if (pid == 0) {
        alarm(10);
        obm_lock();
        obm_object *o = obm_new(&plain);
        obm_decref(o);
        obm_gc_collect(2);
        obm_unlock();
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    pthread_mutex_lock(&m);
    release = 1;
    pthread_cond_broadcast(&c);
    pthread_mutex_unlock(&m);
    pthread_join(t, NULL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s:%d: child did not exit cleanly (status %#x%s)\n", __FILE__, __LINE__,
                status, WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? ", deadlocked" : "");
        return 1;
    }
    printf("child took obm_lock held by a thread of the parent: ok\n");
    return 0;
}
