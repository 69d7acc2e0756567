/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-cli.c: run the built samepage against a fake sysfs/procfs tree.
 *
 * The tree copies the real layout:
 *   <root>/sys/kernel/mm/ksm/<file>       every file of Linux 6.18, plus
 *                                         two a future kernel might add
 *   <root>/proc/<pid>/{cmdline,comm,stat,ksm_stat,ksm_merging_pages}
 * samepage is driven as a program (exit codes, stdout, stderr), the way
 * operators and scripts use it.  $SAMEPAGE_CLI names the binary.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    char *root;
    char *sysfs;
    char *procfs;
    char *ksm_dir;
} Tree;

/* What the fake 6.18 kernel shows.  Values chosen so derived figures are round. */
static const struct {
    const char *name;
    const char *text;
} ksm_files[] = {
    { "run", "1\n" },
    { "pages_to_scan", "100\n" },
    { "sleep_millisecs", "20\n" },
    { "merge_across_nodes", "1\n" },
    { "use_zero_pages", "0\n" },
    { "max_page_sharing", "256\n" },
    { "stable_node_chains_prune_millisecs", "2000\n" },
    { "smart_scan", "1\n" },
    { "advisor_mode", "[none] scan-time\n" },
    { "advisor_max_cpu", "70\n" },
    { "advisor_target_scan_time", "200\n" },
    { "advisor_min_pages_to_scan", "500\n" },
    { "advisor_max_pages_to_scan", "30000\n" },
    { "pages_shared", "256\n" },
    { "pages_sharing", "2560\n" },
    { "pages_unshared", "1280\n" },
    { "pages_volatile", "64\n" },
    { "full_scans", "7\n" },
    { "stable_node_chains", "0\n" },
    { "stable_node_dups", "0\n" },
    { "pages_scanned", "123456\n" },
    { "pages_skipped", "10\n" },
    { "ksm_zero_pages", "0\n" },
    { "general_profit", "10240000\n" },
    /* Not known to libksm: must still be shown, by name, raw. */
    { "future_counter", "42\n" },
    { "future_mode", "[fast] slow\n" },
};

static void write_file(const char *dir, const char *name, const char *content, gssize len)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *path = g_build_filename(dir, name, NULL);

    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    g_file_set_contents(path, content, len, &error);
    g_assert_no_error(error);
    g_assert_cmpint(g_chmod(path, 0644), ==, 0);
}

static char *read_ksm_file(const Tree *t, const char *name)
{
    g_autofree char *path = g_build_filename(t->ksm_dir, name, NULL);
    char *text = NULL;
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    return text;
}

/* A /proc/PID directory.  cmdline is NUL-separated (cmdline_len bytes). */
static void add_process(const Tree *t, int pid, const char *comm, const char *cmdline,
                        gssize cmdline_len, unsigned long flags, const char *ksm_stat,
                        const char *ksm_merging_pages)
{
    g_autofree char *pid_text = g_strdup_printf("%d", pid);
    g_autofree char *dir = g_build_filename(t->procfs, pid_text, NULL);
    g_autofree char *comm_line = g_strdup_printf("%s\n", comm);
    /* The real layout: pid (comm) state ppid pgrp session tty tpgid flags
     * minflt cminflt majflt cmajflt utime stime ... */
    g_autofree char *stat = g_strdup_printf("%d (%s) S 2 0 0 0 -1 %lu 0 0 0 0 150 50 0 0 "
                                            "20 0 1 0 16 0 0 18446744073709551615 0 0 0 0 "
                                            "0 0 0 2147483647 0 1 0 0 17 0 0 0 0 0 0 0 0 0 "
                                            "0 0 0 0 0\n", pid, comm, flags);

    write_file(dir, "comm", comm_line, -1);
    write_file(dir, "cmdline", cmdline, cmdline_len);
    write_file(dir, "stat", stat, -1);
    if (ksm_stat) {
        write_file(dir, "ksm_stat", ksm_stat, -1);
    }
    if (ksm_merging_pages) {
        write_file(dir, "ksm_merging_pages", ksm_merging_pages, -1);
    }
}

#define PF_KTHREAD 0x00200000UL
#define PF_USER 0x00400100UL

static const char qemu_vm1_cmdline[] =
    "/usr/bin/qemu-system-x86_64\0-name\0guest=vm1,debug-threads=on\0-m\0001024\0";
/* A guest name a Prometheus label must escape: a quote and a backslash. */
static const char qemu_odd_cmdline[] = "qemu-system-aarch64\0-name\0guest=a\"b\\c\0";
static const char qemu_nostat_cmdline[] = "qemu-kvm\0-name\0vm3\0";
static const char shell_cmdline[] = "/bin/bash\0-l\0";
static const char fake_ksmd_cmdline[] = "./ksmd\0";

static void tree_setup(Tree *t, gconstpointer data)
{
    gboolean empty = data != NULL;

    t->root = g_dir_make_tmp("samepage-test-XXXXXX", NULL);
    g_assert_nonnull(t->root);
    /* Readable by all: one test runs samepage as an unprivileged user. */
    g_assert_cmpint(g_chmod(t->root, 0755), ==, 0);
    t->sysfs = g_build_filename(t->root, "sys", NULL);
    t->procfs = g_build_filename(t->root, "proc", NULL);
    t->ksm_dir = g_build_filename(t->sysfs, "kernel", "mm", "ksm", NULL);
    g_assert_cmpint(g_mkdir_with_parents(t->sysfs, 0755), ==, 0);
    g_assert_cmpint(g_mkdir_with_parents(t->procfs, 0755), ==, 0);

    /* Never the real host lock: a real unmerge must not block these tests. */
    g_autofree char *lock = g_build_filename(t->root, "lock", "ksm.lock", NULL);
    g_setenv("SAMEPAGE_LOCK", lock, TRUE);

    if (empty) {
        return;   /* a kernel without CONFIG_KSM */
    }
    for (guint i = 0; i < G_N_ELEMENTS(ksm_files); i++) {
        write_file(t->ksm_dir, ksm_files[i].name, ksm_files[i].text, -1);
    }
    add_process(t, 37, "ksmd", "", 0, PF_KTHREAD | 0x40, NULL, NULL);
    add_process(t, 38, "ksmd", fake_ksmd_cmdline, sizeof(fake_ksmd_cmdline) - 1, PF_USER,
                NULL, NULL);
    add_process(t, 100, "bash", shell_cmdline, sizeof(shell_cmdline) - 1, PF_USER,
                "ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\n"
                "ksm_process_profit 0\nksm_merge_any: no\nksm_mergeable: no\n", "0\n");
    add_process(t, 4242, "qemu-system-x86", qemu_vm1_cmdline, sizeof(qemu_vm1_cmdline) - 1,
                PF_USER,
                "ksm_rmap_items 3000\nksm_zero_pages 12\nksm_merging_pages 1000\n"
                "ksm_process_profit 3904000\nksm_merge_any: no\nksm_mergeable: yes\n"
                "ksm_future_line 5\n", "1000\n");
    /* An older kernel: ksm_merging_pages only. */
    add_process(t, 4243, "qemu-system-aar", qemu_odd_cmdline, sizeof(qemu_odd_cmdline) - 1,
                PF_USER, NULL, "7\n");
    /* No per-process KSM files at all: listed with the reason, never fatal. */
    add_process(t, 4244, "qemu-kvm", qemu_nostat_cmdline, sizeof(qemu_nostat_cmdline) - 1,
                PF_USER, NULL, NULL);
}

static gboolean remove_tree(const char *path)
{
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    if (dir) {
        const char *name;
        while ((name = g_dir_read_name(dir))) {
            g_autofree char *child = g_build_filename(path, name, NULL);
            if (g_file_test(child, G_FILE_TEST_IS_DIR) && !g_file_test(child, G_FILE_TEST_IS_SYMLINK)) {
                remove_tree(child);
            } else {
                g_unlink(child);
            }
        }
    }
    return g_rmdir(path) == 0 || g_unlink(path) == 0;
}

static void tree_teardown(Tree *t, gconstpointer data)
{
    remove_tree(t->root);
    g_free(t->root);
    g_free(t->sysfs);
    g_free(t->procfs);
    g_free(t->ksm_dir);
}

static const char *cli_path(void)
{
    const char *path = g_getenv("SAMEPAGE_CLI");
    g_assert_nonnull(path);
    return path;
}

/*
 * Run samepage with the fake roots and the given arguments (NULL-terminated).
 * prefix (may be NULL) is prepended to the command, e.g. setpriv.
 */
