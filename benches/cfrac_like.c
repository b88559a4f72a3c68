/*
 * cfrac_like: single-threaded, many small short-lived blocks, in the shape
 * of cfrac (the continued-fraction factoring program of the malloc
 * benchmark suites): big-number arithmetic where every operation mallocs its
 * result and the operands are freed as soon as they are dead.
 *
 * The program expands the continued fraction of sqrt(N) for a random N of
 * `limbs` 32-bit limbs (as cfrac does to find relations h^2 = +-Q mod N):
 *   m' = d a - m,  d' = d_prev + a (m - m'),  a' = (a0 + m') / d',
 *   h' = a h + h_prev  (mod N),
 * and trial-divides every Q = d' by a factor base of the first `fb` primes,
 * one division (one new quotient) per prime tried, as cfrac's pdivmod does.
 * A Q whose cofactor after trial division fits in one limb is kept as a
 * relation (h, cofactor, exponents): these few blocks live to the end,
 * where every relation is verified (h^2 mod N == +-Q), which checks the
 * arithmetic and so the memory it ran in.
 *
 * Numbers are blocks of 8 + 4 x limbs bytes (a header with the limb count
 * and a check word written when the number is made and checked when it is
 * freed), so the sizes are a handful of small classes: 8-40 B with the
 * default 4 limbs (relations are ~90 B).  One op = one malloc + its free;
 * ns_per_op = wall time / mallocs.  The checksum
 * hashes the partial quotients and the relations, so it depends only on
 * the seed and the parameters.
 */
#include "bench_common.h"

#define MAGIC 0x5eedf00du

typedef struct {
    uint32_t n;   /* limbs in use, no leading zero limb; 0 = zero */
    uint32_t chk; /* n ^ MAGIC, checked on free */
    uint32_t d[];
} bn;

static uint64_t nallocs, nfrees, errors;

static bn *bn_new(uint32_t cap)
{
    size_t sz = sizeof(bn) + (size_t)cap * 4;
    bn *x = malloc(sz);
    if (!x)
        oom(sz);
    nallocs++;
    x->n = cap;
    return x;
}

static bn *bn_fix(bn *x) /* normalise and seal */
{
    while (x->n && !x->d[x->n - 1])
        x->n--;
    x->chk = x->n ^ MAGIC;
    return x;
}

static void bn_free(bn *x)
{
    if (x->chk != (x->n ^ MAGIC))
        errors++;
    free(x);
    nfrees++;
}

static bn *bn_u64(uint64_t v)
{
    bn *x = bn_new(2);
    x->d[0] = (uint32_t)v, x->d[1] = (uint32_t)(v >> 32);
    return bn_fix(x);
}

static bn *bn_copy(const bn *a)
{
    bn *x = bn_new(a->n);
    memcpy(x->d, a->d, (size_t)a->n * 4);
    return bn_fix(x);
}

static int bn_cmp(const bn *a, const bn *b)
{
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    for (uint32_t i = a->n; i-- > 0;)
        if (a->d[i] != b->d[i])
            return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

static bn *bn_add(const bn *a, const bn *b)
{
    if (a->n < b->n) {
        const bn *t = a;
        a = b, b = t;
    }
    bn *x = bn_new(a->n + 1);
    uint64_t c = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        c += (uint64_t)a->d[i] + (i < b->n ? b->d[i] : 0);
        x->d[i] = (uint32_t)c;
        c >>= 32;
    }
    x->d[a->n] = (uint32_t)c;
    return bn_fix(x);
}

/* a - b in place into a (a >= b) */
static void sub_in(uint32_t *a, uint32_t an, const bn *b)
{
    int64_t c = 0;
    for (uint32_t i = 0; i < an; i++) {
        c += (int64_t)a[i] - (i < b->n ? b->d[i] : 0);
        a[i] = (uint32_t)c;
        c >>= 32;
    }
}

static bn *bn_sub(const bn *a, const bn *b) /* a >= b */
{
    bn *x = bn_copy(a);
    sub_in(x->d, x->n, b);
    return bn_fix(x);
}

static bn *bn_mul(const bn *a, const bn *b)
{
    bn *x = bn_new(a->n + b->n);
    memset(x->d, 0, (size_t)x->n * 4);
    for (uint32_t i = 0; i < a->n; i++) {
        uint64_t c = 0;
        for (uint32_t j = 0; j < b->n; j++) {
            c += (uint64_t)a->d[i] * b->d[j] + x->d[i + j];
            x->d[i + j] = (uint32_t)c;
            c >>= 32;
        }
        x->d[i + b->n] = (uint32_t)c;
    }
    return bn_fix(x);
}

static bn *bn_mul_small(const bn *a, uint32_t m)
{
    bn *x = bn_new(a->n + 1);
    uint64_t c = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        c += (uint64_t)a->d[i] * m;
        x->d[i] = (uint32_t)c;
        c >>= 32;
    }
    x->d[a->n] = (uint32_t)c;
    return bn_fix(x);
}

