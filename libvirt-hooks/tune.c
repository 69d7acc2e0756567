/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tune.c: scan=tune, samepage's scan policy for the guests' lifetime.
 *
 * The policy is libksm's (ksm/ksm-tune.h) and runs in `samepage tune`, a
 * process that lives as long as mergeable guests do: a hook invocation
 * returns within seconds, a policy that adapts to what ksmd achieves cannot.
 * The hook starts it detached (new session, stdio away from libvirtd's
 * pipes) when it starts ksmd for the first mergeable guest, wakes it with
 * SIGUSR1 when another one starts (converge again: there is new memory to
 * merge), and stops it with SIGTERM before the unmerge when the last one is
 * gone.  Its pid and start time are kept in the state directory (tune.pid),
 * so a reused pid is never signalled.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hook.h"
#include <ksm/ksm-task.h>
#include "tune-systemd.h"

#define TUNE_FILE "tune.pid"
#define STOP_WAIT_MS 3000

static char *tune_path(HookEnv *env)
{
    return g_build_filename(env->store->dir, TUNE_FILE, NULL);
}

/* The process's state letter and start time from the real /proc (the tune
 * process is ours even when tests point the context at a fake tree);
 * FALSE when it is gone. */
static gboolean proc_stat(pid_t pid, char *state, guint64 *start)
{
    g_autoptr(KsmContext) real = ksm_context_new(NULL, NULL);
    KsmTaskStat ts;

    if (!ksm_task_stat_read(real, pid, &ts, NULL) || !ts.has_start_time) {
        return FALSE;
    }
    *state = ts.state;
    *start = ts.start_time;
    return TRUE;
}

/* Alive: there, the same process (start time), and not a zombie waiting
 * for init to reap it. */
static gboolean alive(pid_t pid, guint64 start)
{
    char state;
    guint64 now;

    return proc_stat(pid, &state, &now) && now == start && state != 'Z' && state != 'X';
}

gboolean hook_tune_running(HookEnv *env, pid_t *pid_out, gboolean *died)
{
    g_autofree char *path = tune_path(env);
    g_autofree char *text = NULL;
    unsigned long long pid = 0, start = 0;

    if (died) {
        *died = FALSE;
    }
    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return FALSE;
    }
    if (sscanf(text, "%llu %llu", &pid, &start) != 2 || pid == 0 || pid > G_MAXINT32 ||
        !alive((pid_t)pid, start)) {
        /* Recorded, not running: it died (SIGKILL, a crash) or the file is
         * garbage.  The file stays until a start replaces it or a stop
         * removes it, so whoever holds the lock next knows to restart it. */
        if (died) {
            *died = TRUE;
        }
        return FALSE;
    }
    if (pid_out) {
        *pid_out = (pid_t)pid;
    }
    return TRUE;
}

gboolean hook_tune_kick(HookEnv *env, guint n_guests)
{
    if (hook_tune_use_systemd(env)) {   /* samepage-tune.service: tune-systemd.c */
        return hook_tune_systemd_kick(env, n_guests);
    }
    pid_t pid;

    if (!hook_tune_running(env, &pid, NULL)) {
        return FALSE;
    }
    if (kill(pid, SIGUSR1) < 0) {
        hook_log(HOOK_LOG_WARNING, "samepage tune (pid %d) runs but cannot be signalled: %s",
                 (int)pid, g_strerror(errno));
        return TRUE;
    }
    hook_log(HOOK_LOG_INFO, "samepage tune (pid %d) told to converge again: %u mergeable "
             "guest(s)", (int)pid, n_guests);
    return TRUE;
}

/* In the grandchild: stdio on the log file (or /dev/null), nothing else of
 * ours or libvirtd's open, then exec. */
G_NORETURN static void exec_tune(HookEnv *env)
{
    const char *samepage = env->cfg->cli_path, *log_file = env->cfg->log_file;
    const char *sysfs = ksm_context_sysfs(env->ctx), *procfs = ksm_context_procfs(env->ctx);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    /* Checked like every file root appends to: no symlink, no FIFO, root's. */
    int out = log_file ? hook_open_append(log_file, NULL) : -1;

    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(out >= 0 ? out : null, STDOUT_FILENO);
        dup2(out >= 0 ? out : null, STDERR_FILENO);
    }
    for (int fd = STDERR_FILENO + 1; fd < 1024; fd++) {
        close(fd);
    }
    /* SIGUSR1 blocked until samepage tune has its handler (it unblocks it):
     * a guest starting right after this one must not end it. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    /* The roots the hook was given (tests' fake trees) go to samepage too. */
    if (strcmp(sysfs, "/sys") != 0 || strcmp(procfs, "/proc") != 0) {
        execl(samepage, "samepage", "tune", "--sysfs-root", sysfs, "--procfs-root", procfs,
              (char *)NULL);
    } else {
        execl(samepage, "samepage", "tune", (char *)NULL);
    }
    _exit(127);
}