static int run_cli_argv(const Tree *t, const char *const *prefix, const char *const *args,
                           char **out, char **err)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) error = NULL;
    g_autofree char *sysfs_arg = g_strdup_printf("--sysfs-root=%s", t->sysfs);
    g_autofree char *procfs_arg = g_strdup_printf("--procfs-root=%s", t->procfs);
    char *stdout_text = NULL, *stderr_text = NULL;
    int wait_status = 0;

    for (guint i = 0; prefix && prefix[i]; i++) {
        g_ptr_array_add(argv, (char *)prefix[i]);
    }
    g_ptr_array_add(argv, (char *)cli_path());
    g_ptr_array_add(argv, sysfs_arg);
    g_ptr_array_add(argv, procfs_arg);
    for (guint i = 0; args[i]; i++) {
        g_ptr_array_add(argv, (char *)args[i]);
    }
    g_ptr_array_add(argv, NULL);

    g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                 &stdout_text, &stderr_text, &wait_status, &error);
    g_assert_no_error(error);
    g_test_message("samepage %s ... -> status %d\nstdout:\n%s\nstderr:\n%s",
                   args[0] ? args[0] : "", wait_status, stdout_text, stderr_text);
    g_assert_true(WIFEXITED(wait_status));
    if (out) {
        *out = stdout_text;
    } else {
        g_free(stdout_text);
    }
    if (err) {
        *err = stderr_text;
    } else {
        g_free(stderr_text);
    }
    return WEXITSTATUS(wait_status);
}

#define run_cli(t, out, err, ...) \
    run_cli_argv((t), NULL, (const char *const[]){ __VA_ARGS__, NULL }, (out), (err))

/* Errors are one line, "samepage: <message>". */
static void assert_one_error_line(const char *err)
{
    g_assert_true(g_str_has_prefix(err, "samepage: "));
    const char *newline = strchr(err, '\n');
    g_assert_nonnull(newline);
    g_assert_cmpstr(newline + 1, ==, "");
}

static void test_status(Tree *t, gconstpointer data)
{
    g_autofree char *out = NULL;

    g_assert_cmpint(run_cli(t, &out, NULL, "status"), ==, 0);
    g_assert_nonnull(strstr(out, "running"));
    /* 100 pages every 20 ms */
    g_assert_nonnull(strstr(out, "5000 pages/s"));
    /* sharing 2560 / shared 256; waste 1280 / 2560 */
    g_assert_nonnull(strstr(out, "Sharing ratio:  10.00"));
    g_assert_nonnull(strstr(out, "Waste ratio:    0.50"));
    g_assert_nonnull(strstr(out, "Full scans:     7"));
    g_assert_nonnull(strstr(out, "Advisor:        none"));
    if (sysconf(_SC_PAGESIZE) == 4096) {
        /* 2560 pages of 4 KiB */
        g_assert_nonnull(strstr(out, "Saved memory:   10.0 MiB"));
    }

    /* run=2 reads as unmerging, run=0 as stopped. */
    write_file(t->ksm_dir, "run", "2\n", -1);
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(run_cli(t, &out, NULL, "status"), ==, 0);
    g_assert_nonnull(strstr(out, "unmerging"));
    write_file(t->ksm_dir, "run", "0\n", -1);
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(run_cli(t, &out, NULL, "status"), ==, 0);
    g_assert_nonnull(strstr(out, "stopped"));
}

static JsonObject *find_process(JsonArray *processes, gint64 pid)
{
    for (guint i = 0; i < json_array_get_length(processes); i++) {
        JsonObject *proc = json_array_get_object_element(processes, i);
        if (json_object_get_int_member(proc, "pid") == pid) {
            return proc;
        }
    }
    return NULL;
}

static void test_stats_json(Tree *t, gconstpointer data)
{
    g_autofree char *out = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;

    g_assert_cmpint(run_cli(t, &out, NULL, "stats", "--json"), ==, 0);
    json_parser_load_from_data(parser, out, -1, &error);
    g_assert_no_error(error);
    JsonObject *root = json_node_get_object(json_parser_get_root(parser));
    JsonObject *knobs = json_object_get_object_member(root, "knobs");
    JsonObject *counters = json_object_get_object_member(root, "counters");
    JsonObject *unknown = json_object_get_object_member(root, "unknown");
    g_assert_nonnull(knobs);
    g_assert_nonnull(counters);
    g_assert_nonnull(unknown);

    /* Every file of the tree appears exactly once, known or not. */
    guint total = json_object_get_size(knobs) + json_object_get_size(counters) +
                  json_object_get_size(unknown);
    g_assert_cmpuint(total, ==, G_N_ELEMENTS(ksm_files));
    for (guint i = 0; i < G_N_ELEMENTS(ksm_files); i++) {
        const char *name = ksm_files[i].name;
        g_test_message("looking for %s", name);
        g_assert_true(json_object_has_member(knobs, name) ||
                      json_object_has_member(counters, name) ||
                      json_object_has_member(unknown, name));
    }
    g_assert_cmpint(json_object_get_int_member(counters, "pages_sharing"), ==, 2560);
    g_assert_cmpint(json_object_get_int_member(knobs, "pages_to_scan"), ==, 100);
    g_assert_cmpstr(json_object_get_string_member(knobs, "advisor_mode"), ==, "none");
    g_assert_cmpstr(json_object_get_string_member(unknown, "future_counter"), ==, "42");
    g_assert_cmpstr(json_object_get_string_member(unknown, "future_mode"), ==, "[fast] slow");

    JsonObject *derived = json_object_get_object_member(root, "derived");
    g_assert_cmpfloat_with_epsilon(json_object_get_double_member(derived, "sharing_ratio"),
                                   10.0, 1e-9);
    g_assert_cmpint(json_object_get_int_member(derived, "saved_bytes"), ==,
                    2560 * sysconf(_SC_PAGESIZE));

    /* The kernel thread, not the user process that calls itself ksmd. */
    JsonObject *ksmd = json_object_get_object_member(root, "ksmd");
    g_assert_nonnull(ksmd);
    g_assert_cmpint(json_object_get_int_member(ksmd, "pid"), ==, 37);

    JsonArray *processes = json_object_get_array_member(root, "processes");
    g_assert_cmpuint(json_array_get_length(processes), ==, 3);   /* not bash, not ksmd */
    JsonObject *vm1 = find_process(processes, 4242);
    g_assert_nonnull(vm1);
    g_assert_cmpstr(json_object_get_string_member(vm1, "guest"), ==, "vm1");
    g_assert_cmpstr(json_object_get_string_member(vm1, "exe"), ==, "qemu-system-x86_64");
    JsonObject *stat = json_object_get_object_member(vm1, "ksm_stat");
    g_assert_cmpint(json_object_get_int_member(stat, "ksm_merging_pages"), ==, 1000);
    g_assert_cmpint(json_object_get_int_member(stat, "ksm_rmap_items"), ==, 3000);
    g_assert_cmpint(json_object_get_int_member(stat, "ksm_zero_pages"), ==, 12);
    g_assert_cmpint(json_object_get_int_member(stat, "ksm_process_profit"), ==, 3904000);
    g_assert_true(json_object_get_boolean_member(stat, "ksm_mergeable"));
    g_assert_false(json_object_get_boolean_member(stat, "ksm_merge_any"));

    JsonObject *odd = find_process(processes, 4243);
    g_assert_nonnull(odd);
    g_assert_cmpstr(json_object_get_string_member(odd, "guest"), ==, "a\"b\\c");
    stat = json_object_get_object_member(odd, "ksm_stat");
    g_assert_cmpint(json_object_get_int_member(stat, "ksm_merging_pages"), ==, 7);

    JsonObject *nostat = find_process(processes, 4244);
    g_assert_nonnull(nostat);
    g_assert_true(json_object_has_member(nostat, "error"));
}

/* Metric and label names of the exposition format. */
#define NAME_RE "[a-zA-Z_:][a-zA-Z0-9_:]*"
#define LABEL_RE "[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\\n]|\\\\[\\\\\"n])*\""

