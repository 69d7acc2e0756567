/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-proc-pid-stat.c: /proc/PID/stat, whose comm (field 2) any process
 * sets to what it likes, spaces and ')' included: libksm's one reader
 * (kernel/ksm-task.c) for ksmd and its CPU time (kernel/ksm-ksmd.c), and, through
 * it, the hook's check that a QEMU is still the one it saw (libvirt-hooks/qemu-pid.c).
 *
 * Input: the stat line, parsed directly and read from a fake /proc (where
 * the process calls itself ksmd).
 */
#include <string.h>

#include "fuzz-common.h"
#include "hook.h"
#include "ksm/ksm-ksmd.h"
#include "ksm/ksm-task.h"

#define PID 4242

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    g_autofree char *text = fuzz_text(data, size);
    g_autoptr(GError) error = NULL;
    KsmTaskStat ts;
    gboolean has_start = FALSE;
    guint64 start = 0;

    if (ksm_task_stat_parse(text, &ts, &error)) {
        g_assert(memchr(ts.comm, '\0', sizeof(ts.comm)));
        has_start = ts.has_start_time;
        start = ts.start_time;
    } else {
        g_assert(error && error->domain == KSM_ERROR);
    }
    g_clear_error(&error);

    g_autofree char *stat_rel = g_strdup_printf("proc/%d/stat", PID);
    g_autofree char *comm_rel = g_strdup_printf("proc/%d/comm", PID);
    g_free(fuzz_write(comm_rel, "ksmd\n", 5));
    g_free(fuzz_write(stat_rel, data, size));
    pid_t ksmd = ksm_ksmd_pid(fuzz_ctx(), &error);
    g_assert(ksmd == PID || (ksmd == 0 && error));
    g_clear_error(&error);
    guint64 ticks;
    if (!ksm_ksmd_cpu_ticks(fuzz_ctx(), PID, &ticks, &error)) {
        g_assert(error && error->domain == KSM_ERROR);
    }
    /* The file is the same text, cut at its first NUL like the string. */
    g_assert(hook_process_alive(fuzz_ctx(), PID, start) == has_start ||
             memchr(data, '\0', size));
    return 0;
}
