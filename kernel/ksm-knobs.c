/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-knobs.c: validated knob writes, all-or-nothing sets, save and restore.
 *
 * The kernel's own checks are few (run > 2 and max_page_sharing < 2 give
 * EINVAL, some knobs EBUSY while pages are shared), and a refused sysfs
 * write says only an errno, so libksm validates first and turns whatever
 * the kernel still refuses into a message that says what to do.
 */
#include <errno.h>
#include <string.h>

#include "ksm-private.h"

static char *field_path(const KsmContext *ctx, KsmField field)
{
    return g_build_filename(ksm_context_ksm_dir(ctx), ksm_field_info(field)->name, NULL);
}

static gboolean field_exists(const KsmContext *ctx, KsmField field)
{
    g_autofree char *path = field_path(ctx, field);
    return g_file_test(path, G_FILE_TEST_EXISTS);
}

static char *knob_names_present(const KsmContext *ctx)
{
    GString *s = g_string_new(NULL);
    for (int i = 0; i < KSM_FIELD__COUNT; i++) {
        if (ksm_field_info(i)->knob && field_exists(ctx, i)) {
            g_string_append_printf(s, "%s%s", s->len ? ", " : "", ksm_field_info(i)->name);
        }
    }
    return g_string_free(s, FALSE);
}

gboolean ksm_field_read(const KsmContext *ctx, KsmField field, gint64 *value, GError **error)
{
    g_autofree char *path = field_path(ctx, field);
    g_autofree char *text = ksm_read_text(path, NULL, error);
    g_autoptr(GError) local = NULL;

    if (!text) {
        return FALSE;
    }
    gboolean ok = field == KSM_FIELD_ADVISOR_MODE
        ? ksm_parse_advisor_mode(text, value, &local)
        : ksm_parse_int(text, value, &local);
    if (!ok) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE, "%s: %s", path, local->message);
        return FALSE;
    }
    if (field == KSM_FIELD_RUN) {
        *value &= ~(gint64)4;   /* KSM_RUN_OFFLINE */
    }
    return TRUE;
}

static char *range_text(const KsmFieldInfo *info)
{
    if (info->max == G_MAXINT32 || info->max == (gint64)G_MAXUINT32) {
        return g_strdup_printf("an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT,
                               info->min, info->max);
    }
    if (strcmp(info->name, "run") == 0) {
        return g_strdup("0 (stop), 1 (merge) or 2 (stop and unmerge)");
    }
    if (strcmp(info->name, "advisor_mode") == 0) {
        return g_strdup("none or scan-time");
    }
    return g_strdup_printf("%" G_GINT64_FORMAT "..%" G_GINT64_FORMAT, info->min, info->max);
}

gboolean ksm_knob_parse(const KsmContext *ctx, const char *name, const char *text,
                        KsmField *field, gint64 *value, GError **error)
{
    KsmField f;

    if (!ksm_field_from_name(name, &f)) {
        g_autofree char *known = knob_names_present(ctx);
        g_set_error(error, KSM_ERROR, KSM_ERROR_UNKNOWN_KNOB,
                    "unknown knob '%s' (knobs on this kernel: %s)", name, known);
        return FALSE;
    }
    const KsmFieldInfo *info = ksm_field_info(f);
    if (!info->knob) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                    "%s is a read-only counter, not a knob", name);
        return FALSE;
    }
    if (!field_exists(ctx, f)) {
        g_autofree char *known = knob_names_present(ctx);
        g_set_error(error, KSM_ERROR, KSM_ERROR_UNKNOWN_KNOB,
                    "this kernel has no knob '%s' (knobs on this kernel: %s)", name, known);
        return FALSE;
    }

    g_autofree char *range = range_text(info);
    gint64 v;
    gboolean ok = f == KSM_FIELD_ADVISOR_MODE
        ? ksm_parse_advisor_mode(text, &v, NULL)
        : ksm_parse_int(text, &v, NULL);
    if (!ok || v < info->min || v > info->max) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                    "%s=%s is not valid: %s takes %s", name, text, name, range);
        return FALSE;
    }
    *field = f;
    *value = v;
    return TRUE;
}

