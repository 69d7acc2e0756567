/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-derived.c: saved bytes, ratios and profit from known snapshots.
 */
#include <string.h>

#include "fake-tree.h"

/* A snapshot built by hand: only the fields given are present. */
typedef struct {
    KsmField field;
    gint64 value;
} Set;

static KsmSnapshot *make_snapshot(const Set *sets, guint n)
{
    KsmSnapshot *snap = g_new0(KsmSnapshot, 1);
    snap->extra = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    for (guint i = 0; i < n; i++) {
        snap->present[sets[i].field] = TRUE;
        snap->value[sets[i].field] = sets[i].value;
    }
    return snap;
}

static void test_from_618_tree(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    KsmDerived d;
    fake_tree_ksm_618(t);
    g_autoptr(KsmSnapshot) snap = ksm_snapshot_read(t->ctx, &error);
    g_assert_no_error(error);

    ksm_derive(snap, 4096, &d);
    /* shared 1234, sharing 56789, unshared 4321, volatile 12, zero 250 */
    g_assert_cmpuint(d.saved_bytes, ==, (guint64)(56789 + 250) * 4096);
    g_assert_cmpfloat_with_epsilon(d.sharing_ratio, 56789.0 / 1234.0, 1e-9);
    g_assert_cmpfloat_with_epsilon(d.waste_ratio, 4321.0 / 56789.0, 1e-9);
    g_assert_cmpuint(d.rmap_items, ==, 1234 + 56789 + 4321 + 12);
    g_assert_cmpuint(d.metadata_bytes, ==, (guint64)(1234 + 56789 + 4321 + 12) * KSM_RMAP_ITEM_BYTES);
    g_assert_true(d.profit_from_kernel);
    g_assert_cmpint(d.profit_bytes, ==, 229640960);
    /* The fake tree's general_profit follows the kernel's formula: the computed
     * figure and the kernel's agree. */
    g_assert_cmpint((gint64)d.saved_bytes - (gint64)d.metadata_bytes, ==, d.profit_bytes);
}

static void test_from_4x_tree(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    KsmDerived d;
    fake_tree_ksm_4x(t);
    g_autoptr(KsmSnapshot) snap = ksm_snapshot_read(t->ctx, &error);
    g_assert_no_error(error);

    ksm_derive(snap, 4096, &d);
    /* no ksm_zero_pages, no general_profit: computed */
    g_assert_cmpuint(d.saved_bytes, ==, (guint64)56789 * 4096);
    g_assert_false(d.profit_from_kernel);
    g_assert_cmpint(d.profit_bytes, ==,
                    (gint64)56789 * 4096 - (gint64)(1234 + 56789 + 4321 + 12) * 64);
}

static void test_zero_shared(void)
{
    static const Set s[] = {
        { KSM_FIELD_PAGES_SHARED, 0 }, { KSM_FIELD_PAGES_SHARING, 0 },
        { KSM_FIELD_PAGES_UNSHARED, 0 }, { KSM_FIELD_PAGES_VOLATILE, 0 },
        { KSM_FIELD_KSM_ZERO_PAGES, 0 }, { KSM_FIELD_GENERAL_PROFIT, 0 },
    };
    g_autoptr(KsmSnapshot) snap = make_snapshot(s, G_N_ELEMENTS(s));
    KsmDerived d;
    memset(&d, 0x5a, sizeof(d));
    ksm_derive(snap, 4096, &d);
    g_assert_cmpuint(d.saved_bytes, ==, 0);
    g_assert_cmpfloat(d.sharing_ratio, ==, 0.0);
    g_assert_cmpfloat(d.waste_ratio, ==, 0.0);
    g_assert_cmpuint(d.rmap_items, ==, 0);
    g_assert_cmpuint(d.metadata_bytes, ==, 0);
    g_assert_cmpint(d.profit_bytes, ==, 0);
    g_assert_true(d.profit_from_kernel);
}

static void test_unshared_only(void)
{
    /* Scanning but nothing merged yet: ratios 0 (no division by zero), profit negative. */
    static const Set s[] = {
        { KSM_FIELD_PAGES_SHARED, 0 }, { KSM_FIELD_PAGES_SHARING, 0 },
        { KSM_FIELD_PAGES_UNSHARED, 1000 }, { KSM_FIELD_PAGES_VOLATILE, 24 },
    };
    g_autoptr(KsmSnapshot) snap = make_snapshot(s, G_N_ELEMENTS(s));
    KsmDerived d;
    ksm_derive(snap, 4096, &d);
    g_assert_cmpfloat(d.sharing_ratio, ==, 0.0);
    g_assert_cmpfloat(d.waste_ratio, ==, 0.0);
    g_assert_cmpuint(d.rmap_items, ==, 1024);
    g_assert_false(d.profit_from_kernel);
    g_assert_cmpint(d.profit_bytes, ==, -1024 * 64);
}

