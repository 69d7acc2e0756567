/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-smaps.c: is an address range mergeable, as the kernel sees it.
 *
 * The truth about mergeability is the "mg" flag in an area's VmFlags line
 * (VM_MERGEABLE), not whatever a program believes it asked for.  Kernels
 * 6.6+ also print a "KSM:" line per area with its bytes in KSM pages.
 */
#include <string.h>

#include "ksm-private.h"

typedef struct {
    guint64 start, end;
    gint64 ksm_kb;         /* -1: no KSM: line */
    gboolean mergeable;
} SmapsArea;

/* "7f00...-7f01... rw-p ..." */
static gboolean parse_area_header(const char *line, guint64 *start, guint64 *end)
{
    char *dash, *space;
    guint64 a = g_ascii_strtoull(line, &dash, 16);

    if (dash == line || *dash != '-') {
        return FALSE;
    }
    guint64 b = g_ascii_strtoull(dash + 1, &space, 16);
    if (space == dash + 1 || (*space != ' ' && *space != '\0') || b < a) {
        return FALSE;
    }
    *start = a;
    *end = b;
    return TRUE;
}

gboolean ksm_vmflags_has(const char *flags, const char *flag)
{
    g_auto(GStrv) words = g_strsplit_set(flags, " \t", -1);
    for (guint i = 0; words[i]; i++) {
        if (strcmp(words[i], flag) == 0) {
            return TRUE;
        }
    }
    return FALSE;
}

static void account_area(const SmapsArea *area, guint64 start, guint64 end,
                         gpointer opaque)
{
    KsmRangeSmaps *out = opaque;
    guint64 lo = MAX(area->start, start), hi = MIN(area->end, end);

    if (lo >= hi) {
        return;
    }
    out->areas++;
    out->mapped_bytes += hi - lo;
    if (area->mergeable) {
        out->mergeable_bytes += hi - lo;
    }
    /* KSM: is per area and cannot be split: count areas wholly inside. */
    if (area->ksm_kb >= 0) {
        if (out->ksm_bytes < 0) {
            out->ksm_bytes = 0;
        }
        if (area->start >= start && area->end <= end) {
            out->ksm_bytes += area->ksm_kb * 1024;
        }
    }
}

typedef void (*AreaFunc)(const SmapsArea *area, guint64 start, guint64 end,
                         gpointer opaque);

/* Call fn for every area of smaps text, with its VmFlags and KSM: line. */
static gboolean parse_areas(const char *text, guint64 start, guint64 len,
                            AreaFunc fn, gpointer opaque, GError **error)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    guint64 end = start + len;
    SmapsArea area = { 0 };
    gboolean in_area = FALSE;

    if (end < start) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                    "range 0x%" G_GINT64_MODIFIER "x + %" G_GUINT64_FORMAT " wraps around",
                    start, len);
        return FALSE;
    }
    for (guint i = 0; lines[i]; i++) {
        const char *line = lines[i];
        const char *colon = strchr(line, ':');
        guint64 a, b;

        if (!*line) {
            continue;
        }
        /* Field lines are "Name:   value"; an area header has no colon before
         * its first space (its device field "fd:01" comes later). */
        const char *space = strchr(line, ' ');
        if (!colon || (space && space < colon)) {
            if (!parse_area_header(line, &a, &b)) {
                g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                            "smaps line %u is neither an area nor a field: '%s'", i + 1, line);
                return FALSE;
            }
            if (in_area) {
                fn(&area, start, end, opaque);
            }
            area = (SmapsArea){ .start = a, .end = b, .ksm_kb = -1 };
            in_area = TRUE;
        } else if (!in_area) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                        "smaps line %u comes before any area: '%s'", i + 1, line);
            return FALSE;
        } else if (g_str_has_prefix(line, "VmFlags:")) {
            area.mergeable = ksm_vmflags_has(colon + 1, "mg");
        } else if (g_str_has_prefix(line, "KSM:")) {
            gint64 kb = g_ascii_strtoll(colon + 1, NULL, 10);
            area.ksm_kb = kb >= 0 ? kb : 0;
        }
    }
    if (in_area) {
        fn(&area, start, end, opaque);
    }
    return TRUE;
}

gboolean ksm_range_smaps_parse(const char *text, guint64 start, guint64 len,
                               KsmRangeSmaps *out, GError **error)
{
    memset(out, 0, sizeof(*out));
    out->ksm_bytes = -1;
    return parse_areas(text, start, len, account_area, out, error);
}

static void add_mergeable_part(const SmapsArea *area, guint64 start, guint64 end,
                               gpointer opaque)
{
    GArray *parts = opaque;
    guint64 lo = MAX(area->start, start), hi = MIN(area->end, end);

    if (lo >= hi || !area->mergeable) {
        return;
    }
    /* Adjacent areas (split by an madvise of part of them) make one part. */
    if (parts->len && g_array_index(parts, KsmAddrRange, parts->len - 1).end == lo) {
        g_array_index(parts, KsmAddrRange, parts->len - 1).end = hi;
        return;
    }
    g_array_append_val(parts, ((KsmAddrRange){ .start = lo, .end = hi }));
}

GArray *ksm_range_smaps_mergeable_parts(const char *text, guint64 start, guint64 len,
                                        GError **error)
{
    g_autoptr(GArray) parts = g_array_new(FALSE, FALSE, sizeof(KsmAddrRange));

    if (!parse_areas(text, start, len, add_mergeable_part, parts, error)) {
        return NULL;
    }
    return g_steal_pointer(&parts);
}

char *ksm_smaps_read(const KsmContext *ctx, pid_t pid, GError **error)
{
    return ksm_read_proc(ctx, pid, "smaps", NULL, error);
}

gboolean ksm_range_smaps(const KsmContext *ctx, pid_t pid, guint64 start, guint64 len,
                         KsmRangeSmaps *out, GError **error)
{
    g_autofree char *text = ksm_smaps_read(ctx, pid, error);

    if (!text) {
        return FALSE;
    }
    return ksm_range_smaps_parse(text, start, len, out, error);
}
