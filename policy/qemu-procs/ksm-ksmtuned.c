/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-ksmtuned.c: is Debian's ksmtuned running on this host?
 *
 * ksmtuned (a shell script, /usr/sbin/ksmtuned, package ksmtuned) turns
 * ksmd on and off and rewrites pages_to_scan and sleep_millisecs every
 * minute from its own idea of memory pressure.  Beside samepage tune or the
 * hook the two fight, so both say so; neither may stop another daemon.
 *
 * A process is ksmtuned when its comm is "ksmtuned" (the kernel names a
 * script after the script), or its argv[0], or argv[1] after a shell, has
 * the basename ksmtuned.  Read through libksm's one /proc/PID reader.
 */
#include <string.h>
#include <unistd.h>

#include "ksm/ksm-qemu-procs.h"
#include <ksm/ksm-task.h>

/* ksmtuned's command line is a shell and a path. */
#define KSMTUNED_MAX_CMDLINE 4096

static gboolean basename_is(const char *arg, const char *name)
{
    const char *slash = strrchr(arg, '/');

    return strcmp(slash ? slash + 1 : arg, name) == 0;
}

static gboolean is_shell(const char *arg)
{
    return basename_is(arg, "sh") || basename_is(arg, "bash") || basename_is(arg, "dash");
}

static gboolean process_is_ksmtuned(const KsmContext *ctx, pid_t pid)
{
    KsmTaskStat ts;

    if (ksm_task_stat_read(ctx, pid, &ts, NULL) && strcmp(ts.comm, "ksmtuned") == 0) {
        return TRUE;
    }
    g_auto(GStrv) argv = ksm_task_cmdline_read(ctx, pid, KSMTUNED_MAX_CMDLINE, NULL);
    if (!argv || !argv[0]) {
        return FALSE;
    }
    return basename_is(argv[0], "ksmtuned") ||
           (argv[1] && is_shell(argv[0]) && basename_is(argv[1], "ksmtuned"));
}

pid_t ksm_find_ksmtuned(const KsmContext *ctx)
{
    g_autoptr(GDir) dir = g_dir_open(ksm_context_procfs(ctx), 0, NULL);
    const char *entry;

    while (dir && (entry = g_dir_read_name(dir))) {
        guint64 pid;
        if (g_ascii_string_to_unsigned(entry, 10, 1, G_MAXINT32, &pid, NULL) &&
            (pid_t)pid != getpid() && process_is_ksmtuned(ctx, (pid_t)pid)) {
            return (pid_t)pid;
        }
    }
    return 0;
}
