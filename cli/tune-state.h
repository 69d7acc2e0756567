/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tune-state.h: the record `samepage tune` keeps of itself, so that a tune
 * killed in its converge phase (SIGKILL, OOM, a crash) is taken over by the
 * next one, and the knobs the first tune found are never forgotten.
 *
 * The record is a root-only file (/run/samepage/tune.state; beside a fake
 * tree for --sysfs-root): created 0600 without following links, believed
 * only when it is a regular file of root (or the caller) that no one else
 * can write, in a directory no one else can write.  The running tune holds
 * an exclusive flock on it: a lock that is free while the record says
 * "running" means that tune died.
 */
#ifndef CLI_TUNE_STATE_H
#define CLI_TUNE_STATE_H

#include <glib.h>
#include <sys/types.h>

#include "cli.h"

/* The knobs `samepage tune` writes, as it found them. */
typedef struct {
    gboolean have_advisor;
    gint64 advisor_mode;      /* KSM_ADVISOR_*, when have_advisor */
    gint64 pages_to_scan;
    gint64 sleep_millisecs;
    gint64 run;
} CliTuneKnobs;

void cli_tune_knobs_from_snapshot(const KsmSnapshot *snap, CliTuneKnobs *knobs);
/* "name=value" assignments for ksm_knobs_set that put them back: never
 * run=2 (that would unmerge everything), no pages_to_scan while the
 * kernel's advisor owns it. */
GPtrArray *cli_tune_knobs_assignments(const CliTuneKnobs *knobs);
/* "pages_to_scan=100 sleep_millisecs=20 run=0" for messages. */
char *cli_tune_knobs_describe(const CliTuneKnobs *knobs);

typedef struct CliTuneRecord CliTuneRecord;

/* The record for this KSM: /run/samepage/tune.state, or beside a fake tree. */
char *cli_tune_record_default_path(const CliGlobal *global);

/*
 * Open (or create) the record and take its lock.  Fails when another tune
 * holds it (saying which pid) or when the file or its directory is not
 * safe.  *damaged receives why an unreadable record was ignored (NULL if
 * it was fine or empty).
 */
CliTuneRecord *cli_tune_record_open(const char *path, char **damaged, GError **error);

/* The tune before this one if it died while running (its lock was free but
 * its record says running): its pid, phase and the knobs it found. */
gboolean cli_tune_record_predecessor(const CliTuneRecord *record, pid_t *pid,
                                     const char **phase, CliTuneKnobs *found);

/* Replace the record: this process, running or stopped, its phase and the
 * knobs it found.  A single write of a few hundred bytes, then a truncate:
 * a kill between them leaves a whole record. */
gboolean cli_tune_record_write(CliTuneRecord *record, gboolean running, const char *phase,
                               const CliTuneKnobs *found, GError **error);

void cli_tune_record_close(CliTuneRecord *record);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CliTuneRecord, cli_tune_record_close)

#endif
