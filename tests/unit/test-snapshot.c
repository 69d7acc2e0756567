/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-snapshot.c: ksm_snapshot_read and ksm_field_read against fake
 * /sys/kernel/mm/ksm trees (6.18, 4.x, unknown files, garbage, no KSM).
 */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake-tree.h"

static KsmSnapshot *read_ok(FakeTree *t)
{
    GError *error = NULL;
    KsmSnapshot *snap = ksm_snapshot_read(t->ctx, &error);
    g_assert_no_error(error);
    g_assert_nonnull(snap);
    g_assert_nonnull(snap->extra);
    return snap;
}

static void test_full_618(FakeTree *t, gconstpointer data)
{
    fake_tree_ksm_618(t);
    gint64 before = g_get_monotonic_time();
    g_autoptr(KsmSnapshot) snap = read_ok(t);

    for (int f = 0; f < KSM_FIELD__COUNT; f++) {
        const char *name = ksm_field_info((KsmField)f)->name;
        gint64 want = fake_618_value(name);
        gint64 v = -4242;
        if (!snap->present[f]) {
            g_error("%s: absent in a full 6.18 tree", name);
        }
        g_assert_true(ksm_snapshot_get(snap, (KsmField)f, &v));
        if (v != want || snap->value[f] != want) {
            g_error("%s: read %" G_GINT64_FORMAT ", want %" G_GINT64_FORMAT, name, v, want);
        }
        g_assert_cmpint(ksm_snapshot_get_or(snap, (KsmField)f, -1), ==, want);
    }
    g_assert_cmpuint(g_hash_table_size(snap->extra), ==, 0);
    guint n = 99;
    g_autofree const char **names = ksm_snapshot_extra_names(snap, &n);
    g_assert_cmpuint(n, ==, 0);
    g_assert_cmpint(snap->monotonic_us, >=, before);
    g_assert_cmpint(snap->monotonic_us, <=, g_get_monotonic_time());
}

static void test_old_kernel_subset(FakeTree *t, gconstpointer data)
{
    static const KsmField absent[] = {
        KSM_FIELD_SMART_SCAN, KSM_FIELD_ADVISOR_MODE, KSM_FIELD_ADVISOR_MAX_CPU,
        KSM_FIELD_ADVISOR_TARGET_SCAN_TIME, KSM_FIELD_ADVISOR_MIN_PAGES_TO_SCAN,
        KSM_FIELD_ADVISOR_MAX_PAGES_TO_SCAN, KSM_FIELD_KSM_ZERO_PAGES,
        KSM_FIELD_GENERAL_PROFIT, KSM_FIELD_PAGES_SCANNED, KSM_FIELD_PAGES_SKIPPED,
    };
    fake_tree_ksm_4x(t);
    g_autoptr(KsmSnapshot) snap = read_ok(t);

    for (int f = 0; f < KSM_FIELD__COUNT; f++) {
        gboolean want_absent = FALSE;
        for (guint i = 0; i < G_N_ELEMENTS(absent); i++) {
            want_absent |= absent[i] == (KsmField)f;
        }
        const char *name = ksm_field_info((KsmField)f)->name;
        gint64 v = -4242;
        if (want_absent) {
            if (snap->present[f] || ksm_snapshot_get(snap, (KsmField)f, &v)) {
                g_error("%s: present in a 4.x tree that lacks it", name);
            }
            g_assert_cmpint(ksm_snapshot_get_or(snap, (KsmField)f, -77), ==, -77);
        } else {
            g_assert_true(snap->present[f]);
            g_assert_true(ksm_snapshot_get(snap, (KsmField)f, &v));
            g_assert_cmpint(v, ==, fake_618_value(name));
        }
    }
    /* Absent files are not "extra" either. */
    g_assert_cmpuint(g_hash_table_size(snap->extra), ==, 0);
}

static void test_no_merge_across_nodes(FakeTree *t, gconstpointer data)
{
    /* !CONFIG_NUMA kernels have no merge_across_nodes. */
    fake_tree_ksm_618(t);
    fake_tree_ksm_remove(t, "merge_across_nodes");
    g_autoptr(KsmSnapshot) snap = read_ok(t);
    g_assert_false(snap->present[KSM_FIELD_MERGE_ACROSS_NODES]);
    g_assert_true(snap->present[KSM_FIELD_RUN]);
}

