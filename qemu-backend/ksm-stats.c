/*
 * samepage: query-ksm-stats and "info ksm".
 *
 * Everything reported is read back from the kernel through libksm: the
 * host's /sys/kernel/mm/ksm, this process's ksm_stat, each backend's
 * mergeability from smaps, and (when privileged) its exact merged and zero
 * pages from pagemap + kpageflags.  Nothing is taken from QEMU's own idea
 * of what it asked for, except the "merge" property shown beside it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "ksm-backend.h"
#include "qapi/qapi-commands-ksm.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"

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

static KsmProcessStats *process_stats(KsmContext *ctx)
{
    KsmProcessStats *proc = g_new0(KsmProcessStats, 1);
    g_auto(KsmProcStat) st = { 0 };

    if (!ksm_proc_stat_read(ctx, getpid(), &st, NULL)) {
        return proc;
    }
    proc->has_rmap_items = st.present[KSM_PROC_RMAP_ITEMS];
    proc->rmap_items = st.value[KSM_PROC_RMAP_ITEMS];
    proc->has_zero_pages = st.present[KSM_PROC_ZERO_PAGES];
    proc->zero_pages = st.value[KSM_PROC_ZERO_PAGES];
    proc->has_merging_pages = st.present[KSM_PROC_MERGING_PAGES];
    proc->merging_pages = st.value[KSM_PROC_MERGING_PAGES];
    proc->has_profit = st.present[KSM_PROC_PROCESS_PROFIT];
    proc->profit = st.value[KSM_PROC_PROCESS_PROFIT];
    proc->has_merge_any = st.merge_any >= 0;
    proc->merge_any = st.merge_any > 0;
    proc->has_mergeable = st.mergeable >= 0;
    proc->mergeable = st.mergeable > 0;
    return proc;
}

static KsmBackendStats *backend_stats(KsmContext *ctx,
                                      const KsmBackendRange *range,
                                      const char *smaps, bool exact)
{
    KsmBackendStats *b = g_new0(KsmBackendStats, 1);
    KsmRangeSmaps sm;
    KsmRangeCount count;
    g_autoptr(GError) err = NULL;

    b->id = g_strdup(range->id);
    b->type = g_strdup(object_get_typename(OBJECT(range->backend)));
    b->size = range->size;
    b->merge = range->backend->merge;
    if (!range->host) {
        return b;
    }
    if (smaps && ksm_range_smaps_parse(smaps, (uintptr_t)range->host,
                                       range->size, &sm, NULL)) {
        b->mergeable_size = sm.mergeable_bytes;
        b->mergeable = sm.mergeable_bytes == range->size;
    }
    if (!exact) {
        return b;
    }
    if (ksm_range_count(ctx, getpid(), (uintptr_t)range->host, range->size,
                        &count, &err)) {
        b->has_resident_pages = true;
        b->resident_pages = count.present_pages;
        b->has_merged_pages = true;
        b->merged_pages = count.ksm_pages;
        b->has_zero_pages = true;
        b->zero_pages = count.zero_pages;
    } else {
        KSM_COMPAT_SET_OPTIONAL_PTR(b, counts_unavailable,
                                    g_strdup(err->message));
    }
    return b;
}

KsmStats *qmp_query_ksm_stats(bool has_exact, bool exact, Error **errp)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    KsmStats *stats = g_new0(KsmStats, 1);
    KsmBackendStatsList **tail = &stats->backends;
    GArray *ranges = ksm_backend_ranges();
    g_autofree char *smaps = NULL;

    if (!has_exact) {
        exact = true;
    }
    stats->page_size = ksm_context_page_size(ctx);
    stats->host = host_stats(ctx);
    stats->process = process_stats(ctx);

    /* One read of smaps serves every backend. */
    if (ranges->len) {
        smaps = ksm_smaps_read(ctx, getpid(), NULL);
    }
    for (guint i = 0; i < ranges->len; i++) {
        QAPI_LIST_APPEND(tail, backend_stats(ctx, &g_array_index(ranges,
                                             KsmBackendRange, i),
                                             smaps, exact));
    }
    ksm_backend_ranges_free(ranges);
    return stats;
}

static void print_mib(Monitor *mon, const char *label, int64_t pages,
                      int64_t page_size)
{
    monitor_printf(mon, "%s %" PRId64 " (%.1f MiB)", label, pages,
                   (double)pages * page_size / (1024 * 1024));
}

void hmp_info_ksm(Monitor *mon, const QDict *qdict)
{
    KsmStats *stats = qmp_query_ksm_stats(true, true, NULL);
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

        monitor_printf(mon, "%-16s %-20s %10" PRIu64 " %-5s %-9s ", b->id,
                       b->type, b->size >> 20, b->merge ? "on" : "off",
                       b->mergeable ? "yes" :
                       b->mergeable_size ? "partly" : "no");
        if (b->has_merged_pages) {
            monitor_printf(mon, "%10" PRId64 " %10" PRId64 "\n",
                           b->merged_pages, b->zero_pages);
        } else {
            monitor_printf(mon, "%10s %10s\n", "-", "-");
        }
    }
    qapi_free_KsmStats(stats);
}
