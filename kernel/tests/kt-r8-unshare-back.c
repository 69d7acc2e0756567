/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R8 unshare-back: when the other sharers of a KSM page write to it or exit,
 * their mappings leave the KSM page, and when the last one goes the KSM page
 * goes too.
 *
 * Three children A, B, C hold the same 16 MiB (page i has the same content
 * in each, and differs from every other page), so ksmd makes N KSM pages
 * with three mappings each: pages_shared +N, pages_sharing +2N.
 *   1. C rewrites its pages (COW breaks its mappings): C has no merged page
 *      left, pages_sharing falls by ~N, A and B stay merged.
 *   2. B exits: pages_sharing falls by another ~N once ksmd drops B's slot.
 *   3. A is then the only mapper.  The 2009 series broke such pages back
 *      ("[PATCH 4/12] ksm: break cow once unshared"); kernels since 2.6.33
 *      keep them as single-mapped KSM pages in the stable tree.  The test
 *      records which one this kernel does.
 *   4. A rewrites its pages: pages_shared falls by ~N (the KSM pages are
 *      freed and ksmd prunes their stable nodes).
 */
#include "kt-harness.h"

#define LEN (16 * KT_MIB)

typedef struct {
    gint64 shared, sharing;
} Delta;

static Delta delta(const KsmSnapshot *a, const KsmSnapshot *base)
{
    Delta d = {
        kt_get(a, KSM_FIELD_PAGES_SHARED) - kt_get(base, KSM_FIELD_PAGES_SHARED),
        kt_get(a, KSM_FIELD_PAGES_SHARING) - kt_get(base, KSM_FIELD_PAGES_SHARING),
    };
    return d;
}

static gint64 merging(KtMem *m)
{
    KtProcKsm pk;
    kt_proc_ksm(m->c->pid, &pk);
    gint64 x = kt_range_ksm_pages(m->c->pid, m->addr, m->len);
    kt_note("  %s (pid %d): ksm_merging_pages=%" G_GINT64_FORMAT " rmap_items=%" G_GINT64_FORMAT
            " KSM pages in range=%" G_GINT64_FORMAT, m->c->label, m->c->pid, pk.merging_pages,
            pk.rmap_items, x);
    return x >= 0 ? x : pk.merging_pages;
}