gboolean hook_tune_start(HookEnv *env, GError **error)
{
    if (hook_tune_use_systemd(env)) {
        return hook_tune_systemd_start(env, error);
    }
    const char *samepage = env->cfg->cli_path;
    int pipefd[2];

    g_autoptr(GError) untrusted = NULL;
    /* Root runs it: it and every directory above it must be root's alone. */
    if (!hook_path_trusted(samepage, HOOK_TRUST_EXEC, &untrusted)) {
        g_set_error(error, HOOK_ERROR, 0, "scan=tune in %s, but samepage=%s is not an "
                    "executable root may run (%s): set samepage= to where samepage is "
                    "installed, or scan=manual", env->cfg->path, samepage, untrusted->message);
        return FALSE;
    }
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        g_set_error(error, HOOK_ERROR, 0, "pipe: %s", g_strerror(errno));
        return FALSE;
    }
    fflush(NULL);
    pid_t first = fork();
    if (first < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        g_set_error(error, HOOK_ERROR, 0, "fork: %s", g_strerror(errno));
        return FALSE;
    }
    if (first == 0) {
        /* A new session, then fork again: init reaps it, and libvirtd's
         * process group signals never reach it. */
        setsid();
        signal(SIGHUP, SIG_IGN);
        pid_t worker = fork();
        if (worker == 0) {
            signal(SIGHUP, SIG_DFL);
            exec_tune(env);
        }
        int w = (int)worker;
        _exit(write(pipefd[1], &w, sizeof(w)) == sizeof(w) && worker > 0 ? 0 : 1);
    }
    close(pipefd[1]);
    int worker = -1, status;
    ssize_t got;
    do {
        got = read(pipefd[0], &worker, sizeof(worker));
    } while (got < 0 && errno == EINTR);
    close(pipefd[0]);
    while (waitpid(first, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != sizeof(worker) || worker <= 0) {
        g_set_error(error, HOOK_ERROR, 0, "could not start %s tune", samepage);
        return FALSE;
    }

    /* Keep its pid with its start time (the process exists: it is ours and
     * only init may reap it). */
    guint64 start = 0;
    char state;
    if (!proc_stat(worker, &state, &start)) {
        g_set_error(error, HOOK_ERROR, 0, "%s tune (pid %d) exited at once", samepage, worker);
        return FALSE;
    }
    g_autofree char *path = tune_path(env);
    g_autofree char *text = g_strdup_printf("%d %" G_GUINT64_FORMAT "\n", worker, start);
    if (!g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, error)) {
        kill(worker, SIGTERM);
        return FALSE;
    }
    hook_log(HOOK_LOG_INFO, "samepage tune started (pid %d): samepage's scan policy%s%s",
             worker, env->cfg->log_file ? ", its decisions in " : "",
             env->cfg->log_file ? env->cfg->log_file : "");
    return TRUE;
}

void hook_tune_stop(HookEnv *env)
{
    if (hook_tune_use_systemd(env)) {
        hook_tune_systemd_stop(env);
        return;
    }
    g_autofree char *path = tune_path(env);
    pid_t pid;
    guint64 start;
    char state;

    if (!hook_tune_running(env, &pid, NULL) || !proc_stat(pid, &state, &start)) {
        unlink(path);   /* a dead one's record */
        return;
    }
    if (kill(pid, SIGTERM) < 0) {
        hook_log(HOOK_LOG_WARNING, "cannot stop samepage tune (pid %d): %s", (int)pid,
                 g_strerror(errno));
        return;
    }
    /* Wait a little, so the knobs it leaves are final before an unmerge. */
    for (int waited = 0; waited < STOP_WAIT_MS && alive(pid, start); waited += 20) {
        g_usleep(20 * 1000);
    }
    unlink(path);
    hook_log(HOOK_LOG_INFO, "samepage tune (pid %d) stopped: no mergeable guest left", (int)pid);
}
