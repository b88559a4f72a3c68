/*
 * fuzz/replay.c: runs fuzz_api.c's LLVMFuzzerTestOneInput on every file of
 * the directories (or files) given, without libFuzzer: `make fuzz-replay`
 * builds it with gcc against the release libobmem.so, as a user would,
 * once with fuzz_api.c and once with fuzz_threads.c.
 * A mismatch between obmem and the harness's model aborts with a message
 * naming the operation; this program then never reaches its summary.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Named in the summary when the target defines it (fuzz_threads.c). */
extern const char *const fuzz_target_name __attribute__((weak));

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return -1;
    }
    for (;;) {
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "%s: read error\n", path);
        free(buf);
        return -1;
    }
    if (getenv("OBMEM_FUZZ_TRACE"))
        fprintf(stderr, "== %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    LLVMFuzzerInitialize(&argc, &argv);
    long done = 0, failed = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) {
            perror(argv[a]);
            failed++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (replay_file(argv[a]) == 0)
                done++;
            else
                failed++;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) {
            perror(argv[a]);
            failed++;
            continue;
        }
        size_t cap = 256, n = 0;
        char **names = malloc(cap * sizeof *names);
        struct dirent *e;
        while (names && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            if (n == cap) {
                char **nn = realloc(names, cap * 2 * sizeof *names);
                if (!nn)
                    break;
                names = nn;
                cap *= 2;
            }
            size_t len = strlen(argv[a]) + strlen(e->d_name) + 2;
            names[n] = malloc(len);
            if (!names[n])
                break;
            snprintf(names[n], len, "%s/%s", argv[a], e->d_name);
            n++;
        }
        closedir(d);
        if (!names) {
            failed++;
            continue;
        }
        qsort(names, n, sizeof *names, cmp);
        for (size_t i = 0; i < n; i++) {
            struct stat fs;
            if (stat(names[i], &fs) == 0 && S_ISREG(fs.st_mode)) {
                if (replay_file(names[i]) == 0)
                    done++;
                else
                    failed++;
            }
            free(names[i]);
        }
        free(names);
    }
    const char *m = getenv("OBMEM_FUZZ_MODE");
    printf("fuzz-replay%s%s (%s): %ld passed, %ld failed\n", &fuzz_target_name ? " " : "",
           &fuzz_target_name ? fuzz_target_name : "", m ? m : "plain", done, failed);
    return failed ? 1 : 0;
}
