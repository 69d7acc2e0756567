/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-context.h: where libksm finds the kernel.
 *
 * Every path libksm opens is built from a context's sysfs and procfs roots,
 * so unit tests can point the library at a fake tree.  The real kernel is
 * ksm_context_new(NULL, NULL): /sys and /proc.
 */
#ifndef KSM_CONTEXT_H
#define KSM_CONTEXT_H

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

typedef struct KsmContext KsmContext;

/* NULL roots mean the real /sys and /proc.  Never fails. */
KsmContext *ksm_context_new(const char *sysfs_root, const char *procfs_root);
void ksm_context_free(KsmContext *ctx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KsmContext, ksm_context_free)

/* /sys/kernel/mm/ksm under the context's sysfs root. */
const char *ksm_context_ksm_dir(const KsmContext *ctx);
const char *ksm_context_procfs(const KsmContext *ctx);
const char *ksm_context_sysfs(const KsmContext *ctx);
/* The base page size KSM works in (sysconf, overridable for tests). */
gsize ksm_context_page_size(const KsmContext *ctx);
void ksm_context_set_page_size(KsmContext *ctx, gsize page_size);

/* Is KSM compiled into this kernel (the ksm directory and its run file exist)? */
gboolean ksm_available(const KsmContext *ctx, GError **error);
/* Can this process write the knobs (root, and the run file writable)? */
gboolean ksm_writable(const KsmContext *ctx, GError **error);

G_END_DECLS

#endif
