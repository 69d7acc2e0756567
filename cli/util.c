/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * util.c: option handling, error reporting and formatting shared by the
 * samepage commands.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

void cli_global_option_entries(CliGlobal *global, GOptionEntry entries[3])
{
    const GOptionEntry init[] = {
        { "sysfs-root", 0, 0, G_OPTION_ARG_FILENAME, &global->sysfs_root,
          "Use DIR instead of /sys (for testing against a fake tree)", "DIR" },
        { "procfs-root", 0, 0, G_OPTION_ARG_FILENAME, &global->procfs_root,
          "Use DIR instead of /proc (for testing against a fake tree)", "DIR" },
        { NULL },
    };
    memcpy(entries, init, sizeof(init));
}

GOptionGroup *cli_global_option_group(CliGlobal *global)
{
    GOptionEntry entries[3];

    cli_global_option_entries(global, entries);
    GOptionGroup *group = g_option_group_new("global", "Options for every command:",
                                             "Show options for every command", NULL, NULL);
    /* The group copies the entries; only arg_data must outlive the parsing. */
    g_option_group_add_entries(group, entries);
    return group;
}

GOptionContext *cli_option_context_new(CliGlobal *global, const char *command,
                                          const char *parameters, const char *summary,
                                          const GOptionEntry *entries)
{
    GOptionEntry global_entries[3];

    /* The usage line reads "samepage CMD [OPTION…] parameters". */
    g_autofree char *prgname = g_strdup_printf("samepage %s", command);
    g_set_prgname(prgname);

    GOptionContext *octx = g_option_context_new(parameters);
    g_option_context_set_summary(octx, summary);
    g_option_context_set_description(octx,
                                     "Exit status: 0 ok, 1 failure (including permission), "
                                     "2 usage error, 3 KSM not available.\n");
    /*
     * The command's options, then the global ones in the same (main) group so
     * that `samepage CMD --help` shows them too and they may follow the command.
     */
    if (entries) {
        g_option_context_add_main_entries(octx, entries, NULL);
    }
    cli_global_option_entries(global, global_entries);
    g_option_context_add_main_entries(octx, global_entries, NULL);
    return octx;
}

gboolean cli_parse_options(GOptionContext *octx, int *argc, char ***argv)
{
    g_autoptr(GError) error = NULL;

    if (!g_option_context_parse(octx, argc, argv, &error)) {
        cli_fail(CLI_EXIT_USAGE, "%s (see --help)", error->message);
        return FALSE;
    }
    return TRUE;
}

KsmContext *cli_context_new(const CliGlobal *global)
{
    return ksm_context_new(global->sysfs_root, global->procfs_root);
}

int cli_fail(int exit_code, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    g_autofree char *message = g_strdup_vprintf(format, args);
    va_end(args);

    fprintf(stderr, "samepage: %s\n", message);
    return exit_code;
}

int cli_exit_code_for(const GError *error)
{
    if (error->domain == G_OPTION_ERROR) {
        return CLI_EXIT_USAGE;
    }
    if (error->domain == KSM_ERROR) {
        switch (error->code) {
        case KSM_ERROR_NOT_AVAILABLE:
            return CLI_EXIT_NO_KSM;
        case KSM_ERROR_UNKNOWN_KNOB:
            return CLI_EXIT_USAGE;
        default:
            break;
        }
    }
    return CLI_EXIT_FAILURE;
}

int cli_fail_error(const GError *error)
{
    /* libksm messages already say what to do: print them as they are. */
    return cli_fail(cli_exit_code_for(error), "%s", error->message);
}

gboolean cli_require_ksm(const KsmContext *ctx, int *exit_code)
{
    g_autoptr(GError) error = NULL;

    if (!ksm_available(ctx, &error)) {
        *exit_code = cli_fail(CLI_EXIT_NO_KSM, "%s", error->message);
        return FALSE;
    }
    return TRUE;
}