static gboolean knob_write_error(GError **error, KsmField field, const char *text, int err)
{
    const char *name = ksm_field_info(field)->name;

    switch (err) {
    case EBUSY:
        g_set_error(error, KSM_ERROR, KSM_ERROR_BUSY,
                    "cannot change %s while KSM pages are shared: "
                    "unmerge first (run=2), then set it", name);
        break;
    case EINVAL:
        if (field == KSM_FIELD_PAGES_TO_SCAN) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                        "the kernel refused pages_to_scan=%s: the scan-time advisor "
                        "manages it; set advisor_mode=none first", text);
        } else {
            g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                        "the kernel refused %s=%s (EINVAL)", name, text);
        }
        break;
    case EACCES:
    case EPERM:
        g_set_error(error, KSM_ERROR, KSM_ERROR_PERMISSION,
                    "writing %s needs root (%s)", name, g_strerror(err));
        break;
    case ENOENT:
        g_set_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE,
                    "this kernel has no knob '%s'", name);
        break;
    case EINTR:
        g_set_error(error, KSM_ERROR, KSM_ERROR_INTERRUPTED,
                    "%s=%s was interrupted by a signal; the kernel set run to 0", name, text);
        break;
    case ENOMEM:
    case EAGAIN:
        g_set_error(error, KSM_ERROR, KSM_ERROR_NO_MEMORY,
                    "%s=%s ran out of memory (%s); the kernel set run to 0",
                    name, text, g_strerror(err));
        break;
    default:
        g_set_error(error, KSM_ERROR, KSM_ERROR_FAILED,
                    "writing %s=%s failed: %s", name, text, g_strerror(err));
        break;
    }
    return FALSE;
}

gboolean ksm_knob_write(const KsmContext *ctx, KsmField field, gint64 value, GError **error)
{
    const KsmFieldInfo *info = ksm_field_info(field);
    g_autofree char *text = ksm_field_format(field, value);

    if (!info->knob || value < info->min || value > info->max) {
        g_autofree char *range = range_text(info);
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                    "%s=%s is not valid: %s takes %s", info->name, text,
                    info->name, info->knob ? range : "nothing (read-only counter)");
        return FALSE;
    }
    g_autofree char *path = field_path(ctx, field);
    int err = ksm_write_text(path, text);
    return err ? knob_write_error(error, field, text, err) : TRUE;
}

/*
 * The order writes must happen in.  run=2 first (merge_across_nodes and
 * max_page_sharing are EBUSY until pages are unmerged); advisor_mode before
 * pages_to_scan (switching the advisor resets pages_to_scan, and scan-time
 * refuses manual values); run=0/1 last, once ksmd's settings are in place.
 */
static int write_rank(const KsmKnobSetting *s)
{
    switch (s->field) {
    case KSM_FIELD_RUN:
        return s->value == KSM_RUN_UNMERGE ? 0 : 9;
    case KSM_FIELD_ADVISOR_MODE:
        return 1;
    case KSM_FIELD_MERGE_ACROSS_NODES:
    case KSM_FIELD_MAX_PAGE_SHARING:
        return 2;
    default:
        return 5;
    }
}

static gint compare_rank(gconstpointer a, gconstpointer b)
{
    return write_rank(a) - write_rank(b);
}

static gint compare_rank_data(gconstpointer a, gconstpointer b, gpointer unused)
{
    return compare_rank(a, b);
}

