/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-procstat.c: /proc/PID/ksm_stat and /proc/PID/ksm_merging_pages.
 *
 * ksm_stat has two line formats: "ksm_rmap_items 12" for figures and
 * "ksm_merge_any: yes" for flags (6.x).  6.1's holds ksm_rmap_items only
 * (its merging pages are in ksm_merging_pages, 5.19+), 5.19 and 6.0 have no
 * ksm_stat at all; newer kernels may add lines we keep as text.
 */
#include <string.h>

#include "ksm-private.h"

static const char *const proc_field_names[KSM_PROC__COUNT] = {
    [KSM_PROC_RMAP_ITEMS] = "ksm_rmap_items",
    [KSM_PROC_ZERO_PAGES] = "ksm_zero_pages",
    [KSM_PROC_MERGING_PAGES] = "ksm_merging_pages",
    [KSM_PROC_PROCESS_PROFIT] = "ksm_process_profit",
};

const char *ksm_proc_field_name(KsmProcField field)
{
    g_return_val_if_fail(field < KSM_PROC__COUNT, NULL);
    return proc_field_names[field];
}

void ksm_proc_stat_init(KsmProcStat *st)
{
    memset(st, 0, sizeof(*st));
    st->merge_any = -1;
    st->mergeable = -1;
    st->unknown = g_ptr_array_new_with_free_func(g_free);
}

void ksm_proc_stat_clear(KsmProcStat *st)
{
    if (st->unknown) {
        g_ptr_array_unref(st->unknown);
    }
    memset(st, 0, sizeof(*st));
    st->merge_any = -1;
    st->mergeable = -1;
}

static int parse_yes_no(const char *v)
{
    if (strcmp(v, "yes") == 0) {
        return 1;
    }
    if (strcmp(v, "no") == 0) {
        return 0;
    }
    return -1;
}

gboolean ksm_proc_stat_parse(const char *text, KsmProcStat *st, GError **error)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

    if (!st->unknown) {
        ksm_proc_stat_init(st);
    }
    for (guint i = 0; lines[i]; i++) {
        char *line = g_strstrip(lines[i]);
        if (!*line) {
            continue;
        }
        /* "key: value" or "key value" */
        char *sep = strpbrk(line, ": \t");
        if (!sep) {
            /* A known line without its value is garbage, not a new line. */
            gboolean known = strcmp(line, "ksm_merge_any") == 0 ||
                             strcmp(line, "ksm_mergeable") == 0;
            for (int f = 0; f < KSM_PROC__COUNT; f++) {
                known |= strcmp(line, proc_field_names[f]) == 0;
            }
            if (known) {
                g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                            "ksm_stat: '%s' has no value", line);
                return FALSE;
            }
            g_ptr_array_add(st->unknown, g_strdup(line));
            continue;
        }
        g_autofree char *key = g_strndup(line, sep - line);
        g_autofree char *orig = g_strdup(line);   /* g_strstrip below shifts the value in place */
        char *value = sep + (*sep == ':');
        value = g_strstrip(value);

        if (strcmp(key, "ksm_merge_any") == 0 || strcmp(key, "ksm_mergeable") == 0) {
            int yn = parse_yes_no(value);
            if (yn < 0) {
                g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                            "ksm_stat: '%s' should be yes or no", line);
                return FALSE;
            }
            *(strcmp(key, "ksm_merge_any") == 0 ? &st->merge_any : &st->mergeable) = yn;
            continue;
        }
        gboolean known = FALSE;
        for (int f = 0; f < KSM_PROC__COUNT; f++) {
            if (strcmp(key, proc_field_names[f]) == 0) {
                gint64 v;
                if (!ksm_parse_int(value, &v, NULL)) {
                    g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                                "ksm_stat: '%s' does not end in an integer", line);
                    return FALSE;
                }
                st->present[f] = TRUE;
                st->value[f] = v;
                known = TRUE;
            }
        }
        if (!known) {
            g_ptr_array_add(st->unknown, g_steal_pointer(&orig));
        }
    }
    return TRUE;
}

/* /proc/PID/ksm_merging_pages (5.19+) into st; KSM_ERROR_NOT_AVAILABLE
 * when this kernel has no such file. */
static gboolean read_merging_pages(const KsmContext *ctx, pid_t pid, KsmProcStat *st,
                                   GError **error)
{
    g_autofree char *text = ksm_read_proc(ctx, pid, "ksm_merging_pages", NULL, error);
    gint64 v;

    if (!text) {
        return FALSE;
    }
    if (!ksm_parse_int(text, &v, error)) {
        g_prefix_error(error, "ksm_merging_pages of %d: ", (int)pid);
        return FALSE;
    }
    st->present[KSM_PROC_MERGING_PAGES] = TRUE;
    st->value[KSM_PROC_MERGING_PAGES] = v;
    return TRUE;
}

gboolean ksm_proc_stat_read(const KsmContext *ctx, pid_t pid, KsmProcStat *st, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree char *text = ksm_read_proc(ctx, pid, "ksm_stat", NULL, &local);

    ksm_proc_stat_init(st);
    if (text) {
        if (!ksm_proc_stat_parse(text, st, error)) {
            return FALSE;
        }
        if (st->present[KSM_PROC_MERGING_PAGES]) {
            return TRUE;
        }
        /* 6.1's ksm_stat holds ksm_rmap_items only (ksm_merging_pages joined
         * it in 6.6): the merging pages are still in their own file. */
        if (!read_merging_pages(ctx, pid, st, &local) &&
            !g_error_matches(local, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE)) {
            g_propagate_error(error, g_steal_pointer(&local));
            return FALSE;
        }
        return TRUE;
    }
    if (!g_error_matches(local, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    /* Kernels before ksm_stat (5.19..6.0) have ksm_merging_pages only. */
    g_clear_error(&local);
    if (!read_merging_pages(ctx, pid, st, &local)) {
        if (g_error_matches(local, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE)) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE,
                        "this kernel has no per-process KSM figures "
                        "(/proc/PID/ksm_stat needs Linux 6.1+)");
            return FALSE;
        }
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    return TRUE;
}
