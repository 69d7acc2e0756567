/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * output-table.c: plain `samepage stats`, an aligned table for people.
 */
#include "cli.h"

/* Wide enough for stable_node_chains_prune_millisecs. */
#define NAME_WIDTH 36

static void host_fields(GString *out, const KsmSnapshot *snap, gboolean knobs, gsize page_size)
{
    g_string_append(out, knobs ? "Knobs\n" : "Counters\n");
    for (int i = 0; i < KSM_FIELD__COUNT; i++) {
        const KsmFieldInfo *info = ksm_field_info(i);
        gint64 value;

        if (info->knob != knobs || !ksm_snapshot_get(snap, i, &value)) {
            continue;
        }
        g_autofree char *text = ksm_field_format(i, value);
        g_string_append_printf(out, "  %-*s %14s", NAME_WIDTH, info->name, text);
        /* Page counts are easier to judge as sizes (not the cumulative ones). */
        if (!knobs && g_strcmp0(info->unit, "pages") == 0 && value > 0 &&
            i != KSM_FIELD_PAGES_SCANNED && i != KSM_FIELD_PAGES_SKIPPED) {
            g_autofree char *size = cli_format_bytes(value * (gint64)page_size);
            g_string_append_printf(out, "  (%s)", size);
        } else if (g_strcmp0(info->unit, "bytes") == 0 && value != 0) {
            g_autofree char *size = cli_format_bytes(value);
            g_string_append_printf(out, "  (%s)", size);
        }
        g_string_append_c(out, '\n');
    }
}

static void derived_figures(GString *out, const CliReport *report)
{
    const KsmDerived *d = &report->derived;
    g_autofree char *saved = cli_format_bytes((gint64)d->saved_bytes);
    g_autofree char *metadata = cli_format_bytes((gint64)d->metadata_bytes);
    g_autofree char *profit = cli_format_bytes(d->profit_bytes);

    g_string_append(out, "Derived\n");
    g_string_append_printf(out, "  %-*s %14" G_GUINT64_FORMAT "  (%s)\n", NAME_WIDTH,
                           "saved_bytes", d->saved_bytes, saved);
    g_string_append_printf(out, "  %-*s %14.2f\n", NAME_WIDTH, "sharing_ratio", d->sharing_ratio);
    g_string_append_printf(out, "  %-*s %14.2f\n", NAME_WIDTH, "waste_ratio", d->waste_ratio);
    g_string_append_printf(out, "  %-*s %14" G_GUINT64_FORMAT "\n", NAME_WIDTH,
                           "rmap_items", d->rmap_items);
    g_string_append_printf(out, "  %-*s %14" G_GUINT64_FORMAT "  (%s)\n", NAME_WIDTH,
                           "metadata_bytes", d->metadata_bytes, metadata);
    g_string_append_printf(out, "  %-*s %14" G_GINT64_FORMAT "  (%s%s)\n", NAME_WIDTH,
                           "profit_bytes", d->profit_bytes, profit,
                           d->profit_from_kernel ? ", from the kernel" : ", computed");
    double rate = cli_scan_pages_per_second(report->snap);
    if (rate >= 0) {
        g_string_append_printf(out, "  %-*s %14.0f\n", NAME_WIDTH, "scan_pages_per_second", rate);
    }
    if (report->have_ksmd_cpu) {
        g_string_append_printf(out, "  %-*s %14.2f  (pid %d)\n", NAME_WIDTH, "ksmd_cpu_seconds",
                               (double)report->ksmd_cpu_ticks /
                               (double)report->clock_ticks_per_second,
                               (int)report->ksmd_pid);
    }
}

static void processes(GString *out, const GPtrArray *procs)
{
    if (procs->len == 0) {
        g_string_append(out, "QEMU processes: none\n");
        return;
    }
    g_string_append(out, "QEMU processes\n");
    g_string_append_printf(out, "  %8s  %-24s %14s %12s %12s %14s  %s\n", "PID", "GUEST",
                           "MERGING_PAGES", "ZERO_PAGES", "RMAP_ITEMS", "PROFIT_BYTES",
                           "MERGEABLE");
    for (guint i = 0; i < procs->len; i++) {
        const CliProcess *proc = g_ptr_array_index(procs, i);
        /* Any local user's -name: no escape sequence or newline reaches the terminal. */
        g_autofree char *guest = cli_escape_text(proc->guest ? proc->guest : "-");

        if (proc->error) {
            g_string_append_printf(out, "  %8d  %-24s %s\n", (int)proc->pid, guest, proc->error);
            continue;
        }
        g_string_append_printf(out, "  %8d  %-24s", (int)proc->pid, guest);
        static const KsmProcField columns[] = {
            KSM_PROC_MERGING_PAGES, KSM_PROC_ZERO_PAGES, KSM_PROC_RMAP_ITEMS,
            KSM_PROC_PROCESS_PROFIT,
        };
        static const int widths[] = { 14, 12, 12, 14 };
        for (guint c = 0; c < G_N_ELEMENTS(columns); c++) {
            if (proc->stat.present[columns[c]]) {
                g_string_append_printf(out, " %*" G_GINT64_FORMAT, widths[c],
                                       proc->stat.value[columns[c]]);
            } else {
                g_string_append_printf(out, " %*s", widths[c], "-");
            }
        }
        const char *mergeable = proc->stat.mergeable < 0 ? "-"
                              : proc->stat.mergeable ? "yes" : "no";
        g_string_append_printf(out, "  %s\n", mergeable);
    }
}

char *cli_report_to_table(const CliReport *report)
{
    GString *out = g_string_new(NULL);

    host_fields(out, report->snap, TRUE, report->page_size);
    g_string_append_c(out, '\n');
    host_fields(out, report->snap, FALSE, report->page_size);

    guint n = 0;
    g_autofree const char **extra = ksm_snapshot_extra_names(report->snap, &n);
    if (n > 0) {
        g_string_append(out, "\nOther files (not known to this samepage; raw values)\n");
        for (guint i = 0; i < n; i++) {
            g_string_append_printf(out, "  %-*s %14s\n", NAME_WIDTH, extra[i],
                                   (const char *)g_hash_table_lookup(report->snap->extra,
                                                                     extra[i]));
        }
    }
    g_string_append_c(out, '\n');
    derived_figures(out, report);
    g_string_append_c(out, '\n');
    processes(out, report->processes);
    return g_string_free(out, FALSE);
}
