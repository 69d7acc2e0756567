/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R13 MADV_MERGEABLE / MADV_UNMERGEABLE error cases, through libksm
 * (ksm_advise_mergeable / ksm_advise_unmergeable) in this process on its own
 * memory (the safe path; the test process is the only one involved).
 *
 *  a. MADV_UNMERGEABLE on a range that was never mergeable succeeds (anonymous
 *     private, and a MAP_SHARED mapping KSM can never merge).
 *  b. A range with an unmapped gap: MADV_MERGEABLE fails with ENOMEM
 *     (KSM_ERROR_UNMAPPED) yet registers both mapped parts; after ksmd merged
 *     them, MADV_UNMERGEABLE over the gap fails with ENOMEM too, yet both
 *     parts are unmerged and unregistered.
 *  c. EINTR: MADV_UNMERGEABLE of 32 MiB of merged pages while SIGALRM
 *     (handler without SA_RESTART) fires every 50 us: the kernel stops with
 *     EINTR (KSM_ERROR_INTERRUPTED) part-way, or finishes first; whatever it
 *     did stays done, and a second call completes.
 *  EAGAIN (out of memory for internal structures) cannot be provoked here;
 *  libksm retries it a few times (unit tests cover that path).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include "kt-harness.h"

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static const char *code_name(const GError *e)
{
    if (!e) {
        return "success";
    }
    if (e->domain != KSM_ERROR) {
        return "foreign error";
    }
    switch (e->code) {
    case KSM_ERROR_UNMAPPED: return "KSM_ERROR_UNMAPPED (ENOMEM)";
    case KSM_ERROR_INTERRUPTED: return "KSM_ERROR_INTERRUPTED (EINTR)";
    case KSM_ERROR_NO_MEMORY: return "KSM_ERROR_NO_MEMORY (EAGAIN)";
    case KSM_ERROR_NOT_AVAILABLE: return "KSM_ERROR_NOT_AVAILABLE (EINVAL)";
    default: return "other KSM error";
    }
}

static gint64 self_merging(void)
{
    KtProcKsm pk;
    kt_proc_ksm(getpid(), &pk);
    return pk.merging_pages;
}

static gboolean self_merged_at_least(gpointer data)
{
    return self_merging() >= *(gint64 *)data;
}

