/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-hook-run.c: the hook binary run the way libvirtd runs it (argv, XML
 * on stdin), against a fake KSM tree, state directory, lock and config.
 * Each test is one lifecycle decision of issue 6.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "hook-fixture.h"

#define U_WEB "11111111-1111-1111-1111-111111111111"
#define U_PLAIN "22222222-2222-2222-2222-222222222222"
/* Far above what any hook should take: a hook that waits for the detached
 * unmerge, or for our pipes, shows up here. */
#define QUICK_MS 3000

static int run_xml(HookFixture *fx, const char *name, const char *op, const char *xml,
                   HookRun *run)
{
    hook_run_text(fx, name, op, xml, run);
    g_assert_cmpint(run->elapsed_ms, <, QUICK_MS);
    return run->status;
}

static JsonObject *parse_outcome(const char *text)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_assert_true(json_parser_load_from_data(parser, text, -1, NULL));
    return json_object_ref(json_node_get_object(json_parser_get_root(parser)));
}

static void test_first_guest_starts_ksmd(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    hook_fixture_config(fx, "pages_to_scan=1234\nsleep_millisecs=7\n");
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_cmpint(run.elapsed_ms, <, QUICK_MS);
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_autofree char *pts = hook_fixture_ksm_get(fx, "pages_to_scan");
    g_autofree char *sleep = hook_fixture_ksm_get(fx, "sleep_millisecs");
    g_assert_cmpstr(runv, ==, "1");
    g_assert_cmpstr(pts, ==, "1234");
    g_assert_cmpstr(sleep, ==, "7");
    /* smart_scan=off by default (kt-r21-smart-scan-phase.c says why). */
    g_autofree char *smart = hook_fixture_ksm_get(fx, "smart_scan");
    g_assert_cmpstr(smart, ==, "0");
    hook_assert_contains(run.err, "ksmd started for 1 mergeable guest(s)");
    hook_assert_contains(run.err, "smart_scan=0");

    /* One file, named by the UUID, root-only. */
    g_autofree char *state = hook_fixture_state_file(fx, U_WEB);
    g_assert_true(g_file_test(state, G_FILE_TEST_IS_REGULAR));
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 1);
    GStatBuf st;
    g_assert_cmpint(g_stat(fx->state_dir, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0700);
    g_assert_cmpint(g_stat(state, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);
    hook_run_clear(&run);

    /* A second guest: ksmd runs already, an operator's tuning stays. */
    hook_fixture_ksm_set(fx, "pages_to_scan", "50");
    g_autofree char *xml = hook_domain_xml("web-2", U_PLAIN, "merge=\"yes\" group=\"tenant-a\"", FALSE);
    g_assert_cmpint(run_xml(fx, "web-2", "prepare", xml, &run), ==, 0);
    g_autofree char *pts2 = hook_fixture_ksm_get(fx, "pages_to_scan");
    g_assert_cmpstr(pts2, ==, "50");
    hook_assert_contains(run.err, "1 other mergeable guest(s)");
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 2);
    hook_run_clear(&run);
}

static void test_advisor_scan(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    hook_fixture_config(fx, "scan=advisor\nadvisor_max_cpu=25\n");
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    g_autofree char *mode = hook_fixture_ksm_get(fx, "advisor_mode");
    g_autofree char *cpu = hook_fixture_ksm_get(fx, "advisor_max_cpu");
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(mode, ==, "scan-time");
    g_assert_cmpstr(cpu, ==, "25");
    g_assert_cmpstr(runv, ==, "1");
    hook_run_clear(&run);
}

/* The pid the hook recorded for its samepage tune, if that process runs
 * `samepage tune`; 0 otherwise. */
static int tune_pid(HookFixture *fx)
{
    g_autofree char *path = g_build_filename(fx->state_dir, "tune.pid", NULL);
    g_autofree char *text = NULL, *cmdline_path = NULL, *cmdline = NULL;
    gsize len;
    int pid;

    if (!g_file_get_contents(path, &text, NULL, NULL) || sscanf(text, "%d", &pid) != 1) {
        return 0;
    }
    cmdline_path = g_strdup_printf("/proc/%d/cmdline", pid);
    if (!g_file_get_contents(cmdline_path, &cmdline, &len, NULL) || len == 0) {
        return 0;
    }
    /* argv[0] "samepage", argv[1] "tune" */
    return strcmp(cmdline + strlen(cmdline) + 1, "tune") == 0 ? pid : 0;
}

