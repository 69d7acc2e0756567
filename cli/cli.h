/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli.h: what the samepage source files share.
 *
 * samepage never touches the kernel itself: every KSM file and /proc KSM
 * figure is read or written through libksm.
 */
#ifndef CLI_H
#define CLI_H

#include <glib.h>
#include <ksm/ksm.h>
#include <ksm/ksm-ksmd.h>
#include <ksm/ksm-census.h>
#include <ksm/ksm-qemu-procs.h>
#include <ksm/ksm-unmerge.h>

/*
 * Exit codes (also listed in `samepage --help`).  Scripts and the libvirt hook
 * tell "KSM is missing" (3) from "something went wrong" (1) and from "you
 * called me wrongly" (2).
 */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1,   /* includes permission errors */
    CLI_EXIT_USAGE = 2,     /* bad option, unknown knob, bad value */
    CLI_EXIT_NO_KSM = 3,    /* this kernel has no KSM */
};

/* Options valid before and after the command name. */
typedef struct {
    char *sysfs_root;    /* --sysfs-root: a fake /sys, for tests */
    char *procfs_root;   /* --procfs-root: a fake /proc, for tests */
} CliGlobal;

/* argv[0] is the command name; the command parses its own options. */
typedef int (*CliCommandFunc)(CliGlobal *global, int argc, char **argv);

typedef struct {
    const char *name;
    const char *summary;
    CliCommandFunc run;   /* NULL: reserved, not in this build yet */
} CliCommand;

int cli_cmd_status(CliGlobal *global, int argc, char **argv);
int cli_cmd_stats(CliGlobal *global, int argc, char **argv);
int cli_cmd_set(CliGlobal *global, int argc, char **argv);
int cli_cmd_watch(CliGlobal *global, int argc, char **argv);
int cli_cmd_unmerge(CliGlobal *global, int argc, char **argv);   /* cmd-unmerge.c */
int cli_cmd_estimate(CliGlobal *global, int argc, char **argv);  /* cmd-estimate.c */
int cli_cmd_tune(CliGlobal *global, int argc, char **argv);      /* cmd-tune.c */
int cli_cmd_fingerprint(CliGlobal *global, int argc, char **argv); /* cmd-fingerprint.c */
int cli_cmd_place(CliGlobal *global, int argc, char **argv);     /* cmd-place.c */
int cli_cmd_save(CliGlobal *global, int argc, char **argv);
int cli_cmd_restore(CliGlobal *global, int argc, char **argv);

/* util.c ------------------------------------------------------------------ */

/*
 * A GOptionContext for a command: "samepage CMD [OPTION…] parameters", with
 * the global options added so they may also follow the command name.
 */
GOptionContext *cli_option_context_new(CliGlobal *global, const char *command,
                                          const char *parameters, const char *summary,
                                          const GOptionEntry *entries);
/* Parse; on error print it and return FALSE (the caller exits 2). */
gboolean cli_parse_options(GOptionContext *octx, int *argc, char ***argv);
GOptionGroup *cli_global_option_group(CliGlobal *global);
/* --sysfs-root and --procfs-root, NULL-terminated (3 entries). */
void cli_global_option_entries(CliGlobal *global, GOptionEntry entries[3]);

KsmContext *cli_context_new(const CliGlobal *global);

/* Print "samepage: message" to stderr.  Returns exit_code for `return cli_fail(...)`. */
int cli_fail(int exit_code, const char *format, ...) G_GNUC_PRINTF(2, 3);
/* Print error->message as libksm wrote it; the exit code follows from its code. */
int cli_fail_error(const GError *error);
int cli_exit_code_for(const GError *error);

/* Every read command starts here: exit 3 in one line if KSM is missing. */
gboolean cli_require_ksm(const KsmContext *ctx, int *exit_code);

/* "running", "stopped", "unmerging" for a run value (0, 1, 2). */
const char *cli_run_state_name(gint64 run);
/* pages_to_scan / sleep_millisecs as pages per second; -1 when sleep is 0. */
double cli_scan_pages_per_second(const KsmSnapshot *snap);
/* "12.3 MiB" style: IEC units, as operators read free(1). */
char *cli_format_bytes(gint64 bytes);

/*
 * Text from elsewhere (a guest's -name, a QMP peer's message, a path) made
 * safe for a terminal: valid UTF-8 with no control character.  Bytes that
 * are not UTF-8 and C0/DEL controls become \xNN, C1 controls and the
 * Unicode line separators and bidi overrides \uNNNN, a backslash \\; so
 * nothing can move the cursor, forge a line or a row, or reorder text.
 */
char *cli_escape_text(const char *text);
/* For JSON strings: valid UTF-8 (invalid bytes become U+FFFD); json-glib
 * escapes the control characters itself. */
char *cli_utf8_valid(const char *text);
/*
 * Flush and check stdout at the end of a command: a full disk or a closed
 * pipe must not look like success.  Returns status, or CLI_EXIT_FAILURE
 * with a message when something written to stdout was lost (a failing
 * status is kept: the command has said why).
 */
int cli_finish_stdout(int status);

/* trusted-file.c ----------------------------------------------------------- */

/*
 * Open path (flags: O_RDONLY, O_RDWR, O_CREAT: then mode 0600) never through
 * a symbolic link, and only if it is a regular file of root or of the
 * caller, writable by no one else.  Returns the fd, or -1 and an error.
 */
int cli_open_trusted_file(const char *path, int flags, GError **error);
/* Read such a file, at most max_len bytes. */
char *cli_read_trusted_file(const char *path, gsize max_len, GError **error);
/* Write text to path, mode 0600, atomically, never through a symbolic link. */
gboolean cli_write_file_safely(const char *path, const char *text, GError **error);

/* report.c ---------------------------------------------------------------- */

typedef struct {
    pid_t pid;
    char *guest;          /* from -name, or NULL */
    char *exe;
    KsmProcStat stat;     /* valid when error is NULL */
    char *error;          /* why the figures could not be read (permission) */
    gboolean have_saved;  /* stat has ksm_merging_pages */
    guint64 saved_bytes;  /* this guest's part of saved (cli_process_saved_bytes) */
} CliProcess;

/* Everything `stats` prints, read once so all output formats agree. */
typedef struct {
    KsmSnapshot *snap;
    KsmDerived derived;
    gsize page_size;
    GPtrArray *processes;    /* CliProcess*, sorted by pid */
    pid_t ksmd_pid;          /* 0 when not found */
    gboolean have_ksmd_cpu;
    guint64 ksmd_cpu_ticks;
    long clock_ticks_per_second;
} CliReport;

/*
 * A process's part of `saved` (docs/glossary.md): its zero pages, plus its
 * ksm_merging_pages times pages_sharing / (pages_shared + pages_sharing).
 * Summed over every process using KSM it is the host's saved_bytes.
 */
guint64 cli_process_saved_bytes(const KsmSnapshot *snap, gsize page_size,
                                const KsmProcStat *stat);

CliReport *cli_report_collect(const KsmContext *ctx, gboolean with_processes,
                                    GError **error);
void cli_report_free(CliReport *report);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CliReport, cli_report_free)

/* output-*.c -------------------------------------------------------------- */

char *cli_report_to_json(const CliReport *report);
char *cli_report_to_prometheus(const CliReport *report);
char *cli_report_to_table(const CliReport *report);

/* Prometheus text format escaping (exposed for tests of the formatter). */
char *cli_prometheus_escape_label(const char *value);
char *cli_prometheus_escape_help(const char *text);

#endif
