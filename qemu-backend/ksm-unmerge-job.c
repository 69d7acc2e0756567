/*
 * samepage: ksm-unmerge, breaking a backend's KSM pages as a QEMU job.
 *
 * This is the safe way to unmerge (samepage's docs/scenarios.md, R14;
 * Andrea Arcangeli in "[PATCH 0/12] ksm: stats, oom, doc, misc", linux-mm,
 * 2009-08): MADV_UNMERGEABLE issued by the process that owns the
 * memory, so the copies are allocated in the right mm and charged to its
 * memory cgroup, and if memory runs out the OOM killer's choice is this
 * process, not a bystander.  The madvise runs in chunks in a thread the
 * command starts (ksm-thread.c), so the main loop (monitor, device
 * emulation) never waits on it; between chunks the job reports progress
 * and honours job-cancel.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "ksm-backend.h"
#include "qapi/qapi-commands-ksm.h"
#include "qemu/job.h"
#include "qemu/units.h"
#include "qemu/main-loop.h"
#include "qemu/error-report.h"
#include "hw/boards.h"

#include <ksm/ksm.h>

/*
 * Small enough for prompt cancel and smooth progress, large enough that
 * the hand-off to the thread costs nothing next to the copying.
 */
#define KSM_UNMERGE_CHUNK (16 * MiB)

typedef struct KsmUnmergeJob {
    Job common;
    KsmThread *thread;          /* the madvise calls run here */
    GArray *targets;            /* KsmBackendRange, backends referenced */
    /*
     * Per target, the parts registered with KSM before the job touched
     * them (KsmAddrRange), read from smaps in the worker: a cancel or
     * failure puts back exactly these.
     */
    GPtrArray *registered_before;
    /* Count the need exactly before starting (the cheap bound was over). */
    bool check_headroom;
    char *what;                 /* the targets, for messages */
    char *error;                /* set by the worker on failure */
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

static bool ksm_unmerge_headroom_error(KsmContext *ctx, uint64_t pages,
                                       bool exact, const char *what,
                                       char **error);

/*
 * In the job's thread, before the first chunk: what is registered with KSM
 * now (smaps), and, when the cheap bound of the need did not fit, the exact
 * need against the room there is.  Nothing is changed yet.
 */
static int ksm_unmerge_prepare_worker(void *opaque)
{
    KsmUnmergeJob *s = opaque;
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GError) err = NULL;
    g_autofree char *smaps = ksm_smaps_read(ctx, getpid(), &err);
    uint64_t pages = 0;

    if (!smaps) {
        s->error = g_strdup_printf("cannot read which memory is registered "
                                   "with KSM: %s", err->message);
        return -1;
    }
    for (guint i = 0; i < s->targets->len; i++) {
        KsmBackendRange *t = &g_array_index(s->targets, KsmBackendRange, i);
        GArray *parts = ksm_range_smaps_mergeable_parts(smaps,
                                                        (uintptr_t)t->host,
                                                        t->size, &err);
        KsmRangeCount count;

        if (!parts) {
            s->error = g_strdup_printf("cannot read which memory of '%s' is "
                                       "registered with KSM: %s", t->id,
                                       err->message);
            return -1;
        }
        g_ptr_array_add(s->registered_before, parts);
        if (!s->check_headroom) {
            continue;
        }
        if (!ksm_range_count(ctx, getpid(), (uintptr_t)t->host, t->size,
                             &count, &err)) {
            s->error = g_strdup_printf("ksm-unmerge of %s: cannot count the "
                                       "merged pages of '%s' (%s); "
                                       "force=true unmerges without the "
                                       "check", s->what, t->id, err->message);
            return -1;
        }
        pages += count.ksm_pages + count.zero_pages;
    }
    if (s->check_headroom &&
        ksm_unmerge_headroom_error(ctx, pages, true, s->what, &s->error)) {
        return -1;
    }
    return 0;
}

