/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cmd-unmerge.c: `samepage unmerge`.
 *
 *   --all          the safe host-wide KSM_RUN_UNMERGE (libksm's
 *                  ksm_safe_unmerge: host lock, headroom preflight, a
 *                  disposable writer child with a deadline); for stopping KSM
 *                  and returning a host to a clean state
 *   --domain NAME  one libvirt guest, through its QEMU's ksm-unmerge job
 *   --pid PID      one plain QEMU, through its own QMP socket
 *
 * Per guest is the safe path (the guest's QEMU unmerges its own memory); the
 * host-wide write is the dangerous one made careful.  Either way the outcome
 * is one line on stdout (JSON with --json) and in syslog, and the exit
 * status says whether it was done: 0 done; 1 refused, interrupted or failed
 * (the message says which); 2 usage; 3 no KSM.
 */
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "unmerge.h"

#define DEFAULT_RESERVE_MIB 256
#define DEFAULT_DEADLINE_S 600
#define DEFAULT_LOCK_TIMEOUT_S 10
#define DEFAULT_JOB_TIMEOUT_S 600
#define QMP_READ_TIMEOUT_S 10

typedef struct {
    gboolean all;
    char *domain;
    gint pid;
    char *connect;
    char *backend;
    gint64 reserve_mib;
    double deadline_s;
    double lock_timeout_s;
    gint timeout_s;
    gboolean stop_if_refused;
    gboolean force;
    gboolean json;
} UnmergeArgs;

static int unmerge_all(const CliGlobal *global, const UnmergeArgs *a)
{
    g_autoptr(KsmContext) ctx = cli_context_new(global);
    g_autoptr(GError) error = NULL;
    KsmUnmergeOptions opts;
    KsmUnmergeOutcome out;
    int status;

    if (!cli_require_ksm(ctx, &status)) {
        return status;
    }
    ksm_unmerge_options_init(&opts);
    opts.reserve_bytes = (guint64)a->reserve_mib << 20;
    opts.deadline_ms = (gint64)(a->deadline_s * 1000);
    opts.stop_if_refused = a->stop_if_refused;
    opts.force = a->force;
    opts.lock_timeout_ms = (gint64)(a->lock_timeout_s * 1000);

    if (!ksm_safe_unmerge(ctx, &opts, &out, &error)) {
        syslog(LOG_ERR, "unmerge could not start: %s", error->message);
        return cli_fail_error(error);
    }
    g_autofree char *json = ksm_unmerge_outcome_to_json(&out);
    /* The record of what happened to the host, whoever reads stdout. */
    syslog(out.result == KSM_UNMERGE_DONE ? LOG_INFO : LOG_WARNING, "%s", json);
    const char *result = ksm_unmerge_result_name(out.result);
    if (a->json) {
        printf("%s\n", json);
    } else {
        /* libksm's messages may already start with "unmerge refused: ". */
        g_autofree char *lead = g_strdup_printf("unmerge %s: ", result);
        const char *msg = out.message ? out.message : "";
        printf("%s%s\n", lead, g_str_has_prefix(msg, lead) ? msg + strlen(lead) : msg);
    }
    if (out.result == KSM_UNMERGE_DONE) {
        status = CLI_EXIT_OK;
    } else {
        /* Which of refused, interrupted or failed, also for scripts reading stderr. */
        status = cli_fail(CLI_EXIT_FAILURE, "unmerge %s (see the outcome above)", result);
    }
    ksm_unmerge_outcome_clear(&out);
    return status;
}

/* The QEMU pid of a libvirt guest, for before/after figures (0 if unknown). */
static pid_t pid_of_guest(const KsmContext *ctx, const char *name)
{
    g_autoptr(GPtrArray) procs = ksm_find_qemu_processes(ctx);

    for (guint i = 0; i < procs->len; i++) {
        const KsmQemuProcess *p = procs->pdata[i];
        if (g_strcmp0(p->name, name) == 0) {
            return p->pid;
        }
    }
    return 0;
}

static int unmerge_guest(const CliGlobal *global, const UnmergeArgs *a)
{
    g_autoptr(KsmContext) ctx = cli_context_new(global);
    g_autoptr(GError) error = NULL;
    CliGuestUnmergeOptions opts = {
        .backend = a->backend, .force = a->force, .timeout_s = (guint)a->timeout_s,
        .json = a->json,
    };
    CliQmp *qmp;
    g_autofree char *target = NULL;
    const char *kind;
    pid_t pid;

    if (a->domain) {
        kind = "domain";
        target = g_strdup(a->domain);
        qmp = cli_qmp_libvirt_open(a->connect ? a->connect : "qemu:///system", a->domain,
                                      &error);
        pid = qmp ? pid_of_guest(ctx, a->domain) : 0;
    } else {
        kind = "pid";
        pid = a->pid;
        target = g_strdup_printf("%d", a->pid);
        g_autofree char *path = cli_qmp_find_socket_of_pid(ctx, a->pid, &error);
        qmp = path ? cli_qmp_unix_open(path, ctx, a->pid, QMP_READ_TIMEOUT_S, &error) : NULL;
    }
    g_autofree char *shown = cli_escape_text(target);
    if (!qmp) {
        syslog(LOG_ERR, "unmerge of %s %s could not start: %s", kind, shown, error->message);
        return cli_fail(CLI_EXIT_FAILURE, "%s", error->message);
    }
    int status = cli_guest_unmerge(qmp, ctx, kind, target, pid, &opts);
    syslog(status == CLI_EXIT_OK ? LOG_INFO : LOG_WARNING, "unmerge of %s %s: %s", kind,
           shown, status == CLI_EXIT_OK ? "done" : "not done (see samepage's output)");
    qmp->close(qmp);
    return status;
}

int cli_cmd_unmerge(CliGlobal *global, int argc, char **argv)
{
    UnmergeArgs a = {
        .reserve_mib = DEFAULT_RESERVE_MIB, .deadline_s = DEFAULT_DEADLINE_S,
        .lock_timeout_s = DEFAULT_LOCK_TIMEOUT_S, .timeout_s = DEFAULT_JOB_TIMEOUT_S,
    };
    const GOptionEntry entries[] = {
        { "all", 0, 0, G_OPTION_ARG_NONE, &a.all,
          "Unmerge every KSM page on the host (safe KSM_RUN_UNMERGE; root)", NULL },
        { "domain", 0, 0, G_OPTION_ARG_STRING, &a.domain,
          "Unmerge one libvirt guest through its QEMU's ksm-unmerge", "NAME" },
        { "pid", 0, 0, G_OPTION_ARG_INT, &a.pid,
          "Unmerge one QEMU through its QMP socket (found on its command line)", "PID" },
        { "connect", 'c', 0, G_OPTION_ARG_STRING, &a.connect,
          "libvirt URI for --domain (default qemu:///system)", "URI" },
        { "backend", 0, 0, G_OPTION_ARG_STRING, &a.backend,
          "--domain/--pid: only this memory backend (default: all of them)", "ID" },
        { "reserve", 0, 0, G_OPTION_ARG_INT64, &a.reserve_mib,
          "--all: keep this much MemAvailable after unmerging (default 256)", "MiB" },
        { "deadline", 0, 0, G_OPTION_ARG_DOUBLE, &a.deadline_s,
          "--all: interrupt the kernel's unmerge after this long (default 600)", "SECONDS" },
        { "stop-if-refused", 0, 0, G_OPTION_ARG_NONE, &a.stop_if_refused,
          "--all: when the headroom is short, stop ksmd (run=0) instead", NULL },
        { "force", 0, 0, G_OPTION_ARG_NONE, &a.force,
          "Skip the headroom check (risks the OOM killer)", NULL },
        { "lock-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &a.lock_timeout_s,
          "--all: wait at most this long for the samepage host lock (default 10)", "SECONDS" },
        { "timeout", 0, 0, G_OPTION_ARG_INT, &a.timeout_s,
          "--domain/--pid: cancel the QEMU job after this long (default 600)", "SECONDS" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &a.json,
          "Print the outcome as one JSON line", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) octx =
        cli_option_context_new(global, "unmerge", "--all|--domain NAME|--pid PID",
                                  "Unmerge KSM pages safely.\n"
                                  "\n"
                                  "--all breaks every KSM page on the host (run=2) after checking that\n"
                                  "MemAvailable minus the reserve covers the copies it needs, in a\n"
                                  "disposable child (the kernel makes the writer the preferred OOM\n"
                                  "victim) with a deadline.  --domain/--pid has the guest's own QEMU\n"
                                  "unmerge its memory (QMP ksm-unmerge, samepage's QEMU): the safe path.\n"
                                  "The outcome goes to stdout and syslog; exit 0 only when done.",
                                  entries);
    int status;

    openlog("samepage", LOG_PID, LOG_USER);
    if (!cli_parse_options(octx, &argc, &argv)) {
        status = CLI_EXIT_USAGE;
    } else if (argc > 1) {
        status = cli_fail(CLI_EXIT_USAGE, "unexpected argument '%s'", argv[1]);
    } else if ((a.all ? 1 : 0) + (a.domain ? 1 : 0) + (a.pid ? 1 : 0) != 1) {
        status = cli_fail(CLI_EXIT_USAGE,
                             "say what to unmerge: exactly one of --all, --domain NAME, --pid PID");
    } else if (a.pid < 0) {
        status = cli_fail(CLI_EXIT_USAGE, "--pid takes a process id");
    } else if (a.reserve_mib < 0 || a.deadline_s <= 0 || a.lock_timeout_s < 0 ||
               a.timeout_s <= 0) {
        status = cli_fail(CLI_EXIT_USAGE,
                             "--reserve, --lock-timeout take values >= 0; --deadline, "
                             "--timeout > 0");
    } else if (a.all && a.backend) {
        status = cli_fail(CLI_EXIT_USAGE, "--backend goes with --domain or --pid");
    } else {
        status = a.all ? unmerge_all(global, &a) : unmerge_guest(global, &a);
    }
    g_free(a.domain);
    g_free(a.connect);
    g_free(a.backend);
    closelog();
    return status;
}
