/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-advise.h: registering memory with KSM from inside the process.
 *
 * madvise(MADV_UNMERGEABLE) in the process that owns the memory is the safe
 * way to unmerge: the copies are allocated in the right mm and, if memory
 * runs out, the OOM killer's choice is that process (docs/scenarios.md, R14).
 */
#ifndef KSM_ADVISE_H
#define KSM_ADVISE_H

#include <glib.h>
#include <stddef.h>

G_BEGIN_DECLS

/*
 * madvise(MADV_MERGEABLE) / madvise(MADV_UNMERGEABLE) over [addr, addr+len).
 * EAGAIN is retried a few times with a short back-off, as the kernel asks;
 * then KSM_ERROR_NO_MEMORY.  EINTR gives KSM_ERROR_INTERRUPTED (the caller
 * decides whether to go on: a job may have been cancelled).  ENOMEM means
 * part of the range is not mapped (KSM_ERROR_UNMAPPED): the kernel has still
 * processed the mapped parts.
 */
gboolean ksm_advise_mergeable(void *addr, size_t len, GError **error);
gboolean ksm_advise_unmergeable(void *addr, size_t len, GError **error);

G_END_DECLS

#endif
