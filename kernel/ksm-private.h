/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-private.h: helpers shared by libksm's own files, not installed.
 */
#ifndef KSM_PRIVATE_H
#define KSM_PRIVATE_H

#include <glib.h>
#include <sys/types.h>
#include "ksm/ksm.h"

/*
 * Read a whole (small, pseudo-)file.  errno is mapped to KSM_ERROR codes:
 * ENOENT -> NOT_AVAILABLE (or NO_PROCESS under /proc/PID via ksm_read_proc),
 * EACCES/EPERM -> PERMISSION, else FAILED.  what names it in messages.
 */
char *ksm_read_text(const char *path, gsize *len, GError **error);
/* write(2) the text once (sysfs wants one write); returns errno or 0. */
int ksm_write_text(const char *path, const char *text);

/* /proc/PID/<name> under the context's procfs. */
char *ksm_proc_path(const KsmContext *ctx, pid_t pid, const char *name);
/* Read /proc/PID/<name>; a vanished process is KSM_ERROR_NO_PROCESS. */
char *ksm_read_proc(const KsmContext *ctx, pid_t pid, const char *name, gsize *len,
                    GError **error);

/* Set error from errno for an operation on path; returns FALSE. */
gboolean ksm_set_errno_error(GError **error, int err, const char *what, const char *path);

/* Is flag one of the words of an smaps VmFlags value ("rd wr mg")? */
gboolean ksm_vmflags_has(const char *flags, const char *flag);

/* Sort v[0..n) ascending; tmp has room for n values (ksm-sort.c). */
void ksm_sort_u64(guint64 *v, gsize n, guint64 *tmp);

/* g_get_monotonic_time in ms. */
gint64 ksm_now_ms(void);

#endif
