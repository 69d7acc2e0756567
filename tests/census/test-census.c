/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-census.c: the page census against processes with known memory.
 *
 * /census/unit/...     parsing and the confirm step: no privileges needed.
 * /census/process/...  forked children with known contents, read through
 *                      /proc/PID/mem: needs root (or same uid and ptrace
 *                      permission).  When a child's memory cannot be read
 *                      the program says why and exits 77 (meson: skipped).
 *
 * The children:
 *   A: 1000 pages P(1,i), 100 zero pages, 50 copies of P(1,0..49)
 *   B: the same 1000 pages P(1,i)        -> 1000 duplicates across
 *   C: 300 pages P(2,i), found nowhere else
 * so over A, B, C (their regions only): 2450 pages, 100 zero, 50 within,
 * 1000 across, 1300 distinct contents of which 300 unique.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-glib/json-glib.h>
#include <ksm/ksm.h>
#include <ksm/ksm-pagemap.h>
#include <ksm/ksm-census.h>

static gsize page;

/* ---- known contents ----------------------------------------------------- */

static guint64 splitmix(guint64 x)
{
    x += G_GUINT64_CONSTANT(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * G_GUINT64_CONSTANT(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * G_GUINT64_CONSTANT(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

/* Page i of pattern seed: different for every (seed, i), never zero. */
static void fill_pattern(guint8 *p, guint seed, guint i)
{
    guint64 *w = (guint64 *)p;
    for (gsize j = 0; j < page / 8; j++) {
        w[j] = splitmix(((guint64)seed << 40) ^ ((guint64)i << 16) ^ j) | 1;
    }
}

/*
 * CHILD_MG: 32 unique pages, the first 16 registered with KSM (MADV_MERGEABLE).
 * CHILD_KSM: 32 copies of P(6,0) and 32 of P(6,1), all registered.
 */
typedef enum { CHILD_A, CHILD_B, CHILD_C, CHILD_MG, CHILD_KSM } ChildKind;

static gsize child_pages(ChildKind kind)
{
    switch (kind) {
    case CHILD_A:
        return 1150;
    case CHILD_B:
        return 1000;
    case CHILD_C:
        return 300;
    case CHILD_MG:
        return 32;
    case CHILD_KSM:
        return 64;
    }
    return 0;
}

static void fill_child(guint8 *m, ChildKind kind)
{
    switch (kind) {
    case CHILD_A:
        for (guint i = 0; i < 1000; i++) {
            fill_pattern(m + i * page, 1, i);
        }
        /* Written, so they are real frames full of zeros (not the zero page). */
        memset(m + 1000 * page, 0, 100 * page);
        for (guint i = 0; i < 50; i++) {
            fill_pattern(m + (1100 + i) * page, 1, i);
        }
        break;
    case CHILD_B:
        for (guint i = 0; i < 1000; i++) {
            fill_pattern(m + i * page, 1, i);
        }
        break;
    case CHILD_C:
        for (guint i = 0; i < 300; i++) {
            fill_pattern(m + i * page, 2, i);
        }
        break;
    case CHILD_MG:
        for (guint i = 0; i < 32; i++) {
            fill_pattern(m + i * page, 5, i);
        }
        /* Unique pages: nothing for ksmd to merge if it runs meanwhile. */
        if (!ksm_advise_mergeable(m, 16 * page, NULL)) {
            _exit(3);
        }
        break;
    case CHILD_KSM:
        for (guint i = 0; i < 64; i++) {
            fill_pattern(m + i * page, 6, i % 2);
        }
        if (!ksm_advise_mergeable(m, 64 * page, NULL)) {
            _exit(3);
        }
        break;
    }
}

/* ---- children ----------------------------------------------------------- */

typedef struct {
    pid_t pid;
    guint64 addr;
    gsize pages;
} Child;

/*
 * Fork a child that maps pages, lets fill() write them (NULL: keep what it
 * inherited at inherit, copy-on-write), sends the address and waits to be
 * killed.  It dies with the test (PDEATHSIG) if the test dies first.
 */
static Child spawn(gsize pages, int kind, guint8 *inherit)
{
    int fds[2];
    Child c = { .pages = pages };

    g_assert_no_errno(pipe(fds));
    c.pid = fork();
    g_assert_cmpint(c.pid, >=, 0);
    if (c.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(fds[0]);
        guint8 *m = inherit;
        if (!m) {
            m = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
            if (m == MAP_FAILED) {
                _exit(1);
            }
            fill_child(m, (ChildKind)kind);
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
    g_assert_cmpint(read(fds[0], &c.addr, sizeof(c.addr)), ==, sizeof(c.addr));
    close(fds[0]);
    return c;
}

static void reap(Child *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        c->pid = 0;
    }
}

static KsmCensusTarget target_of(const Child *c)
{
    return (KsmCensusTarget){ c->pid, c->addr, c->addr + c->pages * page };
}

static KsmCensus *census_of(KsmCensusTarget *targets, guint n, KsmCensusOptions *opts)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GError) error = NULL;

    opts->targets = targets;
    opts->n_targets = n;
    KsmCensus *census = ksm_census_run(ctx, opts, &error);
    g_assert_no_error(error);
    g_assert_nonnull(census);
    return census;
}

/* ---- the three children -------------------------------------------------- */

typedef struct {
    Child a, b, c;
} Abc;

static void abc_setup(Abc *f, gconstpointer data)
{
    f->a = spawn(child_pages(CHILD_A), CHILD_A, NULL);
    f->b = spawn(child_pages(CHILD_B), CHILD_B, NULL);
    f->c = spawn(child_pages(CHILD_C), CHILD_C, NULL);
}

static void abc_teardown(Abc *f, gconstpointer data)
{
    reap(&f->a);
    reap(&f->b);
    reap(&f->c);
}

static KsmCensus *abc_census(Abc *f, KsmCensusOptions *opts)
{
    KsmCensusTarget t[3] = { target_of(&f->a), target_of(&f->b), target_of(&f->c) };
    return census_of(t, 3, opts);
}

static void assert_abc_counts(const KsmCensus *s)
{
    g_assert_cmpuint(s->pages, ==, 2450);
    g_assert_cmpuint(s->zero_pages, ==, 100);
    g_assert_cmpuint(s->dup_within, ==, 50);
    g_assert_cmpuint(s->dup_across, ==, 1000);
    g_assert_cmpuint(s->distinct, ==, 1300);
    g_assert_cmpuint(s->unique_pages, ==, 300);
    g_assert_cmpuint(s->unconfirmed_pages, ==, 0);
    g_assert_cmpuint(s->unreadable_pages, ==, 0);
    g_assert_cmpuint(s->dup_within + s->dup_across + s->distinct, ==, s->pages - s->zero_pages);

    g_assert_cmpuint(s->n_processes, ==, 3);
    const KsmCensusProcess *a = &s->processes[0], *b = &s->processes[1], *c = &s->processes[2];
    g_assert_cmpuint(a->pages, ==, 1150);
    g_assert_cmpuint(a->zero_pages, ==, 100);
    g_assert_cmpuint(a->dup_within, ==, 50);
    g_assert_cmpuint(a->dup_across, ==, 0);
    g_assert_cmpuint(b->pages, ==, 1000);
    g_assert_cmpuint(b->dup_within, ==, 0);
    g_assert_cmpuint(b->dup_across, ==, 1000);
    g_assert_cmpuint(c->pages, ==, 300);
    g_assert_cmpuint(c->dup_within + c->dup_across + c->zero_pages, ==, 0);
    for (guint i = 0; i < 3; i++) {
        g_assert_false(s->processes[i].gone);
        g_assert_cmpuint(s->processes[i].areas, ==, 1);
    }
}

/* Can this kernel's /proc/kpageflags tell KSM pages (libksm's probe)? */
static gboolean kpf_ksm_reliable(GError **why)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    return ksm_kpageflags_ksm_reliable(ctx, why);
}

static void test_counts(Abc *f, gconstpointer data)
{
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    g_autoptr(KsmCensus) s = abc_census(f, &opts);

    assert_abc_counts(s);
    /* P(1,0..49): 3 copies (2 saved each), P(1,50..999): 2 (1 each), zero: all 100. */
    g_assert_cmpuint(s->freeable_zero_pages, ==, 100);
    g_assert_cmpuint(s->freeable_pages, ==, 50 * 2 + 950 + 100);
    if (s->frames_visible && !kpf_ksm_reliable(NULL)) {
        /* KPF_KSM marks every anonymous page (6.12.95): no frame can be told
         * KSM's, and the census says so rather than count them all merged. */
        g_assert_false(s->merged_exact);
    } else if (s->frames_visible) {
        /* Every page has its own frame: nothing is shared yet, by KSM or otherwise. */
        g_assert_cmpint(s->zero_mapped_pages, ==, 0);
        g_assert_true(s->merged_exact);
        g_assert_cmpint(s->merged_pages, ==, 0);
        g_assert_cmpint(s->shared_other_pages, ==, 0);
        g_assert_cmpfloat(s->ratio, ==, 0.0);
    }
}

static void test_zero_modes(Abc *f, gconstpointer data)
{
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);

    opts.zero_mode = KSM_CENSUS_ZERO_AS_CONTENT;
    g_autoptr(KsmCensus) content = abc_census(f, &opts);
    g_assert_cmpuint(content->freeable_zero_pages, ==, 99);
    g_assert_cmpuint(content->freeable_pages, ==, 1050 + 99);

    opts.zero_mode = KSM_CENSUS_ZERO_EXCLUDE;
    g_autoptr(KsmCensus) excluded = abc_census(f, &opts);
    g_assert_cmpuint(excluded->zero_pages, ==, 100);
    g_assert_cmpuint(excluded->freeable_zero_pages, ==, 0);
    g_assert_cmpuint(excluded->freeable_pages, ==, 1050);

    /* max_page_sharing 2: 3 copies need 2 frames, 100 zeros need 50. */
    opts.zero_mode = KSM_CENSUS_ZERO_AS_CONTENT;
    opts.max_page_sharing = 2;
    g_autoptr(KsmCensus) capped = abc_census(f, &opts);
    g_assert_cmpuint(capped->freeable_pages, ==, 50 * 1 + 950 + 50);
}

/* Small chunks: first copies are fetched across many chunk boundaries. */
static void test_small_chunks(Abc *f, gconstpointer data)
{
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    opts.chunk_bytes = 3 * page;
    g_autoptr(KsmCensus) s = abc_census(f, &opts);
    assert_abc_counts(s);
}

/*
 * Visit mode (the fleet fingerprint's reader): every present page of every
 * target is handed over once, in address order per target, with its bytes;
 * nothing is classified.
 */
typedef struct {
    guint64 pages[3];
    guint64 zero[3];
    guint64 next_addr[3];
    gboolean in_order;
    gsize page;
} Visited;

static void on_visit(guint target, guint64 addr, const guint8 *pages, gsize n, gpointer data)
{
    Visited *v = data;
    g_assert_cmpuint(target, <, 3);
    if (addr < v->next_addr[target]) {
        v->in_order = FALSE;
    }
    v->next_addr[target] = addr + n * v->page;
    for (gsize i = 0; i < n; i++) {
        const guint8 *p = pages + i * v->page;
        gboolean zero = TRUE;
        for (gsize j = 0; j < v->page && zero; j++) {
            zero = p[j] == 0;
        }
        v->zero[target] += zero;
    }
    v->pages[target] += n;
}

static void test_visit(Abc *f, gconstpointer data)
{
    KsmCensusOptions opts;
    Visited v = { .in_order = TRUE, .page = page };
    ksm_census_options_init(&opts);
    opts.chunk_bytes = 7 * page;
    opts.visit = on_visit;
    opts.visit_data = &v;
    g_autoptr(KsmCensus) s = abc_census(f, &opts);
    g_assert_true(v.in_order);
    g_assert_cmpuint(v.pages[0], ==, 1150);
    g_assert_cmpuint(v.pages[1], ==, 1000);
    g_assert_cmpuint(v.pages[2], ==, 300);
    g_assert_cmpuint(v.zero[0], ==, 100);
    g_assert_cmpuint(v.zero[1] + v.zero[2], ==, 0);
    g_assert_cmpuint(s->pages, ==, 2450);
    g_assert_cmpuint(s->processes[0].pages, ==, 1150);
    /* Nothing classified in visit mode. */
    g_assert_cmpuint(s->distinct + s->dup_within + s->dup_across + s->freeable_pages, ==, 0);
}

/* A hash of 8 bits: every page collides with ~5 others, and counts must not move. */
static guint64 tiny_hash(const void *p, gsize len, gpointer data)
{
    guint64 w[2];
    memcpy(w, (const guint8 *)p + len / 2, sizeof(w));
    (*(guint *)data)++;
    return splitmix(w[0] ^ w[1]) & 0xff;
}

static void test_collisions(Abc *f, gconstpointer data)
{
    KsmCensusOptions opts;
    guint calls = 0;
    ksm_census_options_init(&opts);
    opts.hash_func = tiny_hash;
    opts.hash_data = &calls;
    opts.chunk_bytes = 64 * page;
    g_autoptr(KsmCensus) s = abc_census(f, &opts);
    assert_abc_counts(s);
    /* Zero pages are recognised without hashing. */
    g_assert_cmpuint(calls, ==, 2450 - 100);
}

static void test_order(Abc *f, gconstpointer data)
{
    /* The same figures whatever the order of the targets (they are read in pid
     * order); A's copies of its own pages stay "within". */
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    KsmCensusTarget t[3] = { target_of(&f->c), target_of(&f->b), target_of(&f->a) };
    g_autoptr(KsmCensus) s = census_of(t, 3, &opts);
    g_assert_cmpuint(s->dup_within, ==, 50);
    g_assert_cmpuint(s->dup_across, ==, 1000);
    g_assert_cmpuint(s->distinct, ==, 1300);
    g_assert_cmpuint(s->processes[2].pid, ==, f->a.pid);
    g_assert_cmpuint(s->processes[2].dup_within, ==, 50);
    g_assert_cmpuint(s->processes[1].dup_across + s->processes[2].dup_across, ==, 1000);
    g_assert_cmpuint(s->processes[0].dup_within + s->processes[0].dup_across, ==, 0);
}

static void test_byte_limit(Abc *f, gconstpointer data)
{
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    opts.byte_limit = 1100 * page;
    g_autoptr(KsmCensus) s = abc_census(f, &opts);
    g_assert_true(s->truncated);
    g_assert_cmpuint(s->pages, ==, 1100);
    /* Targets are read in pid order; the first ones spawned have the lowest pids
     * unless pids wrapped, so only check the total. */
}

static void on_progress(const KsmCensusProgress *p, gpointer data)
{
    GArray *calls = data;
    g_array_append_val(calls, *p);
}

static void test_progress(Abc *f, gconstpointer data)
{
    KsmCensusOptions opts;
    g_autoptr(GArray) calls = g_array_new(FALSE, FALSE, sizeof(KsmCensusProgress));
    ksm_census_options_init(&opts);
    opts.progress = on_progress;
    opts.progress_data = calls;
    g_autoptr(KsmCensus) s = abc_census(f, &opts);

    g_assert_cmpuint(calls->len, >=, 1);
    const KsmCensusProgress *last = &g_array_index(calls, KsmCensusProgress, calls->len - 1);
    g_assert_true(last->finished);
    g_assert_cmpuint(last->bytes_done, ==, 2450 * page);
    g_assert_cmpuint(last->bytes_total, ==, 2450 * page);
    g_assert_cmpuint(last->n_targets, ==, 3);
}

/* ---- other cases with real processes ------------------------------------ */

/* The whole of A: its region and the rest (stack, heap, inherited data). */
static void test_whole_process(void)
{
    Child a = spawn(child_pages(CHILD_A), CHILD_A, NULL);
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    KsmCensusTarget t = { a.pid, 0, 0 };
    g_autoptr(KsmCensus) s = census_of(&t, 1, &opts);

    g_assert_cmpuint(s->pages, >=, 1150);
    g_assert_cmpuint(s->zero_pages, >=, 100);
    g_assert_cmpuint(s->dup_within, >=, 50);
    g_assert_cmpuint(s->dup_across, ==, 0);
    g_assert_cmpuint(s->processes[0].areas, >=, 2);
    /* ksm_stat is there on 6.1+: the merged figure is known one way or another. */
    if (s->processes[0].ksm_merging_pages >= 0 || s->frames_visible) {
        g_assert_cmpint(s->merged_pages, >=, 0);
    }
    reap(&a);
}

/* Two different pages whose hashes are forced equal are two contents. */
static guint64 constant_hash(const void *p, gsize len, gpointer data)
{
    return 42;
}

static void test_forced_equal_hash(void)
{
    guint8 *m = mmap(NULL, 8 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_true(m != MAP_FAILED);
    /* 0:X 1:Y 2:X 3:Z 4:Y 5:X 6:W 7:Z  -> 4 contents, 4 duplicates within */
    const guint contents[8] = { 0, 1, 0, 2, 1, 0, 3, 2 };
    for (guint i = 0; i < 8; i++) {
        fill_pattern(m + i * page, 7, contents[i]);
    }
    Child d = spawn(8, 0, m);
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    opts.hash_func = constant_hash;

    /* Chunk of 1 page: every comparison goes through a fetched or re-read copy. */
    for (gsize chunk = 1; chunk <= 8; chunk *= 8) {
        opts.chunk_bytes = chunk * page;
        KsmCensusTarget t = target_of(&d);
        g_autoptr(KsmCensus) s = census_of(&t, 1, &opts);
        g_assert_cmpuint(s->pages, ==, 8);
        g_assert_cmpuint(s->distinct, ==, 4);
        g_assert_cmpuint(s->dup_within, ==, 4);
        g_assert_cmpuint(s->unique_pages, ==, 1);
        g_assert_cmpuint(s->freeable_pages, ==, 4);
    }
    reap(&d);
    munmap(m, 8 * page);
}

/*
 * libksm's KPF_KSM probe against the test's own look: a written private page
 * that was never mergeable, its frame's flags read here.  Debian's 6.12.95
 * marks it KSM (every anonymous page), and libksm must then refuse exact
 * counts; 6.1 and 6.18 do not, and libksm must count.
 */
static void test_kpf_ksm_probe(void)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GError) why = NULL;
    guint8 *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    guint64 entry = 0, flags = 0;

    g_assert_true(p != MAP_FAILED);
    memset(p, 0x5a, page);
    int pm = ksm_pagemap_open(ctx, getpid(), NULL);
    int kpf = ksm_kpageflags_open(ctx);
    g_assert_cmpint(pm, >=, 0);
    g_assert_cmpint(kpf, >=, 0);
    g_assert_cmpuint(ksm_pagemap_read(pm, (guintptr)p / page, &entry, 1), ==, 1);
    guint64 pfn = entry & KSM_PM_PFN_MASK;
    close(pm);
    if (!(entry & KSM_PM_PRESENT) || pfn == 0) {
        close(kpf);
        munmap(p, page);
        g_test_skip("frame numbers hidden (not CAP_SYS_ADMIN)");
        return;
    }
    g_assert_true(ksm_kpageflags_read(kpf, &pfn, 1, &flags));
    close(kpf);
    gboolean marks_anon = (flags >> KSM_KPF_KSM) & 1;

    g_test_message("KPF_KSM on a plain private page: %s", marks_anon ? "yes" : "no");
    g_assert_cmpint(ksm_kpageflags_ksm_reliable(ctx, &why), ==, !marks_anon);
    if (marks_anon) {
        g_assert_error(why, KSM_ERROR, KSM_ERROR_UNAVAILABLE);
        KsmRangeCount rc;
        g_clear_error(&why);
        g_assert_false(ksm_range_count(ctx, getpid(), (guint64)(uintptr_t)p, page, &rc, &why));
        g_assert_nonnull(strstr(why->message, "KPF_KSM"));
    }
    munmap(p, page);
}

