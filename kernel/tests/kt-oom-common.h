/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kt-oom-common.h: the parts R19 and R20 share: a child in a memory cgroup
 * whose threads fault memory until the cgroup OOM killer takes it, and the
 * parent's watch of how long the killed process takes to go.
 */
#ifndef KT_OOM_COMMON_H
#define KT_OOM_COMMON_H

#include <pthread.h>
#include "kt-harness.h"

typedef struct {
    const char *cgroup;
    gsize merge_len;        /* identical pages, MADV_MERGEABLE */
    gboolean hugepage;      /* MADV_HUGEPAGE on the merge area and the balloon chunks */
    guint fault_threads;    /* mmap + touch 1-2 MiB chunks forever */
    guint map_threads;      /* mmap/touch/mprotect/munmap 1 MiB in a loop */
    guint advise_threads;   /* flip the merge area's advice (mmap_lock for write) */
} KtOomSpec;

/* Child side: set up, reply 'r' + merge area address, on 'g' start the
 * threads and wait to be killed. */
int kt_oom_child(KtChild *self, gpointer data);

typedef struct {
    KtCgroup *cg;
    KtChild *bystander;     /* outside the cgroup: must survive */
    KtChild *child;         /* kt_oom_child inside it */
    KtMem view;             /* the child's merge area */
    gint64 merged;          /* its merging pages once ksmd had its scans */
} KtOomSetup;

/*
 * The scene of R19 and R20: fast scanning, a settled baseline, a cgroup of
 * `limit` bytes (spec->cgroup is set to it), a bystander outside it, the
 * child set up inside, and ksmd given two scans to merge the identical half
 * of its merge area (waited for up to 30 s).
 */
void kt_oom_setup(guint64 limit, KtOomSpec *spec, const char *label, KtOomSetup *s);
/* Remove the cgroup (asserted) and end the bystander. */
void kt_oom_teardown(KtOomSetup *s);

typedef struct {
    gboolean reaped;
    gint64 go_us;           /* 'g' sent */
    gint64 kill_us;         /* the cgroup's oom_kill counter moved (0 if never seen) */
    gint64 exit_us;         /* reaped */
    gint64 oom_kills;       /* counter at the end */
    char *status;
} KtOomWatch;

/* Send 'g', then poll the cgroup's oom_kill counter and waitpid until the
 * child is reaped or deadline_ms passes. */
void kt_oom_watch(KtChild *c, KtCgroup *cg, gint64 deadline_ms, KtOomWatch *w);
/* The common assertions and notes: gone within the deadline, by SIGKILL,
 * kill-to-exit time under exit_ms, victims inside, bystander alive. */
void kt_oom_report(KtChild *c, KtChild *bystander, const KtOomWatch *w, gint64 deadline_ms,
                   gint64 exit_ms);

#endif
