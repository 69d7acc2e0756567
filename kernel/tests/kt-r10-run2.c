/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R10 run=2 semantics.
 *
 * A child's 16 MiB of identical pages are merged.  Writing run=2
 * (KSM_RUN_UNMERGE, through libksm's ksm_knob_write) must succeed and
 * leave: run=2, pages_shared = pages_sharing = 0 (and no rmap_items: unshared
 * and volatile 0 too), full_scans = 0 (a successful unmerge resets the
 * count), the child's pages unmerged, but its area still registered
 * (VmFlags "mg" in smaps: "leave mergeable areas registered for next run").
 * Then run=1 merges the same pages again without any new madvise.
 *
 * The memory is small and the host has plenty, so this run=2 cannot OOM;
 * R15 covers run=2 under memory pressure.
 */
#include "kt-harness.h"

#define LEN (16 * KT_MIB)

int main(void)
{
    kt_begin("r10-run2", "R10 run=2: success leaves run=2, shared=sharing=0, full_scans=0; "
             "run=1 re-merges without new madvise",
             "seed 002, Hugh Dickins, \"[PATCH 7/12] ksm: fix endless loop on oom\" (\"only if "
             "it's successful, reset seqnr (shown in full_scans)\") and \"[PATCH 11/12] ksm: add "
             "some documentation\" (\"set 2 to stop ksmd and unmerge all pages currently merged, "
             "but leave mergeable areas registered for next run\") (2009-08-03)");
    kt_require_exact_counts();

    const gint64 n = LEN / kt->page_size, tol = n / 50;
    g_autoptr(GError) err = NULL;

    kt_fast_scan();
    kt_settle();
    KtMemSpec spec = { .len = LEN, .fill = KT_FILL_SAME, .byte = 0x77, .mergeable = TRUE };
    KtMem *m = kt_mem_spawn("sharer", &spec);
    kt_wait_scans(2, 60000);
    gint64 merged = kt_mem_wait_merging(m, n - tol, 30000);
    kt_ok(merged >= n - tol, "child merged %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT " pages",
          merged, n);
    g_autoptr(KsmSnapshot) s1 = kt_snap();
    kt_print_snap("before run=2", s1);

    gint64 t0 = g_get_monotonic_time();
    gboolean wrote = ksm_knob_write(kt->ctx, KSM_FIELD_RUN, KSM_RUN_UNMERGE, &err);
    gint64 dt = g_get_monotonic_time() - t0;
    kt_ok(wrote, "run=2 written in %.1f ms%s%s", dt / 1e3, wrote ? "" : ": ",
          wrote ? "" : err->message);
    g_autoptr(KsmSnapshot) s2 = kt_snap();
    kt_print_snap("after run=2", s2);
    kt_ok(kt_get(s2, KSM_FIELD_RUN) == KSM_RUN_UNMERGE, "run reads 2 (%" G_GINT64_FORMAT ")",
          kt_get(s2, KSM_FIELD_RUN));
    kt_ok(kt_get(s2, KSM_FIELD_PAGES_SHARED) == 0 && kt_get(s2, KSM_FIELD_PAGES_SHARING) == 0,
          "pages_shared = pages_sharing = 0 (%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ")",
          kt_get(s2, KSM_FIELD_PAGES_SHARED), kt_get(s2, KSM_FIELD_PAGES_SHARING));
    kt_ok(kt_get(s2, KSM_FIELD_PAGES_UNSHARED) == 0 && kt_get(s2, KSM_FIELD_PAGES_VOLATILE) == 0,
          "no rmap_items left: pages_unshared = pages_volatile = 0 (%" G_GINT64_FORMAT ", %"
          G_GINT64_FORMAT ")", kt_get(s2, KSM_FIELD_PAGES_UNSHARED),
          kt_get(s2, KSM_FIELD_PAGES_VOLATILE));
    kt_ok(kt_get(s2, KSM_FIELD_FULL_SCANS) == 0, "full_scans reset to 0 (was %" G_GINT64_FORMAT
          ", now %" G_GINT64_FORMAT ")", kt_get(s1, KSM_FIELD_FULL_SCANS),
          kt_get(s2, KSM_FIELD_FULL_SCANS));
    if (ksm_snapshot_get(s2, KSM_FIELD_KSM_ZERO_PAGES, NULL)) {
        kt_ok(kt_get(s2, KSM_FIELD_KSM_ZERO_PAGES) == 0, "ksm_zero_pages = 0 (%" G_GINT64_FORMAT
              ")", kt_get(s2, KSM_FIELD_KSM_ZERO_PAGES));
    }

    KtProcKsm pk;
    kt_proc_ksm(m->c->pid, &pk);
    gint64 exact = kt_range_ksm_pages(m->c->pid, m->addr, m->len);
    gint64 mg = kt_range_mergeable_bytes(m->c->pid, m->addr, m->len);
    kt_note("child after run=2: merging_pages=%" G_GINT64_FORMAT " rmap_items=%" G_GINT64_FORMAT
            " KSM pages in range=%" G_GINT64_FORMAT " mergeable bytes (smaps mg)=%" G_GINT64_FORMAT
            " ksm_mergeable=%d", pk.merging_pages, pk.rmap_items, exact, mg, pk.mergeable);
    kt_ok(pk.merging_pages == 0 && exact <= 0, "the child's pages are unmerged");
    kt_ok(mg == (gint64)m->len, "its area stays registered (VmFlags mg on all %zu bytes)", m->len);

    /* run=2 again is a no-op write: the kernel only acts on a change */
    t0 = g_get_monotonic_time();
    gboolean again = ksm_knob_write(kt->ctx, KSM_FIELD_RUN, KSM_RUN_UNMERGE, &err);
    kt_ok(again, "writing run=2 while run is 2 succeeds (%.1f ms)",
          (g_get_monotonic_time() - t0) / 1e3);
    g_clear_error(&err);

    /* ---- run=1 re-merges with no new madvise ---- */
    kt_set("run=1", NULL);
    kt_wait_scans(2, 60000);
    gint64 remerged = kt_mem_wait_merging(m, n - tol, 30000);
    g_autoptr(KsmSnapshot) s3 = kt_snap();
    kt_print_snap("after run=1", s3);
    kt_ok(remerged >= n - tol, "run=1 merged the child's pages again without a new madvise (%"
          G_GINT64_FORMAT " of %" G_GINT64_FORMAT ")", remerged, n);
    gint64 mps = kt_read(KSM_FIELD_MAX_PAGE_SHARING);
    kt_ok(kt_get(s3, KSM_FIELD_PAGES_SHARING) >= n - 2 * ((n + mps - 1) / mps) - tol,
          "pages_sharing back up (%" G_GINT64_FORMAT ")", kt_get(s3, KSM_FIELD_PAGES_SHARING));

    kt_mem_free(m);
    return kt_finish();
}
