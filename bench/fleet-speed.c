/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fleet-speed: how fast the fleet fingerprint is made and ranked, next to
 * its peers measured in the same run.
 *
 *   fingerprint   ksm_fingerprint_processes (what `samepage fingerprint
 *                 --rate 0` runs) over a child's N MiB, next to a plain read
 *                 of the same bytes through /proc/PID/mem in 1 MiB preads:
 *                 target fingerprint >= 0.5 x plain read (issue 16).
 *   paced         the same with --rate R MiB/s: the rate it keeps to.
 *   ranking       1,000 synthetic guest fingerprints ranked against 100
 *                 synthetic host fingerprints (10 guests each): building the
 *                 host sets, 100,000 intersections, a sort per guest; next to
 *                 the same ranking done with sorted-array merges against each
 *                 host's union sketch (the simple way): target < 1 s.
 *
 *   accuracy      synthetic pairs of guests (100,000 and 1,000,000 distinct
 *                 contents) at 0..100% overlap, 10 fleet keys each: the
 *                 estimate's error against the exact count, as the sketch
 *                 alone makes it (no guest, no reading): mean and worst
 *                 |error| and how many of the 10 are within 5%.
 *
 * Synthetic fingerprints: contents are ids from 10 "images" (a guest has
 * 60% of its contents from its image's pool, 40% of its own), hashed as
 * pages are; sketches are k = 8192, guests 50,000 to 150,000 contents.
 * Needs root (or ptrace permission on its own child) for the first two rows.
 */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ksm/ksm.h>
#include <ksm/ksm-fingerprint.h>

static guint64 splitmix(guint64 x)
{
    x += G_GUINT64_CONSTANT(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * G_GUINT64_CONSTANT(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * G_GUINT64_CONSTANT(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

typedef struct {
    pid_t pid;
    guint64 addr;
} Child;

/* A child holding bytes of distinct pages (1 in 8 zero, 1 in 8 a copy of its neighbour). */
static Child spawn_child(gsize bytes, gsize page)
{
    int fds[2];
    Child c = { 0 };
    if (pipe(fds) < 0 || (c.pid = fork()) < 0) {
        g_error("pipe/fork: %s", g_strerror(errno));
    }
    if (c.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        guint8 *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            _exit(1);
        }
        for (gsize i = 0; i < bytes / page; i++) {
            guint64 *w = (guint64 *)(m + i * page);
            guint64 id = (i % 8 == 1) ? i - 1 : i;
            for (gsize j = 0; j < page / 8; j++) {
                w[j] = i % 8 == 0 && i % 16 == 8 ? 0 : splitmix(id * 512 + j);
            }
        }
        guint64 addr = (guint64)(uintptr_t)m;
        if (write(fds[1], &addr, sizeof(addr)) != sizeof(addr)) {
            _exit(1);
        }
        for (;;) {
            pause();
        }
    }
    close(fds[1]);
    if (read(fds[0], &c.addr, sizeof(c.addr)) != sizeof(c.addr)) {
        g_error("the child could not set up its %zu bytes", bytes);
    }
    close(fds[0]);
    return c;
}

typedef struct {
    double wall, cpu;
} Clock;

static Clock clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (Clock){ (double)g_get_monotonic_time() / 1e6, ts.tv_sec + ts.tv_nsec / 1e9 };
}

/* MiB/s by wall and by CPU time. */
typedef struct {
    double wall, cpu;
} Speed;

static Speed speed_since(Clock t, guint64 bytes)
{
    Clock e = clock_now();
    return (Speed){ (double)bytes / (e.wall - t.wall) / 1048576.0,
                    (double)bytes / (e.cpu - t.cpu) / 1048576.0 };
}

static void keep_best(Speed *best, Speed s)
{
    best->wall = MAX(best->wall, s.wall);
    best->cpu = MAX(best->cpu, s.cpu);
}

static Speed plain_read(const Child *c, gsize bytes)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/mem", (int)c->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        g_printerr("fleet-speed: cannot open %s: %s (run as root)\n", path, g_strerror(errno));
        exit(77);
    }
    gsize chunk = 1 << 20;
    guint8 *buf = aligned_alloc(4096, chunk);
    Clock t = clock_now();
    for (gsize off = 0; off < bytes; off += chunk) {
        gsize n = MIN(chunk, bytes - off);
        if (pread(fd, buf, n, (off_t)(c->addr + off)) != (ssize_t)n) {
            g_error("pread %s: %s", path, g_strerror(errno));
        }
    }
    Speed s = speed_since(t, bytes);
    free(buf);
    close(fd);
    return s;
}

static Speed fingerprint(const Child *c, const KsmFleetKey *key, double rate, guint64 *read)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GError) error = NULL;
    KsmFingerprintOptions opts = { .k = KSM_SKETCH_MAX_K, .rate_mib_s = rate };
    Clock t = clock_now();
    g_autoptr(GPtrArray) s = ksm_fingerprint_processes(ctx, key, &c->pid, 1, &opts, NULL, read,
                                                       &error);
    if (!s) {
        g_printerr("fleet-speed: %s\n", error->message);
        exit(error->code == KSM_ERROR_PERMISSION ? 77 : 1);
    }
    return speed_since(t, *read);
}

