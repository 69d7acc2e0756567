/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kt-oom-common.c: see kt-oom-common.h.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt-oom-common.h"

#define HUGE_SIZE (2 * KT_MIB)

static const KtOomSpec *spec_g;
static guint8 *merge_area;

static void *map_aligned(gsize len, gboolean huge)
{
    /* over-map and trim so THP can use whole 2 MiB extents */
    gsize over = len + HUGE_SIZE;
    guint8 *p = mmap(NULL, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    guint8 *a = (guint8 *)(((uintptr_t)p + HUGE_SIZE - 1) & ~(uintptr_t)(HUGE_SIZE - 1));
    if (a > p) {
        munmap(p, a - p);
    }
    if (a + len < p + over) {
        munmap(a + len, (p + over) - (a + len));
    }
    if (huge) {
        madvise(a, len, MADV_HUGEPAGE);
    }
    return a;
}

static void *fault_thread(void *arg)
{
    guint64 seed = (guintptr)arg;
    for (;;) {
        gsize len = spec_g->hugepage ? HUGE_SIZE : KT_MIB;
        guint8 *p = map_aligned(len, spec_g->hugepage);
        if (!p) {
            g_usleep(1000);
            continue;
        }
        kt_fill_unique(p, len, seed++);
    }
    return NULL;
}

static void *map_thread(void *arg)
{
    for (guint64 i = 0;; i++) {
        guint8 *p = mmap(NULL, KT_MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            continue;
        }
        memset(p, (int)i, KT_MIB);
        mprotect(p, KT_MIB, PROT_READ);
        munmap(p, KT_MIB);
    }
    return NULL;
}

static void *advise_thread(void *arg)
{
    gsize chunk = HUGE_SIZE;
    for (gsize off = 0;; off = (off + chunk) % spec_g->merge_len) {
        ksm_advise_unmergeable(merge_area + off, chunk, NULL);
        ksm_advise_mergeable(merge_area + off, chunk, NULL);
        if (spec_g->hugepage) {
            madvise(merge_area + off, chunk, MADV_NOHUGEPAGE);
            madvise(merge_area + off, chunk, MADV_HUGEPAGE);
        }
    }
    return NULL;
}

int kt_oom_child(KtChild *self, gpointer data)
{
    const KtOomSpec *spec = data;
    g_autoptr(GError) err = NULL;
    gsize ps = (gsize)sysconf(_SC_PAGESIZE);

    spec_g = spec;
    if (!kt_cgroup_enter(spec->cgroup, &err)) {
        printf("# oom child: %s\n", err->message);
        kt_child_reply(self, 'E');
        return 1;
    }
    merge_area = map_aligned(spec->merge_len, FALSE);
    if (!merge_area) {
        kt_child_reply(self, 'E');
        return 1;
    }
    if (spec->hugepage) {
        /* fill with small pages first, so khugepaged has ranges to collapse */
        madvise(merge_area, spec->merge_len, MADV_NOHUGEPAGE);
    }
    /* per 2 MiB: half identical pages (ksmd merges them, splitting any THP),
     * half unique (khugepaged may collapse them) */
    for (gsize off = 0; off < spec->merge_len; off += HUGE_SIZE) {
        kt_fill_same(merge_area + off, HUGE_SIZE / 2, 0x20);
        kt_fill_unique(merge_area + off + HUGE_SIZE / 2, HUGE_SIZE / 2, off / ps + 1);
    }
    if (spec->hugepage) {
        madvise(merge_area, spec->merge_len, MADV_HUGEPAGE);
    }
    if (!ksm_advise_mergeable(merge_area, spec->merge_len, &err)) {
        printf("# oom child: %s\n", err->message);
        kt_child_reply(self, 'E');
        return 1;
    }
    kt_child_reply(self, 'r');
    kt_child_write(self, &merge_area, sizeof(merge_area));
    if (kt_child_recv(self) != 'g') {
        return 2;
    }
    pthread_t t;
    for (guint i = 0; i < spec->fault_threads; i++) {
        pthread_create(&t, NULL, fault_thread, (gpointer)(guintptr)(1000 * (i + 1)));
    }
    for (guint i = 0; i < spec->map_threads; i++) {
        pthread_create(&t, NULL, map_thread, NULL);
    }
    for (guint i = 0; i < spec->advise_threads; i++) {
        pthread_create(&t, NULL, advise_thread, NULL);
    }
    kt_child_reply(self, 'g');
    /* the main thread waits on the pipe; the OOM killer ends us all */
    for (;;) {
        pause();
    }
}

void kt_oom_watch(KtChild *c, KtCgroup *cg, gint64 deadline_ms, KtOomWatch *w)
{
    gint64 kills0 = kt_cgroup_oom_kills(cg);

    memset(w, 0, sizeof(*w));
    w->go_us = g_get_monotonic_time();
    kt_child_send(c, 'g');
    gint64 deadline = w->go_us + deadline_ms * 1000;
    for (;;) {
        int st;
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        gint64 now = g_get_monotonic_time();
        if (!w->kill_us) {
            gint64 k = kt_cgroup_oom_kills(cg);
            if (k > kills0) {
                w->kill_us = now;
            }
        }
        if (r == c->pid) {
            c->reaped = TRUE;
            c->status = st;
            c->reaped_us = now;
            w->reaped = TRUE;
            w->exit_us = now;
            break;
        }
        if (now >= deadline) {
            kt_note("%s (pid %d) still there %" G_GINT64_FORMAT " ms after the balloon started",
                    c->label, c->pid, deadline_ms);
            kt_print_stack(c->pid, c->label);
            break;
        }
        g_usleep(2000);
    }
    w->oom_kills = kt_cgroup_oom_kills(cg);
    w->status = w->reaped ? kt_status_text(c->status) : g_strdup("still running");
}

void kt_oom_report(KtChild *c, KtChild *bystander, const KtOomWatch *w, gint64 deadline_ms,
                   gint64 exit_ms)
{
    double to_kill = w->kill_us ? (w->kill_us - w->go_us) / 1e6 : -1;
    double to_exit = w->reaped ? (w->exit_us - w->go_us) / 1e6 : -1;
    double kill_to_exit = w->kill_us && w->reaped ? (w->exit_us - w->kill_us) / 1e6 : -1;

    kt_note("%s: %s; OOM kill seen %.3f s after the balloon started, gone %.3f s after it "
            "(%.3f s from kill to exit); cgroup oom_kill=%" G_GINT64_FORMAT, c->label, w->status,
            to_kill, to_exit, kill_to_exit, w->oom_kills);
    kt_ok(w->reaped, "the process is gone within %" G_GINT64_FORMAT " s of the balloon start",
          deadline_ms / 1000);
    kt_ok(w->reaped && WIFSIGNALED(c->status) && WTERMSIG(c->status) == SIGKILL,
          "it was killed by SIGKILL (%s)", w->status);
    kt_ok(w->oom_kills >= 1, "the cgroup counted an OOM kill (%" G_GINT64_FORMAT ")", w->oom_kills);
    kt_ok(w->reaped && (!w->kill_us || kill_to_exit * 1000 <= exit_ms),
          "once killed, all its threads exited within %" G_GINT64_FORMAT " ms (%.3f s)",
          exit_ms, kill_to_exit);
    kt_dmesg_check("after the OOM");
    g_autoptr(GArray) victims = kt_oom_victims();
    gboolean inside = TRUE;
    for (guint i = 0; i < victims->len; i++) {
        inside &= g_array_index(victims, pid_t, i) == c->pid;
    }
    kt_ok(inside, "every OOM victim in the kernel log was the cgroup's process (%u victims)",
          victims->len);
    kt_ok(kt_pid_alive(bystander->pid), "the bystander outside the cgroup (pid %d) is alive",
          bystander->pid);
}

static int bystander(KtChild *self, gpointer data)
{
    kt_child_reply(self, 'r');
    kt_child_recv(self);
    return 0;
}

void kt_oom_setup(guint64 limit, KtOomSpec *spec, const char *label, KtOomSetup *s)
{
    g_autoptr(GError) err = NULL;
    void *addr = NULL;

    memset(s, 0, sizeof(*s));
    kt_fast_scan();
    kt_settle();
    s->cg = kt_cgroup_create(limit, &err);
    if (!s->cg) {
        kt_bail("cannot make the memory cgroup: %s", err->message);
    }
    s->bystander = kt_child_spawn("bystander (outside the cgroup)", bystander, NULL);
    kt_child_expect(s->bystander, 'r', 10000);

    spec->cgroup = kt_cgroup_path(s->cg);
    s->child = kt_child_spawn(label, kt_oom_child, spec);
    if (!kt_child_expect(s->child, 'r', 60000) ||
        !kt_child_read(s->child, &addr, sizeof(addr), 5000)) {
        kt_bail("%s did not set up", label);
    }
    const gint64 n = spec->merge_len / kt->page_size;
    s->view = (KtMem){ .c = s->child, .addr = addr, .len = spec->merge_len };
    kt_wait_scans(2, 60000);
    s->merged = kt_mem_wait_merging(&s->view, n / 2 - n / 50, 30000);
}

void kt_oom_teardown(KtOomSetup *s)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *path = g_strdup(kt_cgroup_path(s->cg));

    kt_ok(kt_cgroup_destroy(s->cg, 15000, &err), "cgroup %s removed%s%s", path, err ? ": " : "",
          err ? err->message : "");
    kt_child_send(s->bystander, 'x');
    kt_child_reap(s->bystander, 5000);
}
