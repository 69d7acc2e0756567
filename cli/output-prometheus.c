/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * output-prometheus.c: `samepage stats --prometheus`, the Prometheus text
 * exposition format (version 0.0.4), for node_exporter's textfile collector:
 *
 *   samepage stats --prometheus > /var/lib/node_exporter/ksm.prom.$$ &&
 *       mv /var/lib/node_exporter/ksm.prom.$$ /var/lib/node_exporter/ksm.prom
 *
 * Naming follows Prometheus conventions: base units in the name (seconds,
 * bytes, ratio), monotonic counters end in _total, every family has HELP and
 * TYPE lines before its samples, and the samples of a family are contiguous.
 */
#include <string.h>

#include "cli.h"

/* How each known KSM file becomes a metric. */
typedef struct {
    const char *metric;
    const char *type;      /* "gauge" or "counter" */
    /* kernel unit -> base unit (ms -> s, percent -> ratio).  A divisor, not a
     * factor: 70 / 100.0 is the double nearest 0.7, 70 * 0.01 is not. */
    double divisor;
} MetricSpec;

static const MetricSpec host_metrics[KSM_FIELD__COUNT] = {
    [KSM_FIELD_RUN] = { "ksm_run", "gauge", 1 },
    [KSM_FIELD_PAGES_TO_SCAN] = { "ksm_pages_to_scan", "gauge", 1 },
    [KSM_FIELD_SLEEP_MILLISECS] = { "ksm_sleep_seconds", "gauge", 1000 },
    [KSM_FIELD_MERGE_ACROSS_NODES] = { "ksm_merge_across_nodes", "gauge", 1 },
    [KSM_FIELD_USE_ZERO_PAGES] = { "ksm_use_zero_pages", "gauge", 1 },
    [KSM_FIELD_MAX_PAGE_SHARING] = { "ksm_max_page_sharing", "gauge", 1 },
    [KSM_FIELD_STABLE_NODE_CHAINS_PRUNE_MILLISECS] =
        { "ksm_stable_node_chains_prune_seconds", "gauge", 1000 },
    [KSM_FIELD_SMART_SCAN] = { "ksm_smart_scan", "gauge", 1 },
    [KSM_FIELD_ADVISOR_MODE] = { "ksm_advisor_mode", "gauge", 1 },   /* an enum: see below */
    [KSM_FIELD_ADVISOR_MAX_CPU] = { "ksm_advisor_max_cpu_ratio", "gauge", 100 },
    [KSM_FIELD_ADVISOR_TARGET_SCAN_TIME] = { "ksm_advisor_target_scan_time_seconds", "gauge", 1 },
    [KSM_FIELD_ADVISOR_MIN_PAGES_TO_SCAN] = { "ksm_advisor_min_pages_to_scan", "gauge", 1 },
    [KSM_FIELD_ADVISOR_MAX_PAGES_TO_SCAN] = { "ksm_advisor_max_pages_to_scan", "gauge", 1 },
    [KSM_FIELD_PAGES_SHARED] = { "ksm_pages_shared", "gauge", 1 },
    [KSM_FIELD_PAGES_SHARING] = { "ksm_pages_sharing", "gauge", 1 },
    [KSM_FIELD_PAGES_UNSHARED] = { "ksm_pages_unshared", "gauge", 1 },
    [KSM_FIELD_PAGES_VOLATILE] = { "ksm_pages_volatile", "gauge", 1 },
    /* run=2 resets full_scans to 0: Prometheus reads that as a counter reset. */
    [KSM_FIELD_FULL_SCANS] = { "ksm_full_scans_total", "counter", 1 },
    [KSM_FIELD_STABLE_NODE_CHAINS] = { "ksm_stable_node_chains", "gauge", 1 },
    [KSM_FIELD_STABLE_NODE_DUPS] = { "ksm_stable_node_dups", "gauge", 1 },
    [KSM_FIELD_PAGES_SCANNED] = { "ksm_pages_scanned_total", "counter", 1 },
    [KSM_FIELD_PAGES_SKIPPED] = { "ksm_pages_skipped_total", "counter", 1 },
    [KSM_FIELD_KSM_ZERO_PAGES] = { "ksm_zero_pages", "gauge", 1 },
    [KSM_FIELD_GENERAL_PROFIT] = { "ksm_general_profit_bytes", "gauge", 1 },
};