/*
 * Copy-on-write after fork: the test process and a child map the same
 * frames.  200 duplicates across, all of them already shared, none by KSM.
 */
static void test_fork_shared(void)
{
    gsize n = 200;
    g_autoptr(GError) why = NULL;
    if (!kpf_ksm_reliable(&why)) {
        g_test_skip(why->message);   /* the census falls back to the counters */
        return;
    }
    guint8 *m = mmap(NULL, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_true(m != MAP_FAILED);
    for (guint i = 0; i < n; i++) {
        fill_pattern(m + i * page, 3, i);
    }
    Child d = spawn(n, 0, m);
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    KsmCensusTarget t[2] = {
        { getpid(), (guint64)(uintptr_t)m, (guint64)(uintptr_t)m + n * page },
        target_of(&d),
    };
    g_autoptr(KsmCensus) s = census_of(t, 2, &opts);

    g_assert_cmpuint(s->pages, ==, 2 * n);
    g_assert_cmpuint(s->dup_across, ==, n);
    g_assert_cmpuint(s->freeable_pages, ==, n);
    if (!s->frames_visible) {
        g_test_message("frame numbers hidden (not CAP_SYS_ADMIN): sharing not checked");
    } else {
        g_assert_true(s->merged_exact);
        g_assert_cmpint(s->shared_other_pages, ==, n);
        g_assert_cmpint(s->merged_pages, ==, 0);
        g_assert_cmpint(s->ksm_frame_pages, ==, 0);
        /* The census leaves the sharing as it found it: a second one sees the same. */
        g_autoptr(KsmCensus) again = census_of(t, 2, &opts);
        g_assert_cmpint(again->shared_other_pages, ==, n);
    }
    reap(&d);
    munmap(m, n * page);
}

/* Never-touched pages use no memory: not read, not counted as zero pages. */
static void test_absent_pages(void)
{
    gsize n = 64;
    guint8 *m = mmap(NULL, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_true(m != MAP_FAILED);
    for (guint i = 0; i < n; i += 2) {
        fill_pattern(m + i * page, 4, i);
    }
    Child d = spawn(n, 0, m);
    munmap(m, n * page);   /* the child keeps its copy-on-write view */
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    KsmCensusTarget t = target_of(&d);
    g_autoptr(KsmCensus) s = census_of(&t, 1, &opts);
    g_assert_cmpuint(s->pages, ==, n / 2);
    g_assert_cmpuint(s->absent_pages, ==, n / 2);
    g_assert_cmpuint(s->zero_pages, ==, 0);
    reap(&d);
}

static void test_gone_process(void)
{
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    KsmCensusTarget t = { pid, 0, 0 };
    g_autoptr(KsmCensus) s = census_of(&t, 1, &opts);
    g_assert_true(s->processes[0].gone);
    g_assert_cmpuint(s->pages, ==, 0);
}

/* Only the areas registered with KSM (smaps VmFlags "mg"). */
static void test_mergeable_only(void)
{
    Child d = spawn(child_pages(CHILD_MG), CHILD_MG, NULL);
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    opts.mergeable_only = TRUE;
    KsmCensusTarget whole = { d.pid, 0, 0 };
    g_autoptr(KsmCensus) s = census_of(&whole, 1, &opts);

    /* madvise splits the area: the mergeable half is an area of its own. */
    g_assert_cmpuint(s->processes[0].areas, ==, 1);
    g_assert_cmpuint(s->processes[0].area_bytes, ==, 16 * page);
    g_assert_cmpuint(s->pages, ==, 16);
    g_assert_cmpuint(s->distinct, ==, 16);
    reap(&d);
}

/*
 * What KSM merged, counted from frame flags.  The test runs ksmd itself,
 * fast, with every knob saved first and put back before any assertion (an
 * assertion aborts the process: nothing after it would run).
 */
static void test_ksm_merged(void)
{
    g_autoptr(GError) why = NULL;
    if (!kpf_ksm_reliable(&why)) {
        g_test_skip(why->message);   /* this case checks KSM frames exactly */
        return;
    }
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GError) error = NULL;
    if (!ksm_writable(ctx, NULL)) {
        g_test_skip("the KSM knobs are not writable here (not root, or no KSM)");
        return;
    }
    Child d = spawn(child_pages(CHILD_KSM), CHILD_KSM, NULL);

    g_autoptr(KsmKnobState) saved = ksm_knobs_save(ctx, &error);
    g_assert_no_error(error);
    gint64 v;
    const char *fast[] = { "advisor_mode=none", "pages_to_scan=10000", "sleep_millisecs=10",
                           "run=1" };
    gboolean have_advisor = ksm_field_read(ctx, KSM_FIELD_ADVISOR_MODE, &v, NULL);
    gboolean set = ksm_knobs_set(ctx, have_advisor ? fast : fast + 1,
                                 have_advisor ? 4 : 3, NULL, NULL, &error);

    gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    gint64 merging = 0;
    while (set && g_get_monotonic_time() < deadline) {
        g_auto(KsmProcStat) st = { 0 };
        if (ksm_proc_stat_read(ctx, d.pid, &st, NULL) && st.present[KSM_PROC_MERGING_PAGES]) {
            merging = st.value[KSM_PROC_MERGING_PAGES];
        }
        if (merging == 64) {
            break;
        }
        g_usleep(50 * 1000);
    }
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    KsmCensusTarget t = target_of(&d);
    opts.targets = &t;
    opts.n_targets = 1;
    g_autoptr(GError) census_error = NULL;
    g_autoptr(KsmCensus) s = merging == 64 ? ksm_census_run(ctx, &opts, &census_error) : NULL;
    gint64 max_sharing = 0;
    ksm_field_read(ctx, KSM_FIELD_MAX_PAGE_SHARING, &max_sharing, NULL);
    KsmRangeCount rc = { 0 };
    gboolean counted = ksm_range_count(ctx, d.pid, d.addr, 64 * page, &rc, NULL);
    g_auto(KsmProcStat) after = { 0 };
    gboolean have_after = ksm_proc_stat_read(ctx, d.pid, &after, NULL);
    g_autoptr(GError) restore_error = NULL;
    gboolean restored = ksm_knobs_restore(ctx, saved, &restore_error);
    reap(&d);

    g_assert_no_error(restore_error);
    g_assert_true(restored);
    g_assert_no_error(error);
    g_assert_true(set);
    g_assert_cmpint(merging, ==, 64);
    g_assert_no_error(census_error);
    g_assert_nonnull(s);
    g_assert_cmpuint(s->distinct, ==, 2);
    g_assert_cmpuint(s->dup_within, ==, 62);
    g_assert_cmpuint(s->freeable_pages, ==, 62);
    /* Still all merged after the census: reading broke nothing apart.  (A
     * census that did leaves ksm_merging_pages at 64 until ksmd's next pass;
     * the frame count below is the real check.) */
    g_assert_true(have_after);
    g_assert_cmpint(after.value[KSM_PROC_MERGING_PAGES], ==, 64);
    g_assert_true(s->frames_visible);
    g_assert_true(s->merged_exact);
    g_assert_cmpint(s->ksm_frame_pages, ==, 64);
    if (max_sharing >= 32) {
        /* Two KSM pages replace 64: 62 saved, all of what could be. */
        g_assert_cmpint(s->merged_pages, ==, 62);
        g_assert_cmpfloat(s->ratio, ==, 1.0);
    } else {
        g_assert_cmpint(s->merged_pages, >, 0);
        g_assert_cmpint(s->merged_pages, <, 62);
    }
    g_assert_true(counted);
    g_assert_cmpuint(rc.ksm_pages, ==, 64);
}

/*
 * `samepage estimate --pid A --pid B --json` (the built samepage, from the
 * SAMEPAGE_CLI environment variable meson sets): the whole processes, so the
 * figures are at least those of their regions.
 */
static void test_cli_json(Abc *f, gconstpointer data)
{
    const char *samepage = g_getenv("SAMEPAGE_CLI");
    if (!samepage) {
        g_test_skip("SAMEPAGE_CLI is not set (meson sets it to the built samepage)");
        return;
    }
    g_autofree char *pid_a = g_strdup_printf("%d", (int)f->a.pid);
    g_autofree char *pid_b = g_strdup_printf("%d", (int)f->b.pid);
    const char *argv[] = { samepage, "estimate", "--pid", pid_a, "--pid", pid_b, "--json", NULL };
    g_autofree char *out = NULL, *err = NULL;
    g_autoptr(GError) error = NULL;
    int status;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                               &status, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(err, ==, "");   /* no tty, small input: no progress lines */
    g_assert_true(g_spawn_check_wait_status(status, &error));

    g_autoptr(JsonParser) parser = json_parser_new();
    g_assert_true(json_parser_load_from_data(parser, out, -1, &error));
    JsonObject *o = json_node_get_object(json_parser_get_root(parser));
    g_assert_cmpint(json_object_get_int_member(o, "pages"), >=, 2150);
    g_assert_cmpint(json_object_get_int_member(o, "zero_pages"), >=, 100);
    g_assert_cmpint(json_object_get_int_member(o, "dup_within_pages"), >=, 50);
    g_assert_cmpint(json_object_get_int_member(o, "dup_across_pages"), >=, 1000);
    g_assert_cmpint(json_object_get_int_member(o, "freeable_bytes"), >=,
                    (gint64)(1000 + 50) * (gint64)page);
    JsonArray *procs = json_object_get_array_member(o, "processes");
    g_assert_cmpuint(json_array_get_length(procs), ==, 2);

    /* No process named: a usage error, exit 2. */
    const char *bare[] = { samepage, "estimate", NULL };
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    g_assert_true(g_spawn_sync(NULL, (char **)bare, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                               &status, NULL));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 2);
}

