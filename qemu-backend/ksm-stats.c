/*
 * samepage: query-ksm-stats and "info ksm".
 *
 * The answer costs the same at any guest size: the host's
 * /sys/kernel/mm/ksm, this process's ksm_stat and QEMU's own objects,
 * read through libksm; no walk of guest memory.  Each backend's
 * mergeability and exact merged and zero pages, read back from the kernel
 * (smaps, pagemap + kpageflags), come from walks that run in a worker
 * thread (ksm-count.c): an exact request gets the latest walk's counts
 * with their age and starts a new walk when they are too old.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "ksm-backend.h"
#include "qapi/qapi-commands-ksm.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "qemu/timer.h"

#include <ksm/ksm.h>

/* Where each libksm field lands in the QAPI struct (has_ flag and value). */
#define HOST_MEMBER(field, member) \
    [field] = { offsetof(KsmHostStats, has_##member), \
                offsetof(KsmHostStats, member) }

static const struct {
    size_t has, value;
} host_members[KSM_FIELD__COUNT] = {
    HOST_MEMBER(KSM_FIELD_RUN, run),
    HOST_MEMBER(KSM_FIELD_PAGES_TO_SCAN, pages_to_scan),
    HOST_MEMBER(KSM_FIELD_SLEEP_MILLISECS, sleep_millisecs),
    HOST_MEMBER(KSM_FIELD_MERGE_ACROSS_NODES, merge_across_nodes),
    HOST_MEMBER(KSM_FIELD_USE_ZERO_PAGES, use_zero_pages),
    HOST_MEMBER(KSM_FIELD_MAX_PAGE_SHARING, max_page_sharing),
    HOST_MEMBER(KSM_FIELD_STABLE_NODE_CHAINS_PRUNE_MILLISECS,
                stable_node_chains_prune_millisecs),
    HOST_MEMBER(KSM_FIELD_SMART_SCAN, smart_scan),
    /* KSM_FIELD_ADVISOR_MODE is an enum: set below */
    HOST_MEMBER(KSM_FIELD_ADVISOR_MAX_CPU, advisor_max_cpu),
    HOST_MEMBER(KSM_FIELD_ADVISOR_TARGET_SCAN_TIME, advisor_target_scan_time),
    HOST_MEMBER(KSM_FIELD_ADVISOR_MIN_PAGES_TO_SCAN,
                advisor_min_pages_to_scan),
    HOST_MEMBER(KSM_FIELD_ADVISOR_MAX_PAGES_TO_SCAN,
                advisor_max_pages_to_scan),
    HOST_MEMBER(KSM_FIELD_PAGES_SHARED, pages_shared),
    HOST_MEMBER(KSM_FIELD_PAGES_SHARING, pages_sharing),
    HOST_MEMBER(KSM_FIELD_PAGES_UNSHARED, pages_unshared),
    HOST_MEMBER(KSM_FIELD_PAGES_VOLATILE, pages_volatile),
    HOST_MEMBER(KSM_FIELD_FULL_SCANS, full_scans),
    HOST_MEMBER(KSM_FIELD_STABLE_NODE_CHAINS, stable_node_chains),
    HOST_MEMBER(KSM_FIELD_STABLE_NODE_DUPS, stable_node_dups),
    HOST_MEMBER(KSM_FIELD_PAGES_SCANNED, pages_scanned),
    HOST_MEMBER(KSM_FIELD_PAGES_SKIPPED, pages_skipped),
    HOST_MEMBER(KSM_FIELD_KSM_ZERO_PAGES, ksm_zero_pages),
    HOST_MEMBER(KSM_FIELD_GENERAL_PROFIT, general_profit),
};

static KsmHostStats *host_stats(KsmContext *ctx)
{
    KsmHostStats *host = g_new0(KsmHostStats, 1);
    g_autoptr(KsmSnapshot) snap = ksm_snapshot_read(ctx, NULL);
    KsmHostFileList **tail = &host->other;
    g_autofree const char **extra = NULL;
    guint n_extra = 0;
    int64_t v;

    host->available = snap != NULL;
    if (!snap) {
        return host;
    }
    for (int f = 0; f < KSM_FIELD__COUNT; f++) {
        if (f == KSM_FIELD_ADVISOR_MODE || !ksm_snapshot_get(snap, f, &v)) {
            continue;
        }
        *(bool *)((char *)host + host_members[f].has) = true;
        *(int64_t *)((char *)host + host_members[f].value) = v;
    }
    if (ksm_snapshot_get(snap, KSM_FIELD_ADVISOR_MODE, &v)) {
        host->has_advisor_mode = true;
        host->advisor_mode = v == KSM_ADVISOR_SCAN_TIME
            ? KSM_ADVISOR_MODE_SCAN_TIME : KSM_ADVISOR_MODE_NONE;
    }
    extra = ksm_snapshot_extra_names(snap, &n_extra);
    for (guint i = 0; i < n_extra; i++) {
        KsmHostFile *file = g_new0(KsmHostFile, 1);

        file->name = g_strdup(extra[i]);
        file->value = g_strdup(g_hash_table_lookup(snap->extra, extra[i]));
        QAPI_LIST_APPEND(tail, file);
    }
    return host;
}

static KsmProcessStats *process_stats(const KsmProcStat *st, bool read)
{
    KsmProcessStats *proc = g_new0(KsmProcessStats, 1);

    if (!read) {
        return proc;
    }
    proc->has_rmap_items = st->present[KSM_PROC_RMAP_ITEMS];
    proc->rmap_items = st->value[KSM_PROC_RMAP_ITEMS];
    proc->has_zero_pages = st->present[KSM_PROC_ZERO_PAGES];
    proc->zero_pages = st->value[KSM_PROC_ZERO_PAGES];
    proc->has_merging_pages = st->present[KSM_PROC_MERGING_PAGES];
    proc->merging_pages = st->value[KSM_PROC_MERGING_PAGES];
    proc->has_profit = st->present[KSM_PROC_PROCESS_PROFIT];
    proc->profit = st->value[KSM_PROC_PROCESS_PROFIT];
    proc->has_merge_any = st->merge_any >= 0;
    proc->merge_any = st->merge_any > 0;
    proc->has_mergeable = st->mergeable >= 0;
    proc->mergeable = st->mergeable > 0;
    return proc;
}

/* What costs nothing: the property and what QEMU registered. */
static KsmBackendStats *backend_stats(const KsmBackendRange *range)
{
    KsmBackendStats *b = g_new0(KsmBackendStats, 1);

    b->id = g_strdup(range->id);
    b->type = g_strdup(object_get_typename(OBJECT(range->backend)));
    b->size = range->size;
    b->merge = range->backend->merge;
    switch (ksm_backend_registration(range->backend)) {
    case KSM_REGISTRATION_YES:
        b->has_mergeable = true;
        b->mergeable = true;
        break;
    case KSM_REGISTRATION_NO:
        b->has_mergeable = true;
        b->mergeable = false;
        break;
    case KSM_REGISTRATION_UNKNOWN:
        break;
    }
    return b;
}

/* What the walk read back from the kernel replaces what QEMU knows. */
static void add_walk_counts(KsmBackendStats *b, const KsmCountEntry *e)
{
    if (e->smaps_read) {
        b->has_mergeable = true;
        b->mergeable = e->smaps.mergeable_bytes == e->range.size;
        b->has_mergeable_size = true;
        b->mergeable_size = e->smaps.mergeable_bytes;
    }
    if (!e->counted) {
        KSM_COMPAT_SET_OPTIONAL_PTR(b, counts_unavailable,
                                    g_strdup(e->error));
        return;
    }
    b->has_counted_by = true;
    b->counted_by = KSM_COUNT_SOURCE_WALK;
    b->has_resident_pages = true;
    b->resident_pages = e->count.present_pages;
    b->has_merged_pages = true;
    b->merged_pages = e->count.ksm_pages;
    b->has_zero_pages = true;
    b->zero_pages = e->count.zero_pages;
}

static KsmCountInfo *count_info(const KsmCount *count)
{
    KsmCountInfo *info = g_new0(KsmCountInfo, 1);
    strList **tail = &info->removed;

    info->counting = ksm_count_running();
    info->walks = ksm_count_walks();
    if (!count) {
        return info;
    }
    info->has_age = true;
    info->age = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) - count->started_ms;
    info->has_duration = true;
    info->duration = count->finished_ms - count->started_ms;
    for (guint i = 0; i < count->entries->len; i++) {
        const KsmCountEntry *e = &g_array_index(count->entries,
                                                KsmCountEntry, i);

        if (e->removed) {
            QAPI_LIST_APPEND(tail, g_strdup(e->range.id));
        }
    }
    return info;
}

