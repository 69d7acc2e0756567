/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-advise.c: madvise(MADV_[UN]MERGEABLE) and prctl(PR_*_MEMORY_MERGE).
 *
 * Errors as Documentation/admin-guide/mm/ksm.rst and madvise(2) give them:
 * EAGAIN means the kernel was briefly out of memory (try again), ENOMEM that
 * part of the range is unmapped (the mapped parts were still processed) or,
 * for UNMERGEABLE, that breaking the pages ran out of memory, and EINTR that
 * a signal cut the unmerge short.
 */
#include <errno.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include "ksm-private.h"

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif

#define EAGAIN_RETRIES 5

static gboolean advise(void *addr, size_t len, int advice, GError **error)
{
    const char *what = advice == MADV_MERGEABLE ? "MADV_MERGEABLE" : "MADV_UNMERGEABLE";

    for (int attempt = 0;; attempt++) {
        if (madvise(addr, len, advice) == 0) {
            return TRUE;
        }
        int err = errno;
        if (err == EAGAIN && attempt < EAGAIN_RETRIES) {
            g_usleep((1 << attempt) * 1000);
            continue;
        }
        switch (err) {
        case EINTR:
            g_set_error(error, KSM_ERROR, KSM_ERROR_INTERRUPTED,
                        "%s on %p+%zu was interrupted by a signal; "
                        "part of the range may be done", what, addr, len);
            break;
        case EAGAIN:
            g_set_error(error, KSM_ERROR, KSM_ERROR_NO_MEMORY,
                        "%s on %p+%zu: the kernel is short of memory (EAGAIN, "
                        "%d retries); try again later", what, addr, len, EAGAIN_RETRIES);
            break;
        case ENOMEM:
            g_set_error(error, KSM_ERROR, KSM_ERROR_UNMAPPED,
                        "%s on %p+%zu: part of the range is not mapped, or the "
                        "kernel ran out of memory (ENOMEM); mapped parts were processed",
                        what, addr, len);
            break;
        case EINVAL:
            g_set_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE,
                        "%s on %p+%zu: refused (EINVAL): KSM is not built into this "
                        "kernel, or the range is not page aligned", what, addr, len);
            break;
        default:
            ksm_set_errno_error(error, err, what, "range");
            break;
        }
        return FALSE;
    }
}

gboolean ksm_advise_mergeable(void *addr, size_t len, GError **error)
{
    return advise(addr, len, MADV_MERGEABLE, error);
}

gboolean ksm_advise_unmergeable(void *addr, size_t len, GError **error)
{
    return advise(addr, len, MADV_UNMERGEABLE, error);
}

gboolean ksm_unmerge_range_chunked(void *addr, size_t len, size_t chunk,
                                   KsmProgressFunc progress, gpointer opaque,
                                   guint64 *done, GError **error)
{
    guint64 finished = 0;

    if (chunk == 0) {
        chunk = 2 * 1024 * 1024;
    }
    while (finished < len) {
        size_t n = MIN(chunk, len - finished);
        if (!ksm_advise_unmergeable((char *)addr + finished, n, error)) {
            break;
        }
        finished += n;
        if (progress && !progress(finished, len, opaque) && finished < len) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_INTERRUPTED,
                        "unmerge stopped after %" G_GUINT64_FORMAT " of %zu bytes",
                        finished, len);
            break;
        }
    }
    if (done) {
        *done = finished;
    }
    return finished == len;
}

gboolean ksm_process_set_merge_any(gboolean on, GError **error)
{
    if (prctl(PR_SET_MEMORY_MERGE, on ? 1 : 0, 0, 0, 0) < 0) {
        if (errno == EINVAL) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE,
                        "PR_SET_MEMORY_MERGE is not supported by this kernel (needs 6.4+)");
            return FALSE;
        }
        return ksm_set_errno_error(error, errno, "prctl", "PR_SET_MEMORY_MERGE");
    }
    return TRUE;
}

gboolean ksm_process_get_merge_any(gboolean *on, GError **error)
{
    int r = prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0);

    if (r < 0) {
        if (errno == EINVAL) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE,
                        "PR_GET_MEMORY_MERGE is not supported by this kernel (needs 6.4+)");
            return FALSE;
        }
        return ksm_set_errno_error(error, errno, "prctl", "PR_GET_MEMORY_MERGE");
    }
    *on = r != 0;
    return TRUE;
}
