/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-safe-unmerge.c: KSM_RUN_UNMERGE without putting the host at risk.
 *
 * Why each step (docs/architecture.md, "Safe unmerge"; docs/scenarios.md,
 * R14 and R15):
 *  - the host lock: a second run=2 writer blocks uninterruptibly on the
 *    kernel's ksm_thread_mutex behind the first;
 *  - the preflight: unmerging may need (pages_sharing + ksm_zero_pages)
 *    pages of new memory at once, and running out means the OOM killer;
 *  - the child (libksm's ksm_run_unmerge_spawn): the kernel marks the
 *    writer as the OOM origin, the preferred victim, so the writer must be
 *    a disposable process of ours, never the caller (a daemon, libvirtd's
 *    hook, samepage's parent shell);
 *  - the deadline: the kernel's unmerge loop checks signal_pending(), so
 *    SIGUSR1 to the child ends the write with EINTR; the kernel then sets
 *    run to 0.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include <json-glib/json-glib.h>

#include <ksm/ksm.h>
#include <ksm/ksm-io.h>
#include <ksm/ksm-run-unmerge.h>
#include <ksm/ksm-unmerge.h>

#define DEFAULT_DEADLINE_MS (10 * 60 * 1000)
#define STUCK_GRACE_MS      5000

const char *ksm_unmerge_result_name(KsmUnmergeResult result)
{
    static const char *const names[] = {
        [KSM_UNMERGE_DONE] = "done",
        [KSM_UNMERGE_REFUSED] = "refused",
        [KSM_UNMERGE_INTERRUPTED] = "interrupted",
        [KSM_UNMERGE_FAILED] = "failed",
    };
    return result < G_N_ELEMENTS(names) ? names[result] : "unknown";
}

void ksm_unmerge_options_init(KsmUnmergeOptions *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->reserve_bytes = 256 * 1024 * 1024;
    opts->deadline_ms = DEFAULT_DEADLINE_MS;
    opts->lock_timeout_ms = 5000;
}

guint64 ksm_unmerge_room(const KsmHeadroom *room, guint64 reserve_bytes)
{
    return room->mem_available > reserve_bytes ? room->mem_available - reserve_bytes : 0;
}

void ksm_unmerge_outcome_clear(KsmUnmergeOutcome *out)
{
    g_free(out->message);
    memset(out, 0, sizeof(*out));
}

static void record(const KsmContext *ctx, gint64 *values)
{
    g_autoptr(KsmSnapshot) snap = ksm_snapshot_read(ctx, NULL);
    for (int i = 0; i < KSM_FIELD__COUNT; i++) {
        values[i] = snap ? ksm_snapshot_get_or(snap, i, -1) : -1;
    }
}

/* Wait for the child until deadline_at; then signal it and wait a grace period. */
static int wait_writer(pid_t child, gint64 deadline_at, gboolean *signalled, gboolean *stuck)
{
    int status = 0;
    gboolean sent = FALSE;
    gint64 give_up = G_MAXINT64;

    for (;;) {
        pid_t r = waitpid(child, &status, WNOHANG);
        if (r == child) {
            return status;
        }
        if (r < 0 && errno != EINTR) {
            *stuck = TRUE;
            return -1;
        }
        gint64 now = ksm_now_ms();
        if (!sent && now >= deadline_at) {
            kill(child, SIGUSR1);
            sent = *signalled = TRUE;
            give_up = now + STUCK_GRACE_MS;
        } else if (sent && now >= give_up) {
            /* Blocked uninterruptibly (ksm_thread_mutex): leave it, say so. */
            *stuck = TRUE;
            return -1;
        }
        g_usleep(5 * 1000);
    }
}

gboolean ksm_safe_unmerge(const KsmContext *ctx, const KsmUnmergeOptions *opts,
                          KsmUnmergeOutcome *out, GError **error)
{
    gsize page = ksm_context_page_size(ctx);
    gint64 started = ksm_now_ms();

    memset(out, 0, sizeof(*out));
    if (!ksm_writable(ctx, error)) {
        return FALSE;
    }
    g_autoptr(KsmHostLock) lock = NULL;
    if (!opts->lock_held) {
        lock = ksm_host_lock_acquire(opts->lock_path, opts->lock_timeout_ms, error);
        if (!lock) {
            return FALSE;
        }
    }

    /* Preflight. */
    record(ctx, out->before);
    gint64 sharing = MAX(out->before[KSM_FIELD_PAGES_SHARING], 0);
    gint64 zero = MAX(out->before[KSM_FIELD_KSM_ZERO_PAGES], 0);
    if (out->before[KSM_FIELD_PAGES_SHARING] < 0 && !opts->force) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                    "cannot tell how much memory unmerging needs: pages_sharing is "
                    "missing or unreadable in %s; nothing was done (force skips this check)",
                    ksm_context_ksm_dir(ctx));
        return FALSE;
    }
    KsmHeadroom room;
    if (!ksm_headroom_read(ctx, 0, &room, error)) {
        return FALSE;
    }
    out->reserve_bytes = opts->reserve_bytes;
    out->needed_bytes = (guint64)(sharing + zero) * page;
    out->available_bytes = ksm_unmerge_room(&room, opts->reserve_bytes);

    if (!opts->force && out->needed_bytes > out->available_bytes) {
        out->result = KSM_UNMERGE_REFUSED;
        if (opts->stop_if_refused) {
            out->stopped_ksmd = ksm_knob_write(ctx, KSM_FIELD_RUN, KSM_RUN_STOP, NULL);
        }
        out->message = g_strdup_printf(
            "unmerge refused: it may need %" G_GUINT64_FORMAT " MiB but only %"
            G_GUINT64_FORMAT " MiB is available (MemAvailable %" G_GUINT64_FORMAT
            " MiB minus reserve %" G_GUINT64_FORMAT " MiB)%s",
            out->needed_bytes >> 20, out->available_bytes >> 20,
            room.mem_available >> 20, opts->reserve_bytes >> 20,
            out->stopped_ksmd ? "; ksmd stopped (run=0), merged pages kept" : "");
        record(ctx, out->after);
        out->duration_ms = ksm_now_ms() - started;
        return TRUE;
    }

    /* The write, in a disposable child with a deadline. */
    gint64 deadline = opts->deadline_ms > 0 ? opts->deadline_ms : DEFAULT_DEADLINE_MS;
    pid_t child = ksm_run_unmerge_spawn(ctx, error);
    if (child < 0) {
        return FALSE;
    }
    out->writer_pid = child;

    gboolean signalled = FALSE, stuck = FALSE;
    int status = wait_writer(child, started + deadline, &signalled, &stuck);
    out->duration_ms = ksm_now_ms() - started;
    record(ctx, out->after);

    if (stuck) {
        out->result = KSM_UNMERGE_FAILED;
        out->message = g_strdup_printf(
            "unmerge writer %d did not return %d ms after the deadline signal "
            "(blocked in the kernel); it was left to finish", (int)child, STUCK_GRACE_MS);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        out->result = KSM_UNMERGE_DONE;
        out->message = g_strdup_printf(
            "unmerged %" G_GINT64_FORMAT " sharing and %" G_GINT64_FORMAT
            " zero pages in %" G_GINT64_FORMAT " ms; ksmd stopped (run=2)",
            sharing, zero, out->duration_ms);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == EINTR) {
        out->result = KSM_UNMERGE_INTERRUPTED;
        out->stopped_ksmd = TRUE;
        out->message = g_strdup_printf(
            "unmerge interrupted %s after %" G_GINT64_FORMAT " ms: pages_sharing went "
            "%" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT "; the kernel set run=0",
            signalled ? "at its deadline" : "by a signal", out->duration_ms,
            out->before[KSM_FIELD_PAGES_SHARING], out->after[KSM_FIELD_PAGES_SHARING]);
    } else if (WIFEXITED(status)) {
        out->result = KSM_UNMERGE_FAILED;
        out->stopped_ksmd = TRUE;
        out->message = g_strdup_printf("the kernel refused run=2: %s; it set run=0",
                                       g_strerror(WEXITSTATUS(status)));
    } else {
        out->result = KSM_UNMERGE_FAILED;
        out->message = g_strdup_printf(
            "unmerge writer %d was killed by signal %d%s; pages_sharing went %"
            G_GINT64_FORMAT " -> %" G_GINT64_FORMAT, (int)child,
            WIFSIGNALED(status) ? WTERMSIG(status) : -1,
            WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? " (the OOM killer?)" : "",
            out->before[KSM_FIELD_PAGES_SHARING], out->after[KSM_FIELD_PAGES_SHARING]);
    }
    return TRUE;
}