/*
 * The answer, built from reads that cost the same at any guest size: the
 * host's sysfs files, this process's ksm_stat, and QEMU's own objects.
 * With walk, the latest walk's counts are added (the walk itself runs in
 * a thread of its own).
 */
static KsmStats *ksm_stats(bool walk)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_auto(KsmProcStat) st = { 0 };
    KsmStats *stats = g_new0(KsmStats, 1);
    KsmBackendStatsList **tail = &stats->backends;
    GArray *ranges = ksm_backend_ranges();
    const KsmCount *count = walk ? ksm_count_latest() : NULL;
    const KsmBackendRange *sole = NULL;
    bool st_read = ksm_proc_stat_read(ctx, getpid(), &st, NULL);

    stats->page_size = ksm_context_page_size(ctx);
    stats->host = host_stats(ctx);
    stats->process = process_stats(&st, st_read);
    if (st_read && st.merge_any == 0 &&
        st.present[KSM_PROC_MERGING_PAGES]) {
        sole = ksm_backend_sole_mergeable(ranges);
    }
    for (guint i = 0; i < ranges->len; i++) {
        const KsmBackendRange *r = &g_array_index(ranges, KsmBackendRange, i);
        KsmBackendStats *b = backend_stats(r);
        const KsmCountEntry *e = ksm_count_find(count, r);

        if (e) {
            add_walk_counts(b, e);
        } else if (r == sole) {
            b->has_counted_by = true;
            b->counted_by = KSM_COUNT_SOURCE_PROCESS;
            b->has_merged_pages = true;
            b->merged_pages = st.value[KSM_PROC_MERGING_PAGES];
        }
        QAPI_LIST_APPEND(tail, b);
    }
    if (walk) {
        KSM_COMPAT_SET_OPTIONAL_PTR(stats, count, count_info(count));
    }
    ksm_backend_ranges_free(ranges);
    return stats;
}

