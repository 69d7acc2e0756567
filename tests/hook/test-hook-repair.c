/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-hook-repair.c: the hook on a host left in a bad state (issue 14) and
 * beside Debian's ksmtuned (issue 10): corrupt state files, a malformed or
 * unreadable ksm.conf, a host lock whose holder died, a samepage tune killed
 * with SIGKILL, a running ksmtuned.  The next hook event notices, repairs and
 * says so; it never crashes or hangs.  libvirtd killed while the last guest
 * stopped: its restart runs the daemon hook, which repairs.  Fake KSM and /proc trees, real
 * processes where the hook deals with real ones (the lock, samepage tune).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "hook-fixture.h"

#define U_WEB "11111111-1111-1111-1111-111111111111"
#define U_DB "22222222-2222-2222-2222-222222222222"

/* web 'a' (tenant-a) prepared and started, its QEMU 4242 in libvirt's pid
 * file (a name libvirt escapes in its file names). */
#define WEB_NAME "web 'a'"
static void start_web(HookFixture *fx, HookRun *run)
{
    g_autofree char *web = hook_merge_xml(WEB_NAME, U_WEB, "tenant-a");

    hook_fixture_qemu(fx, 4242, U_WEB, 1000);
    hook_fixture_libvirt_pid(fx, WEB_NAME, 4242);
    hook_fixture_libvirt_status(fx, WEB_NAME, web);
    hook_run_text(fx, WEB_NAME, "prepare", web, run);
    g_assert_cmpint(run->status, ==, 0);
    hook_run_clear(run);
    hook_run_text(fx, WEB_NAME, "started", web, run);
    g_assert_cmpint(run->status, ==, 0);
    hook_run_clear(run);
}

/* A state file cut short or overwritten with garbage, while its guest runs:
 * rebuilt from libvirt's status, so its trust group still counts. */
static void test_corrupt_state_rebuilt(HookFixture *fx, gconstpointer data)
{
    static const char *const damage[] = {
        "[domain]\nname=web-1\nuuid=" U_WEB "\n",            /* truncated: no group */
        "[domain]\nname=web-1\nuuid=" U_WEB "\ngroup=ten",     /* cut mid-value */
        "\x7f" "ELF\x01\x02\x00 garbage \xff\xfe",             /* garbage */
        "",                                                    /* empty */
        NULL,
    };
    HookRun run = { 0 };
    g_autofree char *db = hook_merge_xml("db-1", U_DB, "tenant-b");
    g_autofree char *state = hook_fixture_state_file(fx, U_WEB);

    start_web(fx, &run);
    for (guint i = 0; damage[i]; i++) {
        g_assert_true(g_file_set_contents(state, damage[i], i == 2 ? 16 : -1, NULL));
        /* tenant-b is refused: web-1 still counts... */
        hook_run_text(fx, "db-1", "prepare", db, &run);
        if (run.status != 1) {
            g_error("damage %u: db-1 accepted beside web-1:\n%s", i, run.err);
        }
        hook_run_clear(&run);
        /* ...and its state file is whole again. */
        g_autofree char *text = NULL;
        g_assert_true(g_file_get_contents(state, &text, NULL, NULL));
        hook_assert_contains(text, "group=tenant-a");
        hook_assert_contains(text, "qemu_pid=4242");
        hook_assert_contains(text, "phase=rebuilt");
    }
    g_autofree char *log = hook_fixture_read_log(fx);
    hook_assert_contains(log, "was corrupt");
    hook_assert_contains(log, "rebuilt from libvirt's status of running domain 'web \\'a\\''");
}

