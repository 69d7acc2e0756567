/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-faults.c: the fault campaign of issue 14 (README "Reliability").
 * The hook binary and samepage run as libvirtd and an operator run them,
 * against a fake KSM tree, while the test injects one fault each:
 *
 *   unmerge-child-killed   SIGKILL of the hook's detached unmerge child
 *   state-dir-full         the state directory on a full tmpfs (ENOSPC)
 *   state-dir-readonly     the state directory on a read-only tmpfs
 *   stop-on-readonly-state-dir  a guest stopping while it is read-only
 *   stop-on-full-state-dir a guest stopping while it is full
 *   parallel-unmerges      10 `samepage unmerge --all` with hook events among them
 *                          (two guests prepared/started/stopped, tune kicked)
 *
 * Expected each time: no crash, no lock left held, no state or temporary
 * file left behind, the knobs in a defined state, one clear log line.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "hook-fixture.h"

#define U_WEB "11111111-1111-1111-1111-111111111111"

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle)) {
        g_error("'%s' not found in:\n%s", needle, haystack);
    }
}

/* The lock is free: nobody (a killed child's orphan included) holds it. */
static void assert_lock_free(HookFixture *fx)
{
    int fd = open(fx->lock, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return;   /* never created: free */
    }
    int got = flock(fd, LOCK_EX | LOCK_NB);
    close(fd);
    g_assert_cmpint(got, ==, 0);
}

/* The lock is free within timeout_ms: a detached child writes its outcome
 * file before it lets go of the lock. */
static gboolean wait_lock_free(HookFixture *fx, gint64 timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;
    for (;;) {
        int fd = open(fx->lock, O_RDWR | O_CLOEXEC);
        gboolean got = fd < 0 || flock(fd, LOCK_EX | LOCK_NB) == 0;
        if (fd >= 0) {
            close(fd);
        }
        if (got || g_get_monotonic_time() > deadline) {
            return got;
        }
        g_usleep(20 * 1000);
    }
}

/* No detached child at work any more (each keeps a marker while it runs). */
static gboolean wait_no_detached(HookFixture *fx, gint64 timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;
    for (;;) {
        g_autoptr(GDir) dir = g_dir_open(fx->state_dir, 0, NULL);
        const char *entry;
        gboolean any = FALSE;
        while (dir && (entry = g_dir_read_name(dir))) {
            any |= g_str_has_prefix(entry, "detached-");
        }
        if (!any || g_get_monotonic_time() > deadline) {
            return !any;
        }
        g_usleep(20 * 1000);
    }
}

static int take_lock(HookFixture *fx)
{
    g_autofree char *dir = g_path_get_dirname(fx->lock);
    g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
    int fd = open(fx->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(flock(fd, LOCK_EX), ==, 0);
    return fd;
}

/* Every entry of dir other than the expected ones (temporary files). */
static guint n_other_files(const char *dir_path, const char *const *expected)
{
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, NULL);
    const char *entry;
    guint n = 0;

    while (dir && (entry = g_dir_read_name(dir))) {
        if (!g_strv_contains(expected, entry)) {
            g_printerr("# left in %s: %s\n", dir_path, entry);
            n++;
        }
    }
    return n;
}

static gboolean process_gone(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return TRUE;
    }
    const char *close_paren = strrchr(text, ')');
    return close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';   /* zombie */
}

static gboolean wait_gone(pid_t pid, gint64 timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;
    while (!process_gone(pid)) {
        if (g_get_monotonic_time() > deadline) {
            return FALSE;
        }
        g_usleep(10 * 1000);
    }
    return TRUE;
}

/* ---- 1. SIGKILL of the detached unmerge child ---- */

/* The detached child the hook's stderr names, killed once it is at work
 * (its marker written: it waits for the lock the test holds). */
static void kill_detached_child(HookFixture *fx, const char *hook_err)
{
    const char *handed = strstr(hook_err, "detached child ");
    g_assert_nonnull(handed);
    int child = atoi(handed + strlen("detached child "));
    g_assert_cmpint(child, >, 1);
    g_autofree char *file = g_strdup_printf("detached-%d.unmerge.pending", child);
    g_autofree char *marker = g_build_filename(fx->state_dir, file, NULL);
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (!g_file_test(marker, G_FILE_TEST_EXISTS) && g_get_monotonic_time() < deadline) {
        g_usleep(5 * 1000);
    }
    g_assert_true(g_file_test(marker, G_FILE_TEST_EXISTS));
    g_assert_false(process_gone(child));
    g_assert_cmpint(kill(child, SIGKILL), ==, 0);
    g_assert_true(wait_gone(child, 5000));
}

