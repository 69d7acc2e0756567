/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R15 cross-process unmerge under OOM: run=2 while a mergeable process in a
 * tight memory cgroup balloons.
 *
 * A "balloon" child in a cgroup made by the test holds 64 MiB of merged
 * identical pages; an "inmate" shares the cgroup with 1 MiB of its own.  The
 * limit is lowered to usage + 16 MiB.  A disposable "writer" child outside
 * the cgroup writes run=2 (libksm ksm_knob_write): the kernel breaks every
 * KSM page in the writer's context, charging the copies to the balloon's
 * cgroup, whose OOM killer must then choose among the cgroup's processes.
 * Hugh Dickins (seed 000): this path "cannot proceed without the OOM killer
 * killing the wrong process".  Asserted: the write returns within a deadline
 * (success leaves run=2, failure leaves run=0), the balloon exits, nothing
 * is stuck in D state, nothing outside the cgroup dies, and the kernel log
 * has no hung task.  Which process the OOM killer chose is recorded, and so
 * is "oom_reaper: unable to reap": on 6.18 the first victim (the balloon)
 * blocks in __ksm_exit on the mmap_lock that the writer's break_ksm holds,
 * the reaper gives up, and the OOM killer takes a second process of the
 * cgroup.  That is the wrong-victim behaviour seed 000 describes, the
 * reason samepage never writes run=2 from a daemon and checks headroom
 * first: this test proves the kernel still behaves so.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt-harness.h"

#define LEN (64 * KT_MIB)
#define HEADROOM (16 * KT_MIB)
#define DEADLINE_MS 60000

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
    kt_fill_same(addr, LEN, 0x3c);
    if (!ksm_advise_mergeable(addr, LEN, &err)) {
        kt_child_reply(self, 'E');
        return 1;
    }
    kt_child_reply(self, 'r');
    kt_child_write(self, &addr, sizeof(addr));
    kt_child_recv(self);
    return 0;
}

static int inmate(KtChild *self, gpointer data)
{
    const char *cgroup = data;
    g_autoptr(GError) err = NULL;

    if (!kt_cgroup_enter(cgroup, &err)) {
        kt_child_reply(self, 'E');
        return 1;
    }
    void *addr = kt_map_anon(KT_MIB);
    kt_fill_unique(addr, KT_MIB, 5);
    kt_child_reply(self, 'r');
    kt_child_recv(self);
    return 0;
}

typedef struct {
    int ok;
    int code;
    gint64 us;
    char message[256];
} WriteResult;

