/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unmerge.h: what `samepage unmerge` shares between its files.
 *
 *   cmd-unmerge.c       options; --all (the safe host-wide unmerge, libksm)
 *   unmerge-guest.c     one guest through its QMP ksm-unmerge job
 * The QMP transports it uses are in qmp.h.
 */
#ifndef CLI_UNMERGE_H
#define CLI_UNMERGE_H

#include <glib.h>
#include <sys/types.h>

#include "cli.h"
#include "qmp.h"

typedef struct {
    const char *backend;     /* memory backend id, NULL: all */
    gboolean force;
    guint timeout_s;         /* for the whole job */
    gboolean json;
} CliGuestUnmergeOptions;

/*
 * Run ksm-unmerge as a job, wait for it, dismiss it, print the outcome.
 * pid (0 if unknown) is for before/after merging pages.  Returns the exit
 * code.  Sets qmp->deadline: no reply is awaited past the job's timeout plus
 * the grace for job-cancel, however slowly the peer answers.
 */
int cli_guest_unmerge(CliQmp *qmp, const KsmContext *ctx, const char *target_kind,
                      const char *target, pid_t pid, const CliGuestUnmergeOptions *opts);

#endif
