/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cmd-status.c: `samepage status`, the few lines an operator wants first.
 */
#include <stdio.h>

#include "cli.h"

static void print_status(const CliReport *report)
{
    const KsmSnapshot *snap = report->snap;
    const KsmDerived *derived = &report->derived;
    gint64 run = ksm_snapshot_get_or(snap, KSM_FIELD_RUN, -1);
    gint64 sharing = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_SHARING, 0);
    gint64 shared = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_SHARED, 0);
    gint64 zero = ksm_snapshot_get_or(snap, KSM_FIELD_KSM_ZERO_PAGES, 0);
    gint64 value;

    const char *detail = "";
    if (run == KSM_RUN_STOP) {
        detail = " (run=0: ksmd idle, merged pages stay merged)";
    } else if (run == KSM_RUN_UNMERGE) {
        detail = " (run=2: ksmd stopped, merged pages are broken apart)";
    }
    printf("KSM:            %s%s\n", cli_run_state_name(run), detail);

    g_autofree char *saved = cli_format_bytes((gint64)derived->saved_bytes);
    printf("Saved memory:   %s (%" G_GINT64_FORMAT " pages sharing %" G_GINT64_FORMAT
           " KSM pages", saved, sharing, shared);
    if (ksm_snapshot_get(snap, KSM_FIELD_KSM_ZERO_PAGES, NULL)) {
        printf(", %" G_GINT64_FORMAT " zero pages", zero);
    }
    printf(")\n");

    g_autofree char *profit = cli_format_bytes(derived->profit_bytes);
    printf("Profit:         %s after metadata%s\n", profit,
           derived->profit_from_kernel ? "" : " (computed)");
    printf("Sharing ratio:  %.2f (mappings per KSM page; higher is better)\n",
           derived->sharing_ratio);
    printf("Waste ratio:    %.2f (unique pages scanned per page saved; lower is better)\n",
           derived->waste_ratio);

    double rate = cli_scan_pages_per_second(snap);
    gint64 pages = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_TO_SCAN, 0);
    gint64 sleep_ms = ksm_snapshot_get_or(snap, KSM_FIELD_SLEEP_MILLISECS, 0);
    if (rate >= 0) {
        g_autofree char *bytes_rate = cli_format_bytes((gint64)(rate * report->page_size));
        printf("Scan rate:      %.0f pages/s = %s/s at most (%" G_GINT64_FORMAT
               " pages every %" G_GINT64_FORMAT " ms)\n", rate, bytes_rate, pages, sleep_ms);
    } else {
        printf("Scan rate:      %" G_GINT64_FORMAT " pages per batch, no sleep between batches\n",
               pages);
    }

    if (ksm_snapshot_get(snap, KSM_FIELD_FULL_SCANS, &value)) {
        printf("Full scans:     %" G_GINT64_FORMAT "\n", value);
    }
    if (ksm_snapshot_get(snap, KSM_FIELD_ADVISOR_MODE, &value)) {
        g_autofree char *mode = ksm_field_format(KSM_FIELD_ADVISOR_MODE, value);
        printf("Advisor:        %s%s\n", mode,
               value == KSM_ADVISOR_SCAN_TIME ? " (the kernel tunes pages_to_scan)" : "");
    } else {
        printf("Advisor:        not in this kernel\n");
    }
}

int cli_cmd_status(CliGlobal *global, int argc, char **argv)
{
    g_autoptr(GOptionContext) octx =
        cli_option_context_new(global, "status", "",
                                  "A short summary of KSM on this host: state, memory saved,\n"
                                  "sharing and waste ratios, scan rate, advisor.", NULL);
    int exit_code;

    if (!cli_parse_options(octx, &argc, &argv)) {
        return CLI_EXIT_USAGE;
    }
    if (argc > 1) {
        return cli_fail(CLI_EXIT_USAGE, "status takes no arguments, got '%s'", argv[1]);
    }

    g_autoptr(KsmContext) ctx = cli_context_new(global);
    if (!cli_require_ksm(ctx, &exit_code)) {
        return exit_code;
    }
    g_autoptr(GError) error = NULL;
    g_autoptr(CliReport) report = cli_report_collect(ctx, FALSE, &error);
    if (!report) {
        return cli_fail_error(error);
    }
    print_status(report);
    return CLI_EXIT_OK;
}
