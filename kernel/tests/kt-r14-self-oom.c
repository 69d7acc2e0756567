/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R14 self-balloon OOM: a process unmerging itself past its memory limit is
 * OOM-killed and gone within a deadline, and nothing outside its cgroup dies.
 *
 * A child in a memory cgroup made by the test fills 64 MiB with identical
 * pages and registers them; once ksmd merged them the duplicates are freed
 * and uncharged, so the cgroup's usage drops to a few MiB.  The test lowers
 * the limit to usage + 16 MiB and asks the child to MADV_UNMERGEABLE its
 * whole range (through libksm): breaking 64 MiB of KSM pages needs 64 MiB of
 * copies, charged to the child's own cgroup, so the cgroup OOM killer fires
 * and its only candidate is the child.  Andrea Arcangeli called this path
 * "the only place that is 100% fine at breaking KSM pages"; Hugh Dickins
 * tested it: "it correctly detects ... the pending SIGKILL, and backs out to
 * the point where it gets killed and all is well".
 * A bystander outside the cgroup must survive; the kernel log is checked.
 */
#include <signal.h>
#include <sys/wait.h>
#include <string.h>
#include <unistd.h>

#include "kt-harness.h"

#define LEN (64 * KT_MIB)
#define HEADROOM (16 * KT_MIB)
#define DEADLINE_MS 30000

static int balloon(KtChild *self, gpointer data)
{
    const char *cgroup = data;
    g_autoptr(GError) err = NULL;

    if (!kt_cgroup_enter(cgroup, &err)) {
        printf("# balloon: %s\n", err->message);
        kt_child_reply(self, 'E');
        return 1;
    }
    void *addr = kt_map_anon(LEN);
    if (!addr) {
        kt_child_reply(self, 'E');
        return 1;
    }
    kt_fill_same(addr, LEN, 0x5a);
    if (!ksm_advise_mergeable(addr, LEN, &err)) {
        printf("# balloon: %s\n", err->message);
        kt_child_reply(self, 'E');
        return 1;
    }
    kt_child_reply(self, 'r');
    kt_child_write(self, &addr, sizeof(addr));
    if (kt_child_recv(self) != 'u') {
        return 2;
    }
    gboolean ok = ksm_advise_unmergeable(addr, LEN, &err);
    /* Only reached if the kernel returned instead of killing us. */
    printf("# balloon: MADV_UNMERGEABLE returned: %s\n", ok ? "success" : err->message);
    fflush(stdout);
    kt_child_reply(self, ok ? 'u' : 'E');
    kt_child_recv(self);
    return 0;
}

static int bystander(KtChild *self, gpointer data)
{
    kt_child_reply(self, 'r');
    kt_child_recv(self);
    return 0;
}

