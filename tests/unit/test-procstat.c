/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-procstat.c: /proc/PID/ksm_stat (both line formats, missing and
 * unknown lines, garbage) and the ksm_merging_pages fallback.
 */
#include <string.h>
#include <unistd.h>

#include "fake-tree.h"

#define KSM_STAT_618 \
    "ksm_rmap_items 10\n" \
    "ksm_zero_pages 3\n" \
    "ksm_merging_pages 7\n" \
    "ksm_process_profit 28032\n" \
    "ksm_merge_any: yes\n" \
    "ksm_mergeable: no\n"

static void assert_field(const KsmProcStat *st, KsmProcField f, gint64 want)
{
    if (!st->present[f]) {
        g_error("%s: not present", ksm_proc_field_name(f));
    }
    g_assert_cmpint(st->value[f], ==, want);
}

static void test_field_names(void)
{
    g_assert_cmpstr(ksm_proc_field_name(KSM_PROC_RMAP_ITEMS), ==, "ksm_rmap_items");
    g_assert_cmpstr(ksm_proc_field_name(KSM_PROC_ZERO_PAGES), ==, "ksm_zero_pages");
    g_assert_cmpstr(ksm_proc_field_name(KSM_PROC_MERGING_PAGES), ==, "ksm_merging_pages");
    g_assert_cmpstr(ksm_proc_field_name(KSM_PROC_PROCESS_PROFIT), ==, "ksm_process_profit");
}

static void test_init_clear(void)
{
    KsmProcStat st;
    memset(&st, 0x5a, sizeof(st));
    ksm_proc_stat_init(&st);
    for (int f = 0; f < KSM_PROC__COUNT; f++) {
        g_assert_false(st.present[f]);
    }
    g_assert_cmpint(st.merge_any, ==, -1);
    g_assert_cmpint(st.mergeable, ==, -1);
    g_assert_nonnull(st.unknown);
    g_assert_cmpuint(st.unknown->len, ==, 0);
    ksm_proc_stat_clear(&st);
    ksm_proc_stat_clear(&st);   /* twice is harmless */
}

static void test_parse_full(void)
{
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    ksm_proc_stat_init(&st);
    g_assert_true(ksm_proc_stat_parse(KSM_STAT_618, &st, &error));
    g_assert_no_error(error);
    assert_field(&st, KSM_PROC_RMAP_ITEMS, 10);
    assert_field(&st, KSM_PROC_ZERO_PAGES, 3);
    assert_field(&st, KSM_PROC_MERGING_PAGES, 7);
    assert_field(&st, KSM_PROC_PROCESS_PROFIT, 28032);
    g_assert_cmpint(st.merge_any, ==, 1);
    g_assert_cmpint(st.mergeable, ==, 0);
    g_assert_cmpuint(st.unknown->len, ==, 0);
}

static void test_parse_flags(void)
{
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    ksm_proc_stat_init(&st);
    g_assert_true(ksm_proc_stat_parse("ksm_merge_any: no\nksm_mergeable: yes\n", &st, &error));
    g_assert_no_error(error);
    g_assert_cmpint(st.merge_any, ==, 0);
    g_assert_cmpint(st.mergeable, ==, 1);
    for (int f = 0; f < KSM_PROC__COUNT; f++) {
        g_assert_false(st.present[f]);
    }
}

static void test_parse_negative_profit(void)
{
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    ksm_proc_stat_init(&st);
    /* A process with many rmap_items and nothing merged costs memory. */
    g_assert_true(ksm_proc_stat_parse("ksm_rmap_items 1000\nksm_process_profit -64000\n",
                                      &st, &error));
    g_assert_no_error(error);
    assert_field(&st, KSM_PROC_PROCESS_PROFIT, -64000);
}

static void test_parse_missing_lines(void)
{
    /* 6.1: ksm_stat had only ksm_rmap_items. */
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    ksm_proc_stat_init(&st);
    g_assert_true(ksm_proc_stat_parse("ksm_rmap_items 42\n", &st, &error));
    g_assert_no_error(error);
    assert_field(&st, KSM_PROC_RMAP_ITEMS, 42);
    g_assert_false(st.present[KSM_PROC_ZERO_PAGES]);
    g_assert_false(st.present[KSM_PROC_MERGING_PAGES]);
    g_assert_false(st.present[KSM_PROC_PROCESS_PROFIT]);
    g_assert_cmpint(st.merge_any, ==, -1);
    g_assert_cmpint(st.mergeable, ==, -1);
}