static int writer(KtChild *self, gpointer data)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GError) err = NULL;
    WriteResult r = { 0 };

    kt_child_reply(self, 'r');
    if (kt_child_recv(self) != 'w') {
        return 2;
    }
    gint64 t0 = g_get_monotonic_time();
    r.ok = ksm_knob_write(ctx, KSM_FIELD_RUN, KSM_RUN_UNMERGE, &err);
    r.us = g_get_monotonic_time() - t0;
    if (!r.ok) {
        r.code = err->code;
        g_strlcpy(r.message, err->message, sizeof(r.message));
    }
    kt_child_reply(self, 'd');
    kt_child_write(self, &r, sizeof(r));
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
    kt_begin("r15-run2-oom", "R15 run=2 while a mergeable process in a tight cgroup balloons: "
             "the write returns, the victim exits, no hung task",
             "seed 000, Hugh Dickins, \"Re: [PATCH 13/12] ksm: fix munlock during exit_mmap "
             "deadlock\" (2009-08-26): \"The case I didn't try last night is doing "
             "KSM_RUN_UNMERGE\"; seed 002, \"[PATCH 9/12] ksm: fix oom deadlock\" (2009-08-03)");
    kt_require_cgroup();

    const gint64 n = LEN / kt->page_size, tol = n / 50;
    g_autoptr(GError) err = NULL;

    kt_fast_scan();
    kt_settle();
    KtCgroup *cg = kt_cgroup_create(4 * LEN, &err);
    if (!cg) {
        kt_bail("cannot make the memory cgroup: %s", err->message);
    }
    const char *path = kt_cgroup_path(cg);

    KtChild *by = kt_child_spawn("bystander (outside the cgroup)", bystander, NULL);
    KtChild *wr = kt_child_spawn("writer (outside the cgroup)", writer, NULL);
    KtChild *in = kt_child_spawn("inmate (in the cgroup)", inmate, (gpointer)path);
    KtChild *b = kt_child_spawn("balloon (in the cgroup)", balloon, (gpointer)path);
    void *addr = NULL;
    if (!kt_child_expect(by, 'r', 10000) || !kt_child_expect(wr, 'r', 10000) ||
        !kt_child_expect(in, 'r', 10000) || !kt_child_expect(b, 'r', 60000) ||
        !kt_child_read(b, &addr, sizeof(addr), 5000)) {
        kt_bail("a child did not start");
    }
    kt_note("balloon pid %d and inmate pid %d in %s; writer pid %d and bystander pid %d outside",
            b->pid, in->pid, path, wr->pid, by->pid);

    KtMem view = { .c = b, .addr = addr, .len = LEN };
    kt_wait_scans(2, 60000);
    gint64 merged = kt_mem_wait_merging(&view, n - tol, 30000);
    if (!kt_ok(merged >= n - tol, "the balloon's pages merged (%" G_GINT64_FORMAT " of %"
               G_GINT64_FORMAT ")", merged, n)) {
        kt_bail("cannot provoke the OOM without merged pages");
    }
    g_usleep(200 * 1000);
    gint64 usage = kt_cgroup_usage(cg);
    guint64 limit = (guint64)usage + HEADROOM;
    if (!kt_cgroup_set_limit(cg, limit, &err)) {
        kt_bail("lowering the limit: %s", err->message);
    }
    kt_note("cgroup usage %" G_GINT64_FORMAT " KiB; limit lowered to %" G_GUINT64_FORMAT
            " KiB; run=2 must break %" G_GINT64_FORMAT " pages (%zu MiB) of the balloon",
            usage / 1024, limit / 1024, merged, LEN / KT_MIB);
    g_autoptr(KsmSnapshot) s0 = kt_snap();
    kt_print_snap("before run=2", s0);
    gint64 kills0 = kt_cgroup_oom_kills(cg);
    kt_dmesg_check("before run=2");

    /* ---- the write ---- */
    gint64 t0 = g_get_monotonic_time();
    kt_child_send(wr, 'w');
    WriteResult r = { 0 };
    gboolean returned = kt_child_expect(wr, 'd', DEADLINE_MS) &&
                        kt_child_read(wr, &r, sizeof(r), 5000);
    gint64 dt = g_get_monotonic_time() - t0;
    if (!returned) {
        kt_print_stack(wr->pid, "writer");
        kt_print_stack(b->pid, "balloon");
    }
    kt_ok(returned, "the run=2 write returned within %d s (%.2f s)", DEADLINE_MS / 1000, dt / 1e6);
    kt_note("run=2 write: %s after %.2f s%s%s", r.ok ? "succeeded" : "failed", r.us / 1e6,
            r.ok ? "" : ": ", r.ok ? "" : r.message);

    gboolean b_gone = kt_child_reap(b, 30000);
    g_autofree char *b_st = b_gone ? kt_status_text(b->status) : g_strdup("still running");
    kt_note("balloon (pid %d): %s, %.2f s after the write started", b->pid, b_st,
            b_gone ? (b->reaped_us - t0) / 1e6 : -1.0);
    kt_ok(b_gone, "the balloon exited (%s)", b_st);

    g_autoptr(KsmSnapshot) s1 = kt_snap();
    kt_print_snap("after run=2", s1);
    gint64 run = kt_get(s1, KSM_FIELD_RUN);
    if (returned) {
        if (r.ok) {
            kt_ok(run == KSM_RUN_UNMERGE, "the write succeeded and run reads 2 (%" G_GINT64_FORMAT
                  ")", run);
        } else {
            kt_ok(run == KSM_RUN_STOP, "the write failed and the kernel set run to 0 (reads %"
                  G_GINT64_FORMAT ")", run);
        }
    }

    /* ---- who died ---- */
    gint64 kills = kt_cgroup_oom_kills(cg);
    kt->reap_failure_is_finding = TRUE;
    kt_dmesg_check("after run=2");
    kt->reap_failure_is_finding = FALSE;
    kt_note("oom_reaper 'unable to reap' lines: %u (the kernel's behaviour, recorded)",
            kt->reap_findings);
    g_autoptr(GArray) victims = kt_oom_victims();
    gboolean inside_only = TRUE;
    GString *who = g_string_new(NULL);
    for (guint i = 0; i < victims->len; i++) {
        pid_t v = g_array_index(victims, pid_t, i);
        inside_only &= v == b->pid || v == in->pid;
        g_string_append_printf(who, "%s%d=%s", i ? ", " : "", v,
                               v == b->pid ? "balloon" : v == in->pid ? "inmate" :
                               v == wr->pid ? "WRITER" : "OUTSIDE");
    }
    kt_note("OOM kills counted by the cgroup: %" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT
            "; victims in the kernel log: %s", kills0, kills, who->len ? who->str : "none");
    g_string_free(who, TRUE);
    kt_ok(inside_only, "every OOM victim was inside the cgroup");
    gboolean in_alive = kt_pid_alive(in->pid);
    kt_note("the kernel's choice: balloon %s, inmate %s", b_st, in_alive ? "alive" : "dead");
    kt_ok(kt_pid_alive(by->pid), "the bystander outside the cgroup is alive");
    kt_ok(kt_pid_alive(wr->pid), "the writer outside the cgroup is alive (it was not the victim)");
    char ws = kt_pid_state(wr->pid);
    kt_ok(ws != 'D', "the writer is not stuck in D state (state %c)", ws);

    KtChild *rest[] = { wr, by, in };
    for (guint i = 0; i < G_N_ELEMENTS(rest); i++) {
        if (kt_pid_alive(rest[i]->pid)) {
            kt_child_send(rest[i], 'x');
        }
        kt_child_reap(rest[i], 5000);
    }
    g_autofree char *p = g_strdup(path);
    kt_ok(kt_cgroup_destroy(cg, 15000, &err), "cgroup %s removed%s%s", p, err ? ": " : "",
          err ? err->message : "");
    /* leave ksmd with run=1 so kt_finish lets it drop our slots */
    kt_set("run=1", NULL);
    return kt_finish();
}
