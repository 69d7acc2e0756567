/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-fields.c: the field table and the text parsers of libksm
 * (ksm_parse_int, ksm_parse_advisor_mode, ksm_field_format, ksm_field_info).
 */
#include <string.h>

#include "ksm/ksm.h"

/* ---- ksm_parse_int ---- */

typedef struct {
    const char *text;
    gint64 value;
} IntCase;

static void test_parse_int_valid(void)
{
    static const IntCase cases[] = {
        { "0", 0 },
        { "0\n", 0 },
        { "1", 1 },
        { "123\n", 123 },
        { "20\n", 20 },
        { "30000", 30000 },
        { "9876543210\n", G_GINT64_CONSTANT(9876543210) },
        { "-5", -5 },
        { "-123456\n", -123456 },
        { "-0", 0 },
        { "007", 7 },                      /* kstrto* reads leading zeros as decimal */
        { "9223372036854775807", G_MAXINT64 },
        { "9223372036854775807\n", G_MAXINT64 },
        { "-9223372036854775808", G_MININT64 },
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        GError *error = NULL;
        gint64 v = 4242;
        gboolean ok = ksm_parse_int(cases[i].text, &v, &error);
        g_assert_no_error(error);
        if (!ok) {
            g_error("ksm_parse_int(\"%s\") failed", g_strescape(cases[i].text, NULL));
        }
        if (v != cases[i].value) {
            g_error("ksm_parse_int(\"%s\") = %" G_GINT64_FORMAT ", want %" G_GINT64_FORMAT,
                    g_strescape(cases[i].text, NULL), v, cases[i].value);
        }
    }
}

static void test_parse_int_invalid(void)
{
    static const char *const cases[] = {
        "",                          /* empty */
        "\n",                        /* only a newline */
        "   ",                       /* only blanks */
        "abc",                       /* garbage */
        "banana\n",
        "12abc",                     /* trailing garbage */
        "12 abc\n",
        "1 2",                       /* two numbers */
        "1\n2\n",                    /* two lines */
        "12.5",                      /* not an integer */
        "1e3",
        "0x10",                      /* decimal only, like the kernel's base-10 kstrto* */
        "-",                         /* a sign alone */
        "--5",                       /* two signs */
        "+-5",
        "- 5",
        "9223372036854775808",       /* G_MAXINT64 + 1 */
        "9223372036854775808\n",
        "-9223372036854775809",      /* G_MININT64 - 1 */
        "99999999999999999999999",   /* far too big */
        "[none] scan-time",          /* a mode is not a number */
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        GError *error = NULL;
        gint64 v = 4242;
        gboolean ok = ksm_parse_int(cases[i], &v, &error);
        if (ok) {
            g_error("ksm_parse_int(\"%s\") accepted garbage as %" G_GINT64_FORMAT,
                    g_strescape(cases[i], NULL), v);
        }
        g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
        g_assert_nonnull(error->message);
        g_assert_cmpstr(error->message, !=, "");
        g_clear_error(&error);
    }
}

static void test_parse_int_null_error(void)
{
    /* error may be NULL, as everywhere in GLib. */
    gint64 v = 0;
    g_assert_false(ksm_parse_int("junk", &v, NULL));
    g_assert_true(ksm_parse_int("17\n", &v, NULL));
    g_assert_cmpint(v, ==, 17);
}