gboolean ksm_knobs_set(const KsmContext *ctx, const char *const *assignments, guint n,
                       KsmKnobSetting *old_values, KsmKnobSetting *new_values,
                       GError **error)
{
    g_autofree KsmKnobSetting *want = g_new0(KsmKnobSetting, n);
    g_autofree KsmKnobSetting *before = g_new0(KsmKnobSetting, n);

    /* 1. Validate every pair; nothing is written unless all are good. */
    for (guint i = 0; i < n; i++) {
        const char *eq = strchr(assignments[i], '=');
        if (!eq || eq == assignments[i]) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                        "'%s' is not KNOB=VALUE", assignments[i]);
            return FALSE;
        }
        g_autofree char *name = g_strndup(assignments[i], eq - assignments[i]);
        if (!ksm_knob_parse(ctx, name, eq + 1, &want[i].field, &want[i].value, error)) {
            return FALSE;
        }
        for (guint j = 0; j < i; j++) {
            if (want[j].field == want[i].field) {
                g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                            "%s is given twice", name);
                return FALSE;
            }
        }
        before[i].field = want[i].field;
        if (!ksm_field_read(ctx, want[i].field, &before[i].value, error)) {
            return FALSE;
        }
    }

    /* 2. Write in the kernel's order; on a refusal put back what was written. */
    g_autofree KsmKnobSetting *order = g_memdup2(want, sizeof(*want) * n);
    g_autofree KsmKnobSetting *order_before = g_new0(KsmKnobSetting, n);
    g_qsort_with_data(order, n, sizeof(*order), compare_rank_data, NULL);
    for (guint i = 0; i < n; i++) {
        for (guint j = 0; j < n; j++) {
            if (before[j].field == order[i].field) {
                order_before[i] = before[j];
            }
        }
    }
    for (guint i = 0; i < n; i++) {
        if (!ksm_knob_write(ctx, order[i].field, order[i].value, error)) {
            GString *undo_failed = g_string_new(NULL);
            for (guint k = i; k-- > 0;) {
                if (!ksm_knob_write(ctx, order_before[k].field, order_before[k].value, NULL)) {
                    g_string_append_printf(undo_failed, " %s",
                                           ksm_field_info(order_before[k].field)->name);
                }
            }
            if (i > 0) {
                g_prefix_error(error, "%s (knobs written before it were put back%s%s): ",
                               ksm_field_info(order[i].field)->name,
                               undo_failed->len ? ", except:" : "", undo_failed->str);
            }
            g_string_free(undo_failed, TRUE);
            return FALSE;
        }
    }
    if (old_values) {
        memcpy(old_values, before, sizeof(*before) * n);
    }
    if (new_values) {
        memcpy(new_values, want, sizeof(*want) * n);
    }
    return TRUE;
}

/* ---- save and restore ---- */

struct KsmKnobState {
    GArray *knobs;   /* KsmKnobSetting, in restore order */
};

static KsmKnobState *knob_state_new(void)
{
    KsmKnobState *state = g_new0(KsmKnobState, 1);
    state->knobs = g_array_new(FALSE, FALSE, sizeof(KsmKnobSetting));
    return state;
}

void ksm_knob_state_free(KsmKnobState *state)
{
    if (!state) {
        return;
    }
    g_array_unref(state->knobs);
    g_free(state);
}

static void knob_state_sort(KsmKnobState *state)
{
    g_array_sort(state->knobs, compare_rank);
}

KsmKnobState *ksm_knobs_save(const KsmContext *ctx, GError **error)
{
    if (!ksm_available(ctx, error)) {
        return NULL;
    }
    g_autoptr(KsmKnobState) state = knob_state_new();
    for (int i = 0; i < KSM_FIELD__COUNT; i++) {
        KsmKnobSetting s = { .field = i };
        g_autoptr(GError) local = NULL;
        if (!ksm_field_info(i)->knob) {
            continue;
        }
        if (!ksm_field_read(ctx, i, &s.value, &local)) {
            if (g_error_matches(local, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE)) {
                continue;
            }
            g_propagate_error(error, g_steal_pointer(&local));
            return NULL;
        }
        g_array_append_val(state->knobs, s);
    }
    knob_state_sort(state);
    return g_steal_pointer(&state);
}

gboolean ksm_knobs_restore(const KsmContext *ctx, const KsmKnobState *state, GError **error)
{
    GString *failed = g_string_new(NULL);
    g_autoptr(GError) first = NULL;

    /* Write only what differs: re-writing advisor_mode resets pages_to_scan,
     * and max_page_sharing is EBUSY while pages are shared even if equal. */
    for (guint i = 0; i < state->knobs->len; i++) {
        const KsmKnobSetting *s = &g_array_index(state->knobs, KsmKnobSetting, i);
        gint64 now;
        g_autoptr(GError) local = NULL;

        if (ksm_field_read(ctx, s->field, &now, NULL) && now == s->value) {
            continue;
        }
        if (!ksm_knob_write(ctx, s->field, s->value, &local)) {
            g_string_append_printf(failed, "%s%s", failed->len ? ", " : "",
                                   ksm_field_info(s->field)->name);
            if (!first) {
                first = g_steal_pointer(&local);
            }
        }
    }
    if (failed->len) {
        g_set_error(error, KSM_ERROR, first->code, "could not restore %s: %s",
                    failed->str, first->message);
        g_string_free(failed, TRUE);
        return FALSE;
    }
    g_string_free(failed, TRUE);
    return TRUE;
}