static bn *bn_divmod_small(const bn *a, uint32_t m, uint32_t *rem)
{
    bn *q = bn_new(a->n);
    uint64_t r = 0;
    for (uint32_t i = a->n; i-- > 0;) {
        r = (r << 32) | a->d[i];
        q->d[i] = (uint32_t)(r / m);
        r %= m;
    }
    *rem = (uint32_t)r;
    return bn_fix(q);
}

static unsigned bitlen(const bn *a)
{
    return a->n ? 32 * (a->n - 1) + 32 - (unsigned)__builtin_clz(a->d[a->n - 1]) : 0;
}

/* q = a / b, *r = a % b (both new); b != 0.  A small quotient (the usual
 * case here) by repeated subtraction, else bit by bit. */
static bn *bn_divmod(const bn *a, const bn *b, bn **r)
{
    unsigned la = bitlen(a), lb = bitlen(b);
    if (la <= lb + 4) {
        bn *x = bn_copy(a);
        uint64_t q = 0;
        while (bn_cmp(x, b) >= 0) {
            sub_in(x->d, x->n, b);
            bn_fix(x);
            q++;
        }
        *r = x;
        return bn_u64(q);
    }
    bn *q = bn_new(a->n), *x = bn_new(b->n + 1);
    memset(q->d, 0, (size_t)q->n * 4);
    x->n = 0;
    for (unsigned i = la; i-- > 0;) {
        /* x = 2x + bit i of a */
        uint32_t carry = (a->d[i / 32] >> (i % 32)) & 1;
        for (uint32_t j = 0; j < x->n; j++) {
            uint32_t v = x->d[j];
            x->d[j] = (v << 1) | carry;
            carry = v >> 31;
        }
        if (carry)
            x->d[x->n++] = carry;
        if (bn_cmp(x, b) >= 0) {
            sub_in(x->d, x->n, b);
            while (x->n && !x->d[x->n - 1])
                x->n--;
            q->d[i / 32] |= 1u << (i % 32);
        }
    }
    *r = bn_fix(x);
    return bn_fix(q);
}

static bn *bn_mod(const bn *a, const bn *m)
{
    bn *r, *q = bn_divmod(a, m, &r);
    bn_free(q);
    return r;
}

static bn *bn_isqrt(const bn *n) /* Newton from above */
{
    bn *x = bn_new(n->n / 2 + 1);
    memset(x->d, 0, (size_t)x->n * 4);
    unsigned top = (bitlen(n) + 1) / 2; /* 2^top >= sqrt(n) */
    x->d[top / 32] |= 1u << (top % 32);
    bn_fix(x);
    for (;;) {
        bn *r, *q = bn_divmod(n, x, &r), *s = bn_add(x, q), *y = bn_divmod_small(s, 2, &(uint32_t){0});
        bn_free(r), bn_free(q), bn_free(s);
        if (bn_cmp(y, x) >= 0) {
            bn_free(y);
            return x;
        }
        bn_free(x);
        x = y;
    }
}

typedef struct rel {
    struct rel *next;
    bn *h;            /* h^2 = sign * cofactor * prod(p^e)  (mod N) */
    uint32_t cofactor;
    int sign;         /* +1 or -1 */
    unsigned char e[]; /* exponent per factor-base prime */
} rel_t;

static uint64_t hash_mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull; }

