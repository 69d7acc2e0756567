/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * reconcile.c: make KSM agree with the hook's state.
 *
 *   mergeable guests run   -> ksmd runs (started with the host's scan
 *                             settings when it was not running; settings an
 *                             operator changed since are left alone)
 *   none left, after a mergeable guest stopped
 *                          -> the safe unmerge (libksm): host clean, ksmd
 *                             stopped; without the headroom, ksmd stopped
 *                             (run=0) and the reason logged
 *
 * The decision is always re-made under the host lock, from the state files
 * as they are then, so a guest that starts while an unmerge is pending is
 * never unmerged from under it.  An unmerge can take minutes, so it always
 * runs in a detached child: libvirtd waits for the hook, and for the hook's
 * stdout and stderr to close, before it goes on with the guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "hook.h"

/* How long the detached child waits for the lock beyond an unmerge's own
 * deadline (another unmerge, samepage, a slow knob write). */
#define DETACHED_LOCK_MARGIN_MS (60 * 1000)

static gboolean add_knob(GPtrArray *assign, const KsmSnapshot *snap, KsmField field,
                         gint64 value)
{
    if (!ksm_snapshot_get(snap, field, NULL)) {
        return FALSE;
    }
    g_autofree char *text = ksm_field_format(field, value);
    g_ptr_array_add(assign, g_strdup_printf("%s=%s", ksm_field_info(field)->name, text));
    return TRUE;
}

gboolean hook_ensure_ksmd(HookEnv *env, guint n_guests, GError **error)
{
    g_autoptr(KsmSnapshot) snap = ksm_snapshot_read(env->ctx, error);
    gint64 run;

    if (!snap) {
        return FALSE;
    }
    HookScanMode mode = env->cfg->scan_mode;
    if (mode == HOOK_SCAN_TUNE && hook_tune_kick(env, n_guests)) {
        return TRUE;
    }
    gboolean tune_died = FALSE;
    if (mode == HOOK_SCAN_TUNE) {
        hook_tune_running(env, NULL, &tune_died);
    }
    gboolean running = ksm_snapshot_get(snap, KSM_FIELD_RUN, &run) && run == KSM_RUN_MERGE;
    /* The first mergeable guest (or KSM turned on for guests): a ksmtuned
     * would fight the hook over the same knobs. */
    if (n_guests <= 1 || !running) {
        hook_warn_ksmtuned(env->ctx);
    }
    if (running) {
        if (tune_died) {
            /* ksmd runs, at whatever rate the dead policy left: the policy
             * comes back, the guests are not left to that rate. */
            g_autoptr(GError) tune_error = NULL;
            hook_log(HOOK_LOG_WARNING, "samepage tune died while %u mergeable guest(s) run: "
                     "starting it again", n_guests);
            if (!hook_tune_start(env, &tune_error)) {
                hook_log(HOOK_LOG_ERROR, "%s", tune_error->message);
            }
            return TRUE;
        }
        hook_log(HOOK_LOG_INFO, "ksmd already running for %u mergeable guest(s): "
                 "settings left as they are", n_guests);
        return TRUE;
    }

    g_autoptr(GPtrArray) assign = g_ptr_array_new_with_free_func(g_free);
    if (mode == HOOK_SCAN_ADVISOR && !ksm_snapshot_get(snap, KSM_FIELD_ADVISOR_MODE, NULL)) {
        hook_log(HOOK_LOG_WARNING, "scan=advisor in %s but this kernel has no KSM advisor "
                 "(Linux 6.8+): using pages_to_scan/sleep_millisecs", env->cfg->path);
        mode = HOOK_SCAN_MANUAL;
    }
    if (mode == HOOK_SCAN_ADVISOR) {
        add_knob(assign, snap, KSM_FIELD_ADVISOR_MODE, KSM_ADVISOR_SCAN_TIME);
        if (env->cfg->advisor_max_cpu >= 0) {
            add_knob(assign, snap, KSM_FIELD_ADVISOR_MAX_CPU, env->cfg->advisor_max_cpu);
        }
        if (env->cfg->advisor_target_scan_time >= 0) {
            add_knob(assign, snap, KSM_FIELD_ADVISOR_TARGET_SCAN_TIME,
                     env->cfg->advisor_target_scan_time);
        }
    } else {
        /* The advisor owns pages_to_scan (EINVAL while it is on).  Under
         * scan=tune these are the rate until samepage tune takes over. */
        add_knob(assign, snap, KSM_FIELD_ADVISOR_MODE, KSM_ADVISOR_NONE);
        add_knob(assign, snap, KSM_FIELD_PAGES_TO_SCAN, env->cfg->pages_to_scan);
        add_knob(assign, snap, KSM_FIELD_SLEEP_MILLISECS, env->cfg->sleep_millisecs);
    }
    /* Left out on kernels without smart scan (add_knob checks). */
    if (env->cfg->smart_scan >= 0) {
        add_knob(assign, snap, KSM_FIELD_SMART_SCAN, env->cfg->smart_scan);
    }
    add_knob(assign, snap, KSM_FIELD_RUN, KSM_RUN_MERGE);

    if (!ksm_knobs_set(env->ctx, (const char *const *)assign->pdata, assign->len,
                       NULL, NULL, error)) {
        return FALSE;
    }
    g_ptr_array_add(assign, NULL);
    g_autofree char *list = g_strjoinv(" ", (char **)assign->pdata);
    hook_log(HOOK_LOG_INFO, "ksmd started for %u mergeable guest(s): %s", n_guests, list);
    if (mode == HOOK_SCAN_TUNE) {
        g_autoptr(GError) tune_error = NULL;
        if (!hook_tune_start(env, &tune_error)) {
            /* ksmd runs at the manual rate: the guests still merge. */
            hook_log(HOOK_LOG_WARNING, "%s: scanning at pages_to_scan=%" G_GINT64_FORMAT
                     " sleep_millisecs=%" G_GINT64_FORMAT " instead", tune_error->message,
                     env->cfg->pages_to_scan, env->cfg->sleep_millisecs);
        }
    }
    return TRUE;
}

