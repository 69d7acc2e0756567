/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-task.c: /proc/PID/stat and /proc/PID/cmdline (see ksm/ksm-task.h).
 */
#include <string.h>

#include "ksm-private.h"

gboolean ksm_task_stat_parse(const char *text, KsmTaskStat *out, GError **error)
{
    const char *open = strchr(text, '(');
    const char *close = strrchr(text, ')');

    memset(out, 0, sizeof(*out));
    if (!open || !close || close < open) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                    "process stat line has no (comm): '%.40s'", text);
        return FALSE;
    }
    gsize comm_len = MIN((gsize)(close - open - 1), sizeof(out->comm) - 1);
    memcpy(out->comm, open + 1, comm_len);
    out->comm[comm_len] = '\0';

    /* After ") ": field 3 state, 4 ppid, ... 9 flags, ... 14 utime, 15 stime,
     * ... 22 starttime. */
    g_auto(GStrv) rest = g_strsplit_set(close + 1, " \n", -1);
    guint64 numbers[23] = { 0 };
    guint field = 2;
    for (guint i = 0; rest[i] && field < 22; i++) {
        if (rest[i][0] == '\0') {
            continue;
        }
        field++;
        if (field == 3) {
            out->state = rest[i][0];   /* the state letter */
            continue;
        }
        if (!g_ascii_string_to_unsigned(rest[i], 10, 0, G_MAXUINT64, &numbers[field], NULL)) {
            /* ppid..tpgid are signed (tty_nr may be -1): only the ones we use must parse. */
            if (field == 9 || field == 14 || field == 15) {
                goto bad;
            }
            if (field == 22) {
                field = 21;   /* not a start time: leave it unknown */
                break;
            }
        }
    }
    if (field < 15) {
        goto bad;
    }
    out->flags = numbers[9];
    out->cpu_ticks = numbers[14] + numbers[15];
    out->start_time = numbers[22];
    out->has_start_time = field >= 22;
    return TRUE;

bad:
    g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                "cannot read flags and CPU times from process stat line '%.60s'", text);
    return FALSE;
}

gboolean ksm_task_stat_read(const KsmContext *ctx, pid_t pid, KsmTaskStat *out, GError **error)
{
    g_autofree char *text = ksm_read_proc(ctx, pid, "stat", NULL, error);

    memset(out, 0, sizeof(*out));
    return text && ksm_task_stat_parse(text, out, error);
}

char **ksm_task_cmdline_split(const char *text, gsize len)
{
    GPtrArray *argv = g_ptr_array_new();

    for (gsize off = 0; off < len;) {
        const char *arg = text + off;
        const char *nul = memchr(arg, '\0', len - off);
        gsize n = nul ? (gsize)(nul - arg) : len - off;   /* the last may lack its NUL */
        g_ptr_array_add(argv, g_strndup(arg, n));
        off += n + 1;
    }
    g_ptr_array_add(argv, NULL);
    return (char **)g_ptr_array_free(argv, FALSE);
}

char **ksm_task_cmdline_read(const KsmContext *ctx, pid_t pid, gsize max_bytes, GError **error)
{
    gsize len = 0;
    g_autofree char *text = ksm_read_proc(ctx, pid, "cmdline", &len, error);

    if (!max_bytes) {
        max_bytes = 1024 * 1024;
    }
    if (!text) {
        return NULL;
    }
    if (len == 0) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE,
                    "process %d has no command line (a kernel thread or a zombie)", (int)pid);
        return NULL;
    }
    if (len > max_bytes) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                    "the command line of process %d is %" G_GSIZE_FORMAT " bytes, more than "
                    "the %" G_GSIZE_FORMAT " this reads", (int)pid, len, max_bytes);
        return NULL;
    }
    return ksm_task_cmdline_split(text, len);
}