int main(void)
{
    kt_begin("r13-madvise-errors", "R13 MADV_UNMERGEABLE errors: never-mergeable range succeeds; "
             "ranges with gaps give ENOMEM but process the mapped parts; EINTR",
             "seed 002, Hugh Dickins, \"[PATCH 11/12] ksm: add some documentation\" (2009-08-03): "
             "\"they will report ENOMEM if the specified range includes unmapped gaps (though "
             "working on the intervening mapped areas), and might fail with EAGAIN\"; "
             "\"[PATCH 7/12] ksm: fix endless loop on oom\" (signal_pending in unmerge_ksm_pages)");
    kt_require_exact_counts();

    const gsize ps = kt->page_size;
    pid_t self = getpid();
    g_autoptr(GError) err = NULL;
    gboolean ok;

    kt_fast_scan();
    kt_settle();

    /* ---- a. never mergeable ---- */
    gsize alen = 4 * KT_MIB;
    guint8 *plain = kt_map_anon(alen);
    kt_fill_same(plain, alen, 0x11);
    ok = ksm_advise_unmergeable(plain, alen, &err);
    kt_ok(ok, "MADV_UNMERGEABLE on a private range never made mergeable: %s", code_name(err));
    g_clear_error(&err);
    guint8 *shared = mmap(NULL, alen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        kt_bail("mmap shared: %s", g_strerror(errno));
    }
    kt_fill_same(shared, alen, 0x12);
    ok = ksm_advise_unmergeable(shared, alen, &err);
    kt_ok(ok, "MADV_UNMERGEABLE on a MAP_SHARED range (KSM never merges it): %s", code_name(err));
    g_clear_error(&err);
    kt_ok(kt_range_mergeable_bytes(self, plain, alen) == 0, "the private range is not mergeable");

    /* ---- b. gaps ---- */
    gsize part = 4 * KT_MIB;
    guint8 *whole = kt_map_anon(3 * part);
    if (munmap(whole + part, part) < 0) {
        kt_bail("munmap: %s", g_strerror(errno));
    }
    guint8 *left = whole, *right = whole + 2 * part;
    kt_fill_same(left, part, 0x44);
    kt_fill_same(right, part, 0x44);
    kt_note("gapped range %p+%zu MiB: mapped %p+4 MiB, hole %p+4 MiB, mapped %p+4 MiB "
            "(all pages identical)", whole, 3 * part / KT_MIB, left, whole + part, right);

    ok = ksm_advise_mergeable(whole, 3 * part, &err);
    kt_ok(!ok && g_error_matches(err, KSM_ERROR, KSM_ERROR_UNMAPPED),
          "MADV_MERGEABLE over the hole: %s%s%s", code_name(err), err ? ": " : "",
          err ? err->message : "");
    g_clear_error(&err);
    gint64 mg_l = kt_range_mergeable_bytes(self, left, part);
    gint64 mg_r = kt_range_mergeable_bytes(self, right, part);
    kt_ok(mg_l == (gint64)part && mg_r == (gint64)part,
          "both mapped parts were registered anyway (mg bytes %" G_GINT64_FORMAT " + %"
          G_GINT64_FORMAT ")", mg_l, mg_r);

    gint64 want = 2 * (gint64)(part / ps) * 98 / 100;
    kt_wait_scans(2, 60000);
    kt_poll(self_merged_at_least, &want, 20000, 50);
    gint64 m_before = self_merging();
    gint64 x_l = kt_range_ksm_pages(self, left, part), x_r = kt_range_ksm_pages(self, right, part);
    kt_ok(m_before >= want, "ksmd merged both parts: own merging pages %" G_GINT64_FORMAT
          " (KSM pages %" G_GINT64_FORMAT " + %" G_GINT64_FORMAT ")", m_before, x_l, x_r);

    ok = ksm_advise_unmergeable(whole, 3 * part, &err);
    kt_ok(!ok && g_error_matches(err, KSM_ERROR, KSM_ERROR_UNMAPPED),
          "MADV_UNMERGEABLE over the hole: %s%s%s", code_name(err), err ? ": " : "",
          err ? err->message : "");
    g_clear_error(&err);
    x_l = kt_range_ksm_pages(self, left, part);
    x_r = kt_range_ksm_pages(self, right, part);
    mg_l = kt_range_mergeable_bytes(self, left, part);
    mg_r = kt_range_mergeable_bytes(self, right, part);
    kt_note("after: KSM pages %" G_GINT64_FORMAT " + %" G_GINT64_FORMAT ", mg bytes %"
            G_GINT64_FORMAT " + %" G_GINT64_FORMAT ", own merging pages %" G_GINT64_FORMAT,
            x_l, x_r, mg_l, mg_r, self_merging());
    kt_ok(x_l == 0 && x_r == 0, "both mapped parts were unmerged despite the error");
    kt_ok(mg_l == 0 && mg_r == 0, "both mapped parts are no longer mergeable");
    munmap(left, part);
    munmap(right, part);

    /* ---- c. EINTR ---- */
    gsize clen = 32 * KT_MIB;
    guint8 *big = kt_map_anon(clen);
    kt_fill_same(big, clen, 0x66);
    if (!ksm_advise_mergeable(big, clen, &err)) {
        kt_bail("MADV_MERGEABLE: %s", err->message);
    }
    want = (gint64)(clen / ps) * 98 / 100;
    kt_wait_scans(2, 60000);
    kt_poll(self_merged_at_least, &want, 20000, 50);
    gint64 merged = kt_range_ksm_pages(self, big, clen);
    kt_note("32 MiB merged: %" G_GINT64_FORMAT " KSM pages", merged);

    struct sigaction sa = { .sa_handler = on_alarm };   /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { .it_interval = { 0, 50 }, .it_value = { 0, 50 } };
    setitimer(ITIMER_REAL, &it, NULL);
    gint64 t0 = g_get_monotonic_time();
    ok = ksm_advise_unmergeable(big, clen, &err);
    gint64 dt = g_get_monotonic_time() - t0;
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    gint64 left_merged = kt_range_ksm_pages(self, big, clen);
    kt_note("MADV_UNMERGEABLE under SIGALRM every 50 us: %s after %.2f ms, %d alarms; KSM pages "
            "%" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT "", code_name(err), dt / 1e3, (int)alarms,
            merged, left_merged);
    kt_ok(ok || g_error_matches(err, KSM_ERROR, KSM_ERROR_INTERRUPTED),
          "the unmerge either finished or stopped with EINTR (%s)", code_name(err));
    if (!ok) {
        kt_ok(left_merged <= merged, "what it unmerged before the signal stays unmerged (%"
              G_GINT64_FORMAT " of %" G_GINT64_FORMAT " still merged)", left_merged, merged);
    }
    g_clear_error(&err);
    ok = ksm_advise_unmergeable(big, clen, &err);
    left_merged = kt_range_ksm_pages(self, big, clen);
    kt_ok(ok && left_merged == 0, "a second MADV_UNMERGEABLE without signals completes (%s, %"
          G_GINT64_FORMAT " KSM pages left)", code_name(err), left_merged);
    g_clear_error(&err);
    kt_skip_check("EAGAIN (no memory for KSM's internal structures) cannot be provoked here");

    munmap(big, clen);
    munmap(plain, alen);
    munmap(shared, alen);
    /* this process is registered with KSM: let ksmd see its areas gone */
    kt_wait_scans_or_idle(2, 15000);
    return kt_finish();
}
