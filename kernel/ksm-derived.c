/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ksm-derived.c: saved bytes, ratios and profit from a snapshot. */
#include <string.h>

#include "ksm-private.h"

void ksm_derive(const KsmSnapshot *snap, gsize page_size, KsmDerived *out)
{
    gint64 shared = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_SHARED, 0);
    gint64 sharing = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_SHARING, 0);
    gint64 unshared = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_UNSHARED, 0);
    gint64 volatile_ = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_VOLATILE, 0);
    gint64 zero = ksm_snapshot_get_or(snap, KSM_FIELD_KSM_ZERO_PAGES, 0);

    memset(out, 0, sizeof(*out));
    out->saved_bytes = (guint64)(sharing + zero) * page_size;
    out->sharing_ratio = shared > 0 ? (double)sharing / shared : 0.0;
    out->waste_ratio = sharing > 0 ? (double)unshared / sharing : 0.0;
    /* Each counted page has one rmap_item (mm/ksm.c: general_profit). */
    out->rmap_items = (guint64)(shared + sharing + unshared + volatile_);
    out->metadata_bytes = out->rmap_items * KSM_RMAP_ITEM_BYTES;
    out->profit_from_kernel = ksm_snapshot_get(snap, KSM_FIELD_GENERAL_PROFIT, &out->profit_bytes);
    if (!out->profit_from_kernel) {
        out->profit_bytes = (gint64)out->saved_bytes - (gint64)out->metadata_bytes;
    }
}