/* tune_pid, given a moment: the hook records the pid at the fork, the
 * command line becomes samepage's at the exec. */
static int wait_tune_pid(HookFixture *fx)
{
    for (int i = 0; i < 200; i++) {
        int pid = tune_pid(fx);
        if (pid) {
            return pid;
        }
        g_usleep(10 * 1000);
    }
    return 0;
}

static void test_tune_scan(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *lines = g_strdup_printf("scan=tune\nsamepage=%s\n", g_getenv("SAMEPAGE_CLI"));
    g_autofree char *xml2 = hook_domain_xml("web-2", U_PLAIN, "merge=\"yes\" group=\"tenant-a\"",
                                       FALSE);

    hook_fixture_config(fx, lines);
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_cmpint(run.elapsed_ms, <, QUICK_MS);
    hook_assert_contains(run.err, "ksmd started for 1 mergeable guest(s)");
    hook_assert_contains(run.err, "samepage tune started (pid ");
    int pid = wait_tune_pid(fx);
    g_assert_cmpint(pid, >, 1);
    /* Detached: its own session, not the hook's child. */
    g_assert_cmpint(getsid(pid), !=, getsid(0));
    hook_run_clear(&run);

    /* Another mergeable guest: the same process, told to converge again. */
    g_assert_cmpint(run_xml(fx, "web-2", "prepare", xml2, &run), ==, 0);
    hook_assert_contains(run.err, "told to converge again: 2 mergeable guest(s)");
    g_assert_cmpint(tune_pid(fx), ==, pid);
    hook_run_clear(&run);

    /* The last one gone: stopped before the unmerge. */
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    hook_run_clear(&run);
    g_assert_cmpint(kill(pid, 0), ==, 0);
    run_xml(fx, "web-2", "stopped", xml2, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    g_assert_nonnull(hook_fixture_wait_outcome(fx, 10000));
    g_autofree char *log = hook_fixture_read_log(fx);
    hook_assert_contains(log, "stopped: no mergeable guest left");
    g_assert_cmpint(tune_pid(fx), ==, 0);
    g_autofree char *pidfile = g_build_filename(fx->state_dir, "tune.pid", NULL);
    g_assert_false(g_file_test(pidfile, G_FILE_TEST_EXISTS));
}

static void test_tune_without_cli(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    /* No samepage where the config says: the guest starts, ksmd scans at the
     * manual rate, and the log says what to fix. */
    hook_fixture_config(fx, "scan=tune\nsamepage=/nonexistent/samepage\npages_to_scan=777\n");
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "/nonexistent/samepage is not an executable");
    hook_assert_contains(run.err, "scanning at pages_to_scan=777");
    g_autofree char *pts = hook_fixture_ksm_get(fx, "pages_to_scan");
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(pts, ==, "777");
    g_assert_cmpstr(runv, ==, "1");
    g_assert_cmpint(tune_pid(fx), ==, 0);
    hook_run_clear(&run);
}

static void test_not_mergeable(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    hook_run(fx, "private", "prepare", "nosharepages.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "0");
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 0);
    hook_assert_contains(run.err, "not mergeable");
    hook_run_clear(&run);

    /* Its stop does nothing either. */
    hook_run(fx, "private", "stopped", "nosharepages.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_null(hook_fixture_wait_outcome(fx, 300));
    hook_run_clear(&run);
}

static void test_one_stops_no_unmerge(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *xml2 = hook_domain_xml("web-2", U_PLAIN, "group=\"tenant-a\"", FALSE);

    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    hook_run_clear(&run);
    run_xml(fx, "web-2", "prepare", xml2, &run);
    hook_run_clear(&run);
    hook_fixture_ksm_set(fx, "pages_sharing", "5000");

    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "1 mergeable guest(s) still running: no unmerge");
    hook_run_clear(&run);
    /* release after stopped: already forgotten. */
    hook_run(fx, "web-1", "release", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);

    g_assert_null(hook_fixture_wait_outcome(fx, 500));
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "1");
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 1);
}

