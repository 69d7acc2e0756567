/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R19 multithreaded OOM exit: a process whose threads fault memory, while
 * another thread maps and unmaps and another flips MADV_MERGEABLE on its
 * merged area (both take mmap_lock for write), is OOM-killed in its memory
 * cgroup and then exits, every thread, within a deadline.
 *
 * Seed 001 (Michel Lespinasse) describes the four-way wait it must not hit:
 * the OOM-killed thread needs mmap_lock to exit, a thread queued for the
 * write lock (mmap/munmap) waits behind a faulting thread that holds it for
 * read and waits in the OOM killer for the victim to exit.  Today the OOM
 * reaper frees the victim's memory without waiting for its exit; this test
 * checks the result: the kill is followed by the exit within seconds, and
 * the kernel log has no "unable to reap" or hung task.
 */
#include "kt-oom-common.h"

#define LIMIT (64 * KT_MIB)
#define MERGE_LEN (16 * KT_MIB)
#define DEADLINE_MS 30000
#define EXIT_MS 10000

int main(void)
{
    kt_begin("r19-mt-oom-exit", "R19 multithreaded OOM exit: fault threads plus an mmap/munmap "
             "thread in a tight cgroup: once killed, exits within a deadline",
             "seed 001, Michel Lespinasse, \"FYI: mmap_sem OOM patch\" (lkml, 2010-07-07): "
             "\"the OOMing thread can't exit because it needs to acquire the mmap_sem, while the "
             "thread holding mmap_sem can't progress because it needs to allocate memory\"");
    kt_require_cgroup();

    KtOomSpec spec = { .merge_len = MERGE_LEN,
                       .fault_threads = 4, .map_threads = 1, .advise_threads = 1 };
    KtOomSetup s;
    kt_oom_setup(LIMIT, &spec, "threads (in the cgroup)", &s);
    kt_note("threads: pid %d, limit %zu MiB, %zu MiB mergeable (half identical): %" G_GINT64_FORMAT
            " pages merged; usage %" G_GINT64_FORMAT " KiB; starting 4 fault threads, 1 "
            "mmap/munmap thread, 1 MADV_(UN)MERGEABLE thread", s.child->pid, LIMIT / KT_MIB,
            MERGE_LEN / KT_MIB, s.merged, kt_cgroup_usage(s.cg) / 1024);
    kt_dmesg_check("before the balloon");

    KtOomWatch w;
    kt_oom_watch(s.child, s.cg, DEADLINE_MS, &w);
    kt_oom_report(s.child, s.bystander, &w, DEADLINE_MS, EXIT_MS);
    g_free(w.status);
    kt_oom_teardown(&s);
    return kt_finish();
}
