/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-headroom.h: what memory there is for an unmerge to use.
 *
 * Breaking KSM pages allocates one new page per page that shared a KSM
 * page; where that memory comes from is /proc/meminfo's MemAvailable and,
 * for a process in a memory cgroup, what is left below the cgroup's limit.
 */
#ifndef KSM_HEADROOM_H
#define KSM_HEADROOM_H

#include <glib.h>
#include <sys/types.h>
#include "ksm-context.h"

G_BEGIN_DECLS

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

G_END_DECLS

#endif
