/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cmd-set.c: `samepage set KNOB=VALUE...`.
 *
 * All or nothing: every pair is checked before anything is written, and a
 * bad one is a usage error (exit 2) that leaves the kernel untouched.  The
 * writes themselves go through ksm_knobs_set, which orders them the way the
 * kernel needs and puts back what it wrote if the kernel refuses one.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Default wait for the host lock: long enough for another knob change, short
 * enough not to hang behind a long unmerge without saying so. */
#define DEFAULT_LOCK_TIMEOUT_S 10

static int validation_exit_code(const GError *error)
{
    if (error->domain == KSM_ERROR) {
        switch (error->code) {
        case KSM_ERROR_UNKNOWN_KNOB:
        case KSM_ERROR_INVALID:
        case KSM_ERROR_PARSE:
        case KSM_ERROR_NOT_AVAILABLE:   /* the knob's file is not in this kernel */
            return CLI_EXIT_USAGE;
        default:
            break;
        }
    }
    return CLI_EXIT_FAILURE;
}

/* Check every pair without writing; returns the exit code (0 when all are good). */
static int validate_assignments(const KsmContext *ctx, char **assignments, int n)
{
    gboolean seen[KSM_FIELD__COUNT] = { FALSE };

    for (int i = 0; i < n; i++) {
        const char *equals = strchr(assignments[i], '=');
        if (!equals || equals == assignments[i]) {
            return cli_fail(CLI_EXIT_USAGE, "'%s' is not KNOB=VALUE", assignments[i]);
        }
        g_autofree char *name = g_strndup(assignments[i], equals - assignments[i]);
        g_autoptr(GError) error = NULL;
        KsmField field;
        gint64 value;

        if (!ksm_knob_parse(ctx, name, equals + 1, &field, &value, &error)) {
            return cli_fail(validation_exit_code(error), "%s", error->message);
        }
        /* Two values for one knob: which one the operator meant is a guess. */
        if (seen[field]) {
            return cli_fail(CLI_EXIT_USAGE, "%s is given twice", name);
        }
        seen[field] = TRUE;
    }
    return CLI_EXIT_OK;
}

int cli_cmd_set(CliGlobal *global, int argc, char **argv)
{
    double lock_timeout_s = DEFAULT_LOCK_TIMEOUT_S;
    const GOptionEntry entries[] = {
        { "lock-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &lock_timeout_s,
          "Wait at most this long for the samepage host lock (default 10; 0: do not wait)",
          "SECONDS" },
        { NULL },
    };
    g_autoptr(GOptionContext) octx =
        cli_option_context_new(global, "set", "KNOB=VALUE…",
                                  "Change KSM knobs in /sys/kernel/mm/ksm (needs root).\n"
                                  "Every pair is validated first (known knob, integer in range,\n"
                                  "advisor_mode none|scan-time); nothing is written if any is bad.\n"
                                  "Prints 'knob: old -> new' for each.  Takes the samepage host\n"
                                  "lock so it never races an unmerge or the libvirt hook.\n"
                                  "\n"
                                  "Example: samepage set run=1 pages_to_scan=1000 sleep_millisecs=50",
                                  entries);
    int exit_code;

    if (!cli_parse_options(octx, &argc, &argv)) {
        return CLI_EXIT_USAGE;
    }
    if (argc < 2) {
        return cli_fail(CLI_EXIT_USAGE, "set needs at least one KNOB=VALUE (see --help)");
    }
    if (lock_timeout_s < 0) {
        return cli_fail(CLI_EXIT_USAGE, "--lock-timeout must be 0 or more seconds");
    }
    char **assignments = argv + 1;
    int n = argc - 1;

    g_autoptr(KsmContext) ctx = cli_context_new(global);
    if (!cli_require_ksm(ctx, &exit_code)) {
        return exit_code;
    }
    exit_code = validate_assignments(ctx, assignments, n);
    if (exit_code != CLI_EXIT_OK) {
        return exit_code;
    }

    g_autoptr(GError) error = NULL;
    /* Say "run as root" before taking a lock a non-root user cannot create. */
    if (!ksm_writable(ctx, &error)) {
        return cli_fail_error(error);
    }
    g_autoptr(KsmHostLock) lock =
        ksm_host_lock_acquire(NULL, (gint64)(lock_timeout_s * 1000), &error);
    if (!lock) {
        return cli_fail_error(error);
    }

    g_autofree KsmKnobSetting *old_values = g_new0(KsmKnobSetting, n);
    g_autofree KsmKnobSetting *new_values = g_new0(KsmKnobSetting, n);
    if (!ksm_knobs_set(ctx, (const char *const *)assignments, (guint)n,
                       old_values, new_values, &error)) {
        /* Validated above, so this is the kernel refusing (EBUSY, EINVAL...). */
        return cli_fail(error->domain == KSM_ERROR && error->code == KSM_ERROR_NOT_AVAILABLE
                           ? CLI_EXIT_NO_KSM : CLI_EXIT_FAILURE, "%s", error->message);
    }
    for (int i = 0; i < n; i++) {
        g_autofree char *old_text = ksm_field_format(old_values[i].field, old_values[i].value);
        g_autofree char *new_text = ksm_field_format(new_values[i].field, new_values[i].value);
        printf("%s: %s -> %s\n", ksm_field_info(new_values[i].field)->name, old_text, new_text);
    }
    return CLI_EXIT_OK;
}
