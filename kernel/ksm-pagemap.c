/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-pagemap.c: exactly how many pages of a range are KSM pages.
 *
 * /proc/PID/pagemap gives each virtual page's frame number (to
 * CAP_SYS_ADMIN only: others read frame 0), and /proc/kpageflags gives each
 * frame's flags, KPF_KSM among them (Documentation/admin-guide/mm/pagemap.rst).
 * Frames are looked up in sorted batches so neighbouring frames cost one
 * read, and each distinct frame is read once per batch.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ksm-private.h"

#define PM_PFN_MASK      ((G_GUINT64_CONSTANT(1) << 55) - 1)
#define PM_SWAP          (G_GUINT64_CONSTANT(1) << 62)
#define PM_PRESENT       (G_GUINT64_CONSTANT(1) << 63)
#define KPF_KSM          21
#define KPF_ZERO_PAGE    24

#define BATCH_PAGES      65536   /* 512 KiB of pagemap per read */
#define COALESCE_FRAMES  16      /* read a gap of up to this many frames instead of seeking */

static gboolean pread_full(int fd, void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, off + done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            if (n == 0) {
                errno = EIO;
            }
            return FALSE;
        }
        done += n;
    }
    return TRUE;
}

static int compare_u64(const void *a, const void *b)
{
    guint64 x = *(const guint64 *)a, y = *(const guint64 *)b;
    return x < y ? -1 : x > y;
}

/* Flags of the sorted, de-duplicated frames in pfns[0..n). */
static gboolean read_frame_flags(int kpf_fd, const guint64 *pfns, size_t n, guint64 *flags)
{
    guint64 window[COALESCE_FRAMES * 4];
    size_t i = 0;

    while (i < n) {
        /* Extend a run while the frames are close together. */
        size_t j = i + 1;
        while (j < n && pfns[j] - pfns[j - 1] <= COALESCE_FRAMES &&
               pfns[j] - pfns[i] < G_N_ELEMENTS(window)) {
            j++;
        }
        size_t span = pfns[j - 1] - pfns[i] + 1;
        if (!pread_full(kpf_fd, window, span * sizeof(guint64), pfns[i] * sizeof(guint64))) {
            return FALSE;
        }
        for (size_t k = i; k < j; k++) {
            flags[k] = window[pfns[k] - pfns[i]];
        }
        i = j;
    }
    return TRUE;
}

static size_t find_pfn(const guint64 *pfns, size_t n, guint64 pfn)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pfns[mid] < pfn) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

gboolean ksm_range_count(const KsmContext *ctx, pid_t pid, guint64 start, guint64 len,
                         KsmRangeCount *out, GError **error)
{
    gsize page = ksm_context_page_size(ctx);
    g_autofree char *pm_path = ksm_proc_path(ctx, pid, "pagemap");
    g_autofree char *kpf_path = g_build_filename(ksm_context_procfs(ctx), "kpageflags", NULL);
    gboolean ok = FALSE;
    int pm_fd = -1, kpf_fd = -1;

    memset(out, 0, sizeof(*out));
    if (start % page || len % page) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                    "range 0x%" G_GINT64_MODIFIER "x + %" G_GUINT64_FORMAT
                    " is not page aligned", start, len);
        return FALSE;
    }
    pm_fd = open(pm_path, O_RDONLY | O_CLOEXEC);
    if (pm_fd < 0) {
        if (errno == ENOENT || errno == ESRCH) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_NO_PROCESS,
                        "process %d has exited", (int)pid);
        } else {
            ksm_set_errno_error(error, errno, "cannot open", pm_path);
        }
        return FALSE;
    }
    kpf_fd = open(kpf_path, O_RDONLY | O_CLOEXEC);
    if (kpf_fd < 0) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_UNAVAILABLE,
                    "exact KSM page counts are unavailable: cannot open %s (%s); "
                    "they need root (CAP_SYS_ADMIN)", kpf_path, g_strerror(errno));
        close(pm_fd);
        return FALSE;
    }

    guint64 *entries = g_new(guint64, BATCH_PAGES);
    guint64 *pfns = g_new(guint64, BATCH_PAGES);
    guint64 *flags = g_new(guint64, BATCH_PAGES);
    guint64 total = len / page;

    out->pages = total;
    for (guint64 done = 0; done < total;) {
        size_t n = MIN(total - done, BATCH_PAGES);
        off_t off = (off_t)((start / page + done) * sizeof(guint64));
        if (!pread_full(pm_fd, entries, n * sizeof(guint64), off)) {
            ksm_set_errno_error(error, errno, "cannot read", pm_path);
            goto out;
        }
        size_t npfn = 0;
        for (size_t i = 0; i < n; i++) {
            if (entries[i] & PM_PRESENT) {
                out->present_pages++;
                pfns[npfn++] = entries[i] & PM_PFN_MASK;
            } else if (entries[i] & PM_SWAP) {
                out->swapped_pages++;
            }
        }
        qsort(pfns, npfn, sizeof(guint64), compare_u64);
        size_t uniq = 0;
        for (size_t i = 0; i < npfn; i++) {
            if (uniq == 0 || pfns[uniq - 1] != pfns[i]) {
                pfns[uniq++] = pfns[i];
            }
        }
        if (uniq == 1 && pfns[0] == 0 && npfn > 0) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_UNAVAILABLE,
                        "exact KSM page counts are unavailable: the kernel hides frame "
                        "numbers from this process (it needs CAP_SYS_ADMIN)");
            goto out;
        }
        if (!read_frame_flags(kpf_fd, pfns, uniq, flags)) {
            ksm_set_errno_error(error, errno, "cannot read", kpf_path);
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            if (!(entries[i] & PM_PRESENT)) {
                continue;
            }
            guint64 f = flags[find_pfn(pfns, uniq, entries[i] & PM_PFN_MASK)];
            if (f & (G_GUINT64_CONSTANT(1) << KPF_ZERO_PAGE)) {
                out->zero_pages++;
            } else if (f & (G_GUINT64_CONSTANT(1) << KPF_KSM)) {
                out->ksm_pages++;
            }
        }
        done += n;
    }
    ok = TRUE;
out:
    g_free(entries);
    g_free(pfns);
    g_free(flags);
    close(pm_fd);
    close(kpf_fd);
    return ok;
}
