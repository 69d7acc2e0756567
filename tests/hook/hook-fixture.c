/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hook-fixture.c: see hook-fixture.h. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "hook-fixture.h"

static const struct {
    const char *name, *value;
} ksm_files[] = {
    { "run", "0" }, { "pages_to_scan", "100" }, { "sleep_millisecs", "20" },
    { "merge_across_nodes", "1" }, { "use_zero_pages", "0" }, { "max_page_sharing", "256" },
    { "advisor_mode", "[none] scan-time" }, { "advisor_max_cpu", "70" },
    { "advisor_target_scan_time", "200" }, { "smart_scan", "1" }, { "pages_shared", "0" }, { "pages_sharing", "0" },
    { "pages_unshared", "0" }, { "pages_volatile", "0" }, { "full_scans", "0" },
    { "ksm_zero_pages", "0" }, { "general_profit", "0" },
};

static void write_file(const char *path, const char *text)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

/* The fixture a failing assertion aborts in, so its tune and tree still go. */
static HookFixture *current;
static void stop_tune(HookFixture *fx);
static void remove_tree(const char *path);

static void on_abort(int sig)
{
    HookFixture *fx = current;

    /* Not async-signal-safe, but the process is dying anyway: better a
     * best-effort cleanup than a samepage tune left running for good. */
    current = NULL;
    if (fx) {
        stop_tune(fx);
        remove_tree(fx->root);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void hook_fixture_setup(HookFixture *fx, gconstpointer data)
{
    fx->root = g_dir_make_tmp("samepage-hook-XXXXXX", NULL);
    g_assert_nonnull(fx->root);
    fx->sysfs = g_build_filename(fx->root, "sys", NULL);
    fx->procfs = g_build_filename(fx->root, "proc", NULL);
    fx->ksm_dir = g_build_filename(fx->sysfs, "kernel", "mm", "ksm", NULL);
    fx->state_dir = g_build_filename(fx->root, "run", "samepage", "hook", NULL);
    fx->lock = g_build_filename(fx->root, "run", "samepage", "ksm.lock", NULL);
    fx->config = g_build_filename(fx->root, "etc", "ksm.conf", NULL);
    fx->log = g_build_filename(fx->root, "hook.log", NULL);
    fx->libvirt_dir = g_build_filename(fx->root, "run", "libvirt", "qemu", NULL);
    g_assert_cmpint(g_mkdir_with_parents(fx->libvirt_dir, 0755), ==, 0);
    for (guint i = 0; i < G_N_ELEMENTS(ksm_files); i++) {
        hook_fixture_ksm_set(fx, ksm_files[i].name, ksm_files[i].value);
    }
    hook_fixture_meminfo(fx, 8 * 1024 * 1024);   /* 8 GiB available */
    hook_fixture_config(fx, "");
    current = fx;
    signal(SIGABRT, on_abort);
}

static void remove_tree(const char *path)
{
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    const char *entry;

    while (dir && (entry = g_dir_read_name(dir))) {
        g_autofree char *child = g_build_filename(path, entry, NULL);
        if (g_file_test(child, G_FILE_TEST_IS_DIR) && !g_file_test(child, G_FILE_TEST_IS_SYMLINK)) {
            remove_tree(child);
        } else {
            g_unlink(child);
        }
    }
    g_rmdir(path);
}

/* A `samepage tune` the hook started (scan=tune) and no stop ended. */
static void stop_tune(HookFixture *fx)
{
    g_autofree char *path = g_build_filename(fx->state_dir, "tune.pid", NULL);
    g_autofree char *text = NULL;
    int pid;

    if (g_file_get_contents(path, &text, NULL, NULL) && sscanf(text, "%d", &pid) == 1 &&
        pid > 1) {
        /* The record outlives a dead tune: kill only a samepage tune. */
        g_autofree char *cmd_path = g_strdup_printf("/proc/%d/cmdline", pid);
        g_autofree char *cmdline = NULL;
        gsize len;
        if (g_file_get_contents(cmd_path, &cmdline, &len, NULL) && len > 0 &&
            strlen(cmdline) + 1 < len && strcmp(cmdline + strlen(cmdline) + 1, "tune") == 0) {
            kill(pid, SIGKILL);
        }
    }
}

void hook_fixture_teardown(HookFixture *fx, gconstpointer data)
{
    current = NULL;
    stop_tune(fx);
    remove_tree(fx->root);
    g_free(fx->root);
    g_free(fx->sysfs);
    g_free(fx->procfs);
    g_free(fx->ksm_dir);
    g_free(fx->state_dir);
    g_free(fx->lock);
    g_free(fx->config);
    g_free(fx->log);
    g_free(fx->libvirt_dir);
}

void hook_fixture_config(HookFixture *fx, const char *lines)
{
    /* scan=manual unless the test says: scan=tune (the default) would start
     * a samepage process for every test. */
    gboolean says_scan = g_str_has_prefix(lines, "scan=") || strstr(lines, "\nscan=");
    g_autofree char *text = g_strdup_printf("[ksm]\nlog_file=%s\nlog_level=debug\n%s%s\n",
                                            fx->log, says_scan ? "" : "scan=manual\n", lines);
    write_file(fx->config, text);
}

void hook_fixture_ksm_set(HookFixture *fx, const char *name, const char *value)
{
    g_autofree char *path = g_build_filename(fx->ksm_dir, name, NULL);
    g_autofree char *text = g_strconcat(value, "\n", NULL);
    write_file(path, text);
}

char *hook_fixture_ksm_get(HookFixture *fx, const char *name)
{
    g_autofree char *path = g_build_filename(fx->ksm_dir, name, NULL);
    char *text = NULL;

    /* A fake knob is written in place (truncate, then write), so a read
     * can meet it empty while a samepage tune or the hook writes it; sysfs
     * has no such moment.  Read again for up to a second. */
    for (int i = 0; i < 100; i++) {
        g_clear_pointer(&text, g_free);
        g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
        if (*g_strstrip(text)) {
            break;
        }
        g_usleep(10 * 1000);
    }
    return text;
}

void hook_fixture_meminfo(HookFixture *fx, guint64 available_kib)
{
    g_autofree char *path = g_build_filename(fx->procfs, "meminfo", NULL);
    g_autofree char *text = g_strdup_printf(
        "MemTotal:       %" G_GUINT64_FORMAT " kB\nMemFree:        %" G_GUINT64_FORMAT
        " kB\nMemAvailable:   %" G_GUINT64_FORMAT " kB\n",
        available_kib * 2, available_kib, available_kib);
    write_file(path, text);
}

void hook_fixture_qemu(HookFixture *fx, pid_t pid, const char *uuid, guint64 start_time)
{
    g_autofree char *dir = g_strdup_printf("%s/%d", fx->procfs, (int)pid);
    g_autofree char *cmdline = g_build_filename(dir, "cmdline", NULL);
    g_autofree char *stat = g_build_filename(dir, "stat", NULL);
    g_autofree char *stat_text = g_strdup_printf(
        "%d (qemu-system-x86) S 1 %d %d 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %" G_GUINT64_FORMAT
        " 0 0\n", (int)pid, (int)pid, (int)pid, start_time);
    GString *argv = g_string_new(NULL);

    g_string_append(argv, "/usr/bin/qemu-system-x86_64");
    g_string_append_c(argv, '\0');
    g_string_append(argv, "-uuid");
    g_string_append_c(argv, '\0');
    g_string_append(argv, uuid);
    g_string_append_c(argv, '\0');
    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    g_assert_true(g_file_set_contents(cmdline, argv->str, argv->len, NULL));
    g_string_free(argv, TRUE);
    write_file(stat, stat_text);
}

void hook_fixture_qemu_exit(HookFixture *fx, pid_t pid)
{
    g_autofree char *dir = g_strdup_printf("%s/%d", fx->procfs, (int)pid);
    remove_tree(dir);
}

/* libvirt's file name for a domain: virPidFileBuildPath XML-escapes the
 * name and drops control characters other than tab, newline and CR. */
static char *libvirt_file(const char *name, const char *suffix)
{
    GString *out = g_string_new(NULL);

    for (const char *p = name; *p; p++) {
        const char *entity = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" :
                             *p == '"' ? "&quot;" : *p == '\'' ? "&apos;" : NULL;
        if (entity) {
            g_string_append(out, entity);
        } else if ((guchar)*p >= 0x20 || *p == '\t' || *p == '\n' || *p == '\r') {
            g_string_append_c(out, *p);
        }
    }
    g_string_append(out, suffix);
    return g_string_free(out, FALSE);
}

void hook_fixture_libvirt_pid(HookFixture *fx, const char *name, pid_t pid)
{
    g_autofree char *file = libvirt_file(name, ".pid");
    g_autofree char *path = g_build_filename(fx->libvirt_dir, file, NULL);
    g_autofree char *text = g_strdup_printf("%d", (int)pid);
    write_file(path, text);
    g_assert_cmpint(g_chmod(path, 0644), ==, 0);
}

void hook_fixture_libvirt_status(HookFixture *fx, const char *name, const char *domain_xml)
{
    g_autofree char *file = libvirt_file(name, ".xml");
    g_autofree char *path = g_build_filename(fx->libvirt_dir, file, NULL);
    g_autofree char *text = g_strdup_printf("<domstatus state='running' reason='booted' "
                                            "pid='1'>\n%s</domstatus>\n", domain_xml);
    write_file(path, text);
    g_assert_cmpint(g_chmod(path, 0600), ==, 0);
}

void hook_fixture_process(HookFixture *fx, pid_t pid, const char *comm,
                          const char *const *argv)
{
    g_autofree char *dir = g_strdup_printf("%s/%d", fx->procfs, (int)pid);
    g_autofree char *cmdline = g_build_filename(dir, "cmdline", NULL);
    g_autofree char *comm_path = g_build_filename(dir, "comm", NULL);
    g_autofree char *stat = g_build_filename(dir, "stat", NULL);
    g_autofree char *comm_text = g_strconcat(comm, "\n", NULL);
    g_autofree char *stat_text = g_strdup_printf(
        "%d (%s) S 1 %d %d 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n", (int)pid, comm,
        (int)pid, (int)pid);
    GString *args = g_string_new(NULL);

    for (guint i = 0; argv[i]; i++) {
        g_string_append(args, argv[i]);
        g_string_append_c(args, '\0');
    }
    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    g_assert_true(g_file_set_contents(cmdline, args->str, args->len, NULL));
    g_string_free(args, TRUE);
    write_file(comm_path, comm_text);
    write_file(stat, stat_text);
}

void hook_run_text(HookFixture *fx, const char *name, const char *op, const char *xml,
                   HookRun *run)
{
    const char *bin = g_getenv("SAMEPAGE_HOOK_BIN");
    g_autoptr(GSubprocessLauncher) launcher =
        g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                  G_SUBPROCESS_FLAGS_STDERR_PIPE);
    g_autoptr(GError) error = NULL;

    g_assert_nonnull(bin);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_SYSFS_ROOT", fx->sysfs, TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_PROCFS_ROOT", fx->procfs, TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_HOOK_STATE_DIR", fx->state_dir, TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_HOOK_CONFIG", fx->config, TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_LOCK", fx->lock, TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_HOOK_SYSLOG", "0", TRUE);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_LIBVIRT_RUN_DIR", fx->libvirt_dir, TRUE);

    gint64 start = g_get_monotonic_time();
    g_autoptr(GSubprocess) proc = g_subprocess_launcher_spawn(launcher, &error, bin, name, op,
                                                              "begin", "-", NULL);
    g_assert_no_error(error);
    /* communicate returns when the hook exited and closed its pipes: a
     * detached child that kept them open would show here as a slow run. */
    g_assert_true(g_subprocess_communicate_utf8(proc, xml ? xml : "", NULL, &run->out,
                                                &run->err, &error));
    g_assert_no_error(error);
    run->elapsed_ms = (g_get_monotonic_time() - start) / 1000;
    run->status = g_subprocess_get_exit_status(proc);
    if (g_test_verbose()) {
        g_printerr("hook %s %s -> %d in %" G_GINT64_FORMAT " ms\n%s", op, name, run->status,
                   run->elapsed_ms, run->err);
    }
}

