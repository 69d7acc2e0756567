/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fake-tree.c: see fake-tree.h. */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "fake-tree.h"

/* A 6.18 host that has merged a fair amount.  general_profit follows the
 * kernel's formula: (sharing + zero) * 4096 - (shared+sharing+unshared+volatile) * 64
 * = (56789 + 250) * 4096 - 62356 * 64 = 229640960. */
const FakeKsmFile fake_618_files[] = {
    { "run", "1\n", 1 },
    { "pages_to_scan", "100\n", 100 },
    { "sleep_millisecs", "20\n", 20 },
    { "merge_across_nodes", "1\n", 1 },
    { "use_zero_pages", "1\n", 1 },
    { "max_page_sharing", "256\n", 256 },
    { "stable_node_chains_prune_millisecs", "2000\n", 2000 },
    { "smart_scan", "1\n", 1 },
    { "advisor_mode", "[none] scan-time\n", 0 },
    { "advisor_max_cpu", "70\n", 70 },
    { "advisor_target_scan_time", "200\n", 200 },
    { "advisor_min_pages_to_scan", "500\n", 500 },
    { "advisor_max_pages_to_scan", "30000\n", 30000 },
    { "pages_shared", "1234\n", 1234 },
    { "pages_sharing", "56789\n", 56789 },
    { "pages_unshared", "4321\n", 4321 },
    { "pages_volatile", "12\n", 12 },
    { "full_scans", "42\n", 42 },
    { "stable_node_chains", "3\n", 3 },
    { "stable_node_dups", "7\n", 7 },
    { "pages_scanned", "9876543210\n", G_GINT64_CONSTANT(9876543210) },
    { "pages_skipped", "1111\n", 1111 },
    { "ksm_zero_pages", "250\n", 250 },
    { "general_profit", "229640960\n", 229640960 },
};
const guint fake_618_n_files = G_N_ELEMENTS(fake_618_files);

gint64 fake_618_value(const char *name)
{
    for (guint i = 0; i < fake_618_n_files; i++) {
        if (strcmp(fake_618_files[i].name, name) == 0) {
            return fake_618_files[i].value;
        }
    }
    g_error("fake_618_value: no file %s", name);
    return 0;
}

static const char *const absent_in_4x[] = {
    "smart_scan", "advisor_mode", "advisor_max_cpu", "advisor_target_scan_time",
    "advisor_min_pages_to_scan", "advisor_max_pages_to_scan", "ksm_zero_pages",
    "general_profit", "pages_scanned", "pages_skipped", NULL,
};

static void rm_rf(const char *path);

/*
 * A failed assertion aborts the program before teardown, leaving its tree
 * behind (handy to look at).  Trees are named samepage-unit-PID-XXXXXX; the
 * first setup of a later run removes those whose process is gone.
 */
static void sweep_stale_trees(void)
{
    static gsize done = 0;
    if (!g_once_init_enter(&done)) {
        return;
    }
    GDir *dir = g_dir_open(g_get_tmp_dir(), 0, NULL);
    const char *name;
    while (dir && (name = g_dir_read_name(dir))) {
        char *end;
        if (!g_str_has_prefix(name, "samepage-unit-")) {
            continue;
        }
        long pid = strtol(name + strlen("samepage-unit-"), &end, 10);
        if (pid <= 0 || *end != '-' || pid == (long)getpid() ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH) {
            continue;
        }
        g_autofree char *path = g_build_filename(g_get_tmp_dir(), name, NULL);
        rm_rf(path);
    }
    if (dir) {
        g_dir_close(dir);
    }
    g_once_init_leave(&done, 1);
}

void fake_tree_setup(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;

    sweep_stale_trees();
    g_autofree char *tmpl = g_strdup_printf("samepage-unit-%ld-XXXXXX", (long)getpid());
    t->root = g_dir_make_tmp(tmpl, &error);
    g_assert_no_error(error);
    g_assert_nonnull(t->root);
    t->sysfs = g_build_filename(t->root, "sys", NULL);
    t->procfs = g_build_filename(t->root, "proc", NULL);
    t->ksm_dir = g_build_filename(t->sysfs, "kernel", "mm", "ksm", NULL);
    g_assert_cmpint(g_mkdir_with_parents(t->ksm_dir, 0755), ==, 0);
    g_assert_cmpint(g_mkdir_with_parents(t->procfs, 0755), ==, 0);
    t->ctx = ksm_context_new(t->sysfs, t->procfs);
    ksm_context_set_page_size(t->ctx, 4096);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    int rc = (flag == FTW_DP) ? rmdir(path) : unlink(path);
    if (rc < 0) {
        g_printerr("# fake-tree: cannot remove %s: %s\n", path, g_strerror(errno));
    }
    return 0;
}