KsmStats *qmp_query_ksm_stats(bool has_exact, bool exact,
                              bool has_max_age, int64_t max_age,
                              Error **errp)
{
    if (has_max_age && max_age < 0) {
        error_setg(errp, "max-age must be 0 or more milliseconds, not %"
                   PRId64, max_age);
        return NULL;
    }
    if (has_max_age && !(has_exact && exact)) {
        error_setg(errp, "max-age applies only with exact=true");
        return NULL;
    }
    if (has_exact && exact &&
        !ksm_count_request(has_max_age ? max_age : 1000, errp)) {
        return NULL;
    }
    return ksm_stats(has_exact && exact);
}

static void print_mib(Monitor *mon, const char *label, int64_t pages,
                      int64_t page_size)
{
    monitor_printf(mon, "%s %" PRId64 " (%.1f MiB)", label, pages,
                   (double)pages * page_size / (1024 * 1024));
}

void hmp_info_ksm(Monitor *mon, const QDict *qdict)
{
    KsmStats *stats = ksm_stats(true);
    KsmHostStats *h = stats->host;
    KsmProcessStats *p = stats->process;
    static const char *const run_names[] = { "stopped", "running",
                                             "stopped and unmerged" };

    if (!h->available) {
        monitor_printf(mon, "KSM: not available on this host kernel\n");
    } else {
        monitor_printf(mon, "KSM: %s (run=%" PRId64 ")",
                       h->has_run && h->run >= 0 && h->run <= 2
                       ? run_names[h->run] : "unknown", h->run);
        print_mib(mon, ", pages_sharing", h->pages_sharing, stats->page_size);
        monitor_printf(mon, ", pages_shared %" PRId64 ", full_scans %" PRId64
                       "\n", h->pages_shared, h->full_scans);
    }
    if (p->has_merging_pages) {
        print_mib(mon, "this process: merging_pages", p->merging_pages,
                  stats->page_size);
        monitor_printf(mon, ", zero_pages %" PRId64 ", profit %" PRId64
                       " bytes\n", p->zero_pages, p->profit);
    }
    monitor_printf(mon, "%-16s %-20s %10s %-5s %-9s %10s %10s\n", "backend",
                   "type", "size(MiB)", "merge", "mergeable", "merged",
                   "zero");
    for (KsmBackendStatsList *l = stats->backends; l; l = l->next) {
        KsmBackendStats *b = l->value;
        const char *mergeable = !b->has_mergeable ? "?" :
            b->mergeable ? "yes" :
            b->has_mergeable_size && b->mergeable_size ? "partly" : "no";

        monitor_printf(mon, "%-16s %-20s %10" PRIu64 " %-5s %-9s ", b->id,
                       b->type, b->size >> 20, b->merge ? "on" : "off",
                       mergeable);
        if (b->has_merged_pages) {
            monitor_printf(mon, "%10" PRId64 " ", b->merged_pages);
        } else {
            monitor_printf(mon, "%10s ", "-");
        }
        if (b->has_zero_pages) {
            monitor_printf(mon, "%10" PRId64 "\n", b->zero_pages);
        } else {
            monitor_printf(mon, "%10s\n", "-");
        }
    }
    if (stats->count && stats->count->has_age) {
        monitor_printf(mon, "merged/zero from the latest exact count, %"
                       PRId64 " ms old", stats->count->age);
    } else {
        monitor_printf(mon, "merged: this process's counter where one "
                       "backend is all its mergeable memory");
    }
    monitor_printf(mon, "; query-ksm-stats exact=true counts per backend\n");
    qapi_free_KsmStats(stats);
}
