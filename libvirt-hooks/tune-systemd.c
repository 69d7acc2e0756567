/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tune-systemd.c: scan=tune as samepage-tune.service where systemd runs.
 *
 * Under systemd a process the hook detaches still lands in libvirtd's
 * cgroup, outlives nothing systemd does not know of, and its output is lost.
 * So when systemd is PID 1 (/run/systemd/system exists, see sd_booted(3))
 * and the unit is installed, the hook asks systemd: `systemctl start` with
 * the first mergeable guest, `reload` (SIGUSR1: converge again) for the
 * next, `stop` after the last.  The unit restarts a failed policy, and its
 * ExecStopPost puts back the knobs its ExecStartPre saved when someone else
 * stops it.  When the hook stops it, the hook itself sets KSM right after
 * (unmerge or run=0) while it holds the samepage host lock, which that
 * restore would wait for: the hook removes the saved knobs first, so the
 * stop leaves them to the hook.  Everywhere else tune.c detaches the
 * process as before.
 */
#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tune-systemd.h"

static const char *const unit_dirs[] = {
    "/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system",
    "/lib/systemd/system", NULL,
};

gboolean hook_tune_use_systemd(HookEnv *env)
{
    if (strcmp(ksm_context_sysfs(env->ctx), "/sys") != 0 ||
        strcmp(ksm_context_procfs(env->ctx), "/proc") != 0 ||
        g_strcmp0(env->cfg->cli_path, HOOK_CLI_PATH) != 0 ||
        !g_file_test("/run/systemd/system", G_FILE_TEST_IS_DIR)) {
        return FALSE;
    }
    for (const char *const *d = unit_dirs; *d; d++) {
        g_autofree char *unit = g_build_filename(*d, HOOK_TUNE_UNIT, NULL);
        if (g_file_test(unit, G_FILE_TEST_EXISTS)) {
            return TRUE;
        }
    }
    return FALSE;
}

/* systemctl VERB --quiet samepage-tune.service: its exit status, or -1 (and
 * *why) when it could not run or said why it failed. */
static int systemctl(const char *verb, char **why)
{
    const char *argv[] = { "systemctl", verb, "--quiet", HOOK_TUNE_UNIT, NULL };
    g_autofree char *err = NULL;
    g_autoptr(GError) error = NULL;
    int status;

    if (!g_spawn_sync(NULL, (char **)argv, NULL,
                      G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                      NULL, &err, &status, &error)) {
        if (why) {
            *why = g_strdup(error->message);
        }
        return -1;
    }
    if (why) {
        *why = g_strstrip(g_steal_pointer(&err));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

gboolean hook_tune_systemd_start(HookEnv *env, GError **error)
{
    g_autofree char *why = NULL;

    if (systemctl("start", &why) != 0) {
        g_set_error(error, HOOK_ERROR, 0, "systemctl start %s failed: %s", HOOK_TUNE_UNIT,
                    why && *why ? why : "(no message; see journalctl -u " HOOK_TUNE_UNIT ")");
        return FALSE;
    }
    hook_log(HOOK_LOG_INFO, "%s started: samepage's scan policy (journalctl -u %s)",
             HOOK_TUNE_UNIT, HOOK_TUNE_UNIT);
    return TRUE;
}

gboolean hook_tune_systemd_kick(HookEnv *env, guint n_guests)
{
    g_autofree char *why = NULL;

    if (systemctl("is-active", NULL) != 0) {
        return FALSE;
    }
    if (systemctl("reload", &why) != 0) {
        hook_log(HOOK_LOG_WARNING, "%s runs but systemctl reload failed: %s", HOOK_TUNE_UNIT,
                 why && *why ? why : "(no message)");
        return TRUE;
    }
    hook_log(HOOK_LOG_INFO, "%s told to converge again: %u mergeable guest(s)", HOOK_TUNE_UNIT,
             n_guests);
    return TRUE;
}

void hook_tune_systemd_stop(HookEnv *env)
{
    g_autofree char *why = NULL;

    if (systemctl("is-active", NULL) != 0) {
        return;
    }
    if (unlink(HOOK_TUNE_UNIT_KNOBS) < 0 && errno != ENOENT) {
        hook_log(HOOK_LOG_WARNING, "cannot remove %s: %s", HOOK_TUNE_UNIT_KNOBS,
                 g_strerror(errno));
    }
    if (systemctl("stop", &why) != 0) {
        hook_log(HOOK_LOG_WARNING, "systemctl stop %s failed: %s", HOOK_TUNE_UNIT,
                 why && *why ? why : "(no message)");
        return;
    }
    hook_log(HOOK_LOG_INFO, "%s stopped: no mergeable guest left", HOOK_TUNE_UNIT);
}