static void test_zero_pages_only(void)
{
    /* use_zero_pages: empty pages merge with the zero page, pages_sharing stays 0. */
    static const Set s[] = {
        { KSM_FIELD_PAGES_SHARED, 0 }, { KSM_FIELD_PAGES_SHARING, 0 },
        { KSM_FIELD_PAGES_UNSHARED, 0 }, { KSM_FIELD_PAGES_VOLATILE, 0 },
        { KSM_FIELD_KSM_ZERO_PAGES, 500 },
    };
    g_autoptr(KsmSnapshot) snap = make_snapshot(s, G_N_ELEMENTS(s));
    KsmDerived d;
    ksm_derive(snap, 4096, &d);
    g_assert_cmpuint(d.saved_bytes, ==, 500 * 4096);
    g_assert_cmpfloat(d.sharing_ratio, ==, 0.0);
    g_assert_false(d.profit_from_kernel);
    g_assert_cmpint(d.profit_bytes, ==, 500 * 4096);
}

static void test_kernel_profit_wins(void)
{
    /* When the kernel has general_profit it is reported as is, even when it
     * differs from the formula (counters are read without locking). */
    static const Set s[] = {
        { KSM_FIELD_PAGES_SHARED, 10 }, { KSM_FIELD_PAGES_SHARING, 90 },
        { KSM_FIELD_PAGES_UNSHARED, 5 }, { KSM_FIELD_PAGES_VOLATILE, 0 },
        { KSM_FIELD_KSM_ZERO_PAGES, 0 }, { KSM_FIELD_GENERAL_PROFIT, -8192 },
    };
    g_autoptr(KsmSnapshot) snap = make_snapshot(s, G_N_ELEMENTS(s));
    KsmDerived d;
    ksm_derive(snap, 4096, &d);
    g_assert_true(d.profit_from_kernel);
    g_assert_cmpint(d.profit_bytes, ==, -8192);
    g_assert_cmpuint(d.saved_bytes, ==, 90 * 4096);
    g_assert_cmpfloat_with_epsilon(d.sharing_ratio, 9.0, 1e-12);
    g_assert_cmpfloat_with_epsilon(d.waste_ratio, 5.0 / 90.0, 1e-12);
}

static void test_page_size(void)
{
    /* 64 KiB pages (arm64, ppc64). */
    static const Set s[] = {
        { KSM_FIELD_PAGES_SHARED, 1 }, { KSM_FIELD_PAGES_SHARING, 3 },
        { KSM_FIELD_KSM_ZERO_PAGES, 1 },
    };
    g_autoptr(KsmSnapshot) snap = make_snapshot(s, G_N_ELEMENTS(s));
    KsmDerived d;
    ksm_derive(snap, 65536, &d);
    g_assert_cmpuint(d.saved_bytes, ==, 4 * 65536);
    g_assert_cmpint(d.profit_bytes, ==, 4 * 65536 - 4 * 64);
}

static void test_empty_snapshot(void)
{
    /* A kernel with none of the counters (nothing present): all zero, computed. */
    g_autoptr(KsmSnapshot) snap = make_snapshot(NULL, 0);
    KsmDerived d;
    memset(&d, 0x5a, sizeof(d));
    ksm_derive(snap, 4096, &d);
    g_assert_cmpuint(d.saved_bytes, ==, 0);
    g_assert_cmpuint(d.rmap_items, ==, 0);
    g_assert_cmpfloat(d.sharing_ratio, ==, 0.0);
    g_assert_cmpfloat(d.waste_ratio, ==, 0.0);
    g_assert_false(d.profit_from_kernel);
    g_assert_cmpint(d.profit_bytes, ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    FAKE_TEST("/derived/tree-6.18", test_from_618_tree);
    FAKE_TEST("/derived/tree-4.x", test_from_4x_tree);
    g_test_add_func("/derived/zero-shared", test_zero_shared);
    g_test_add_func("/derived/unshared-only", test_unshared_only);
    g_test_add_func("/derived/zero-pages-only", test_zero_pages_only);
    g_test_add_func("/derived/kernel-profit-wins", test_kernel_profit_wins);
    g_test_add_func("/derived/page-size", test_page_size);
    g_test_add_func("/derived/empty-snapshot", test_empty_snapshot);

    return g_test_run();
}
