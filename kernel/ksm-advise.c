/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-advise.c: madvise(MADV_[UN]MERGEABLE).
 *
 * Errors as Documentation/admin-guide/mm/ksm.rst and madvise(2) give them:
 * EAGAIN means the kernel was briefly out of memory (try again), ENOMEM that
 * part of the range is unmapped (the mapped parts were still processed) or,
 * for UNMERGEABLE, that breaking the pages ran out of memory, and EINTR that
 * a signal cut the unmerge short.
 */
#include <errno.h>
#include <sys/mman.h>

#include "ksm-private.h"

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
