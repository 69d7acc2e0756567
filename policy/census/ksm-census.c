/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-census.c: the page census (definitions in ksm/ksm-census.h).
 *
 * For each target: its areas (ksm-census-areas.c), then pagemap in windows
 * to find the pages present in RAM, then /proc/PID/mem in large preads of
 * present runs (one syscall per 1 MiB chunk, not one per page: reading is
 * the cost that bounds the census).  Each chunk is classified in two passes
 * so that confirming duplicates does not cost a syscall each:
 *   1. zero test and hash of every page; for each hash already in the table
 *      note where its first copy is, unless that copy is in this chunk or
 *      cached (ksm-census-refs.c);
 *   2. fetch those first copies together, then walk the pages in order:
 *      confirm byte for byte, count, insert new contents.
 * Pass 2 sees entries that pass 1 did not (a content first seen earlier in
 * the same chunk: its copy is in the buffer) and more than one entry per
 * hash (a collision: the others' copies are read one by one, rare).
 *
 * Targets of the same pid are read one after the other, whatever their
 * order, so "seen earlier in this process" is one comparison per entry.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#ifdef HAVE_XXH3_DISPATCH
#include <xxh_x86dispatch.h>   /* runtime choice of SSE2/AVX2/AVX512 */
#endif

#include "ksm-census-private.h"

#define DEFAULT_CHUNK   (1024 * 1024)
#define PAGEMAP_WINDOW  8192                  /* pages per pagemap read (64 KiB of entries) */
#define PROGRESS_EVERY  (64 * 1024 * 1024)    /* bytes between progress calls */

void ksm_census_options_init(KsmCensusOptions *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->zero_mode = KSM_CENSUS_ZERO_TO_ZERO_PAGE;
}

gboolean ksm_census_pages_equal(const void *a, const void *b, gsize page_size)
{
    return memcmp(a, b, page_size) == 0;
}

static inline guint64 page_hash(const Census *c, const guint8 *p)
{
    if (G_UNLIKELY(c->opts->hash_func)) {
        return c->opts->hash_func(p, c->page, c->opts->hash_data);
    }
#ifdef HAVE_XXH3_DISPATCH
    return XXH3_64bits_dispatch(p, c->page);
#else
    return XXH3_64bits(p, c->page);
#endif
}

/* Most pages differ from zero in their first bytes: one load decides. */
static inline gboolean page_is_zero(const Census *c, const guint8 *p)
{
    guint64 head;
    memcpy(&head, p, sizeof(head));
    return head == 0 && memcmp(p, c->zero_page, c->page) == 0;
}

static void report_progress(Census *c, gboolean finished)
{
    if (!c->opts->progress) {
        return;
    }
    KsmCensusProgress p = {
        .bytes_done = c->bytes_done,
        .bytes_total = MAX(c->bytes_total, c->bytes_done),
        .target_index = c->current,
        .n_targets = c->opts->n_targets,
        .pid = c->targets[MIN(c->current, c->opts->n_targets - 1)].pid,
        .finished = finished,
    };
    c->opts->progress(&p, c->opts->progress_data);
}

/* ---- opening the targets ------------------------------------------------ */

static gboolean open_proc_file(const KsmContext *ctx, pid_t pid, const char *name, int *fd,
                               gboolean *gone, GError **error)
{
    g_autofree char *path = ksm_proc_path(ctx, pid, name);

    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd >= 0) {
        return TRUE;
    }
    if (errno == ENOENT || errno == ESRCH) {
        *gone = TRUE;
        return TRUE;
    }
    if (errno == EACCES || errno == EPERM) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_PERMISSION,
                    "cannot read the memory of process %d (%s: %s): the census needs "
                    "root, or the same user and ptrace permission", (int)pid, path,
                    g_strerror(errno));
        return FALSE;
    }
    return ksm_set_errno_error(error, errno, "cannot open", path);
}

static gboolean open_target(Census *c, guint i, GError **error)
{
    const KsmCensusTarget *kt = &c->opts->targets[i];
    KsmCensusProcess *pr = &c->out->processes[i];
    Target *t = &c->targets[i];
    GError *local = NULL;

    t->pid = kt->pid;
    t->mem_fd = t->pm_fd = -1;
    g_autofree char *text = ksm_read_proc(c->ctx, kt->pid,
                                          c->opts->mergeable_only ? "smaps" : "maps", NULL, &local);
    if (!text) {
        if (g_error_matches(local, KSM_ERROR, KSM_ERROR_NO_PROCESS)) {
            g_clear_error(&local);
            pr->gone = TRUE;
            return TRUE;
        }
        g_propagate_error(error, local);
        return FALSE;
    }
    t->areas = ksm_census_parse_areas(text, c->opts->mergeable_only, kt->start, kt->end, error);
    if (!t->areas) {
        return FALSE;
    }
    if (!open_proc_file(c->ctx, kt->pid, "mem", &t->mem_fd, &pr->gone, error) ||
        !open_proc_file(c->ctx, kt->pid, "pagemap", &t->pm_fd, &pr->gone, error)) {
        return FALSE;
    }
    for (guint a = 0; a < t->areas->len; a++) {
        const KsmCensusArea *area = &g_array_index(t->areas, KsmCensusArea, a);
        pr->area_bytes += area->end - area->start;
    }
    pr->areas = t->areas->len;
    return TRUE;
}

