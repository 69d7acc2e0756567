/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R6 merge: N identical pages in one mergeable area are merged.
 *
 * A child fills 32 MiB with one byte value (every page identical, not zero,
 * so use_zero_pages plays no part) and registers it.  With ksmd running fast,
 * after full_scans has advanced by 2 (the first pass records checksums, the
 * second merges) every page is a KSM page: per process ksm_merging_pages ~ N
 * and ksm_range_count ~ N; globally pages_shared rises by >= 1 and
 * pages_sharing by about N - N/max_page_sharing (each KSM page takes at most
 * max_page_sharing mappings, so N pages need ceil(N/max) KSM pages).
 */
#include "kt-harness.h"

#define LEN (32 * KT_MIB)

int main(void)
{
    kt_begin("r6-merge", "R6 merge: N identical pages -> pages_shared +>=1, "
             "pages_sharing ~N-1 after full_scans advanced by 2",
             "seed 002, Hugh Dickins, \"[PATCH 11/12] ksm: add some documentation\" "
             "(2009-08-03): pages_shared/pages_sharing");
    kt_require_exact_counts();

    const gint64 n = LEN / kt->page_size;
    const gint64 tol = n / 50;
    gint64 mps = kt_read(KSM_FIELD_MAX_PAGE_SHARING);
    gint64 ksm_pages_needed = (n + mps - 1) / mps;

    kt_fast_scan();
    g_autoptr(KsmSnapshot) before = kt_settle();

    KtMemSpec spec = { .len = LEN, .fill = KT_FILL_SAME, .byte = 0x5a, .mergeable = TRUE };
    KtMem *m = kt_mem_spawn("sharer", &spec);

    kt_wait_scans(2, 60000);
    gint64 merging = kt_mem_wait_merging(m, n - tol, 30000);

    g_autoptr(KsmSnapshot) after = kt_snap();
    kt_print_snap("after merge", after);
    KtProcKsm pk;
    kt_proc_ksm(m->c->pid, &pk);
    gint64 exact = kt_range_ksm_pages(m->c->pid, m->addr, m->len);
    gint64 d_shared = kt_get(after, KSM_FIELD_PAGES_SHARED) - kt_get(before, KSM_FIELD_PAGES_SHARED);
    gint64 d_sharing = kt_get(after, KSM_FIELD_PAGES_SHARING) - kt_get(before, KSM_FIELD_PAGES_SHARING);
    kt_note("N=%" G_GINT64_FORMAT " pages, max_page_sharing=%" G_GINT64_FORMAT
            " -> at least %" G_GINT64_FORMAT " KSM pages expected", n, mps, ksm_pages_needed);
    kt_note("child ksm_stat: rmap_items=%" G_GINT64_FORMAT " merging_pages=%" G_GINT64_FORMAT
            " process_profit=%" G_GINT64_FORMAT "; KSM pages in its range (pagemap): %"
            G_GINT64_FORMAT, pk.rmap_items, pk.merging_pages, pk.profit, exact);
    kt_note("global deltas: pages_shared %+" G_GINT64_FORMAT ", pages_sharing %+" G_GINT64_FORMAT
            " (expected ~%" G_GINT64_FORMAT ", tolerance %" G_GINT64_FORMAT ")",
            d_shared, d_sharing, n - ksm_pages_needed, tol);

    kt_ok(merging >= n - tol, "child's ksm_merging_pages %" G_GINT64_FORMAT " >= N - %"
          G_GINT64_FORMAT " = %" G_GINT64_FORMAT, merging, tol, n - tol);
    kt_ok(exact < 0 || exact >= n - tol, "KSM pages in the child's range (pagemap+kpageflags) %"
          G_GINT64_FORMAT " >= %" G_GINT64_FORMAT "%s", exact, n - tol,
          exact < 0 ? " (unavailable: not asserted)" : "");
    if (kt_global_ok("pages_shared/pages_sharing deltas")) {
        kt_ok(d_shared >= 1, "pages_shared rose by %" G_GINT64_FORMAT " >= 1", d_shared);
        kt_ok(d_sharing >= n - 2 * ksm_pages_needed - tol,
              "pages_sharing rose by %" G_GINT64_FORMAT " >= N - 2*ceil(N/max_page_sharing) - "
              "tol = %" G_GINT64_FORMAT, d_sharing, n - 2 * ksm_pages_needed - tol);
    }
    kt_ok(pk.profit < 0 || pk.profit > (n / 2) * (gint64)kt->page_size,
          "process profit %" G_GINT64_FORMAT " bytes > N/2 pages", pk.profit);

    /* The pages go away with the process: ksmd drops its rmap_items. */
    kt_mem_free(m);
    kt_wait_scans_or_idle(2, 30000);
    g_autoptr(KsmSnapshot) gone = kt_snap();
    kt_print_snap("after the child exited (2 more scans or ksmd idle)", gone);
    gint64 back = (kt_get(gone, KSM_FIELD_PAGES_SHARED) + kt_get(gone, KSM_FIELD_PAGES_SHARING)) -
                  (kt_get(before, KSM_FIELD_PAGES_SHARED) + kt_get(before, KSM_FIELD_PAGES_SHARING));
    if (kt_global_ok("shared+sharing back at the baseline")) {
        kt_ok(back <= tol, "after exit, shared+sharing are back within %" G_GINT64_FORMAT
              " of the start (delta %+" G_GINT64_FORMAT ")", tol, back);
    }
    return kt_finish();
}