static void test_stats_prometheus(Tree *t, gconstpointer data)
{
    g_autofree char *out = NULL;
    g_autoptr(GRegex) help_re = g_regex_new("^# HELP (" NAME_RE ") .+$", 0, 0, NULL);
    g_autoptr(GRegex) type_re = g_regex_new("^# TYPE (" NAME_RE ") (counter|gauge|untyped)$",
                                            0, 0, NULL);
    g_autoptr(GRegex) sample_re = g_regex_new("^(" NAME_RE ")(\\{" LABEL_RE "(?:," LABEL_RE
                                              ")*\\})? (\\S+)$", 0, 0, NULL);
    g_autoptr(GHashTable) helped = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_autoptr(GHashTable) typed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    g_autoptr(GHashTable) finished = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_autofree char *current = NULL;
    guint samples = 0;

    g_assert_cmpint(run_cli(t, &out, NULL, "stats", "--prometheus"), ==, 0);
    g_assert_true(g_str_has_suffix(out, "\n"));
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
    for (guint i = 0; lines[i] && lines[i][0]; i++) {
        const char *line = lines[i];
        g_autoptr(GMatchInfo) match = NULL;
        g_test_message("%s", line);

        if (g_regex_match(help_re, line, 0, &match)) {
            g_autofree char *name = g_match_info_fetch(match, 1);
            g_assert_false(g_hash_table_contains(helped, name));   /* one HELP per family */
            g_assert_false(g_hash_table_contains(finished, name)); /* families not split */
            if (current) {
                g_hash_table_add(finished, g_steal_pointer(&current));
            }
            current = g_strdup(name);
            g_hash_table_add(helped, g_steal_pointer(&name));
            continue;
        }
        g_clear_pointer(&match, g_match_info_free);
        if (g_regex_match(type_re, line, 0, &match)) {
            g_autofree char *name = g_match_info_fetch(match, 1);
            g_assert_cmpstr(name, ==, current);   /* TYPE right after its HELP */
            g_assert_false(g_hash_table_contains(typed, name));
            g_hash_table_insert(typed, g_steal_pointer(&name), g_match_info_fetch(match, 2));
            continue;
        }
        g_clear_pointer(&match, g_match_info_free);
        g_assert_true(g_regex_match(sample_re, line, 0, &match));
        g_autofree char *name = g_match_info_fetch(match, 1);
        g_autofree char *value = g_match_info_fetch(match, 3);
        /* Every sample belongs to the family announced just before it. */
        g_assert_cmpstr(name, ==, current);
        g_assert_true(g_hash_table_contains(typed, name));
        const char *type = g_hash_table_lookup(typed, name);
        /* Conventions: counters end in _total, gauges never do. */
        g_assert_cmpint(g_str_has_suffix(name, "_total"), ==, strcmp(type, "counter") == 0);
        char *end = NULL;
        g_ascii_strtod(value, &end);
        g_assert_true(end && *end == '\0' && end != value);
        samples++;
    }
    g_assert_cmpuint(samples, >, 30);

    g_assert_nonnull(strstr(out, "\n# TYPE ksm_pages_sharing gauge\nksm_pages_sharing 2560\n"));
    g_assert_nonnull(strstr(out, "\n# TYPE ksm_full_scans_total counter\nksm_full_scans_total 7\n"));
    g_assert_nonnull(strstr(out, "\nksm_sleep_seconds 0.02\n"));
    g_assert_nonnull(strstr(out, "\nksm_saved_bytes "));
    g_assert_nonnull(strstr(out, "\nksm_advisor_mode{mode=\"none\"} 1\n"));
    g_assert_nonnull(strstr(out, "\nksm_unknown_file_value{file=\"future_counter\"} 42\n"));
    g_assert_nonnull(strstr(out, "\nksm_unknown_file_info{file=\"future_mode\",value=\"[fast] slow\"} 1\n"));
    g_assert_nonnull(strstr(out, "\nsamepage_process_ksm_merging_pages{pid=\"4242\",guest=\"vm1\"} 1000\n"));
    /* The label value escapes the quote and the backslash. */
    g_assert_nonnull(strstr(out, "\nsamepage_process_ksm_merging_pages{pid=\"4243\",guest=\"a\\\"b\\\\c\"} 7\n"));
    g_assert_nonnull(strstr(out, "\n# TYPE ksm_ksmd_cpu_seconds_total counter\nksm_ksmd_cpu_seconds_total "));
}

static void test_stats_table(Tree *t, gconstpointer data)
{
    g_autofree char *out = NULL;

    g_assert_cmpint(run_cli(t, &out, NULL, "stats"), ==, 0);
    for (guint i = 0; i < G_N_ELEMENTS(ksm_files); i++) {
        g_assert_nonnull(strstr(out, ksm_files[i].name));
    }
    g_assert_nonnull(strstr(out, "[fast] slow"));
    g_assert_nonnull(strstr(out, "vm1"));
    g_assert_nonnull(strstr(out, "4242"));

    /* --json and --prometheus together is a usage error. */
    g_autofree char *err = NULL;
    g_assert_cmpint(run_cli(t, NULL, &err, "stats", "--json", "--prometheus"), ==, 2);
    assert_one_error_line(err);
}

/* 64 QEMU processes, with figures that differ per guest. */
#define MANY_QEMUS 64
#define MANY_FIRST_PID 5000

static gint64 many_merging(guint i) { return 100 + 3 * (gint64)i; }
static gint64 many_zero(guint i) { return i % 5; }
static gint64 many_rmap(guint i) { return many_merging(i) + many_zero(i) + 50 + i; }

/* Every QEMU's part of saved, in bytes, rounded to the nearest (docs/glossary.md):
 * (zero + merging * sharing / (shared + sharing)) * page size, in integers. */
static gint64 expected_saved(gint64 merging, gint64 zero, gint64 shared, gint64 sharing)
{
    gint64 ps = sysconf(_SC_PAGESIZE);
    gint64 den = shared + sharing;
    gint64 num = (zero * den + merging * sharing) * ps;
    return (2 * num + den) / (2 * den);
}

/* cli/util.c's cli_format_bytes, restated: what the table's SAVED column shows. */
static char *format_bytes(gint64 bytes)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
    if (bytes < 1024) {
        return g_strdup_printf("%" G_GINT64_FORMAT " B", bytes);
    }
    double value = (double)bytes / 1024.0;
    guint unit = 0;
    while (value >= 1024.0 && unit + 1 < G_N_ELEMENTS(units)) {
        value /= 1024.0;
        unit++;
    }
    return g_strdup_printf("%.1f %s", value, units[unit]);
}

/* Names of the files opened under the watched directories, "PID/name". */
static void read_opens(int fd, GHashTable *wd_pid, GHashTable *opened)
{
    char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;

    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            g_assert_false(ev->mask & IN_Q_OVERFLOW);
            if (ev->len > 0) {
                int pid = GPOINTER_TO_INT(g_hash_table_lookup(wd_pid, GINT_TO_POINTER(ev->wd)));
                g_hash_table_add(opened, g_strdup_printf("%d/%s", pid, ev->name));
            }
            p += sizeof(*ev) + ev->len;
        }
    }
    g_assert_true(n < 0 && errno == EAGAIN);
}

