/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-lock.c: the host lock every samepage writer of KSM state takes, so
 * only one unmerge or knob change runs at a time (a second run=2 writer
 * would block uninterruptibly on the kernel's ksm_thread_mutex).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ksm-private.h"

struct KsmHostLock {
    int fd;
    char *path;
};

KsmHostLock *ksm_host_lock_acquire(const char *path, gint64 timeout_ms, GError **error)
{
    const char *env = g_getenv("SAMEPAGE_LOCK");
    g_autofree char *file = g_strdup(path ? path : env && *env ? env : KSM_HOST_LOCK_PATH);
    g_autofree char *dir = g_path_get_dirname(file);
    gint64 deadline = ksm_now_ms() + timeout_ms;

    /* Root-only: the lock file lives under /run, created 0700/0600. */
    if (g_mkdir_with_parents(dir, 0700) < 0) {
        ksm_set_errno_error(error, errno, "cannot create", dir);
        return NULL;
    }
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        ksm_set_errno_error(error, errno, "cannot open lock", file);
        return NULL;
    }
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            ksm_set_errno_error(error, errno, "cannot lock", file);
            close(fd);
            return NULL;
        }
        if (timeout_ms >= 0 && ksm_now_ms() >= deadline) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_LOCKED,
                        "another samepage process holds %s (an unmerge or knob change "
                        "is running); try again when it is done", file);
            close(fd);
            return NULL;
        }
        g_usleep(20 * 1000);
    }
    KsmHostLock *lock = g_new0(KsmHostLock, 1);
    lock->fd = fd;
    lock->path = g_steal_pointer(&file);
    return lock;
}

void ksm_host_lock_release(KsmHostLock *lock)
{
    if (!lock) {
        return;
    }
    flock(lock->fd, LOCK_UN);
    close(lock->fd);
    g_free(lock->path);
    g_free(lock);
}