static void test_unmerge_child_killed(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    g_autofree char *run_before = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(run_before, ==, "1");
    hook_fixture_ksm_set(fx, "pages_sharing", "5000");

    /* The lock held (by "another unmerge"): the detached child waits for it,
     * with the decision still to make; killed there, as an OOM kill or an
     * operator's kill -9 would. */
    int lock_fd = take_lock(fx);
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    kill_detached_child(fx, run.err);
    close(lock_fd);
    hook_run_clear(&run);

    /* Nothing half done: lock free, guest forgotten, knobs as they were
     * (ksmd still merging: the defined state before the decision). */
    assert_lock_free(fx);
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 0);
    g_assert_null(hook_fixture_wait_outcome(fx, 200));
    g_autofree char *run_after = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(run_after, ==, "1");

    /* The next hook event says what happened, once, and completes: a guest
     * comes and goes, its stop unmerges as the killed child would have. */
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    assert_contains(run.err, "(unmerge) was killed before it finished");
    hook_run_clear(&run);
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    g_autofree char *outcome = hook_fixture_wait_outcome(fx, 20000);
    g_assert_nonnull(outcome);
    assert_contains(outcome, "\"result\":\"done\"");
    g_autofree char *run_end = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(run_end, ==, "2");
    g_assert_true(wait_no_detached(fx, 10000));
    g_assert_true(wait_lock_free(fx, 10000));
    g_autofree char *log = hook_fixture_read_log(fx);
    assert_contains(log, "unmerge done");
    const char *first = strstr(log, "was killed before it finished");
    g_assert_nonnull(first);
    g_assert_null(strstr(first + 1, "was killed before it finished"));
    const char *const expected[] = { "last-unmerge.json", NULL };
    g_assert_cmpuint(n_other_files(fx->state_dir, expected), ==, 0);
}

/* The same kill while the unmerge is decided (after the lock): an operator's
 * `samepage unmerge --all` then finishes the job. */
static void test_unmerge_child_killed_cli_finishes(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    hook_run_clear(&run);
    hook_fixture_ksm_set(fx, "pages_sharing", "5000");
    int lock_fd = take_lock(fx);
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    kill_detached_child(fx, run.err);
    close(lock_fd);
    hook_run_clear(&run);

    const char *argv[] = { g_getenv("SAMEPAGE_CLI"), "unmerge", "--all", "--sysfs-root",
                           fx->sysfs, "--procfs-root", fx->procfs, NULL };
    g_autoptr(GSubprocessLauncher) launcher =
        g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_LOCK", fx->lock, TRUE);
    g_autoptr(GError) error = NULL;
    g_autoptr(GSubprocess) proc = g_subprocess_launcher_spawnv(launcher, argv, &error);
    g_assert_no_error(error);
    g_autofree char *out = NULL, *err = NULL;
    g_assert_true(g_subprocess_communicate_utf8(proc, NULL, NULL, &out, &err, &error));
    g_assert_cmpint(g_subprocess_get_exit_status(proc), ==, 0);
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "2");
    assert_lock_free(fx);
}

/* ---- 2. the state directory full or read-only ---- */

/* Mount a tmpfs (options) on the state directory, run prepare, look, and
 * unmount before any assertion (a failed one must not leave the mount). */
