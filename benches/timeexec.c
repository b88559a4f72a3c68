/*
 * timeexec: run a command and report its wall time and peak RSS.
 *
 *   timeexec [-e NAME=VALUE]... -- command [args...]
 *
 * The -e variables are set only in the child (after fork), so an LD_PRELOAD
 * given with -e applies to the measured command and not to timeexec itself.
 * The command's stdout/stderr are passed through; after it exits, timeexec
 * prints on stdout:
 *
 *   RESULT bench=exec wall_s=<seconds> maxrss_kib=<child peak RSS> status=<exit code>
 *
 * and exits with the child's status (128+signal if it was killed).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    int i = 1;
    char *envs[64];
    int nenv = 0;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "-e") == 0 && i + 1 < argc && strchr(argv[i + 1], '=') && nenv < 64) {
            envs[nenv++] = argv[++i];
            continue;
        }
        fprintf(stderr, "usage: timeexec [-e NAME=VALUE]... -- command [args...]\n");
        return 64;
    }
    if (i >= argc) {
        fprintf(stderr, "timeexec: no command\n");
        return 64;
    }
    fflush(stdout);

    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid < 0) {
        perror("timeexec: fork");
        return 1;
    }
    if (pid == 0) {
        for (int j = 0; j < nenv; j++)
            putenv(envs[j]);
        execvp(argv[i], &argv[i]);
        perror("timeexec: exec");
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("timeexec: wait4");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double wall = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("RESULT bench=exec wall_s=%.4f maxrss_kib=%ld status=%d\n", wall, ru.ru_maxrss, code);
    return code;
}