static void unmerge(HookEnv *env)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(KsmSnapshot) snap = ksm_snapshot_read(env->ctx, &error);

    if (!snap) {
        hook_log(HOOK_LOG_ERROR, "last mergeable guest gone, but KSM cannot be read: %s",
                 error->message);
        return;
    }
    /* The policy first, so it does not write a knob under the unmerge. */
    hook_tune_stop(env);
    gint64 run = ksm_snapshot_get_or(snap, KSM_FIELD_RUN, -1);
    gint64 merged = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_SHARING, 0) +
                    ksm_snapshot_get_or(snap, KSM_FIELD_KSM_ZERO_PAGES, 0);
    if (run == KSM_RUN_UNMERGE && merged == 0) {
        hook_log(HOOK_LOG_INFO, "last mergeable guest gone: KSM is already clean "
                 "(run=2, nothing merged), no unmerge needed");
        return;
    }

    KsmUnmergeOptions opts;
    KsmUnmergeOutcome out;
    ksm_unmerge_options_init(&opts);
    opts.reserve_bytes = env->cfg->reserve_mib << 20;
    opts.deadline_ms = env->cfg->unmerge_deadline_s * 1000;
    opts.stop_if_refused = TRUE;   /* no headroom: at least stop ksmd merging more */
    opts.lock_held = TRUE;         /* we decided under it, and still hold it */
    opts.lock_path = env->lock_path;

    hook_log(HOOK_LOG_INFO, "last mergeable guest gone: safe unmerge of %" G_GINT64_FORMAT
             " merged pages (run was %" G_GINT64_FORMAT ", reserve %" G_GUINT64_FORMAT
             " MiB, deadline %" G_GINT64_FORMAT " s)", merged, run, env->cfg->reserve_mib,
             env->cfg->unmerge_deadline_s);
    if (!ksm_safe_unmerge(env->ctx, &opts, &out, &error)) {
        hook_log(HOOK_LOG_ERROR, "unmerge could not start: %s", error->message);
        return;
    }
    g_autofree char *json = ksm_unmerge_outcome_to_json(&out);
    hook_log(out.result == KSM_UNMERGE_DONE ? HOOK_LOG_INFO : HOOK_LOG_WARNING,
             "unmerge %s: %s", ksm_unmerge_result_name(out.result), out.message);
    hook_log(HOOK_LOG_INFO, "%s", json);
    hook_state_write_outcome(env->store, json);
    ksm_unmerge_outcome_clear(&out);
}

