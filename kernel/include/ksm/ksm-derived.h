/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-derived.h: figures computed from a snapshot, the way the kernel
 * documentation (admin-guide/mm/ksm.rst) defines them.
 */
#ifndef KSM_DERIVED_H
#define KSM_DERIVED_H

#include <glib.h>
#include "ksm-host.h"

G_BEGIN_DECLS

/* The kernel charges this per rmap_item in general_profit (sizeof on 64-bit). */
#define KSM_RMAP_ITEM_BYTES 64

typedef struct {
    guint64 saved_bytes;      /* (pages_sharing + ksm_zero_pages) * page size */
    double sharing_ratio;     /* pages_sharing / pages_shared; 0 when nothing shared */
    double waste_ratio;       /* pages_unshared / pages_sharing; 0 when nothing sharing */
    guint64 rmap_items;       /* shared + sharing + unshared + volatile (approximate: unlocked counters) */
    guint64 metadata_bytes;   /* rmap_items * KSM_RMAP_ITEM_BYTES */
    gint64 profit_bytes;      /* general_profit when the kernel has it, else computed */
    gboolean profit_from_kernel;
} KsmDerived;

void ksm_derive(const KsmSnapshot *snap, gsize page_size, KsmDerived *out);

G_END_DECLS

#endif