static void run_on_tmpfs(HookFixture *fx, const char *options, gboolean fill,
                         gboolean remount_ro)
{
    if (geteuid() != 0) {
        g_test_skip("mounting a tmpfs needs root");
        return;
    }
    g_assert_cmpint(g_mkdir_with_parents(fx->state_dir, 0700), ==, 0);
    if (mount("samepage-faults", fx->state_dir, "tmpfs", MS_NOSUID | MS_NODEV, options) < 0) {
        g_test_skip_printf("cannot mount a tmpfs: %s", g_strerror(errno));
        return;
    }
    g_autofree char *filler = g_build_filename(fx->state_dir, "filler", NULL);
    gboolean filled = TRUE;
    if (fill) {
        /* Fill the tmpfs to the last block: the next write gets ENOSPC. */
        int fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        char block[4096] = { 0 };
        while (fd >= 0 && write(fd, block, sizeof(block)) > 0) {
        }
        filled = fd >= 0 && errno == ENOSPC;
        if (fd >= 0) {
            close(fd);
        }
    }
    gboolean ro = !remount_ro ||
        mount(NULL, fx->state_dir, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
              options) == 0;

    HookRun run = { 0 };
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    guint n_states = hook_fixture_n_state_files(fx);
    const char *const expected[] = { "filler", NULL };
    guint n_others = n_other_files(fx->state_dir, expected);
    g_autofree char *run_knob = hook_fixture_ksm_get(fx, "run");

    int unmounted = umount2(fx->state_dir, MNT_DETACH);
    g_assert_cmpint(unmounted, ==, 0);
    g_assert_true(filled);
    g_assert_true(ro);
    /* The documented policy: a guest the hook cannot record is refused
     * (exit 1, one line for virsh), nothing else changes. */
    g_assert_cmpint(run.status, ==, 1);
    assert_contains(run.err, "start refused: cannot record the guest's KSM state");
    g_assert_cmpuint(n_states, ==, 0);
    g_assert_cmpuint(n_others, ==, 0);
    g_assert_cmpstr(run_knob, ==, "0");
    assert_lock_free(fx);
    hook_run_clear(&run);

    /* With the directory back, the same guest starts. */
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 1);
    hook_run_clear(&run);
}

static void test_state_dir_full(HookFixture *fx, gconstpointer data)
{
    run_on_tmpfs(fx, "size=16k,mode=0700", TRUE, FALSE);
}

static void test_state_dir_readonly(HookFixture *fx, gconstpointer data)
{
    run_on_tmpfs(fx, "size=64k,mode=0700", FALSE, TRUE);
}

/* A guest stops while /run is read-only: it cannot be forgotten, so it
 * stays counted and KSM is left as it is (no unmerge on a guess), with one
 * clear line; once /run is writable the next stop unmerges. */
static void test_stop_on_readonly_state_dir(HookFixture *fx, gconstpointer data)
{
    if (geteuid() != 0) {
        g_test_skip("mounting a tmpfs needs root");
        return;
    }
    HookRun run = { 0 };
    g_assert_cmpint(g_mkdir_with_parents(fx->state_dir, 0700), ==, 0);
    if (mount("samepage-faults", fx->state_dir, "tmpfs", MS_NOSUID | MS_NODEV,
              "size=64k,mode=0700") < 0) {
        g_test_skip_printf("cannot mount a tmpfs: %s", g_strerror(errno));
        return;
    }
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    int prepared = run.status;
    hook_run_clear(&run);
    hook_fixture_ksm_set(fx, "pages_sharing", "5000");
    int ro = mount(NULL, fx->state_dir, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                   "size=64k,mode=0700");
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    g_autofree char *outcome = hook_fixture_wait_outcome(fx, 1000);
    guint n_states = hook_fixture_n_state_files(fx);
    /* Writable again, the same stop (libvirt's release) finishes the job. */
    int rw = mount(NULL, fx->state_dir, NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV,
                   "size=64k,mode=0700");
    HookRun again = { 0 };
    hook_run(fx, "web-1", "release", "merge-yes.xml", &again);
    g_autofree char *outcome2 = hook_fixture_wait_outcome(fx, 20000);
    gboolean settled = wait_no_detached(fx, 10000) && wait_lock_free(fx, 10000);
    g_autofree char *run_knob = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpint(umount2(fx->state_dir, MNT_DETACH), ==, 0);

    g_assert_cmpint(prepared, ==, 0);
    g_assert_cmpint(ro, ==, 0);
    g_assert_cmpint(rw, ==, 0);
    g_assert_cmpint(run.status, ==, 0);
    assert_contains(run.err, "cannot forget the guest");
    assert_contains(run.err, "Read-only file system");
    g_assert_null(outcome);
    g_assert_cmpuint(n_states, ==, 1);
    g_assert_cmpint(again.status, ==, 0);
    assert_contains(again.err, "last mergeable guest gone");
    g_assert_nonnull(outcome2);
    assert_contains(outcome2, "\"result\":\"done\"");
    g_assert_cmpstr(run_knob, ==, "2");
    g_assert_true(settled);
    hook_run_clear(&run);
    hook_run_clear(&again);
}