static void add_counters(JsonBuilder *b, const char *member, const gint64 *values)
{
    json_builder_set_member_name(b, member);
    json_builder_begin_object(b);
    for (int i = 0; i < KSM_FIELD__COUNT; i++) {
        if (values[i] >= 0 || i == KSM_FIELD_GENERAL_PROFIT) {
            json_builder_set_member_name(b, ksm_field_info(i)->name);
            json_builder_add_int_value(b, values[i]);
        }
    }
    json_builder_end_object(b);
}

char *ksm_unmerge_outcome_to_json(const KsmUnmergeOutcome *out)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "event");
    json_builder_add_string_value(b, "ksm-unmerge");
    json_builder_set_member_name(b, "result");
    json_builder_add_string_value(b, ksm_unmerge_result_name(out->result));
    json_builder_set_member_name(b, "needed_bytes");
    json_builder_add_int_value(b, out->needed_bytes);
    json_builder_set_member_name(b, "available_bytes");
    json_builder_add_int_value(b, out->available_bytes);
    json_builder_set_member_name(b, "reserve_bytes");
    json_builder_add_int_value(b, out->reserve_bytes);
    json_builder_set_member_name(b, "duration_ms");
    json_builder_add_int_value(b, out->duration_ms);
    json_builder_set_member_name(b, "stopped_ksmd");
    json_builder_add_boolean_value(b, out->stopped_ksmd);
    json_builder_set_member_name(b, "writer_pid");
    json_builder_add_int_value(b, out->writer_pid);
    add_counters(b, "before", out->before);
    add_counters(b, "after", out->after);
    json_builder_set_member_name(b, "message");
    json_builder_add_string_value(b, out->message ? out->message : "");
    json_builder_end_object(b);

    g_autoptr(JsonNode) root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    return json_generator_to_data(gen, NULL);
}