static void test_last_stops_unmerges(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    hook_run_clear(&run);
    hook_fixture_ksm_set(fx, "pages_sharing", "5000");

    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_cmpint(run.elapsed_ms, <, QUICK_MS);
    hook_assert_contains(run.err, "last mergeable guest gone");
    hook_assert_contains(run.err, "detached child");
    hook_run_clear(&run);

    g_autofree char *outcome = hook_fixture_wait_outcome(fx, 10000);
    g_assert_nonnull(outcome);
    g_autoptr(JsonObject) o = parse_outcome(outcome);
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, "done");
    g_assert_cmpint(json_object_get_int_member(o, "needed_bytes"), ==, 5000 * 4096);
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "2");
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 0);

    /* The outcome is logged (the detached child writes the file log). */
    g_autofree char *log = hook_fixture_read_log(fx);
    hook_assert_contains(log, "unmerge done");
    hook_assert_contains(log, "\"event\":\"ksm-unmerge\"");
}

static void test_no_headroom_stops_ksmd(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    hook_fixture_config(fx, "reserve_mib=1000000\n");
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    hook_run_clear(&run);
    hook_fixture_ksm_set(fx, "pages_sharing", "5000");
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);

    g_autofree char *outcome = hook_fixture_wait_outcome(fx, 10000);
    g_assert_nonnull(outcome);
    g_autoptr(JsonObject) o = parse_outcome(outcome);
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, "refused");
    g_assert_true(json_object_get_boolean_member(o, "stopped_ksmd"));
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "0");
    g_autofree char *log = hook_fixture_read_log(fx);
    hook_assert_contains(log, "unmerge refused");
    hook_assert_contains(log, "reserve");
}

static void test_contradiction_refused(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    hook_run(fx, "contra-yes", "prepare", "contradiction-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 1);
    hook_assert_contains(run.err, "start refused");
    hook_assert_contains(run.err, "merge=\"yes\"");
    hook_assert_contains(run.err, "<nosharepages/>");
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 0);
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "0");
    hook_run_clear(&run);

    static const char *const refused[] = {
        "contradiction-no.xml", "bad-merge-value.xml", "unknown-attribute.xml",
        "bad-group.xml", "two-policies.xml", "malformed.xml", "no-uuid.xml", "bad-uuid.xml",
        "not-domain.xml", NULL,
    };
    for (guint i = 0; refused[i]; i++) {
        hook_run(fx, "x", "prepare", refused[i], &run);
        if (run.status != 1) {
            g_error("%s: exit %d, want 1\n%s", refused[i], run.status, run.err);
        }
        hook_run_clear(&run);
    }
    /* Nothing on stdin at prepare: refused too. */
    hook_run(fx, "x", "prepare", NULL, &run);
    g_assert_cmpint(run.status, ==, 1);
    hook_run_clear(&run);
    /* The same at stopped never fails the cleanup. */
    hook_run(fx, "x", "stopped", "malformed.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 0);
}

static void test_trust_groups(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *other = hook_domain_xml("db-1", U_PLAIN, "group=\"tenant-b\"", FALSE);

    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);

    /* strict (the default): refused.  stderr goes back to the libvirt client
     * starting db-1 (issue 17, finding 8): it names no other tenant's guest
     * or group; the host's log has the full detail. */
    g_assert_cmpint(run_xml(fx, "db-1", "prepare", other, &run), ==, 1);
    hook_assert_contains(run.err, "tenant-b");
    hook_assert_contains(run.err, "policy=strict");
    g_assert_null(strstr(run.err, "web-1"));
    g_assert_null(strstr(run.err, "tenant-a"));
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 1);
    g_autofree char *log = hook_fixture_read_log(fx);
    hook_assert_contains(log, "'web-1' (group 'tenant-a')");
    hook_run_clear(&run);

    /* A guest that does not merge may run beside anyone. */
    g_autofree char *private = hook_domain_xml("db-2", "22222222-2222-2222-2222-333333333333",
                                          "merge=\"no\" group=\"tenant-b\"", TRUE);
    g_assert_cmpint(run_xml(fx, "db-2", "prepare", private, &run), ==, 0);
    hook_run_clear(&run);

    /* permissive: allowed, with a warning. */
    hook_fixture_config(fx, "policy=permissive\n");
    g_assert_cmpint(run_xml(fx, "db-1", "prepare", other, &run), ==, 0);
    g_autofree char *log2 = hook_fixture_read_log(fx);
    hook_assert_contains(log2, "allowed by policy=permissive");
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 2);
    hook_run_clear(&run);
}

