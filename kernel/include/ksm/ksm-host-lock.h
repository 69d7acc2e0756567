/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-host-lock.h: the lock every samepage writer of KSM knobs takes.
 *
 * KSM's knobs are global to the machine.  samepage's writers (samepage set,
 * tune, knobs restore, unmerge, the libvirt hook, the kernel test suite)
 * serialise on one flock so that a read-modify-write of the knobs, or a
 * run=2, never interleaves with another: a second run=2 writer would block
 * uninterruptibly in the kernel behind the first.
 */
#ifndef KSM_HOST_LOCK_H
#define KSM_HOST_LOCK_H

#include <glib.h>

G_BEGIN_DECLS

/* Every samepage writer of KSM knobs takes this lock (flock, exclusive). */
#define KSM_HOST_LOCK_PATH "/run/samepage/ksm.lock"

typedef struct KsmHostLock KsmHostLock;
/*
 * Take the host lock, waiting up to timeout_ms (0: do not wait, -1: forever).
 * path NULL means KSM_HOST_LOCK_PATH (or $SAMEPAGE_LOCK when set).
 * KSM_ERROR_LOCKED when another holder keeps it past the timeout.
 */
KsmHostLock *ksm_host_lock_acquire(const char *path, gint64 timeout_ms, GError **error);
void ksm_host_lock_release(KsmHostLock *lock);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KsmHostLock, ksm_host_lock_release)

G_END_DECLS

#endif