static void test_parse_empty(void)
{
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    ksm_proc_stat_init(&st);
    g_assert_true(ksm_proc_stat_parse("", &st, &error));
    g_assert_no_error(error);
    for (int f = 0; f < KSM_PROC__COUNT; f++) {
        g_assert_false(st.present[f]);
    }
    g_assert_cmpuint(st.unknown->len, ==, 0);
}

static void test_parse_unknown_kept(void)
{
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    ksm_proc_stat_init(&st);
    g_assert_true(ksm_proc_stat_parse("ksm_rmap_items 10\n"
                                      "ksm_future_pages 99\n"
                                      "ksm_merging_pages 7\n"
                                      "ksm_future_flag: maybe\n", &st, &error));
    g_assert_no_error(error);
    assert_field(&st, KSM_PROC_RMAP_ITEMS, 10);
    assert_field(&st, KSM_PROC_MERGING_PAGES, 7);
    g_assert_cmpuint(st.unknown->len, ==, 2);
    g_assert_cmpstr(g_ptr_array_index(st.unknown, 0), ==, "ksm_future_pages 99");
    const char *flag = g_ptr_array_index(st.unknown, 1);
    g_assert_nonnull(strstr(flag, "ksm_future_flag"));
    g_assert_nonnull(strstr(flag, "maybe"));
}

static void test_parse_whitespace(void)
{
    /* Tabs, several blanks, CR-less blank lines, no final newline. */
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    ksm_proc_stat_init(&st);
    g_assert_true(ksm_proc_stat_parse("ksm_rmap_items\t10\n\nksm_zero_pages    3\n"
                                      "ksm_merge_any:   yes", &st, &error));
    g_assert_no_error(error);
    assert_field(&st, KSM_PROC_RMAP_ITEMS, 10);
    assert_field(&st, KSM_PROC_ZERO_PAGES, 3);
    g_assert_cmpint(st.merge_any, ==, 1);
}

static void test_parse_garbage(void)
{
    static const char *const bad[] = {
        "ksm_rmap_items abc\n",
        "ksm_rmap_items 12abc\n",
        "ksm_rmap_items\n",
        "ksm_rmap_items 1 2\n",
        "ksm_merging_pages 99999999999999999999999\n",
        "ksm_zero_pages -\n",
        "ksm_merge_any: perhaps\n",
        "ksm_mergeable:\n",
        "ksm_rmap_items 10\nksm_process_profit lots\n",
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        GError *error = NULL;
        g_auto(KsmProcStat) st = { 0 };
        ksm_proc_stat_init(&st);
        if (ksm_proc_stat_parse(bad[i], &st, &error)) {
            g_error("ksm_proc_stat_parse accepted \"%s\"", g_strescape(bad[i], NULL));
        }
        g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
        g_clear_error(&error);
    }
}

/* ---- reading /proc/PID ---- */

static void test_read_ksm_stat(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    fake_tree_proc_write(t, 1234, "ksm_stat", KSM_STAT_618);
    fake_tree_proc_write(t, 1234, "ksm_merging_pages", "999\n");   /* ksm_stat wins */
    g_assert_true(ksm_proc_stat_read(t->ctx, 1234, &st, &error));
    g_assert_no_error(error);
    assert_field(&st, KSM_PROC_MERGING_PAGES, 7);
    assert_field(&st, KSM_PROC_RMAP_ITEMS, 10);
    g_assert_cmpint(st.merge_any, ==, 1);
}

static void test_read_fallback(FakeTree *t, gconstpointer data)
{
    /* 5.19/6.0: only ksm_merging_pages. */
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    fake_tree_proc_write(t, 77, "ksm_merging_pages", "512\n");
    fake_tree_proc_write(t, 77, "status", "Name:\tqemu\n");
    g_assert_true(ksm_proc_stat_read(t->ctx, 77, &st, &error));
    g_assert_no_error(error);
    assert_field(&st, KSM_PROC_MERGING_PAGES, 512);
    g_assert_false(st.present[KSM_PROC_RMAP_ITEMS]);
    g_assert_false(st.present[KSM_PROC_ZERO_PAGES]);
    g_assert_false(st.present[KSM_PROC_PROCESS_PROFIT]);
    g_assert_cmpint(st.merge_any, ==, -1);
    g_assert_cmpint(st.mergeable, ==, -1);
    g_assert_nonnull(st.unknown);
}

