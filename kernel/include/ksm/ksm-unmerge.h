/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-unmerge.h: the host lock, headroom, and the safe KSM_RUN_UNMERGE.
 *
 * Writing 2 to /sys/kernel/mm/ksm/run breaks every KSM page on the host at
 * once: it may need as much new memory as KSM saved, the kernel makes the
 * writer the preferred OOM victim, and a second writer blocks behind it.
 * ksm_safe_unmerge() does it the careful way (DESIGN.md, "Safe unmerge").
 */
#ifndef KSM_UNMERGE_H
#define KSM_UNMERGE_H

#include <glib.h>
#include <sys/types.h>
#include "ksm-context.h"
#include "ksm-host.h"

G_BEGIN_DECLS

/* Every samepage writer of KSM knobs takes this lock (flock, exclusive). */
#define KSM_HOST_LOCK_PATH "/run/samepage/ksm.lock"

typedef struct KsmHostLock KsmHostLock;
/*
 * Take the host lock, waiting up to timeout_ms (0: do not wait, -1: forever).
 * path NULL means KSM_HOST_LOCK_PATH (or $SAMEPAGE_LOCK when set).
 * KSM_ERROR_LOCKED when another holder keeps it past the timeout.
 */
KsmHostLock *ksm_host_lock_acquire(const char *path, gint64 timeout_ms, GError **error);
void ksm_host_lock_release(KsmHostLock *lock);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KsmHostLock, ksm_host_lock_release)

/* What memory there is for an unmerge to use. */
typedef struct {
    guint64 mem_available;   /* MemAvailable from /proc/meminfo */
    gboolean has_cgroup_limit;
    guint64 cgroup_limit;    /* the process's memory cgroup limit (v1 or v2) */
    guint64 cgroup_usage;
    guint64 headroom;        /* min(mem_available, limit - usage) */
} KsmHeadroom;

/* pid 0 means "no process": only MemAvailable. */
gboolean ksm_headroom_read(const KsmContext *ctx, pid_t pid, KsmHeadroom *out, GError **error);
/* The memory cgroup directory of pid (v1 memory controller or v2), or NULL. */
char *ksm_memory_cgroup_dir(const KsmContext *ctx, pid_t pid);

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
