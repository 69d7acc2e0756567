/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * report.c: read everything `samepage stats` shows, once, so the table, JSON
 * and Prometheus outputs describe the same moment.
 */
#include "cli.h"

static void process_free(gpointer data)
{
    CliProcess *proc = data;

    g_free(proc->guest);
    g_free(proc->exe);
    ksm_proc_stat_clear(&proc->stat);
    g_free(proc->error);
    g_free(proc);
}

/*
 * `saved` is host-wide: a KSM page mapped n times saves n - 1 pages, a page
 * on the zero page saves one.  A process's part: its zero pages, and of each
 * KSM page it maps, (n - 1) / n of a page per mapping.  ksm_stat gives the
 * mappings (ksm_merging_pages) but not n of each page, and asking n page by
 * page means pagemap + kpagecount, a page-table walk per guest; so every
 * mapping gets the host's share, pages_sharing / (pages_shared +
 * pages_sharing): the sum over all KSM processes of ksm_merging_pages is
 * pages_shared + pages_sharing, so the parts add up to saved exactly.
 * Doubles: exact for page counts below 2^53.
 */
guint64 cli_process_saved_bytes(const KsmSnapshot *snap, gsize page_size,
                                const KsmProcStat *stat)
{
    gint64 shared = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_SHARED, 0);
    gint64 sharing = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_SHARING, 0);
    gint64 merging = stat->present[KSM_PROC_MERGING_PAGES] ? stat->value[KSM_PROC_MERGING_PAGES]
                                                           : 0;
    gint64 zero = stat->present[KSM_PROC_ZERO_PAGES] ? stat->value[KSM_PROC_ZERO_PAGES] : 0;
    double pages = (double)MAX(zero, 0);

    if (shared + sharing > 0 && sharing > 0 && merging > 0) {
        pages += (double)merging * (double)sharing / (double)(shared + sharing);
    }
    return (guint64)(pages * (double)page_size + 0.5);
}

static gint compare_pid(gconstpointer a, gconstpointer b)
{
    const CliProcess *pa = *(CliProcess *const *)a;
    const CliProcess *pb = *(CliProcess *const *)b;
    return (pa->pid > pb->pid) - (pa->pid < pb->pid);
}

/*
 * Per process: /proc/PID/cmdline (found by ksm_find_qemu_processes) and
 * /proc/PID/ksm_stat, two short reads; never smaps or pagemap, whose cost
 * grows with the guest's RAM.
 */
static GPtrArray *collect_processes(const KsmContext *ctx, const KsmSnapshot *snap,
                                    gsize page_size)
{
    g_autoptr(GPtrArray) found = ksm_find_qemu_processes(ctx);
    GPtrArray *processes = g_ptr_array_new_with_free_func(process_free);

    for (guint i = 0; found && i < found->len; i++) {
        const KsmQemuProcess *qemu = g_ptr_array_index(found, i);
        g_autoptr(GError) error = NULL;
        CliProcess *proc = g_new0(CliProcess, 1);

        /* ksm_proc_stat_read initialises proc->stat itself. */
        if (!ksm_proc_stat_read(ctx, qemu->pid, &proc->stat, &error)) {
            if (g_error_matches(error, KSM_ERROR, KSM_ERROR_NO_PROCESS)) {
                /* It exited between the listing and the read: not an error. */
                process_free(proc);
                continue;
            }
            /* Another user's QEMU without privilege: list it, say why no figures. */
            proc->error = g_strdup(error->message);
        } else if (proc->stat.present[KSM_PROC_MERGING_PAGES]) {
            proc->have_saved = TRUE;
            proc->saved_bytes = cli_process_saved_bytes(snap, page_size, &proc->stat);
        }
        proc->pid = qemu->pid;
        proc->guest = g_strdup(qemu->name);
        proc->exe = g_strdup(qemu->exe);
        g_ptr_array_add(processes, proc);
    }
    g_ptr_array_sort(processes, compare_pid);
    return processes;
}

CliReport *cli_report_collect(const KsmContext *ctx, gboolean with_processes,
                                    GError **error)
{
    g_autoptr(CliReport) report = g_new0(CliReport, 1);

    report->snap = ksm_snapshot_read(ctx, error);
    if (!report->snap) {
        return NULL;
    }
    report->page_size = ksm_context_page_size(ctx);
    ksm_derive(report->snap, report->page_size, &report->derived);
    report->processes = with_processes ? collect_processes(ctx, report->snap, report->page_size)
                                       : g_ptr_array_new_with_free_func(process_free);

    /* ksmd's CPU time is a bonus: its absence never fails the report. */
    report->clock_ticks_per_second = ksm_clock_ticks_per_second();
    report->ksmd_pid = ksm_ksmd_pid(ctx, NULL);
    if (report->ksmd_pid > 0) {
        report->have_ksmd_cpu = ksm_ksmd_cpu_ticks(ctx, report->ksmd_pid,
                                                   &report->ksmd_cpu_ticks, NULL);
    }
    return g_steal_pointer(&report);
}

void cli_report_free(CliReport *report)
{
    if (!report) {
        return;
    }
    ksm_snapshot_free(report->snap);
    if (report->processes) {
        g_ptr_array_unref(report->processes);
    }
    g_free(report);
}