/*
 * Bytes a target will probably read, for the table size and the progress
 * total: its areas' size, but no more than the process's resident
 * anonymous memory (RssAnon in /proc/PID/status), since only present pages
 * are read.  An estimate on purpose: counting present pages exactly would
 * read all of pagemap twice, ~10% of the census's time; the table grows if
 * the estimate was low and the progress total is raised to what was read.
 */
static guint64 estimate_bytes(Census *c, guint i)
{
    const KsmCensusProcess *pr = &c->out->processes[i];
    g_autofree char *status = ksm_read_proc(c->ctx, pr->pid, "status", NULL, NULL);
    const char *line = status ? strstr(status, "\nRssAnon:") : NULL;
    guint64 rss_kib;

    if (line && sscanf(line, "\nRssAnon: %" G_GUINT64_FORMAT " kB", &rss_kib) == 1) {
        return MIN(pr->area_bytes, rss_kib * 1024);
    }
    return pr->area_bytes;
}

/* ---- pass 1: zero test, hash, which first copies to fetch --------------- */

static void pass1(Census *c, guint target, guint64 addr, gsize n)
{
    /*
     * Hash the whole chunk first and prefetch each hash's table slot: the
     * table is far larger than the caches, and a lookup is a cache miss that
     * the prefetches overlap with the hashing of the following pages.
     */
    for (gsize i = 0; i < n; i++) {
        const guint8 *p = c->buf + i * c->page;
        c->is_zero[i] = page_is_zero(c, p);
        if (!c->is_zero[i]) {
            c->hashes[i] = page_hash(c, p);
            __builtin_prefetch(&c->table.slots[census_table_home(&c->table, c->hashes[i])]);
        }
    }
    c->n_fetch = 0;
    for (gsize i = 0; i < n; i++) {
        if (c->is_zero[i]) {
            continue;
        }
        guint64 h = c->hashes[i];
        guint64 pos = census_table_home(&c->table, h);
        CensusEntry *e;
        while ((e = census_table_next(&c->table, h, &pos)) && (e->pfn_listed & ENTRY_STALE)) {
        }
        if (e) {
            census_refs_plan(c, e, target, addr, n);
        }
    }
}

static void list_pfn(Census *c, guint64 pfn)
{
    g_array_append_val(c->dup_pfns, pfn);
}

static void pass2(Census *c, guint target, guint64 addr, gsize n, const guint64 *pm)
{
    KsmCensusProcess *pr = &c->out->processes[target];
    pid_t pid = c->targets[target].pid;
    gboolean frames = c->frames.visible;

    for (gsize i = 0; i < n; i++) {
        const guint8 *p = c->buf + i * c->page;
        guint64 pfn = frames ? pm[i] & KSM_PM_PFN_MASK : 0;

        pr->pages++;
        if (c->is_zero[i]) {
            pr->zero_pages++;
            if (census_frames_is_zero(&c->frames, pfn)) {
                pr->zero_mapped_pages++;
            } else if (frames && c->opts->zero_mode != KSM_CENSUS_ZERO_EXCLUDE) {
                list_pfn(c, pfn);   /* zero pages on a shared KSM frame (use_zero_pages=0) */
            }
            continue;
        }

        guint64 h = c->hashes[i];
        guint64 pos = census_table_home(&c->table, h);
        CensusEntry *e, *match = NULL, *stale = NULL;
        while ((e = census_table_next(&c->table, h, &pos))) {
            if (e->pfn_listed & ENTRY_STALE) {
                continue;
            }
            const guint8 *ref = census_ref_bytes(c, e, target, addr, n);
            if (!ref) {
                stale = e;
            } else if (ksm_census_pages_equal(ref, p, c->page)) {
                match = e;
                break;
            }
        }
        if (match) {
            match->count++;
            if (match->count >= 3) {
                census_refs_remember(c, match, p);   /* equal bytes: p will do */
            }
            if (match->last_pid == pid) {
                pr->dup_within++;
            } else {
                pr->dup_across++;
                match->last_pid = pid;
            }
            if (frames) {
                if (!(match->pfn_listed & ENTRY_PFN_LISTED)) {
                    match->pfn_listed |= ENTRY_PFN_LISTED;
                    list_pfn(c, match->pfn);
                }
                list_pfn(c, pfn);
            }
            continue;
        }
        if (stale) {
            /* Its first copy went away: this page cannot be confirmed against it. */
            stale->pfn_listed |= ENTRY_STALE;
            c->out->unconfirmed_pages++;
        }
        e = census_table_insert(&c->table, h);
        e->vaddr = addr + i * c->page;
        e->pfn = pfn;
        e->ref_target = target;
        e->last_pid = pid;
    }
}

