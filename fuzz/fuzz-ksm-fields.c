/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-ksm-fields.c: the values of /sys/kernel/mm/ksm (kernel/ksm-fields.c,
 * read through ksm-knobs.c's ksm_field_read and ksm-snapshot.c).
 *
 * Input: the first byte picks the file, the rest is its content.  What
 * parses must format back to the same value.
 */
#include <string.h>

#include "fuzz-common.h"

static void check_round_trip(KsmField field, gint64 value)
{
    g_autofree char *text = ksm_field_format(field, value);
    gint64 again;
    gboolean ok = field == KSM_FIELD_ADVISOR_MODE
        ? ksm_parse_advisor_mode(text, &again, NULL)
        : ksm_parse_int(text, &again, NULL);
    if (!ok || again != value) {
        g_error("%s=%" G_GINT64_FORMAT " formats as '%s', which does not read back",
                ksm_field_info(field)->name, value, text);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    if (size == 0) {
        return 0;
    }
    KsmField field = data[0] % KSM_FIELD__COUNT;
    g_autofree char *text = fuzz_text(data + 1, size - 1);
    gint64 value;

    /* The parsers on the text. */
    if (ksm_parse_int(text, &value, NULL)) {
        check_round_trip(KSM_FIELD_PAGES_SHARING, value);
    }
    if (ksm_parse_advisor_mode(text, &value, NULL)) {
        g_assert(value == 0 || value == 1);
        check_round_trip(KSM_FIELD_ADVISOR_MODE, value);
    }

    /* The same text as the kernel's file. */
    g_autofree char *rel = g_build_filename("sys/kernel/mm/ksm",
                                            ksm_field_info(field)->name, NULL);
    g_free(fuzz_write(rel, data + 1, size - 1));
    g_autoptr(GError) error = NULL;
    if (!ksm_field_read(fuzz_ctx(), field, &value, &error)) {
        g_assert(error && error->domain == KSM_ERROR && error->message);
    }
    g_clear_error(&error);

    KsmSnapshot *snap = ksm_snapshot_read(fuzz_ctx(), &error);
    g_assert(snap);
    gint64 snapped;
    if (ksm_snapshot_get(snap, field, &snapped)) {
        check_round_trip(field, snapped);
    }
    ksm_snapshot_free(snap);
    return 0;
}
