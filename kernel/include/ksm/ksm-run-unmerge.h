/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-run-unmerge.h: the write of 2 to /sys/kernel/mm/ksm/run, in a child.
 *
 * The kernel marks the task writing run=2 as the OOM origin (the preferred
 * victim) while it breaks every KSM page, so the writer must be a disposable
 * process, never the caller.  The kernel's unmerge loop checks
 * signal_pending(): SIGUSR1 to the child (its handler is installed without
 * SA_RESTART) ends the write with EINTR, and the kernel then sets run to 0.
 * The decisions around it (lock, headroom, deadline) are the caller's:
 * policy/unmerge/ksm-safe-unmerge.c.
 */
#ifndef KSM_RUN_UNMERGE_H
#define KSM_RUN_UNMERGE_H

#include <glib.h>
#include <sys/types.h>
#include "ksm-context.h"

G_BEGIN_DECLS

/*
 * Fork the writer: it sets its own oom_score_adj to 1000, writes "2" to run
 * and exits with the write's errno (0: the unmerge completed; EINTR: it was
 * interrupted by SIGUSR1).  Returns its pid (reap it with waitpid), or -1
 * when fork failed.
 */
pid_t ksm_run_unmerge_spawn(const KsmContext *ctx, GError **error);

G_END_DECLS

#endif
