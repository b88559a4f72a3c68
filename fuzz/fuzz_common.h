/* What both fuzz harnesses (fuzz_api.c, fuzz_threads.c) share: messages
 * written without going through stdio's buffers, the checks, the input
 * reader and the byte checks. Each harness defines `fail` (what a mismatch
 * reports) and `trace_on`. */
#ifndef OBMEM_FUZZ_COMMON_H
#define OBMEM_FUZZ_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int trace_on;
static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static inline void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void say(const char *fmt, ...) {
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
}

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (!(cond))                                                              \
            fail(__VA_ARGS__);                                                    \
    } while (0)

#define TRACE(...)                                                                \
    do {                                                                          \
        if (trace_on)                                                             \
            say(__VA_ARGS__);                                                     \
    } while (0)

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* The fuzzer's input, read byte by byte; zeros past its end. */
typedef struct {
    const uint8_t *d;
    size_t n, i;
} In;

static inline unsigned u8(In *in) { return in->i < in->n ? in->d[in->i++] : 0; }
static inline unsigned u16(In *in) {
    unsigned a = u8(in);
    return a | u8(in) << 8;
}
static inline uint32_t u32(In *in) {
    uint32_t a = u16(in);
    return a | (uint32_t)u16(in) << 16;
}
static inline uint64_t u64(In *in) {
    uint64_t a = u32(in);
    return a | (uint64_t)u32(in) << 32;
}

/* True if p[from, to) are all v (thread-safe: no shared buffer). */
static inline int all_bytes(const unsigned char *p, size_t from, size_t to, unsigned char v) {
    uint64_t w = 0x0101010101010101ull * v;
    size_t i = from;
    while (i < to && ((uintptr_t)(p + i) & 7))
        if (p[i++] != v)
            return 0;
    for (; i + 32 <= to; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, p + i, 8);
        memcpy(&b, p + i + 8, 8);
        memcpy(&c, p + i + 16, 8);
        memcpy(&d, p + i + 24, 8);
        if ((a ^ w) | (b ^ w) | (c ^ w) | (d ^ w))
            return 0;
    }
    for (; i < to; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

/* Fails, naming the first byte of p[from, to) that is not v. */
static inline void bytes_check(const unsigned char *p, size_t from, size_t to, unsigned char v,
                               const char *what) {
    if (!all_bytes(p, from, to, v))
        for (size_t i = from; i < to; i++)
            CHECK(p[i] == v, "%s %p: byte %zu is 0x%02x, expected 0x%02x", what, (void *)p, i,
                  p[i], v);
}

#endif
