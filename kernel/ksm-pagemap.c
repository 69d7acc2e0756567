/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-pagemap.c: exactly how many pages of a range are KSM pages.
 *
 * /proc/PID/pagemap gives each virtual page's frame number (to
 * CAP_SYS_ADMIN only: others read frame 0), and /proc/kpageflags gives each
 * frame's flags, KPF_KSM among them (Documentation/admin-guide/mm/pagemap.rst).
 *
 * Cost: the kernel's pagemap walk (a few ms per GiB) and one kpageflags
 * entry per distinct frame (~150 ns each in the kernel: the bulk of the
 * time).  So:
 *   - frames are radix-sorted and looked up once each, neighbouring frames
 *     in one read; the counts are added per run of equal frames (no per-page
 *     search);
 *   - ranges mapped by a PMD (a transparent huge page, or hugetlb), which
 *     PAGEMAP_SCAN (Linux 6.7+) names without reading them, are looked up
 *     once per PMD: all its pages belong to one folio, and KPF_KSM and
 *     KPF_ZERO_PAGE are properties of the folio (a KSM page is never large;
 *     the huge zero page is).  Every page of such a range is checked to
 *     map the frame its offset says, else it is looked up on its own.  On
 *     kernels without PAGEMAP_SCAN every frame is looked up.
 * The result is the same as looking up every page's frame.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ksm-private.h"

#define BATCH_PAGES      65536   /* 512 KiB of pagemap per read */
#define COALESCE_FRAMES  16      /* read a gap of up to this many frames instead of seeking */
#define WINDOW_FRAMES    512     /* at most this many frames per kpageflags read */
#define PM_ENTRY         sizeof(guint64)

/* PAGEMAP_SCAN (linux/fs.h, 6.7+), spelled out: older headers lack it. */
struct ksm_pm_scan_arg {
    guint64 size, flags, start, end, walk_end, vec, vec_len, max_pages;
    guint64 category_inverted, category_mask, category_anyof_mask, return_mask;
};
struct ksm_page_region {
    guint64 start, end, categories;
};
#define KSM_PAGEMAP_SCAN   _IOWR('f', 16, struct ksm_pm_scan_arg)
#define KSM_PAGE_IS_PRESENT (1 << 3)
#define KSM_PAGE_IS_HUGE    (1 << 6)

/* ---- the reader ---------------------------------------------------------- */

int ksm_pagemap_open(const KsmContext *ctx, pid_t pid, GError **error)
{
    g_autofree char *path = ksm_proc_path(ctx, pid, "pagemap");
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        if (errno == ENOENT || errno == ESRCH) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_NO_PROCESS,
                        "process %d has exited", (int)pid);
        } else {
            ksm_set_errno_error(error, errno, "cannot open", path);
        }
    }
    return fd;
}

gsize ksm_pagemap_read(int fd, guint64 first_page, guint64 *entries, gsize n)
{
    errno = 0;
    return ksm_pread_full(fd, entries, n * PM_ENTRY, first_page * PM_ENTRY) / PM_ENTRY;
}

int ksm_kpageflags_open(const KsmContext *ctx)
{
    g_autofree char *path = g_build_filename(ksm_context_procfs(ctx), "kpageflags", NULL);
    return open(path, O_RDONLY | O_CLOEXEC);
}

/*
 * Does KPF_KSM mean KSM on this kernel?  Debian's 6.12.95 sets it on every
 * anonymous page (its stable_page_flags tests mapping & PAGE_MAPPING_KSM,
 * which the anon bit alone satisfies), and every exact count there would
 * read "all merged".  So: a written private page of this process, never
 * mergeable, must not read as KSM.  Asked once per process, of the real
 * /proc only (a fake tree has no kernel to ask); where frame numbers are
 * hidden (no CAP_SYS_ADMIN) it cannot tell, and the counts fail anyway.
 */
static gboolean kpf_ksm_probe(const KsmContext *ctx)
{
    gsize page = ksm_context_page_size(ctx);
    guint8 *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    gboolean reliable = TRUE;
    guint64 entry = 0, flags = 0;

    if (p == MAP_FAILED) {
        return TRUE;
    }
    memset(p, 0x5a, page);
    int pm_fd = ksm_pagemap_open(ctx, getpid(), NULL);
    int kpf_fd = ksm_kpageflags_open(ctx);
    if (pm_fd >= 0 && kpf_fd >= 0 && ksm_pagemap_read(pm_fd, (guintptr)p / page, &entry, 1) == 1 &&
        (entry & KSM_PM_PRESENT) && (entry & KSM_PM_PFN_MASK)) {
        guint64 pfn = entry & KSM_PM_PFN_MASK;
        reliable = !ksm_kpageflags_read(kpf_fd, &pfn, 1, &flags) ||
                   !(flags & (G_GUINT64_CONSTANT(1) << KSM_KPF_KSM));
    }
    if (pm_fd >= 0) {
        close(pm_fd);
    }
    if (kpf_fd >= 0) {
        close(kpf_fd);
    }
    munmap(p, page);
    return reliable;
}

