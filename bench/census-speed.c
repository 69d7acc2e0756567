/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * census-speed: how fast the page census is, next to its physical limits,
 * measured in the same run on the same bytes.
 *
 *   memcpy        N MiB copied inside this process: the memory bandwidth one
 *                 core gets.
 *   plain read    the child's N MiB read through /proc/PID/mem in the same
 *                 chunk size the census uses, and nothing else: the ceiling
 *                 of any census that reads another process's memory.
 *   census        ksm_census_run over the same N MiB: pagemap, reads, zero
 *                 test, XXH3, table, byte-for-byte confirmation of every
 *                 duplicate (wall time of the whole call).
 *
 * The child's memory is mixed: 25% zero pages, 25% drawn from a pool of 256
 * pages (duplicates whose first copies are hot), 50% pairs of identical
 * pages half the area apart (duplicates whose first copy is far away and
 * must be read again).  Each figure is the best of --runs runs (bandwidth
 * is a limit: the best run is the one least disturbed by the rest of the
 * machine).  Target (issue 7): census >= 0.5 x plain read on one core.
 *
 * Needs root (or ptrace permission on its own child, which it usually has).
 */
#include <errno.h>
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
#include <ksm/ksm-census.h>

static guint64 splitmix(guint64 x)
{
    x += G_GUINT64_CONSTANT(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * G_GUINT64_CONSTANT(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * G_GUINT64_CONSTANT(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

static void fill_page(guint8 *p, gsize page, guint64 id)
{
    guint64 *w = (guint64 *)p;
    for (gsize j = 0; j < page / 8; j++) {
        w[j] = splitmix(id * 4096 + j) | 1;
    }
}

/* Page i of the mixed area (see the top of the file). */
static void fill_mixed(guint8 *m, gsize pages, gsize page)
{
    for (gsize i = 0; i < pages; i++) {
        guint8 *p = m + i * page;
        switch (i % 4) {
        case 0:
            memset(p, 0, page);
            break;
        case 1:
            fill_page(p, page, 1000000 + i);
            break;
        case 2:
            fill_page(p, page, splitmix(i) % 256);
            break;
        case 3:
            /* The same content as the "case 1" page half the area away. */
            fill_page(p, page, 1000000 + ((((i + pages / 2) % pages) & ~(gsize)3) | 1));
            break;
        }
    }
}

typedef struct {
    pid_t pid;
    guint64 addr;
} Child;

static Child spawn_child(gsize bytes, gsize page)
{
    int fds[2];
    Child c = { 0 };

    if (pipe(fds) < 0) {
        g_error("pipe: %s", g_strerror(errno));
    }
    c.pid = fork();
    if (c.pid < 0) {
        g_error("fork: %s", g_strerror(errno));
    }
    if (c.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        guint8 *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            _exit(1);
        }
        fill_mixed(m, bytes / page, page);
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

/* Wall time and this thread's CPU time (user + system), in seconds. */
typedef struct {
    double wall, cpu;
} Clock;

static Clock clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (Clock){ (double)g_get_monotonic_time() / 1e6, ts.tv_sec + ts.tv_nsec / 1e9 };
}

/* GB/s by wall time and by CPU time, for bytes done since start. */
typedef struct {
    double wall, cpu;
} Speed;

static Speed speed_since(Clock start, gsize bytes)
{
    Clock end = clock_now();
    return (Speed){ (double)bytes / (end.wall - start.wall) / 1e9,
                    (double)bytes / (end.cpu - start.cpu) / 1e9 };
}

static void keep_best(Speed *best, Speed s)
{
    best->wall = MAX(best->wall, s.wall);
    best->cpu = MAX(best->cpu, s.cpu);
}

static Speed bench_memcpy(gsize bytes)
{
    guint8 *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b) {
        g_error("no memory for two %zu-byte buffers", bytes);
    }
    memset(a, 1, bytes);
    memset(b, 2, bytes);   /* fault both in before timing */
    Clock t = clock_now();
    memcpy(b, a, bytes);
    Speed speed = speed_since(t, bytes);
    /* Keep the copy observable so it is not optimised away. */
    volatile guint8 sink = b[bytes / 2];
    (void)sink;
    free(a);
    free(b);
    return speed;
}

static Speed bench_plain_read(const Child *c, gsize bytes, gsize chunk)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/mem", (int)c->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        g_printerr("census-speed: cannot open %s: %s (run as root)\n", path, g_strerror(errno));
        exit(77);
    }
    guint8 *buf = aligned_alloc(4096, chunk);
    Clock t = clock_now();
    for (gsize off = 0; off < bytes; off += chunk) {
        gsize n = MIN(chunk, bytes - off);
        if (pread(fd, buf, n, (off_t)(c->addr + off)) != (ssize_t)n) {
            g_error("pread %s: %s", path, g_strerror(errno));
        }
    }
    Speed speed = speed_since(t, bytes);
    free(buf);
    close(fd);
    return speed;
}

static Speed bench_census(const Child *c, gsize bytes, gsize chunk, KsmCensus **keep)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GError) error = NULL;
    KsmCensusTarget target = { c->pid, c->addr, c->addr + bytes };
    KsmCensusOptions opts;

    ksm_census_options_init(&opts);
    opts.targets = &target;
    opts.n_targets = 1;
    opts.chunk_bytes = chunk;
    Clock t = clock_now();
    KsmCensus *census = ksm_census_run(ctx, &opts, &error);
    Speed speed = speed_since(t, census ? census->pages * census->page_size : 0);
    if (!census) {
        g_printerr("census-speed: %s\n", error->message);
        exit(error->code == KSM_ERROR_PERMISSION ? 77 : 1);
    }
    ksm_census_free(*keep);
    *keep = census;
    return speed;
}