void hook_reconcile_locked(HookEnv *env, HookReconcileWhy why)
{
    if (why == HOOK_RECONCILE_DAEMON_START) {
        hook_daemon_start_repair_locked(env);   /* prunes, then UNMERGE below if due */
        return;
    }
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) guests = hook_state_list(env->store, TRUE);

    if (!ksm_available(env->ctx, &error)) {
        hook_log(HOOK_LOG_WARNING, "nothing to do: %s", error->message);
        return;
    }
    if (guests->len > 0) {
        if (why == HOOK_RECONCILE_UNMERGE) {
            hook_log(HOOK_LOG_INFO, "%u mergeable guest(s) running again: no unmerge",
                     guests->len);
        }
        if (!hook_ensure_ksmd(env, guests->len, &error)) {
            hook_log(HOOK_LOG_ERROR, "cannot start ksmd: %s", error->message);
        }
        return;
    }
    if (why == HOOK_RECONCILE_UNMERGE) {
        unmerge(env);
    } else {
        hook_log(HOOK_LOG_INFO, "no mergeable guest running: ksmd left as it is");
    }
}

/* In the detached child: stdio on /dev/null and no inherited descriptors, so
 * nothing of libvirtd's (the hook's pipes, its sockets) stays open in us. */
static void detach_stdio(void)
{
    struct rlimit rl;
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
    }
    closelog();
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = STDERR_FILENO + 1; fd < max; fd++) {
        close(fd);
    }
}

G_NORETURN static void detached_main(HookEnv *env, HookReconcileWhy why)
{
    g_autoptr(GError) error = NULL;

    detach_stdio();
    if (chdir("/") < 0) {
        /* "/" always exists; nothing useful to do otherwise */
    }
    hook_log_set_stderr(FALSE);
    hook_log_open(g_strcmp0(g_getenv("SAMEPAGE_HOOK_SYSLOG"), "0") != 0);
    /* DAEMON_START may end in an unmerge: a kill is reported as one. */
    const char *what = why == HOOK_RECONCILE_ENSURE ? "ksmd start" : "unmerge";
    hook_state_detached_begin(env->store, what);

    gint64 wait_ms = env->cfg->unmerge_deadline_s * 1000 + DETACHED_LOCK_MARGIN_MS;
    KsmHostLock *lock = ksm_host_lock_acquire(env->lock_path, wait_ms, &error);
    if (!lock) {
        hook_log(HOOK_LOG_ERROR, "detached %s gave up: %s",
                 why == HOOK_RECONCILE_DAEMON_START ? "libvirtd-start repair" : what,
                 error->message);
        hook_state_detached_end(env->store, what);
        _exit(1);
    }
    hook_reconcile_locked(env, why);
    ksm_host_lock_release(lock);
    hook_state_detached_end(env->store, what);
    _exit(0);
}

void hook_reconcile_detached(HookEnv *env, HookReconcileWhy why)
{
    fflush(NULL);   /* nothing buffered may be written twice */
    pid_t first = fork();

    if (first < 0) {
        hook_log(HOOK_LOG_ERROR, "cannot fork the detached child: %s", g_strerror(errno));
        return;
    }
    if (first == 0) {
        /* A new session, then fork again: the worker is no session leader
         * (never gets a controlling terminal) and init reaps it. */
        setsid();
        signal(SIGHUP, SIG_IGN);
        pid_t worker = fork();
        if (worker == 0) {
            detached_main(env, why);
        }
        if (worker > 0) {
            hook_log(HOOK_LOG_INFO, "%s handed to detached child %d (outcome in the log)",
                     why == HOOK_RECONCILE_UNMERGE ? "unmerge decision"
                     : why == HOOK_RECONCILE_DAEMON_START ? "libvirtd-start repair"
                     : "ksmd start",
                     (int)worker);
        }
        _exit(worker > 0 ? 0 : 1);
    }
    int status;
    while (waitpid(first, &status, 0) < 0 && errno == EINTR) {
    }
}