static void test_parse_int_message_quotes_text(void)
{
    GError *error = NULL;
    gint64 v;
    g_assert_false(ksm_parse_int("12abc", &v, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    /* The operator must see what was read. */
    g_assert_nonnull(strstr(error->message, "12abc"));
    g_clear_error(&error);
}

/* ---- ksm_parse_advisor_mode ---- */

static void test_advisor_mode_valid(void)
{
    static const IntCase cases[] = {
        { "[none] scan-time", KSM_ADVISOR_NONE },
        { "[none] scan-time\n", KSM_ADVISOR_NONE },
        { "none [scan-time]", KSM_ADVISOR_SCAN_TIME },
        { "none [scan-time]\n", KSM_ADVISOR_SCAN_TIME },
        { "none", KSM_ADVISOR_NONE },
        { "none\n", KSM_ADVISOR_NONE },
        { "scan-time", KSM_ADVISOR_SCAN_TIME },
        { "scan-time\n", KSM_ADVISOR_SCAN_TIME },
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        GError *error = NULL;
        gint64 v = 4242;
        gboolean ok = ksm_parse_advisor_mode(cases[i].text, &v, &error);
        g_assert_no_error(error);
        if (!ok || v != cases[i].value) {
            g_error("ksm_parse_advisor_mode(\"%s\") = %d/%" G_GINT64_FORMAT ", want %" G_GINT64_FORMAT,
                    g_strescape(cases[i].text, NULL), ok, v, cases[i].value);
        }
    }
}

static void test_advisor_mode_invalid(void)
{
    static const char *const cases[] = {
        "",
        "\n",
        "bogus",
        "[bogus] none",
        "[none] [scan-time]",        /* two selected */
        "[none scan-time",           /* unterminated */
        "none] scan-time",
        "[] none scan-time",
        "0",                         /* a number is not a mode name */
        "none scan-time",            /* a list without a selection */
        "scan-time-x",
        "NONE",                      /* the kernel compares exactly */
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        GError *error = NULL;
        gint64 v = 4242;
        gboolean ok = ksm_parse_advisor_mode(cases[i], &v, &error);
        if (ok) {
            g_error("ksm_parse_advisor_mode(\"%s\") accepted garbage as %" G_GINT64_FORMAT,
                    g_strescape(cases[i], NULL), v);
        }
        g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
        g_clear_error(&error);
    }
}

/* ---- the field table ---- */

static const char *const names_618[KSM_FIELD__COUNT] = {
    [KSM_FIELD_RUN] = "run",
    [KSM_FIELD_PAGES_TO_SCAN] = "pages_to_scan",
    [KSM_FIELD_SLEEP_MILLISECS] = "sleep_millisecs",
    [KSM_FIELD_MERGE_ACROSS_NODES] = "merge_across_nodes",
    [KSM_FIELD_USE_ZERO_PAGES] = "use_zero_pages",
    [KSM_FIELD_MAX_PAGE_SHARING] = "max_page_sharing",
    [KSM_FIELD_STABLE_NODE_CHAINS_PRUNE_MILLISECS] = "stable_node_chains_prune_millisecs",
    [KSM_FIELD_SMART_SCAN] = "smart_scan",
    [KSM_FIELD_ADVISOR_MODE] = "advisor_mode",
    [KSM_FIELD_ADVISOR_MAX_CPU] = "advisor_max_cpu",
    [KSM_FIELD_ADVISOR_TARGET_SCAN_TIME] = "advisor_target_scan_time",
    [KSM_FIELD_ADVISOR_MIN_PAGES_TO_SCAN] = "advisor_min_pages_to_scan",
    [KSM_FIELD_ADVISOR_MAX_PAGES_TO_SCAN] = "advisor_max_pages_to_scan",
    [KSM_FIELD_PAGES_SHARED] = "pages_shared",
    [KSM_FIELD_PAGES_SHARING] = "pages_sharing",
    [KSM_FIELD_PAGES_UNSHARED] = "pages_unshared",
    [KSM_FIELD_PAGES_VOLATILE] = "pages_volatile",
    [KSM_FIELD_FULL_SCANS] = "full_scans",
    [KSM_FIELD_STABLE_NODE_CHAINS] = "stable_node_chains",
    [KSM_FIELD_STABLE_NODE_DUPS] = "stable_node_dups",
    [KSM_FIELD_PAGES_SCANNED] = "pages_scanned",
    [KSM_FIELD_PAGES_SKIPPED] = "pages_skipped",
    [KSM_FIELD_KSM_ZERO_PAGES] = "ksm_zero_pages",
    [KSM_FIELD_GENERAL_PROFIT] = "general_profit",
};

static void test_field_info_names(void)
{
    for (int f = 0; f < KSM_FIELD__COUNT; f++) {
        const KsmFieldInfo *info = ksm_field_info((KsmField)f);
        g_assert_nonnull(info);
        g_assert_cmpstr(info->name, ==, names_618[f]);
        g_assert_nonnull(info->help);
        g_assert_cmpstr(info->help, !=, "");
        g_assert_nonnull(info->unit);

        KsmField back = KSM_FIELD__COUNT;
        g_assert_true(ksm_field_from_name(names_618[f], &back));
        g_assert_cmpint(back, ==, f);
    }
}

static void test_field_info_kinds(void)
{
    for (int f = 0; f < KSM_FIELD__COUNT; f++) {
        const KsmFieldInfo *info = ksm_field_info((KsmField)f);
        gboolean want_knob = f <= KSM_FIELD_ADVISOR_MAX_PAGES_TO_SCAN;
        if (info->knob != want_knob) {
            g_error("%s: knob=%d, want %d", info->name, info->knob, want_knob);
        }
        if (info->is_signed != (f == KSM_FIELD_GENERAL_PROFIT)) {
            g_error("%s: is_signed=%d", info->name, info->is_signed);
        }
        if (info->knob) {
            g_assert_cmpint(info->min, <=, info->max);
            g_assert_cmpint(info->min, >=, 0);
        }
    }
}

static void test_field_info_ranges(void)
{
    /* The ranges mm/ksm.c and Documentation/admin-guide/mm/ksm.rst state. */
    const KsmFieldInfo *run = ksm_field_info(KSM_FIELD_RUN);
    g_assert_cmpint(run->min, ==, 0);
    g_assert_cmpint(run->max, ==, 2);
    g_assert_cmpint(ksm_field_info(KSM_FIELD_MAX_PAGE_SHARING)->min, ==, 2);
    g_assert_cmpint(ksm_field_info(KSM_FIELD_ADVISOR_TARGET_SCAN_TIME)->min, ==, 1);
    const KsmFieldInfo *mode = ksm_field_info(KSM_FIELD_ADVISOR_MODE);
    g_assert_cmpint(mode->min, ==, KSM_ADVISOR_NONE);
    g_assert_cmpint(mode->max, ==, KSM_ADVISOR_SCAN_TIME);
    for (KsmField f = KSM_FIELD_MERGE_ACROSS_NODES; f <= KSM_FIELD_USE_ZERO_PAGES; f++) {
        g_assert_cmpint(ksm_field_info(f)->min, ==, 0);
        g_assert_cmpint(ksm_field_info(f)->max, ==, 1);
    }
    g_assert_cmpint(ksm_field_info(KSM_FIELD_SMART_SCAN)->max, ==, 1);
    /* pages_to_scan is an unsigned int in the kernel. */
    g_assert_cmpint(ksm_field_info(KSM_FIELD_PAGES_TO_SCAN)->max, <=, G_MAXUINT32);
}

static void test_field_from_name_unknown(void)
{
    static const char *const bad[] = {
        "", "bogus", "RUN", "run ", " run", "run\n", "pages", "ksm/run",
        "ksm_rmap_items", "general_profit_x",
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        KsmField f = KSM_FIELD__COUNT;
        if (ksm_field_from_name(bad[i], &f)) {
            g_error("ksm_field_from_name(\"%s\") matched field %d", g_strescape(bad[i], NULL), f);
        }
    }
}

/* ---- ksm_field_format ---- */

static void check_format(KsmField f, gint64 v, const char *want)
{
    g_autofree char *text = ksm_field_format(f, v);
    g_assert_nonnull(text);
    /* A trailing newline is fine for sysfs; compare without it. */
    g_autofree char *copy = g_strdup(text);
    g_strchomp(copy);
    g_assert_cmpstr(copy, ==, want);
}

static void test_field_format(void)
{
    check_format(KSM_FIELD_RUN, 0, "0");
    check_format(KSM_FIELD_RUN, 2, "2");
    check_format(KSM_FIELD_PAGES_TO_SCAN, 30000, "30000");
    check_format(KSM_FIELD_ADVISOR_MODE, KSM_ADVISOR_NONE, "none");
    check_format(KSM_FIELD_ADVISOR_MODE, KSM_ADVISOR_SCAN_TIME, "scan-time");
    check_format(KSM_FIELD_GENERAL_PROFIT, -4096, "-4096");
    check_format(KSM_FIELD_PAGES_SCANNED, G_GINT64_CONSTANT(9876543210), "9876543210");
}

static void test_field_format_parses_back(void)
{
    for (int f = 0; f < KSM_FIELD__COUNT; f++) {
        const KsmFieldInfo *info = ksm_field_info((KsmField)f);
        gint64 v = info->knob ? info->min : 12345;
        g_autofree char *text = ksm_field_format((KsmField)f, v);
        gint64 back = -1;
        GError *error = NULL;
        gboolean ok = f == KSM_FIELD_ADVISOR_MODE
                          ? ksm_parse_advisor_mode(text, &back, &error)
                          : ksm_parse_int(text, &back, &error);
        g_assert_no_error(error);
        g_assert_true(ok);
        g_assert_cmpint(back, ==, v);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/fields/parse-int/valid", test_parse_int_valid);
    g_test_add_func("/fields/parse-int/invalid", test_parse_int_invalid);
    g_test_add_func("/fields/parse-int/null-error", test_parse_int_null_error);
    g_test_add_func("/fields/parse-int/message-quotes-text", test_parse_int_message_quotes_text);
    g_test_add_func("/fields/advisor-mode/valid", test_advisor_mode_valid);
    g_test_add_func("/fields/advisor-mode/invalid", test_advisor_mode_invalid);
    g_test_add_func("/fields/info/names", test_field_info_names);
    g_test_add_func("/fields/info/kinds", test_field_info_kinds);
    g_test_add_func("/fields/info/ranges", test_field_info_ranges);
    g_test_add_func("/fields/from-name/unknown", test_field_from_name_unknown);
    g_test_add_func("/fields/format/values", test_field_format);
    g_test_add_func("/fields/format/parses-back", test_field_format_parses_back);

    return g_test_run();
}
