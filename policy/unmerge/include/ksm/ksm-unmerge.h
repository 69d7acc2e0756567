/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-unmerge.h: the safe KSM_RUN_UNMERGE (policy on top of libksm).
 *
 * Writing 2 to /sys/kernel/mm/ksm/run breaks every KSM page on the host at
 * once: it may need as much new memory as KSM saved, the kernel makes the
 * writer the preferred OOM victim, and a second writer blocks behind it.
 * ksm_safe_unmerge() does it the careful way: under the host lock
 * (ksm-host-lock.h), after a headroom check (ksm-headroom.h), in a
 * disposable child with a deadline (ksm-run-unmerge.h); docs/architecture.md
 * says why each step.
 */
#ifndef KSM_UNMERGE_H
#define KSM_UNMERGE_H

#include <glib.h>
#include <sys/types.h>
#include <ksm/ksm-context.h>
#include <ksm/ksm-headroom.h>
#include <ksm/ksm-host.h>
#include <ksm/ksm-host-lock.h>

G_BEGIN_DECLS

typedef enum {
    KSM_UNMERGE_DONE,          /* run=2 completed: nothing merged any more */
    KSM_UNMERGE_REFUSED,       /* not enough headroom: nothing unmerged */
    KSM_UNMERGE_INTERRUPTED,   /* deadline hit: the kernel stopped part-way (run is 0) */
    KSM_UNMERGE_FAILED,        /* the kernel refused or the child died */
} KsmUnmergeResult;

const char *ksm_unmerge_result_name(KsmUnmergeResult result);

typedef struct {
    guint64 reserve_bytes;     /* keep this much MemAvailable free after the unmerge */
    gint64 deadline_ms;        /* interrupt the kernel's unmerge after this (<= 0: 10 min) */
    gboolean stop_if_refused;  /* write run=0 when refusing for headroom */
    gboolean force;            /* skip the headroom check */
    gint64 lock_timeout_ms;    /* for the host lock (0 = don't wait) */
    const char *lock_path;     /* NULL: default */
    /*
     * The caller already holds the host lock (it decided under that lock that
     * the unmerge is wanted, e.g. the libvirt hook checking "no mergeable
     * guest left"): do not take it again.  flock locks conflict between two
     * open files even in one process, so taking it twice would time out.
     */
    gboolean lock_held;
} KsmUnmergeOptions;

typedef struct {
    KsmUnmergeResult result;
    guint64 needed_bytes;
    guint64 available_bytes;   /* MemAvailable - reserve at the preflight */
    guint64 reserve_bytes;
    gint64 before[KSM_FIELD__COUNT];   /* -1 where absent */
    gint64 after[KSM_FIELD__COUNT];
    gint64 duration_ms;
    gboolean stopped_ksmd;     /* run=0 was written (refusal or interruption) */
    pid_t writer_pid;          /* the child that wrote run=2 (0 if none) */
    char *message;             /* one line for the log */
} KsmUnmergeOutcome;

void ksm_unmerge_options_init(KsmUnmergeOptions *opts);
/*
 * What the safe unmerge lets itself use: MemAvailable minus the reserve (0
 * when the reserve is larger).  One rule for every "does it fit" of
 * samepage: the unmerge's new copies, and a guest arriving unmerged on an
 * incoming migration (the libvirt hook).
 */
guint64 ksm_unmerge_room(const KsmHeadroom *room, guint64 reserve_bytes);
/*
 * The safe host-wide unmerge.  Returns FALSE only when it could not even
 * start (no KSM, not root, lock busy); otherwise TRUE with the outcome
 * saying what happened.
 */
gboolean ksm_safe_unmerge(const KsmContext *ctx, const KsmUnmergeOptions *opts,
                          KsmUnmergeOutcome *out, GError **error);
/* One JSON object, no newline: {"event":"ksm-unmerge","result":...}. */
char *ksm_unmerge_outcome_to_json(const KsmUnmergeOutcome *out);
void ksm_unmerge_outcome_clear(KsmUnmergeOutcome *out);

G_END_DECLS

#endif