/* ---- ranking ------------------------------------------------------------------- */

#define IMAGES 10
#define HOSTS 100
#define GUESTS_PER_HOST 10
#define NEW_GUESTS 1000

static KsmSketch *synthetic_guest(const KsmFleetKey *key, guint64 serial)
{
    guint64 r = splitmix(serial);
    guint image = (guint)(r % IMAGES);
    guint64 n = 50000 + (r >> 8) % 100000;
    KsmSketch *s = ksm_sketch_new(KSM_SKETCH_MAX_K);
    guint8 page[32] = { 0 };
    for (guint64 i = 0; i < n; i++) {
        /* 60% from the image's pool of 200,000 contents, 40% the guest's own. */
        guint64 id = (i % 5 < 3) ? (guint64)image << 40 | splitmix(serial * 7 + i) % 200000
                                 : G_GUINT64_CONSTANT(1) << 62 | serial << 24 | i;
        memcpy(page, &id, sizeof(id));
        ksm_sketch_add(s, ksm_fleet_key_hash(key, page, sizeof(page)));
    }
    ksm_sketch_flush(s);
    return s;
}

typedef struct {
    double shared;
    guint host;
} Score;

static int by_score(const void *a, const void *b)
{
    const Score *x = a, *y = b;
    return x->shared != y->shared ? (x->shared > y->shared ? -1 : 1) : (int)x->host - (int)y->host;
}

static void add_range(KsmSketch *s, const KsmFleetKey *key, guint64 first, guint64 n)
{
    guint8 page[32] = { 0 };
    for (guint64 i = first; i < first + n; i++) {
        memcpy(page, &i, sizeof(i));
        ksm_sketch_add(s, ksm_fleet_key_hash(key, page, sizeof(page)));
    }
    ksm_sketch_flush(s);
}

