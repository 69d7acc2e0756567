/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-hook-security.c: the attacks of the security review (issue 17) on the
 * hook binary, run as libvirtd runs it against a fake host (hook-fixture.h).
 * Each test reproduces one finding; each failed on the hook before the fix.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hook-fixture.h"

#define U_WEB "11111111-1111-1111-1111-111111111111"
#define U_DB "22222222-2222-2222-2222-222222222222"
#define NOBODY 65534

static gboolean need_root(void)
{
    if (geteuid() != 0) {
        g_test_skip("needs root (chown to another uid)");
        return FALSE;
    }
    return TRUE;
}

/* Finding 1: a domain name is never read as an option. */
static void test_option_like_names(HookFixture *fx, gconstpointer data)
{
    static const char *const names[] = {
        "--check-config", "--print-default-config", "--help", "-x", "-", "--", NULL,
    };
    HookRun run = { 0 };

    for (guint i = 0; names[i]; i++) {
        g_autofree char *uuid = g_strdup_printf("33333333-3333-3333-3333-%012u", i);
        g_autofree char *xml = hook_merge_xml(names[i], uuid, "tenant-a");
        hook_run_text(fx, names[i], "prepare", xml, &run);
        if (run.status != 0) {
            g_error("domain %s: exit %d\n%s", names[i], run.status, run.err);
        }
        /* Handled as a guest: recorded, so it counts for trust groups. */
        g_autofree char *state = hook_fixture_state_file(fx, uuid);
        if (!g_file_test(state, G_FILE_TEST_IS_REGULAR)) {
            g_error("domain %s: no state file (not handled as a guest)\n%s%s", names[i],
                    run.out, run.err);
        }
        hook_assert_contains(run.err, "prepare: mergeable");
        g_assert_cmpstr(run.out, ==, "");
        hook_run_clear(&run);
    }
    /* And its trust group is checked like anyone's. */
    g_autofree char *other = hook_merge_xml("--check-config", "44444444-4444-4444-4444-444444444444",
                                        "tenant-b");
    hook_run_text(fx, "--check-config", "prepare", other, &run);
    g_assert_cmpint(run.status, ==, 1);
    hook_assert_contains(run.err, "start refused");
    hook_run_clear(&run);
}

/* Finding 2: a decoy process carrying a guest's UUID, started by any user,
 * is not taken for the guest's QEMU. */
