/*
 * fill: the memory workload of the samepage test guest (see scripts/make-guest).
 *
 *   fill --mib N --seed S                 fill N MiB, print SAMEPAGE-FILLED, hold it forever
 *   fill --churn --mib N [--interval-ms M] fill N MiB, then keep changing every page
 *   fill --mib N --seed S --seed2 T --share-pct P
 *                                         the first P% of the pages from seed S, the rest
 *                                         from seed T: two guests with the same S and
 *                                         different T have P% of their fill in common
 *                                         (the fleet benchmarks' overlaps)
 *
 * Page i of a fill holds a pattern derived only from (S, i), so two guests filled
 * with the same seed have byte-identical pages (KSM can merge them across guests),
 * while no two pages of one guest are equal (nothing merges inside a guest) and no
 * page of seed S equals a page of another seed (words 1 and 2 hold S and i).
 *
 * Built static on the host (gcc -static -O2) and run under TCG, so the inner loop
 * is one add and one store per word: 256 MiB must take seconds, not minutes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAGIC UINT64_C(0x45474150454d4153) /* "SAMEPAGE", so no page is ever all zero */
#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)
#define MIB_MAX (UINT64_C(1) << 20)        /* 1 TiB: anything larger is a typo */

static void usage(FILE *f)
{
    fputs("usage: fill --mib N [--seed S] [--seed2 T --share-pct P]\n"
          "       fill --churn --mib N [--interval-ms M]\n", f);
}

/* splitmix64 finalizer: a cheap, well-mixed 64-bit hash. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* A console marker: on a fresh line (the shell prompt has no newline) and in a
 * single write, so that no other output lands inside it. */
static void say(const char *fmt, ...)
{
    char line[256] = "\n";
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line + 1, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    strcat(line, "\n");
    if (write(STDOUT_FILENO, line, strlen(line)) < 0)
        _exit(1);   /* no console left to complain on */
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;

    if (!s || *s < '0' || *s > '9')   /* strtoull would accept " -1" */
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Word 0 magic, 1 seed, 2 index, then a Weyl sequence from hash(seed, i). */
static void fill_page(uint64_t *w, size_t words, uint64_t seed, uint64_t i)
{
    uint64_t h = mix(seed ^ mix(i + GOLDEN));

    w[0] = MAGIC;
    w[1] = seed;
    w[2] = i;
    for (size_t k = 3; k < words; k++) {
        h += GOLDEN;
        w[k] = h;
    }
}

int main(int argc, char **argv)
{
    uint64_t mib = 0, seed = 0, seed2 = 0, share_pct = 100, interval_ms = 10;
    int churn = 0, have_mib = 0;

    for (int a = 1; a < argc; a++) {
        const char *opt = argv[a];
        uint64_t *dst = NULL;

        if (!strcmp(opt, "--churn")) {
            churn = 1;
            continue;
        }
        if (!strcmp(opt, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(opt, "--mib")) {
            dst = &mib;
            have_mib = 1;
        } else if (!strcmp(opt, "--seed")) {
            dst = &seed;
        } else if (!strcmp(opt, "--seed2")) {
            dst = &seed2;
        } else if (!strcmp(opt, "--share-pct")) {
            dst = &share_pct;
        } else if (!strcmp(opt, "--interval-ms")) {
            dst = &interval_ms;
        }
        if (!dst || a + 1 >= argc || parse_u64(argv[++a], dst)) {
            fprintf(stderr, "fill: bad argument '%s'\n", opt);
            usage(stderr);
            return 2;
        }
    }
    if (!have_mib || mib == 0 || mib > MIB_MAX || share_pct > 100) {
        usage(stderr);
        return 2;
    }

    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t words = page / sizeof(uint64_t);
    size_t len = (size_t)mib << 20;
    size_t pages = len / page;

    /* Private anonymous memory: the only kind KSM merges (in the host, the guest's
     * RAM is what merges; here we only decide what that RAM contains). */
    uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        say("SAMEPAGE-ERROR fill mmap %" PRIu64 " MiB: %s", mib, strerror(errno));
        return 1;
    }

    double t0 = now_ms();
    /* Churn pages change at once, so their starting seed does not matter. */
    size_t shared = (size_t)(pages * share_pct / 100);
    for (size_t i = 0; i < pages; i++)
        fill_page((uint64_t *)(mem + i * page), words,
                  churn ? UINT64_MAX : i < shared ? seed : seed2, i);
    fprintf(stderr, "fill: wrote %" PRIu64 " MiB in %.0f ms\n", mib, now_ms() - t0);

    if (!churn) {
        say("SAMEPAGE-FILLED mib=%" PRIu64 " seed=%" PRIu64, mib, seed);
        for (;;)
            pause();   /* keep the pages resident until the guest dies */
    }

    say("SAMEPAGE-CHURNING mib=%" PRIu64, mib);
    /* One store per page per pass is enough: KSM's page checksum covers the whole
     * page, so every page looks changed at each scan (pages_volatile). The short
     * sleep keeps the console shell (and other TCG guests) responsive. */
    struct timespec nap = { (time_t)(interval_ms / 1000), (long)(interval_ms % 1000) * 1000000 };
    for (uint64_t gen = 1;; gen++) {
        for (size_t i = 0; i < pages; i++)
            ((volatile uint64_t *)(mem + i * page))[1] = gen;
        if (interval_ms)
            nanosleep(&nap, NULL);
    }
}
