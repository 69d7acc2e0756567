/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unmerge-guest.c: unmerge one guest through QEMU's ksm-unmerge job.
 *
 * This is the safe way to take one guest out of sharing (docs/scenarios.md,
 * R14; docs/architecture.md, "Safe unmerge"): the
 * guest's own QEMU calls MADV_UNMERGEABLE on its memory, so the copies are
 * charged to it and, should memory run out, the OOM killer's choice is that
 * QEMU, not some bystander.  QEMU checks the headroom first and refuses
 * without `force`.
 *
 * The command starts a QEMU job; this waits for it by polling query-jobs
 * (the same for a direct socket and libvirt, where events are not ours to
 * receive), then dismisses it.  ^C or the timeout cancels the job.
 *
 * QEMU may die during the job (the OOM killer, an operator's kill -9): the
 * connection closes, and the outcome says that QEMU exited, not only that a
 * read failed.  Nothing is left to undo then: the job lived in QEMU, the
 * kernel freed its memory (merged pages included), and this command keeps
 * no lock or state of its own.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <ksm/ksm-task.h>

#include "unmerge.h"

#define POLL_MS 100
#define CANCEL_GRACE_MS 10000

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = sig;
}

typedef struct {
    const char *result;   /* done, refused, failed, cancelled, timeout, unsupported */
    char *error;
    gint64 progress, total;
    gboolean dismissed;
    gboolean lost;        /* the connection failed (QEMU may have died) */
} JobEnd;

static gint64 merging_pages(const KsmContext *ctx, pid_t pid)
{
    g_auto(KsmProcStat) st;
    gint64 v = -1;

    ksm_proc_stat_init(&st);
    if (pid > 0 && ksm_proc_stat_read(ctx, pid, &st, NULL) &&
        st.present[KSM_PROC_MERGING_PAGES]) {
        v = st.value[KSM_PROC_MERGING_PAGES];
    }
    return v;
}

/* The QEMU's /proc/PID/stat at the start, to tell later whether it is gone. */
static gboolean task_at_start(const KsmContext *ctx, pid_t pid, KsmTaskStat *st)
{
    return pid > 0 && ksm_task_stat_read(ctx, pid, st, NULL);
}

/* The process read at the start has ended: no such pid, a zombie (its
 * parent has not reaped it yet: its memory is already freed), or another
 * process under the same pid. */
static gboolean qemu_exited(const KsmContext *ctx, pid_t pid, const KsmTaskStat *start)
{
    g_autoptr(GError) error = NULL;
    KsmTaskStat now;

    if (!ksm_task_stat_read(ctx, pid, &now, &error)) {
        return g_error_matches(error, KSM_ERROR, KSM_ERROR_NO_PROCESS);
    }
    return now.state == 'Z' || now.state == 'X' ||
           (start->has_start_time && now.has_start_time && now.start_time != start->start_time);
}

/*
 * Whether QEMU exited, waiting up to a second for it once the connection
 * failed: the kernel closes a killed process's sockets (exit_files) before
 * /proc shows it as a zombie (exit_notify, once a multi-threaded QEMU's
 * other threads are gone too), so the connection may die while the task
 * still looks alive.  CI saw exactly that with QEMU 7.2.
 */
static gboolean qemu_exited_soon(const KsmContext *ctx, pid_t pid, const KsmTaskStat *start)
{
    for (int i = 0; i < 100; i++) {
        if (qemu_exited(ctx, pid, start)) {
            return TRUE;
        }
        g_usleep(10 * 1000);
    }
    return qemu_exited(ctx, pid, start);
}

/*
 * The job's entry in query-jobs, or NULL when it is gone (error unset) or
 * the reply is not what QEMU sends (error set).  Only entries that are
 * objects with a string id are looked at; ours must have a string status.
 */
static JsonObject *find_job(CliQmp *qmp, const char *job_id, GError **error)
{
    g_autoptr(JsonNode) jobs = qmp->execute(qmp, "query-jobs", NULL, error);

    if (!jobs) {
        return NULL;
    }
    if (!JSON_NODE_HOLDS_ARRAY(jobs)) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_MALFORMED,
                    "query-jobs returned no list");
        return NULL;
    }
    JsonArray *list = json_node_get_array(jobs);
    for (guint i = 0; i < json_array_get_length(list); i++) {
        JsonNode *node = json_array_get_element(list, i);
        JsonObject *job = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        if (g_strcmp0(cli_qmp_get_string(job, "id"), job_id) != 0) {
            continue;
        }
        if (!cli_qmp_get_string(job, "status")) {
            g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_MALFORMED,
                        "query-jobs gave job %s no status string", job_id);
            return NULL;
        }
        return json_object_ref(job);
    }
    return NULL;
}

