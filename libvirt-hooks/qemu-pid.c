/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qemu-pid.c: which process is a domain's QEMU.
 *
 * The hook never asks libvirt (it must not call back), so a state file is
 * checked against the processes themselves: libvirt starts every QEMU with
 * "-uuid UUID", and /proc/PID/stat's start time tells a live QEMU from a
 * reused pid.  This reads /proc/PID/cmdline and /proc/PID/stat only, never a
 * KSM file (those are libksm's).
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

pid_t hook_find_qemu_by_uuid(const KsmContext *ctx, const char *uuid, guint64 *start_time)
{
    g_autoptr(GDir) dir = g_dir_open(ksm_context_procfs(ctx), 0, NULL);
    const char *entry;

    while (dir && (entry = g_dir_read_name(dir))) {
        guint64 pid;
        gsize len;
        g_autofree char *text = NULL;

        if (!g_ascii_string_to_unsigned(entry, 10, 1, G_MAXINT32, &pid, NULL)) {
            continue;
        }
        g_autofree char *path = g_build_filename(ksm_context_procfs(ctx), entry, "cmdline", NULL);
        /* Make the text NUL-terminated even if the last argument is not. */
        if (!g_file_get_contents(path, &text, &len, NULL) || len == 0) {
            continue;
        }
        if (cmdline_has_uuid(text, len, uuid)) {
            guint64 st = 0;
            if (!read_start_time(ctx, (pid_t)pid, &st)) {
                continue;   /* gone meanwhile */
            }
            if (start_time) {
                *start_time = st;
            }
            return (pid_t)pid;
        }
    }
    return 0;
}