gboolean ksm_kpageflags_ksm_reliable(const KsmContext *ctx, GError **error)
{
    static gsize probed;
    static gboolean reliable;

    if (strcmp(ksm_context_procfs(ctx), "/proc") != 0) {
        return TRUE;
    }
    if (g_once_init_enter(&probed)) {
        reliable = kpf_ksm_probe(ctx);
        g_once_init_leave(&probed, 1);
    }
    if (!reliable) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_UNAVAILABLE,
                    "exact KSM page counts are unavailable on this kernel: its "
                    "/proc/kpageflags marks every anonymous page KSM (KPF_KSM), merged "
                    "or not (seen on Debian's 6.12.95); the process's ksm_merging_pages "
                    "still says how many pages it has merged");
    }
    return reliable;
}

gboolean ksm_kpageflags_read(int fd, const guint64 *pfns, gsize n, guint64 *flags)
{
    guint64 window[WINDOW_FRAMES];

    for (gsize i = 0; i < n;) {
        /* A read: frames close together, at most WINDOW_FRAMES apart. */
        gsize j = i + 1;
        while (j < n && pfns[j] - pfns[j - 1] <= COALESCE_FRAMES &&
               pfns[j] - pfns[i] < WINDOW_FRAMES) {
            j++;
        }
        gsize span = pfns[j - 1] - pfns[i] + 1;
        if (ksm_pread_full(fd, window, span * PM_ENTRY, pfns[i] * PM_ENTRY) != span * PM_ENTRY) {
            if (errno == 0) {
                errno = EIO;   /* past the last frame */
            }
            return FALSE;
        }
        for (gsize k = i; k < j; k++) {
            flags[k] = window[pfns[k] - pfns[i]];
        }
        i = j;
    }
    return TRUE;
}

gsize ksm_thp_pmd_size(const KsmContext *ctx)
{
    g_autofree char *path = g_build_filename(ksm_context_sysfs(ctx), "kernel", "mm",
                                             "transparent_hugepage", "hpage_pmd_size", NULL);
    g_autofree char *text = ksm_read_text(path, NULL, NULL);
    gint64 v;

    return text && ksm_parse_int(text, &v, NULL) && v > 0 ? (gsize)v : 0;
}

/* ---- exact KSM page count of a range --------------------------------------- */

/*
 * Add the frames pfns[0..n) (sorted, repeated once per page mapping them;
 * weights[] when not NULL: pages per entry) to the zero and KSM counts.
 * flags has room for n words.
 */
static gboolean count_frames(int kpf_fd, const guint64 *pfns, const guint64 *weights, gsize n,
                             guint64 *flags, KsmRangeCount *out)
{
    if (!ksm_kpageflags_read(kpf_fd, pfns, n, flags)) {
        return FALSE;
    }
    for (gsize k = 0; k < n; k++) {
        guint64 w = weights ? weights[k] : 1;
        if (flags[k] & (G_GUINT64_CONSTANT(1) << KSM_KPF_ZERO_PAGE)) {
            out->zero_pages += w;
        } else if (flags[k] & (G_GUINT64_CONSTANT(1) << KSM_KPF_KSM)) {
            out->ksm_pages += w;
        }
    }
    return TRUE;
}

/* The PMD-mapped parts of [start, end), from PAGEMAP_SCAN: an array of
 * (start, end) pairs, ascending; empty when the kernel cannot say. */
static GArray *huge_ranges(int pm_fd, guint64 start, guint64 end)
{
    GArray *out = g_array_new(FALSE, FALSE, sizeof(guint64));
    struct ksm_page_region vec[256];

    while (start < end) {
        struct ksm_pm_scan_arg arg = {
            .size = sizeof(arg), .start = start, .end = end,
            .vec = (guint64)(uintptr_t)vec, .vec_len = G_N_ELEMENTS(vec),
            .category_mask = KSM_PAGE_IS_HUGE | KSM_PAGE_IS_PRESENT,
            .return_mask = KSM_PAGE_IS_HUGE | KSM_PAGE_IS_PRESENT,
        };
        int n = ioctl(pm_fd, KSM_PAGEMAP_SCAN, &arg);
        if (n < 0) {
            g_array_set_size(out, 0);   /* ENOTTY/EINVAL: no PAGEMAP_SCAN here */
            return out;
        }
        for (int i = 0; i < n; i++) {
            g_array_append_val(out, vec[i].start);
            g_array_append_val(out, vec[i].end);
        }
        if (arg.walk_end <= start || (n < (int)G_N_ELEMENTS(vec) && arg.walk_end >= end)) {
            break;
        }
        start = arg.walk_end;
    }
    return out;
}

