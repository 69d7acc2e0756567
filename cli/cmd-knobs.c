/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cmd-knobs.c: `samepage save` and `samepage restore`.
 *
 * KSM is global to the host, so every script or test that changes a knob
 * saves them all first and puts them back afterwards, also when it fails.
 * The saved form is libksm's "knob=value" text, written atomically (never
 * through a symbolic link) and read back only from a file of root or of the
 * caller that no one else can write.
 */
#include <errno.h>
#include <stdio.h>

#include "cli.h"

int cli_cmd_save(CliGlobal *global, int argc, char **argv)
{
    g_autofree char *file = NULL;
    const GOptionEntry entries[] = {
        { "file", 'f', 0, G_OPTION_ARG_FILENAME, &file,
          "Write the knobs here (default: standard output)", "FILE" },
        { NULL },
    };
    g_autoptr(GOptionContext) octx =
        cli_option_context_new(global, "save", "",
                                  "Save every KSM knob this kernel has as knob=value lines,\n"
                                  "for `samepage restore` to put back.", entries);
    g_autoptr(GError) error = NULL;
    int exit_code;

    if (!cli_parse_options(octx, &argc, &argv)) {
        return CLI_EXIT_USAGE;
    }
    if (argc > 1) {
        return cli_fail(CLI_EXIT_USAGE, "save takes no arguments (see --help)");
    }
    g_autoptr(KsmContext) ctx = cli_context_new(global);
    if (!cli_require_ksm(ctx, &exit_code)) {
        return exit_code;
    }
    g_autoptr(KsmKnobState) state = ksm_knobs_save(ctx, &error);
    if (!state) {
        return cli_fail_error(error);
    }
    g_autofree char *text = ksm_knob_state_to_text(state);
    if (!file) {
        /* main checks the final flush: `save > /dev/full` must not exit 0. */
        if (fputs(text, stdout) == EOF || fflush(stdout) != 0) {
            return cli_fail(CLI_EXIT_FAILURE, "cannot write the knobs to standard output: %s; "
                            "nothing was saved", g_strerror(errno));
        }
        return CLI_EXIT_OK;
    }
    if (!cli_write_file_safely(file, text, &error)) {
        return cli_fail(CLI_EXIT_FAILURE, "%s", error->message);
    }
    return CLI_EXIT_OK;
}

int cli_cmd_restore(CliGlobal *global, int argc, char **argv)
{
    g_autofree char *file = NULL;
    gboolean check = FALSE;
    const GOptionEntry entries[] = {
        { "file", 'f', 0, G_OPTION_ARG_FILENAME, &file,
          "The file `samepage save` wrote (required)", "FILE" },
        { "check", 0, 0, G_OPTION_ARG_NONE, &check,
          "Write nothing; exit 1 naming the first knob that differs", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) octx =
        cli_option_context_new(global, "restore", "",
                                  "Put back the knobs `samepage save` saved.  Only knobs that\n"
                                  "differ are written, in the order the kernel needs\n"
                                  "(advisor_mode first, run last).", entries);
    g_autoptr(GError) error = NULL;
    g_autofree char *text = NULL;
    int exit_code;

    if (!cli_parse_options(octx, &argc, &argv)) {
        return CLI_EXIT_USAGE;
    }
    if (!file || argc > 1) {
        return cli_fail(CLI_EXIT_USAGE, "restore needs --file FILE and nothing else");
    }
    /* Root writes these values into the kernel: only from a file no one else wrote. */
    text = cli_read_trusted_file(file, 64 * 1024, &error);
    if (!text) {
        return cli_fail(CLI_EXIT_USAGE, "%s", error->message);
    }
    g_autoptr(KsmKnobState) state = ksm_knob_state_from_text(text, &error);
    if (!state) {
        return cli_fail(CLI_EXIT_USAGE, "%s: %s", file, error->message);
    }
    g_autoptr(KsmContext) ctx = cli_context_new(global);
    if (!cli_require_ksm(ctx, &exit_code)) {
        return exit_code;
    }
    if (check) {
        g_autofree char *differs = NULL;
        if (!ksm_knob_state_matches(ctx, state, &differs, &error)) {
            return error ? cli_fail_error(error)
                         : cli_fail(CLI_EXIT_FAILURE, "%s", differs);
        }
        return CLI_EXIT_OK;
    }
    if (!ksm_writable(ctx, &error)) {
        return cli_fail_error(error);
    }
    g_autoptr(KsmHostLock) lock = ksm_host_lock_acquire(NULL, 30 * 1000, &error);
    if (!lock || !ksm_knobs_restore(ctx, state, &error)) {
        return cli_fail_error(error);
    }
    return CLI_EXIT_OK;
}