static void test_stats_many_qemus(Tree *t, gconstpointer data)
{
    gint64 ps = sysconf(_SC_PAGESIZE);
    /* The three QEMUs of the tree: 4242 (1000 merging, 12 zero), 4243 (7), 4244 (none). */
    gint64 total_merging = 1000 + 7, total_zero = 12;
    int inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    g_autoptr(GHashTable) wd_pid = g_hash_table_new(NULL, NULL);
    g_autoptr(GHashTable) opened = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

    g_assert_cmpint(inotify, >=, 0);
    for (guint i = 0; i < MANY_QEMUS; i++) {
        int pid = MANY_FIRST_PID + i;
        g_autofree char *name = g_strdup_printf("guest=vm%02u,debug-threads=on", i);
        g_autofree char *cmdline = g_strdup_printf("/usr/bin/qemu-system-x86_64%c-name%c%s%c"
                                                   "-m%c64M", 0, 0, name, 0, 0);
        gsize cmdline_len = strlen("/usr/bin/qemu-system-x86_64 -name  -m 64M") + strlen(name) + 1;
        g_autofree char *stat = g_strdup_printf(
            "ksm_rmap_items %" G_GINT64_FORMAT "\nksm_zero_pages %" G_GINT64_FORMAT "\n"
            "ksm_merging_pages %" G_GINT64_FORMAT "\nksm_process_profit %" G_GINT64_FORMAT "\n"
            "ksm_merge_any: no\nksm_mergeable: yes\n", many_rmap(i), many_zero(i),
            many_merging(i), (many_merging(i) + many_zero(i)) * ps - many_rmap(i) * 64);
        g_autofree char *merging = g_strdup_printf("%" G_GINT64_FORMAT "\n", many_merging(i));
        add_process(t, pid, "qemu-system-x86", cmdline, cmdline_len, PF_USER, stat, merging);
        total_merging += many_merging(i);
        total_zero += many_zero(i);

        /* What costs a page-table walk per guest: unreadable to anyone but root,
         * and not what a parser expects; inotify tells whether root opened them. */
        g_autofree char *pid_text = g_strdup_printf("%d", pid);
        g_autofree char *dir = g_build_filename(t->procfs, pid_text, NULL);
        write_file(dir, "smaps", "not smaps\n", -1);
        write_file(dir, "smaps_rollup", "not smaps\n", -1);
        write_file(dir, "pagemap", "not pagemap", -1);
        for (const char *const *f = (const char *const[]){ "smaps", "smaps_rollup", "pagemap",
                                                           NULL }; *f; f++) {
            g_autofree char *path = g_build_filename(dir, *f, NULL);
            g_assert_cmpint(g_chmod(path, 0), ==, 0);
        }
        int wd = inotify_add_watch(inotify, dir, IN_OPEN);
        g_assert_cmpint(wd, >=, 0);
        g_hash_table_insert(wd_pid, GINT_TO_POINTER(wd), GINT_TO_POINTER(pid));
    }
    /* A consistent host: every mapping of a KSM page is some process's merging page. */
    gint64 shared = total_merging / 4, sharing = total_merging - shared;
    g_autofree char *shared_text = g_strdup_printf("%" G_GINT64_FORMAT "\n", shared);
    g_autofree char *sharing_text = g_strdup_printf("%" G_GINT64_FORMAT "\n", sharing);
    g_autofree char *zero_text = g_strdup_printf("%" G_GINT64_FORMAT "\n", total_zero);
    write_file(t->ksm_dir, "pages_shared", shared_text, -1);
    write_file(t->ksm_dir, "pages_sharing", sharing_text, -1);
    write_file(t->ksm_dir, "ksm_zero_pages", zero_text, -1);

    /* JSON: every guest's merging pages, zero pages and saved bytes. */
    g_autofree char *out = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;
    g_assert_cmpint(run_cli(t, &out, NULL, "stats", "--json"), ==, 0);
    json_parser_load_from_data(parser, out, -1, &error);
    g_assert_no_error(error);
    JsonObject *root = json_node_get_object(json_parser_get_root(parser));
    JsonArray *processes = json_object_get_array_member(root, "processes");
    g_assert_cmpuint(json_array_get_length(processes), ==, MANY_QEMUS + 3);
    gint64 host_saved = json_object_get_int_member(json_object_get_object_member(root, "derived"),
                                                   "saved_bytes");
    g_assert_cmpint(host_saved, ==, (sharing + total_zero) * ps);
    gint64 sum_saved = 0;
    for (guint i = 0; i < json_array_get_length(processes); i++) {
        JsonObject *proc = json_array_get_object_element(processes, i);
        if (json_object_has_member(proc, "saved_bytes")) {
            sum_saved += json_object_get_int_member(proc, "saved_bytes");
        }
    }
    for (guint i = 0; i < MANY_QEMUS; i++) {
        JsonObject *proc = find_process(processes, MANY_FIRST_PID + i);
        g_autofree char *guest = g_strdup_printf("vm%02u", i);
        g_assert_nonnull(proc);
        g_assert_cmpstr(json_object_get_string_member(proc, "guest"), ==, guest);
        JsonObject *stat = json_object_get_object_member(proc, "ksm_stat");
        g_assert_cmpint(json_object_get_int_member(stat, "ksm_merging_pages"), ==, many_merging(i));
        g_assert_cmpint(json_object_get_int_member(stat, "ksm_zero_pages"), ==, many_zero(i));
        g_assert_cmpint(json_object_get_int_member(stat, "ksm_rmap_items"), ==, many_rmap(i));
        g_assert_cmpint(json_object_get_int_member(proc, "saved_bytes"), ==,
                        expected_saved(many_merging(i), many_zero(i), shared, sharing));
    }
    /* The older kernel's QEMU (ksm_merging_pages only) has its part too; the
     * one without figures has none. */
    g_assert_cmpint(json_object_get_int_member(find_process(processes, 4243), "saved_bytes"), ==,
                    expected_saved(7, 0, shared, sharing));
    g_assert_false(json_object_has_member(find_process(processes, 4244), "saved_bytes"));
    /* The parts add up to the host's saved bytes (each part rounded to a byte). */
    g_assert_cmpint(ABS(sum_saved - host_saved), <=, MANY_QEMUS + 3);

    /* Prometheus: the same figures, one series per guest. */
    g_autofree char *prom = NULL;
    g_assert_cmpint(run_cli(t, &prom, NULL, "stats", "--prometheus"), ==, 0);
    g_assert_nonnull(strstr(prom, "\n# TYPE samepage_process_ksm_saved_bytes gauge\n"));
    for (guint i = 0; i < MANY_QEMUS; i++) {
        g_autofree char *labels = g_strdup_printf("{pid=\"%u\",guest=\"vm%02u\"}",
                                                  MANY_FIRST_PID + i, i);
        g_autofree char *merging = g_strdup_printf(
            "\nsamepage_process_ksm_merging_pages%s %" G_GINT64_FORMAT "\n", labels,
            many_merging(i));
        g_autofree char *zero = g_strdup_printf(
            "\nsamepage_process_ksm_zero_pages%s %" G_GINT64_FORMAT "\n", labels, many_zero(i));
        g_autofree char *saved = g_strdup_printf(
            "\nsamepage_process_ksm_saved_bytes%s %" G_GINT64_FORMAT "\n", labels,
            expected_saved(many_merging(i), many_zero(i), shared, sharing));
        g_assert_nonnull(strstr(prom, merging));
        g_assert_nonnull(strstr(prom, zero));
        g_assert_nonnull(strstr(prom, saved));
    }

    /* The table: one row per guest, its merging and zero pages and its saved size. */
    g_autofree char *table = NULL;
    g_assert_cmpint(run_cli(t, &table, NULL, "stats"), ==, 0);
    g_assert_nonnull(strstr(table, " SAVED "));
    for (guint i = 0; i < MANY_QEMUS; i++) {
        g_autofree char *size = format_bytes(expected_saved(many_merging(i), many_zero(i),
                                                            shared, sharing));
        g_autofree char *guest = g_strdup_printf("vm%02u", i);
        g_autofree char *row = g_strdup_printf("  %8u  %-24s %14" G_GINT64_FORMAT " %12"
                                               G_GINT64_FORMAT " %12s %12" G_GINT64_FORMAT " ",
                                               MANY_FIRST_PID + i, guest, many_merging(i),
                                               many_zero(i), size, many_rmap(i));
        g_assert_nonnull(strstr(table, row));
    }

    /* Per process only cmdline and ksm_stat (comm, stat: the ksmd search);
     * never smaps or pagemap.  The watch sees the reads it allows, so it can fail. */
    read_opens(inotify, wd_pid, opened);
    close(inotify);
    for (guint i = 0; i < MANY_QEMUS; i++) {
        for (const char *const *f = (const char *const[]){ "cmdline", "ksm_stat", NULL }; *f;
             f++) {
            g_autofree char *key = g_strdup_printf("%u/%s", MANY_FIRST_PID + i, *f);
            g_assert_true(g_hash_table_contains(opened, key));
        }
        for (const char *const *f = (const char *const[]){ "smaps", "smaps_rollup", "pagemap",
                                                           NULL }; *f; f++) {
            g_autofree char *key = g_strdup_printf("%u/%s", MANY_FIRST_PID + i, *f);
            g_assert_false(g_hash_table_contains(opened, key));
        }
    }
}

static void test_set_good(Tree *t, gconstpointer data)
{
    g_autofree char *out = NULL;

    g_assert_cmpint(run_cli(t, &out, NULL, "set", "pages_to_scan=500", "sleep_millisecs=50",
                               "advisor_mode=scan-time"), ==, 0);
    g_assert_nonnull(strstr(out, "pages_to_scan: 100 -> 500\n"));
    g_assert_nonnull(strstr(out, "sleep_millisecs: 20 -> 50\n"));
    g_assert_nonnull(strstr(out, "advisor_mode: none -> scan-time\n"));

    g_autofree char *pages = read_ksm_file(t, "pages_to_scan");
    g_autofree char *sleep_ms = read_ksm_file(t, "sleep_millisecs");
    g_autofree char *advisor = read_ksm_file(t, "advisor_mode");
    g_assert_cmpint(g_ascii_strtoll(pages, NULL, 10), ==, 500);
    g_assert_cmpint(g_ascii_strtoll(sleep_ms, NULL, 10), ==, 50);
    g_assert_true(g_str_has_prefix(advisor, "scan-time"));
}

/* Snapshot every file of the tree, to prove a refused set wrote nothing. */
static GHashTable *ksm_dir_contents(const Tree *t)
{
    GHashTable *contents = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    for (guint i = 0; i < G_N_ELEMENTS(ksm_files); i++) {
        g_hash_table_insert(contents, g_strdup(ksm_files[i].name),
                            read_ksm_file(t, ksm_files[i].name));
    }
    return contents;
}

static void assert_unchanged(const Tree *t, GHashTable *before)
{
    g_autoptr(GHashTable) after = ksm_dir_contents(t);
    GHashTableIter iter;
    gpointer name, text;

    g_hash_table_iter_init(&iter, before);
    while (g_hash_table_iter_next(&iter, &name, &text)) {
        g_assert_cmpstr(g_hash_table_lookup(after, name), ==, text);
    }
}