/* ---- unit cases ------------------------------------------------------------ */

static const char maps_text[] =
    "55a060aff000-55a060b03000 r--p 00000000 fe:00 247476    /usr/bin/cat\n"
    "55a060b03000-55a060b04000 rw-p 00004000 fe:00 247476    /usr/bin/cat\n"
    "55a061000000-55a061021000 rw-p 00000000 00:00 0          [heap]\n"
    "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
    "7f0000100000-7f0000200000 rw-s 00000000 00:01 1234       /dev/zero (deleted)\n"
    "7f0000200000-7f0000300000 r--p 00000000 00:00 0 \n"
    "7f0000300000-7f0000400000 rw-p 00000000 00:00 0          [anon:guest ram]\n"
    "7f0000400000-7f0000500000 rw-p 00000000 00:00 0          [anon_shmem:x]\n"
    "7f0000500000-7f0000600000 rw-p 00000000 00:05 77         /memfd:ram (deleted)\n"
    "7ffd0c000000-7ffd0c021000 rw-p 00000000 00:00 0          [stack]\n"
    "7ffd0c100000-7ffd0c104000 r--p 00000000 00:00 0          [vvar]\n"
    "7ffd0c104000-7ffd0c106000 r-xp 00000000 00:00 0          [vdso]\n"
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]\n";