const char *cli_run_state_name(gint64 run)
{
    switch (run) {
    case KSM_RUN_STOP:
        return "stopped";
    case KSM_RUN_MERGE:
        return "running";
    case KSM_RUN_UNMERGE:
        return "unmerging";
    default:
        return "unknown";
    }
}

double cli_scan_pages_per_second(const KsmSnapshot *snap)
{
    gint64 pages, sleep_ms;

    if (!ksm_snapshot_get(snap, KSM_FIELD_PAGES_TO_SCAN, &pages) ||
        !ksm_snapshot_get(snap, KSM_FIELD_SLEEP_MILLISECS, &sleep_ms) || sleep_ms <= 0) {
        return -1;
    }
    /* An upper bound: ksmd scans one batch, then sleeps; the batch takes time too. */
    return (double)pages * 1000.0 / (double)sleep_ms;
}

char *cli_format_bytes(gint64 bytes)
{
    /* Not g_format_size: it puts a no-break space (U+00A0) before the unit,
     * which breaks `grep "10.0 MiB"` and shows as '?' in a C locale. */
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    /* Unsigned negation: well defined even for G_MININT64. */
    guint64 magnitude = bytes < 0 ? 0 - (guint64)bytes : (guint64)bytes;
    const char *sign = bytes < 0 ? "-" : "";

    if (magnitude < 1024) {
        return g_strdup_printf("%s%" G_GUINT64_FORMAT " B", sign, magnitude);
    }
    double value = (double)magnitude / 1024.0;
    guint unit = 0;
    while (value >= 1024.0 && unit + 1 < G_N_ELEMENTS(units)) {
        value /= 1024.0;
        unit++;
    }
    return g_strdup_printf("%s%.1f %s", sign, value, units[unit]);
}

/* Characters that reorder or break lines on a terminal without being C0/C1. */
static gboolean is_layout_control(gunichar c)
{
    return (c >= 0x80 && c < 0xa0) ||                 /* C1: 0x9b is CSI */
           c == 0x061c || c == 0x200e || c == 0x200f || /* bidi marks */
           (c >= 0x2028 && c <= 0x202e) ||             /* line/para separators, embeddings */
           (c >= 0x2066 && c <= 0x2069) ||             /* bidi isolates */
           c == 0xfeff;                                /* zero width no-break space */
}

char *cli_escape_text(const char *text)
{
    GString *out = g_string_sized_new(text ? strlen(text) : 0);

    for (const char *p = text ? text : ""; *p;) {
        gunichar c = g_utf8_get_char_validated(p, -1);
        if (c == (gunichar)-1 || c == (gunichar)-2) {
            g_string_append_printf(out, "\\x%02x", (guchar)*p);
            p++;
            continue;
        }
        const char *next = g_utf8_next_char(p);
        if (c == '\\') {
            g_string_append(out, "\\\\");
        } else if (c < 0x20 || c == 0x7f) {
            g_string_append_printf(out, "\\x%02x", (guint)c);
        } else if (is_layout_control(c)) {
            g_string_append_printf(out, "\\u%04x", (guint)c);
        } else {
            g_string_append_len(out, p, next - p);
        }
        p = next;
    }
    return g_string_free(out, FALSE);
}

char *cli_utf8_valid(const char *text)
{
    return g_utf8_make_valid(text ? text : "", -1);
}

int cli_finish_stdout(int status)
{
    /* fclose, not only fflush: an NFS or FUSE file reports errors at close. */
    int flush_failed = fflush(stdout) != 0;
    int saved = errno;
    int had_error = ferror(stdout);
    int close_failed = fclose(stdout) != 0;

    if (flush_failed || had_error || close_failed) {
        if (status != CLI_EXIT_OK) {
            return status;   /* the command has said what went wrong */
        }
        if (!flush_failed && close_failed) {
            saved = errno;
        }
        fprintf(stderr, "samepage: cannot write to standard output: %s; the output is "
                        "incomplete\n", (flush_failed || close_failed) ? g_strerror(saved)
                                                                      : "write error");
        return CLI_EXIT_FAILURE;
    }
    return status;
}
