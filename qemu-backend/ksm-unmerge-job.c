/*
 * samepage: ksm-unmerge, breaking a backend's KSM pages as a QEMU job.
 *
 * This is the safe way to unmerge (samepage's docs/scenarios.md, R14;
 * Andrea Arcangeli in "[PATCH 0/12] ksm: stats, oom, doc, misc", linux-mm,
 * 2009-08): MADV_UNMERGEABLE issued by the process that owns the
 * memory, so the copies are allocated in the right mm and charged to its
 * memory cgroup, and if memory runs out the OOM killer's choice is this
 * process, not a bystander.  The madvise runs in chunks in the thread pool,
 * so the main loop (monitor, device emulation) never waits on it; between
 * chunks the job reports progress and honours job-cancel.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "ksm-backend.h"
#include "qapi/qapi-commands-ksm.h"
#include "qemu/job.h"
#include "qemu/units.h"
#include "qemu/main-loop.h"
#include "block/thread-pool.h"

#include <ksm/ksm.h>

/* Small enough for prompt cancel and smooth progress, large enough that
 * the thread pool hand-off costs nothing next to the copying. */
#define KSM_UNMERGE_CHUNK (16 * MiB)

typedef struct KsmUnmergeJob {
    Job common;
    GArray *targets;            /* KsmBackendRange, backends referenced */
} KsmUnmergeJob;

typedef struct KsmUnmergeChunk {
    void *addr;
    size_t len;
    char *error;                /* set by the worker on failure */
} KsmUnmergeChunk;

/* Backends an unmerge job is working on, so two jobs never share one. */
static GHashTable *busy_backends;

static int ksm_unmerge_chunk_worker(void *opaque)
{
    KsmUnmergeChunk *chunk = opaque;
    g_autoptr(GError) err = NULL;

    if (!ksm_advise_unmergeable(chunk->addr, chunk->len, &err)) {
        chunk->error = g_strdup(err->message);
        return -1;
    }
    return 0;
}

/*
 * Cancelled or failed part-way: mark what was already unmerged mergeable
 * again, so the backend is uniformly what its merge property (still on)
 * says.  Pages not yet reached stayed merged; the ones already copied may
 * merge again when ksmd next scans them.
 */
static void ksm_unmerge_undo(KsmBackendRange *t, uint64_t done)
{
    if (done) {
        ksm_advise_mergeable(t->host, done, NULL);
    }
}

static int coroutine_fn ksm_unmerge_run(Job *job, Error **errp)
{
    KsmUnmergeJob *s = container_of(job, KsmUnmergeJob, common);

    for (guint i = 0; i < s->targets->len; i++) {
        KsmBackendRange *t = &g_array_index(s->targets, KsmBackendRange, i);
        uint64_t done = 0;

        while (done < t->size) {
            KsmUnmergeChunk chunk = {
                .addr = (char *)t->host + done,
                .len = MIN(KSM_UNMERGE_CHUNK, t->size - done),
            };

            if (job_is_cancelled(job)) {
                ksm_unmerge_undo(t, done);
                return -ECANCELED;
            }
            if (ksm_compat_thread_pool_submit_co(ksm_unmerge_chunk_worker,
                                                 &chunk) < 0) {
                error_setg(errp, "unmerging '%s' stopped at %" PRIu64
                           " of %" PRIu64 " bytes: %s", t->id, done, t->size,
                           chunk.error);
                g_free(chunk.error);
                ksm_unmerge_undo(t, done);
                return -EIO;
            }
            done += chunk.len;
            job_progress_update(job, chunk.len);
            job_pause_point(job);
        }
        /* Whole range done: it is no longer mergeable, and says so. */
        t->backend->merge = false;
    }
    return 0;
}

static void ksm_unmerge_free(Job *job)
{
    KsmUnmergeJob *s = container_of(job, KsmUnmergeJob, common);

    for (guint i = 0; i < s->targets->len; i++) {
        KsmBackendRange *t = &g_array_index(s->targets, KsmBackendRange, i);

        g_hash_table_remove(busy_backends, t->backend);
        object_unref(OBJECT(t->backend));
    }
    ksm_backend_ranges_free(s->targets);
}

static const JobDriver ksm_unmerge_job_driver = {
    .instance_size = sizeof(KsmUnmergeJob),
    .job_type      = JOB_TYPE_KSM_UNMERGE,
    .run           = ksm_unmerge_run,
    .free          = ksm_unmerge_free,
};

/* Pages the unmerge may have to allocate: the KSM (and zero) pages in the
 * ranges, exactly when we may read frame numbers, else this process's
 * merging pages as an upper bound. */
