/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksmtuned.c: is Debian's ksmtuned running beside the hook?
 *
 * ksmtuned (package ksmtuned, a shell script run as /usr/sbin/ksmtuned, pid
 * in /run/ksmtune.pid) turns ksmd on and off and rewrites pages_to_scan and
 * sleep_millisecs every minute from its own idea of memory pressure, and
 * Debian's ksm.service sets run=1 at boot.  With the hook driving the same
 * knobs the two fight: ksmtuned stops ksmd under running mergeable guests,
 * or undoes samepage tune's rate.  The hook cannot settle that (it must not
 * stop another daemon), so it says so once, when it turns KSM on.
 *
 * Found by /proc (the context's procfs, a fake tree in tests): a process
 * whose comm is "ksmtuned", or whose argv[0], or argv[1] after a shell,
 * has the basename ksmtuned.  Only comm and cmdline are read, bounded.
 */
#include <string.h>
#include <unistd.h>

#include "hook.h"

#define MAX_CMDLINE 4096

static gboolean basename_is(const char *arg, const char *name)
{
    const char *slash = strrchr(arg, '/');
    return strcmp(slash ? slash + 1 : arg, name) == 0;
}

static gboolean is_shell(const char *arg)
{
    static const char *const shells[] = { "sh", "bash", "dash", NULL };
    for (guint i = 0; shells[i]; i++) {
        if (basename_is(arg, shells[i])) {
            return TRUE;
        }
    }
    return FALSE;
}

static gboolean process_is_ksmtuned(const char *procfs, const char *pid)
{
    g_autofree char *comm_path = g_build_filename(procfs, pid, "comm", NULL);
    g_autofree char *cmd_path = g_build_filename(procfs, pid, "cmdline", NULL);
    g_autofree char *comm = NULL, *cmdline = NULL;
    gsize len = 0;

    if (g_file_get_contents(comm_path, &comm, &len, NULL) && len <= 64 &&
        strcmp(g_strchomp(comm), "ksmtuned") == 0) {
        return TRUE;
    }
    if (!g_file_get_contents(cmd_path, &cmdline, &len, NULL) || len == 0 ||
        len > MAX_CMDLINE) {
        return FALSE;
    }
    /* NUL-separated; g_file_get_contents adds a final NUL. */
    const char *argv0 = cmdline;
    const char *argv1 = argv0 + strlen(argv0) + 1;
    if (basename_is(argv0, "ksmtuned")) {
        return TRUE;
    }
    return argv1 < cmdline + len && is_shell(argv0) && basename_is(argv1, "ksmtuned");
}

pid_t hook_find_ksmtuned(const KsmContext *ctx)
{
    const char *procfs = ksm_context_procfs(ctx);
    g_autoptr(GDir) dir = g_dir_open(procfs, 0, NULL);
    const char *entry;

    while (dir && (entry = g_dir_read_name(dir))) {
        guint64 pid;
        if (g_ascii_string_to_unsigned(entry, 10, 1, G_MAXINT32, &pid, NULL) &&
            (pid_t)pid != getpid() && process_is_ksmtuned(procfs, entry)) {
            return (pid_t)pid;
        }
    }
    return 0;
}

void hook_warn_ksmtuned(const KsmContext *ctx)
{
    pid_t pid = hook_find_ksmtuned(ctx);

    if (pid > 0) {
        hook_log(HOOK_LOG_WARNING, "ksmtuned (pid %d) is running: it also drives "
                 "/sys/kernel/mm/ksm (run, pages_to_scan, sleep_millisecs) and will fight "
                 "this hook and samepage tune, stopping ksmd under running guests or undoing "
                 "its scan rate; stop and disable ksmtuned and ksm.service "
                 "(systemctl disable --now ksmtuned.service ksm.service, or without systemd "
                 "service ksmtuned stop; update-rc.d ksmtuned disable) and let the samepage "
                 "hook drive KSM", (int)pid);
    }
}