/* A corrupt state file whose guest is gone is removed, with a line saying so. */
static void test_corrupt_state_pruned(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *db = hook_merge_xml("db-1", U_DB, "tenant-b");
    g_autofree char *state = hook_fixture_state_file(fx, U_WEB);

    start_web(fx, &run);
    hook_fixture_qemu_exit(fx, 4242);
    g_assert_true(g_file_set_contents(state, "[domain]\nuuid=", -1, NULL));
    hook_run_text(fx, "db-1", "prepare", db, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    g_assert_false(g_file_test(state, G_FILE_TEST_EXISTS));
    g_autofree char *log = hook_fixture_read_log(fx);
    hook_assert_contains(log, "is corrupt");
    hook_assert_contains(log, "no QEMU of that domain runs");

    /* Its status XML unreadable while it runs: removed, and the log says
     * how to get it back (libvirtd's reconnect). */
    g_autofree char *state3 = hook_fixture_state_file(fx, "66666666-6666-6666-6666-666666666666");
    hook_fixture_qemu(fx, 4343, "66666666-6666-6666-6666-666666666666", 1);
    hook_fixture_libvirt_pid(fx, "web-3", 4343);
    g_assert_true(g_file_set_contents(state3, "garbage", -1, NULL));
    hook_run_text(fx, "db-1", "prepare", db, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    g_assert_false(g_file_test(state3, G_FILE_TEST_EXISTS));
    g_free(log);
    log = hook_fixture_read_log(fx);
    hook_assert_contains(log, "restart libvirtd");
}

/* ksm.conf malformed, unreadable, a directory, a FIFO: prepare refuses and
 * says what is wrong; stop goes on with the defaults; nothing hangs. */
static void test_bad_config_files(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *web = hook_merge_xml("web-1", U_WEB, "tenant-a");

    static const struct {
        const char *text;
        const char *says;
    } files[] = {
        { "[ksm\npolicy=strict\n", "ksm.conf" },
        { "\x01\x02\xff\xfe\n\n=", "ksm.conf" },
        { "[ksm]\npolicy=strict\nscan=manual\nreserve_mib=\n", "reserve_mib" },
    };
    for (guint i = 0; i < G_N_ELEMENTS(files); i++) {
        g_assert_true(g_file_set_contents(fx->config, files[i].text, -1, NULL));
        hook_run_text(fx, "web-1", "prepare", web, &run);
        g_assert_cmpint(run.status, ==, 1);
        hook_assert_contains(run.err, "start refused");
        hook_assert_contains(run.err, files[i].says);
        hook_run_clear(&run);
    }

    /* A directory where the file should be. */
    g_assert_cmpint(g_unlink(fx->config), ==, 0);
    g_assert_cmpint(g_mkdir(fx->config, 0755), ==, 0);
    hook_run_text(fx, "web-1", "prepare", web, &run);
    g_assert_cmpint(run.status, ==, 1);
    hook_assert_contains(run.err, "not a regular file");
    hook_run_clear(&run);
    g_assert_cmpint(g_rmdir(fx->config), ==, 0);

    /* A FIFO: reading it would block the hook, and libvirtd with it. */
    g_assert_cmpint(mkfifo(fx->config, 0644), ==, 0);
    hook_run_text(fx, "web-1", "prepare", web, &run);
    g_assert_cmpint(run.status, ==, 1);
    g_assert_cmpint(run.elapsed_ms, <, 3000);
    hook_run_clear(&run);

    /* The stop of a guest recorded earlier still cleans up, with defaults. */
    g_autofree char *state = hook_fixture_state_file(fx, U_WEB);
    g_assert_cmpint(g_mkdir_with_parents(fx->state_dir, 0700), ==, 0);
    g_autofree char *text = g_strdup_printf("[domain]\nname=web-1\nuuid=%s\ngroup=tenant-a\n"
                                            "phase=prepared\nqemu_pid=0\nqemu_start_time=0\n"
                                            "updated=%" G_GINT64_FORMAT "\n", U_WEB,
                                            g_get_real_time() / G_USEC_PER_SEC);
    g_assert_true(g_file_set_contents(state, text, -1, NULL));
    hook_run_text(fx, "web-1", "stopped", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_cmpint(run.elapsed_ms, <, 3000);
    hook_assert_contains(run.err, "using the defaults");
    hook_assert_contains(run.err, "last mergeable guest gone");
    hook_run_clear(&run);
    g_assert_false(g_file_test(state, G_FILE_TEST_EXISTS));
    g_unlink(fx->config);
}

/* The host lock's holder was killed: flock dies with it, the hook goes on. */
static void test_lock_of_dead_process(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *web = hook_merge_xml("web-1", U_WEB, "tenant-a");
    int ready[2];

    hook_fixture_config(fx, "lock_timeout_s=2\n");
    g_assert_cmpint(g_mkdir_with_parents(fx->state_dir, 0700), ==, 0);
    g_assert_cmpint(pipe(ready), ==, 0);
    pid_t holder = fork();
    g_assert_cmpint(holder, >=, 0);
    if (holder == 0) {
        int fd = open(fx->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || flock(fd, LOCK_EX) < 0) {
            _exit(1);
        }
        (void)!write(ready[1], "x", 1);
        pause();
        _exit(0);
    }
    char c;
    close(ready[1]);
    g_assert_cmpint(read(ready[0], &c, 1), ==, 1);
    close(ready[0]);
    kill(holder, SIGKILL);
    int status;
    g_assert_cmpint(waitpid(holder, &status, 0), ==, holder);

    hook_run_text(fx, "web-1", "prepare", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_cmpint(run.elapsed_ms, <, 1500);
    hook_assert_contains(run.err, "ksmd started");
    hook_run_clear(&run);
}

/* The pid the hook recorded for samepage tune if that process is one. */
static int tune_pid(HookFixture *fx)
{
    g_autofree char *path = g_build_filename(fx->state_dir, "tune.pid", NULL);
    g_autofree char *text = NULL, *cmd_path = NULL, *cmdline = NULL;
    gsize len;
    int pid;

    if (!g_file_get_contents(path, &text, NULL, NULL) || sscanf(text, "%d", &pid) != 1) {
        return 0;
    }
    cmd_path = g_strdup_printf("/proc/%d/cmdline", pid);
    if (!g_file_get_contents(cmd_path, &cmdline, &len, NULL) || len == 0 ||
        strlen(cmdline) + 1 >= len) {
        return 0;
    }
    return strcmp(cmdline + strlen(cmdline) + 1, "tune") == 0 ? pid : 0;
}

static int wait_tune_pid(HookFixture *fx, int not_this)
{
    /* Up to 20 s: a detached child that forks, takes the lock and execs
     * samepage tune took over 5 s while TCG guests loaded both CPUs. */
    for (int i = 0; i < 2000; i++) {
        int pid = tune_pid(fx);
        if (pid && pid != not_this) {
            return pid;
        }
        g_usleep(10 * 1000);
    }
    return 0;
}

/* Is pid gone (or a zombie nobody reaps)? */
static gboolean dead(int pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", pid);
    g_autofree char *text = NULL;
    const char *p;

    if (!g_file_get_contents(path, &text, NULL, NULL) || !(p = strrchr(text, ')'))) {
        return TRUE;
    }
    return p[2] == 'Z' || p[2] == 'X';
}

/*
 * SIGKILL a samepage tune.  On the fake tree a knob is a plain file written
 * in place (truncate, then write): a kill between the two leaves it empty,
 * which sysfs never does (a write there happens whole or not at all).  So a
 * knob the kill left empty gets back what it held before: "not at all".
 */
static void kill_tune(HookFixture *fx, int pid)
{
    static const char *const knobs[] = { "run", "pages_to_scan", "sleep_millisecs",
                                         "advisor_mode", "smart_scan" };
    char *before[G_N_ELEMENTS(knobs)] = { NULL };

    for (guint i = 0; i < G_N_ELEMENTS(knobs); i++) {
        before[i] = hook_fixture_ksm_get(fx, knobs[i]);
    }
    g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
    for (int i = 0; i < 300 && !dead(pid); i++) {
        g_usleep(10 * 1000);
    }
    g_assert_true(dead(pid));
    for (guint i = 0; i < G_N_ELEMENTS(knobs); i++) {
        g_autofree char *now = hook_fixture_ksm_get(fx, knobs[i]);
        if ((!now || !*now) && before[i] && *before[i]) {
            hook_fixture_ksm_set(fx, knobs[i], before[i]);
        }
        g_free(before[i]);
    }
}

/* samepage tune killed with SIGKILL: the next event starts it again. */
static void test_dead_tune_restarted(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *lines = g_strdup_printf("scan=tune\nsamepage=%s\n", g_getenv("SAMEPAGE_CLI"));
    g_autofree char *web = hook_merge_xml("web-1", U_WEB, "tenant-a");
    g_autofree char *web2 = hook_merge_xml("web-2", U_DB, "tenant-a");

    hook_fixture_config(fx, lines);
    hook_fixture_qemu(fx, 4242, U_WEB, 1000);
    hook_fixture_libvirt_pid(fx, "web-1", 4242);
    hook_run_text(fx, "web-1", "prepare", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    int first = wait_tune_pid(fx, 0);
    g_assert_cmpint(first, >, 1);

    /* Killed; then web-1's started event (no lock, detached repair). */
    kill_tune(fx, first);
    hook_run_text(fx, "web-1", "started", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "is gone (killed or crashed)");
    hook_run_clear(&run);
    int second = wait_tune_pid(fx, first);
    if (second <= 1) {
        g_autofree char *log = hook_fixture_read_log(fx);
        g_error("no samepage tune started again after 'started'; the hook's log:\n%s", log);
    }
    g_assert_cmpint(second, !=, first);

    /* Killed again; another guest's prepare (inline, under the lock). */
    kill_tune(fx, second);
    hook_run_text(fx, "web-2", "prepare", web2, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "samepage tune died while 2 mergeable guest(s) run");
    hook_assert_contains(run.err, "samepage tune started");
    hook_run_clear(&run);
    int third = wait_tune_pid(fx, second);
    g_assert_cmpint(third, >, 1);
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "1");

    /* Killed once more; a stop with a guest left repairs it too. */
    kill_tune(fx, third);
    hook_fixture_qemu(fx, 4343, U_DB, 2000);
    hook_fixture_libvirt_pid(fx, "web-2", 4343);
    hook_fixture_qemu_exit(fx, 4242);
    hook_run_text(fx, "web-1", "stopped", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "still running: no unmerge");
    hook_run_clear(&run);
    if (wait_tune_pid(fx, third) <= 1) {
        g_autofree char *log = hook_fixture_read_log(fx);
        g_error("no samepage tune started again after the stop; the hook's log:\n%s", log);
    }
}

/* ksmtuned beside the hook: one warning when KSM is turned on. */
static void test_ksmtuned_warning(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *web = hook_merge_xml("web-1", U_WEB, "tenant-a");
    g_autofree char *web2 = hook_merge_xml("web-2", U_DB, "tenant-a");
    static const char *const tuned_argv[] = { "/bin/bash", "/usr/sbin/ksmtuned", NULL };
    static const char *const other_argv[] = { "/usr/bin/vim", "/etc/ksmtuned.conf", NULL };

    /* Not a ksmtuned: a process that only mentions it. */
    hook_fixture_process(fx, 700, "vim", other_argv);
    hook_run_text(fx, "web-1", "prepare", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_null(strstr(run.err, "ksmtuned"));
    hook_run_clear(&run);
    hook_run_text(fx, "web-1", "stopped", web, &run);
    hook_run_clear(&run);
    g_free(hook_fixture_wait_outcome(fx, 10000));
    hook_fixture_ksm_set(fx, "run", "0");

    /* Debian's ksmtuned: a bash script, comm "ksmtuned". */
    hook_fixture_process(fx, 812, "ksmtuned", tuned_argv);
    hook_run_text(fx, "web-1", "prepare", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "ksmtuned (pid 812) is running");
    hook_assert_contains(run.err, "will fight");
    hook_assert_contains(run.err, "ksm.service");
    /* One warning, not one per line. */
    g_auto(GStrv) parts = g_strsplit(run.err, "ksmtuned (pid", -1);
    g_assert_cmpint(g_strv_length(parts), ==, 2);
    hook_run_clear(&run);

    /* The second guest does not repeat it (KSM was already on). */
    hook_run_text(fx, "web-2", "prepare", web2, &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_null(strstr(run.err, "ksmtuned"));
    hook_run_clear(&run);

    /* comm may be cut or differ: argv alone is enough. */
    hook_fixture_qemu_exit(fx, 812);
    hook_fixture_process(fx, 813, "bash", tuned_argv);
    hook_fixture_ksm_set(fx, "run", "0");
    g_autofree char *web3 = hook_merge_xml("web-3", "77777777-7777-7777-7777-777777777777",
                                       "tenant-a");
    hook_run_text(fx, "web-3", "prepare", web3, &run);
    hook_assert_contains(run.err, "ksmtuned (pid 813) is running");
    hook_run_clear(&run);
}


/*
 * Run the hook as libvirtd runs its daemon hooks: the binary's path in
 * hooks_dir (a symlink to the built hook, as the install makes it), the
 * four arguments, stdin empty (libvirt passes none).
 */
static void run_as(HookFixture *fx, const char *hooks_dir, const char *object, const char *op,
                   const char *subop, const char *extra, HookRun *run)
{
    g_autofree char *dir = g_build_filename(fx->root, "hooks", hooks_dir, NULL);
    g_autofree char *link = g_build_filename(dir, "samepage-ksm", NULL);
    g_autoptr(GError) error = NULL;

    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    if (!g_file_test(link, G_FILE_TEST_IS_SYMLINK)) {
        g_assert_cmpint(symlink(g_getenv("SAMEPAGE_HOOK_BIN"), link), ==, 0);
    }
    g_autoptr(GSubprocessLauncher) launcher =
        g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                  G_SUBPROCESS_FLAGS_STDERR_PIPE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_SYSFS_ROOT", fx->sysfs, TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_PROCFS_ROOT", fx->procfs, TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_HOOK_STATE_DIR", fx->state_dir, TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_HOOK_CONFIG", fx->config, TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_LOCK", fx->lock, TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_HOOK_SYSLOG", "0", TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_LIBVIRT_RUN_DIR", fx->libvirt_dir, TRUE);
    gint64 start = g_get_monotonic_time();
    g_autoptr(GSubprocess) proc = g_subprocess_launcher_spawn(launcher, &error, link, object,
                                                              op, subop, extra, NULL);
    g_assert_no_error(error);
    g_assert_true(g_subprocess_communicate_utf8(proc, NULL, NULL, &run->out, &run->err,
                                                &error));
    g_assert_no_error(error);
    run->elapsed_ms = (g_get_monotonic_time() - start) / 1000;
    run->status = g_subprocess_get_exit_status(proc);
}

/* Wait (up to 20 s) for the log to have needle; the log if it never does. */
static char *wait_log(HookFixture *fx, const char *needle)
{
    for (int i = 0; i < 2000; i++) {
        char *log = hook_fixture_read_log(fx);
        if (strstr(log, needle)) {
            return log;
        }
        g_free(log);
        g_usleep(10 * 1000);
    }
    return hook_fixture_read_log(fx);
}

/*
 * libvirtd killed while the last mergeable guest stopped (the libvirt
 * suite's test_10): the guest's QEMU is gone, its state stays, samepage
 * tune runs on, and the restarted libvirtd runs no qemu event for it.  It
 * runs `daemon.d/samepage-ksm - start - start`: the hook prunes the guest
 * and does the last guest's unmerge, stops tune, exits 0 at once.
 */
static void test_daemon_start_repairs(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *lines = g_strdup_printf("scan=tune\nsamepage=%s\n", g_getenv("SAMEPAGE_CLI"));

    hook_fixture_config(fx, lines);
    start_web(fx, &run);
    int tune = wait_tune_pid(fx, 0);
    g_assert_cmpint(tune, >, 1);
    hook_fixture_ksm_set(fx, "pages_shared", "100");
    hook_fixture_ksm_set(fx, "pages_sharing", "400");
    hook_fixture_qemu_exit(fx, 4242);   /* gone, and no stop event */

    /* libvirtd's other daemon events, and the same arguments through
     * qemu.d (a guest named "-"), do nothing. */
    static const char *const others[][4] = {
        { "daemon.d", "shutdown", "-", "shutdown" },
        { "daemon.d", "reload", "begin", "SIGHUP" },
        { "qemu.d", "start", "-", "start" },
    };
    for (guint i = 0; i < G_N_ELEMENTS(others); i++) {
        run_as(fx, others[i][0], "-", others[i][1], others[i][2], others[i][3], &run);
        g_assert_cmpint(run.status, ==, 0);
        g_assert_cmpstr(run.err, ==, "");
        hook_run_clear(&run);
    }
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 1);
    g_assert_cmpint(tune_pid(fx), ==, tune);
    g_autofree char *before = hook_fixture_read_log(fx);
    hook_assert_lacks(before, "libvirtd start");

    run_as(fx, "daemon.d", "-", "start", "-", "start", &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_cmpint(run.elapsed_ms, <, 1500);   /* libvirtd waits only for the fork */
    hook_assert_contains(run.err, "libvirtd-start repair handed to detached child");
    hook_run_clear(&run);
    g_autofree char *outcome = hook_fixture_wait_outcome(fx, 20000);
    g_autofree char *log = wait_log(fx, "libvirtd start: repairing");
    if (!outcome) {
        g_error("no unmerge after the libvirtd start; the hook's log:\n%s", log);
    }
    hook_assert_contains(outcome, "\"result\":\"done\"");
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "2");
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 0);
    for (int i = 0; i < 500 && !dead(tune); i++) {
        g_usleep(10 * 1000);
    }
    g_assert_true(dead(tune));
    hook_assert_contains(log, "state of domain 'web \\'a\\'' (" U_WEB ") is stale");
    hook_assert_contains(log, "libvirtd start: repairing: no mergeable guest runs, but the hook "
                              "still had 1 recorded");
    hook_assert_contains(log, "samepage tune running");
}

/* At libvirtd's start a guest that runs keeps KSM on; a host where the hook
 * never had a guest keeps the KSM its operator set; a broken ksm.conf or
 * state directory never fails libvirtd's start. */
static void test_daemon_start_leaves_alone(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    /* Nothing recorded, ksmd on by the operator. */
    hook_fixture_ksm_set(fx, "run", "1");
    run_as(fx, "daemon.d", "-", "start", "-", "start", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    g_autofree char *log = wait_log(fx, "nothing to repair");
    hook_assert_contains(log, "no mergeable guest recorded");
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "1");

    /* A guest that still runs. */
    start_web(fx, &run);
    run_as(fx, "daemon.d", "-", "start", "-", "start", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    g_free(log);
    log = wait_log(fx, "1 mergeable guest(s) still run");
    hook_assert_contains(log, "1 mergeable guest(s) still run (of 1 recorded)");
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 1);
    g_free(runv);
    runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "1");

    /* A malformed ksm.conf: exit 0, the defaults, said on stderr. */
    g_assert_true(g_file_set_contents(fx->config, "[ksm\n", -1, NULL));
    run_as(fx, "daemon.d", "-", "start", "-", "start", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "using the defaults");
    hook_run_clear(&run);

    /* A symlink where the state directory should be: exit 0, no repair,
     * said why. */
    g_autofree char *moved = g_strconcat(fx->state_dir, ".moved", NULL);
    g_assert_cmpint(g_rename(fx->state_dir, moved), ==, 0);
    g_assert_cmpint(symlink(moved, fx->state_dir), ==, 0);
    run_as(fx, "daemon.d", "-", "start", "-", "start", &run);
    g_assert_cmpint(g_unlink(fx->state_dir), ==, 0);
    g_assert_cmpint(g_rename(moved, fx->state_dir), ==, 0);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "libvirtd start: no repair:");
    hook_run_clear(&run);
}

/* The hook's state lost while libvirtd was down, its guest still running
 * (libvirt runs the daemon hook before it reconnects): KSM and samepage
 * tune are left for the reconnect, not unmerged from under the guest. */
static void test_daemon_start_state_lost(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *lines = g_strdup_printf("scan=tune\nsamepage=%s\n", g_getenv("SAMEPAGE_CLI"));
    g_autofree char *state = hook_fixture_state_file(fx, U_WEB);

    hook_fixture_config(fx, lines);
    start_web(fx, &run);
    int tune = wait_tune_pid(fx, 0);
    g_assert_cmpint(tune, >, 1);
    g_assert_cmpint(g_unlink(state), ==, 0);

    run_as(fx, "daemon.d", "-", "start", "-", "start", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    g_autofree char *log = wait_log(fx, "libvirtd start: no repair");
    hook_assert_contains(log, "mergeable domain 'web \\'a\\'' runs but the hook has no state");
    hook_assert_lacks(log, "repairing");
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "1");
    g_assert_cmpint(tune_pid(fx), ==, tune);
    kill_tune(fx, tune);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!g_getenv("SAMEPAGE_HOOK_BIN")) {
        g_printerr("SAMEPAGE_HOOK_BIN is not set (meson test sets it)\n");
        return 77;
    }
    umask(022);
    HOOK_TEST("/hook/repair/corrupt-state-rebuilt", test_corrupt_state_rebuilt);
    HOOK_TEST("/hook/repair/corrupt-state-pruned", test_corrupt_state_pruned);
    HOOK_TEST("/hook/repair/bad-config-files", test_bad_config_files);
    HOOK_TEST("/hook/repair/lock-of-dead-process", test_lock_of_dead_process);
    HOOK_TEST("/hook/repair/daemon-start-repairs", test_daemon_start_repairs);
    HOOK_TEST("/hook/repair/daemon-start-leaves-alone", test_daemon_start_leaves_alone);
    HOOK_TEST("/hook/repair/daemon-start-state-lost", test_daemon_start_state_lost);
    HOOK_TEST("/hook/repair/dead-tune-restarted", test_dead_tune_restarted);
    HOOK_TEST("/hook/repair/ksmtuned-warning", test_ksmtuned_warning);
    return g_test_run();
}
