/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-run-unmerge.c: the disposable child that writes run=2
 * (see ksm/ksm-run-unmerge.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "ksm-private.h"
#include "ksm/ksm-run-unmerge.h"

static void on_deadline_signal(int sig)
{
    (void)sig;   /* only there so the write returns EINTR */
}

/* In the child: async-signal-safe only. */
G_NORETURN static void writer_child(const char *run_path)
{
    struct sigaction sa = { .sa_handler = on_deadline_signal };   /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);

    int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (adj >= 0) {
        /* The kernel already prefers this task as the OOM victim; say so too. */
        (void)!write(adj, "1000", 4);
        close(adj);
    }
    _exit(ksm_write_text(run_path, "2"));
}

pid_t ksm_run_unmerge_spawn(const KsmContext *ctx, GError **error)
{
    g_autofree char *run_path = g_build_filename(ksm_context_ksm_dir(ctx), "run", NULL);
    pid_t child = fork();

    if (child < 0) {
        ksm_set_errno_error(error, errno, "cannot fork the unmerge writer for", run_path);
        return -1;
    }
    if (child == 0) {
        writer_child(run_path);
    }
    return child;
}