static void job_command(CliQmp *qmp, const char *command, const char *job_id)
{
    g_autoptr(JsonObject) args = json_object_new();
    g_autoptr(GError) error = NULL;

    json_object_set_string_member(args, "id", job_id);
    g_autoptr(JsonNode) r = qmp->execute(qmp, command, args, &error);
    if (!r) {
        fprintf(stderr, "samepage: %s %s: %s\n", command, job_id, error->message);
    }
}

static void wait_job(CliQmp *qmp, const char *job_id, guint timeout_s, JobEnd *end)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_s * G_USEC_PER_SEC;
    gint64 give_up = G_MAXINT64;
    gboolean cancelled = FALSE, timed_out = FALSE;
    gboolean tty = isatty(STDERR_FILENO);

    for (;;) {
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonObject) job = find_job(qmp, job_id, &error);

        if (error) {
            end->result = "failed";
            end->lost = g_error_matches(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED);
            end->error = g_strdup_printf("query-jobs: %s", error->message);
            return;
        }
        if (!job) {
            /* Dismissed automatically once concluded: QEMU kept no error for us. */
            end->result = cancelled ? (timed_out ? "timeout" : "cancelled") : "done";
            end->dismissed = TRUE;
            return;
        }
        const char *status = cli_qmp_get_string(job, "status");   /* checked by find_job */
        if (!cli_qmp_get_int(job, "current-progress", &end->progress) ||
            !cli_qmp_get_int(job, "total-progress", &end->total) ||
            end->progress < 0 || end->total < 0 || end->progress > end->total) {
            end->progress = end->total = 0;
        }
        if (tty && end->total > 0) {
            fprintf(stderr, "\rsamepage: unmerging %3d%%",
                    (int)(100 * end->progress / end->total));
        }
        if (strcmp(status, "concluded") == 0 || strcmp(status, "null") == 0) {
            /* A non-string error is still an error: say so rather than "done". */
            const char *err = cli_qmp_get_string(job, "error");
            if (!err && json_object_has_member(job, "error")) {
                err = "QEMU reported an error that is not a string";
            }
            if (tty && end->total > 0) {
                fputc('\n', stderr);
            }
            end->error = err ? cli_escape_text(err) : NULL;
            end->result = cancelled ? (timed_out ? "timeout" : "cancelled")
                                    : err ? "failed" : "done";
            if (strcmp(status, "concluded") == 0) {
                job_command(qmp, "job-dismiss", job_id);
                end->dismissed = TRUE;
            }
            return;
        }
        if (strcmp(status, "pending") == 0) {
            /* Created without auto-finalize: finalize so it can conclude. */
            job_command(qmp, "job-finalize", job_id);
        }
        gint64 now = g_get_monotonic_time();
        if (!cancelled && (interrupted || now >= deadline)) {
            timed_out = !interrupted;
            fprintf(stderr, "samepage: %s: cancelling job %s\n",
                    timed_out ? "timeout" : "interrupted", job_id);
            job_command(qmp, "job-cancel", job_id);
            cancelled = TRUE;
            give_up = now + CANCEL_GRACE_MS * 1000;
        } else if (cancelled && now >= give_up) {
            end->result = timed_out ? "timeout" : "cancelled";
            end->error = g_strdup("the job did not conclude after job-cancel; it may still run");
            return;
        }
        g_usleep(POLL_MS * 1000);
    }
}

static void print_outcome(const CliGuestUnmergeOptions *opts, const char *kind,
                          const char *target, pid_t pid, const char *job_id, const JobEnd *end,
                          gint64 before, gint64 after, gint64 duration_ms)
{
    if (!opts->json) {
        g_autofree char *shown = cli_escape_text(target);
        printf("unmerge of %s %s: %s%s%s", kind, shown, end->result,
               end->error ? ": " : "", end->error ? end->error : "");
        if (before >= 0 && after >= 0) {
            printf(" (merging pages %" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT ")", before, after);
        }
        printf(" in %" G_GINT64_FORMAT " ms\n", duration_ms);
        return;
    }
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "event");
    json_builder_add_string_value(b, "ksm-unmerge-guest");
    json_builder_set_member_name(b, kind);
    if (strcmp(kind, "pid") == 0) {
        json_builder_add_int_value(b, pid);
    } else {
        g_autofree char *valid = cli_utf8_valid(target);
        json_builder_add_string_value(b, valid);
        json_builder_set_member_name(b, "pid");
        json_builder_add_int_value(b, pid);
    }
    json_builder_set_member_name(b, "backend");
    if (opts->backend) {
        g_autofree char *backend = cli_utf8_valid(opts->backend);
        json_builder_add_string_value(b, backend);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "job_id");
    json_builder_add_string_value(b, job_id);
    json_builder_set_member_name(b, "result");
    json_builder_add_string_value(b, end->result);
    json_builder_set_member_name(b, "error");
    if (end->error) {
        json_builder_add_string_value(b, end->error);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "merging_pages_before");
    json_builder_add_int_value(b, before);
    json_builder_set_member_name(b, "merging_pages_after");
    json_builder_add_int_value(b, after);
    json_builder_set_member_name(b, "duration_ms");
    json_builder_add_int_value(b, duration_ms);
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    g_autofree char *text = json_generator_to_data(gen, NULL);
    printf("%s\n", text);
}

