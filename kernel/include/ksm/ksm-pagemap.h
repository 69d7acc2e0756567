/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-pagemap.h: the one reader of /proc/PID/pagemap and /proc/kpageflags
 * (Documentation/admin-guide/mm/pagemap.rst).
 *
 * pagemap holds one 64-bit entry per virtual page: present/swapped bits,
 * "exclusively mapped" (the page's map count is 1) and the frame number,
 * which the kernel shows to CAP_SYS_ADMIN only (others read frame 0).
 * kpageflags holds one 64-bit flags word per frame, KPF_KSM among them.
 * Reading kpageflags costs ~150 ns per entry in the kernel, so frames are
 * read sorted, each distinct one once, neighbours in one read.
 */
#ifndef KSM_PAGEMAP_H
#define KSM_PAGEMAP_H

#include <glib.h>
#include <sys/types.h>
#include "ksm-context.h"

G_BEGIN_DECLS

/* pagemap entry bits */
#define KSM_PM_PFN_MASK   ((G_GUINT64_CONSTANT(1) << 55) - 1)
#define KSM_PM_EXCLUSIVE  (G_GUINT64_CONSTANT(1) << 56)
#define KSM_PM_SWAP       (G_GUINT64_CONSTANT(1) << 62)
#define KSM_PM_PRESENT    (G_GUINT64_CONSTANT(1) << 63)
/* kpageflags bits (include/uapi/linux/kernel-page-flags.h) */
#define KSM_KPF_KSM        21
#define KSM_KPF_ZERO_PAGE  24

/*
 * Open /proc/PID/pagemap: -1 with KSM_ERROR_NO_PROCESS ("process N has
 * exited") when the process is gone, another KSM_ERROR from errno else.
 */
int ksm_pagemap_open(const KsmContext *ctx, pid_t pid, GError **error);
/*
 * The entries of pages [first_page, first_page + n) into entries[]; returns
 * how many were read.  Short at an error (errno) or when the process has
 * gone (errno 0 or ESRCH).
 */
gsize ksm_pagemap_read(int fd, guint64 first_page, guint64 *entries, gsize n);

/*
 * Does this kernel's KPF_KSM mark KSM pages only?  FALSE, with
 * KSM_ERROR_UNAVAILABLE saying why, where it marks every anonymous page
 * (Debian's 6.12.95): no exact KSM count can be made there.  TRUE on a fake
 * tree and where frame numbers are hidden.  Probed once per process.
 */
gboolean ksm_kpageflags_ksm_reliable(const KsmContext *ctx, GError **error);
/* Open /proc/kpageflags: -1 with errno set (root only). */
int ksm_kpageflags_open(const KsmContext *ctx);
/*
 * The flags of the frames pfns[0..n) (ascending, repeats allowed) into
 * flags[0..n): each run of near frames in one read.  FALSE with errno set
 * when a read fails.
 */
gboolean ksm_kpageflags_read(int fd, const guint64 *pfns, gsize n, guint64 *flags);

/* The size a PMD maps (a transparent huge page), in bytes; 0 without THP. */
gsize ksm_thp_pmd_size(const KsmContext *ctx);

G_END_DECLS

#endif