int main(void)
{
    kt_begin("r8-unshare-back", "R8 unshare-back: after the other sharers write or exit, "
             "the KSM page is broken back",
             "seed 002, Hugh Dickins, \"[PATCH 4/12] ksm: break cow once unshared\" (2009-08-03)");
    kt_require_exact_counts();

    const gint64 n = LEN / kt->page_size, tol = n / 50;

    kt_fast_scan();
    g_autoptr(KsmSnapshot) base = kt_settle();

    KtMemSpec spec = { .len = LEN, .fill = KT_FILL_UNIQUE, .seed = 8888, .mergeable = TRUE };
    KtMem *a = kt_mem_spawn("A", &spec);
    KtMem *b = kt_mem_spawn("B", &spec);
    KtMem *c = kt_mem_spawn("C", &spec);

    kt_wait_scans(2, 60000);
    kt_mem_wait_merging(a, n - tol, 30000);
    kt_mem_wait_merging(b, n - tol, 30000);
    kt_mem_wait_merging(c, n - tol, 30000);
    g_autoptr(KsmSnapshot) s1 = kt_snap();
    kt_print_snap("merged", s1);
    Delta d1 = delta(s1, base);
    gint64 ma = merging(a), mb = merging(b), mc = merging(c);
    kt_note("deltas: pages_shared %+" G_GINT64_FORMAT " pages_sharing %+" G_GINT64_FORMAT
            " (expected ~N=%" G_GINT64_FORMAT " and ~2N)", d1.shared, d1.sharing, n);
    kt_ok(ma >= n - tol && mb >= n - tol && mc >= n - tol,
          "all three sharers merged (%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT
          " of %" G_GINT64_FORMAT " pages)", ma, mb, mc, n);
    if (kt_global_ok("N KSM pages with three mappings (global)")) {
        kt_ok(d1.shared >= n - tol && d1.sharing >= 2 * n - 2 * tol,
              "N KSM pages with three mappings: shared %+" G_GINT64_FORMAT " >= %" G_GINT64_FORMAT
              ", sharing %+" G_GINT64_FORMAT " >= %" G_GINT64_FORMAT,
              d1.shared, n - tol, d1.sharing, 2 * n - 2 * tol);
    }

    /* 1. C writes */
    kt_note("step 1: C rewrites every page");
    kt_ok(kt_mem_cmd(c, 'w', 30000), "C rewrote its pages");
    kt_wait_scans(2, 60000);
    g_autoptr(KsmSnapshot) s2 = kt_snap();
    kt_print_snap("after C wrote", s2);
    Delta d2 = delta(s2, base);
    ma = merging(a), mb = merging(b), mc = merging(c);
    kt_ok(mc <= tol, "C has no merged page left (%" G_GINT64_FORMAT ")", mc);
    kt_ok(ma >= n - tol && mb >= n - tol, "A and B are still merged (%" G_GINT64_FORMAT "/%"
          G_GINT64_FORMAT ")", ma, mb);
    if (kt_global_ok("pages_sharing/pages_shared after C wrote")) {
        kt_ok(d1.sharing - d2.sharing >= n - 2 * tol, "pages_sharing fell by %" G_GINT64_FORMAT
              " >= N - tol", d1.sharing - d2.sharing);
        kt_ok(d2.shared >= n - tol, "pages_shared held (%+" G_GINT64_FORMAT "): A and B still share",
              d2.shared);
    }

    /* 2. B exits */
    kt_note("step 2: B exits");
    kt_mem_free(b);
    kt_wait_scans(2, 60000);
    g_autoptr(KsmSnapshot) s3 = kt_snap();
    kt_print_snap("after B exited", s3);
    Delta d3 = delta(s3, base);
    ma = merging(a);
    if (kt_global_ok("pages_sharing after B exited")) {
        kt_ok(d2.sharing - d3.sharing >= n - 2 * tol, "pages_sharing fell by %" G_GINT64_FORMAT
              " >= N - tol once ksmd dropped B", d2.sharing - d3.sharing);
        kt_ok(d3.sharing <= tol, "no sharing mapping of ours is left (pages_sharing delta %+"
              G_GINT64_FORMAT ")", d3.sharing);
    }

    /* 3. A alone: what happens to single-mapped KSM pages */
    gint64 kept = ma;
    if (d3.shared >= n - tol) {
        kt_note("step 3: this kernel keeps A's %" G_GINT64_FORMAT " pages as single-mapped KSM "
                "pages (pages_shared %+" G_GINT64_FORMAT "): no break-back of unshared pages, "
                "as since 2.6.33", kept, d3.shared);
    } else {
        kt_note("step 3: this kernel broke A's KSM pages back (pages_shared %+" G_GINT64_FORMAT
                ", A's KSM pages %" G_GINT64_FORMAT "), as the 2009 patch 4/12 did", d3.shared, kept);
    }

    /* 4. A writes: the KSM pages are gone */
    kt_note("step 4: A rewrites every page");
    kt_ok(kt_mem_cmd(a, 'w', 30000), "A rewrote its pages");
    kt_wait_scans(2, 60000);
    g_autoptr(KsmSnapshot) s4 = kt_snap();
    kt_print_snap("after A wrote", s4);
    Delta d4 = delta(s4, base);
    ma = merging(a);
    kt_ok(ma <= tol, "A has no merged page left (%" G_GINT64_FORMAT ")", ma);
    if (kt_global_ok("pages_shared/pages_sharing back at the baseline")) {
        kt_ok(d3.shared - d4.shared >= (d3.shared >= n - tol ? n - 2 * tol : 0) && d4.shared <= tol,
              "pages_shared fell back to the baseline (%+" G_GINT64_FORMAT " -> %+" G_GINT64_FORMAT
              ", tolerance %" G_GINT64_FORMAT ")", d3.shared, d4.shared, tol);
        kt_ok(d4.sharing <= tol, "pages_sharing at the baseline (%+" G_GINT64_FORMAT ")", d4.sharing);
    }

    kt_mem_free(a);
    kt_mem_free(c);
    return kt_finish();
}
