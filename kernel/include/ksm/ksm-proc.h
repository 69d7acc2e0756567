/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-proc.h: KSM as one process and one address range see it.
 *
 *   /proc/PID/ksm_stat            per-process figures (two line formats)
 *   /proc/PID/ksm_merging_pages   older single-number file
 *   /proc/PID/smaps               which areas are mergeable (VmFlags "mg")
 *   /proc/PID/pagemap + /proc/kpageflags
 *                                 exact KSM page count of a range (root only)
 */
#ifndef KSM_PROC_H
#define KSM_PROC_H

#include <glib.h>
#include <sys/types.h>
#include "ksm-context.h"

G_BEGIN_DECLS

typedef enum {
    KSM_PROC_RMAP_ITEMS,
    KSM_PROC_ZERO_PAGES,
    KSM_PROC_MERGING_PAGES,
    KSM_PROC_PROCESS_PROFIT,
    KSM_PROC__COUNT
} KsmProcField;

typedef struct {
    gboolean present[KSM_PROC__COUNT];
    gint64 value[KSM_PROC__COUNT];
    int merge_any;      /* -1 unknown, 0 no, 1 yes (prctl PR_SET_MEMORY_MERGE) */
    int mergeable;      /* -1 unknown, 0 no, 1 yes (any area registered) */
    /* Lines we do not know, kept as "key value" text.  Never NULL. */
    GPtrArray *unknown;
} KsmProcStat;

/* "ksm_rmap_items" ... : the name of the line in ksm_stat. */
const char *ksm_proc_field_name(KsmProcField field);

void ksm_proc_stat_init(KsmProcStat *st);
void ksm_proc_stat_clear(KsmProcStat *st);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KsmProcStat, ksm_proc_stat_clear)

/* Parse ksm_stat text ("key N" and "key: yes|no" lines; unknown kept).
 * st must be initialised (ksm_proc_stat_init) or zeroed. */
gboolean ksm_proc_stat_parse(const char *text, KsmProcStat *st, GError **error);
/*
 * Read /proc/PID/ksm_stat, falling back to ksm_merging_pages on kernels
 * without it.  KSM_ERROR_NO_PROCESS if the process is gone.
 */
gboolean ksm_proc_stat_read(const KsmContext *ctx, pid_t pid, KsmProcStat *st, GError **error);

/* Mergeability of [start, start+len) from /proc/PID/smaps. */
typedef struct {
    guint64 mapped_bytes;     /* bytes of the range inside some mapping */
    guint64 mergeable_bytes;  /* of those, in areas with VmFlags "mg" */
    gint64 ksm_bytes;         /* sum of "KSM:" of areas wholly inside; -1 if the kernel has no such line */
    guint areas;              /* mappings overlapping the range */
} KsmRangeSmaps;

gboolean ksm_range_smaps(const KsmContext *ctx, pid_t pid, guint64 start, guint64 len,
                         KsmRangeSmaps *out, GError **error);
/* /proc/PID/smaps as text, for callers asking about several ranges at once. */
char *ksm_smaps_read(const KsmContext *ctx, pid_t pid, GError **error);
/* Parse smaps text (the same, for tests and callers holding the text). */
gboolean ksm_range_smaps_parse(const char *text, guint64 start, guint64 len,
                               KsmRangeSmaps *out, GError **error);

/* An address range [start, end). */
typedef struct {
    guint64 start, end;
} KsmAddrRange;

/*
 * The parts of [start, start+len) in areas with VmFlags "mg", in address
 * order, adjacent areas joined: a GArray of KsmAddrRange (free with
 * g_array_unref).  From smaps text (ksm_smaps_read): what a caller that is
 * about to change the range's mergeability needs to put it back exactly.
 */
GArray *ksm_range_smaps_mergeable_parts(const char *text, guint64 start, guint64 len,
                                        GError **error);

/*
 * Exact page census of [start, start+len) from pagemap + kpageflags.
 * ksm_pages: present pages whose frame has KPF_KSM.  zero_pages: present
 * pages mapped to the shared zero page (KSM's zero pages when use_zero_pages
 * is on, and pages only ever read).  Needs CAP_SYS_ADMIN: without it the
 * kernel hides frame numbers and this fails with KSM_ERROR_UNAVAILABLE and
 * says why; it never guesses.
 */
typedef struct {
    guint64 pages;          /* pages in the range */
    guint64 present_pages;  /* in RAM */
    guint64 swapped_pages;
    guint64 ksm_pages;
    guint64 zero_pages;
} KsmRangeCount;

gboolean ksm_range_count(const KsmContext *ctx, pid_t pid, guint64 start, guint64 len,
                         KsmRangeCount *out, GError **error);

G_END_DECLS

#endif