static void test_set_bad(Tree *t, gconstpointer data)
{
    g_autoptr(GHashTable) before = ksm_dir_contents(t);
    static const struct {
        const char *first, *second;
        const char *must_name;
    } cases[] = {
        { "pages_to_scan=500", "sleep_millisecs=abc", "sleep_millisecs" },   /* not an integer */
        { "pages_to_scan=500", "run=7", "run" },                           /* out of range */
        { "sleep_millisecs=50", "max_page_sharing=1", "max_page_sharing" },
        { "pages_to_scan=500", "advisor_max_cpu=101", "advisor_max_cpu" },
        { "pages_to_scan=500", "sleep_millisecs=12abc", "sleep_millisecs" },
        { "pages_to_scan=500", "no_such_knob=1", "no_such_knob" },           /* unknown */
        { "pages_to_scan=500", "pages_shared=1", "pages_shared" },           /* a counter */
        { "pages_to_scan=500", "advisor_mode=fastest", "advisor_mode" },
        { "pages_to_scan=500", "sleep_millisecs", "sleep_millisecs" },       /* no '=' */
        { "pages_to_scan=500", "pages_to_scan=600", "pages_to_scan" },       /* twice */
    };

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *err = NULL;
        g_assert_cmpint(run_cli(t, NULL, &err, "set", cases[i].first, cases[i].second), ==, 2);
        assert_one_error_line(err);
        g_assert_nonnull(strstr(err, cases[i].must_name));
        assert_unchanged(t, before);
    }

    /* The range is named for out-of-range values. */
    g_autofree char *err = NULL;
    g_assert_cmpint(run_cli(t, NULL, &err, "set", "advisor_max_cpu=101"), ==, 2);
    g_assert_nonnull(strstr(err, "1..100"));

    /* No pairs at all. */
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(run_cli(t, NULL, &err, "set"), ==, 2);
    assert_one_error_line(err);
}

static void test_set_not_root(Tree *t, gconstpointer data)
{
    g_autofree char *setpriv = g_find_program_in_path("setpriv");

    if (geteuid() != 0 || !setpriv) {
        g_test_skip("needs root and setpriv to run samepage as another user");
        return;
    }
    g_autoptr(GHashTable) before = ksm_dir_contents(t);
    const char *const prefix[] = { setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                                   NULL };
    const char *const args[] = { "set", "pages_to_scan=500", NULL };
    g_autofree char *err = NULL;
    g_autofree char *out = NULL;

    int status = run_cli_argv(t, prefix, args, &out, &err);
    if (status == 126 || status == 127 || strstr(err, "setpriv")) {
        g_test_skip("setpriv could not run samepage as nobody here");
        return;
    }
    g_assert_cmpint(status, ==, 1);
    assert_one_error_line(err);
    g_assert_nonnull(strstr(err, "root"));
    assert_unchanged(t, before);
}

static void test_no_ksm(Tree *t, gconstpointer data)
{
    static const char *const commands[][3] = {
        { "status", NULL },
        { "stats", NULL },
        { "stats", "--json" },
        { "stats", "--prometheus" },
        { "watch", "--count=1" },
        { "set", "run=1" },
    };

    for (guint i = 0; i < G_N_ELEMENTS(commands); i++) {
        g_autofree char *out = NULL;
        g_autofree char *err = NULL;
        const char *const args[] = { commands[i][0], commands[i][1], NULL };
        g_assert_cmpint(run_cli_argv(t, NULL, args, &out, &err), ==, 3);
        assert_one_error_line(err);
        g_assert_nonnull(strstr(err, "KSM"));
        g_assert_cmpstr(out, ==, "");
    }
}

static void test_usage(Tree *t, gconstpointer data)
{
    static const char *const commands[] = { "status", "stats", "set", "watch" };
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;

    g_assert_cmpint(run_cli(t, &out, NULL, "--help"), ==, 0);
    g_assert_nonnull(strstr(out, "Exit status"));
    for (guint i = 0; i < G_N_ELEMENTS(commands); i++) {
        g_clear_pointer(&out, g_free);
        g_assert_cmpint(run_cli(t, &out, NULL, commands[i], "--help"), ==, 0);
        g_assert_nonnull(strstr(out, commands[i]));
        g_assert_nonnull(strstr(out, "--sysfs-root"));
    }
    g_assert_cmpint(run_cli(t, NULL, &err, "frobnicate"), ==, 2);
    assert_one_error_line(err);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(run_cli(t, NULL, &err, "stats", "--no-such-option"), ==, 2);
    assert_one_error_line(err);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(run_cli(t, NULL, &err, "status", "extra"), ==, 2);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(run_cli(t, NULL, &err, "watch", "--interval=0"), ==, 2);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(run_cli(t, NULL, &err, "watch", "--count=-1"), ==, 2);
    /* No command at all. */
    const char *const none[] = { NULL };
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(run_cli_argv(t, NULL, none, NULL, &err), ==, 2);
}

static void test_watch_count(Tree *t, gconstpointer data)
{
    g_autofree char *out = NULL;

    /* stdout is a pipe here: plain blocks, no terminal control sequences. */
    g_assert_cmpint(run_cli(t, &out, NULL, "watch", "--interval=0.05", "--count=3"), ==, 0);
    g_assert_null(strchr(out, '\033'));
    guint blocks = 0;
    for (const char *p = out; (p = strstr(p, "samepage watch:")); p++) {
        blocks++;
    }
    g_assert_cmpuint(blocks, ==, 3);
    g_assert_nonnull(strstr(out, "Merge rate     +0.0 pages/s"));
    g_assert_nonnull(strstr(out, "Full scans/s   0.000"));
    /* The kernel thread (pid 37), not the user process named ksmd (38). */
    g_assert_nonnull(strstr(out, "ksmd CPU       0.0 % (pid 37)"));
}

static void test_watch_sigint(Tree *t, gconstpointer data)
{
    g_autofree char *sysfs_arg = g_strdup_printf("--sysfs-root=%s", t->sysfs);
    g_autofree char *procfs_arg = g_strdup_printf("--procfs-root=%s", t->procfs);
    const char *argv[] = { cli_path(), sysfs_arg, procfs_arg, "watch", "--interval=0.1", NULL };
    g_autoptr(GError) error = NULL;
    GPid pid;
    int out_fd;

    g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                             &pid, NULL, &out_fd, NULL, &error);
    g_assert_no_error(error);
    /* Ctrl-C once it has drawn its first frame: its handler is in place by
     * then.  (A fixed 400 ms was too short under TCG, where loading GLib
     * alone takes longer, and SIGINT then killed it before the handler.) */
    GString *seen = g_string_new(NULL);
    gint64 first_by = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (!strstr(seen->str, "samepage watch:") && g_get_monotonic_time() < first_by) {
        struct pollfd pfd = { .fd = out_fd, .events = POLLIN };
        char buf[512];
        if (poll(&pfd, 1, 100) == 1) {
            ssize_t n = read(out_fd, buf, sizeof(buf));
            g_assert_cmpint(n, >, 0);
            g_string_append_len(seen, buf, n);
        }
    }
    g_assert_nonnull(strstr(seen->str, "samepage watch:"));
    g_string_free(seen, TRUE);
    g_usleep(200 * 1000);
    g_assert_cmpint(kill(pid, SIGINT), ==, 0);

    int wait_status = 0;
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    pid_t done = 0;
    while ((done = waitpid(pid, &wait_status, WNOHANG)) == 0 && g_get_monotonic_time() < deadline) {
        g_usleep(20 * 1000);
    }
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &wait_status, 0);
        g_assert_not_reached();
    }
    close(out_fd);
    /* A clean exit through the main loop, not death by the signal. */
    g_assert_true(WIFEXITED(wait_status));
    g_assert_cmpint(WEXITSTATUS(wait_status), ==, 0);
}

/*
 * A guest name any local user can choose (-name of any process named
 * qemu-system-*): escape sequences (clear screen, window title), CR LF and
 * a forged table row, bytes that are not UTF-8, a C1 CSI and a right-to-left
 * override.  The exe path carries some too.
 */
static const char qemu_hostile_cmdline[] =
    "/tmp/\xff\x1b[31m/qemu-system-x86_64\0-name\0"
    "guest=\x1b[2J\x1b]0;owned\x07\r\n      666  forged\xff\xfe\xc2\x9b\xe2\x80\xae\0";

static void assert_no_control_bytes(const char *text, gboolean allow_tab)
{
    g_assert_true(g_utf8_validate(text, -1, NULL));
    for (const char *p = text; *p; p++) {
        if (((guchar)*p < 0x20 && *p != '\n' && !(allow_tab && *p == '\t')) || *p == 0x7f) {
            g_error("control byte 0x%02x in output:\n%s", (guchar)*p, text);
        }
    }
    g_assert_null(strstr(text, "\xc2\x9b"));        /* U+009B: CSI on a terminal */
    g_assert_null(strstr(text, "\xe2\x80\xae"));    /* U+202E: right-to-left override */
}

