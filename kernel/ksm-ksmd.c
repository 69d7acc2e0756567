/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-ksmd.c: find the ksmd kernel thread and read its CPU time (its
 * /proc/PID/stat through ksm-task.c, the one reader).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ksm-private.h"
#include "ksm/ksm-ksmd.h"

/* include/linux/sched.h: "I am a kernel thread". */
#define PF_KTHREAD 0x00200000

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
        KsmTaskStat ts;
        if (ksm_task_stat_read(ctx, pid, &ts, NULL) && (ts.flags & PF_KTHREAD)) {
            return pid;
        }
    }
    g_set_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE,
                "no ksmd kernel thread under %s (KSM is not built into this kernel)", procfs);
    return 0;
}

gboolean ksm_ksmd_cpu_ticks(const KsmContext *ctx, pid_t pid, guint64 *ticks, GError **error)
{
    KsmTaskStat ts;

    if (!ksm_task_stat_read(ctx, pid, &ts, error)) {
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
