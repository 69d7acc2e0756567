/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-qemu-procs.h: the QEMU processes on this host (samepage stats,
 * estimate and unmerge list guests with it).
 */
#ifndef KSM_QEMU_PROCS_H
#define KSM_QEMU_PROCS_H

#include <glib.h>
#include <sys/types.h>
#include <ksm/ksm-context.h>

G_BEGIN_DECLS

/* A QEMU process found on the host. */
typedef struct {
    pid_t pid;
    char *name;        /* from -name (guest=NAME,... or NAME), or NULL */
    char *exe;         /* basename of argv[0] */
} KsmQemuProcess;

/*
 * Every process whose argv[0] basename starts with "qemu-system-" or is
 * "qemu-kvm".  Processes that vanish while being read are skipped.
 * Returns a GPtrArray of KsmQemuProcess* (freed with the array).
 */
GPtrArray *ksm_find_qemu_processes(const KsmContext *ctx);
/* Guest name from a NUL-separated argv (exposed for tests). */
char *ksm_qemu_name_from_argv(const char *const *argv, guint argc);

G_END_DECLS

#endif