static void test_hostile_name(Tree *t, gconstpointer data)
{
    g_autofree char *table = NULL, *json = NULL, *prom = NULL;

    add_process(t, 4245, "qemu-system-x86", qemu_hostile_cmdline, sizeof(qemu_hostile_cmdline) - 1,
                PF_USER, NULL, "5\n");

    /* Table: no escape sequence, no forged row; the name shown escaped. */
    g_assert_cmpint(run_cli(t, &table, NULL, "stats"), ==, 0);
    assert_no_control_bytes(table, FALSE);
    g_assert_null(strstr(table, "\n      666  forged"));
    g_assert_nonnull(strstr(table, "\\x1b[2J\\x1b]0;owned\\x07\\x0d\\x0a      666  forged"
                                   "\\xff\\xfe\\u009b\\u202e"));

    /* JSON: valid UTF-8 (json-glib escapes the controls), the name kept. */
    g_assert_cmpint(run_cli(t, &json, NULL, "stats", "--json"), ==, 0);
    g_assert_true(g_utf8_validate(json, -1, NULL));
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;
    g_assert_true(json_parser_load_from_data(parser, json, -1, &error));
    JsonArray *procs = json_object_get_array_member(
        json_node_get_object(json_parser_get_root(parser)), "processes");
    gboolean seen = FALSE;
    for (guint i = 0; i < json_array_get_length(procs); i++) {
        JsonObject *proc = json_array_get_object_element(procs, i);
        if (json_object_get_int_member(proc, "pid") == 4245) {
            g_assert_true(g_str_has_prefix(json_object_get_string_member(proc, "guest"),
                                           "\x1b[2J\x1b]0;owned\x07\r\n      666  forged\xef\xbf\xbd"));
            g_assert_true(g_utf8_validate(json_object_get_string_member(proc, "exe"), -1, NULL));
            seen = TRUE;
        }
    }
    g_assert_true(seen);

    /* Prometheus: UTF-8, no CR or ESC, one sample line with the label. */
    g_assert_cmpint(run_cli(t, &prom, NULL, "stats", "--prometheus"), ==, 0);
    assert_no_control_bytes(prom, FALSE);
    g_assert_nonnull(strstr(prom, "\nsamepage_process_ksm_merging_pages{pid=\"4245\",guest=\""
                                  "\\\\x1b[2J\\\\x1b]0;owned\\\\x07\\\\x0d\\n      666  forged"
                                  "\\\\xff\\\\xfe\\\\u009b\\\\u202e\"} 5\n"));
}

/*
 * samepage estimate reads a real process (the census needs its page tables):
 * one named qemu-system-x86_64 by argv[0] with the hostile -name.  Its
 * table and JSON carry the name escaped / as valid UTF-8.
 */
static void test_estimate_hostile_name(Tree *t, gconstpointer data)
{
    const char *hostile = qemu_hostile_cmdline + sizeof("/tmp/\xff\x1b[31m/qemu-system-x86_64") +
                          sizeof("-name") + strlen("guest=");
    const char *argv[] = { "/usr/bin/python3", "qemu-system-x86_64", "-c",
                           "import time; time.sleep(60)", "-name", hostile, NULL };
    g_autoptr(GError) error = NULL;
    g_autofree char *table = NULL, *json = NULL;
    GPid pid;

    if (!g_file_test(argv[0], G_FILE_TEST_IS_EXECUTABLE) || geteuid() != 0) {
        g_test_skip("needs /usr/bin/python3 and root (the census reads another process)");
        return;
    }
    g_assert_true(g_spawn_async(NULL, (char **)argv, NULL,
                                G_SPAWN_FILE_AND_ARGV_ZERO | G_SPAWN_DO_NOT_REAP_CHILD, NULL,
                                NULL, &pid, &error));
    g_autofree char *pid_text = g_strdup_printf("%d", (int)pid);
    g_autofree char *cmdline_path = g_strdup_printf("/proc/%d/cmdline", (int)pid);
    for (int i = 0; i < 100; i++) {   /* until python has exec'd */
        g_autofree char *cmdline = NULL;
        gsize len = 0;
        if (g_file_get_contents(cmdline_path, &cmdline, &len, NULL) && len > 0 &&
            strcmp(cmdline, "qemu-system-x86_64") == 0) {
            break;
        }
        g_usleep(20 * 1000);
    }
    int table_status = run_cli(t, &table, NULL, "estimate", "--pid", pid_text,
                               "--procfs-root=/proc");
    int json_status = run_cli(t, &json, NULL, "estimate", "--pid", pid_text, "--json",
                              "--procfs-root=/proc");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);

    g_assert_cmpint(table_status, ==, 0);
    assert_no_control_bytes(table, FALSE);
    g_assert_null(strstr(table, "\n      666  forged"));
    g_assert_nonnull(strstr(table, "\\x1b[2J"));
    g_assert_cmpint(json_status, ==, 0);
    g_assert_true(g_utf8_validate(json, -1, NULL));
    g_autoptr(JsonParser) parser = json_parser_new();
    g_assert_true(json_parser_load_from_data(parser, json, -1, &error));
    g_assert_nonnull(strstr(json, "\\u001b[2J"));
}

/* Every command checks its stdout: a full disk is a failure, not success. */
static void test_stdout_full(Tree *t, gconstpointer data)
{
    static const char *const to_full[] = { "/bin/sh", "-c", "exec \"$0\" \"$@\" > /dev/full",
                                           NULL };
    static const char *const commands[][3] = {
        { "save", NULL }, { "status", NULL }, { "stats", "--json" }, { "stats", "--prometheus" },
        { "watch", "--interval=0.01" },   /* stops at the first frame, not never */
    };

    for (guint i = 0; i < G_N_ELEMENTS(commands); i++) {
        g_autofree char *err = NULL;
        g_assert_cmpint(run_cli_argv(t, to_full, commands[i], NULL, &err), ==, 1);
        g_assert_nonnull(strstr(err, "standard output"));
        g_assert_nonnull(strstr(err, "No space left on device"));
    }
}

/* save -f never writes through a symbolic link; restore -f believes only a
 * file of root (or the caller) that no one else can write. */
static void test_save_restore_files(Tree *t, gconstpointer data)
{
    g_autofree char *victim = g_build_filename(t->root, "victim", NULL);
    g_autofree char *link = g_build_filename(t->root, "knobs-link", NULL);
    g_autofree char *file = g_build_filename(t->root, "knobs", NULL);
    g_autofree char *text = NULL, *err = NULL;
    struct stat st;

    g_assert_true(g_file_set_contents(victim, "precious\n", -1, NULL));
    g_assert_cmpint(symlink(victim, link), ==, 0);
    g_assert_cmpint(run_cli(t, NULL, &err, "save", "-f", link), ==, 1);
    g_assert_nonnull(strstr(err, "symbolic link"));
    g_assert_true(g_file_get_contents(victim, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "precious\n");
    g_clear_pointer(&err, g_free);

    g_assert_cmpint(run_cli(t, NULL, NULL, "save", "-f", file), ==, 0);
    g_assert_cmpint(stat(file, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0600);
    g_assert_cmpint(run_cli(t, NULL, NULL, "restore", "-f", file), ==, 0);

    /* Through a link, writable by others, or another user's: refused, nothing written. */
    g_autofree char *old_run = read_ksm_file(t, "pages_to_scan");
    g_autofree char *saved = NULL;
    g_assert_true(g_file_get_contents(file, &saved, NULL, NULL));
    g_autofree char *tampered_text = g_strdup_printf("%spages_to_scan=4321\n", saved);
    g_assert_true(g_file_set_contents(file, tampered_text, -1, NULL));
    g_unlink(link);
    g_assert_cmpint(symlink(file, link), ==, 0);
    g_assert_cmpint(chmod(file, 0600), ==, 0);
    g_assert_cmpint(run_cli(t, NULL, &err, "restore", "-f", link), ==, 2);
    g_assert_nonnull(strstr(err, "symbolic link"));
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(chmod(file, 0666), ==, 0);
    g_assert_cmpint(run_cli(t, NULL, &err, "restore", "-f", file), ==, 2);
    g_assert_nonnull(strstr(err, "writable by group or others"));
    g_clear_pointer(&err, g_free);
    if (geteuid() == 0) {
        g_assert_cmpint(chmod(file, 0644), ==, 0);
        g_assert_cmpint(chown(file, 65534, 65534), ==, 0);
        g_assert_cmpint(run_cli(t, NULL, &err, "restore", "-f", file), ==, 2);
        g_assert_nonnull(strstr(err, "belongs to uid 65534"));
        g_clear_pointer(&err, g_free);
    }
    g_autofree char *now = read_ksm_file(t, "pages_to_scan");
    g_assert_cmpstr(now, ==, old_run);
}

/* ---- samepage tune: real processes on the fake tree ---- */

static void write_ksm_file(const Tree *t, const char *name, const char *text)
{
    write_file(t->ksm_dir, name, text, -1);
}

/* A QEMU with 1 GiB registered with KSM: the converge rate is well above 100. */
static void add_mergeable_qemu(const Tree *t)
{
    g_autofree char *dir = g_build_filename(t->procfs, "4300", NULL);
    add_process(t, 4300, "qemu-system-x86", qemu_vm1_cmdline, sizeof(qemu_vm1_cmdline) - 1,
                PF_USER, "ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\n"
                "ksm_process_profit 0\nksm_merge_any: no\nksm_mergeable: yes\n", "0\n");
    write_file(dir, "smaps", "7f0000000000-7f0040000000 rw-p 00000000 00:00 0\n"
               "Rss:             1048576 kB\nVmFlags: rd wr mr mw me ac mg\n", -1);
}

/* samepage tune in the background, stdout and stderr to files. */
static GPid spawn_tune(const Tree *t, const char *sysfs, const char *out_path,
                       const char *const *extra)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) error = NULL;
    g_autofree char *sysfs_arg = g_strdup_printf("--sysfs-root=%s", sysfs ? sysfs : t->sysfs);
    g_autofree char *procfs_arg = g_strdup_printf("--procfs-root=%s", t->procfs);
    g_autofree char *err_path = g_strconcat(out_path, ".err", NULL);
    int out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    GPid pid = 0;

    g_ptr_array_add(argv, (char *)cli_path());
    g_ptr_array_add(argv, sysfs_arg);
    g_ptr_array_add(argv, procfs_arg);
    g_ptr_array_add(argv, (char *)"tune");
    g_ptr_array_add(argv, (char *)"--json");
    g_ptr_array_add(argv, (char *)"--interval=0.1");
    /* Should a test fail before it stops the tune: it still ends. */
    g_ptr_array_add(argv, (char *)"--duration=30");
    for (guint i = 0; extra && extra[i]; i++) {
        g_ptr_array_add(argv, (char *)extra[i]);
    }
    g_ptr_array_add(argv, NULL);
    g_assert_cmpint(out_fd, >=, 0);
    g_assert_true(g_spawn_async_with_fds(NULL, (char **)argv->pdata, NULL,
                                         G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid, -1, out_fd,
                                         err_fd, &error));
    g_assert_no_error(error);
    close(out_fd);
    close(err_fd);
    return pid;
}

