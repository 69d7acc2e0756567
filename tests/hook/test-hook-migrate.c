/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-hook-migrate.c: the hook binary on an incoming migration, run the
 * way libvirtd runs it on the destination (NAME migrate begin -, the domain
 * XML on stdin), against a fake /proc/meminfo and KSM tree (issue 16,
 * item 5).  The guest arrives unmerged: it must fit MemAvailable minus
 * reserve_mib with its full <memory> plus migrate_margin_mib, or the
 * migration is refused with one line that says why and what to do.
 */
#include <string.h>

#include <glib/gstdio.h>

#include "hook-fixture.h"

#define U_WEB "11111111-1111-1111-1111-111111111111"
#define MEMORY_LINE "<memory unit='KiB'>1048576</memory>"
#define CURRENT_LINE "<currentMemory unit='KiB'>1048576</currentMemory>"

/* xml/migrate-guest.xml (a domain as libvirt formats it for a migration)
 * with its <memory> and <currentMemory> lines replaced (NULL: kept, "":
 * removed). */
static char *guest_xml(const char *memory, const char *current)
{
    g_autofree char *path = g_test_build_filename(G_TEST_DIST, "xml", "migrate-guest.xml", NULL);
    g_autofree char *text = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_autoptr(GString) s = g_string_new(text);
    g_assert_cmpuint(g_string_replace(s, MEMORY_LINE, memory ? memory : MEMORY_LINE, 1), ==, 1);
    g_assert_cmpuint(g_string_replace(s, CURRENT_LINE, current ? current : CURRENT_LINE, 1), ==, 1);
    return g_strdup(s->str);
}