static void test_unknown_extra_file(FakeTree *t, gconstpointer data)
{
    fake_tree_ksm_618(t);
    fake_tree_ksm_write(t, "zz_future_knob", "hello world\n");
    fake_tree_ksm_write(t, "advisor_future", "[a] b c\n");
    fake_tree_ksm_write(t, "empty_file", "");
    g_autoptr(KsmSnapshot) snap = read_ok(t);

    g_assert_cmpuint(g_hash_table_size(snap->extra), ==, 3);
    g_assert_cmpstr(g_hash_table_lookup(snap->extra, "zz_future_knob"), ==, "hello world");
    g_assert_cmpstr(g_hash_table_lookup(snap->extra, "advisor_future"), ==, "[a] b c");
    g_assert_cmpstr(g_hash_table_lookup(snap->extra, "empty_file"), ==, "");
    /* The known ones are still all there. */
    for (int f = 0; f < KSM_FIELD__COUNT; f++) {
        g_assert_true(snap->present[f]);
    }

    guint n = 0;
    g_autofree const char **names = ksm_snapshot_extra_names(snap, &n);
    g_assert_cmpuint(n, ==, 3);
    g_assert_cmpstr(names[0], ==, "advisor_future");
    g_assert_cmpstr(names[1], ==, "empty_file");
    g_assert_cmpstr(names[2], ==, "zz_future_knob");
}

static void test_extra_multiline(FakeTree *t, gconstpointer data)
{
    fake_tree_ksm_618(t);
    fake_tree_ksm_write(t, "histogram", "0 1\n1 5\n");
    g_autoptr(KsmSnapshot) snap = read_ok(t);
    /* Only the trailing newline goes. */
    g_assert_cmpstr(g_hash_table_lookup(snap->extra, "histogram"), ==, "0 1\n1 5");
}

static void test_garbage_counter(FakeTree *t, gconstpointer data)
{
    /* A known file that does not parse is kept raw and is absent as a value:
     * a kernel that changes a format must not break every reader. */
    fake_tree_ksm_618(t);
    fake_tree_ksm_write(t, "pages_sharing", "banana\n");
    g_autoptr(KsmSnapshot) snap = read_ok(t);
    KsmField field;
    g_assert_true(ksm_field_from_name("pages_sharing", &field));
    g_assert_false(ksm_snapshot_get(snap, field, NULL));
    g_assert_cmpstr(g_hash_table_lookup(snap->extra, "pages_sharing"), ==, "banana");
    /* The other files are still read. */
    g_assert_true(ksm_snapshot_get(snap, KSM_FIELD_RUN, NULL));
}

static void test_garbage_knob(FakeTree *t, gconstpointer data)
{
    /* A known file that does not parse is kept raw and is absent as a value:
     * a kernel that changes a format must not break every reader. */
    fake_tree_ksm_618(t);
    fake_tree_ksm_write(t, "sleep_millisecs", "20ms\n");
    g_autoptr(KsmSnapshot) snap = read_ok(t);
    KsmField field;
    g_assert_true(ksm_field_from_name("sleep_millisecs", &field));
    g_assert_false(ksm_snapshot_get(snap, field, NULL));
    g_assert_cmpstr(g_hash_table_lookup(snap->extra, "sleep_millisecs"), ==, "20ms");
    /* The other files are still read. */
    g_assert_true(ksm_snapshot_get(snap, KSM_FIELD_RUN, NULL));
}

static void test_empty_counter(FakeTree *t, gconstpointer data)
{
    /* A known file that does not parse is kept raw and is absent as a value:
     * a kernel that changes a format must not break every reader. */
    fake_tree_ksm_618(t);
    fake_tree_ksm_write(t, "full_scans", "\n");
    g_autoptr(KsmSnapshot) snap = read_ok(t);
    KsmField field;
    g_assert_true(ksm_field_from_name("full_scans", &field));
    g_assert_false(ksm_snapshot_get(snap, field, NULL));
    g_assert_cmpstr(g_hash_table_lookup(snap->extra, "full_scans"), ==, "");
    /* The other files are still read. */
    g_assert_true(ksm_snapshot_get(snap, KSM_FIELD_RUN, NULL));
}