static void test_decoy_uuid(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    /* A name libvirt escapes in its file names (quotes, &, <, >). */
    const char *name = "web 'a' \"b\" & <c> \xc3\xa9";
    g_autofree char *web = hook_merge_xml(name, U_WEB, "tenant-a");
    g_autofree char *db = hook_merge_xml("db-1", U_DB, "tenant-b");
    static const char *const decoy_argv[] = { "/usr/bin/sleep", "1000", "-uuid", U_WEB, NULL };

    /* The decoys come first (a lower pid, as in real life), the QEMU
     * libvirt started and recorded in its pid file between them. */
    hook_fixture_process(fx, 300, "sleep", decoy_argv);
    hook_fixture_qemu(fx, 4242, U_WEB, 1000);
    hook_fixture_process(fx, 9000, "sleep", decoy_argv);
    hook_fixture_libvirt_pid(fx, name, 4242);

    hook_run_text(fx, name, "prepare", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    hook_run_text(fx, name, "started", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "QEMU pid 4242");
    hook_run_clear(&run);

    /* The decoys exit. */
    hook_fixture_qemu_exit(fx, 300);
    hook_fixture_qemu_exit(fx, 9000);

    /* web-1 still runs: a guest of another group is refused... */
    hook_run_text(fx, "db-1", "prepare", db, &run);
    g_assert_cmpint(run.status, ==, 1);
    hook_run_clear(&run);
    g_autofree char *state = hook_fixture_state_file(fx, U_WEB);
    g_assert_true(g_file_test(state, G_FILE_TEST_IS_REGULAR));

    /* ...and a pid file naming a process without the guest's UUID (a
     * stale file, a reused pid) is not believed either. */
    g_autofree char *web2 = hook_merge_xml("web-2", U_DB, "tenant-a");
    hook_fixture_process(fx, 5000, "sleep", decoy_argv);
    hook_fixture_libvirt_pid(fx, "web-2", 5000);
    hook_run_text(fx, "web-2", "prepare", web2, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_run_clear(&run);
    hook_run_text(fx, "web-2", "started", web2, &run);
    hook_assert_contains(run.err, "QEMU pid 0");
    hook_run_clear(&run);
}

/* Finding 5: scan=manual is manual: no root `samepage tune`. */
static void test_scan_manual(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *lines = g_strdup_printf("scan=manual\nsamepage=%s\npages_to_scan=321\n",
                                             g_getenv("SAMEPAGE_CLI"));
    g_autofree char *web = hook_merge_xml("web-1", U_WEB, "tenant-a");

    hook_fixture_config(fx, lines);
    hook_run_text(fx, "web-1", "prepare", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "ksmd started for 1 mergeable guest(s)");
    hook_assert_lacks(run.err, "samepage tune");
    g_autofree char *pts = hook_fixture_ksm_get(fx, "pages_to_scan");
    g_assert_cmpstr(pts, ==, "321");
    g_autofree char *pidfile = g_build_filename(fx->state_dir, "tune.pid", NULL);
    g_assert_false(g_file_test(pidfile, G_FILE_TEST_EXISTS));
    hook_run_clear(&run);

    /* --check-config says manual too. */
    const char *bin = g_getenv("SAMEPAGE_HOOK_BIN");
    char *argv[] = { (char *)bin, (char *)"--check-config", fx->config, NULL };
    g_autofree char *out = NULL, *err = NULL;
    int status;
    g_assert_true(g_spawn_sync(NULL, argv, NULL, 0, NULL, NULL, &out, &err, &status, NULL));
    hook_assert_contains(out, "scan=manual");
}

/* Finding 6: a DOCTYPE (entities) is refused before anything expands. */
static void test_doctype_refused(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    /* An entity as the trust group: expanded, it would pass as tenant-b. */
    const char *group_entity =
        "<?xml version='1.0'?>\n<!DOCTYPE domain [ <!ENTITY g \"tenant-b\"> ]>\n"
        "<domain type='qemu'><name>db-1</name><uuid>" U_DB "</uuid><metadata>"
        "<ksm:policy xmlns:ksm=\"https://samepage.invalid/xmlns/ksm/1\" merge=\"yes\" "
        "group=\"&g;\"/></metadata></domain>\n";

    hook_run_text(fx, "db-1", "prepare", group_entity, &run);
    g_assert_cmpint(run.status, ==, 1);
    hook_assert_contains(run.err, "document type declaration");
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 0);
    hook_run_clear(&run);

    /* Nested entities (a billion laughs, 10^8 expansions): refused at once,
     * at every operation, with nothing written. */
    GString *xml = g_string_new("<?xml version='1.0'?>\n<!DOCTYPE domain [\n"
                                " <!ENTITY l0 \"lollollollollollollollollollol\">\n");
    for (int i = 1; i <= 8; i++) {
        g_string_append_printf(xml, " <!ENTITY l%d \"", i);
        for (int j = 0; j < 10; j++) {
            g_string_append_printf(xml, "&l%d;", i - 1);
        }
        g_string_append(xml, "\">\n");
    }
    g_string_append(xml, "]>\n<domain type='qemu'><name>&l8;</name><uuid>" U_WEB
                    "</uuid></domain>\n");
    static const char *const ops[] = { "prepare", "started", "stopped", NULL };
    for (guint i = 0; ops[i]; i++) {
        gint64 start = g_get_monotonic_time();
        hook_run_text(fx, "web-1", ops[i], xml->str, &run);
        g_assert_cmpint((g_get_monotonic_time() - start) / 1000, <, 2000);
        g_assert_cmpint(run.status, ==, strcmp(ops[i], "prepare") == 0 ? 1 : 0);
        g_assert_cmpuint(strlen(run.err), <, 4096);
        hook_run_clear(&run);
    }
    g_string_free(xml, TRUE);
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 0);
}

/* Every line the hook wrote: one line each, valid UTF-8, no control byte. */
static void assert_clean_lines(const char *text)
{
    g_assert_true(g_utf8_validate(text, -1, NULL));
    for (const char *p = text; *p; p++) {
        if ((guchar)*p < 0x20 && *p != '\n') {
            g_error("control byte 0x%02x in:\n%s", (guchar)*p, text);
        }
    }
}

/* Names and values with control bytes and invalid UTF-8 are escaped in
 * every log line and message. */