static void test_read_61(FakeTree *t, gconstpointer data)
{
    /* Debian 12's 6.1: ksm_stat has ksm_rmap_items only; the merging pages
     * are still in ksm_merging_pages (found on a real 6.1 by tests/kernels). */
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    fake_tree_proc_write(t, 61, "ksm_stat", "ksm_rmap_items 4096\n");
    fake_tree_proc_write(t, 61, "ksm_merging_pages", "4000\n");
    g_assert_true(ksm_proc_stat_read(t->ctx, 61, &st, &error));
    g_assert_no_error(error);
    assert_field(&st, KSM_PROC_RMAP_ITEMS, 4096);
    assert_field(&st, KSM_PROC_MERGING_PAGES, 4000);
    g_assert_false(st.present[KSM_PROC_ZERO_PAGES]);

    /* ksm_stat without the merging line and no ksm_merging_pages: absent. */
    g_auto(KsmProcStat) st2 = { 0 };
    fake_tree_proc_write(t, 62, "ksm_stat", "ksm_rmap_items 3\n");
    g_assert_true(ksm_proc_stat_read(t->ctx, 62, &st2, &error));
    g_assert_no_error(error);
    assert_field(&st2, KSM_PROC_RMAP_ITEMS, 3);
    g_assert_false(st2.present[KSM_PROC_MERGING_PAGES]);

    /* ... and a garbled ksm_merging_pages is an error, not a silent absence. */
    g_auto(KsmProcStat) st3 = { 0 };
    fake_tree_proc_write(t, 63, "ksm_stat", "ksm_rmap_items 3\n");
    fake_tree_proc_write(t, 63, "ksm_merging_pages", "lots\n");
    g_assert_false(ksm_proc_stat_read(t->ctx, 63, &st3, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_clear_error(&error);
}

static void test_read_fallback_garbage(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    fake_tree_proc_write(t, 77, "ksm_merging_pages", "many\n");
    g_assert_false(ksm_proc_stat_read(t->ctx, 77, &st, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_clear_error(&error);
}

static void test_read_garbage(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    fake_tree_proc_write(t, 78, "ksm_stat", "ksm_rmap_items ten\n");
    g_assert_false(ksm_proc_stat_read(t->ctx, 78, &st, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_clear_error(&error);
}

static void test_read_no_files(FakeTree *t, gconstpointer data)
{
    /* A live process on a kernel without either file. */
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    fake_tree_proc_write(t, 79, "status", "Name:\tsh\n");
    g_assert_false(ksm_proc_stat_read(t->ctx, 79, &st, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);
}

static void test_read_vanished(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    fake_tree_proc_write(t, 4321, "ksm_stat", KSM_STAT_618);
    fake_tree_proc_remove(t, 4321);
    g_assert_false(ksm_proc_stat_read(t->ctx, 4321, &st, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NO_PROCESS);
    g_assert_nonnull(strstr(error->message, "4321"));
    g_clear_error(&error);

    /* and a pid that never existed */
    g_assert_false(ksm_proc_stat_read(t->ctx, 99999, &st, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NO_PROCESS);
    g_clear_error(&error);
}

static void test_read_real_self(void)
{
    /* The real kernel, read-only: this process's own ksm_stat. */
    GError *error = NULL;
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_auto(KsmProcStat) st = { 0 };
    if (!ksm_proc_stat_read(ctx, getpid(), &st, &error)) {
        g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
        g_test_skip_printf("this kernel has no per-process KSM figures: %s", error->message);
        g_clear_error(&error);
        return;
    }
    g_assert_true(st.present[KSM_PROC_MERGING_PAGES]);
    g_assert_cmpint(st.value[KSM_PROC_MERGING_PAGES], >=, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/procstat/field-names", test_field_names);
    g_test_add_func("/procstat/init-clear", test_init_clear);
    g_test_add_func("/procstat/parse/full-6.18", test_parse_full);
    g_test_add_func("/procstat/parse/flags", test_parse_flags);
    g_test_add_func("/procstat/parse/negative-profit", test_parse_negative_profit);
    g_test_add_func("/procstat/parse/missing-lines", test_parse_missing_lines);
    g_test_add_func("/procstat/parse/empty", test_parse_empty);
    g_test_add_func("/procstat/parse/unknown-kept", test_parse_unknown_kept);
    g_test_add_func("/procstat/parse/whitespace", test_parse_whitespace);
    g_test_add_func("/procstat/parse/garbage", test_parse_garbage);
    FAKE_TEST("/procstat/read/ksm-stat", test_read_ksm_stat);
    FAKE_TEST("/procstat/read/fallback-merging-pages", test_read_fallback);
    FAKE_TEST("/procstat/read/6.1-rmap-items-only", test_read_61);
    FAKE_TEST("/procstat/read/fallback-garbage", test_read_fallback_garbage);
    FAKE_TEST("/procstat/read/garbage", test_read_garbage);
    FAKE_TEST("/procstat/read/no-files", test_read_no_files);
    FAKE_TEST("/procstat/read/vanished", test_read_vanished);
    g_test_add_func("/procstat/read/real-self", test_read_real_self);

    return g_test_run();
}