void hook_run(HookFixture *fx, const char *name, const char *op, const char *xml_file,
              HookRun *run)
{
    g_autofree char *text = NULL;

    if (xml_file) {
        g_autofree char *path = g_test_build_filename(G_TEST_DIST, "xml", xml_file, NULL);
        g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    }
    hook_run_text(fx, name, op, text, run);
}

void hook_run_clear(HookRun *run)
{
    g_free(run->out);
    g_free(run->err);
    memset(run, 0, sizeof(*run));
}

char *hook_fixture_state_file(HookFixture *fx, const char *uuid)
{
    g_autofree char *file = g_strconcat(uuid, ".state", NULL);
    return g_build_filename(fx->state_dir, file, NULL);
}

guint hook_fixture_n_state_files(HookFixture *fx)
{
    g_autoptr(GDir) dir = g_dir_open(fx->state_dir, 0, NULL);
    const char *entry;
    guint n = 0;

    while (dir && (entry = g_dir_read_name(dir))) {
        n += g_str_has_suffix(entry, ".state");
    }
    return n;
}

char *hook_fixture_wait_outcome(HookFixture *fx, gint64 timeout_ms)
{
    g_autofree char *path = g_build_filename(fx->state_dir, "last-unmerge.json", NULL);
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;
    char *text = NULL;

    while (g_get_monotonic_time() < deadline) {
        if (g_file_get_contents(path, &text, NULL, NULL)) {
            return text;
        }
        g_usleep(20 * 1000);
    }
    return NULL;
}