/*
 * Cancelled or failed part-way through target i: register again what the
 * job took out of KSM in [host, host + done), where it was registered
 * before, so the backend is as it was: pages not yet reached stayed
 * merged, the ones already copied may merge again when ksmd next scans
 * them.  A backend whose merge property is off is not registered again:
 * the job only did what the property asks (stock backends under the
 * machine's mem-merge=on are registered whatever merge says).
 */
static void ksm_unmerge_undo(KsmUnmergeJob *s, guint i, uint64_t done)
{
    KsmBackendRange *t = &g_array_index(s->targets, KsmBackendRange, i);
    GArray *parts = g_ptr_array_index(s->registered_before, i);
    uint64_t lo = (uintptr_t)t->host, hi = lo + done;

    if (!t->backend->merge) {
        return;
    }
    for (guint j = 0; j < parts->len; j++) {
        KsmAddrRange *p = &g_array_index(parts, KsmAddrRange, j);
        uint64_t a = MAX(p->start, lo), b = MIN(p->end, hi);
        g_autoptr(GError) err = NULL;

        if (a < b && !ksm_advise_mergeable((void *)(uintptr_t)a, b - a,
                                           &err)) {
            warn_report("ksm-unmerge: cannot register part of '%s' with KSM "
                        "again: %s", t->id, err->message);
        }
    }
}