static void test_parse_maps(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GArray) areas = ksm_census_parse_areas(maps_text, FALSE, 0, 0, &error);

    g_assert_no_error(error);
    g_assert_cmpuint(areas->len, ==, 4);
    const KsmCensusArea *a = (const KsmCensusArea *)areas->data;
    g_assert_cmpstr(a[0].name, ==, "[heap]");
    g_assert_cmpuint(a[1].start, ==, G_GUINT64_CONSTANT(0x7f0000000000));
    g_assert_cmpuint(a[1].end, ==, G_GUINT64_CONSTANT(0x7f0000100000));
    g_assert_cmpstr(a[1].name, ==, "");
    g_assert_cmpstr(a[2].name, ==, "[anon:guest ram]");
    g_assert_cmpstr(a[3].name, ==, "[stack]");

    /* Clipped to a range that cuts two areas. */
    g_autoptr(GArray) clipped = ksm_census_parse_areas(maps_text, FALSE,
        G_GUINT64_CONSTANT(0x7f0000080000), G_GUINT64_CONSTANT(0x7f0000380000), &error);
    g_assert_no_error(error);
    g_assert_cmpuint(clipped->len, ==, 2);
    a = (const KsmCensusArea *)clipped->data;
    g_assert_cmpuint(a[0].start, ==, G_GUINT64_CONSTANT(0x7f0000080000));
    g_assert_cmpuint(a[0].end, ==, G_GUINT64_CONSTANT(0x7f0000100000));
    g_assert_cmpuint(a[1].start, ==, G_GUINT64_CONSTANT(0x7f0000300000));
    g_assert_cmpuint(a[1].end, ==, G_GUINT64_CONSTANT(0x7f0000380000));
}

