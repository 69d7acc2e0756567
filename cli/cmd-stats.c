/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cmd-stats.c: `samepage stats [--json | --prometheus]`.
 */
#include <errno.h>
#include <stdio.h>

#include "cli.h"

int cli_cmd_stats(CliGlobal *global, int argc, char **argv)
{
    gboolean as_json = FALSE;
    gboolean as_prometheus = FALSE;
    const GOptionEntry entries[] = {
        { "json", 'j', 0, G_OPTION_ARG_NONE, &as_json,
          "Print one JSON object (stable key order)", NULL },
        { "prometheus", 'p', 0, G_OPTION_ARG_NONE, &as_prometheus,
          "Print Prometheus text exposition format (for node_exporter's textfile collector)",
          NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) octx =
        cli_option_context_new(global, "stats", "",
                                  "Every file in /sys/kernel/mm/ksm (files this samepage does not\n"
                                  "know are shown by name with their raw value), derived figures,\n"
                                  "ksmd's CPU time, and one entry per QEMU process with its\n"
                                  "/proc/PID/ksm_stat figures.", entries);
    int exit_code;

    if (!cli_parse_options(octx, &argc, &argv)) {
        return CLI_EXIT_USAGE;
    }
    if (argc > 1) {
        return cli_fail(CLI_EXIT_USAGE, "stats takes no arguments, got '%s'", argv[1]);
    }
    if (as_json && as_prometheus) {
        return cli_fail(CLI_EXIT_USAGE, "--json and --prometheus exclude each other");
    }

    g_autoptr(KsmContext) ctx = cli_context_new(global);
    if (!cli_require_ksm(ctx, &exit_code)) {
        return exit_code;
    }
    g_autoptr(GError) error = NULL;
    g_autoptr(CliReport) report = cli_report_collect(ctx, TRUE, &error);
    if (!report) {
        return cli_fail_error(error);
    }

    g_autofree char *text = as_json ? cli_report_to_json(report)
                          : as_prometheus ? cli_report_to_prometheus(report)
                          : cli_report_to_table(report);
    fputs(text, stdout);
    /* A full disk or closed pipe must not look like success to a cron job. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        return cli_fail(CLI_EXIT_FAILURE, "cannot write to standard output: %s",
                           g_strerror(errno));
    }
    return CLI_EXIT_OK;
}
