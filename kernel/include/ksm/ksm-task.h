/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-task.h: the one reader of /proc/PID/stat and /proc/PID/cmdline.
 *
 * Both belong to another process and are hostile until checked: comm may
 * hold spaces and parentheses (fields are counted after the last ')'), and
 * a command line is whatever the process wrote into its own argv.
 */
#ifndef KSM_TASK_H
#define KSM_TASK_H

#include <glib.h>
#include <sys/types.h>
#include "ksm-context.h"

G_BEGIN_DECLS

typedef struct {
    char comm[32];
    char state;           /* field 3: R, S, D, Z, X, ... */
    guint64 flags;        /* field 9 (PF_KTHREAD is 0x00200000) */
    guint64 cpu_ticks;    /* utime + stime (fields 14, 15), clock ticks */
    guint64 start_time;   /* field 22, clock ticks after boot: with the pid,
                             names one process (a pid is reused, this is not) */
    gboolean has_start_time;
} KsmTaskStat;

/*
 * Parse the text of /proc/PID/stat.  Fails (KSM_ERROR_PARSE) without a
 * "(comm)" or without fields up to stime; start_time is optional.
 */
gboolean ksm_task_stat_parse(const char *text, KsmTaskStat *out, GError **error);
/* Read and parse /proc/PID/stat.  KSM_ERROR_NO_PROCESS when it is gone. */
gboolean ksm_task_stat_read(const KsmContext *ctx, pid_t pid, KsmTaskStat *out, GError **error);

/*
 * /proc/PID/cmdline as an argv (NULL-terminated; free with g_strfreev).
 * At most max_bytes are read (0: 1 MiB): a longer command line is
 * KSM_ERROR_PARSE, not a truncated argv.  KSM_ERROR_NO_PROCESS when it is
 * gone; an empty command line (a kernel thread, a zombie) is
 * KSM_ERROR_NOT_AVAILABLE.
 */
char **ksm_task_cmdline_read(const KsmContext *ctx, pid_t pid, gsize max_bytes, GError **error);
/* Split NUL-separated cmdline text of len bytes into an argv (for tests). */
char **ksm_task_cmdline_split(const char *text, gsize len);

G_END_DECLS

#endif