static int coroutine_fn ksm_unmerge_run(Job *job, Error **errp)
{
    KsmUnmergeJob *s = container_of(job, KsmUnmergeJob, common);

    if (ksm_thread_run_co(s->thread, ksm_unmerge_prepare_worker, s) < 0) {
        error_setg(errp, "%s", s->error);
        return -EIO;
    }
    for (guint i = 0; i < s->targets->len; i++) {
        KsmBackendRange *t = &g_array_index(s->targets, KsmBackendRange, i);
        uint64_t done = 0;

        while (done < t->size) {
            KsmUnmergeChunk chunk = {
                .addr = (char *)t->host + done,
                .len = MIN(KSM_UNMERGE_CHUNK, t->size - done),
            };

            if (job_is_cancelled(job)) {
                ksm_unmerge_undo(s, i, done);
                return -ECANCELED;
            }
            if (ksm_thread_run_co(s->thread, ksm_unmerge_chunk_worker,
                                  &chunk) < 0) {
                error_setg(errp, "unmerging '%s' stopped at %" PRIu64
                           " of %" PRIu64 " bytes: %s", t->id, done, t->size,
                           chunk.error);
                g_free(chunk.error);
                ksm_unmerge_undo(s, i, done);
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

/* Concluded: the backends are free for another job, or to go away. */
static void ksm_unmerge_clean(Job *job)
{
    KsmUnmergeJob *s = container_of(job, KsmUnmergeJob, common);

    for (guint i = 0; i < s->targets->len; i++) {
        KsmBackendRange *t = &g_array_index(s->targets, KsmBackendRange, i);

        g_hash_table_remove(busy_backends, t->backend);
        object_unref(OBJECT(t->backend));
        t->backend = NULL;
    }
}

static void ksm_unmerge_free(Job *job)
{
    KsmUnmergeJob *s = container_of(job, KsmUnmergeJob, common);

    ksm_thread_free(s->thread);
    ksm_backend_ranges_free(s->targets);
    g_ptr_array_free(s->registered_before, true);
    g_free(s->what);
    g_free(s->error);
}

bool ksm_unmerge_busy(HostMemoryBackend *backend)
{
    return busy_backends && g_hash_table_contains(busy_backends, backend);
}

static const JobDriver ksm_unmerge_job_driver = {
    .instance_size = sizeof(KsmUnmergeJob),
    .job_type      = JOB_TYPE_KSM_UNMERGE,
    .run           = ksm_unmerge_run,
    .clean         = ksm_unmerge_clean,
    .free          = ksm_unmerge_free,
};

/*
 * Whether pages (a bound, or exact) may not fit in the room there is; if
 * so, *error says how much is needed and what there is.
 */
static bool ksm_unmerge_headroom_error(KsmContext *ctx, uint64_t pages,
                                       bool exact, const char *what,
                                       char **error)
{
    uint64_t needed = pages * ksm_context_page_size(ctx);
    g_autoptr(GError) err = NULL;
    g_autofree char *room_text = NULL;
    KsmHeadroom room;

    if (!ksm_headroom_read(ctx, getpid(), &room, &err)) {
        *error = g_strdup_printf("ksm-unmerge: cannot tell how much memory "
                                 "is available: %s; force=true unmerges "
                                 "without the check", err->message);
        return true;
    }
    if (needed <= room.headroom) {
        return false;
    }
    if (room.has_cgroup_limit) {
        room_text = g_strdup_printf("MemAvailable %" PRIu64 " MiB; memory "
                                    "cgroup limit %" PRIu64 " MiB with %"
                                    PRIu64 " MiB used",
                                    room.mem_available >> 20,
                                    room.cgroup_limit >> 20,
                                    room.cgroup_usage >> 20);
    } else {
        room_text = g_strdup_printf("MemAvailable %" PRIu64 " MiB; no memory "
                                    "cgroup limit", room.mem_available >> 20);
    }
    *error = g_strdup_printf("ksm-unmerge of %s refused: it may need %" PRIu64
                             " MiB (%" PRIu64 " merged pages%s) but only %"
                             PRIu64 " MiB is available (%s)", what,
                             needed >> 20, pages, exact ? ", counted" :
                             " in this process", room.headroom >> 20,
                             room_text);
    return true;
}

/*
 * The check that costs nothing: this process's merged and KSM zero pages
 * bound what any of its backends may need.  When the bound fits, or when
 * the targets are all the process may have merged, it decides here; else
 * the job counts the targets exactly in its worker before it starts.
 */
static bool ksm_unmerge_check_headroom(KsmContext *ctx, GArray *targets,
                                       bool all, const char *what,
                                       bool *check_in_job, Error **errp)
{
    g_auto(KsmProcStat) st = { 0 };
    g_autofree char *error = NULL;
    g_autoptr(GError) err = NULL;
    GArray *ranges;
    const KsmBackendRange *sole;
    bool attributable;

    *check_in_job = false;
    if (!ksm_proc_stat_read(ctx, getpid(), &st, &err)) {
        /* No counters: only the job's exact count can tell. */
        *check_in_job = true;
        return true;
    }
    if (!ksm_unmerge_headroom_error(ctx, st.value[KSM_PROC_MERGING_PAGES] +
                                    st.value[KSM_PROC_ZERO_PAGES], false,
                                    what, &error)) {
        return true;
    }
    ranges = ksm_backend_ranges();
    sole = ksm_backend_sole_mergeable(ranges);
    attributable = st.merge_any == 0 &&
        ((all && !machine_mem_merge(current_machine)) ||
         (sole && targets->len == 1 &&
          g_array_index(targets, KsmBackendRange, 0).backend == sole->backend));
    ksm_backend_ranges_free(ranges);
    if (!attributable) {
        *check_in_job = true;
        return true;
    }
    error_setg(errp, "%s", error);
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
    KsmThread *thread;
    KsmUnmergeJob *s;
    uint64_t total = 0;
    int flags = JOB_DEFAULT;
    bool check_in_job = false;

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
        !ksm_unmerge_check_headroom(ctx, targets, !id,
                                    id ? id : "all backends", &check_in_job,
                                    errp)) {
        goto fail;
    }
    if (has_auto_dismiss && !auto_dismiss) {
        flags |= JOB_MANUAL_DISMISS;
    }
    thread = ksm_thread_new("ksm-unmerge", errp);
    if (!thread) {
        goto fail;
    }
    s = job_create(job_id ? job_id : "ksm-unmerge", &ksm_unmerge_job_driver,
                   NULL, qemu_get_aio_context(), flags, NULL, NULL, errp);
    if (!s) {
        ksm_thread_free(thread);
        goto fail;
    }
    s->thread = thread;
    s->targets = targets;
    s->registered_before = g_ptr_array_new_with_free_func(
        (GDestroyNotify)g_array_unref);
    s->check_headroom = check_in_job;
    s->what = g_strdup(id ? id : "all backends");
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
