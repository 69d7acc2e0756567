/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-saved.c: pages KSM saves inside a set of ranges, from pagemap and
 * kpageflags (see ksm/ksm-saved.h), read through libksm's one reader
 * (ksm/ksm-pagemap.h).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "ksm-census-private.h"
#include <ksm/ksm-saved.h>

#define BATCH_PAGES   65536   /* 512 KiB of pagemap per read */

/* Add the shared frames of [start, end) to pfns. */
static gboolean scan_range(int pm_fd, const char *pm_path, gsize page, guint64 start,
                           guint64 end, guint64 *buf, GArray *pfns, KsmSaved *out,
                           GError **error)
{
    guint64 total = (end - start) / page;

    for (guint64 done = 0; done < total;) {
        gsize n = (gsize)MIN(total - done, BATCH_PAGES);
        if (ksm_pagemap_read(pm_fd, start / page + done, buf, n) != n) {
            if (errno == 0 || errno == ESRCH) {
                return TRUE;   /* the process has gone: the caller sees it */
            }
            return ksm_set_errno_error(error, errno, "cannot read", pm_path);
        }
        out->pages += n;
        for (gsize i = 0; i < n; i++) {
            guint64 e = buf[i];
            if (!(e & KSM_PM_PRESENT)) {
                continue;
            }
            out->present_pages++;
            if (e & KSM_PM_EXCLUSIVE) {
                continue;
            }
            guint64 pfn = e & KSM_PM_PFN_MASK;
            if (pfn == 0) {
                g_set_error(error, KSM_ERROR, KSM_ERROR_UNAVAILABLE,
                            "the kernel hides frame numbers from this process: counting what "
                            "KSM saved needs root (CAP_SYS_ADMIN)");
                return FALSE;
            }
            out->shared_pages++;
            g_array_append_val(pfns, pfn);
        }
        done += n;
    }
    return TRUE;
}

gboolean ksm_saved_count(const KsmContext *ctx, const KsmCensusTarget *targets, guint n_targets,
                         KsmSaved *out, GError **error)
{
    gsize page = ksm_context_page_size(ctx);
    g_autoptr(GArray) pfns = g_array_new(FALSE, FALSE, sizeof(guint64));
    g_autofree guint64 *buf = g_new(guint64, BATCH_PAGES);

    memset(out, 0, sizeof(*out));
    for (guint t = 0; t < n_targets; t++) {
        const KsmCensusTarget *tg = &targets[t];
        if (tg->end < tg->start || tg->start % page || tg->end % page) {
            g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                        "range 0x%" G_GINT64_MODIFIER "x-0x%" G_GINT64_MODIFIER
                        "x of process %d is not page aligned", tg->start, tg->end, (int)tg->pid);
            return FALSE;
        }
        g_autoptr(GArray) areas = NULL;
        if (tg->start == 0 && tg->end == 0) {
            g_autoptr(GError) local = NULL;
            g_autofree char *maps = ksm_read_proc(ctx, tg->pid, "maps", NULL, &local);
            if (!maps) {
                if (g_error_matches(local, KSM_ERROR, KSM_ERROR_NO_PROCESS)) {
                    out->gone++;
                    continue;
                }
                g_propagate_error(error, g_steal_pointer(&local));
                return FALSE;
            }
            areas = ksm_census_parse_areas(maps, FALSE, 0, 0, error);
            if (!areas) {
                return FALSE;
            }
        } else {
            areas = g_array_new(FALSE, TRUE, sizeof(KsmCensusArea));
            KsmCensusArea a = { .start = tg->start, .end = tg->end };
            g_array_append_val(areas, a);
        }

        g_autofree char *pm_path = ksm_proc_path(ctx, tg->pid, "pagemap");
        g_autoptr(GError) open_error = NULL;
        int pm_fd = ksm_pagemap_open(ctx, tg->pid, &open_error);
        if (pm_fd < 0) {
            if (g_error_matches(open_error, KSM_ERROR, KSM_ERROR_NO_PROCESS)) {
                out->gone++;
                continue;
            }
            g_propagate_error(error, g_steal_pointer(&open_error));
            return FALSE;
        }
        gboolean ok = TRUE;
        for (guint i = 0; ok && i < areas->len; i++) {
            const KsmCensusArea *a = &g_array_index(areas, KsmCensusArea, i);
            ok = scan_range(pm_fd, pm_path, page, a->start, a->end, buf, pfns, out, error);
        }
        close(pm_fd);
        if (!ok) {
            return FALSE;
        }
        g_autofree char *dir = ksm_proc_path(ctx, tg->pid, "");
        if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
            out->gone++;
        }
    }
    if (pfns->len == 0) {
        return TRUE;
    }
    if (!ksm_kpageflags_ksm_reliable(ctx, error)) {
        return FALSE;
    }
    if (!census_frames_account(ctx, pfns, &out->ksm_saved_pages, &out->ksm_mapped_pages,
                               &out->other_saved_pages)) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_UNAVAILABLE,
                    "cannot read %s/kpageflags (%s): counting what KSM saved needs root",
                    ksm_context_procfs(ctx), g_strerror(errno));
        return FALSE;
    }
    return TRUE;
}