/* A guest stops while /run is full: the unmerge still runs (it needs no
 * space), only its outcome file is lost, and the log says so. */
static void test_stop_on_full_state_dir(HookFixture *fx, gconstpointer data)
{
    if (geteuid() != 0) {
        g_test_skip("mounting a tmpfs needs root");
        return;
    }
    HookRun run = { 0 };
    g_assert_cmpint(g_mkdir_with_parents(fx->state_dir, 0700), ==, 0);
    if (mount("samepage-faults", fx->state_dir, "tmpfs", MS_NOSUID | MS_NODEV,
              "size=16k,mode=0700") < 0) {
        g_test_skip_printf("cannot mount a tmpfs: %s", g_strerror(errno));
        return;
    }
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    int prepared = run.status;
    hook_run_clear(&run);
    hook_fixture_ksm_set(fx, "pages_sharing", "5000");
    /* The stop frees the guest's state file: fill /run only once the
     * detached child is at work (waiting for the lock the test holds). */
    int lock_fd = take_lock(fx);
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    gint64 until = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (wait_no_detached(fx, 0) && g_get_monotonic_time() < until) {
        g_usleep(5 * 1000);
    }
    g_autofree char *filler = g_build_filename(fx->state_dir, "filler", NULL);
    int fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    char block[512] = { 0 };
    while (fd >= 0 && write(fd, block, sizeof(block)) > 0) {
    }
    gboolean filled = fd >= 0 && errno == ENOSPC;
    if (fd >= 0) {
        close(fd);
    }
    close(lock_fd);
    /* The outcome cannot be written: wait for the log's word instead. */
    g_autofree char *log = NULL;
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (g_get_monotonic_time() < deadline) {
        g_free(log);
        log = hook_fixture_read_log(fx);
        if (strstr(log, "cannot keep the unmerge outcome")) {
            break;
        }
        g_usleep(20 * 1000);
    }
    /* The detached child lets go of the lock once it has logged. */
    gboolean lock_free = wait_no_detached(fx, 10000) && wait_lock_free(fx, 10000);
    guint n_states = hook_fixture_n_state_files(fx);
    const char *const expected[] = { "filler", NULL };
    guint n_others = n_other_files(fx->state_dir, expected);
    g_assert_cmpint(umount2(fx->state_dir, MNT_DETACH), ==, 0);

    g_assert_cmpint(prepared, ==, 0);
    g_assert_true(filled);
    g_assert_cmpint(run.status, ==, 0);
    assert_contains(run.err, "last mergeable guest gone");
    assert_contains(log, "unmerge done");
    assert_contains(log, "cannot keep the unmerge outcome");
    assert_contains(log, "No space left on device");
    g_assert_true(lock_free);
    g_assert_cmpuint(n_states, ==, 0);
    g_assert_cmpuint(n_others, ==, 0);
    g_autofree char *run_knob = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(run_knob, ==, "2");
    hook_run_clear(&run);
}

/* ---- 3. parallel unmerges and hook events ---- */

#define N_PARALLEL 10
/* A second guest of the same trust group as xml/merge-yes.xml. */
#define WEB2_XML "<domain type='qemu'><name>web-2</name>" \
    "<uuid>22222222-2222-2222-2222-222222222222</uuid><metadata>" \
    "<ksm:policy xmlns:ksm=\"https://samepage.invalid/xmlns/ksm/1\" group=\"tenant-a\"/>" \
    "</metadata></domain>\n"
#define RACE_BOUND_MS 60000

