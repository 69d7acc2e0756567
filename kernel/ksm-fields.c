/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-fields.c: what each file in /sys/kernel/mm/ksm is, and how to parse it.
 *
 * Ranges are what mm/ksm.c accepts (kstrtouint/kstrtoul/kstrtobool and the
 * explicit checks), narrowed only where a value is meaningless
 * (advisor_max_cpu is a percentage).
 */
#include <string.h>

#include "ksm-private.h"

#define U32_MAX_ ((gint64)G_MAXUINT32)

static const KsmFieldInfo fields[KSM_FIELD__COUNT] = {
    [KSM_FIELD_RUN] = { "run", TRUE, FALSE, 0, 2, "mode",
        "0 stops ksmd keeping merged pages, 1 runs ksmd, 2 stops it and unmerges every page" },
    [KSM_FIELD_PAGES_TO_SCAN] = { "pages_to_scan", TRUE, FALSE, 0, U32_MAX_, "pages",
        "pages ksmd scans per batch" },
    [KSM_FIELD_SLEEP_MILLISECS] = { "sleep_millisecs", TRUE, FALSE, 0, U32_MAX_, "milliseconds",
        "how long ksmd sleeps between batches" },
    [KSM_FIELD_MERGE_ACROSS_NODES] = { "merge_across_nodes", TRUE, FALSE, 0, 1, "boolean",
        "1 merges pages from different NUMA nodes" },
    [KSM_FIELD_USE_ZERO_PAGES] = { "use_zero_pages", TRUE, FALSE, 0, 1, "boolean",
        "1 merges empty pages with the kernel zero page" },
    [KSM_FIELD_MAX_PAGE_SHARING] = { "max_page_sharing", TRUE, FALSE, 2, G_MAXINT32, "pages",
        "maximum mappings of one KSM page" },
    [KSM_FIELD_STABLE_NODE_CHAINS_PRUNE_MILLISECS] = { "stable_node_chains_prune_millisecs",
        TRUE, FALSE, 0, U32_MAX_, "milliseconds",
        "how often stale stable node chain entries are pruned" },
    [KSM_FIELD_SMART_SCAN] = { "smart_scan", TRUE, FALSE, 0, 1, "boolean",
        "1 skips pages that repeatedly failed to merge" },
    [KSM_FIELD_ADVISOR_MODE] = { "advisor_mode", TRUE, FALSE, 0, 1, "mode",
        "none, or scan-time to let the kernel tune pages_to_scan" },
    [KSM_FIELD_ADVISOR_MAX_CPU] = { "advisor_max_cpu", TRUE, FALSE, 1, 100, "percent",
        "upper limit of ksmd CPU the scan-time advisor may use" },
    [KSM_FIELD_ADVISOR_TARGET_SCAN_TIME] = { "advisor_target_scan_time", TRUE, FALSE,
        1, G_MAXINT32, "seconds", "the full scan time the advisor aims for" },
    [KSM_FIELD_ADVISOR_MIN_PAGES_TO_SCAN] = { "advisor_min_pages_to_scan", TRUE, FALSE,
        1, U32_MAX_, "pages", "lower bound of pages_to_scan under the advisor" },
    [KSM_FIELD_ADVISOR_MAX_PAGES_TO_SCAN] = { "advisor_max_pages_to_scan", TRUE, FALSE,
        1, U32_MAX_, "pages", "upper bound of pages_to_scan under the advisor" },
    [KSM_FIELD_PAGES_SHARED] = { "pages_shared", FALSE, FALSE, 0, G_MAXINT64, "pages",
        "KSM pages in the stable tree (each backs several mappings)" },
    [KSM_FIELD_PAGES_SHARING] = { "pages_sharing", FALSE, FALSE, 0, G_MAXINT64, "pages",
        "extra mappings of KSM pages: the pages saved" },
    [KSM_FIELD_PAGES_UNSHARED] = { "pages_unshared", FALSE, FALSE, 0, G_MAXINT64, "pages",
        "unique pages checked repeatedly for merging" },
    [KSM_FIELD_PAGES_VOLATILE] = { "pages_volatile", FALSE, FALSE, 0, G_MAXINT64, "pages",
        "pages changing too fast to be merged" },
    [KSM_FIELD_FULL_SCANS] = { "full_scans", FALSE, FALSE, 0, G_MAXINT64, "scans",
        "completed passes over all mergeable areas" },
    [KSM_FIELD_STABLE_NODE_CHAINS] = { "stable_node_chains", FALSE, FALSE, 0, G_MAXINT64,
        "chains", "KSM pages that hit max_page_sharing" },
    [KSM_FIELD_STABLE_NODE_DUPS] = { "stable_node_dups", FALSE, FALSE, 0, G_MAXINT64, "nodes",
        "duplicated KSM pages in stable node chains" },
    [KSM_FIELD_PAGES_SCANNED] = { "pages_scanned", FALSE, FALSE, 0, G_MAXINT64, "pages",
        "pages scanned since KSM started" },
    [KSM_FIELD_PAGES_SKIPPED] = { "pages_skipped", FALSE, FALSE, 0, G_MAXINT64, "pages",
        "pages smart scan skipped" },
    [KSM_FIELD_KSM_ZERO_PAGES] = { "ksm_zero_pages", FALSE, FALSE, 0, G_MAXINT64, "pages",
        "empty pages merged with the kernel zero page" },
    [KSM_FIELD_GENERAL_PROFIT] = { "general_profit", FALSE, TRUE, G_MININT64, G_MAXINT64,
        "bytes", "memory saved minus KSM metadata, as the kernel computes it" },
};