/* Remove a directory tree without following symlinks. */
static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void fake_tree_teardown(FakeTree *t, gconstpointer data)
{
    ksm_context_free(t->ctx);
    /* Only ever remove what g_dir_make_tmp gave us. */
    g_assert_true(g_str_has_prefix(t->root, g_get_tmp_dir()));
    g_assert_nonnull(strstr(t->root, "samepage-unit-"));
    rm_rf(t->root);
    g_assert_false(g_file_test(t->root, G_FILE_TEST_EXISTS));
    g_free(t->root);
    g_free(t->sysfs);
    g_free(t->procfs);
    g_free(t->ksm_dir);
    memset(t, 0, sizeof(*t));
}

char *fake_tree_path(const FakeTree *t, const char *rel)
{
    g_assert_false(g_path_is_absolute(rel));
    g_assert_null(strstr(rel, ".."));
    return g_build_filename(t->root, rel, NULL);
}

void fake_tree_mkdir(const FakeTree *t, const char *rel)
{
    g_autofree char *path = fake_tree_path(t, rel);
    g_assert_cmpint(g_mkdir_with_parents(path, 0755), ==, 0);
}

void fake_tree_write(const FakeTree *t, const char *rel, const char *content)
{
    g_autofree char *path = fake_tree_path(t, rel);
    g_autofree char *dir = g_path_get_dirname(path);

    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    /* Not g_file_set_contents: it replaces by rename, which would hide a
     * library that writes through a stale file. Plain truncate + write. */
    FILE *f = fopen(path, "w");
    if (!f) {
        g_error("fake-tree: cannot create %s: %s", path, g_strerror(errno));
    }
    size_t len = strlen(content);
    g_assert_cmpuint(fwrite(content, 1, len, f), ==, len);
    g_assert_cmpint(fclose(f), ==, 0);
}

static void write_bytes(const FakeTree *t, const char *rel, const char *data, gsize len)
{
    g_autofree char *path = fake_tree_path(t, rel);
    g_autofree char *dir = g_path_get_dirname(path);
    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    FILE *f = fopen(path, "w");
    g_assert_nonnull(f);
    g_assert_cmpuint(fwrite(data, 1, len, f), ==, len);
    g_assert_cmpint(fclose(f), ==, 0);
}

char *fake_tree_read(const FakeTree *t, const char *rel)
{
    GError *error = NULL;
    g_autofree char *path = fake_tree_path(t, rel);
    char *text = NULL;

    g_file_get_contents(path, &text, NULL, &error);
    g_assert_no_error(error);
    return text;
}

gboolean fake_tree_exists(const FakeTree *t, const char *rel)
{
    g_autofree char *path = fake_tree_path(t, rel);
    return g_file_test(path, G_FILE_TEST_EXISTS);
}

void fake_tree_remove(const FakeTree *t, const char *rel)
{
    g_autofree char *path = fake_tree_path(t, rel);
    rm_rf(path);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
}

void fake_tree_ksm_write(const FakeTree *t, const char *name, const char *content)
{
    g_autofree char *rel = g_build_filename("sys/kernel/mm/ksm", name, NULL);
    fake_tree_write(t, rel, content);
}

char *fake_tree_ksm_read(const FakeTree *t, const char *name)
{
    g_autofree char *rel = g_build_filename("sys/kernel/mm/ksm", name, NULL);
    return fake_tree_read(t, rel);
}

void fake_tree_ksm_remove(const FakeTree *t, const char *name)
{
    g_autofree char *rel = g_build_filename("sys/kernel/mm/ksm", name, NULL);
    fake_tree_remove(t, rel);
}

void fake_tree_ksm_618(const FakeTree *t)
{
    for (guint i = 0; i < fake_618_n_files; i++) {
        fake_tree_ksm_write(t, fake_618_files[i].name, fake_618_files[i].text);
    }
}

void fake_tree_ksm_4x(const FakeTree *t)
{
    fake_tree_ksm_618(t);
    for (guint i = 0; absent_in_4x[i]; i++) {
        fake_tree_ksm_remove(t, absent_in_4x[i]);
    }
}

static char *proc_rel(pid_t pid, const char *name)
{
    char pidbuf[24];
    g_snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
    return g_build_filename("proc", pidbuf, name, NULL);
}

void fake_tree_proc_write(const FakeTree *t, pid_t pid, const char *name, const char *content)
{
    g_autofree char *rel = proc_rel(pid, name);
    fake_tree_write(t, rel, content);
}

void fake_tree_proc_cmdline(const FakeTree *t, pid_t pid, const char *const *argv)
{
    g_autofree char *rel = proc_rel(pid, "cmdline");
    GString *buf = g_string_new(NULL);
    for (guint i = 0; argv[i]; i++) {
        g_string_append_len(buf, argv[i], strlen(argv[i]) + 1);  /* with its NUL */
    }
    write_bytes(t, rel, buf->str, buf->len);
    g_string_free(buf, TRUE);
}

void fake_tree_proc_remove(const FakeTree *t, pid_t pid)
{
    g_autofree char *rel = proc_rel(pid, "");
    fake_tree_remove(t, rel);
}