static void test_parse_smaps_mergeable(void)
{
    static const char smaps[] =
        "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
        "Size:               1024 kB\n"
        "Anonymous:          1024 kB\n"
        "VmFlags: rd wr mr mw me ac sd mg\n"
        "7f0000100000-7f0000200000 rw-p 00000000 00:00 0 \n"
        "Size:               1024 kB\n"
        "AnonHugePages:         0 kB\n"
        "VmFlags: rd wr mr mw me ac sd\n"
        "7f0000300000-7f0000400000 rw-p 00000000 00:00 0          [heap]\n"
        "Size:               1024 kB\n"
        "VmFlags: rd wr mr mw me ac mg sd\n";
    g_autoptr(GError) error = NULL;
    g_autoptr(GArray) all = ksm_census_parse_areas(smaps, FALSE, 0, 0, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(all->len, ==, 3);

    g_autoptr(GArray) mg = ksm_census_parse_areas(smaps, TRUE, 0, 0, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(mg->len, ==, 2);
    g_assert_cmpuint(g_array_index(mg, KsmCensusArea, 0).start, ==,
                     G_GUINT64_CONSTANT(0x7f0000000000));
    g_assert_true(g_array_index(mg, KsmCensusArea, 1).mergeable);
    g_assert_cmpstr(g_array_index(mg, KsmCensusArea, 1).name, ==, "[heap]");

    /* maps text cannot say what is mergeable. */
    g_autoptr(GArray) none = ksm_census_parse_areas(maps_text, TRUE, 0, 0, &error);
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_assert_null(none);
}

static void test_pages_equal(void)
{
    g_autofree guint8 *a = g_malloc(page), *b = g_malloc(page);
    fill_pattern(a, 9, 1);
    memcpy(b, a, page);
    g_assert_true(ksm_census_pages_equal(a, b, page));
    /* One bit in the last byte is enough. */
    b[page - 1] ^= 0x80;
    g_assert_false(ksm_census_pages_equal(a, b, page));
}

static void test_no_targets(void)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GError) error = NULL;
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    g_assert_null(ksm_census_run(ctx, &opts, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_INVALID);
}

/* ---- main ------------------------------------------------------------------ */

/* Can this process read a child's memory?  NULL if yes, else why not. */
static char *why_unreadable(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) {
            pause();
        }
    }
    g_autofree char *path = g_strdup_printf("/proc/%d/mem", (int)pid);
    char *why = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        why = g_strdup_printf("cannot open %s: %s (needs root, or the same uid and "
                              "ptrace permission)", path, g_strerror(errno));
    } else {
        guint8 byte;
        /* &why lives on our stack, which the child has too. */
        if (pread(fd, &byte, 1, (off_t)(uintptr_t)&why) != 1) {
            why = g_strdup_printf("cannot read %s: %s", path, g_strerror(errno));
        }
        close(fd);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return why;
}