/*
 * The text format is UTF-8 and allows three escapes in a label value, \\
 * \" and \n (HELP text: \\ and \n).  A guest name is any bytes a local
 * user chose, so what the format cannot carry is written as text: a byte
 * that is not UTF-8 and a control character other than LF (a CR, an ESC)
 * become "\xNN" (the backslash itself escaped, so a parser reads the four
 * characters \xNN), C1 controls and bidi overrides "\uNNNN".
 */
static char *prometheus_escape(const char *value, gboolean quote)
{
    GString *out = g_string_sized_new(strlen(value) + 2);

    for (const char *p = value; *p;) {
        gunichar c = g_utf8_get_char_validated(p, -1);
        if (c == (gunichar)-1 || c == (gunichar)-2) {
            g_string_append_printf(out, "\\\\x%02x", (guchar)*p);
            p++;
            continue;
        }
        const char *next = g_utf8_next_char(p);
        if (c == '\\') {
            g_string_append(out, "\\\\");
        } else if (c == '"' && quote) {
            g_string_append(out, "\\\"");
        } else if (c == '\n') {
            g_string_append(out, "\\n");
        } else if (c < 0x20 || c == 0x7f) {
            g_string_append_printf(out, "\\\\x%02x", (guint)c);
        } else if ((c >= 0x80 && c < 0xa0) || (c >= 0x2028 && c <= 0x202e) ||
                   (c >= 0x2066 && c <= 0x2069)) {
            g_string_append_printf(out, "\\\\u%04x", (guint)c);
        } else {
            g_string_append_len(out, p, next - p);
        }
        p = next;
    }
    return g_string_free(out, FALSE);
}

char *cli_prometheus_escape_label(const char *value)
{
    return prometheus_escape(value, TRUE);
}

char *cli_prometheus_escape_help(const char *text)
{
    return prometheus_escape(text, FALSE);
}

static void family(GString *out, const char *metric, const char *type, const char *help)
{
    g_autofree char *escaped = cli_prometheus_escape_help(help);
    g_string_append_printf(out, "# HELP %s %s\n# TYPE %s %s\n", metric, escaped, metric, type);
}

static void sample_int(GString *out, const char *metric, const char *labels, gint64 value)
{
    g_string_append_printf(out, "%s%s %" G_GINT64_FORMAT "\n", metric, labels ? labels : "", value);
}

static void sample_double(GString *out, const char *metric, const char *labels, double value)
{
    /*
     * Not printf's %g: the locale may want a decimal comma.  15 significant
     * digits, not g_ascii_dtostr's 17, so 53 / 100.0 reads 0.53 and not
     * 0.53000000000000003; no figure here is that precise anyway.
     */
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    g_string_append_printf(out, "%s%s %s\n", metric, labels ? labels : "",
                           g_ascii_formatd(buf, sizeof(buf), "%.15g", value));
}

