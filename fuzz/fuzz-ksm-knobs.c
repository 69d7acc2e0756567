/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-ksm-knobs.c: KNOB=VALUE as `samepage set` takes it (ksm_knob_parse)
 * and the saved knob state file `samepage save` writes and `restore` reads
 * (ksm_knob_state_from_text), kernel/ksm-knobs.c.
 *
 * Input: the whole text is a state file; its first line is also a KNOB=VALUE.
 * A value accepted must be in the knob's range; a state read must write out
 * as text that reads back the same.
 */
#include <string.h>

#include "fuzz-common.h"

static void make_knob_files(void)
{
    static gboolean done;
    if (done) {
        return;
    }
    for (int f = 0; f < KSM_FIELD__COUNT; f++) {
        g_autofree char *rel = g_build_filename("sys/kernel/mm/ksm", ksm_field_info(f)->name,
                                                NULL);
        g_free(fuzz_write(rel, "0\n", 2));
    }
    done = TRUE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    make_knob_files();
    g_autofree char *text = fuzz_text(data, size);
    g_autoptr(GError) error = NULL;

    /* KNOB=VALUE */
    g_autofree char *line = g_strndup(text, strcspn(text, "\n"));
    char *eq = strchr(line, '=');
    if (eq) {
        KsmField field;
        gint64 value;
        *eq = '\0';
        if (ksm_knob_parse(fuzz_ctx(), line, eq + 1, &field, &value, &error)) {
            const KsmFieldInfo *info = ksm_field_info(field);
            g_assert(info->knob && value >= info->min && value <= info->max);
        } else {
            g_assert(error && error->domain == KSM_ERROR);
        }
        g_clear_error(&error);
    }

    /* The saved state */
    g_autoptr(KsmKnobState) state = ksm_knob_state_from_text(text, &error);
    if (!state) {
        g_assert(error && error->domain == KSM_ERROR);
        return 0;
    }
    g_autofree char *saved = ksm_knob_state_to_text(state);
    g_autoptr(KsmKnobState) again = ksm_knob_state_from_text(saved, &error);
    if (!again) {
        g_error("the state file samepage writes does not read back: %s\n%s",
                error->message, saved);
    }
    g_autofree char *saved_again = ksm_knob_state_to_text(again);
    g_assert_cmpstr(saved, ==, saved_again);
    return 0;
}