int main(void)
{
    kt_begin("r14-self-oom", "R14 self-balloon OOM: MADV_UNMERGEABLE past the cgroup limit -> "
             "OOM-killed within a deadline; nothing outside the cgroup dies",
             "seed 000, Hugh Dickins, \"Re: [PATCH 13/12] ksm: fix munlock during exit_mmap "
             "deadlock\" (2009-08-26): \"when a process balloons itself up to OOMing point with an "
             "madvise MADV_UNMERGEABLE\"; seed 002, Andrea Arcangeli in the same thread");
    kt_require_cgroup();

    const gint64 n = LEN / kt->page_size, tol = n / 50;
    g_autoptr(GError) err = NULL;

    kt_fast_scan();
    kt_settle();

    KtCgroup *cg = kt_cgroup_create(4 * LEN, &err);
    if (!cg) {
        kt_bail("cannot make the memory cgroup: %s", err->message);
    }
    KtChild *by = kt_child_spawn("bystander (outside the cgroup)", bystander, NULL);
    kt_child_expect(by, 'r', 10000);

    KtChild *b = kt_child_spawn("balloon", balloon, (gpointer)kt_cgroup_path(cg));
    void *addr = NULL;
    if (!kt_child_expect(b, 'r', 60000) || !kt_child_read(b, &addr, sizeof(addr), 5000)) {
        kt_bail("the balloon child did not set up its memory");
    }
    kt_note("balloon: pid %d in %s, %" G_GINT64_FORMAT " identical pages at %p; usage %"
            G_GINT64_FORMAT " KiB", b->pid, kt_cgroup_path(cg), n, addr, kt_cgroup_usage(cg) / 1024);

    KtMem view = { .c = b, .addr = addr, .len = LEN };
    kt_wait_scans(2, 60000);
    gint64 merged = kt_mem_wait_merging(&view, n - tol, 30000);
    if (!kt_ok(merged >= n - tol, "the balloon's pages merged (%" G_GINT64_FORMAT " of %"
               G_GINT64_FORMAT ")", merged, n)) {
        kt_bail("cannot provoke the OOM without merged pages");
    }
    /* the freed duplicates are uncharged lazily: give it a moment */
    g_usleep(200 * 1000);
    gint64 usage = kt_cgroup_usage(cg);
    guint64 limit = (guint64)usage + HEADROOM;
    if (!kt_cgroup_set_limit(cg, limit, &err)) {
        kt_bail("lowering the limit: %s", err->message);
    }
    kt_note("after merging: cgroup usage %" G_GINT64_FORMAT " KiB; limit lowered to %" G_GUINT64_FORMAT
            " KiB (usage + %zu MiB); unmerging needs %zu MiB more",
            usage / 1024, limit / 1024, HEADROOM / KT_MIB, LEN / KT_MIB);
    gint64 kills0 = kt_cgroup_oom_kills(cg);
    kt_dmesg_check("before the unmerge");

    gint64 t0 = g_get_monotonic_time();
    kt_child_send(b, 'u');
    gboolean gone = kt_child_reap(b, DEADLINE_MS);
    gint64 dt = g_get_monotonic_time() - t0;
    g_autofree char *st = gone ? kt_status_text(b->status) : g_strdup("still running");
    kt_note("balloon: %s %.2f s after MADV_UNMERGEABLE was asked for", st, dt / 1e6);
    kt_ok(gone, "the balloon is gone within %d s (%.2f s)", DEADLINE_MS / 1000, dt / 1e6);
    kt_ok(gone && WIFSIGNALED(b->status) && WTERMSIG(b->status) == SIGKILL,
          "it was killed by SIGKILL (the OOM killer), not returned from madvise (%s)", st);
    gint64 kills = kt_cgroup_oom_kills(cg);
    kt_ok(kills0 < 0 || kills > kills0, "the cgroup counted an OOM kill (oom_kill %" G_GINT64_FORMAT
          " -> %" G_GINT64_FORMAT ")", kills0, kills);

    kt_dmesg_check("after the OOM");
    g_autoptr(GArray) victims = kt_oom_victims();
    gboolean only_inside = TRUE;
    for (guint i = 0; i < victims->len; i++) {
        only_inside &= g_array_index(victims, pid_t, i) == b->pid;
    }
    kt_ok(only_inside, "every OOM victim in the kernel log was inside the cgroup (%u victims, "
          "balloon pid %d)", victims->len, b->pid);
    kt_ok(kt_pid_alive(by->pid), "the bystander outside the cgroup (pid %d) is alive", by->pid);
    g_autoptr(GArray) inside = kt_cgroup_pids(kt_cgroup_path(cg));
    kt_ok(inside->len == 0, "the cgroup is empty (%u processes)", inside->len);

    g_autofree char *path = g_strdup(kt_cgroup_path(cg));
    kt_ok(kt_cgroup_destroy(cg, 15000, &err), "cgroup %s removed%s%s", path, err ? ": " : "",
          err ? err->message : "");
    kt_child_send(by, 'x');
    kt_child_reap(by, 5000);
    return kt_finish();
}
