/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-ksm-smaps.c: /proc/PID/smaps for an address range (kernel/ksm-smaps.c).
 *
 * Input: 8 bytes of start and 8 of length (little endian), then the text of
 * smaps, parsed directly and read from a fake /proc.
 */
#include <string.h>

#include "fuzz-common.h"

#define PID 4242

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    guint64 start, len;

    fuzz_init();
    if (size < 16) {
        return -1;
    }
    memcpy(&start, data, 8);
    memcpy(&len, data + 8, 8);
    start = GUINT64_FROM_LE(start);
    len = GUINT64_FROM_LE(len);
    data += 16;
    size -= 16;

    g_autofree char *text = fuzz_text(data, size);
    g_autoptr(GError) error = NULL;
    KsmRangeSmaps out;
    if (ksm_range_smaps_parse(text, start, len, &out, &error)) {
        g_assert(out.mergeable_bytes <= out.mapped_bytes);
        g_assert(out.ksm_bytes >= -1);
    } else {
        g_assert(error && error->domain == KSM_ERROR);
    }
    g_clear_error(&error);

    g_autofree char *rel = g_strdup_printf("proc/%d/smaps", PID);
    g_free(fuzz_write(rel, data, size));
    if (!ksm_range_smaps(fuzz_ctx(), PID, start, len, &out, &error)) {
        g_assert(error && error->domain == KSM_ERROR);
    }
    return 0;
}