/* ---- reading ------------------------------------------------------------ */

static void read_chunk(Census *c, guint target, guint64 addr, gsize n, const guint64 *pm)
{
    Target *t = &c->targets[target];
    KsmCensusProcess *pr = &c->out->processes[target];

    while (n > 0) {
        errno = 0;
        gsize got = ksm_pread_full(t->mem_fd, c->buf, n * c->page, addr) / c->page;
        if (got > 0 && c->opts->visit) {
            pr->pages += got;
            c->opts->visit(target, addr, c->buf, got, c->opts->visit_data);
            c->bytes_done += got * c->page;
        } else if (got > 0) {
            pass1(c, target, addr, got);
            census_refs_fetch(c);
            pass2(c, target, addr, got, pm);
            c->bytes_done += got * c->page;
        }
        if (got == n) {
            break;
        }
        if (got == 0 && errno == 0) {
            /* End of file: the address space is gone (the process exited). */
            pr->gone = TRUE;
            pr->unreadable_pages += n;
            return;
        }
        /* EIO: the page after the good ones is not there any more. */
        pr->unreadable_pages++;
        addr += (got + 1) * c->page;
        pm += got + 1;
        n -= got + 1;
    }
    if (c->bytes_done >= c->next_progress) {
        report_progress(c, FALSE);
        c->next_progress = c->bytes_done + PROGRESS_EVERY;
    }
}

/* Present runs of one pagemap window, in chunks; absent and swapped counted. */
static void read_window(Census *c, guint target, guint64 vpn, gsize n)
{
    KsmCensusProcess *pr = &c->out->processes[target];
    const guint64 *pm = c->pagemap;

    for (gsize i = 0; i < n && !c->stop;) {
        if (!(pm[i] & KSM_PM_PRESENT)) {
            if (pm[i] & KSM_PM_SWAP) {
                pr->swapped_pages++;
            } else {
                pr->absent_pages++;
            }
            i++;
            continue;
        }
        gsize j = i + 1;
        while (j < n && j - i < c->chunk_pages && (pm[j] & KSM_PM_PRESENT)) {
            j++;
        }
        if (c->opts->byte_limit) {
            guint64 left = c->opts->byte_limit > c->bytes_done
                           ? (c->opts->byte_limit - c->bytes_done) / c->page : 0;
            if (left < j - i) {
                j = i + left;
                c->stop = TRUE;
                c->out->truncated = TRUE;
            }
        }
        if (j > i) {
            read_chunk(c, target, (vpn + i) * c->page, j - i, pm + i);
        }
        if (c->out->processes[target].gone) {
            return;
        }
        i = j;
    }
}

static void read_target(Census *c, guint target)
{
    Target *t = &c->targets[target];
    KsmCensusProcess *pr = &c->out->processes[target];

    for (guint a = 0; !pr->gone && !c->stop && a < t->areas->len; a++) {
        const KsmCensusArea *area = &g_array_index(t->areas, KsmCensusArea, a);
        guint64 end = area->end / c->page;
        for (guint64 vpn = area->start / c->page; vpn < end && !pr->gone && !c->stop;) {
            gsize n = MIN(PAGEMAP_WINDOW, end - vpn);
            errno = 0;
            if (ksm_pagemap_read(t->pm_fd, vpn, c->pagemap, n) != n) {
                /* pagemap ends only when the process has gone. */
                pr->gone = errno == 0 || errno == ESRCH;
                pr->unreadable_pages += end - vpn;
                break;
            }
            read_window(c, target, vpn, n);
            vpn += n;
        }
    }
}

/* ---- the run ------------------------------------------------------------ */

static int compare_order(const void *a, const void *b, void *data)
{
    const KsmCensusTarget *t = data;
    guint x = *(const guint *)a, y = *(const guint *)b;
    if (t[x].pid != t[y].pid) {
        return t[x].pid < t[y].pid ? -1 : 1;
    }
    return x < y ? -1 : x > y;
}