static uint64_t ksm_unmerge_needed_pages(KsmContext *ctx, GArray *targets)
{
    uint64_t pages = 0;

    for (guint i = 0; i < targets->len; i++) {
        KsmBackendRange *t = &g_array_index(targets, KsmBackendRange, i);
        KsmRangeCount count;

        if (!ksm_range_count(ctx, getpid(), (uintptr_t)t->host, t->size,
                             &count, NULL)) {
            g_auto(KsmProcStat) st = { 0 };

            if (!ksm_proc_stat_read(ctx, getpid(), &st, NULL)) {
                return 0;
            }
            return st.value[KSM_PROC_MERGING_PAGES] +
                   st.value[KSM_PROC_ZERO_PAGES];
        }
        pages += count.ksm_pages + count.zero_pages;
    }
    return pages;
}

static bool ksm_unmerge_check_headroom(KsmContext *ctx, GArray *targets,
                                       const char *what, Error **errp)
{
    uint64_t page = ksm_context_page_size(ctx);
    uint64_t pages = ksm_unmerge_needed_pages(ctx, targets);
    uint64_t needed = pages * page;
    g_autoptr(GError) err = NULL;
    KsmHeadroom room;

    if (!ksm_headroom_read(ctx, getpid(), &room, &err)) {
        error_setg(errp, "ksm-unmerge: cannot tell how much memory is "
                   "available: %s", err->message);
        error_append_hint(errp, "force=true unmerges without the check\n");
        return false;
    }
    if (needed <= room.headroom) {
        return true;
    }
    if (room.has_cgroup_limit) {
        error_setg(errp, "ksm-unmerge of %s refused: it may need %" PRIu64
                   " MiB (%" PRIu64 " merged pages) but only %" PRIu64
                   " MiB is available (MemAvailable %" PRIu64 " MiB; memory "
                   "cgroup limit %" PRIu64 " MiB with %" PRIu64 " MiB used)",
                   what, needed >> 20, pages, room.headroom >> 20,
                   room.mem_available >> 20, room.cgroup_limit >> 20,
                   room.cgroup_usage >> 20);
    } else {
        error_setg(errp, "ksm-unmerge of %s refused: it may need %" PRIu64
                   " MiB (%" PRIu64 " merged pages) but only %" PRIu64
                   " MiB is available (MemAvailable %" PRIu64 " MiB; no "
                   "memory cgroup limit)", what, needed >> 20, pages,
                   room.headroom >> 20, room.mem_available >> 20);
    }
    error_append_hint(errp, "Free memory or raise the limit, or pass "
                      "force=true to unmerge anyway (the OOM killer may "
                      "then stop this QEMU).\n");
    return false;
}

void qmp_ksm_unmerge(KSM_COMPAT_OPT_STR(id), KSM_COMPAT_OPT_STR(job_id),
                     bool has_force, bool force,
                     bool has_auto_dismiss, bool auto_dismiss, Error **errp)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    GArray *targets;
    KsmUnmergeJob *s;
    uint64_t total = 0;
    int flags = JOB_DEFAULT;

    if (!busy_backends) {
        busy_backends = g_hash_table_new(NULL, NULL);
    }
    if (id) {
        KsmBackendRange range;

        if (!ksm_backend_range_find(id, &range, errp)) {
            return;
        }
        targets = g_array_new(false, true, sizeof(KsmBackendRange));
        g_array_append_val(targets, range);
    } else {
        targets = ksm_backend_ranges();
        for (guint i = targets->len; i-- > 0;) {
            if (!g_array_index(targets, KsmBackendRange, i).host) {
                g_free(g_array_index(targets, KsmBackendRange, i).id);
                g_array_remove_index(targets, i);
            }
        }
    }
    for (guint i = 0; i < targets->len; i++) {
        KsmBackendRange *t = &g_array_index(targets, KsmBackendRange, i);
        const char *other = g_hash_table_lookup(busy_backends, t->backend);

        if (other) {
            error_setg(errp, "memory backend '%s' is already being unmerged "
                       "by job '%s'", t->id, other);
            goto fail;
        }
        total += t->size;
    }
    if (!(has_force && force) &&
        !ksm_unmerge_check_headroom(ctx, targets, id ? id : "all backends",
                                    errp)) {
        goto fail;
    }
    if (has_auto_dismiss && !auto_dismiss) {
        flags |= JOB_MANUAL_DISMISS;
    }
    s = job_create(job_id ? job_id : "ksm-unmerge", &ksm_unmerge_job_driver,
                   NULL, qemu_get_aio_context(), flags, NULL, NULL, errp);
    if (!s) {
        goto fail;
    }
    s->targets = targets;
    for (guint i = 0; i < targets->len; i++) {
        KsmBackendRange *t = &g_array_index(targets, KsmBackendRange, i);

        object_ref(OBJECT(t->backend));
        g_hash_table_insert(busy_backends, t->backend, (char *)s->common.id);
    }
    job_progress_set_remaining(&s->common, total);
    job_start(&s->common);
    return;

fail:
    ksm_backend_ranges_free(targets);
}