const KsmFieldInfo *ksm_field_info(KsmField field)
{
    g_return_val_if_fail(field < KSM_FIELD__COUNT, NULL);
    return &fields[field];
}

gboolean ksm_field_from_name(const char *name, KsmField *field)
{
    for (int i = 0; i < KSM_FIELD__COUNT; i++) {
        if (strcmp(fields[i].name, name) == 0) {
            *field = i;
            return TRUE;
        }
    }
    return FALSE;
}

gboolean ksm_parse_int(const char *text, gint64 *value, GError **error)
{
    g_autofree char *copy = g_strstrip(g_strdup(text));
    g_autoptr(GError) local = NULL;

    /* Base 10 only, whole string, overflow checked: "12abc", "", "0x10" fail. */
    if (!g_ascii_string_to_signed(copy, 10, G_MININT64, G_MAXINT64, value, &local)) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                    "'%s' is not an integer", copy);
        return FALSE;
    }
    return TRUE;
}

static const char *const advisor_modes[] = { "none", "scan-time" };

gboolean ksm_parse_advisor_mode(const char *text, gint64 *value, GError **error)
{
    g_autofree char *copy = g_strstrip(g_strdup(text));
    const char *open = strchr(copy, '[');
    g_autofree char *chosen = NULL;

    if (open) {
        const char *close = strchr(open, ']');
        if (!close || strchr(close, '[')) {   /* unterminated, or two selected */
            goto bad;
        }
        chosen = g_strndup(open + 1, close - open - 1);
    } else {
        chosen = g_strdup(copy);
    }
    for (guint i = 0; i < G_N_ELEMENTS(advisor_modes); i++) {
        if (strcmp(chosen, advisor_modes[i]) == 0) {
            *value = i;
            return TRUE;
        }
    }
bad:
    g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                "'%s' is not an advisor mode (none or scan-time)", copy);
    return FALSE;
}

char *ksm_field_format(KsmField field, gint64 value)
{
    if (field == KSM_FIELD_ADVISOR_MODE && value >= 0 &&
        value < (gint64)G_N_ELEMENTS(advisor_modes)) {
        return g_strdup(advisor_modes[value]);
    }
    return g_strdup_printf("%" G_GINT64_FORMAT, value);
}
