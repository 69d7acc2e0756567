/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R20 OOM kill while ksmd and khugepaged are busy with the victim.
 *
 * The child (in a memory cgroup) has a 32 MiB area, 2 MiB aligned, filled
 * with small pages (half of each 2 MiB identical, half unique), then
 * MADV_HUGEPAGE and MADV_MERGEABLE: ksmd merges (splitting huge pages) while
 * khugepaged, scanning every 10 ms for the test, collapses what it can.
 * Then its threads balloon with MADV_HUGEPAGE chunks until the cgroup OOM
 * killer takes it, while another thread flips the area's THP and KSM advice.
 * Tetsuo Handa's report (seed 003) is the failure looked for: the OOM
 * reaper "unable to reap" the victim because khugepaged held its mmap_sem.
 * The victim must be gone within the deadline; "unable to reap" (and
 * BUG/WARNING/hung task) in the kernel log fails the test.
 * THP is only advised where the host allows it (transparent_hugepage/enabled
 * not "never"); khugepaged's settings are restored at the end.
 */
#include <string.h>

#include "kt-oom-common.h"

#define LIMIT (96 * KT_MIB)
#define MERGE_LEN (32 * KT_MIB)
#define DEADLINE_MS 30000
#define EXIT_MS 10000
#define THP "/sys/kernel/mm/transparent_hugepage"
#define KHP THP "/khugepaged"

static gint64 read_num(const char *path)
{
    g_autofree char *t = NULL;
    return g_file_get_contents(path, &t, NULL, NULL) ? g_ascii_strtoll(t, NULL, 10) : -1;
}

int main(void)
{
    kt_begin("r20-oom-thp", "R20 OOM kill while ksmd and khugepaged are busy: bounded exit; "
             "flag \"unable to reap\"",
             "seed 003, Tetsuo Handa, \"Re: [PATCH 2/2] mm, oom: fix potential data corruption "
             "when oom_reaper races with writer\" (2017-08-08): \"oom_reaper: unable to reap "
             "pid:3163\" with khugepaged holding the victim's mmap_sem");
    kt_require_cgroup();

    g_autofree char *enabled = NULL;
    gboolean thp = g_file_get_contents(THP "/enabled", &enabled, NULL, NULL) &&
                   !strstr(enabled, "[never]");
    if (thp) {
        kt_note("THP: enabled = %s", g_strstrip(enabled));
        kt_file_set(KHP "/scan_sleep_millisecs", "10");
        kt_file_set(KHP "/alloc_sleep_millisecs", "10");
    } else {
        kt_note("THP is off or absent on this host (%s): MADV_HUGEPAGE has no effect, "
                "khugepaged stays idle; the OOM part still runs", enabled ? g_strstrip(enabled) : "no "
                THP);
    }

    KtOomSpec spec = { .merge_len = MERGE_LEN, .hugepage = thp,
                       .fault_threads = 2, .map_threads = 1, .advise_threads = 1 };
    gint64 col0 = read_num(KHP "/pages_collapsed"), fs0 = read_num(KHP "/full_scans");
    KtOomSetup s;
    kt_oom_setup(LIMIT, &spec, "thp (in the cgroup)", &s);
    const gint64 n = MERGE_LEN / kt->page_size;
    /* let khugepaged have its turn on the unique halves */
    g_usleep(1500 * 1000);
    g_autofree char *smaps_path = g_strdup_printf("/proc/%d/smaps_rollup", s.child->pid);
    g_autofree char *rollup = NULL;
    g_file_get_contents(smaps_path, &rollup, NULL, NULL);
    const char *ah = rollup ? strstr(rollup, "AnonHugePages:") : NULL;
    kt_note("child pid %d: %zu MiB area at %p, %" G_GINT64_FORMAT " pages merged; khugepaged "
            "full_scans %+" G_GINT64_FORMAT ", pages_collapsed %+" G_GINT64_FORMAT "; %.*s",
            s.child->pid, MERGE_LEN / KT_MIB, s.view.addr, s.merged, read_num(KHP "/full_scans") - fs0,
            read_num(KHP "/pages_collapsed") - col0, ah ? (int)strcspn(ah, "\n") : 0, ah ? ah : "");
    kt_ok(s.merged >= n / 2 - n / 50, "ksmd merged the identical halves (%" G_GINT64_FORMAT ")",
          s.merged);
    kt_dmesg_check("before the balloon");

    KtOomWatch w;
    kt_oom_watch(s.child, s.cg, DEADLINE_MS, &w);
    kt_note("khugepaged during the test: full_scans %+" G_GINT64_FORMAT ", pages_collapsed %+"
            G_GINT64_FORMAT, read_num(KHP "/full_scans") - fs0,
            read_num(KHP "/pages_collapsed") - col0);
    kt_oom_report(s.child, s.bystander, &w, DEADLINE_MS, EXIT_MS);
    g_free(w.status);
    kt_oom_teardown(&s);
    return kt_finish();
}
