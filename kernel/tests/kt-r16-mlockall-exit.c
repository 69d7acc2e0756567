/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * R16 mlockall exit: a process with mlockall(MCL_CURRENT|MCL_FUTURE),
 * merged mergeable areas, a PROT_NONE mapping and a file mapped beyond its
 * end then ftruncated up exits within a deadline, while ksmd scans.
 *
 * In 2009 exit_mmap's munlocking faulted pages in while KSM held the mm
 * (the hang Andrea Arcangeli's [PATCH 13/12] fixed); Hugh Dickins "had to
 * mmap beyond EOF then ftruncate up to get it to happen".  The child builds
 * exactly that layout (the file both MAP_SHARED and MAP_PRIVATE), locks it
 * all, maps a second mergeable area after mlockall (MCL_FUTURE locks and
 * populates it), waits until ksmd merged both areas, then exits: once by
 * _exit(0) when asked, once by SIGKILL.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt-harness.h"

#define LEN1 (16 * KT_MIB)
#define LEN2 (8 * KT_MIB)
#define FILE_LEN (4 * KT_MIB)
#define DEADLINE_MS 10000

static int locked_child(KtChild *self, gpointer data)
{
    g_autoptr(GError) err = NULL;
    gsize ps = (gsize)sysconf(_SC_PAGESIZE);

    guint8 *a1 = kt_map_anon(LEN1);
    if (!a1) {
        kt_child_reply(self, 'E');
        return 1;
    }
    kt_fill_same(a1, LEN1, 0x21);
    if (!ksm_advise_mergeable(a1, LEN1, &err)) {
        printf("# child: %s\n", err->message);
        kt_child_reply(self, 'E');
        return 1;
    }
    void *none = mmap(NULL, KT_MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char tmpl[] = "/tmp/samepage-kt-r16-XXXXXX";
    int fd = mkstemp(tmpl);
    if (none == MAP_FAILED || fd < 0) {
        printf("# child: PROT_NONE map or temp file: %s\n", g_strerror(errno));
        kt_child_reply(self, 'E');
        return 1;
    }
    unlink(tmpl);
    if (ftruncate(fd, (off_t)ps) < 0) {
        kt_child_reply(self, 'E');
        return 1;
    }
    /* both mappings reach far beyond the file's one page */
    void *fs = mmap(NULL, FILE_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    void *fp = mmap(NULL, FILE_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (fs == MAP_FAILED || fp == MAP_FAILED) {
        printf("# child: file mmap: %s\n", g_strerror(errno));
        kt_child_reply(self, 'E');
        return 1;
    }
    if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0) {
        printf("# child: mlockall: %s\n", g_strerror(errno));
        kt_child_reply(self, 'E');
        return 1;
    }
    /* now the file grows under the locked mappings */
    if (ftruncate(fd, FILE_LEN) < 0) {
        kt_child_reply(self, 'E');
        return 1;
    }
    /* MCL_FUTURE: locked and populated at mmap */
    guint8 *a2 = kt_map_anon(LEN2);
    if (!a2) {
        kt_child_reply(self, 'E');
        return 1;
    }
    kt_fill_same(a2, LEN2, 0x21);
    if (!ksm_advise_mergeable(a2, LEN2, &err)) {
        kt_child_reply(self, 'E');
        return 1;
    }
    kt_child_reply(self, 'r');
    kt_child_write(self, &a1, sizeof(a1));
    kt_child_write(self, &a2, sizeof(a2));
    kt_child_recv(self);
    _exit(0);
}

static void one_exit(gboolean by_kill)
{
    const char *how = by_kill ? "SIGKILL" : "_exit(0)";
    const gint64 n = (LEN1 + LEN2) / kt->page_size, tol = n / 50;
    g_autofree char *label = g_strdup_printf("locked (%s)", how);
    KtChild *c = kt_child_spawn(label, locked_child, NULL);
    void *a1 = NULL, *a2 = NULL;

    if (!kt_child_expect(c, 'r', 60000) || !kt_child_read(c, &a1, sizeof(a1), 5000) ||
        !kt_child_read(c, &a2, sizeof(a2), 5000)) {
        kt_child_reap(c, 5000);
        kt_bail("the mlockall child did not set up (it reports why above)");
    }
    g_autofree char *status = NULL;
    g_autofree char *statpath = g_strdup_printf("/proc/%d/status", c->pid);
    g_file_get_contents(statpath, &status, NULL, NULL);
    const char *vml = status ? strstr(status, "VmLck:") : NULL;
    kt_note("%s: pid %d mlockall(MCL_CURRENT|MCL_FUTURE); mergeable %p+%zu MiB and %p+%zu MiB, "
            "PROT_NONE 1 MiB, a 1-page file mapped %zu MiB shared and private then ftruncated "
            "to %zu MiB; %.*s", label, c->pid, a1, LEN1 / KT_MIB, a2, LEN2 / KT_MIB,
            FILE_LEN / KT_MIB, FILE_LEN / KT_MIB, vml ? (int)strcspn(vml, "\n") : 0,
            vml ? vml : "");

    KtMem view = { .c = c, .addr = a1, .len = LEN1 };
    kt_wait_scans(2, 60000);
    gint64 merged = kt_mem_wait_merging(&view, n - tol, 30000);
    kt_ok(merged >= n - tol, "%s: the locked mergeable pages merged (%" G_GINT64_FORMAT " of %"
          G_GINT64_FORMAT ")", label, merged, n);

    gint64 t0 = g_get_monotonic_time();
    if (by_kill) {
        kill(c->pid, SIGKILL);
    } else {
        kt_child_send(c, 'x');
    }
    gboolean gone = kt_child_reap(c, DEADLINE_MS);
    gint64 dt = g_get_monotonic_time() - t0;
    g_autofree char *st = gone ? kt_status_text(c->status) : g_strdup("still there");
    kt_note("%s: %s after %.3f s (ksmd running, full_scans=%" G_GINT64_FORMAT ")", label, st,
            dt / 1e6, kt_read(KSM_FIELD_FULL_SCANS));
    kt_ok(gone, "%s: the process is gone within %d s (%.3f s)", label, DEADLINE_MS / 1000, dt / 1e6);
    kt_ok(gone && (by_kill ? WIFSIGNALED(c->status) && WTERMSIG(c->status) == SIGKILL
                           : WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0),
          "%s: it ended the expected way (%s)", label, st);
    kt_child_free(c);
}

int main(void)
{
    kt_begin("r16-mlockall-exit", "R16 mlockall exit: mlockall(MCL_CURRENT|MCL_FUTURE) with "
             "mergeable areas, a PROT_NONE mapping and a file mapped beyond EOF then ftruncated "
             "up: exits within a deadline",
             "seed 000, Hugh Dickins, \"Re: [PATCH 13/12] ksm: fix munlock during exit_mmap "
             "deadlock\" (2009-08-26): \"I couldn't get it with that, had to mmap beyond EOF then "
             "ftruncate up to get it to happen\"; seed 002, Andrea Arcangeli, \"[PATCH 13/12] ksm: "
             "fix munlock during exit_mmap deadlock\" (2009-08-25) and Justin M. Forbes "
             "(2009-08-26, the Rawhide hang)");

    kt_fast_scan();
    kt_settle();
    one_exit(FALSE);
    one_exit(TRUE);
    kt_dmesg_check("after both exits");
    return kt_finish();
}