static void test_lock_busy(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    hook_fixture_config(fx, "lock_timeout_s=1\n");
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    hook_fixture_ksm_set(fx, "pages_sharing", "10");

    /* Someone (an unmerge, samepage set) holds the host lock. */
    int fd = open(fx->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(flock(fd, LOCK_EX), ==, 0);

    /* prepare of a mergeable guest is refused within its bound... */
    g_autofree char *xml2 = hook_domain_xml("web-2", U_PLAIN, "group=\"tenant-a\"", FALSE);
    g_assert_cmpint(run_xml(fx, "web-2", "prepare", xml2, &run), ==, 1);
    g_assert_cmpint(run.elapsed_ms, >=, 900);
    hook_assert_contains(run.err, "retry");
    hook_run_clear(&run);

    /* ...while a stop returns at once and leaves the unmerge to the child,
     * which waits for the lock. */
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_cmpint(run.elapsed_ms, <, 1000);
    hook_run_clear(&run);
    g_assert_null(hook_fixture_wait_outcome(fx, 500));
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "1");

    flock(fd, LOCK_UN);
    close(fd);
    g_autofree char *outcome = hook_fixture_wait_outcome(fx, 10000);
    g_assert_nonnull(outcome);
    g_autofree char *runv2 = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv2, ==, "2");
}

static void test_guest_back_before_unmerge(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    /* The last guest stops while the lock is busy; before the detached
     * child gets it, a new guest starts: the child must not unmerge. */
    hook_fixture_config(fx, "lock_timeout_s=3\n");
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    hook_run_clear(&run);
    int fd = open(fx->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    g_assert_cmpint(flock(fd, LOCK_EX), ==, 0);
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    /* Register the new guest as prepare would, then free the lock: prepare
     * itself waits for the lock, so run it while we release. */
    g_autofree char *xml2 = hook_domain_xml("web-2", U_PLAIN, "group=\"tenant-a\"", FALSE);
    g_autofree char *state2 = hook_fixture_state_file(fx, U_PLAIN);
    g_autofree char *text = g_strdup_printf("[domain]\nname=web-2\nuuid=%s\ngroup=tenant-a\n"
                                            "phase=prepared\nqemu_pid=0\nqemu_start_time=0\n"
                                            "updated=%" G_GINT64_FORMAT "\n", U_PLAIN,
                                            g_get_real_time() / G_USEC_PER_SEC);
    g_assert_true(g_file_set_contents(state2, text, -1, NULL));
    flock(fd, LOCK_UN);
    close(fd);

    g_usleep(1500 * 1000);
    g_assert_null(hook_fixture_wait_outcome(fx, 100));
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "1");
    g_autofree char *log = hook_fixture_read_log(fx);
    hook_assert_contains(log, "running again: no unmerge");
    (void)xml2;
}

static void test_hostile_names(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    const char *argv_name = "a b 'q' \"d\" /../.. é 日本 $(reboot) ;rm -rf /\nnext";

    hook_run(fx, argv_name, "prepare", "hostile.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    /* Only "<uuid>.state" in the state directory, nothing anywhere else. */
    g_autofree char *state = hook_fixture_state_file(fx, "99999999-aaaa-bbbb-cccc-dddddddddddd");
    g_assert_true(g_file_test(state, G_FILE_TEST_IS_REGULAR));
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 1);
    g_autofree char *escaped = g_build_filename(fx->root, "..", "..", NULL);
    /* Log lines stay one line each: the newline in argv is escaped. */
    g_auto(GStrv) lines = g_strsplit(g_strchomp(run.err), "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        g_assert_true(g_str_has_prefix(lines[i], "samepage-ksm: "));
    }
    hook_assert_contains(run.err, "日本");
    hook_run_clear(&run);

    hook_run(fx, argv_name, "stopped", "hostile.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    g_assert_nonnull(hook_fixture_wait_outcome(fx, 10000));
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 0);
    (void)escaped;
}

static void test_unused_ops_exit_at_once(HookFixture *fx, gconstpointer data)
{
    static const char *const ops[] = { "start", "restore", "shutdown", "unknown", NULL };
    HookRun run = { 0 };

    /* Even a broken config is not read for them. */
    g_assert_true(g_file_set_contents(fx->config, "[ksm]\npolicy=???\n", -1, NULL));
    for (guint i = 0; ops[i]; i++) {
        /* Empty stdin: the hook does not read it for these (libvirtd copes
         * with a hook that closes stdin early; GSubprocess would report EPIPE). */
        hook_run(fx, "web-1", ops[i], NULL, &run);
        g_assert_cmpint(run.status, ==, 0);
        g_assert_cmpstr(run.err, ==, "");
        g_assert_cmpstr(run.out, ==, "");
        hook_run_clear(&run);
    }
    g_assert_false(g_file_test(fx->state_dir, G_FILE_TEST_EXISTS));
}

