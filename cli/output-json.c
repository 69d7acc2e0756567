/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * output-json.c: `samepage stats --json`.
 *
 * Keys come out in a fixed order (the kernel documentation's order for
 * known files, sorted names for the others), so two runs diff cleanly.
 */
#include <json-glib/json-glib.h>

#include "cli.h"

static void add_host_fields(JsonBuilder *builder, const KsmSnapshot *snap, gboolean knobs)
{
    for (int i = 0; i < KSM_FIELD__COUNT; i++) {
        const KsmFieldInfo *info = ksm_field_info(i);
        gint64 value;

        if (info->knob != knobs || !ksm_snapshot_get(snap, i, &value)) {
            continue;
        }
        json_builder_set_member_name(builder, info->name);
        if (i == KSM_FIELD_ADVISOR_MODE) {
            /* The name ("none", "scan-time") is what `samepage set` accepts back. */
            g_autofree char *mode = ksm_field_format(i, value);
            json_builder_add_string_value(builder, mode);
        } else {
            json_builder_add_int_value(builder, value);
        }
    }
}

static void add_tristate(JsonBuilder *builder, const char *name, int value)
{
    json_builder_set_member_name(builder, name);
    if (value < 0) {
        json_builder_add_null_value(builder);
    } else {
        json_builder_add_boolean_value(builder, value != 0);
    }
}

static void add_process(JsonBuilder *builder, const CliProcess *proc)
{
    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "pid");
    json_builder_add_int_value(builder, proc->pid);
    json_builder_set_member_name(builder, "guest");
    /* -name and the exe path are any bytes a local user chose: JSON needs UTF-8. */
    if (proc->guest) {
        g_autofree char *guest = cli_utf8_valid(proc->guest);
        json_builder_add_string_value(builder, guest);
    } else {
        json_builder_add_null_value(builder);
    }
    json_builder_set_member_name(builder, "exe");
    g_autofree char *exe = cli_utf8_valid(proc->exe);
    json_builder_add_string_value(builder, exe);

    if (proc->error) {
        json_builder_set_member_name(builder, "error");
        json_builder_add_string_value(builder, proc->error);
    } else {
        json_builder_set_member_name(builder, "ksm_stat");
        json_builder_begin_object(builder);
        for (int f = 0; f < KSM_PROC__COUNT; f++) {
            if (proc->stat.present[f]) {
                json_builder_set_member_name(builder, ksm_proc_field_name(f));
                json_builder_add_int_value(builder, proc->stat.value[f]);
            }
        }
        add_tristate(builder, "ksm_merge_any", proc->stat.merge_any);
        add_tristate(builder, "ksm_mergeable", proc->stat.mergeable);
        if (proc->stat.unknown && proc->stat.unknown->len > 0) {
            /* Lines a newer kernel added, kept verbatim. */
            json_builder_set_member_name(builder, "unknown_lines");
            json_builder_begin_array(builder);
            for (guint u = 0; u < proc->stat.unknown->len; u++) {
                json_builder_add_string_value(builder, g_ptr_array_index(proc->stat.unknown, u));
            }
            json_builder_end_array(builder);
        }
        json_builder_end_object(builder);
    }
    json_builder_end_object(builder);
}

char *cli_report_to_json(const CliReport *report)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();
    const KsmDerived *derived = &report->derived;

    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "page_size");
    json_builder_add_int_value(builder, (gint64)report->page_size);

    json_builder_set_member_name(builder, "knobs");
    json_builder_begin_object(builder);
    add_host_fields(builder, report->snap, TRUE);
    json_builder_end_object(builder);

    json_builder_set_member_name(builder, "counters");
    json_builder_begin_object(builder);
    add_host_fields(builder, report->snap, FALSE);
    json_builder_end_object(builder);

    /* Files this libksm does not know (a newer kernel): name -> raw text. */
    json_builder_set_member_name(builder, "unknown");
    json_builder_begin_object(builder);
    guint n_extra = 0;
    g_autofree const char **extra = ksm_snapshot_extra_names(report->snap, &n_extra);
    for (guint i = 0; i < n_extra; i++) {
        json_builder_set_member_name(builder, extra[i]);
        json_builder_add_string_value(builder, g_hash_table_lookup(report->snap->extra, extra[i]));
    }
    json_builder_end_object(builder);

    json_builder_set_member_name(builder, "derived");
    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "saved_bytes");
    json_builder_add_int_value(builder, (gint64)derived->saved_bytes);
    json_builder_set_member_name(builder, "sharing_ratio");
    json_builder_add_double_value(builder, derived->sharing_ratio);
    json_builder_set_member_name(builder, "waste_ratio");
    json_builder_add_double_value(builder, derived->waste_ratio);
    json_builder_set_member_name(builder, "rmap_items");
    json_builder_add_int_value(builder, (gint64)derived->rmap_items);
    json_builder_set_member_name(builder, "metadata_bytes");
    json_builder_add_int_value(builder, (gint64)derived->metadata_bytes);
    json_builder_set_member_name(builder, "profit_bytes");
    json_builder_add_int_value(builder, derived->profit_bytes);
    json_builder_set_member_name(builder, "profit_from_kernel");
    json_builder_add_boolean_value(builder, derived->profit_from_kernel);
    double scan_rate = cli_scan_pages_per_second(report->snap);
    json_builder_set_member_name(builder, "scan_pages_per_second");
    if (scan_rate >= 0) {
        json_builder_add_double_value(builder, scan_rate);
    } else {
        json_builder_add_null_value(builder);
    }
    json_builder_end_object(builder);

    json_builder_set_member_name(builder, "ksmd");
    if (report->ksmd_pid > 0) {
        json_builder_begin_object(builder);
        json_builder_set_member_name(builder, "pid");
        json_builder_add_int_value(builder, report->ksmd_pid);
        json_builder_set_member_name(builder, "cpu_seconds");
        if (report->have_ksmd_cpu) {
            json_builder_add_double_value(builder, (double)report->ksmd_cpu_ticks /
                                                   (double)report->clock_ticks_per_second);
        } else {
            json_builder_add_null_value(builder);
        }
        json_builder_end_object(builder);
    } else {
        json_builder_add_null_value(builder);
    }

    json_builder_set_member_name(builder, "processes");
    json_builder_begin_array(builder);
    for (guint i = 0; i < report->processes->len; i++) {
        add_process(builder, g_ptr_array_index(report->processes, i));
    }
    json_builder_end_array(builder);
    json_builder_end_object(builder);

    g_autoptr(JsonNode) root = json_builder_get_root(builder);
    g_autoptr(JsonGenerator) generator = json_generator_new();
    json_generator_set_pretty(generator, TRUE);
    json_generator_set_indent(generator, 2);
    json_generator_set_root(generator, root);
    char *text = json_generator_to_data(generator, NULL);
    char *with_newline = g_strconcat(text, "\n", NULL);
    g_free(text);
    return with_newline;
}