int cli_guest_unmerge(CliQmp *qmp, const KsmContext *ctx, const char *kind,
                         const char *target, pid_t pid, const CliGuestUnmergeOptions *opts)
{
    g_autofree char *job_id = g_strdup_printf("samepage-unmerge-%d-%" G_GINT64_FORMAT,
                                              (int)getpid(), g_get_real_time() / 1000);
    g_autoptr(JsonObject) args = json_object_new();
    g_autoptr(GError) error = NULL;
    JobEnd end = { 0 };
    gint64 started = g_get_monotonic_time();
    gint64 before = merging_pages(ctx, pid);
    struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
    KsmTaskStat qemu_task;
    gboolean know_task = task_at_start(ctx, pid, &qemu_task);

    /* Past the job's timeout and the grace for job-cancel, no reply is awaited. */
    qmp->deadline = started + ((gint64)opts->timeout_s * 1000 + 2 * CANCEL_GRACE_MS) * 1000;
    json_object_set_string_member(args, "job-id", job_id);
    if (opts->backend) {
        json_object_set_string_member(args, "id", opts->backend);
    }
    if (opts->force) {
        json_object_set_boolean_member(args, "force", TRUE);
    }

    /* Keep the concluded job until job-dismiss: its "error" is the result. */
    json_object_set_boolean_member(args, "auto-dismiss", FALSE);
    g_autoptr(JsonNode) r = qmp->execute(qmp, "ksm-unmerge", args, &error);
    if (!r && error && strstr(error->message, "auto-dismiss")) {
        /* A ksm-unmerge without that argument: it dismisses by itself. */
        g_clear_error(&error);
        json_object_remove_member(args, "auto-dismiss");
        r = qmp->execute(qmp, "ksm-unmerge", args, &error);
    }
    if (!r) {
        if (g_error_matches(error, CLI_QMP_ERROR, CLI_QMP_ERROR_NO_COMMAND)) {
            end.result = "unsupported";
            end.error = g_strdup_printf("this QEMU has no ksm-unmerge command (it is not "
                                        "samepage's QEMU build): %s", error->message);
        } else {
            /* QEMU's headroom refusal says how much it needs and has. */
            end.result = g_error_matches(error, CLI_QMP_ERROR, CLI_QMP_ERROR_COMMAND)
                ? "refused" : "failed";
            end.lost = g_error_matches(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED);
            end.error = g_strdup(error->message);
        }
    } else {
        /* A signal that came during an earlier job in this process (the
         * fuzzer runs thousands) is not one for this job. */
        interrupted = 0;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        wait_job(qmp, job_id, opts->timeout_s, &end);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    if (know_task && strcmp(end.result, "failed") == 0 &&
        (end.lost ? qemu_exited_soon(ctx, pid, &qemu_task)
                  : qemu_exited(ctx, pid, &qemu_task))) {
        /* Say what happened first; the transport's view of it after. */
        char *why = g_strdup_printf("QEMU (pid %d) exited during the job, killed or crashed "
                                    "(%s); its memory, merged pages included, went with it: "
                                    "nothing is left to unmerge or to undo", (int)pid,
                                    end.error ? end.error : "no reply");
        g_free(end.error);
        end.error = why;
    }
    /* Lags: the kernel lowers ksm_merging_pages when ksmd next scans this
     * process, not when the pages are broken; reported as read. */
    gint64 after = merging_pages(ctx, pid);
    gint64 duration_ms = (g_get_monotonic_time() - started) / 1000;
    print_outcome(opts, kind, target, pid, job_id, &end, before, after, duration_ms);
    if (strcmp(end.result, "done") != 0 && !opts->json) {
        fprintf(stderr, "samepage: unmerge %s%s%s\n", end.result, end.error ? ": " : "",
                end.error ? end.error : "");
    }
    int status = strcmp(end.result, "done") == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    g_free(end.error);
    return status;
}
