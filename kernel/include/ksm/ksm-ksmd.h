/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-ksmd.h: the ksmd kernel thread itself, for its CPU cost.
 *
 * The kernel has no KSM file that says how much CPU the scanner uses; the
 * only source is ksmd's own /proc/PID/stat.  samepage watch and the benchmarks
 * turn two readings into a CPU percentage.
 */
#ifndef KSM_KSMD_H
#define KSM_KSMD_H

#include <glib.h>
#include <sys/types.h>
#include "ksm-context.h"
#include "ksm-task.h"   /* KsmTaskStat, ksm_task_stat_parse */

G_BEGIN_DECLS

/*
 * The pid of the kernel thread named "ksmd" (comm "ksmd" and PF_KTHREAD set
 * in /proc/PID/stat, so a user process calling itself ksmd is not taken).
 * 0 with KSM_ERROR_NOT_AVAILABLE when there is none (no KSM in this kernel).
 */
pid_t ksm_ksmd_pid(const KsmContext *ctx, GError **error);

/*
 * utime + stime of pid in clock ticks, from /proc/PID/stat.
 * KSM_ERROR_NO_PROCESS when it is gone, KSM_ERROR_PARSE on odd text.
 */
gboolean ksm_ksmd_cpu_ticks(const KsmContext *ctx, pid_t pid, guint64 *ticks, GError **error);

/* Clock ticks per second (sysconf(_SC_CLK_TCK)), to turn ticks into seconds. */
long ksm_clock_ticks_per_second(void);

G_END_DECLS

#endif