char *ksm_knob_state_to_text(const KsmKnobState *state)
{
    GString *s = g_string_new("# samepage: saved KSM knobs\n");
    for (guint i = 0; i < state->knobs->len; i++) {
        const KsmKnobSetting *k = &g_array_index(state->knobs, KsmKnobSetting, i);
        g_autofree char *v = ksm_field_format(k->field, k->value);
        g_string_append_printf(s, "%s=%s\n", ksm_field_info(k->field)->name, v);
    }
    return g_string_free(s, FALSE);
}

KsmKnobState *ksm_knob_state_from_text(const char *text, GError **error)
{
    g_autoptr(KsmKnobState) state = knob_state_new();
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

    for (guint i = 0; lines[i]; i++) {
        char *line = g_strstrip(lines[i]);
        char *eq = strchr(line, '=');
        KsmKnobSetting s;
        gboolean ok;

        if (!*line || *line == '#') {
            continue;
        }
        if (eq) {
            *eq = '\0';
        }
        ok = eq && ksm_field_from_name(line, &s.field) && ksm_field_info(s.field)->knob;
        if (ok) {
            ok = s.field == KSM_FIELD_ADVISOR_MODE
                ? ksm_parse_advisor_mode(eq + 1, &s.value, NULL)
                : ksm_parse_int(eq + 1, &s.value, NULL);
        }
        if (ok) {
            const KsmFieldInfo *info = ksm_field_info(s.field);
            ok = s.value >= info->min && s.value <= info->max;
        }
        if (!ok) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                        "saved knob state, line %u: expected KNOB=VALUE with a known knob "
                        "and a value in its range", i + 1);
            return NULL;
        }
        g_array_append_val(state->knobs, s);
    }
    knob_state_sort(state);
    return g_steal_pointer(&state);
}

gboolean ksm_knob_state_matches(const KsmContext *ctx, const KsmKnobState *state,
                                char **differs, GError **error)
{
    for (guint i = 0; i < state->knobs->len; i++) {
        const KsmKnobSetting *s = &g_array_index(state->knobs, KsmKnobSetting, i);
        gint64 now;
        if (!ksm_field_read(ctx, s->field, &now, error)) {
            return FALSE;
        }
        if (now != s->value) {
            if (differs) {
                g_autofree char *a = ksm_field_format(s->field, now);
                g_autofree char *b = ksm_field_format(s->field, s->value);
                *differs = g_strdup_printf("%s is %s, was %s",
                                           ksm_field_info(s->field)->name, a, b);
            }
            return FALSE;
        }
    }
    if (differs) {
        *differs = NULL;
    }
    return TRUE;
}

gboolean ksm_wait_full_scans(const KsmContext *ctx, gint64 scans, gint64 timeout_ms,
                             GError **error)
{
    gint64 run, start, now;
    gint64 deadline = ksm_now_ms() + timeout_ms;

    if (!ksm_field_read(ctx, KSM_FIELD_RUN, &run, error) ||
        !ksm_field_read(ctx, KSM_FIELD_FULL_SCANS, &start, error)) {
        return FALSE;
    }
    if (run != KSM_RUN_MERGE) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                    "ksmd is not running (run=%" G_GINT64_FORMAT "): full_scans cannot "
                    "advance; set run=1 first", run);
        return FALSE;
    }
    for (;;) {
        if (!ksm_field_read(ctx, KSM_FIELD_FULL_SCANS, &now, error)) {
            return FALSE;
        }
        if (now < start) {
            start = now;    /* someone wrote run=2, which resets the count */
        }
        if (now - start >= scans) {
            return TRUE;
        }
        if (ksm_now_ms() >= deadline) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_INTERRUPTED,
                        "waited %" G_GINT64_FORMAT " ms for %" G_GINT64_FORMAT
                        " full scans; only %" G_GINT64_FORMAT " completed",
                        timeout_ms, scans, now - start);
            return FALSE;
        }
        g_usleep(10 * 1000);
    }
}