char *hook_fixture_read_log(HookFixture *fx)
{
    char *text = NULL;
    if (!g_file_get_contents(fx->log, &text, NULL, NULL)) {
        return g_strdup("");
    }
    return text;
}

void hook_assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle)) {
        g_error("'%s' not found in:\n%s", needle, haystack);
    }
}

void hook_assert_lacks(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle)) {
        g_error("'%s' should not be in:\n%s", needle, haystack);
    }
}

char *hook_domain_xml(const char *name, const char *uuid, const char *policy,
                      gboolean nosharepages)
{
    g_autofree char *escaped = g_markup_escape_text(name, -1);

    return g_strdup_printf(
        "<domain type='qemu'><name>%s</name><uuid>%s</uuid>%s"
        "<metadata>%s%s%s</metadata></domain>\n", escaped, uuid,
        nosharepages ? "<memoryBacking><nosharepages/></memoryBacking>" : "",
        policy ? "<ksm:policy xmlns:ksm=\"https://samepage.invalid/xmlns/ksm/1\" " : "",
        policy ? policy : "", policy ? "/>" : "");
}

char *hook_merge_xml(const char *name, const char *uuid, const char *group)
{
    g_autofree char *policy = g_strdup_printf("merge=\"yes\" group=\"%s\"", group);

    return hook_domain_xml(name, uuid, policy, FALSE);
}