static void accuracy(void)
{
    static const guint64 sizes[] = { 100000, 1000000 };
    static const guint overlaps[] = { 0, 5, 25, 50, 75, 100 };
    const guint trials = 10;
    printf("accuracy of |A ∩ B| from two k = 8192 sketches (synthetic sets, %u keys each; "
           "error relative to the exact count)\n", trials);
    printf("  %-10s %8s %12s %12s %12s %10s\n", "distinct", "overlap", "mean |err|",
           "worst |err|", "within 5%", "1 se");
    for (guint si = 0; si < G_N_ELEMENTS(sizes); si++) {
        guint64 n = sizes[si];
        for (guint oi = 0; oi < G_N_ELEMENTS(overlaps); oi++) {
            guint64 common = n * overlaps[oi] / 100;
            double sum = 0, worst = 0, se = 0;
            guint within = 0;
            for (guint t = 0; t < trials; t++) {
                g_autofree char *kb = g_strdup_printf("accuracy key number %u", t);
                g_autoptr(KsmFleetKey) key = ksm_fleet_key_new(kb, strlen(kb), NULL);
                g_autoptr(KsmSketch) a = ksm_sketch_new(KSM_SKETCH_MAX_K);
                g_autoptr(KsmSketch) b = ksm_sketch_new(KSM_SKETCH_MAX_K);
                add_range(a, key, 0, n);
                add_range(b, key, n - common, n);
                guint64 samples = 0;
                double est = ksm_sketch_intersection(a, b, &samples);
                double err = common ? fabs(est - (double)common) / (double)common
                                    : (est == 0 ? 0 : 1);
                sum += err;
                worst = MAX(worst, err);
                within += err <= 0.05;
                se += samples ? 1.0 / sqrt((double)samples) : 0;
            }
            printf("  %-10" G_GUINT64_FORMAT " %7u%% %11.2f%% %11.2f%% %9u/%u %9.1f%%\n", n,
                   overlaps[oi], 100 * sum / trials, 100 * worst, within, trials,
                   100 * se / trials);
        }
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    gint mib = 512, runs = 3;
    gdouble rate = 200;
    gboolean accuracy_only = FALSE;
    const GOptionEntry entries[] = {
        { "accuracy-only", 0, 0, G_OPTION_ARG_NONE, &accuracy_only,
          "only the synthetic accuracy table (no root needed)", NULL },
        { "mib", 'm', 0, G_OPTION_ARG_INT, &mib, "MiB of child memory (default 512)", "N" },
        { "runs", 'r', 0, G_OPTION_ARG_INT, &runs, "runs of each measurement; best kept (3)", "R" },
        { "rate", 0, 0, G_OPTION_ARG_DOUBLE, &rate, "MiB/s for the paced row (default 200)", "R" },
        { NULL },
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("- fleet fingerprint and ranking speed");
    g_autoptr(GError) error = NULL;
    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &error) || mib <= 0 || runs <= 0 ||
        rate <= 0) {
        g_printerr("fleet-speed: %s\n", error ? error->message : "bad value");
        return 2;
    }
    static const char key_bytes[] = "fleet-speed benchmark key, not a secret";
    g_autoptr(KsmFleetKey) key = ksm_fleet_key_new(key_bytes, sizeof(key_bytes), NULL);
    gsize page = (gsize)sysconf(_SC_PAGESIZE);
    gsize bytes = (gsize)mib << 20;
    if (accuracy_only) {
        accuracy();
        return 0;
    }

    Child child = spawn_child(bytes, page);
    Speed plain = { 0 }, fp = { 0 };
    guint64 fp_bytes = 0;
    for (gint r = 0; r < runs; r++) {
        keep_best(&plain, plain_read(&child, bytes));
        keep_best(&fp, fingerprint(&child, key, 0, &fp_bytes));
    }
    guint64 paced_bytes = 0;
    Speed paced = fingerprint(&child, key, rate, &paced_bytes);
    kill(child.pid, SIGKILL);
    waitpid(child.pid, NULL, 0);

    printf("fingerprint speed: %d MiB child (distinct pages, 1/16 zero, 1/8 copies), 1 MiB "
           "reads, best of %d\n", mib, runs);
    printf("  %-40s %9s %9s %10s\n", "measurement", "MiB/s", "MiB/s cpu", "fp/this");
    printf("  %-40s %9.0f %9.0f %10.2f\n", "plain read of /proc/PID/mem", plain.wall, plain.cpu,
           fp.wall / plain.wall);
    printf("  %-40s %9.0f %9.0f %10.2f\n", "fingerprint (read, zero test, XXH3, sketch)",
           fp.wall, fp.cpu, 1.0);
    g_autofree char *paced_what = g_strdup_printf("fingerprint --rate %.0f", rate);
    printf("  %-40s %9.0f %9.0f %10s\n", paced_what, paced.wall, paced.cpu, "-");
    printf("  (fingerprint read %" G_GUINT64_FORMAT " MiB: the child's whole private anonymous "
           "memory)\n", fp_bytes >> 20);
    printf("  target fingerprint >= 0.50 x plain read: %.2f by wall time (%s)\n",
           fp.wall / plain.wall, fp.wall >= 0.5 * plain.wall ? "met" : "MISSED");
    printf("  paced: %.0f MiB/s for --rate %.0f (%+.0f%%)\n\n", paced.wall, rate,
           100.0 * (paced.wall - rate) / rate);

    accuracy();

    /* Ranking. */
    gint64 t0 = g_get_monotonic_time();
    KsmSketch **host_guests = g_new(KsmSketch *, HOSTS * GUESTS_PER_HOST);
    KsmSketch **guests = g_new(KsmSketch *, NEW_GUESTS);
    for (guint i = 0; i < HOSTS * GUESTS_PER_HOST; i++) {
        host_guests[i] = synthetic_guest(key, i);
    }
    for (guint i = 0; i < NEW_GUESTS; i++) {
        guests[i] = synthetic_guest(key, 1000000 + i);
    }
    double t_make = (double)(g_get_monotonic_time() - t0) / 1e6;

    t0 = g_get_monotonic_time();
    Clock c0 = clock_now();
    KsmHostSet **sets = g_new(KsmHostSet *, HOSTS);
    for (guint h = 0; h < HOSTS; h++) {
        sets[h] = ksm_host_set_new(host_guests + h * GUESTS_PER_HOST, GUESTS_PER_HOST);
    }
    double t_sets = (double)(g_get_monotonic_time() - t0) / 1e6;
    double cpu_sets_rank = clock_now().cpu - c0.cpu;
    Score scores[HOSTS];
    guint best_fast[NEW_GUESTS];
    g_autofree double *est = g_new(double, (gsize)NEW_GUESTS * HOSTS);
    g_autofree guint64 *smp = g_new(guint64, (gsize)NEW_GUESTS * HOSTS);
    t0 = g_get_monotonic_time();
    ksm_rank_all(sets, HOSTS, guests, NEW_GUESTS, est, smp);
    for (guint g = 0; g < NEW_GUESTS; g++) {
        for (guint h = 0; h < HOSTS; h++) {
            scores[h] = (Score){ est[(gsize)g * HOSTS + h], h };
        }
        qsort(scores, HOSTS, sizeof(Score), by_score);
        best_fast[g] = scores[0].host;
    }
    double t_rank = (double)(g_get_monotonic_time() - t0) / 1e6;
    cpu_sets_rank = clock_now().cpu - c0.cpu;

    /* The same, pair by pair through the host sets' directories (the
     * answers must be identical: the join counts the same samples). */
    t0 = g_get_monotonic_time();
    guint differ = 0;
    for (guint g = 0; g < NEW_GUESTS; g++) {
        for (guint h = 0; h < HOSTS; h++) {
            differ += ksm_host_set_intersection(sets[h], guests[g], NULL) !=
                      est[(gsize)g * HOSTS + h];
        }
    }
    double t_pairs = (double)(g_get_monotonic_time() - t0) / 1e6;

    /* The peer: a union sketch per host, bounded to k = 8192 as a guest's
     * (ksm_sketch_union), and a sorted-array merge per pair. */
    t0 = g_get_monotonic_time();
    KsmSketch **unions = g_new(KsmSketch *, HOSTS);
    for (guint h = 0; h < HOSTS; h++) {
        KsmSketch *u = ksm_sketch_union(host_guests[h * GUESTS_PER_HOST],
                                        host_guests[h * GUESTS_PER_HOST + 1], KSM_SKETCH_MAX_K);
        for (guint i = 2; i < GUESTS_PER_HOST; i++) {
            KsmSketch *v = ksm_sketch_union(u, host_guests[h * GUESTS_PER_HOST + i],
                                            KSM_SKETCH_MAX_K);
            ksm_sketch_free(u);
            u = v;
        }
        unions[h] = u;
    }
    guint agree = 0;
    for (guint g = 0; g < NEW_GUESTS; g++) {
        for (guint h = 0; h < HOSTS; h++) {
            scores[h] = (Score){ ksm_sketch_intersection(unions[h], guests[g], NULL), h };
        }
        qsort(scores, HOSTS, sizeof(Score), by_score);
        agree += scores[0].host == best_fast[g];
    }
    double t_merge = (double)(g_get_monotonic_time() - t0) / 1e6;

    g_autofree char *loadavg = NULL;
    g_file_get_contents("/proc/loadavg", &loadavg, NULL, NULL);
    g_autofree char *load = g_strndup(loadavg ? loadavg : "?", 14);
    printf("ranking: %d guest fingerprints against %d host fingerprints (%d guests each, "
           "k = %u; synthetic, made in %.1f s)\n", NEW_GUESTS, HOSTS, GUESTS_PER_HOST,
           KSM_SKETCH_MAX_K, t_make);
    printf("  %-52s %9s\n", "measurement", "seconds");
    guint64 matches = 0, host_hashes = 0;
    for (gsize i = 0; i < (gsize)NEW_GUESTS * HOSTS; i++) {
        matches += smp[i];
    }
    for (guint h = 0; h < HOSTS; h++) {
        host_hashes += sets[h]->n;
    }
    printf("  (%" G_GUINT64_FORMAT " host hashes, %" G_GUINT64_FORMAT " (guest, host) samples "
           "counted)\n", host_hashes, matches);
    printf("  %-52s %9.3f\n", "host sets (union below theta, directory)", t_sets);
    printf("  %-52s %9.3f\n", "rank: one join of all hashes + sort per guest", t_rank);
    printf("  %-52s %9.3f\n", "total (host sets + ranking)", t_sets + t_rank);
    printf("  %-52s %9.3f\n", "peer: pair by pair, host-set directory lookups", t_pairs);
    printf("  %-52s %9.3f\n", "peer: union sketches (k 8192) + sorted-array merges", t_merge);
    printf("  pair-by-pair estimates that differ from the join's: %u of %d\n", differ,
           NEW_GUESTS * HOSTS);
    printf("  peer picks the same best host for %u of %d guests (its union sketch keeps "
           "k hashes per host, the host set all below theta)\n", agree, NEW_GUESTS);
    printf("  target ranking < 1 s: %.3f s by wall time, %.3f s of CPU (%s; load average %s)\n",
           t_sets + t_rank, cpu_sets_rank, t_sets + t_rank < 1.0 ? "met" :
           cpu_sets_rank < 1.0 ? "met by CPU time, MISSED by wall time" : "MISSED", load);
    return 0;
}