static void test_garbage_advisor_mode(FakeTree *t, gconstpointer data)
{
    /* A known file that does not parse is kept raw and is absent as a value:
     * a kernel that changes a format must not break every reader. */
    fake_tree_ksm_618(t);
    fake_tree_ksm_write(t, "advisor_mode", "[bogus] none\n");
    g_autoptr(KsmSnapshot) snap = read_ok(t);
    KsmField field;
    g_assert_true(ksm_field_from_name("advisor_mode", &field));
    g_assert_false(ksm_snapshot_get(snap, field, NULL));
    g_assert_cmpstr(g_hash_table_lookup(snap->extra, "advisor_mode"), ==, "[bogus] none");
    /* The other files are still read. */
    g_assert_true(ksm_snapshot_get(snap, KSM_FIELD_RUN, NULL));
}

static void test_advisor_scan_time(FakeTree *t, gconstpointer data)
{
    fake_tree_ksm_618(t);
    fake_tree_ksm_write(t, "advisor_mode", "none [scan-time]\n");
    g_autoptr(KsmSnapshot) snap = read_ok(t);
    g_assert_cmpint(ksm_snapshot_get_or(snap, KSM_FIELD_ADVISOR_MODE, -1), ==,
                    KSM_ADVISOR_SCAN_TIME);
}

typedef struct {
    const char *text;
    gint64 value;
} RunCase;

static void test_run_offline_bit(FakeTree *t, gconstpointer data)
{
    /* KSM_RUN_OFFLINE is 4: ORed in during memory hot-remove, masked on read. */
    static const RunCase cases[] = {
        { "0\n", KSM_RUN_STOP },
        { "1\n", KSM_RUN_MERGE },
        { "2\n", KSM_RUN_UNMERGE },
        { "4\n", KSM_RUN_STOP },
        { "5\n", KSM_RUN_MERGE },
        { "6\n", KSM_RUN_UNMERGE },
    };
    fake_tree_ksm_618(t);
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        fake_tree_ksm_write(t, "run", cases[i].text);
        g_autoptr(KsmSnapshot) snap = read_ok(t);
        g_assert_cmpint(snap->value[KSM_FIELD_RUN], ==, cases[i].value);

        GError *error = NULL;
        gint64 v = -1;
        g_assert_true(ksm_field_read(t->ctx, KSM_FIELD_RUN, &v, &error));
        g_assert_no_error(error);
        g_assert_cmpint(v, ==, cases[i].value);
    }
}

static void test_general_profit_negative(FakeTree *t, gconstpointer data)
{
    fake_tree_ksm_618(t);
    fake_tree_ksm_write(t, "general_profit", "-123456\n");
    g_autoptr(KsmSnapshot) snap = read_ok(t);
    gint64 v = 0;
    g_assert_true(ksm_snapshot_get(snap, KSM_FIELD_GENERAL_PROFIT, &v));
    g_assert_cmpint(v, ==, -123456);
}

static void test_missing_directory(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    fake_tree_remove(t, "sys/kernel/mm/ksm");

    KsmSnapshot *snap = ksm_snapshot_read(t->ctx, &error);
    g_assert_null(snap);
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);

    g_assert_false(ksm_available(t->ctx, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);

    gint64 v;
    g_assert_false(ksm_field_read(t->ctx, KSM_FIELD_RUN, &v, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);
}

static void test_missing_sys_entirely(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    fake_tree_remove(t, "sys");
    KsmSnapshot *snap = ksm_snapshot_read(t->ctx, &error);
    g_assert_null(snap);
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);
}

