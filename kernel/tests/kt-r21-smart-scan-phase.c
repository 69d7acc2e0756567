/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R21 smart-scan phase: identical pages that ksmd visits in different scans
 * never merge while smart_scan=1; smart_scan=0 merges them within scans.
 *
 * Found by samepage's guest tests, not in the seed threads: two guests with
 * the same fill left 5-25% of it unmerged for good.  The kernel's smart scan
 * (Linux 6.7, mm/ksm.c should_skip_rmap_item) gives every rmap_item an age
 * that grows at each visit and is never reset, not even when the page's
 * content changes; from age 13 on the page is looked at once every 9 scans
 * (8 skips).  The unstable tree is emptied at every full scan, so two pages
 * that become identical can only meet if ksmd looks at both in the same
 * scan: pages registered a number of scans apart that is not a multiple of 9
 * never do.  Guest RAM the guest kernel touched at boot is such a page.
 *
 * Here: child A registers unique pages; ksmd runs d scans (d not a multiple
 * of 9, counted exactly with ksmd stopped around each step); child B
 * registers other unique pages; both age for 40 scans; then both rewrite
 * their pages with the same content.  After 48 more scans the merged count
 * is recorded (the finding: 0 with the kernel as it is); then smart_scan=0
 * must merge every page within a few scans (asserted: what samepage relies
 * on when it turns smart scan off for guests).
 */
#include "kt-harness.h"

#define LEN (8 * KT_MIB)
/* One visit, then SKIP_PAGES_MAX (8) skips, once a page's age is past 13. */
#define CYCLE 9

static gboolean scans_reached(gpointer data)
{
    return kt_read(KSM_FIELD_FULL_SCANS) >= *(gint64 *)data;
}

/* run=1 until full_scans reaches target, then run=0 (the write returns when
 * ksmd's batch is done, so no scan is under way afterwards). */
static gint64 run_until(gint64 target)
{
    kt_set("run=1", NULL);
    if (!kt_poll(scans_reached, &target, 30000, 1)) {
        kt_bail("full_scans did not reach %" G_GINT64_FORMAT " within 30 s", target);
    }
    kt_set("run=0", NULL);
    return kt_read(KSM_FIELD_FULL_SCANS);
}

static gint64 merged(KtMem *m)
{
    KtProcKsm pk;
    kt_proc_ksm(m->c->pid, &pk);
    return pk.merging_pages;
}

int main(void)
{
    kt_begin("r21-smart-scan-phase",
             "R21 smart scan: identical pages visited in different scans stay unmerged "
             "while smart_scan=1; smart_scan=0 merges them",
             "samepage finding (tests/avocado), Linux 6.7 smart scan: Stefan Roesch, "
             "\"[PATCH v4 0/4] Smart scanning mode for KSM\" (2023-09-27)");
    kt_require_exact_counts();

    gint64 have;
    if (!ksm_field_read(kt->ctx, KSM_FIELD_SMART_SCAN, &have, NULL)) {
        kt_skip("this kernel has no smart_scan (Linux 6.7+)");
    }
    const gint64 n = LEN / kt->page_size;
    const gint64 tol = n / 50;

    /* 20 scans a second: slow enough to stop ksmd at a known full_scans
     * count, fast enough to age pages past 13 in seconds. */
    kt_fast_scan();
    kt_set("smart_scan=1", "sleep_millisecs=50", NULL);
    ksm_snapshot_free(kt_settle());
    kt_set("run=0", NULL);

    KtMemSpec spec_a = { .len = LEN, .fill = KT_FILL_UNIQUE, .seed = 1, .mergeable = TRUE };
    KtMemSpec spec_b = { .len = LEN, .fill = KT_FILL_UNIQUE, .seed = 2, .mergeable = TRUE };
    KtMem *a = kt_mem_spawn("early", &spec_a);
    gint64 fa = kt_read(KSM_FIELD_FULL_SCANS);
    gint64 fb = run_until(fa + 4);
    while ((fb - fa) % CYCLE == 0) {
        fb = run_until(fb + 1);
    }
    KtMem *b = kt_mem_spawn("late", &spec_b);
    gint64 d = fb - fa;
    kt_note("early registered before scan %" G_GINT64_FORMAT ", late before scan %"
            G_GINT64_FORMAT ": %" G_GINT64_FORMAT " scans apart (%" G_GINT64_FORMAT
            " mod %d)", fa + 1, fb + 1, d, d % CYCLE, CYCLE);

    kt_set("run=1", NULL);
    kt_wait_scans(40, 60000);
    gint64 skipped0 = kt_read(KSM_FIELD_PAGES_SKIPPED);
    if (!kt_mem_cmd(a, 'c', 30000) || !kt_mem_cmd(b, 'c', 30000)) {
        kt_bail("the children did not rewrite their pages");
    }
    kt_note("both children rewrote their %" G_GINT64_FORMAT " pages with the same content",
            n);
    kt_wait_scans(5 * CYCLE + 3, 60000);
    gint64 smart_a = merged(a), smart_b = merged(b);
    gint64 exact_a = kt_range_ksm_pages(a->c->pid, a->addr, a->len);
    gint64 skipped = kt_read(KSM_FIELD_PAGES_SKIPPED) - skipped0;
    kt_print_snap("smart_scan=1, 48 scans after the rewrite", kt_snap());
    kt_note("smart_scan=1: ksm_merging_pages early=%" G_GINT64_FORMAT " late=%" G_GINT64_FORMAT
            " of %" G_GINT64_FORMAT " identical pages each (KSM pages in early's range: %"
            G_GINT64_FORMAT "); pages_skipped +%" G_GINT64_FORMAT, smart_a, smart_b, n,
            exact_a, skipped);
    if (smart_a < n - tol) {
        kt_note("finding: with smart_scan=1, %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                " identical pages stayed unmerged after %d scans: their visits fall in "
                "different scans (%" G_GINT64_FORMAT " apart, not a multiple of %d)",
                n - smart_a, n, 5 * CYCLE + 3, d, CYCLE);
    } else {
        kt_note("no phase lock on this kernel: the pages merged with smart_scan=1");
    }
    kt_ok(skipped > 0, "smart scan skipped pages while on (pages_skipped +%" G_GINT64_FORMAT ")",
          skipped);

    /* The way out: every page looked at in every scan. */
    gint64 t0 = g_get_monotonic_time();
    gint64 scans0 = kt_read(KSM_FIELD_FULL_SCANS);
    kt_set("smart_scan=0", NULL);
    gint64 after_a = kt_mem_wait_merging(a, n - tol, 30000);
    gint64 after_b = kt_mem_wait_merging(b, n - tol, 30000);
    kt_note("smart_scan=0: merged within %.2f s, %" G_GINT64_FORMAT " full scans",
            (g_get_monotonic_time() - t0) / 1e6, kt_read(KSM_FIELD_FULL_SCANS) - scans0);
    kt_ok(after_a >= n - tol && after_b >= n - tol,
          "smart_scan=0 merged both children: ksm_merging_pages early=%" G_GINT64_FORMAT
          " late=%" G_GINT64_FORMAT " >= %" G_GINT64_FORMAT, after_a, after_b, n - tol);
    gint64 exact = kt_range_ksm_pages(b->c->pid, b->addr, b->len);
    kt_ok(exact < 0 || exact >= n - tol, "KSM pages in late's range (pagemap+kpageflags) %"
          G_GINT64_FORMAT " >= %" G_GINT64_FORMAT "%s", exact, n - tol,
          exact < 0 ? " (unavailable: not asserted)" : "");

    kt_mem_free(a);
    kt_mem_free(b);
    return kt_finish();
}
