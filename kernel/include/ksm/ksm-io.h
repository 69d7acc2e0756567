/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-io.h: libksm's readers of procfs and sysfs files, for samepage's own
 * policy libraries (policy/): one reader per file, so each format's
 * constants, bounds and error messages live in one place.
 *
 *   small text files        ksm_read_text, ksm_read_proc
 *   /proc/PID/maps, smaps   ksm-maps.h
 *   /proc/PID/pagemap,      ksm-pagemap.h
 *   /proc/kpageflags
 *   /proc/PID/stat,         ksm-task.h
 *   /proc/PID/cmdline
 */
#ifndef KSM_IO_H
#define KSM_IO_H

#include <glib.h>
#include <sys/types.h>
#include "ksm-context.h"

G_BEGIN_DECLS

/*
 * Read a whole (small, pseudo-)file.  errno is mapped to KSM_ERROR codes:
 * ENOENT -> NOT_AVAILABLE (or NO_PROCESS under /proc/PID via ksm_read_proc),
 * EACCES/EPERM -> PERMISSION, else FAILED.  what names it in messages.
 */
char *ksm_read_text(const char *path, gsize *len, GError **error);

/* /proc/PID/<name> under the context's procfs. */
char *ksm_proc_path(const KsmContext *ctx, pid_t pid, const char *name);
/* Read /proc/PID/<name>; a vanished process is KSM_ERROR_NO_PROCESS. */
char *ksm_read_proc(const KsmContext *ctx, pid_t pid, const char *name, gsize *len,
                    GError **error);

/*
 * pread until len bytes are read; returns the bytes read.  Short only at an
 * error (errno set) or at the end of the file (errno 0: for /proc/PID/mem
 * and pagemap, the process has gone).  EINTR is retried.
 */
gsize ksm_pread_full(int fd, void *buf, gsize len, guint64 offset);

/* Set error from errno for an operation on path; returns FALSE. */
gboolean ksm_set_errno_error(GError **error, int err, const char *what, const char *path);

/* Sort v[0..n) ascending; tmp has room for n values (a radix sort: frame
 * numbers, one per page of guest memory). */
void ksm_sort_u64(guint64 *v, gsize n, guint64 *tmp);

/* g_get_monotonic_time in ms. */
gint64 ksm_now_ms(void);

G_END_DECLS

#endif
