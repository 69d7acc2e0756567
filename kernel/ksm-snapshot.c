/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-snapshot.c: read everything in /sys/kernel/mm/ksm at once.
 *
 * The counters are read one file at a time without any kernel lock, so a
 * snapshot is close together in time, not atomic.
 */
#include <stdlib.h>
#include <string.h>

#include "ksm-private.h"

#define KSM_RUN_OFFLINE 4   /* ORed into run while memory hot-remove runs */

static gboolean parse_field(KsmField field, const char *text, gint64 *value)
{
    if (field == KSM_FIELD_ADVISOR_MODE) {
        return ksm_parse_advisor_mode(text, value, NULL);
    }
    if (!ksm_parse_int(text, value, NULL)) {
        return FALSE;
    }
    if (field == KSM_FIELD_RUN) {
        *value &= ~(gint64)KSM_RUN_OFFLINE;
    }
    return TRUE;
}

KsmSnapshot *ksm_snapshot_read(const KsmContext *ctx, GError **error)
{
    const char *dir_path = ksm_context_ksm_dir(ctx);
    g_autoptr(GError) local = NULL;
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, &local);

    if (!dir) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE,
                    "KSM is not available on this kernel (cannot open %s: %s)",
                    dir_path, local->message);
        return NULL;
    }

    KsmSnapshot *snap = g_new0(KsmSnapshot, 1);
    snap->extra = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    snap->monotonic_us = g_get_monotonic_time();

    const char *name;
    while ((name = g_dir_read_name(dir))) {
        g_autofree char *path = g_build_filename(dir_path, name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
            continue;
        }
        g_autoptr(GError) read_error = NULL;
        g_autofree char *text = ksm_read_text(path, NULL, &read_error);
        if (!text) {
            /* A file that vanished between readdir and open is absent. */
            if (g_error_matches(read_error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE)) {
                continue;
            }
            g_propagate_error(error, g_steal_pointer(&read_error));
            ksm_snapshot_free(snap);
            return NULL;
        }
        KsmField field;
        gint64 value;
        /* A known file that does not parse (a future kernel changed its
         * format) is kept raw, like an unknown one: a newer kernel must never
         * break every reader.  Callers that depend on a figure check that it
         * is present (ksm_safe_unmerge refuses without pages_sharing). */
        if (ksm_field_from_name(name, &field) && parse_field(field, text, &value)) {
            snap->present[field] = TRUE;
            snap->value[field] = value;
        } else {
            g_hash_table_insert(snap->extra, g_strdup(name),
                                g_strdup(g_strchomp(text)));
        }
    }
    return snap;
}

void ksm_snapshot_free(KsmSnapshot *snap)
{
    if (!snap) {
        return;
    }
    g_hash_table_unref(snap->extra);
    g_free(snap);
}

gboolean ksm_snapshot_get(const KsmSnapshot *snap, KsmField field, gint64 *value)
{
    g_return_val_if_fail(field < KSM_FIELD__COUNT, FALSE);
    if (!snap->present[field]) {
        return FALSE;
    }
    if (value) {
        *value = snap->value[field];
    }
    return TRUE;
}

gint64 ksm_snapshot_get_or(const KsmSnapshot *snap, KsmField field, gint64 fallback)
{
    gint64 v;
    return ksm_snapshot_get(snap, field, &v) ? v : fallback;
}

static gint compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char **ksm_snapshot_extra_names(const KsmSnapshot *snap, guint *n)
{
    guint len = 0;
    const char **names = (const char **)g_hash_table_get_keys_as_array(snap->extra, &len);
    qsort(names, len, sizeof(*names), compare_names);
    if (n) {
        *n = len;
    }
    return names;
}
