/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-saved.h: how many pages KSM saves right now inside a set of processes
 * (or address ranges of them), exactly, without reading their memory.
 *
 * The census (ksm-census.h) says what merging *could* save and reads every
 * page to know it; this says what KSM *has* saved, from frame numbers only,
 * cheaply enough to sample a few times a second while ksmd works (the merge
 * convergence benchmark does).  Definitions are the census's:
 *
 *   ksm_saved_pages   for every KSM frame (KPF_KSM in /proc/kpageflags) that
 *                     n > 1 pages of the ranges map: n - 1.  This is
 *                     pages_sharing restricted to the ranges: a KSM frame
 *                     shared with a process outside them saves nothing
 *                     inside them.
 *   other_saved_pages the same for frames that are not KSM's: the shared
 *                     zero page (pages only ever read), copy-on-write after
 *                     fork.
 *
 * Only frames that pagemap does not flag "exclusively mapped" (bit 56: the
 * page's map count is 1) are looked up: a frame mapped once saves nothing,
 * so the answer is exact while the number of kpageflags reads follows the
 * sharing, not the size.  Needs frame numbers (root, CAP_SYS_ADMIN):
 * KSM_ERROR_UNAVAILABLE otherwise, never a guess.
 */
#ifndef KSM_SAVED_H
#define KSM_SAVED_H

#include <glib.h>
#include <ksm/ksm-context.h>
#include <ksm/ksm-census.h>

G_BEGIN_DECLS

typedef struct {
    guint64 pages;              /* pages in the ranges */
    guint64 present_pages;      /* in RAM */
    guint64 shared_pages;       /* present pages whose frame is mapped more than once */
    guint64 ksm_saved_pages;    /* see above */
    guint64 ksm_mapped_pages;   /* pages of the ranges mapping those KSM frames */
    guint64 other_saved_pages;
    guint gone;                 /* targets whose process had exited */
} KsmSaved;

/*
 * Targets as for the census: a pid and [start, end), or start = end = 0 for
 * every private anonymous writable area of the process (/proc/PID/maps).
 * A process that has exited counts in `gone` and adds nothing.
 */
gboolean ksm_saved_count(const KsmContext *ctx, const KsmCensusTarget *targets, guint n_targets,
                         KsmSaved *out, GError **error);

G_END_DECLS

#endif
