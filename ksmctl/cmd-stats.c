/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cmd-stats.c: `ksmctl stats [--json | --prometheus]`.
 */
#include <errno.h>
#include <stdio.h>

#include "ksmctl.h"

int ksmctl_cmd_stats(KsmctlGlobal *global, int argc, char **argv)
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
        ksmctl_option_context_new(global, "stats", "",
                                  "Every file in /sys/kernel/mm/ksm (files this ksmctl does not\n"
                                  "know are shown by name with their raw value), derived figures,\n"
                                  "ksmd's CPU time, and one entry per QEMU process with its\n"
                                  "/proc/PID/ksm_stat figures.", entries);
    int exit_code;

    if (!ksmctl_parse_options(octx, &argc, &argv)) {
        return KSMCTL_EXIT_USAGE;
    }
    if (argc > 1) {
        return ksmctl_fail(KSMCTL_EXIT_USAGE, "stats takes no arguments, got '%s'", argv[1]);
    }
    if (as_json && as_prometheus) {
        return ksmctl_fail(KSMCTL_EXIT_USAGE, "--json and --prometheus exclude each other");
    }

    g_autoptr(KsmContext) ctx = ksmctl_context_new(global);
    if (!ksmctl_require_ksm(ctx, &exit_code)) {
        return exit_code;
    }
    g_autoptr(GError) error = NULL;
    g_autoptr(KsmctlReport) report = ksmctl_report_collect(ctx, TRUE, &error);
    if (!report) {
        return ksmctl_fail_error(error);
    }

    g_autofree char *text = as_json ? ksmctl_report_to_json(report)
                          : as_prometheus ? ksmctl_report_to_prometheus(report)
                          : ksmctl_report_to_table(report);
    fputs(text, stdout);
    /* A full disk or closed pipe must not look like success to a cron job. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        return ksmctl_fail(KSMCTL_EXIT_FAILURE, "cannot write the output: %s",
                           g_strerror(errno));
    }
    return KSMCTL_EXIT_OK;
}