static void test_available(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    /* The directory alone is not KSM: the run file must be there. */
    g_assert_false(ksm_available(t->ctx, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);

    fake_tree_ksm_618(t);
    g_assert_true(ksm_available(t->ctx, &error));
    g_assert_no_error(error);
    g_assert_true(ksm_writable(t->ctx, &error));   /* a root-owned 0644 file, as root or owner */
    g_assert_no_error(error);
}

static void test_context_paths(FakeTree *t, gconstpointer data)
{
    g_assert_cmpstr(ksm_context_ksm_dir(t->ctx), ==, t->ksm_dir);
    g_assert_cmpstr(ksm_context_sysfs(t->ctx), ==, t->sysfs);
    g_assert_cmpstr(ksm_context_procfs(t->ctx), ==, t->procfs);
    g_assert_cmpuint(ksm_context_page_size(t->ctx), ==, 4096);
    ksm_context_set_page_size(t->ctx, 65536);
    g_assert_cmpuint(ksm_context_page_size(t->ctx), ==, 65536);

    g_autoptr(KsmContext) real = ksm_context_new(NULL, NULL);
    g_assert_cmpstr(ksm_context_ksm_dir(real), ==, "/sys/kernel/mm/ksm");
    g_assert_cmpstr(ksm_context_procfs(real), ==, "/proc");
    g_assert_cmpuint(ksm_context_page_size(real), >=, 4096);
}

static void test_field_read(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    gint64 v = -1;
    fake_tree_ksm_4x(t);

    g_assert_true(ksm_field_read(t->ctx, KSM_FIELD_PAGES_SHARING, &v, &error));
    g_assert_no_error(error);
    g_assert_cmpint(v, ==, fake_618_value("pages_sharing"));

    /* A field this (old) kernel lacks. */
    g_assert_false(ksm_field_read(t->ctx, KSM_FIELD_GENERAL_PROFIT, &v, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);

    fake_tree_ksm_write(t, "advisor_mode", "none [scan-time]\n");
    g_assert_true(ksm_field_read(t->ctx, KSM_FIELD_ADVISOR_MODE, &v, &error));
    g_assert_no_error(error);
    g_assert_cmpint(v, ==, KSM_ADVISOR_SCAN_TIME);

    fake_tree_ksm_write(t, "pages_shared", "12abc\n");
    g_assert_false(ksm_field_read(t->ctx, KSM_FIELD_PAGES_SHARED, &v, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_assert_nonnull(strstr(error->message, "pages_shared"));
    g_clear_error(&error);
}

static void test_unreadable_file(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    fake_tree_ksm_618(t);
    g_autofree char *path = g_build_filename(t->ksm_dir, "pages_sharing", NULL);
    g_assert_cmpint(chmod(path, 0), ==, 0);
    if (geteuid() == 0) {
        g_test_skip("running as root: mode 000 does not stop root from reading, so "
                    "EACCES cannot be produced with a regular file");
        return;
    }
    KsmSnapshot *snap = ksm_snapshot_read(t->ctx, &error);
    g_assert_null(snap);
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PERMISSION);
    g_clear_error(&error);
}

static void test_snapshot_free_null(void)
{
    ksm_snapshot_free(NULL);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    FAKE_TEST("/snapshot/full-6.18", test_full_618);
    FAKE_TEST("/snapshot/old-kernel-subset", test_old_kernel_subset);
    FAKE_TEST("/snapshot/no-numa", test_no_merge_across_nodes);
    FAKE_TEST("/snapshot/extra/unknown-files", test_unknown_extra_file);
    FAKE_TEST("/snapshot/extra/multiline", test_extra_multiline);
    FAKE_TEST("/snapshot/garbage/counter", test_garbage_counter);
    FAKE_TEST("/snapshot/garbage/knob", test_garbage_knob);
    FAKE_TEST("/snapshot/garbage/empty", test_empty_counter);
    FAKE_TEST("/snapshot/garbage/advisor-mode", test_garbage_advisor_mode);
    FAKE_TEST("/snapshot/advisor-scan-time", test_advisor_scan_time);
    FAKE_TEST("/snapshot/run-offline-bit", test_run_offline_bit);
    FAKE_TEST("/snapshot/general-profit-negative", test_general_profit_negative);
    FAKE_TEST("/snapshot/missing/ksm-dir", test_missing_directory);
    FAKE_TEST("/snapshot/missing/sysfs", test_missing_sys_entirely);
    FAKE_TEST("/snapshot/available", test_available);
    FAKE_TEST("/snapshot/context-paths", test_context_paths);
    FAKE_TEST("/snapshot/field-read", test_field_read);
    FAKE_TEST("/snapshot/unreadable-file", test_unreadable_file);
    g_test_add_func("/snapshot/free-null", test_snapshot_free_null);

    return g_test_run();
}