static gint by_text(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file of the fake KSM tree, name=value: what no migrate may change. */
static char *ksm_snapshot(HookFixture *fx)
{
    g_autoptr(GDir) dir = g_dir_open(fx->ksm_dir, 0, NULL);
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    const char *entry;

    g_assert_nonnull(dir);
    while ((entry = g_dir_read_name(dir))) {
        g_autofree char *value = hook_fixture_ksm_get(fx, entry);
        g_ptr_array_add(lines, g_strdup_printf("%s=%s", entry, g_strstrip(value)));
    }
    g_ptr_array_sort(lines, by_text);
    g_ptr_array_add(lines, NULL);
    return g_strjoinv("\n", (char **)lines->pdata);
}

static guint count(const char *haystack, const char *needle)
{
    guint n = 0;
    for (const char *p = strstr(haystack, needle); p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* Run migrate begin with xml; check what holds for every run: nothing on
 * stdout (libvirt keeps its XML), no knob, state, lock or state directory
 * touched.  Returns the exit status. */
static int migrate(HookFixture *fx, const char *xml, HookRun *run)
{
    g_autofree char *before = ksm_snapshot(fx);

    hook_run_text(fx, "web-1", "migrate", xml, run);
    g_autofree char *after = ksm_snapshot(fx);
    g_assert_cmpstr(run->out, ==, "");
    g_assert_cmpstr(after, ==, before);
    g_assert_false(g_file_test(fx->state_dir, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(fx->lock, G_FILE_TEST_EXISTS));
    /* A refusal is one line; a pass says nothing above info. */
    g_assert_cmpuint(count(run->err, "refused"), ==, run->status == 0 ? 0 : 1);
    return run->status;
}

static void test_fits(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *xml = guest_xml(NULL, NULL);

    /* 1 GiB guest, 8 GiB MemAvailable, the default reserve and margin. */
    hook_fixture_config(fx, "");
    g_assert_cmpint(migrate(fx, xml, &run), ==, 0);
    hook_assert_contains(run.err, "domain 'web-1' (" U_WEB "): incoming migration: the "
                         "guest's 1024 MiB (+ 256 MiB margin) fit the headroom of 7936 MiB "
                         "(MemAvailable 8192 MiB minus reserve_mib 256 MiB)");
    hook_run_clear(&run);
}

static void test_too_large(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *xml = guest_xml("<memory unit='GiB'>16</memory>",
                                     "<currentMemory unit='GiB'>4</currentMemory>");

    hook_fixture_config(fx, "");
    g_assert_cmpint(migrate(fx, xml, &run), ==, 1);
    /* The guest's size, what it needs, the headroom and how it is made, and
     * what to do; the full <memory>, not the balloon's 4 GiB. */
    g_autofree char *want = g_strdup_printf(
        "samepage-ksm: domain 'web-1' (" U_WEB "): incoming migration refused: the guest has "
        "16384 MiB of memory (<memory>) and arrives unmerged, so it needs 16640 MiB with the "
        "256 MiB margin for QEMU; this host's headroom is 7936 MiB (MemAvailable 8192 MiB "
        "minus reserve_mib 256 MiB). Migrate it to a host with more free memory, or free "
        "memory here and retry; migrate_headroom_check=off in %s allows it anyway\n",
        fx->config);
    hook_assert_contains(run.err, want);
    g_autofree char *log = hook_fixture_read_log(fx);
    hook_assert_contains(log, "incoming migration refused: the guest has 16384 MiB");
    hook_run_clear(&run);
}

/* The rule is exact: <memory> + margin <= MemAvailable - reserve. */
static void test_boundary(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };

    hook_fixture_config(fx, "reserve_mib=100\nmigrate_margin_mib=50\n");
    hook_fixture_meminfo(fx, (1024 + 50 + 100) * 1024);
    g_autofree char *exact = guest_xml(NULL, NULL);
    g_assert_cmpint(migrate(fx, exact, &run), ==, 0);
    hook_assert_contains(run.err, "fit the headroom of 1074 MiB");
    hook_run_clear(&run);

    /* One KiB more, even with the balloon at half: refused. */
    g_autofree char *over = guest_xml("<memory unit='KiB'>1048577</memory>",
                                      "<currentMemory unit='KiB'>524288</currentMemory>");
    g_assert_cmpint(migrate(fx, over, &run), ==, 1);
    hook_assert_contains(run.err, "needs 1075 MiB with the 50 MiB margin for QEMU; this "
                         "host's headroom is 1074 MiB (MemAvailable 1174 MiB minus "
                         "reserve_mib 100 MiB)");
    hook_run_clear(&run);

    /* The same guest fits once the margin is smaller. */
    hook_fixture_config(fx, "reserve_mib=100\nmigrate_margin_mib=49\n");
    g_assert_cmpint(migrate(fx, over, &run), ==, 0);
    hook_run_clear(&run);
}

/* libvirt's units (virScaleInteger): default KiB, 1024- and 1000-based,
 * case-insensitive, rounded up to KiB. */
static void test_units(HookFixture *fx, gconstpointer data)
{
    static const struct {
        const char *memory;
        int status;
    } cases[] = {
        { "<memory>2097152</memory>", 0 },
        { "<memory unit='KiB'>2097152</memory>", 0 },
        { "<memory unit='k'>2097152</memory>", 0 },
        { "<memory unit='M'>2048</memory>", 0 },
        { "<memory unit='MiB'>2048</memory>", 0 },
        { "<memory unit='G'>2</memory>", 0 },
        { "<memory unit='gib'>2</memory>", 0 },
        { "<memory unit='bytes'>2147483648</memory>", 0 },
        { "<memory unit='b'>2147483648</memory>", 0 },
        { "<memory unit='Byte'>2147483648</memory>", 0 },
        { "<memory unit='MB'>2147</memory>", 0 },        /* 2.147e9 bytes */
        { "<memory unit='KB'>2147484</memory>", 1 },     /* 2.147484e9 > 2^31 */
        { "<memory unit='GB'>3</memory>", 1 },
        { "<memory unit='MiB'>2049</memory>", 1 },
        { "<memory unit='bytes'>2147483649</memory>", 1 },   /* rounded up to a KiB more */
        { "<memory unit='TiB'>1</memory>", 1 },
        { "<memory unit='T'>1</memory>", 1 },
        { "<memory>  2097152\n  </memory>", 0 },   /* libvirt strips it too */
    };
    HookRun run = { 0 };

    /* Headroom exactly 2 GiB, no margin. */
    hook_fixture_config(fx, "reserve_mib=0\nmigrate_margin_mib=0\n");
    hook_fixture_meminfo(fx, 2 * 1024 * 1024);
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *xml = guest_xml(cases[i].memory, "");
        int status = migrate(fx, xml, &run);
        if (status != cases[i].status) {
            g_error("%s: exit %d, expected %d:\n%s", cases[i].memory, status,
                    cases[i].status, run.err);
        }
        hook_run_clear(&run);
    }
}

static void test_policy_off(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *xml = guest_xml("<memory unit='TiB'>64</memory>", "");

    hook_fixture_config(fx, "migrate_headroom_check=off\n");
    g_assert_cmpint(migrate(fx, xml, &run), ==, 0);
    hook_assert_contains(run.err, "incoming migration allowed without a headroom check "
                         "(migrate_headroom_check=off in ");
    hook_run_clear(&run);

    /* Back on, the same guest is refused. */
    hook_fixture_config(fx, "migrate_headroom_check=on\n");
    g_assert_cmpint(migrate(fx, xml, &run), ==, 1);
    hook_assert_contains(run.err, "the guest has 67108864 MiB of memory");
    hook_run_clear(&run);
}

/* Hostile or broken XML: refused with what is wrong, nothing changed. */
static void test_bad_xml(HookFixture *fx, gconstpointer data)
{
    static const struct {
        const char *memory, *current, *must;
    } cases[] = {
        { "", NULL, "the domain XML has no <memory>" },
        { "<memory unit='KiB'>0</memory>", NULL, "the domain XML has <memory> 0" },
        { "<memory>99999999999999999999999</memory>", NULL,
          "<memory>99999999999999999999999</memory>: not a size (a whole number of KiB up "
          "to 2^64 - 1)" },
        { "<memory>-1</memory>", NULL, "<memory>-1</memory>: not a size (a whole number of KiB)" },
        { "<memory>+5</memory>", NULL, "<memory>+5</memory>: not a size" },
        { "<memory unit='GiB'>1.5</memory>", NULL, "<memory>1.5</memory>: not a size" },
        { "<memory unit='GiB'></memory>", NULL, "<memory></memory>: not a size" },
        { "<memory unit='EiB'>8</memory>", NULL,
          "<memory unit='EiB'>8</memory> is over 8 EiB, more than libvirt accepts" },
        { "<memory unit='KiB'>18014398509481984</memory>", NULL, "is over 8 EiB" },
        { "<memory unit='furlong'>3</memory>", NULL, "<memory unit='furlong'>: unknown unit" },
        { "<memory unit='KiBB'>3</memory>", NULL, "unknown unit" },
        { NULL, "<currentMemory>lots</currentMemory>", "<currentMemory>lots</currentMemory>: "
          "not a size" },
        /* Control characters are escaped, never written to the terminal or
         * the log as they are (XML 1.0 allows only these few; others make
         * the document malformed). */
        { "<memory>12&#10;3&#x2028;4</memory>", NULL,
          "<memory>12\\u000a3\\u20284</memory>: not a size" },
        { "<memory unit='&#13;&#9;x'>1</memory>", NULL, "<memory unit='\\u000d\\u0009x'>: "
          "unknown unit" },
        { "<memory>12\x1b[31m</memory>", NULL, "the domain XML is malformed (line 7: PCDATA "
          "invalid Char value 27)" },
    };
    HookRun run = { 0 };

    hook_fixture_config(fx, "");
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *xml = guest_xml(cases[i].memory, cases[i].current);
        g_assert_cmpint(migrate(fx, xml, &run), ==, 1);
        hook_assert_contains(run.err, "incoming migration refused: cannot tell how much memory "
                             "the guest needs: ");
        hook_assert_contains(run.err, cases[i].must);
        hook_assert_contains(run.err, "fix the domain XML, or set migrate_headroom_check=off");
        for (const char *c = run.err; *c; c++) {
            g_assert_true(*c == '\n' || !g_ascii_iscntrl(*c));
        }
        g_assert_cmpuint(count(run.err, "\n"), ==, 2);   /* the refusal and a debug line */
        hook_run_clear(&run);
    }

    /* The reader's own refusals (policy.c), the same for migrate. */
    static const struct {
        const char *file, *must;
    } files[] = {
        { "malformed.xml", "the domain XML is malformed (line " },
        { "entity.xml", "document type declaration" },
        { "not-domain.xml", "the XML on stdin is not a <domain>" },
        { "bad-uuid.xml", "invalid <uuid>" },
        { NULL, "no domain XML on stdin" },
    };
    for (guint i = 0; i < G_N_ELEMENTS(files); i++) {
        g_autofree char *before = ksm_snapshot(fx);
        hook_run(fx, "web-1", "migrate", files[i].file, &run);
        g_autofree char *after = ksm_snapshot(fx);
        g_assert_cmpint(run.status, ==, 1);
        g_assert_cmpstr(run.out, ==, "");
        g_assert_cmpstr(after, ==, before);
        hook_assert_contains(run.err, "incoming migration refused: cannot tell how much memory");
        hook_assert_contains(run.err, files[i].must);
        hook_run_clear(&run);
    }
}

/* hugetlb RAM is the hugepage pool, which MemAvailable does not count. */
static void test_hugepages(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *xml = guest_xml("<memory unit='GiB'>16</memory><memoryBacking>"
                                     "<hugepages/></memoryBacking>", "");

    hook_fixture_config(fx, "");
    g_assert_cmpint(migrate(fx, xml, &run), ==, 0);
    hook_assert_contains(run.err, "the guest's 16384 MiB are hugetlb pages (<hugepages/>), "
                         "from the hugepage pool, not from MemAvailable: no headroom check");
    hook_run_clear(&run);
}

/* What the check cannot know, it refuses: a config nobody can read, no
 * MemAvailable. */
static void test_cannot_check(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *xml = guest_xml(NULL, NULL);

    hook_fixture_config(fx, "migrate_margin_mib=lots\n");
    g_assert_cmpint(migrate(fx, xml, &run), ==, 1);
    hook_assert_contains(run.err, "incoming migration refused: ");
    hook_assert_contains(run.err, "migrate_margin_mib=lots is not valid");
    hook_run_clear(&run);

    hook_fixture_config(fx, "");
    g_autofree char *meminfo = g_build_filename(fx->procfs, "meminfo", NULL);
    g_assert_cmpint(g_unlink(meminfo), ==, 0);
    g_assert_cmpint(migrate(fx, xml, &run), ==, 1);
    hook_assert_contains(run.err, "incoming migration refused: cannot read this host's free "
                         "memory, so cannot check that the guest fits: ");
    hook_assert_contains(run.err, "meminfo");
    hook_run_clear(&run);
}

/* migrate changes nothing; the prepare and started libvirt runs next do
 * the guest's usual KSM work. */
static void test_then_prepare(HookFixture *fx, gconstpointer data)
{
    HookRun run = { 0 };
    g_autofree char *xml = guest_xml(NULL, NULL);

    hook_fixture_config(fx, "");
    g_assert_cmpint(migrate(fx, xml, &run), ==, 0);
    g_autofree char *run_before = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(run_before, ==, "0");
    hook_run_clear(&run);

    hook_run_text(fx, "web-1", "prepare", xml, &run);
    g_assert_cmpint(run.status, ==, 0);
    g_autofree char *run_after = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(run_after, ==, "1");
    g_assert_cmpuint(hook_fixture_n_state_files(fx), ==, 1);
    hook_run_clear(&run);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!g_getenv("SAMEPAGE_HOOK_BIN")) {
        g_printerr("SAMEPAGE_HOOK_BIN is not set (meson test sets it)\n");
        return 77;
    }
    HOOK_TEST("/hook/migrate/fits", test_fits);
    HOOK_TEST("/hook/migrate/too-large", test_too_large);
    HOOK_TEST("/hook/migrate/boundary", test_boundary);
    HOOK_TEST("/hook/migrate/units", test_units);
    HOOK_TEST("/hook/migrate/policy-off", test_policy_off);
    HOOK_TEST("/hook/migrate/bad-xml", test_bad_xml);
    HOOK_TEST("/hook/migrate/hugepages", test_hugepages);
    HOOK_TEST("/hook/migrate/cannot-check", test_cannot_check);
    HOOK_TEST("/hook/migrate/then-prepare", test_then_prepare);
    return g_test_run();
}