static void test_smart_scan_setting(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    /* keep: the host's smart scan is left alone. */
    hook_fixture_config(fx, "smart_scan=keep\n");
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    g_autofree char *kept = hook_fixture_ksm_get(fx, "smart_scan");
    g_assert_cmpstr(kept, ==, "1");
    g_assert_null(strstr(run.err, "smart_scan="));
    hook_run_clear(&run);
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    hook_run_clear(&run);
    g_assert_nonnull(hook_fixture_wait_outcome(fx, 10000));

    /* A value it does not know: the start is refused, naming key and value,
     * and no knob moves. */
    hook_fixture_ksm_set(fx, "run", "0");
    hook_fixture_config(fx, "smart_scan=sometimes\n");
    hook_run(fx, "web-2", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 1);
    hook_assert_contains(run.err, "smart_scan=sometimes is not valid: off, on or keep");
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_autofree char *still = hook_fixture_ksm_get(fx, "smart_scan");
    g_assert_cmpstr(runv, ==, "0");
    g_assert_cmpstr(still, ==, "1");
    hook_run_clear(&run);
}

static void test_bad_config(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    hook_run_clear(&run);
    g_assert_true(g_file_set_contents(fx->config, "[ksm]\nreserve_mib=lots\n", -1, NULL));
    hook_fixture_ksm_set(fx, "pages_sharing", "10");

    hook_run(fx, "web-2", "prepare", "default.xml", &run);
    g_assert_cmpint(run.status, ==, 1);
    hook_assert_contains(run.err, "reserve_mib=lots");
    hook_run_clear(&run);

    /* Cleanup goes on with the defaults. */
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "using the defaults");
    hook_run_clear(&run);
    g_assert_nonnull(hook_fixture_wait_outcome(fx, 10000));
}

static void test_reconnect_rebuilds(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *xml2 = hook_domain_xml("web-2", U_PLAIN, "group=\"tenant-a\"", FALSE);

    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    hook_run_clear(&run);
    run_xml(fx, "web-2", "prepare", xml2, &run);
    hook_run_clear(&run);
    hook_fixture_qemu(fx, 4242, U_WEB, 1000);
    hook_fixture_qemu(fx, 4343, U_PLAIN, 2000);
    hook_fixture_libvirt_pid(fx, "web-1", 4242);
    hook_fixture_libvirt_pid(fx, "web-2", 4343);
    hook_run(fx, "web-1", "started", "merge-yes.xml", &run);
    hook_assert_contains(run.err, "QEMU pid 4242");
    hook_run_clear(&run);

    /* libvirtd restarts; /run lost our state meanwhile (worst case). */
    g_autofree char *s1 = hook_fixture_state_file(fx, U_WEB);
    g_autofree char *s2 = hook_fixture_state_file(fx, U_PLAIN);
    g_unlink(s1);
    g_unlink(s2);
    hook_run(fx, "web-1", "reconnect", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "state rebuilt");
    hook_run_clear(&run);
    run_xml(fx, "web-2", "reconnect", xml2, &run);
    hook_run_clear(&run);
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 2);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(s2, &text, NULL, NULL));
    hook_assert_contains(text, "qemu_pid=4343");
    hook_assert_contains(text, "phase=reconnected");

    /* The next stop behaves: one left -> no unmerge; last -> unmerge. */
    hook_fixture_qemu_exit(fx, 4242);
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    hook_assert_contains(run.err, "still running: no unmerge");
    hook_run_clear(&run);
    hook_fixture_qemu_exit(fx, 4343);
    run_xml(fx, "web-2", "stopped", xml2, &run);
    hook_assert_contains(run.err, "last mergeable guest gone");
    hook_run_clear(&run);
    g_assert_nonnull(hook_fixture_wait_outcome(fx, 10000));
}