static void host_fields(GString *out, const KsmSnapshot *snap)
{
    for (int i = 0; i < KSM_FIELD__COUNT; i++) {
        const KsmFieldInfo *info = ksm_field_info(i);
        MetricSpec spec_storage = host_metrics[i];
        const MetricSpec *spec = &spec_storage;
        g_autofree char *fallback_name = NULL;
        gint64 value;

        if (!ksm_snapshot_get(snap, i, &value)) {
            continue;
        }
        if (!spec->metric) {
            /* A field libksm learnt after this table was written: a plain gauge. */
            const char *name = info->name;
            fallback_name = g_strconcat("ksm_", g_str_has_prefix(name, "ksm_") ? name + 4 : name,
                                        NULL);
            spec_storage = (MetricSpec){ fallback_name, "gauge", 1 };
        }
        g_autofree char *help = g_strdup_printf("%s (/sys/kernel/mm/ksm/%s)",
                                                info->help, info->name);
        family(out, spec->metric, spec->type, help);
        if (i == KSM_FIELD_ADVISOR_MODE) {
            /* An enum as a state set: one series per mode, 1 for the current one. */
            static const gint64 modes[] = { KSM_ADVISOR_NONE, KSM_ADVISOR_SCAN_TIME };
            for (guint m = 0; m < G_N_ELEMENTS(modes); m++) {
                g_autofree char *name = ksm_field_format(i, modes[m]);
                g_autofree char *labels = g_strdup_printf("{mode=\"%s\"}", name);
                sample_int(out, spec->metric, labels, value == modes[m]);
            }
        } else if (spec->divisor != 1) {
            sample_double(out, spec->metric, NULL, (double)value / spec->divisor);
        } else {
            sample_int(out, spec->metric, NULL, value);
        }
    }
}

static void unknown_files(GString *out, const KsmSnapshot *snap)
{
    guint n = 0;
    g_autofree const char **names = ksm_snapshot_extra_names(snap, &n);
    gboolean numeric_family = FALSE, info_family = FALSE;

    /*
     * Files of a newer kernel keep their name as a label rather than
     * becoming metric names: no clash with the names above, no guessing of
     * type or unit.  Numeric ones first, then the rest, so each family's
     * samples stay together.
     */
    for (guint i = 0; i < n; i++) {
        const char *raw = g_hash_table_lookup(snap->extra, names[i]);
        gint64 value;
        if (!ksm_parse_int(raw, &value, NULL)) {
            continue;
        }
        if (!numeric_family) {
            family(out, "ksm_unknown_file_value", "gauge",
                   "A file in /sys/kernel/mm/ksm this samepage does not know, with an integer value");
            numeric_family = TRUE;
        }
        g_autofree char *file = cli_prometheus_escape_label(names[i]);
        g_autofree char *labels = g_strdup_printf("{file=\"%s\"}", file);
        sample_int(out, "ksm_unknown_file_value", labels, value);
    }
    for (guint i = 0; i < n; i++) {
        const char *raw = g_hash_table_lookup(snap->extra, names[i]);
        gint64 value;
        if (ksm_parse_int(raw, &value, NULL)) {
            continue;
        }
        if (!info_family) {
            family(out, "ksm_unknown_file_info", "gauge",
                   "A file in /sys/kernel/mm/ksm this samepage does not know; its raw text is the value label");
            info_family = TRUE;
        }
        g_autofree char *file = cli_prometheus_escape_label(names[i]);
        g_autofree char *text = cli_prometheus_escape_label(raw);
        g_autofree char *labels = g_strdup_printf("{file=\"%s\",value=\"%s\"}", file, text);
        sample_int(out, "ksm_unknown_file_info", labels, 1);
    }
}

