/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-smaps.c: is an address range mergeable, as the kernel sees it.
 *
 * The truth about mergeability is the "mg" flag in an area's VmFlags line
 * (VM_MERGEABLE), not whatever a program believes it asked for.  Kernels
 * 6.6+ also print a "KSM:" line per area with its bytes in KSM pages.
 * The text is read by ksm-maps.c, the one smaps reader.
 */
#include <string.h>

#include "ksm-private.h"

typedef struct {
    guint64 start, end;
    KsmRangeSmaps *out;
} RangeAccount;

static void account_area(const KsmMapsArea *area, gpointer opaque)
{
    const RangeAccount *r = opaque;
    KsmRangeSmaps *out = r->out;
    guint64 lo = MAX(area->start, r->start), hi = MIN(area->end, r->end);

    if (lo >= hi) {
        return;
    }
    out->areas++;
    out->mapped_bytes += hi - lo;
    if (area->mergeable == 1) {
        out->mergeable_bytes += hi - lo;
    }
    /* KSM: is per area and cannot be split: count areas wholly inside. */
    if (area->ksm_kb >= 0) {
        if (out->ksm_bytes < 0) {
            out->ksm_bytes = 0;
        }
        if (area->start >= r->start && area->end <= r->end) {
            /* ksm_kb is at most the area's size (ksm_maps_parse checks): no
             * overflow here, and the sum saturates rather than wrap. */
            guint64 add = (guint64)area->ksm_kb * 1024;
            out->ksm_bytes = add > (guint64)(G_MAXINT64 - out->ksm_bytes)
                ? G_MAXINT64 : out->ksm_bytes + (gint64)add;
        }
    }
}

gboolean ksm_range_smaps_parse(const char *text, guint64 start, guint64 len,
                               KsmRangeSmaps *out, GError **error)
{
    RangeAccount r = { .start = start, .end = start + len, .out = out };

    memset(out, 0, sizeof(*out));
    out->ksm_bytes = -1;
    if (r.end < start) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                    "range 0x%" G_GINT64_MODIFIER "x + %" G_GUINT64_FORMAT " wraps around",
                    start, len);
        return FALSE;
    }
    return ksm_maps_parse(text, account_area, &r, error);
}

typedef struct {
    guint64 start, end;
    GArray *parts;
} MergeableParts;

static void add_mergeable_part(const KsmMapsArea *area, gpointer opaque)
{
    MergeableParts *m = opaque;
    guint64 lo = MAX(area->start, m->start), hi = MIN(area->end, m->end);

    if (lo >= hi || area->mergeable != 1) {
        return;
    }
    /* Adjacent areas (split by an madvise of part of them) make one part. */
    if (m->parts->len && g_array_index(m->parts, KsmAddrRange, m->parts->len - 1).end == lo) {
        g_array_index(m->parts, KsmAddrRange, m->parts->len - 1).end = hi;
        return;
    }
    g_array_append_val(m->parts, ((KsmAddrRange){ .start = lo, .end = hi }));
}

GArray *ksm_range_smaps_mergeable_parts(const char *text, guint64 start, guint64 len,
                                        GError **error)
{
    g_autoptr(GArray) parts = g_array_new(FALSE, FALSE, sizeof(KsmAddrRange));
    MergeableParts m = { .start = start, .end = start + len, .parts = parts };

    if (m.end < start) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                    "range 0x%" G_GINT64_MODIFIER "x + %" G_GUINT64_FORMAT " wraps around",
                    start, len);
        return NULL;
    }
    if (!ksm_maps_parse(text, add_mergeable_part, &m, error)) {
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
