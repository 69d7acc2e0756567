/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-ksm-procstat.c: /proc/PID/ksm_stat and the older
 * /proc/PID/ksm_merging_pages (kernel/ksm-procstat.c).
 *
 * Input: the text of ksm_stat, parsed directly and read from a fake /proc;
 * the first byte odd also reads it as ksm_merging_pages (a kernel without
 * ksm_stat).
 */
#include <unistd.h>

#include "fuzz-common.h"

#define PID 4242

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    g_autofree char *text = fuzz_text(data, size);
    g_autoptr(GError) error = NULL;
    g_auto(KsmProcStat) st = { 0 };

    ksm_proc_stat_init(&st);
    if (!ksm_proc_stat_parse(text, &st, &error)) {
        g_assert(error && error->domain == KSM_ERROR);
    }
    g_clear_error(&error);
    ksm_proc_stat_clear(&st);

    g_autofree char *stat_rel = g_strdup_printf("proc/%d/ksm_stat", PID);
    g_autofree char *pages_rel = g_strdup_printf("proc/%d/ksm_merging_pages", PID);
    g_autofree char *stat_path = fuzz_write(stat_rel, data, size);
    g_free(fuzz_write(pages_rel, data, size));
    if (size > 0 && (data[0] & 1)) {
        unlink(stat_path);
    }
    if (!ksm_proc_stat_read(fuzz_ctx(), PID, &st, &error)) {
        g_assert(error && error->domain == KSM_ERROR);
    }
    return 0;
}
