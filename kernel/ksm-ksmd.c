/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-ksmd.c: find the ksmd kernel thread and read its CPU time.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ksm-private.h"
#include "ksm/ksm-ksmd.h"

/* include/linux/sched.h: "I am a kernel thread". */
#define PF_KTHREAD 0x00200000

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

    /* After ") ": field 3 state, 4 ppid, ... 9 flags, ... 14 utime, 15 stime. */
    g_auto(GStrv) rest = g_strsplit_set(close + 1, " \n", -1);
    guint64 numbers[16] = { 0 };
    guint field = 2;
    for (guint i = 0; rest[i] && field < 15; i++) {
        if (rest[i][0] == '\0') {
            continue;
        }
        field++;
        if (field == 3) {
            continue;   /* the state letter */
        }
        if (!g_ascii_string_to_unsigned(rest[i], 10, 0, G_MAXUINT64, &numbers[field], NULL)) {
            /* ppid..tpgid are signed (tty_nr may be -1): only the ones we use must parse. */
            if (field == 9 || field == 14 || field == 15) {
                goto bad;
            }
        }
    }
    if (field < 15) {
        goto bad;
    }
    out->flags = numbers[9];
    out->cpu_ticks = numbers[14] + numbers[15];
    return TRUE;

bad:
    g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                "cannot read flags and CPU times from process stat line '%.60s'", text);
    return FALSE;
}

static gboolean is_pid_name(const char *name)
{
    if (!*name) {
        return FALSE;
    }
    for (const char *p = name; *p; p++) {
        if (!g_ascii_isdigit(*p)) {
            return FALSE;
        }
    }
    return TRUE;
}

pid_t ksm_ksmd_pid(const KsmContext *ctx, GError **error)
{
    const char *procfs = ksm_context_procfs(ctx);
    g_autoptr(GError) local = NULL;
    g_autoptr(GDir) dir = g_dir_open(procfs, 0, &local);

    if (!dir) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_FAILED,
                    "cannot list processes: %s", local->message);
        return 0;
    }
    const char *name;
    while ((name = g_dir_read_name(dir))) {
        if (!is_pid_name(name)) {
            continue;
        }
        pid_t pid = (pid_t)strtol(name, NULL, 10);
        /* comm first: one short read rules out nearly every process. */
        g_autofree char *comm = ksm_read_proc(ctx, pid, "comm", NULL, NULL);
        if (!comm || strcmp(g_strchomp(comm), "ksmd") != 0) {
            continue;
        }
        g_autofree char *stat = ksm_read_proc(ctx, pid, "stat", NULL, NULL);
        KsmTaskStat ts;
        if (stat && ksm_task_stat_parse(stat, &ts, NULL) && (ts.flags & PF_KTHREAD)) {
            return pid;
        }
    }
    g_set_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE,
                "no ksmd kernel thread under %s (KSM is not built into this kernel)", procfs);
    return 0;
}

gboolean ksm_ksmd_cpu_ticks(const KsmContext *ctx, pid_t pid, guint64 *ticks, GError **error)
{
    g_autofree char *stat = ksm_read_proc(ctx, pid, "stat", NULL, error);
    KsmTaskStat ts;

    if (!stat || !ksm_task_stat_parse(stat, &ts, error)) {
        return FALSE;
    }
    *ticks = ts.cpu_ticks;
    return TRUE;
}

long ksm_clock_ticks_per_second(void)
{
    long tck = sysconf(_SC_CLK_TCK);
    return tck > 0 ? tck : 100;
}