static void test_control_bytes_escaped(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    /* argv: what libvirt passes; the XML name: tab and newline, which XML
     * allows (libvirt refuses a newline, not a tab). */
    const char *argv_name = "ev\x1b[31mil\r\xff\xfe-1";
    g_autofree char *xml = hook_merge_xml("ta\tb\ncr", U_WEB, "tenant-a");

    hook_run_text(fx, argv_name, "prepare", xml, &run);
    g_assert_cmpint(run.status, ==, 0);
    assert_clean_lines(run.err);
    hook_assert_contains(run.err, "\\u001b[31mil\\u000d\\xff\\xfe-1");
    hook_assert_contains(run.err, "ta\\u0009b\\u000acr");
    hook_run_clear(&run);

    /* A refusal about another guest with such a name: the log has it, escaped. */
    g_autofree char *db = hook_merge_xml("db\x1b]0;x\x07", U_DB, "tenant-b");
    hook_run_text(fx, "db", "prepare", db, &run);
    g_assert_cmpint(run.status, ==, 1);   /* malformed: \x1b is no XML character */
    assert_clean_lines(run.err);
    hook_run_clear(&run);

    /* Config values and GKeyFile's errors repeat the file's bytes. */
    g_assert_true(g_file_set_contents(fx->config,
        "[ksm]\nlog_level=\x1b[2J\xc3\x28\n", -1, NULL));
    hook_run_text(fx, "web-2", "prepare", xml, &run);
    g_assert_cmpint(run.status, ==, 1);
    assert_clean_lines(run.err);
    hook_assert_contains(run.err, "log_level=\\u001b[2J\\xc3(");
    hook_run_clear(&run);
    g_assert_true(g_file_set_contents(fx->config, "[ksm]\nbad line \x1b\x01\n", -1, NULL));
    hook_run_text(fx, "web-2", "prepare", xml, &run);
    g_assert_cmpint(run.status, ==, 1);
    assert_clean_lines(run.err);
    hook_run_clear(&run);

    g_autofree char *log = hook_fixture_read_log(fx);
    assert_clean_lines(log);
}

static void expect_prepare_refused(HookFixture *fx, const char *why)
{
    HookRun run = { 0 };
    g_autofree char *web = hook_merge_xml("web-1", U_WEB, "tenant-a");

    hook_run_text(fx, "web-1", "prepare", web, &run);
    if (run.status != 1 || !strstr(run.err, why)) {
        g_error("want a refusal saying '%s', got exit %d:\n%s", why, run.status, run.err);
    }
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 0);
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "0");
    hook_run_clear(&run);
}

/* Finding 9: ksm.conf, which says what root runs, must be root's alone. */
static void test_untrusted_config(HookFixture *fx, gconstpointer data)
{
    g_autofree char *etc = g_path_get_dirname(fx->config);

    if (!need_root()) {
        return;
    }
    g_assert_cmpint(g_chmod(fx->config, 0666), ==, 0);
    expect_prepare_refused(fx, "writable by group or others");
    g_assert_cmpint(g_chmod(fx->config, 0644), ==, 0);

    g_assert_cmpint(chown(fx->config, NOBODY, NOBODY), ==, 0);
    expect_prepare_refused(fx, "owned by uid 65534");
    g_assert_cmpint(chown(fx->config, 0, 0), ==, 0);

    /* Its directory: whoever may write there may replace the file. */
    g_assert_cmpint(g_chmod(etc, 0777), ==, 0);
    expect_prepare_refused(fx, "writable by group or others");
    g_assert_cmpint(g_chmod(etc, 0755), ==, 0);
    g_assert_cmpint(chown(etc, NOBODY, NOBODY), ==, 0);
    expect_prepare_refused(fx, "owned by uid 65534");
    g_assert_cmpint(chown(etc, 0, 0), ==, 0);

    /* A symlink into a directory a user controls. */
    g_autofree char *userdir = g_build_filename(fx->root, "user", NULL);
    g_autofree char *userconf = g_build_filename(userdir, "ksm.conf", NULL);
    g_assert_cmpint(g_mkdir(userdir, 0755), ==, 0);
    g_assert_cmpint(chown(userdir, NOBODY, NOBODY), ==, 0);
    g_assert_true(g_file_set_contents(userconf, "[ksm]\npolicy=permissive\n", -1, NULL));
    g_assert_cmpint(g_unlink(fx->config), ==, 0);
    g_assert_cmpint(symlink(userconf, fx->config), ==, 0);
    expect_prepare_refused(fx, "owned by uid 65534");
}