static void derived_figures(GString *out, const CliReport *report)
{
    const KsmDerived *d = &report->derived;

    family(out, "ksm_saved_bytes", "gauge",
           "Memory KSM saves: (pages_sharing + ksm_zero_pages) * page size");
    sample_int(out, "ksm_saved_bytes", NULL, (gint64)d->saved_bytes);
    family(out, "ksm_sharing_ratio", "gauge",
           "pages_sharing / pages_shared: mappings per KSM page (higher is better)");
    sample_double(out, "ksm_sharing_ratio", NULL, d->sharing_ratio);
    family(out, "ksm_waste_ratio", "gauge",
           "pages_unshared / pages_sharing: unique pages scanned per page saved (lower is better)");
    sample_double(out, "ksm_waste_ratio", NULL, d->waste_ratio);
    family(out, "ksm_rmap_items", "gauge",
           "Pages KSM tracks: shared + sharing + unshared + volatile (approximate)");
    sample_int(out, "ksm_rmap_items", NULL, (gint64)d->rmap_items);
    family(out, "ksm_metadata_bytes", "gauge", "KSM metadata: rmap_items * 64 bytes");
    sample_int(out, "ksm_metadata_bytes", NULL, (gint64)d->metadata_bytes);
    family(out, "ksm_profit_bytes", "gauge",
           "Memory saved minus metadata (general_profit when the kernel has it, else computed)");
    sample_int(out, "ksm_profit_bytes", NULL, d->profit_bytes);

    double rate = cli_scan_pages_per_second(report->snap);
    if (rate >= 0) {
        family(out, "ksm_scan_limit_pages_per_second", "gauge",
               "pages_to_scan / sleep_millisecs: the most ksmd scans per second");
        sample_double(out, "ksm_scan_limit_pages_per_second", NULL, rate);
    }
    if (report->have_ksmd_cpu) {
        family(out, "ksm_ksmd_cpu_seconds_total", "counter",
               "CPU time the ksmd kernel thread has used (rate() gives its CPU share)");
        sample_double(out, "ksm_ksmd_cpu_seconds_total", NULL,
                      (double)report->ksmd_cpu_ticks / (double)report->clock_ticks_per_second);
    }
}

static char *process_labels(const CliProcess *proc)
{
    g_autofree char *guest = cli_prometheus_escape_label(proc->guest ? proc->guest : "");
    return g_strdup_printf("{pid=\"%d\",guest=\"%s\"}", (int)proc->pid, guest);
}

static void process_figures(GString *out, const GPtrArray *processes)
{
    static const struct {
        KsmProcField field;
        const char *metric;
        const char *help;
    } per_process[] = {
        { KSM_PROC_MERGING_PAGES, "samepage_process_ksm_merging_pages",
          "Pages of this QEMU process merged by KSM (/proc/PID/ksm_stat ksm_merging_pages)" },
        { KSM_PROC_ZERO_PAGES, "samepage_process_ksm_zero_pages",
          "Pages of this QEMU process merged with the zero page (ksm_zero_pages)" },
        { KSM_PROC_RMAP_ITEMS, "samepage_process_ksm_rmap_items",
          "Pages of this QEMU process KSM tracks (ksm_rmap_items)" },
        { KSM_PROC_PROCESS_PROFIT, "samepage_process_ksm_profit_bytes",
          "Memory KSM saves in this QEMU process minus metadata (ksm_process_profit)" },
    };

    for (guint f = 0; f < G_N_ELEMENTS(per_process); f++) {
        gboolean started = FALSE;
        for (guint i = 0; i < processes->len; i++) {
            const CliProcess *proc = g_ptr_array_index(processes, i);
            if (proc->error || !proc->stat.present[per_process[f].field]) {
                continue;
            }
            if (!started) {
                family(out, per_process[f].metric, "gauge", per_process[f].help);
                started = TRUE;
            }
            g_autofree char *labels = process_labels(proc);
            sample_int(out, per_process[f].metric, labels, proc->stat.value[per_process[f].field]);
        }
    }

    gboolean started = FALSE;
    for (guint i = 0; i < processes->len; i++) {
        const CliProcess *proc = g_ptr_array_index(processes, i);
        if (proc->error || proc->stat.mergeable < 0) {
            continue;
        }
        if (!started) {
            family(out, "samepage_process_ksm_mergeable", "gauge",
                   "1 when this QEMU process has memory registered with KSM (ksm_mergeable)");
            started = TRUE;
        }
        g_autofree char *labels = process_labels(proc);
        sample_int(out, "samepage_process_ksm_mergeable", labels, proc->stat.mergeable);
    }
}

char *cli_report_to_prometheus(const CliReport *report)
{
    GString *out = g_string_new(NULL);

    host_fields(out, report->snap);
    unknown_files(out, report->snap);
    derived_figures(out, report);
    process_figures(out, report->processes);
    return g_string_free(out, FALSE);
}
