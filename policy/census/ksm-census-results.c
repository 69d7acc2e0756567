/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-census-results.c: from the counts to the figures of ksm-census.h.
 *
 * The per-page work is done; here the per-process counts are summed, the
 * table is walked once for the achievable saving, ksm_stat is read for each
 * process, and the frames of the duplicated pages say how much of the
 * sharing is KSM's (definitions in the header: this file implements them).
 */
#include "ksm-census-private.h"

static guint64 saving(guint64 copies, guint64 max_sharing)
{
    if (copies == 0) {
        return 0;
    }
    guint64 frames = max_sharing ? (copies + max_sharing - 1) / max_sharing : 1;
    return copies - frames;
}

static void read_ksm_stat(Census *c, guint i)
{
    KsmCensusProcess *pr = &c->out->processes[i];
    g_auto(KsmProcStat) st = { 0 };

    pr->ksm_merging_pages = pr->ksm_zero_pages = -1;
    pr->ksm_process_profit = G_MININT64;
    if (!ksm_proc_stat_read(c->ctx, pr->pid, &st, NULL)) {
        return;
    }
    if (st.present[KSM_PROC_MERGING_PAGES]) {
        pr->ksm_merging_pages = st.value[KSM_PROC_MERGING_PAGES];
    }
    if (st.present[KSM_PROC_ZERO_PAGES]) {
        pr->ksm_zero_pages = st.value[KSM_PROC_ZERO_PAGES];
    }
    if (st.present[KSM_PROC_PROCESS_PROFIT]) {
        pr->ksm_process_profit = st.value[KSM_PROC_PROCESS_PROFIT];
    }
}

/* merged_pages and shared_other_pages (definitions in the header). */
static void account_merged(Census *c)
{
    KsmCensus *out = c->out;
    guint64 ksm_zero = 0;
    gboolean whole = TRUE, stats = TRUE;

    /* ksm_zero_pages of each process once, however many targets name it. */
    g_autoptr(GHashTable) seen = g_hash_table_new(NULL, NULL);
    for (guint i = 0; i < out->n_processes; i++) {
        const KsmCensusProcess *pr = &out->processes[i];
        whole = whole && pr->start == 0 && pr->end == 0;
        if (!g_hash_table_add(seen, GINT_TO_POINTER(pr->pid))) {
            continue;
        }
        if (pr->ksm_merging_pages < 0) {
            stats = FALSE;
            continue;
        }
        ksm_zero += MAX(pr->ksm_zero_pages, 0);
    }

    out->merged_pages = out->shared_other_pages = out->ksm_frame_pages = -1;
    guint64 ksm_saved, ksm_mapped, other_saved;
    if (c->frames.visible &&
        census_frames_account(c->ctx, c->dup_pfns, &ksm_saved, &ksm_mapped, &other_saved)) {
        guint64 zero_mapped = (guint64)out->zero_mapped_pages;
        guint64 zero_by_ksm = out->zero_mode == KSM_CENSUS_ZERO_TO_ZERO_PAGE
                              ? MIN(zero_mapped, ksm_zero) : 0;
        out->merged_exact = TRUE;
        out->merged_pages = (gint64)(ksm_saved + zero_by_ksm);
        out->ksm_frame_pages = (gint64)ksm_mapped;
        out->shared_other_pages = (gint64)(other_saved +
            (out->zero_mode != KSM_CENSUS_ZERO_EXCLUDE ? zero_mapped - zero_by_ksm : 0));
    } else if (whole && stats) {
        /* Upper bound: every mapping of a KSM page, the first one included. */
        gint64 sum = 0;
        g_hash_table_remove_all(seen);
        for (guint i = 0; i < out->n_processes; i++) {
            const KsmCensusProcess *pr = &out->processes[i];
            if (g_hash_table_add(seen, GINT_TO_POINTER(pr->pid))) {
                sum += pr->ksm_merging_pages + MAX(pr->ksm_zero_pages, 0);
            }
        }
        out->merged_pages = sum;
    }
    out->ratio = out->merged_pages >= 0 && out->freeable_pages > 0
                 ? (double)out->merged_pages / (double)out->freeable_pages : -1;
}

static void sum_up(Census *c)
{
    KsmCensus *out = c->out;

    out->zero_mapped_pages = c->frames.visible ? 0 : -1;
    for (guint i = 0; i < out->n_processes; i++) {
        KsmCensusProcess *pr = &out->processes[i];
        if (!c->frames.visible) {
            pr->zero_mapped_pages = -1;
        } else {
            out->zero_mapped_pages += pr->zero_mapped_pages;
        }
        out->pages += pr->pages;
        out->zero_pages += pr->zero_pages;
        out->dup_within += pr->dup_within;
        out->dup_across += pr->dup_across;
        out->absent_pages += pr->absent_pages;
        out->swapped_pages += pr->swapped_pages;
        out->unreadable_pages += pr->unreadable_pages;
    }
    for (guint64 s = 0; s < c->table.capacity; s++) {
        const CensusEntry *e = &c->table.slots[s];
        if (e->count == 0) {
            continue;
        }
        out->distinct++;
        out->unique_pages += e->count == 1;
        out->freeable_pages += saving(e->count, out->max_page_sharing);
    }
    switch (out->zero_mode) {
    case KSM_CENSUS_ZERO_TO_ZERO_PAGE:
        out->freeable_zero_pages = out->zero_pages;
        break;
    case KSM_CENSUS_ZERO_AS_CONTENT:
        out->freeable_zero_pages = saving(out->zero_pages, out->max_page_sharing);
        break;
    case KSM_CENSUS_ZERO_EXCLUDE:
        out->freeable_zero_pages = 0;
        break;
    }
    out->freeable_pages += out->freeable_zero_pages;
}

void census_results(Census *c)
{
    for (guint i = 0; i < c->out->n_processes; i++) {
        read_ksm_stat(c, i);
    }
    sum_up(c);
    account_merged(c);
}