static void test_stale_state_pruned(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *xml2 = hook_domain_xml("web-2", U_PLAIN, "group=\"tenant-b\"", FALSE);

    /* web-1 ran in group tenant-a, then its QEMU died without a stop hook
     * (libvirtd was down).  Its state must not block tenant-b. */
    hook_fixture_qemu(fx, 4242, U_WEB, 1000);
    hook_fixture_libvirt_pid(fx, "web-1", 4242);
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    hook_run_clear(&run);
    hook_run(fx, "web-1", "started", "merge-yes.xml", &run);
    hook_run_clear(&run);
    hook_fixture_qemu_exit(fx, 4242);
    /* A reused pid with another start time is not the same QEMU. */
    hook_fixture_qemu(fx, 4242, "00000000-0000-0000-0000-000000000000", 5000);

    g_assert_cmpint(run_xml(fx, "web-2", "prepare", xml2, &run), ==, 0);
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 1);
    g_autofree char *log = hook_fixture_read_log(fx);
    hook_assert_contains(log, "stale");
    hook_run_clear(&run);
}

static void test_no_ksm(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *run_file = g_build_filename(fx->ksm_dir, "run", NULL);

    g_unlink(run_file);
    hook_run(fx, "web-1", "prepare", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "no KSM");
    hook_run_clear(&run);
    hook_run(fx, "web-1", "stopped", "merge-yes.xml", &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    g_usleep(300 * 1000);
    g_autofree char *log = hook_fixture_read_log(fx);
    hook_assert_contains(log, "nothing to do");
}

static void test_check_config(HookFixture *fx, gconstpointer data)
{
    g_autofree char *out = NULL, *err = NULL;
    int status;
    const char *bin = g_getenv("SAMEPAGE_HOOK_BIN");
    char *argv[] = { (char *)bin, (char *)"--print-default-config", NULL };

    g_assert_true(g_spawn_sync(NULL, argv, NULL, 0, NULL, NULL, &out, &err, &status, NULL));
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    g_assert_true(g_file_set_contents(fx->config, out, -1, NULL));
    char *check[] = { (char *)bin, (char *)"--check-config", fx->config, NULL };
    g_free(out);
    g_free(err);
    g_assert_true(g_spawn_sync(NULL, check, NULL, 0, NULL, NULL, &out, &err, &status, NULL));
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    hook_assert_contains(out, "policy=strict");
    hook_assert_contains(out, "migrate_headroom_check=on migrate_margin_mib=256");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);   /* a hook that exits without reading stdin */
    if (!g_getenv("SAMEPAGE_HOOK_BIN")) {
        g_printerr("SAMEPAGE_HOOK_BIN is not set (meson test sets it)\n");
        return 77;
    }
    HOOK_TEST("/hook/run/first-guest-starts-ksmd", test_first_guest_starts_ksmd);
    HOOK_TEST("/hook/run/advisor-scan", test_advisor_scan);
    HOOK_TEST("/hook/run/tune-scan", test_tune_scan);
    HOOK_TEST("/hook/run/tune-without-samepage", test_tune_without_cli);
    HOOK_TEST("/hook/run/not-mergeable", test_not_mergeable);
    HOOK_TEST("/hook/run/one-stops-no-unmerge", test_one_stops_no_unmerge);
    HOOK_TEST("/hook/run/last-stops-unmerges", test_last_stops_unmerges);
    HOOK_TEST("/hook/run/no-headroom-stops-ksmd", test_no_headroom_stops_ksmd);
    HOOK_TEST("/hook/run/contradiction-refused", test_contradiction_refused);
    HOOK_TEST("/hook/run/trust-groups", test_trust_groups);
    HOOK_TEST("/hook/run/lock-busy", test_lock_busy);
    HOOK_TEST("/hook/run/guest-back-before-unmerge", test_guest_back_before_unmerge);
    HOOK_TEST("/hook/run/hostile-names", test_hostile_names);
    HOOK_TEST("/hook/run/unused-ops-exit-at-once", test_unused_ops_exit_at_once);
    HOOK_TEST("/hook/run/smart-scan-setting", test_smart_scan_setting);
    HOOK_TEST("/hook/run/bad-config", test_bad_config);
    HOOK_TEST("/hook/run/reconnect-rebuilds", test_reconnect_rebuilds);
    HOOK_TEST("/hook/run/stale-state-pruned", test_stale_state_pruned);
    HOOK_TEST("/hook/run/no-ksm", test_no_ksm);
    HOOK_TEST("/hook/run/check-config", test_check_config);
    return g_test_run();
}
