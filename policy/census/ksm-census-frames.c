/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-census-frames.c: what the frame numbers of the pages read tell.
 *
 * pagemap gives each present page's frame (to CAP_SYS_ADMIN; others read
 * 0).  Two uses:
 *   - a zero page already mapped to the kernel's shared zero page uses no
 *     memory.  Its frame is learnt from this process: a read fault on fresh
 *     anonymous memory maps the zero page (and, in a THP-enabled area, the
 *     huge zero page), so pagemap of our own probe page names it.
 *   - pages of equal content mapping the same frame already share it.
 *     Whether that sharing is KSM's is the frame's KPF_KSM bit in
 *     /proc/kpageflags (Documentation/admin-guide/mm/pagemap.rst).  Only
 *     frames mapped more than once are looked up, sorted, through libksm's
 *     one pagemap/kpageflags reader (ksm/ksm-pagemap.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ksm-census-private.h"

/* Frame of our own page at addr, after a read fault; 0 if hidden. */
static guint64 own_frame(int pm_fd, const volatile char *addr, gsize page)
{
    guint64 entry = 0;

    (void)*addr;   /* the read fault that maps the (huge) zero page */
    if (ksm_pagemap_read(pm_fd, (guint64)(uintptr_t)addr / page, &entry, 1) != 1 ||
        !(entry & KSM_PM_PRESENT)) {
        return 0;
    }
    return entry & KSM_PM_PFN_MASK;
}

void census_frames_probe(const KsmContext *ctx, CensusFrames *frames)
{
    gsize page = ksm_context_page_size(ctx);
    g_autofree char *pm_path = g_build_filename(ksm_context_procfs(ctx), "self", "pagemap", NULL);
    int pm_fd = open(pm_path, O_RDONLY | O_CLOEXEC);

    memset(frames, 0, sizeof(*frames));
    if (pm_fd < 0) {
        return;
    }
    char *one = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (one != MAP_FAILED) {
        frames->zero_pfn = own_frame(pm_fd, one, page);
        munmap(one, page);
    }
    frames->visible = frames->zero_pfn != 0;

    gsize huge = ksm_thp_pmd_size(ctx);
    if (frames->visible && huge > page) {
        /* An aligned huge page inside twice its size, asked for THP. */
        char *area = mmap(NULL, 2 * huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (area != MAP_FAILED) {
            char *aligned = (char *)(((uintptr_t)area + huge - 1) & ~(uintptr_t)(huge - 1));
            madvise(aligned, huge, MADV_HUGEPAGE);
            guint64 pfn = own_frame(pm_fd, aligned, page);
            /* A read fault maps only the zero page or the huge zero page. */
            if (pfn && pfn != frames->zero_pfn) {
                frames->huge_zero_pfn = pfn & ~(guint64)(huge / page - 1);
                frames->huge_zero_frames = huge / page;
            }
            munmap(area, 2 * huge);
        }
    }
    close(pm_fd);
}

gboolean census_frames_is_zero(const CensusFrames *frames, guint64 pfn)
{
    return pfn != 0 && (pfn == frames->zero_pfn ||
                        (pfn >= frames->huge_zero_pfn &&
                         pfn - frames->huge_zero_pfn < frames->huge_zero_frames));
}

/* Sort frames with libksm's radix sort (ksm-sort.c). */
static void sort_frames(guint64 *v, gsize n)
{
    g_autofree guint64 *tmp = g_new(guint64, MAX(n, 1));
    ksm_sort_u64(v, n, tmp);
}

gboolean census_frames_account(const KsmContext *ctx, GArray *dup_pfns, guint64 *ksm_saved,
                               guint64 *ksm_mapped, guint64 *other_saved)
{
    /* Where KPF_KSM marks every anonymous page, no frame can be told KSM's:
     * the census falls back to the processes' own counters. */
    if (!ksm_kpageflags_ksm_reliable(ctx, NULL)) {
        errno = ENOTSUP;
        return FALSE;
    }
    int fd = ksm_kpageflags_open(ctx);

    if (fd < 0) {
        return FALSE;
    }
    guint64 *pfns = (guint64 *)dup_pfns->data;
    gsize n = dup_pfns->len;
    sort_frames(pfns, n);

    /* Frames mapped by more than one page read, with how many. */
    g_autoptr(GArray) shared = g_array_new(FALSE, FALSE, sizeof(guint64));
    g_autoptr(GArray) mappings = g_array_new(FALSE, FALSE, sizeof(guint64));
    for (gsize i = 0; i < n;) {
        gsize j = i + 1;
        while (j < n && pfns[j] == pfns[i]) {
            j++;
        }
        if (j - i > 1 && pfns[i] != 0) {
            guint64 count = j - i;
            g_array_append_val(shared, pfns[i]);
            g_array_append_val(mappings, count);
        }
        i = j;
    }

    g_autofree guint64 *flags = g_new(guint64, MAX(shared->len, 1));
    gboolean ok = ksm_kpageflags_read(fd, (guint64 *)shared->data, shared->len, flags);
    close(fd);
    if (!ok) {
        return FALSE;
    }
    *ksm_saved = *ksm_mapped = *other_saved = 0;
    for (guint i = 0; i < shared->len; i++) {
        guint64 count = g_array_index(mappings, guint64, i);
        if (flags[i] & (G_GUINT64_CONSTANT(1) << KSM_KPF_KSM)) {
            *ksm_saved += count - 1;
            *ksm_mapped += count;
        } else {
            *other_saved += count - 1;
        }
    }
    return TRUE;
}
