/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksmctl.h: what the ksmctl source files share.
 *
 * ksmctl never touches the kernel itself: every KSM file and /proc KSM
 * figure is read or written through libksm.
 */
#ifndef KSMCTL_H
#define KSMCTL_H

#include <glib.h>
#include <ksm/ksm.h>
#include <ksm/ksm-ksmd.h>

/*
 * Exit codes (also listed in `ksmctl --help`).  Scripts and the libvirt hook
 * tell "KSM is missing" (3) from "something went wrong" (1) and from "you
 * called me wrongly" (2).
 */
enum {
    KSMCTL_EXIT_OK = 0,
    KSMCTL_EXIT_FAILURE = 1,   /* includes permission errors */
    KSMCTL_EXIT_USAGE = 2,     /* bad option, unknown knob, bad value */
    KSMCTL_EXIT_NO_KSM = 3,    /* this kernel has no KSM */
};

/* Options valid before and after the command name. */
typedef struct {
    char *sysfs_root;    /* --sysfs-root: a fake /sys, for tests */
    char *procfs_root;   /* --procfs-root: a fake /proc, for tests */
} KsmctlGlobal;

/* argv[0] is the command name; the command parses its own options. */
typedef int (*KsmctlCommandFunc)(KsmctlGlobal *global, int argc, char **argv);

typedef struct {
    const char *name;
    const char *summary;
    KsmctlCommandFunc run;   /* NULL: reserved, not in this build yet */
} KsmctlCommand;

int ksmctl_cmd_status(KsmctlGlobal *global, int argc, char **argv);
int ksmctl_cmd_stats(KsmctlGlobal *global, int argc, char **argv);
int ksmctl_cmd_set(KsmctlGlobal *global, int argc, char **argv);
int ksmctl_cmd_watch(KsmctlGlobal *global, int argc, char **argv);
int ksmctl_cmd_unmerge(KsmctlGlobal *global, int argc, char **argv);   /* cmd-unmerge.c */
int ksmctl_cmd_estimate(KsmctlGlobal *global, int argc, char **argv);  /* cmd-estimate.c */
int ksmctl_cmd_tune(KsmctlGlobal *global, int argc, char **argv);      /* cmd-tune.c */
int ksmctl_cmd_save(KsmctlGlobal *global, int argc, char **argv);
int ksmctl_cmd_restore(KsmctlGlobal *global, int argc, char **argv);

/* util.c ------------------------------------------------------------------ */

/*
 * A GOptionContext for a command: "ksmctl CMD [OPTION…] parameters", with
 * the global options added so they may also follow the command name.
 */
GOptionContext *ksmctl_option_context_new(KsmctlGlobal *global, const char *command,
                                          const char *parameters, const char *summary,
                                          const GOptionEntry *entries);
/* Parse; on error print it and return FALSE (the caller exits 2). */
gboolean ksmctl_parse_options(GOptionContext *octx, int *argc, char ***argv);
GOptionGroup *ksmctl_global_option_group(KsmctlGlobal *global);
/* --sysfs-root and --procfs-root, NULL-terminated (3 entries). */
void ksmctl_global_option_entries(KsmctlGlobal *global, GOptionEntry entries[3]);

KsmContext *ksmctl_context_new(const KsmctlGlobal *global);

/* Print "ksmctl: message" to stderr.  Returns exit_code for `return ksmctl_fail(...)`. */
int ksmctl_fail(int exit_code, const char *format, ...) G_GNUC_PRINTF(2, 3);
/* Print error->message as libksm wrote it; the exit code follows from its code. */
int ksmctl_fail_error(const GError *error);
int ksmctl_exit_code_for(const GError *error);

/* Every read command starts here: exit 3 in one line if KSM is missing. */
gboolean ksmctl_require_ksm(const KsmContext *ctx, int *exit_code);

/* "running", "stopped", "unmerging" for a run value (0, 1, 2). */
const char *ksmctl_run_state_name(gint64 run);
/* pages_to_scan / sleep_millisecs as pages per second; -1 when sleep is 0. */
double ksmctl_scan_pages_per_second(const KsmSnapshot *snap);
/* "12.3 MiB" style: IEC units, as operators read free(1). */
char *ksmctl_format_bytes(gint64 bytes);

/* report.c ---------------------------------------------------------------- */

typedef struct {
    pid_t pid;
    char *guest;          /* from -name, or NULL */
    char *exe;
    KsmProcStat stat;     /* valid when error is NULL */
    char *error;          /* why the figures could not be read (permission) */
} KsmctlProcess;

/* Everything `stats` prints, read once so all output formats agree. */
typedef struct {
    KsmSnapshot *snap;
    KsmDerived derived;
    gsize page_size;
    GPtrArray *processes;    /* KsmctlProcess*, sorted by pid */
    pid_t ksmd_pid;          /* 0 when not found */
    gboolean have_ksmd_cpu;
    guint64 ksmd_cpu_ticks;
    long clock_ticks_per_second;
} KsmctlReport;

KsmctlReport *ksmctl_report_collect(const KsmContext *ctx, gboolean with_processes,
                                    GError **error);
void ksmctl_report_free(KsmctlReport *report);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KsmctlReport, ksmctl_report_free)

/* output-*.c -------------------------------------------------------------- */

char *ksmctl_report_to_json(const KsmctlReport *report);
char *ksmctl_report_to_prometheus(const KsmctlReport *report);
char *ksmctl_report_to_table(const KsmctlReport *report);

/* Prometheus text format escaping (exposed for tests of the formatter). */
char *ksmctl_prometheus_escape_label(const char *value);
char *ksmctl_prometheus_escape_help(const char *text);

#endif