/* Wait until the file holds needle (FALSE after timeout_ms). */
static gboolean wait_for_text(const char *path, const char *needle, gint64 timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;
    do {
        g_autofree char *text = NULL;
        if (g_file_get_contents(path, &text, NULL, NULL) && strstr(text, needle)) {
            return TRUE;
        }
        g_usleep(20 * 1000);
    } while (g_get_monotonic_time() < deadline);
    return FALSE;
}

/* The wait status of pid, or kill it and fail after timeout_ms. */
static int wait_exit(GPid pid, gint64 timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (g_get_monotonic_time() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            g_error("samepage tune %d did not exit within %" G_GINT64_FORMAT " ms", (int)pid,
                    timeout_ms);
        }
        g_usleep(20 * 1000);
    }
    return status;
}

/* Every line json-glib can parse; returns how many have this event. */
static guint json_events(const char *path, const char *event, char **reason)
{
    g_autofree char *text = NULL;
    guint n = 0;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i] && lines[i][0]; i++) {
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) error = NULL;
        if (!json_parser_load_from_data(parser, lines[i], -1, &error)) {
            g_error("tune wrote a line that is not JSON (%s): %s", error->message, lines[i]);
        }
        JsonObject *o = json_node_get_object(json_parser_get_root(parser));
        g_assert_true(json_object_has_member(o, "time") && json_object_has_member(o, "phase") &&
                      json_object_has_member(o, "pages_to_scan") &&
                      json_object_has_member(o, "sleep_millisecs"));
        if (strcmp(json_object_get_string_member(o, "event"), event) == 0) {
            if (reason && !n) {
                *reason = g_strdup(json_object_get_string_member(o, "reason"));
            }
            n++;
        }
    }
    return n;
}

/*
 * A tune killed with SIGKILL while converging leaves pages_to_scan at the
 * converge rate.  The next tune takes over (one line naming the dead one),
 * and with --restore-on-exit its SIGTERM puts back the knobs the FIRST tune
 * found, not the fast rate it inherited; all within seconds.
 */
