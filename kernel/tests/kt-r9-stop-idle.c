/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R9 stop and idle.
 *
 * Stop: with a child's 16 MiB merged, writing run=0 stops ksmd at once
 * (run_store takes ksm_thread_mutex, so no batch is in flight when the write
 * returns): full_scans and pages_scanned stay flat from then on, and the
 * merged pages stay merged (run=0 keeps them; only run=2 unmerges).
 *
 * Idle: once nothing is registered (the child exited and ksmd dropped its
 * slot), ksmd with run=1 does no work: full_scans stays flat ("[PATCH 5/12]
 * ksm: keep quiet while list empty").  Only meaningful on a host where no
 * other process is mergeable: otherwise that check is skipped with the list.
 */
#include "kt-harness.h"

#define LEN (16 * KT_MIB)
#define FLAT_MS 1500

typedef struct {
    gint64 full, scanned;
    gboolean have_scanned;
} Progress;

static Progress progress_now(void)
{
    Progress p = { kt_read(KSM_FIELD_FULL_SCANS), -1, FALSE };
    p.have_scanned = ksm_field_read(kt->ctx, KSM_FIELD_PAGES_SCANNED, &p.scanned, NULL);
    return p;
}

/* Watch for FLAT_MS; TRUE when neither counter moved. */
static gboolean stays_flat(const char *what, Progress *start, Progress *end)
{
    *start = progress_now();
    g_usleep(FLAT_MS * 1000);
    *end = progress_now();
    kt_note("%s: full_scans %" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT ", pages_scanned %"
            G_GINT64_FORMAT " -> %" G_GINT64_FORMAT " over %d ms", what, start->full, end->full,
            start->scanned, end->scanned, FLAT_MS);
    return end->full == start->full && (!start->have_scanned || end->scanned == start->scanned);
}

int main(void)
{
    kt_begin("r9-stop-idle", "R9 stop/idle: run=0 stops promptly and keeps merged pages; "
             "nothing registered -> full_scans flat",
             "seed 002, Hugh Dickins, \"[PATCH 5/12] ksm: keep quiet while list empty\" and "
             "\"[PATCH 11/12] ksm: add some documentation\" (run: \"set 0 to stop ksmd from "
             "running but keep merged pages\") (2009-08-03)");
    kt_require_exact_counts();

    const gint64 n = LEN / kt->page_size, tol = n / 50;

    kt_fast_scan();
    g_autoptr(KsmSnapshot) base = kt_settle();
    KtMemSpec spec = { .len = LEN, .fill = KT_FILL_SAME, .byte = 0x33, .mergeable = TRUE };
    KtMem *m = kt_mem_spawn("sharer", &spec);
    kt_wait_scans(2, 60000);
    gint64 merged = kt_mem_wait_merging(m, n - tol, 30000);
    kt_ok(merged >= n - tol, "child merged %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT " pages",
          merged, n);
    g_autoptr(KsmSnapshot) s1 = kt_snap();
    kt_print_snap("merged, run=1", s1);

    /* ---- stop ---- */
    gint64 t0 = g_get_monotonic_time();
    kt_set("run=0", NULL);
    kt_note("run=0 written in %.1f ms", (g_get_monotonic_time() - t0) / 1e3);
    Progress a, b;
    kt_ok(stays_flat("after run=0", &a, &b),
          "ksmd stopped at once: no scan progress in %d ms after the write returned", FLAT_MS);
    kt_ok(kt_read(KSM_FIELD_RUN) == 0, "run reads 0");
    g_autoptr(KsmSnapshot) s2 = kt_snap();
    kt_print_snap("stopped", s2);
    KtProcKsm pk;
    kt_proc_ksm(m->c->pid, &pk);
    gint64 exact = kt_range_ksm_pages(m->c->pid, m->addr, m->len);
    kt_ok(pk.merging_pages >= merged - tol && (exact < 0 || exact >= merged - tol),
          "the child's pages stay merged with run=0 (merging %" G_GINT64_FORMAT
          ", KSM pages in range %" G_GINT64_FORMAT ", before %" G_GINT64_FORMAT ")",
          pk.merging_pages, exact, merged);
    gint64 m1 = kt_get(s1, KSM_FIELD_PAGES_SHARED) + kt_get(s1, KSM_FIELD_PAGES_SHARING);
    gint64 m2 = kt_get(s2, KSM_FIELD_PAGES_SHARED) + kt_get(s2, KSM_FIELD_PAGES_SHARING);
    if (kt_global_ok("global shared+sharing kept")) {
        kt_ok(m2 >= m1 - tol, "global shared+sharing kept (%" G_GINT64_FORMAT " -> %"
              G_GINT64_FORMAT ")", m1, m2);
    }

    /* ---- idle ---- */
    kt_mem_free(m);
    kt_set("run=1", NULL);
    kt_note("child exited; run=1 again so ksmd drops its slot");
    kt_wait_scans_or_idle(3, 30000);
    g_autofree char *others = NULL;
    guint n_others = kt_other_mergeable(&others);
    if (n_others) {
        kt_skip_check("idle check needs an isolated host: %u other mergeable processes: %s",
                      n_others, others);
    } else {
        g_autoptr(KsmSnapshot) s3 = kt_snap();
        kt_print_snap("nothing registered", s3);
        gboolean flat = stays_flat("idle, run=1, nothing registered", &a, &b);
        /* another process may have registered during the window (a VM starting) */
        g_autofree char *late = NULL;
        guint n_late = kt_other_mergeable(&late);
        if (!flat && n_late) {
            kt_skip_check("idle check: %u mergeable processes appeared while it ran (%s): "
                          "the host is not isolated", n_late, late);
        } else {
            kt_ok(flat, "nothing registered: full_scans and pages_scanned stay flat for %d ms",
                  FLAT_MS);
        }
        kt_ok(kt_rmap_items(s3) <= kt_rmap_items(base) + tol,
              "no rmap_items of ours left (%" G_GINT64_FORMAT ", baseline %" G_GINT64_FORMAT ")",
              kt_rmap_items(s3), kt_rmap_items(base));
    }
    return kt_finish();
}