static gsize pmd_pages(const KsmContext *ctx, gsize page)
{
    gsize pmd = ksm_thp_pmd_size(ctx);
    return pmd > page ? pmd / page : 0;
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
    if (!ksm_kpageflags_ksm_reliable(ctx, error)) {
        return FALSE;
    }
    pm_fd = ksm_pagemap_open(ctx, pid, error);
    if (pm_fd < 0) {
        return FALSE;
    }
    kpf_fd = ksm_kpageflags_open(ctx);
    if (kpf_fd < 0) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_UNAVAILABLE,
                    "exact KSM page counts are unavailable: cannot open %s (%s); "
                    "they need root (CAP_SYS_ADMIN)", kpf_path, g_strerror(errno));
        close(pm_fd);
        return FALSE;
    }

    gsize pmd = pmd_pages(ctx, page);
    g_autoptr(GArray) huge = pmd ? huge_ranges(pm_fd, start, start + len)
                                 : g_array_new(FALSE, FALSE, sizeof(guint64));
    guint hi = 0;   /* next huge range (pairs in huge) */
    guint64 *entries = g_new(guint64, BATCH_PAGES);
    guint64 *pfns = g_new(guint64, BATCH_PAGES);
    guint64 *tmp = g_new(guint64, BATCH_PAGES);
    /* One entry per PMD of a huge range: its first frame, and its pages. */
    guint64 *heads = g_new(guint64, BATCH_PAGES);
    guint64 *weights = g_new(guint64, BATCH_PAGES);
    guint64 *flags = g_new(guint64, BATCH_PAGES);
    guint64 total = len / page;

    out->pages = total;
    for (guint64 done = 0; done < total;) {
        size_t n = MIN(total - done, BATCH_PAGES);
        guint64 first = start / page + done;
        if (ksm_pagemap_read(pm_fd, first, entries, n) != n) {
            ksm_set_errno_error(error, errno ? errno : EIO, "cannot read", pm_path);
            goto out;
        }
        size_t npfn = 0, nheads = 0;
        gboolean any_frame = FALSE;
        for (size_t i = 0; i < n; i++) {
            guint64 e = entries[i];
            if (!(e & KSM_PM_PRESENT)) {
                if (e & KSM_PM_SWAP) {
                    out->swapped_pages++;
                }
                continue;
            }
            out->present_pages++;
            guint64 pfn = e & KSM_PM_PFN_MASK;
            any_frame |= pfn != 0;
            guint64 addr = (first + i) * page;
            while (hi < huge->len && g_array_index(huge, guint64, hi + 1) <= addr) {
                hi += 2;
            }
            if (hi < huge->len && g_array_index(huge, guint64, hi) <= addr) {
                /* In a PMD mapping: the frame at offset k of the PMD is head + k. */
                guint64 k = (addr / page) % pmd;
                guint64 head = pfn - k;
                if (pfn >= k && head % pmd == 0) {
                    if (nheads > 0 && heads[nheads - 1] == head) {
                        weights[nheads - 1]++;
                    } else {
                        heads[nheads] = head;
                        weights[nheads++] = 1;
                    }
                    continue;
                }
            }
            pfns[npfn++] = pfn;
        }
        if (out->present_pages > 0 && !any_frame && npfn + nheads > 0) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_UNAVAILABLE,
                        "exact KSM page counts are unavailable: the kernel hides frame "
                        "numbers from this process (it needs CAP_SYS_ADMIN)");
            goto out;
        }
        ksm_sort_u64(pfns, npfn, tmp);
        /* Heads are ascending in address, not in frame: order them (few). */
        for (size_t i = 1; i < nheads; i++) {
            for (size_t j = i; j > 0 && heads[j - 1] > heads[j]; j--) {
                guint64 h = heads[j], w = weights[j];
                heads[j] = heads[j - 1];
                weights[j] = weights[j - 1];
                heads[j - 1] = h;
                weights[j - 1] = w;
            }
        }
        if (!count_frames(kpf_fd, pfns, NULL, npfn, flags, out) ||
            !count_frames(kpf_fd, heads, weights, nheads, flags, out)) {
            ksm_set_errno_error(error, errno, "cannot read", kpf_path);
            goto out;
        }
        done += n;
    }
    ok = TRUE;
out:
    g_free(entries);
    g_free(pfns);
    g_free(tmp);
    g_free(heads);
    g_free(weights);
    g_free(flags);
    close(pm_fd);
    close(kpf_fd);
    return ok;
}
