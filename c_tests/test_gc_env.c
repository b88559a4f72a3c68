/* OBMEM_GC_THRESHOLD=t0,t1,t2 sets the thresholds when the collector is
 * first used; a bad value prints one line starting "obmem: " and keeps the
 * defaults (docs/API.md §5). Each case runs in a forked child, because the
 * variable is read once. */
#include "gc_test_util.h"
#include <sys/wait.h>
#include <unistd.h>

/* Runs a child with OBMEM_GC_THRESHOLD=value that reads the thresholds;
 * returns them and the child's stderr. */
static void run_case(const char *value, int th[3], char *err, size_t errsz) {
    int pipe_err[2], pipe_th[2];
    CHECK(pipe(pipe_err) == 0 && pipe(pipe_th) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(pipe_err[1], 2);
        setenv("OBMEM_GC_THRESHOLD", value, 1);
        int t[3];
        obm_gc_get_threshold(t);
        obm_gc_get_threshold(t); /* reading again must not warn again */
        if (write(pipe_th[1], t, sizeof t) != sizeof t)
            _exit(3);
        _exit(0);
    }
    close(pipe_err[1]);
    close(pipe_th[1]);
    read_all(pipe_err[0], err, errsz);
    CHECK_EQ(read(pipe_th[0], th, 3 * sizeof(int)), 3 * sizeof(int));
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(pipe_err[0]);
    close(pipe_th[0]);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void expect(const char *value, int t0, int t1, int t2, int warns) {
    int th[3];
    char err[4096];
    run_case(value, th, err, sizeof err);
    printf("[%s] ", value);
    CHECK_EQ(th[0], t0);
    CHECK_EQ(th[1], t1);
    CHECK_EQ(th[2], t2);
    if (warns) {
        CHECK_EQ(count_lines(err), 1);
        CHECK(strncmp(err, "obmem: ", 7) == 0);
        CHECK(strstr(err, "OBMEM_GC_THRESHOLD") != NULL);
    } else {
        CHECK_EQ(strlen(err), 0);
    }
}

static void test_env_threshold_good(void) {
    expect("5,3,2", 5, 3, 2, 0);
    expect("100", 100, 10, 10, 0);
    expect("0,1", 0, 1, 10, 0);
    expect("2147483647,0,0", 2147483647, 0, 0, 0);
}

static void test_env_threshold_bad(void) {
    expect("abc", 700, 10, 10, 1);
    expect("", 700, 10, 10, 1);
    expect("1,2,3,4", 700, 10, 10, 1);
    expect("-1,2,3", 700, 10, 10, 1);
    expect("5,,3", 700, 10, 10, 1);
    expect("99999999999", 700, 10, 10, 1);
    expect("2147483648", 700, 10, 10, 1);
    expect("7 ,1,1", 700, 10, 10, 1);
}

/* The value also drives automatic collection. */
static void test_env_threshold_used(void) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv("OBMEM_GC_THRESHOLD", "3", 1);
        Node *keep[4];
        for (int i = 0; i < 4; i++)
            keep[i] = node_new(i);
        obm_gc_gen_stats st[3];
        obm_gc_get_stats(st);
        _exit(st[0].collections == 1 && keep[3] ? 0 : 1);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void) {
    RUN(test_env_threshold_good);
    RUN(test_env_threshold_bad);
    RUN(test_env_threshold_used);
    printf("test_gc_env: all passed\n");
    return 0;
}