static void test_parallel_unmerges(HookFixture *fx, gconstpointer data)
{
    GSubprocess *procs[N_PARALLEL];
    g_autoptr(GError) error = NULL;
    HookRun run = { 0 };

    g_autofree char *config = g_strdup_printf("scan=tune\nsamepage=%s\n", g_getenv("SAMEPAGE_CLI"));
    hook_fixture_config(fx, config);
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    hook_fixture_ksm_set(fx, "pages_sharing", "5000");

    gint64 start = g_get_monotonic_time();
    for (int i = 0; i < N_PARALLEL; i++) {
        const char *argv[] = { g_getenv("SAMEPAGE_CLI"), "unmerge", "--all", "--lock-timeout",
                               "50", "--sysfs-root", fx->sysfs, "--procfs-root", fx->procfs,
                               NULL };
        g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(
            G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
        g_subprocess_launcher_setenv(launcher, "SAMEPAGE_LOCK", fx->lock, TRUE);
        procs[i] = g_subprocess_launcher_spawnv(launcher, argv, &error);
        g_assert_no_error(error);
        /* Hook events among them: a start kicks samepage tune, a stop
         * hands an unmerge to a detached child. */
        if (i == 1) {
            hook_run_text(fx, "web-2", "prepare", WEB2_XML, &run);
            g_assert_cmpint(run.status, ==, 0);
            hook_run_clear(&run);
        } else if (i == 3) {
            hook_run(fx, "web-1", "started", "merge-yes.xml", &run);
            g_assert_cmpint(run.status, ==, 0);
            hook_run_clear(&run);
        } else if (i == 6) {
            hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
            g_assert_cmpint(run.status, ==, 0);
            assert_contains(run.err, "still running: no unmerge");
            hook_run_clear(&run);
        } else if (i == 8) {
            hook_run_text(fx, "web-2", "stopped", WEB2_XML, &run);
            g_assert_cmpint(run.status, ==, 0);
            assert_contains(run.err, "last mergeable guest gone");
            hook_run_clear(&run);
        }
    }
    for (int i = 0; i < N_PARALLEL; i++) {
        g_autofree char *err = NULL;
        g_assert_true(g_subprocess_communicate_utf8(procs[i], NULL, NULL, NULL, &err, &error));
        g_assert_no_error(error);
        int status = g_subprocess_get_exit_status(procs[i]);
        if (status != 0) {
            g_error("samepage unmerge --all #%d exited %d: %s", i, status, err);
        }
        g_object_unref(procs[i]);
    }
    gint64 elapsed_ms = (g_get_monotonic_time() - start) / 1000;
    g_test_message("%d parallel unmerges and 4 hook events in %" G_GINT64_FORMAT " ms",
                   N_PARALLEL, elapsed_ms);
    g_assert_cmpint(elapsed_ms, <, RACE_BOUND_MS);

    /* The detached child of the stop, too, ends within the bound. */
    g_autofree char *outcome = hook_fixture_wait_outcome(fx, RACE_BOUND_MS);
    g_assert_nonnull(outcome);
    g_autofree char *tune_pid = g_build_filename(fx->state_dir, "tune.pid", NULL);
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (g_file_test(tune_pid, G_FILE_TEST_EXISTS) && g_get_monotonic_time() < deadline) {
        g_usleep(20 * 1000);
    }
    g_assert_false(g_file_test(tune_pid, G_FILE_TEST_EXISTS));
    g_assert_true(wait_no_detached(fx, RACE_BOUND_MS));
    g_assert_true(wait_lock_free(fx, RACE_BOUND_MS));
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 0);
    const char *const expected[] = { "last-unmerge.json", NULL };
    g_assert_cmpuint(n_other_files(fx->state_dir, expected), ==, 0);
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "2");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!g_getenv("SAMEPAGE_HOOK_BIN") || !g_getenv("SAMEPAGE_CLI")) {
        g_printerr("SAMEPAGE_HOOK_BIN and SAMEPAGE_CLI are not set (meson test sets them)\n");
        return 1;
    }
    HOOK_TEST("/faults/unmerge-child-killed", test_unmerge_child_killed);
    HOOK_TEST("/faults/unmerge-child-killed-cli-finishes", test_unmerge_child_killed_cli_finishes);
    HOOK_TEST("/faults/state-dir-full", test_state_dir_full);
    HOOK_TEST("/faults/state-dir-readonly", test_state_dir_readonly);
    HOOK_TEST("/faults/stop-on-readonly-state-dir", test_stop_on_readonly_state_dir);
    HOOK_TEST("/faults/stop-on-full-state-dir", test_stop_on_full_state_dir);
    HOOK_TEST("/faults/parallel-unmerges", test_parallel_unmerges);
    return g_test_run();
}
