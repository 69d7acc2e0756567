/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * main.c: samepage's global options and command dispatch.
 *
 * Exit codes:
 *   0  success
 *   1  failure, including permission errors (knob writes need root)
 *   2  usage error: bad option, unknown knob, value not an integer or out of range
 *   3  KSM is not available on this kernel
 */
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const CliCommand commands[] = {
    { "status", "a short summary: state, memory saved, ratios, scan rate", cli_cmd_status },
    { "stats", "every KSM knob and counter, derived figures, QEMU processes "
               "(--json, --prometheus)", cli_cmd_stats },
    { "set", "change knobs: samepage set KNOB=VALUE... (root)", cli_cmd_set },
    { "watch", "live view with merge rate, scan rate and ksmd CPU", cli_cmd_watch },
    { "save", "save every knob (for restore)", cli_cmd_save },
    { "restore", "put saved knobs back (root)", cli_cmd_restore },
    /* Reserved: implemented in their own cmd-*.c files by their owners. */
    { "unmerge", "unmerge safely: --all (the host, root), --domain NAME or --pid PID "
                 "(one guest via QMP)", cli_cmd_unmerge },
    { "estimate", "how much memory could merge: a page census of processes "
                  "(--pid, --all-qemu, --domain; root)", cli_cmd_estimate },
    { "fingerprint", "fleet fingerprint of guests: keyed page-content sketches, one JSON "
                     "per host (--domain, --pid, --host; root; needs the fleet key)",
      cli_cmd_fingerprint },
    { "place", "rank hosts by pages a guest would share (--hosts DIR GUEST.json), or "
               "the pairwise matrix (--pairs FILE...)", cli_cmd_place },
    { "tune", "samepage's scan policy: converge fast, then scan slowly (root; "
              "foreground)", cli_cmd_tune },
};

static const CliCommand *find_command(const char *name)
{
    for (guint i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

static char *global_description(void)
{
    GString *text = g_string_new("Commands:\n");

    for (guint i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (commands[i].run) {
            g_string_append_printf(text, "  %-11s %s\n", commands[i].name, commands[i].summary);
        }
    }
    g_string_append(text,
                    "\n'samepage COMMAND --help' describes each command.\n"
                    "\nExit status:\n"
                    "  0  success\n"
                    "  1  failure (including permission: knob writes need root)\n"
                    "  2  usage error (bad option, unknown knob, value not an integer or out of range)\n"
                    "  3  KSM is not available on this kernel\n");
    return g_string_free(text, FALSE);
}

int main(int argc, char **argv)
{
    CliGlobal global = { 0 };
    int status;

    setlocale(LC_ALL, "");
    g_set_prgname("samepage");

    {
        g_autoptr(GOptionContext) octx = g_option_context_new("COMMAND [ARGS…]");
        g_autofree char *description = global_description();

        g_option_context_set_summary(octx, "Inspect and control Linux KSM (kernel samepage merging).");
        g_option_context_set_description(octx, description);
        g_option_context_set_main_group(octx, cli_global_option_group(&global));
        /* Stop at the command name: what follows are the command's own options. */
        g_option_context_set_strict_posix(octx, TRUE);
        if (!cli_parse_options(octx, &argc, &argv)) {
            status = CLI_EXIT_USAGE;
            goto out;
        }
        if (argc < 2) {
            g_autofree char *help = g_option_context_get_help(octx, TRUE, NULL);
            fputs(help, stderr);
            status = CLI_EXIT_USAGE;
            goto out;
        }
    }

    const CliCommand *command = find_command(argv[1]);
    if (!command) {
        status = cli_fail(CLI_EXIT_USAGE,
                             "unknown command '%s' (see 'samepage --help')", argv[1]);
    } else if (!command->run) {
        status = cli_fail(CLI_EXIT_FAILURE,
                             "'%s' is not available in this build of samepage", command->name);
    } else {
        status = command->run(&global, argc - 1, argv + 1);
    }
    /* Every command: what it wrote to stdout must have got there. */
    status = cli_finish_stdout(status);

out:
    g_free(global.sysfs_root);
    g_free(global.procfs_root);
    return status;
}