static void test_tune_takeover(Tree *t, gconstpointer data)
{
    g_autofree char *state = g_build_filename(t->root, "run", "tune.state", NULL);
    g_autofree char *state_arg = g_strdup_printf("--state-file=%s", state);
    g_autofree char *out1 = g_build_filename(t->root, "tune1.out", NULL);
    g_autofree char *out2 = g_build_filename(t->root, "tune2.out", NULL);
    g_autofree char *record = NULL, *reason = NULL, *err = NULL;

    add_mergeable_qemu(t);
    write_ksm_file(t, "run", "0\n");
    write_ksm_file(t, "pages_to_scan", "300\n");
    write_ksm_file(t, "sleep_millisecs", "50\n");

    const char *const args1[] = { state_arg, NULL };
    GPid tune1 = spawn_tune(t, NULL, out1, args1);
    g_assert_true(wait_for_text(out1, "\"event\":\"start\"", 5000));
    g_autofree char *fast = read_ksm_file(t, "pages_to_scan");
    g_assert_cmpint(g_ascii_strtoll(fast, NULL, 10), >, 1000);
    g_autofree char *run = read_ksm_file(t, "run");
    g_assert_cmpstr(run, ==, "1");
    g_assert_true(g_file_get_contents(state, &record, NULL, NULL));
    g_assert_nonnull(strstr(record, "state=running\nphase=converge\n"));
    g_assert_nonnull(strstr(record, "found.pages_to_scan=300\nfound.sleep_millisecs=50\n"
                                    "found.run=0\nfound.advisor_mode=0\n"));
    struct stat st;
    g_assert_cmpint(stat(state, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0600);

    /* Only one tune at a time, even a one-shot. */
    g_assert_cmpint(run_cli(t, NULL, &err, "tune", "--once", state_arg), ==, 1);
    g_autofree char *busy = g_strdup_printf("another samepage tune (pid %d) is running", tune1);
    g_assert_nonnull(strstr(err, busy));

    gint64 killed_at = g_get_monotonic_time();
    g_assert_cmpint(kill(tune1, SIGKILL), ==, 0);
    wait_exit(tune1, 5000);
    g_autofree char *left = read_ksm_file(t, "pages_to_scan");
    g_assert_cmpstr(left, ==, fast);   /* what nothing would bring down */

    const char *const args2[] = { state_arg, "--restore-on-exit", NULL };
    GPid tune2 = spawn_tune(t, NULL, out2, args2);
    g_assert_true(wait_for_text(out2, "\"event\":\"start\"", 5000));
    g_assert_cmpuint(json_events(out2, "takeover", &reason), ==, 1);
    g_autofree char *dead = g_strdup_printf("from samepage tune pid %d", tune1);
    g_assert_nonnull(strstr(reason, dead));
    g_assert_nonnull(strstr(reason, "converge phase"));
    g_assert_nonnull(strstr(reason, "pages_to_scan=300 sleep_millisecs=50 run=0"));
    g_clear_pointer(&record, g_free);
    g_assert_true(g_file_get_contents(state, &record, NULL, NULL));
    g_autofree char *mine = g_strdup_printf("pid=%d\nstate=running\n", tune2);
    g_assert_nonnull(strstr(record, mine));
    g_assert_nonnull(strstr(record, "found.pages_to_scan=300\nfound.sleep_millisecs=50\n"));

    /* ksmd scans with nothing left to merge: the new tune converges and drops
     * the fast rate it inherited to its steady rate (100, the minimum here). */
    gint64 scans = 7, scanned = 123456, until = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    g_autofree char *steady = NULL;
    do {
        g_autofree char *scans_text = g_strdup_printf("%" G_GINT64_FORMAT "\n", ++scans);
        g_autofree char *scanned_text = g_strdup_printf("%" G_GINT64_FORMAT "\n",
                                                        scanned += 262144);
        write_ksm_file(t, "pages_scanned", scanned_text);
        write_ksm_file(t, "full_scans", scans_text);
        g_usleep(150 * 1000);
        g_free(steady);
        steady = read_ksm_file(t, "pages_to_scan");
    } while (strcmp(steady, "100") != 0 && g_get_monotonic_time() < until);
    g_assert_cmpstr(steady, ==, "100");
    g_clear_pointer(&record, g_free);
    g_assert_true(g_file_get_contents(state, &record, NULL, NULL));
    g_assert_nonnull(strstr(record, "state=running\nphase=steady\n"));

    /* A service's stop: the knobs the first tune found, in bounded time. */
    g_assert_cmpint(kill(tune2, SIGTERM), ==, 0);
    int status = wait_exit(tune2, 5000);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    g_assert_cmpint(g_get_monotonic_time() - killed_at, <, 20 * G_USEC_PER_SEC);
    g_autofree char *pages = read_ksm_file(t, "pages_to_scan");
    g_autofree char *sleep_ms = read_ksm_file(t, "sleep_millisecs");
    g_autofree char *run_after = read_ksm_file(t, "run");
    g_assert_cmpstr(pages, ==, "300");
    g_assert_cmpstr(sleep_ms, ==, "50");
    g_assert_cmpstr(run_after, ==, "0");
    g_clear_pointer(&record, g_free);
    g_assert_true(g_file_get_contents(state, &record, NULL, NULL));
    g_assert_nonnull(strstr(record, "state=stopped\n"));
    g_clear_pointer(&reason, g_free);
    g_assert_cmpuint(json_events(out2, "exit", &reason), ==, 1);
    g_assert_nonnull(strstr(reason, "put back"));

    /* After a clean stop there is nothing to take over. */
    GPid tune3 = spawn_tune(t, NULL, out1, args1);
    g_assert_true(wait_for_text(out1, "\"event\":\"start\"", 5000));
    kill(tune3, SIGTERM);
    wait_exit(tune3, 5000);
    g_assert_cmpuint(json_events(out1, "takeover", NULL), ==, 0);
}

/* The record is root's: never through a link, never a file others can write. */
static void test_tune_record_safety(Tree *t, gconstpointer data)
{
    g_autofree char *state = g_build_filename(t->root, "tune.state", NULL);
    g_autofree char *victim = g_build_filename(t->root, "victim", NULL);
    g_autofree char *state_arg = g_strdup_printf("--state-file=%s", state);
    g_autofree char *err = NULL, *out = NULL, *text = NULL;

    g_assert_true(g_file_set_contents(victim, "precious\n", -1, NULL));
    g_assert_cmpint(symlink(victim, state), ==, 0);
    g_assert_cmpint(run_cli(t, NULL, &err, "tune", "--once", state_arg), ==, 1);
    g_assert_nonnull(strstr(err, "symbolic link"));
    g_assert_true(g_file_get_contents(victim, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "precious\n");
    g_clear_pointer(&err, g_free);
    g_unlink(state);

    g_assert_true(g_file_set_contents(state, "pid=1\nstate=running\n", -1, NULL));
    g_assert_cmpint(chmod(state, 0666), ==, 0);
    g_assert_cmpint(run_cli(t, NULL, &err, "tune", "--once", state_arg), ==, 1);
    g_assert_nonnull(strstr(err, "writable by group or others"));
    g_clear_pointer(&err, g_free);

    /* A damaged record is ignored with one warning; the knobs as they are count. */
    g_assert_cmpint(chmod(state, 0600), ==, 0);
    g_assert_true(g_file_set_contents(state, "pid=1\nstate=running\nfound.run=\x1b[2J\n", -1,
                                      NULL));
    g_assert_cmpint(run_cli(t, &out, NULL, "tune", "--json", "--once", state_arg), ==, 0);
    g_autofree char *out_path = g_build_filename(t->root, "once.out", NULL);
    g_assert_true(g_file_set_contents(out_path, out, -1, NULL));
    g_autofree char *reason = NULL;
    g_assert_cmpuint(json_events(out_path, "warning", &reason), ==, 1);
    g_assert_nonnull(strstr(reason, "ignoring the tune record"));
    g_assert_null(strchr(reason, 0x1b));
}

/* Debian's ksmtuned running: one warning that they will fight. */
static void test_tune_ksmtuned(Tree *t, gconstpointer data)
{
    static const char script[] = "/bin/sh\0/usr/sbin/ksmtuned\0";
    g_autofree char *state_arg = g_strdup_printf("--state-file=%s/tune.state", t->root);
    g_autofree char *out_path = g_build_filename(t->root, "once.out", NULL);
    const char *comm[] = { "ksmtuned", "sh" };

    for (guint i = 0; i < G_N_ELEMENTS(comm); i++) {
        g_autofree char *out = NULL, *reason = NULL;
        g_assert_cmpint(run_cli(t, &out, NULL, "tune", "--json", "--once", state_arg), ==, 0);
        g_assert_true(g_file_set_contents(out_path, out, -1, NULL));
        g_assert_cmpuint(json_events(out_path, "warning", NULL), ==, 0);

        /* comm "ksmtuned" (started as a script), or "sh /usr/sbin/ksmtuned". */
        add_process(t, 555 + i, comm[i], script, sizeof(script) - 1, PF_USER, NULL, NULL);
        g_clear_pointer(&out, g_free);
        g_assert_cmpint(run_cli(t, &out, NULL, "tune", "--json", "--once", state_arg), ==, 0);
        g_assert_true(g_file_set_contents(out_path, out, -1, NULL));
        g_assert_cmpuint(json_events(out_path, "warning", &reason), ==, 1);
        g_autofree char *expect = g_strdup_printf("ksmtuned is running (pid %u)", 555 + i);
        g_assert_nonnull(strstr(reason, expect));
        g_assert_nonnull(strstr(reason, "fight"));
        g_autofree char *dir = g_strdup_printf("%s/%u", t->procfs, 555 + i);
        remove_tree(dir);
    }
}

/* --json lines are JSON whatever a message holds: a path with a vertical tab
 * and an e-acute (g_strescape wrote \v and \303\251, which JSON has not). */
static void test_tune_json_messages(Tree *t, gconstpointer data)
{
    g_autofree char *odd = g_build_filename(t->root, "sys\xc3\xa9\v", NULL);
    g_autofree char *out = g_build_filename(t->root, "tune.out", NULL);
    g_autofree char *knob = g_build_filename(t->ksm_dir, "pages_to_scan", NULL);
    g_autofree char *reason = NULL;

    g_autofree char *state_arg = g_strdup_printf("--state-file=%s/tune.state", t->root);
    const char *const args[] = { state_arg, NULL };

    g_assert_cmpint(symlink(t->sysfs, odd), ==, 0);
    GPid tune = spawn_tune(t, odd, out, args);
    g_assert_true(wait_for_text(out, "\"event\":\"start\"", 5000) ||
                  wait_for_text(out, "\"event\": \"start\"", 10));
    /* A knob the tune cannot read any more: an "error" line naming its path. */
    g_unlink(knob);
    g_assert_cmpint(g_mkdir(knob, 0755), ==, 0);
    g_assert_true(wait_for_text(out, "error", 5000));
    kill(tune, SIGTERM);
    wait_exit(tune, 5000);
    g_assert_cmpuint(json_events(out, "error", &reason), >=, 1);
    g_assert_nonnull(strstr(reason, "sys\xc3\xa9\v/kernel/mm/ksm/pages_to_scan"));
}

#define TREE_TEST(path, func, data) \
    g_test_add((path), Tree, (data), tree_setup, (func), tree_teardown)

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    TREE_TEST("/cli/status", test_status, NULL);
    TREE_TEST("/cli/stats/json", test_stats_json, NULL);
    TREE_TEST("/cli/stats/prometheus", test_stats_prometheus, NULL);
    TREE_TEST("/cli/stats/table", test_stats_table, NULL);
    TREE_TEST("/cli/stats/64-qemus", test_stats_many_qemus, NULL);
    TREE_TEST("/cli/stats/hostile-guest-name", test_hostile_name, NULL);
    TREE_TEST("/cli/estimate/hostile-guest-name", test_estimate_hostile_name, NULL);
    TREE_TEST("/cli/set/good", test_set_good, NULL);
    TREE_TEST("/cli/set/bad-writes-nothing", test_set_bad, NULL);
    TREE_TEST("/cli/set/not-root", test_set_not_root, NULL);
    TREE_TEST("/cli/no-ksm", test_no_ksm, "empty");
    TREE_TEST("/cli/usage", test_usage, NULL);
    TREE_TEST("/cli/stdout-full", test_stdout_full, NULL);
    TREE_TEST("/cli/save-restore-files", test_save_restore_files, NULL);
    TREE_TEST("/cli/tune/takeover-after-sigkill", test_tune_takeover, NULL);
    TREE_TEST("/cli/tune/record-safety", test_tune_record_safety, NULL);
    TREE_TEST("/cli/tune/ksmtuned", test_tune_ksmtuned, NULL);
    TREE_TEST("/cli/tune/json-messages", test_tune_json_messages, NULL);
    TREE_TEST("/cli/watch/count", test_watch_count, NULL);
    TREE_TEST("/cli/watch/sigint", test_watch_sigint, NULL);
    return g_test_run();
}