static void census_clear(Census *c)
{
    for (guint i = 0; c->targets && i < c->opts->n_targets; i++) {
        if (c->targets[i].mem_fd >= 0) {
            close(c->targets[i].mem_fd);
        }
        if (c->targets[i].pm_fd >= 0) {
            close(c->targets[i].pm_fd);
        }
        if (c->targets[i].areas) {
            g_array_unref(c->targets[i].areas);
        }
    }
    g_free(c->targets);
    census_table_clear(&c->table);
    if (c->dup_pfns) {
        g_array_unref(c->dup_pfns);
    }
    free(c->buf);
    free(c->fetch_buf);
    free(c->tmp_page);
    free(c->zero_page);
    g_free(c->hashes);
    g_free(c->is_zero);
    g_free(c->fetch);
    g_free(c->pagemap);
    census_refs_free(c);
}

static void census_alloc(Census *c)
{
    gsize chunk = c->opts->chunk_bytes ? c->opts->chunk_bytes : DEFAULT_CHUNK;

    c->chunk_pages = MAX(chunk / c->page, 1);
    /* Page-aligned: the kernel copies whole pages into them. */
    c->buf = aligned_alloc(c->page, c->chunk_pages * c->page);
    c->fetch_buf = aligned_alloc(c->page, c->chunk_pages * c->page);
    c->tmp_page = aligned_alloc(c->page, c->page);
    c->zero_page = aligned_alloc(c->page, c->page);
    if (!c->buf || !c->fetch_buf || !c->tmp_page || !c->zero_page) {
        g_error("ksm census: out of memory for %zu-byte buffers", c->chunk_pages * c->page);
    }
    memset(c->zero_page, 0, c->page);
    c->hashes = g_new(guint64, c->chunk_pages);
    c->is_zero = g_new(guint8, c->chunk_pages);
    c->fetch = g_new(RefFetch, c->chunk_pages);
    c->pagemap = g_new(guint64, PAGEMAP_WINDOW);
    c->dup_pfns = g_array_new(FALSE, FALSE, sizeof(guint64));
    census_refs_alloc(c);
}

KsmCensus *ksm_census_run(const KsmContext *ctx, const KsmCensusOptions *opts, GError **error)
{
    Census c = { .ctx = ctx, .opts = opts, .page = ksm_context_page_size(ctx) };
    KsmCensus *out;

    if (opts->n_targets == 0 || !opts->targets) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID, "the census needs at least one process");
        return NULL;
    }
    out = c.out = g_new0(KsmCensus, 1);
    out->page_size = c.page;
    out->zero_mode = opts->zero_mode;
    out->max_page_sharing = opts->max_page_sharing;
    out->n_processes = opts->n_targets;
    out->processes = g_new0(KsmCensusProcess, opts->n_targets);
    c.targets = g_new0(Target, opts->n_targets);
    for (guint i = 0; i < opts->n_targets; i++) {
        out->processes[i].pid = opts->targets[i].pid;
        out->processes[i].start = opts->targets[i].start;
        out->processes[i].end = opts->targets[i].end;
        c.targets[i].mem_fd = c.targets[i].pm_fd = -1;
    }
    census_alloc(&c);
    census_frames_probe(ctx, &c.frames);
    out->frames_visible = c.frames.visible;

    for (guint i = 0; i < opts->n_targets; i++) {
        if (!open_target(&c, i, error)) {
            census_clear(&c);
            ksm_census_free(out);
            return NULL;
        }
    }
    for (guint i = 0; i < opts->n_targets; i++) {
        if (!out->processes[i].gone) {
            c.bytes_total += estimate_bytes(&c, i);
        }
    }
    if (opts->byte_limit) {
        c.bytes_total = MIN(c.bytes_total, opts->byte_limit / c.page * c.page);
    }
    /* Visit mode keeps no contents: a minimal table. */
    census_table_init(&c.table, opts->visit ? 0 : c.bytes_total / c.page);
    c.next_progress = PROGRESS_EVERY;

    g_autofree guint *order = g_new(guint, opts->n_targets);
    for (guint i = 0; i < opts->n_targets; i++) {
        order[i] = i;
    }
    qsort_r(order, opts->n_targets, sizeof(guint), compare_order, (void *)opts->targets);

    gint64 t0 = g_get_monotonic_time();
    for (guint k = 0; k < opts->n_targets && !c.stop; k++) {
        c.current = order[k];
        if (!out->processes[order[k]].gone) {
            read_target(&c, order[k]);
        }
    }
    out->seconds = (double)(g_get_monotonic_time() - t0) / 1e6;
    report_progress(&c, TRUE);

    census_results(&c);
    census_clear(&c);
    return out;
}

void ksm_census_free(KsmCensus *census)
{
    if (!census) {
        return;
    }
    g_free(census->processes);
    g_free(census);
}