/* Finding 9: the samepage= binary root runs, and its directories. */
static void test_untrusted_samepage(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *bindir = g_build_filename(fx->root, "bin", NULL);
    g_autofree char *bin = g_build_filename(bindir, "samepage", NULL);
    g_autofree char *lines = g_strdup_printf("scan=tune\nsamepage=%s\n", bin);
    g_autofree char *contents = NULL;
    gsize len;

    if (!need_root()) {
        return;
    }
    g_assert_true(g_file_get_contents(g_getenv("SAMEPAGE_CLI"), &contents, &len, NULL));
    g_assert_cmpint(g_mkdir(bindir, 0777), ==, 0);
    g_assert_cmpint(g_chmod(bindir, 0777), ==, 0);
    g_assert_true(g_file_set_contents(bin, contents, len, NULL));
    g_assert_cmpint(g_chmod(bin, 0755), ==, 0);
    hook_fixture_config(fx, lines);

    static const char *const cases[] = { "dir", "mode", "owner", NULL };
    for (guint i = 0; cases[i]; i++) {
        g_assert_cmpint(g_chmod(bindir, i == 0 ? 0777 : 0755), ==, 0);
        g_assert_cmpint(g_chmod(bin, i == 1 ? 0777 : 0755), ==, 0);
        g_assert_cmpint(chown(bin, i == 2 ? NOBODY : 0, 0), ==, 0);
        hook_fixture_ksm_set(fx, "run", "0");
        g_autofree char *uuid = g_strdup_printf("55555555-5555-5555-5555-%012u", i);
        g_autofree char *xml = hook_merge_xml(cases[i], uuid, "tenant-a");
        hook_run_text(fx, cases[i], "prepare", xml, &run);
        /* The guest starts (ksmd at the manual rate); samepage is not run. */
        g_assert_cmpint(run.status, ==, 0);
        hook_assert_contains(run.err, "is not an executable root may run");
        hook_assert_lacks(run.err, "samepage tune started");
        g_autofree char *pidfile = g_build_filename(fx->state_dir, "tune.pid", NULL);
        g_assert_false(g_file_test(pidfile, G_FILE_TEST_EXISTS));
        hook_run_clear(&run);
        hook_run_text(fx, cases[i], "stopped", xml, &run);
        hook_run_clear(&run);
        g_autofree char *outcome = g_build_filename(fx->state_dir, "last-unmerge.json", NULL);
        g_free(hook_fixture_wait_outcome(fx, 10000));
        g_unlink(outcome);
    }
}

/* Finding 9: log_file is opened with O_NOFOLLOW, never through a planted
 * link, never blocking on a FIFO, never appended to through a hard link. */
static void test_log_file_links(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *target = g_build_filename(fx->root, "precious", NULL);
    g_autofree char *web = hook_merge_xml("web-1", U_WEB, "tenant-a");
    g_autofree char *text = NULL;

    g_assert_true(g_file_set_contents(target, "root's file\n", -1, NULL));
    g_assert_cmpint(symlink(target, fx->log), ==, 0);
    hook_run_text(fx, "web-1", "prepare", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "log_file not written");
    hook_run_clear(&run);
    g_assert_true(g_file_get_contents(target, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "root's file\n");

    /* A hard link to it. */
    g_assert_cmpint(g_unlink(fx->log), ==, 0);
    g_assert_cmpint(link(target, fx->log), ==, 0);
    hook_run_text(fx, "web-1", "started", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    hook_assert_contains(run.err, "hard links");
    hook_run_clear(&run);
    g_free(text);
    g_assert_true(g_file_get_contents(target, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "root's file\n");

    /* A FIFO: the hook must not block on it. */
    g_assert_cmpint(g_unlink(fx->log), ==, 0);
    g_assert_cmpint(mkfifo(fx->log, 0600), ==, 0);
    hook_run_text(fx, "web-1", "started", web, &run);
    g_assert_cmpint(run.status, ==, 0);
    g_assert_cmpint(run.elapsed_ms, <, 3000);
    hook_run_clear(&run);

    /* A file the hook creates is 0600. */
    g_assert_cmpint(g_unlink(fx->log), ==, 0);
    hook_run_text(fx, "web-1", "started", web, &run);
    hook_run_clear(&run);
    GStatBuf st;
    g_assert_cmpint(g_lstat(fx->log, &st), ==, 0);
    g_assert_true(S_ISREG(st.st_mode));
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);
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
    HOOK_TEST("/hook/security/option-like-names", test_option_like_names);
    HOOK_TEST("/hook/security/decoy-uuid", test_decoy_uuid);
    HOOK_TEST("/hook/security/scan-manual", test_scan_manual);
    HOOK_TEST("/hook/security/doctype-refused", test_doctype_refused);
    HOOK_TEST("/hook/security/control-bytes-escaped", test_control_bytes_escaped);
    HOOK_TEST("/hook/security/untrusted-config", test_untrusted_config);
    HOOK_TEST("/hook/security/untrusted-samepage", test_untrusted_samepage);
    HOOK_TEST("/hook/security/log-file-links", test_log_file_links);
    return g_test_run();
}
