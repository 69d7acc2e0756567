/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kt-memchild.c: a child process holding memory for KSM to work on.
 *
 * The memory lives in a child, never in the test process, so per-process
 * figures (ksm_stat, ksm_range_count) describe exactly the test's pages and
 * the test process itself is never registered with KSM nor an OOM victim.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "kt-harness.h"

static int mem_child(KtChild *self, gpointer data)
{
    const KtMemSpec *spec = data;
    g_autoptr(GError) err = NULL;

    if (spec->cgroup && !kt_cgroup_enter(spec->cgroup, &err)) {
        printf("# child %s: cannot join %s: %s\n", self->label, spec->cgroup, err->message);
        kt_child_reply(self, 'E');
        return 1;
    }
    void *addr = kt_map_anon(spec->len);
    if (!addr) {
        kt_child_reply(self, 'E');
        return 1;
    }
    if (spec->hugepage && madvise(addr, spec->len, MADV_HUGEPAGE) < 0) {
        printf("# child %s: MADV_HUGEPAGE: %s (continuing without)\n", self->label,
               g_strerror(errno));
    }
    if (spec->fill == KT_FILL_SAME) {
        kt_fill_same(addr, spec->len, spec->byte);
    } else {
        kt_fill_unique(addr, spec->len, spec->seed);
    }
    if (spec->mergeable && !ksm_advise_mergeable(addr, spec->len, &err)) {
        printf("# child %s: %s\n", self->label, err->message);
        kt_child_reply(self, 'E');
        return 1;
    }
    kt_child_reply(self, 'r');
    kt_child_write(self, &addr, sizeof(addr));

    guint64 generation = 1;
    for (;;) {
        char cmd = kt_child_recv(self);
        gboolean ok = TRUE;
        g_clear_error(&err);
        switch (cmd) {
        case 'w':
            /* new content unique to this process too: two children that
             * rewrite must not become identical to each other again */
            kt_fill_unique(addr, spec->len,
                           spec->seed + 0x1000 * ++generation + ((guint64)getpid() << 32) + 7);
            break;
        case 'c':
            /* the same content in every child that gets 'c' */
            kt_fill_unique(addr, spec->len, KT_COMMON_SEED);
            break;
        case 'u':
            ok = ksm_advise_unmergeable(addr, spec->len, &err);
            break;
        case 'm':
            ok = ksm_advise_mergeable(addr, spec->len, &err);
            break;
        case 'x':
            return 0;
        default:
            ok = FALSE;
            break;
        }
        if (!ok) {
            printf("# child %s: command '%c' failed: %s\n", self->label, cmd,
                   err ? err->message : "unknown command");
            fflush(stdout);
        }
        kt_child_reply(self, ok ? cmd : 'E');
    }
}

KtMem *kt_mem_spawn(const char *label, const KtMemSpec *spec)
{
    KtMem *m = g_new0(KtMem, 1);
    /* The spec must outlive fork only in the child, which has its own copy. */
    m->c = kt_child_spawn(label, mem_child, (gpointer)spec);
    m->len = spec->len;
    if (!kt_child_expect(m->c, 'r', 60000) ||
        !kt_child_read(m->c, &m->addr, sizeof(m->addr), 5000)) {
        kt_child_reap(m->c, 5000);
        g_autofree char *st = m->c->reaped ? kt_status_text(m->c->status) : g_strdup("running");
        kt_bail("%s (pid %d) did not set up its %zu MiB (%s)", label, m->c->pid,
                spec->len / KT_MIB, st);
    }
    kt_note("%s: pid %d holds %zu MiB (%zu pages) at %p, %s%s%s%s", label, m->c->pid,
            spec->len / KT_MIB, spec->len / kt->page_size, m->addr,
            spec->fill == KT_FILL_SAME ? "every page identical" : "unique pages",
            spec->mergeable ? ", MADV_MERGEABLE" : ", not mergeable",
            spec->hugepage ? ", MADV_HUGEPAGE" : "",
            spec->cgroup ? ", inside the test cgroup" : "");
    return m;
}

gboolean kt_mem_cmd(KtMem *m, char cmd, gint64 timeout_ms)
{
    char got;
    if (!kt_child_send(m->c, cmd) || !kt_child_read(m->c, &got, 1, timeout_ms)) {
        return FALSE;
    }
    if (got != cmd) {
        kt_note("%s: command '%c' answered '%c'", m->c->label, cmd, got);
        return FALSE;
    }
    return TRUE;
}

gint64 kt_mem_wait_merging(KtMem *m, gint64 want, gint64 timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;
    gint64 t0 = g_get_monotonic_time();
    KtProcKsm pk = { 0 };

    for (;;) {
        if (!kt_proc_ksm(m->c->pid, &pk)) {
            return -1;
        }
        if (pk.merging_pages >= want) {
            kt_note("%s: ksm_merging_pages=%" G_GINT64_FORMAT " (wanted >= %" G_GINT64_FORMAT
                    ") after %.2f s", m->c->label, pk.merging_pages, want,
                    (g_get_monotonic_time() - t0) / 1e6);
            return pk.merging_pages;
        }
        if (g_get_monotonic_time() >= deadline) {
            kt_note("%s: ksm_merging_pages=%" G_GINT64_FORMAT " still below %" G_GINT64_FORMAT
                    " after %.2f s (full_scans=%" G_GINT64_FORMAT ")", m->c->label,
                    pk.merging_pages, want, (g_get_monotonic_time() - t0) / 1e6,
                    kt_read(KSM_FIELD_FULL_SCANS));
            return pk.merging_pages;
        }
        g_usleep(50 * 1000);
    }
}

void kt_mem_free(KtMem *m)
{
    if (!m) {
        return;
    }
    if (!m->c->reaped) {
        kt_child_send(m->c, 'x');
        if (!kt_child_reap(m->c, 10000)) {
            kt_child_kill(m->c);
        }
    }
    kt_child_free(m->c);
    g_free(m);
}

pid_t kt_fork_plain(void)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(98);
        }
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGQUIT, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        if (kt->guardian_fd >= 0) {
            close(kt->guardian_fd);
            kt->guardian_fd = -1;
        }
    }
    return pid;
}