int main(int argc, char **argv)
{
    long long limbs = 4, steps = 1000000, fb = 60, seed = 42;
    opt_t opts[] = {
        {"limbs", &limbs, "size of N in 32-bit limbs"},
        {"steps", &steps, "continued-fraction steps"},
        {"fb", &fb, "factor base: trial-divide by the first FB primes"},
        {"seed", &seed, "RNG seed (chooses N)"},
        {NULL, NULL, NULL},
    };
    parse_opts(argc, argv, opts, "[options]");
    if (limbs < 2 || limbs > 64 || steps < 1 || fb < 1 || fb > 5000) {
        fprintf(stderr, "cfrac_like: bad parameters\n");
        return 64;
    }
    uint32_t *primes = malloc((size_t)fb * sizeof *primes);
    if (!primes)
        oom((size_t)fb * sizeof *primes);
    for (uint32_t c = 2, k = 0; k < (uint32_t)fb; c++) {
        uint32_t j = 0;
        while (j < k && c % primes[j])
            j++;
        if (j == k)
            primes[k++] = c;
    }

    rng_t rng;
    rng_seed(&rng, (uint64_t)seed);
    bn *N = bn_new((uint32_t)limbs);
    for (long long i = 0; i < limbs; i++)
        N->d[i] = (uint32_t)rng_next(&rng);
    N->d[limbs - 1] |= 0x80000000u, N->d[0] |= 1;
    bn_fix(N);

    uint64_t t0 = now_ns();
    bn *a0 = bn_isqrt(N);
    bn *sq = bn_mul(a0, a0);
    int square = bn_cmp(sq, N) == 0;
    bn_free(sq);
    if (square) {
        fprintf(stderr, "cfrac_like: N is a square, pick another seed\n");
        return 64;
    }
    /* state: m_n, d_n, d_{n-1}, a_n, h_{n-1}, h_{n-2} */
    bn *m = bn_u64(0), *d = bn_u64(1), *dprev = bn_copy(N), *a = bn_copy(a0);
    bn *h1 = bn_u64(1), *h2 = bn_u64(0);
    rel_t *rels = NULL;
    uint64_t nrels = 0, checksum = 0;
    for (long long n = 0; n < steps; n++) {
        /* h_n = a_n h_{n-1} + h_{n-2} mod N */
        bn *t = bn_mul(a, h1), *u = bn_add(t, h2), *h = bn_mod(u, N);
        bn_free(t), bn_free(u), bn_free(h2);
        h2 = h1, h1 = h;
        /* m' = d a - m;  d' = d_prev + a (m - m') */
        t = bn_mul(d, a);
        bn *m1 = bn_sub(t, m);
        bn_free(t);
        bn *d1;
        if (bn_cmp(m, m1) >= 0) {
            bn *diff = bn_sub(m, m1), *p = bn_mul(a, diff);
            d1 = bn_add(dprev, p);
            bn_free(diff), bn_free(p);
        } else {
            bn *diff = bn_sub(m1, m), *p = bn_mul(a, diff);
            d1 = bn_sub(dprev, p);
            bn_free(diff), bn_free(p);
        }
        /* a' = (a0 + m') / d' */
        bn *s = bn_add(a0, m1), *r, *a1 = bn_divmod(s, d1, &r);
        bn_free(s), bn_free(r);
        bn_free(m), bn_free(dprev), bn_free(a);
        m = m1, dprev = d, d = d1, a = a1;
        checksum = hash_mix(checksum, a->n ? a->d[0] : 0);

        /* trial division of Q = d_{n+1}: h_n^2 = (-1)^(n+1) Q (mod N) */
        unsigned char e[5000];
        bn *q = bn_copy(d);
        for (long long i = 0; i < fb; i++) {
            e[i] = 0;
            for (;;) {
                uint32_t rem;
                bn *qq = bn_divmod_small(q, primes[i], &rem);
                if (rem) {
                    bn_free(qq);
                    break;
                }
                bn_free(q);
                q = qq;
                e[i]++;
            }
        }
        if (q->n <= 1) { /* cofactor fits in a limb: keep the relation */
            rel_t *rl = malloc(sizeof *rl + (size_t)fb);
            if (!rl)
                oom(sizeof *rl + (size_t)fb);
            rl->next = rels, rl->h = bn_copy(h1), rl->cofactor = q->n ? q->d[0] : 0;
            rl->sign = (n + 1) % 2 ? -1 : 1;
            memcpy(rl->e, e, (size_t)fb);
            rels = rl, nrels++;
            checksum = hash_mix(checksum, rl->cofactor);
        }
        bn_free(q);
    }
    uint64_t t1 = now_ns(), timed_allocs = nallocs;
    long rss = peak_rss_kib();

    /* verify and free the relations */
    uint64_t bad = 0;
    while (rels) {
        rel_t *rl = rels;
        rels = rl->next;
        bn *q = bn_u64(rl->cofactor);
        for (long long i = 0; i < fb; i++)
            for (int k = 0; k < rl->e[i]; k++) {
                bn *t = bn_mul_small(q, primes[i]);
                bn_free(q);
                q = t;
            }
        bn *hh = bn_mul(rl->h, rl->h), *lhs = bn_mod(hh, N), *rhs = q;
        if (rl->sign < 0) {
            rhs = bn_sub(N, q);
            bn_free(q);
        }
        if (bn_cmp(lhs, rhs) != 0)
            bad++;
        bn_free(hh), bn_free(lhs), bn_free(rhs), bn_free(rl->h);
        free(rl);
    }
    errors += bad;
    bn_free(m), bn_free(d), bn_free(dprev), bn_free(a), bn_free(h1), bn_free(h2), bn_free(a0), bn_free(N);
    free(primes);
    if (nfrees != nallocs)
        errors++;
    printf("RESULT bench=cfrac_like limbs=%lld steps=%lld fb=%lld seed=%lld ops=%llu relations=%llu "
           "bad_relations=%llu ns_per_op=%.2f maxrss_kib=%ld malloc_from=%s errors=%llu checksum=%016llx\n",
           limbs, steps, fb, seed, (unsigned long long)timed_allocs, (unsigned long long)nrels,
           (unsigned long long)bad, (double)(t1 - t0) / (double)timed_allocs, rss, malloc_from(),
           (unsigned long long)errors, (unsigned long long)(checksum ^ nrels));
    return errors ? 2 : 0;
}