int main(int argc, char **argv)
{
    gint mib = 512, runs = 3, chunk_kib = 0;
    gboolean census_only = FALSE;
    const GOptionEntry entries[] = {
        { "mib", 'm', 0, G_OPTION_ARG_INT, &mib, "MiB of child memory (default 512)", "N" },
        { "runs", 'r', 0, G_OPTION_ARG_INT, &runs, "runs of each measurement; best kept (3)", "R" },
        { "chunk-kib", 'c', 0, G_OPTION_ARG_INT, &chunk_kib,
          "bytes per pread in KiB, census and plain read (default: the census's own)", "K" },
        { "census-only", 0, 0, G_OPTION_ARG_NONE, &census_only,
          "run only the census (for profiling it with perf)", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("- page census speed vs its limits");
    g_autoptr(GError) error = NULL;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &error) || mib <= 0 || runs <= 0 ||
        chunk_kib < 0) {
        g_printerr("census-speed: %s\n", error ? error->message : "bad value");
        return 2;
    }
    gsize page = (gsize)sysconf(_SC_PAGESIZE);
    gsize bytes = (gsize)mib << 20;
    gsize chunk = chunk_kib ? (gsize)chunk_kib << 10 : 1 << 20;   /* census default: 1 MiB */

    Child child = spawn_child(bytes, page);
    Speed copy = { 0 }, plain = { 0 }, cen = { 0 };
    KsmCensus *census = NULL;
    /* Interleaved, so a burst of load elsewhere hits all of them alike. */
    for (gint r = 0; r < runs; r++) {
        if (!census_only) {
            keep_best(&copy, bench_memcpy(bytes));
            keep_best(&plain, bench_plain_read(&child, bytes, chunk));
        }
        keep_best(&cen, bench_census(&child, bytes, chunk_kib ? chunk : 0, &census));
    }
    kill(child.pid, SIGKILL);
    waitpid(child.pid, NULL, 0);
    if (census_only) {
        printf("census: %.2f GB/s wall, %.2f GB/s CPU\n", cen.wall, cen.cpu);
        ksm_census_free(census);
        return 0;
    }

    printf("census speed: %d MiB of mixed content (25%% zero, 25%% pool of 256 pages, "
           "50%% pairs), %zu KiB reads, best of %d\n", mib, chunk >> 10, runs);
    printf("GB/s by wall time, and by CPU time of the measuring thread (one core; "
           "robust to other load)\n");
    printf("  %-30s %7s %7s %12s %9s\n", "measurement", "wall", "cpu", "census/this",
           "(by cpu)");
    const struct {
        const char *what;
        Speed s;
    } rows[] = {
        { "memcpy (in process)", copy },
        { "plain read of /proc/PID/mem", plain },
        { "census (read, hash, confirm)", cen },
    };
    for (guint i = 0; i < G_N_ELEMENTS(rows); i++) {
        printf("  %-30s %7.2f %7.2f %12.2f %9.2f\n", rows[i].what, rows[i].s.wall,
               rows[i].s.cpu, cen.wall / rows[i].s.wall, cen.cpu / rows[i].s.cpu);
    }
    printf("  counted: %" G_GUINT64_FORMAT " pages, %" G_GUINT64_FORMAT " zero, %"
           G_GUINT64_FORMAT " distinct, %" G_GUINT64_FORMAT " dup within, freeable %"
           G_GUINT64_FORMAT " MiB\n", census->pages, census->zero_pages, census->distinct,
           census->dup_within, ksm_census_bytes(census, census->freeable_pages) >> 20);
    printf("  target census >= 0.50 x plain read of /proc/PID/mem: %.2f by wall, %.2f by cpu "
           "(%s)\n", cen.wall / plain.wall, cen.cpu / plain.cpu,
           cen.cpu >= 0.5 * plain.cpu ? "met" : "missed");
    ksm_census_free(census);
    return 0;
}
