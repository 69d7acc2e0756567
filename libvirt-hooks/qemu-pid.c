/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qemu-pid.c: which process is a domain's QEMU.
 *
 * The hook never asks libvirt (it must not call back), so a state file is
 * checked against the processes themselves.  Which process is a domain's
 * QEMU comes from libvirtd's own pid file (root's, under /run/libvirt/qemu):
 * never from a search for "-uuid UUID" among all processes, since any local
 * user can start a decoy with a guest's UUID (ps shows it) and, when the
 * decoy exits, have the guest's state pruned as stale (a guest of another
 * trust group then accepted, or an unmerge while guests run).  "-uuid UUID"
 * on the pid's command line only confirms the pid file is not stale, and
 * /proc/PID/stat's start time tells a live QEMU from a reused pid.  This
 * reads /proc/PID/cmdline and /proc/PID/stat only, never a KSM file (those
 * are libksm's).
 */
#include <stdlib.h>
#include <string.h>

#include "hook.h"

gboolean hook_parse_start_time(const char *stat_text, guint64 *start_time)
{
    /* comm is in parentheses and may contain anything: count after the last ')'. */
    const char *p = strrchr(stat_text, ')');

    if (!p) {
        return FALSE;
    }
    g_auto(GStrv) fields = g_strsplit_set(p + 1, " \n", -1);
    /* fields[0] is "" (the space after ')'), fields[1] is field 3 (state):
     * field N is fields[N - 2]; starttime is field 22. */
    if (g_strv_length(fields) < 21) {
        return FALSE;
    }
    return g_ascii_string_to_unsigned(fields[20], 10, 0, G_MAXUINT64, start_time, NULL);
}

static gboolean read_start_time(const KsmContext *ctx, pid_t pid, guint64 *start_time)
{
    g_autofree char *name = g_strdup_printf("%d", (int)pid);
    g_autofree char *path = g_build_filename(ksm_context_procfs(ctx), name, "stat", NULL);
    g_autofree char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return FALSE;
    }
    return hook_parse_start_time(text, start_time);
}

gboolean hook_process_alive(const KsmContext *ctx, pid_t pid, guint64 start_time)
{
    guint64 now_start;

    return pid > 0 && read_start_time(ctx, pid, &now_start) && now_start == start_time;
}

static gboolean cmdline_has_uuid(const char *text, gsize len, const char *uuid)
{
    const char *end = text + len;
    const char *prev = NULL;

    for (const char *arg = text; arg < end; arg += strlen(arg) + 1) {
        if (prev && (strcmp(prev, "-uuid") == 0 || strcmp(prev, "--uuid") == 0) &&
            g_ascii_strcasecmp(arg, uuid) == 0) {
            return TRUE;
        }
        prev = arg;
    }
    return FALSE;
}

gboolean hook_process_has_uuid(const KsmContext *ctx, pid_t pid, const char *uuid)
{
    g_autofree char *name = g_strdup_printf("%d", (int)pid);
    g_autofree char *path = g_build_filename(ksm_context_procfs(ctx), name, "cmdline", NULL);
    g_autofree char *text = NULL;
    gsize len;

    /* g_file_get_contents NUL-terminates even if the last argument is not. */
    return pid > 0 && g_file_get_contents(path, &text, &len, NULL) && len > 0 &&
           cmdline_has_uuid(text, len, uuid);
}

gboolean hook_domain_name_is_file_safe(const char *name)
{
    /* libvirt refuses '/' in names; "." and ".." and the empty name are no
     * file names; NAME_MAX leaves room for ".pid". */
    return name && *name && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0 && strlen(name) <= 250;
}

/*
 * The file name libvirt gives a domain's pid file: virPidFileBuildPath puts
 * the name through virBufferEscapeString, which XML-escapes & < > " ' and
 * drops control characters other than tab, newline and CR.
 */
char *hook_libvirt_file_name(const char *name, const char *suffix)
{
    GString *out = g_string_new(NULL);

    for (const char *p = name; *p; p++) {
        switch (*p) {
        case '&':
            g_string_append(out, "&amp;");
            break;
        case '<':
            g_string_append(out, "&lt;");
            break;
        case '>':
            g_string_append(out, "&gt;");
            break;
        case '"':
            g_string_append(out, "&quot;");
            break;
        case '\'':
            g_string_append(out, "&apos;");
            break;
        default:
            if ((guchar)*p >= 0x20 || *p == '\t' || *p == '\n' || *p == '\r') {
                g_string_append_c(out, *p);
            }
        }
    }
    g_string_append(out, suffix);
    return g_string_free(out, FALSE);
}

/* The pid in run_dir/NAME.pid, written by libvirtd (root) for the QEMU it
 * started; 0 when missing or not libvirtd's (owner, mode, type). */
static pid_t read_pid_file(const char *run_dir, const char *name)
{
    g_autofree char *file = hook_libvirt_file_name(name, ".pid");
    g_autofree char *path = g_build_filename(run_dir, file, NULL);
    g_autoptr(GError) error = NULL;
    g_autofree char *text = NULL;
    gsize len = 0;
    guint64 pid;

    if (!hook_domain_name_is_file_safe(name)) {
        return 0;
    }
    text = hook_read_trusted(path, 64, &len, &error);
    if (!text) {
        if (!g_error_matches(error, HOOK_ERROR, HOOK_ERROR_NOENT)) {
            hook_log(HOOK_LOG_WARNING, "ignoring libvirt's pid file: %s", error->message);
        }
        return 0;
    }
    g_strstrip(text);
    if (!g_ascii_string_to_unsigned(text, 10, 1, G_MAXINT32, &pid, NULL)) {
        return 0;
    }
    return (pid_t)pid;
}

pid_t hook_find_qemu(const KsmContext *ctx, const char *run_dir, const char *name,
                     const char *uuid, guint64 *start_time)
{
    pid_t pid = read_pid_file(run_dir, name);
    guint64 st = 0;

    /* A pid file left from an earlier run may name a reused pid: the
     * process must be this domain's QEMU. */
    if (pid <= 0 || !hook_process_has_uuid(ctx, pid, uuid) || !read_start_time(ctx, pid, &st)) {
        return 0;
    }
    if (start_time) {
        *start_time = st;
    }
    return pid;
}
