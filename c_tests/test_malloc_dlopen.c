/* Start-up and dlopen: a constructor of the program allocates before main,
 * and a library loaded with dlopen allocates from its constructor, keeps the
 * memory, and frees it from its destructor at dlclose. The library is built
 * by this test with gcc, as a user's plugin would be. */
#define _GNU_SOURCE
#include <obmem.h>
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *from_ctor;

__attribute__((constructor)) static void early(void)
{
    from_ctor = malloc(600);
    if (from_ctor)
        strcpy(from_ctor, "allocated before main");
}

static const char plugin_src[] =
    "#include <stdlib.h>\n#include <string.h>\n"
    "static char *kept[1000];\n"
    "__attribute__((constructor)) static void init(void) {\n"
    "  for (int i = 0; i < 1000; i++) { kept[i] = malloc(16 + i); memset(kept[i], i & 0xff, 16 + i); }\n}\n"
    "__attribute__((destructor)) static void fini(void) {\n"
    "  for (int i = 0; i < 1000; i++) free(kept[i]);\n}\n"
    "int plugin_check(void) {\n"
    "  for (int i = 0; i < 1000; i++) for (int j = 0; j < 16 + i; j++)\n"
    "    if ((unsigned char)kept[i][j] != (i & 0xff)) return 0;\n"
    "  return 1;\n}\n";

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            return 1;                                                             \
        }                                                                         \
    } while (0)

int main(void)
{
    CHECK(from_ctor && strcmp(from_ctor, "allocated before main") == 0);
    CHECK(malloc_usable_size(from_ctor) == 640 && obm_usable_size(from_ctor) == 640);
    free(from_ctor);

    char dir[] = "/tmp/obmem_dlopen_XXXXXX";
    CHECK(mkdtemp(dir));
    char src[256], so[256], cmd[700];
    snprintf(src, sizeof src, "%s/plugin.c", dir);
    snprintf(so, sizeof so, "%s/plugin.so", dir);
    FILE *f = fopen(src, "w");
    CHECK(f);
    fputs(plugin_src, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "gcc -shared -fPIC -O1 -o %s %s", so, src);
    CHECK(system(cmd) == 0);

    for (int round = 0; round < 20; round++) {
        obm_stats before, loaded, after;
        obm_get_stats(&before);
        void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
        CHECK(h);
        int (*check)(void) = (int (*)(void))dlsym(h, "plugin_check");
        CHECK(check && check());
        obm_get_stats(&loaded);
        CHECK(loaded.bytes_in_use >= before.bytes_in_use + 1000 * 16);
        CHECK(dlclose(h) == 0);
        obm_get_stats(&after);
        /* The destructor freed what the constructor allocated (dlopen's own
         * bookkeeping may keep a little). */
        CHECK(after.bytes_in_use + 1000 * 16 <= loaded.bytes_in_use);
    }
    unlink(src);
    unlink(so);
    rmdir(dir);
    printf("constructor malloc before main, dlopen/dlclose x20 with allocating ctor/dtor: ok\n");
    return 0;
}