int main(int argc, char **argv)
{
    /* The process suite runs only where child memory is readable: else 77.
     * (Looked at before g_test_init, which takes -p out of argv.) */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "/census/process") == 0) {
            g_autofree char *why = why_unreadable();
            if (why) {
                printf("SKIP: %s\n", why);
                return 77;
            }
        }
    }
    g_test_init(&argc, &argv, NULL);
    page = (gsize)sysconf(_SC_PAGESIZE);

    g_test_add_func("/census/unit/parse-maps", test_parse_maps);
    g_test_add_func("/census/unit/parse-smaps-mergeable", test_parse_smaps_mergeable);
    g_test_add_func("/census/unit/pages-equal", test_pages_equal);
    g_test_add_func("/census/unit/no-targets", test_no_targets);

    g_test_add("/census/process/counts", Abc, NULL, abc_setup, test_counts, abc_teardown);
    g_test_add("/census/process/zero-modes", Abc, NULL, abc_setup, test_zero_modes, abc_teardown);
    g_test_add("/census/process/small-chunks", Abc, NULL, abc_setup, test_small_chunks,
               abc_teardown);
    g_test_add("/census/process/collisions", Abc, NULL, abc_setup, test_collisions,
               abc_teardown);
    g_test_add("/census/process/order", Abc, NULL, abc_setup, test_order, abc_teardown);
    g_test_add("/census/process/visit", Abc, NULL, abc_setup, test_visit, abc_teardown);
    g_test_add("/census/process/byte-limit", Abc, NULL, abc_setup, test_byte_limit,
               abc_teardown);
    g_test_add("/census/process/progress", Abc, NULL, abc_setup, test_progress, abc_teardown);
    g_test_add_func("/census/process/whole-process", test_whole_process);
    g_test_add_func("/census/process/forced-equal-hash", test_forced_equal_hash);
    g_test_add_func("/census/process/kpf-ksm-probe", test_kpf_ksm_probe);
    g_test_add_func("/census/process/fork-shared", test_fork_shared);
    g_test_add_func("/census/process/absent-pages", test_absent_pages);
    g_test_add_func("/census/process/gone-process", test_gone_process);
    g_test_add_func("/census/process/mergeable-only", test_mergeable_only);
    g_test_add_func("/census/process/ksm-merged", test_ksm_merged);
    g_test_add("/census/process/samepage-json", Abc, NULL, abc_setup, test_cli_json,
               abc_teardown);

    return g_test_run();
}
