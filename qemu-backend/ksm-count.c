/*
 * samepage: exact per-backend page counts, walked in a thread.
 *
 * Counting a backend's merged pages exactly means reading one pagemap
 * entry per page of guest memory and the flags of every frame found: tens
 * of milliseconds per GiB, which the main loop (monitor, device emulation)
 * must never wait for.  A walk runs in a thread of its own (ksm-thread.c
 * says why not in QEMU's thread pool).  The main loop starts it, with
 * every backend referenced so that object-del during the walk leaves the
 * memory mapped until it ends, and then keeps its result:
 * answers carry the latest finished walk's counts at once, with their age,
 * and callers asking while a walk runs share it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "ksm-backend.h"
#include "qemu/coroutine.h"
#include "qemu/timer.h"

static KsmCount *running;       /* the walk in its thread, or NULL */
static KsmCount *latest;        /* the latest walk that finished */
static int64_t walks;           /* walks started */

static void ksm_count_free(KsmCount *count)
{
    if (!count) {
        return;
    }
    for (guint i = 0; i < count->entries->len; i++) {
        KsmCountEntry *e = &g_array_index(count->entries, KsmCountEntry, i);

        g_free(e->range.id);
        g_free(e->error);
    }
    g_array_free(count->entries, true);
    g_free(count);
}

/* In the walk's thread: no QEMU state is touched, only the kernel read. */
static int ksm_count_worker(void *opaque)
{
    KsmCount *count = opaque;
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GError) smaps_err = NULL;
    g_autofree char *smaps = ksm_smaps_read(ctx, getpid(), &smaps_err);

    for (guint i = 0; i < count->entries->len; i++) {
        KsmCountEntry *e = &g_array_index(count->entries, KsmCountEntry, i);
        g_autoptr(GError) err = NULL;

        e->smaps_read = smaps &&
            ksm_range_smaps_parse(smaps, (uintptr_t)e->range.host,
                                  e->range.size, &e->smaps, NULL);
        e->counted = ksm_range_count(ctx, getpid(), (uintptr_t)e->range.host,
                                     e->range.size, &e->count, &err);
        if (!e->counted) {
            e->error = g_strdup(err->message);
        }
    }
    return 0;
}

static void coroutine_fn ksm_count_co(void *opaque)
{
    KsmCount *count = opaque;

    ksm_thread_run_co(count->thread, ksm_count_worker, count);
    ksm_thread_free(count->thread);
    count->thread = NULL;
    count->finished_ms = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
    for (guint i = 0; i < count->entries->len; i++) {
        KsmCountEntry *e = &g_array_index(count->entries, KsmCountEntry, i);

        /* object-del unparents the backend; our reference kept it. */
        e->removed = !OBJECT(e->range.backend)->parent;
        object_unref(OBJECT(e->range.backend));
    }
    ksm_count_free(latest);
    latest = count;
    running = NULL;
}

bool ksm_count_request(int64_t max_age_ms, Error **errp)
{
    int64_t now = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
    GArray *ranges;
    KsmCount *count;
    KsmThread *thread;
    Coroutine *co;

    if (running || (latest && now - latest->started_ms <= max_age_ms)) {
        return true;
    }
    thread = ksm_thread_new("counting the merged pages exactly", errp);
    if (!thread) {
        return false;
    }
    count = g_new0(KsmCount, 1);
    count->thread = thread;
    count->entries = g_array_new(false, true, sizeof(KsmCountEntry));
    count->started_ms = now;
    ranges = ksm_backend_ranges();
    for (guint i = 0; i < ranges->len; i++) {
        KsmCountEntry e = {
            .range = g_array_index(ranges, KsmBackendRange, i),
        };

        if (!e.range.host) {
            g_free(e.range.id);
            continue;
        }
        object_ref(OBJECT(e.range.backend));
        g_array_append_val(count->entries, e);
    }
    g_array_free(ranges, true);     /* the ids moved into the entries */
    running = count;
    walks++;
    co = qemu_coroutine_create(ksm_count_co, count);
    aio_co_enter(qemu_get_aio_context(), co);
    return true;
}

int64_t ksm_count_walks(void)
{
    return walks;
}

bool ksm_count_running(void)
{
    return running != NULL;
}

const KsmCount *ksm_count_latest(void)
{
    return latest;
}

/*
 * A backend's entry in a walk: the same object, still there, with the same
 * memory.  Once the walk ended its references were dropped, so a later
 * backend may sit at the same address: the id and RAM must match too.
 */
const KsmCountEntry *ksm_count_find(const KsmCount *count,
                                    const KsmBackendRange *range)
{
    for (guint i = 0; count && i < count->entries->len; i++) {
        const KsmCountEntry *e = &g_array_index(count->entries,
                                                KsmCountEntry, i);

        if (!e->removed && e->range.backend == range->backend &&
            e->range.host == range->host && e->range.size == range->size &&
            !strcmp(e->range.id, range->id)) {
            return e;
        }
    }
    return NULL;
}
