/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-smaps.c: mergeability of an address range from /proc/PID/smaps.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fake-tree.h"

#define MiB (G_GUINT64_CONSTANT(1) << 20)
#define KiB (G_GUINT64_CONSTANT(1) << 10)

/* The fake address space:
 *   D  0x55a060aff000-0x55a060b03000  /usr/bin/grep, not mergeable
 *   A  0x7f0000000000-0x7f0000100000  anon, mg, KSM: 256 kB
 *   B  0x7f0000100000-0x7f0000200000  anon, not mg, KSM: 0 kB
 *      0x7f0000200000-0x7f0000300000  hole
 *   C  0x7f0000300000-0x7f0000400000  anon, mg, KSM: 64 kB
 *   V  0xffffffffff600000-0xffffffffff601000  [vsyscall]
 */
#define D_START G_GUINT64_CONSTANT(0x55a060aff000)
#define A_START G_GUINT64_CONSTANT(0x7f0000000000)
#define B_START (A_START + MiB)
#define HOLE_START (A_START + 2 * MiB)
#define C_START (A_START + 3 * MiB)
#define C_END (A_START + 4 * MiB)
#define V_START G_GUINT64_CONSTANT(0xffffffffff600000)

static void add_area(GString *s, guint64 start, guint64 end, const char *perms,
                     const char *path, const char *flags, gint64 ksm_kb)
{
    guint64 kb = (end - start) / 1024;
    g_string_append_printf(s, "%08" G_GINT64_MODIFIER "x-%08" G_GINT64_MODIFIER "x %s "
                           "00000000 %s %s%s%s\n",
                           start, end, perms, path ? "fe:00" : "00:00",
                           path ? "247476" : "0", path ? "                     " : "",
                           path ? path : "");
    g_string_append_printf(s,
        "Size:             %6" G_GUINT64_FORMAT " kB\n"
        "KernelPageSize:        4 kB\n"
        "MMUPageSize:           4 kB\n"
        "Rss:              %6" G_GUINT64_FORMAT " kB\n"
        "Pss:                   0 kB\n"
        "Pss_Dirty:             0 kB\n"
        "Shared_Clean:          0 kB\n"
        "Shared_Dirty:          0 kB\n"
        "Private_Clean:         0 kB\n"
        "Private_Dirty:         0 kB\n"
        "Referenced:            0 kB\n"
        "Anonymous:             0 kB\n", kb, kb);
    if (ksm_kb >= 0) {
        g_string_append_printf(s, "KSM:              %6" G_GINT64_FORMAT " kB\n", ksm_kb);
    }
    g_string_append(s,
        "LazyFree:              0 kB\n"
        "AnonHugePages:         0 kB\n"
        "ShmemPmdMapped:        0 kB\n"
        "FilePmdMapped:         0 kB\n"
        "Shared_Hugetlb:        0 kB\n"
        "Private_Hugetlb:       0 kB\n"
        "Swap:                  0 kB\n"
        "SwapPss:               0 kB\n"
        "Locked:                0 kB\n"
        "THPeligible:           0\n"
        "ProtectionKey:         0\n");
    g_string_append_printf(s, "VmFlags: %s \n", flags);   /* the kernel leaves a blank */
}

/* with_ksm: a 6.6+ kernel (KSM: lines) or an older one. */
static char *fake_smaps(gboolean with_ksm)
{
    GString *s = g_string_new(NULL);
    add_area(s, D_START, D_START + 0x4000, "r--p", "/usr/bin/grep", "rd mr mw me",
             with_ksm ? 0 : -1);
    add_area(s, A_START, B_START, "rw-p", NULL, "rd wr mr mw me ac sd mg", with_ksm ? 256 : -1);
    add_area(s, B_START, HOLE_START, "rw-p", NULL, "rd wr mr mw me ac sd", with_ksm ? 0 : -1);
    add_area(s, C_START, C_END, "rw-p", NULL, "rd wr mr mw me ac mg", with_ksm ? 64 : -1);
    add_area(s, V_START, V_START + 0x1000, "--xp", "[vsyscall]", "ex", with_ksm ? 0 : -1);
    return g_string_free(s, FALSE);
}

typedef struct {
    const char *what;
    guint64 start, len;
    guint64 mapped, mergeable;
    gint64 ksm_bytes;      /* G_MININT64: don't check */
    guint areas;
} RangeCase;

static void check_range(const char *text, const RangeCase *c)
{
    GError *error = NULL;
    KsmRangeSmaps out;
    memset(&out, 0x5a, sizeof(out));
    gboolean ok = ksm_range_smaps_parse(text, c->start, c->len, &out, &error);
    g_assert_no_error(error);
    g_assert_true(ok);
    if (out.mapped_bytes != c->mapped || out.mergeable_bytes != c->mergeable ||
        out.areas != c->areas || (c->ksm_bytes != G_MININT64 && out.ksm_bytes != c->ksm_bytes)) {
        g_error("%s: mapped %" G_GUINT64_FORMAT " mergeable %" G_GUINT64_FORMAT
                " ksm %" G_GINT64_FORMAT " areas %u; want %" G_GUINT64_FORMAT " %"
                G_GUINT64_FORMAT " %" G_GINT64_FORMAT " %u", c->what,
                out.mapped_bytes, out.mergeable_bytes, out.ksm_bytes, out.areas,
                c->mapped, c->mergeable, c->ksm_bytes, c->areas);
    }
}

static void test_ranges_618(void)
{
    g_autofree char *text = fake_smaps(TRUE);
    static const RangeCase cases[] = {
        { "inside A", A_START + 0x1000, 0x2000, 0x2000, 0x2000, 0, 1 },
        { "exactly A", A_START, MiB, MiB, MiB, 256 * KiB, 1 },
        { "exactly B (not mg)", B_START, MiB, MiB, 0, 0, 1 },
        { "inside C", C_START + 0x10000, 0x1000, 0x1000, 0x1000, 0, 1 },
        { "before A, into A", A_START - 0x1000, 0x3000, 0x2000, 0x2000, 0, 1 },
        { "end of B into the hole", HOLE_START - 0x1000, 0x10000, 0x1000, 0, 0, 1 },
        { "hole into C", C_START - 0x1000, 0x3000, 0x2000, 0x2000, 0, 1 },
        { "A and B whole", A_START, 2 * MiB, 2 * MiB, MiB, 256 * KiB, 2 },
        { "A, B, hole, C whole", A_START, 4 * MiB, 3 * MiB, 2 * MiB, 320 * KiB, 3 },
        { "half A .. half C", A_START + MiB / 2, 3 * MiB, 2 * MiB, MiB, 0, 3 },
        { "everything", 0, G_MAXUINT64, 3 * MiB + 0x5000, 2 * MiB, 320 * KiB, 5 },
        { "hole only", HOLE_START + 0x1000, 0x1000, 0, 0, G_MININT64, 0 },
        { "below everything", 0x1000, 0x1000, 0, 0, G_MININT64, 0 },
        { "vsyscall", V_START, 0x1000, 0x1000, 0, 0, 1 },
        { "empty range in A", A_START + 0x1000, 0, 0, 0, G_MININT64, 0 },
        { "ends where A starts", A_START - 0x2000, 0x2000, 0, 0, G_MININT64, 0 },
        { "starts where C ends", C_END, 0x2000, 0, 0, G_MININT64, 0 },
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        check_range(text, &cases[i]);
    }
}

static void test_ranges_without_ksm_line(void)
{
    /* Before 6.6 smaps has no KSM: line: ksm_bytes is -1, unknown. */
    g_autofree char *text = fake_smaps(FALSE);
    static const RangeCase cases[] = {
        { "exactly A", A_START, MiB, MiB, MiB, -1, 1 },
        { "inside A", A_START + 0x1000, 0x2000, 0x2000, 0x2000, -1, 1 },
        { "A, B, hole, C whole", A_START, 4 * MiB, 3 * MiB, 2 * MiB, -1, 3 },
        { "hole only", HOLE_START, 0x1000, 0, 0, -1, 0 },
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        check_range(text, &cases[i]);
    }
}

static void test_mg_flag_positions(void)
{
    /* mg first, last without the trailing blank, alone; and no mg at all. */
    static const char *const flags[] = { "mg rd wr", "rd wr mg", "mg" };
    for (guint i = 0; i < G_N_ELEMENTS(flags); i++) {
        g_autofree char *text = g_strdup_printf(
            "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \nSize: 4 kB\nVmFlags: %s\n",
            flags[i]);
        RangeCase c = { flags[i], A_START, 0x1000, 0x1000, 0x1000, G_MININT64, 1 };
        check_range(text, &c);
    }
    const char *no_mg =
        "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \nSize: 4 kB\nVmFlags: rd wr mr mw me\n";
    RangeCase c = { "no mg", A_START, 0x1000, 0x1000, 0, G_MININT64, 1 };
    check_range(no_mg, &c);
    const char *no_flags_line = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \nSize: 4 kB\n";
    RangeCase c2 = { "no VmFlags line", A_START, 0x1000, 0x1000, 0, G_MININT64, 1 };
    check_range(no_flags_line, &c2);
}

static void test_path_with_colons_and_spaces(void)
{
    const char *text =
        "7f0000000000-7f0000001000 rw-s 00000000 00:05 1234 /memfd:pc.ram (deleted)\n"
        "Size: 4 kB\n"
        "VmFlags: rd wr sh mr mw me ms sd \n";
    RangeCase c = { "memfd", A_START, 0x1000, 0x1000, 0, G_MININT64, 1 };
    check_range(text, &c);
}

static void test_empty_text(void)
{
    RangeCase c = { "empty smaps", A_START, MiB, 0, 0, G_MININT64, 0 };
    check_range("", &c);
}

static void test_malformed(void)
{
    static const char *const bad[] = {
        "zzzz-1000 rw-p 00000000 00:00 0\nSize: 4 kB\n",
        "7f0000000000 rw-p 00000000 00:00 0\nSize: 4 kB\n",            /* no dash */
        "7f0000000000- rw-p 00000000 00:00 0\n",                      /* no end */
        "7f0000001000-7f0000000000 rw-p 00000000 00:00 0\n",          /* end < start */
        "7f0000000000-7f00000010zz rw-p 00000000 00:00 0\n",          /* bad hex */
        "Size: 4 kB\n7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n", /* field first */
        "7f0000000000-7f0000001000 rw-p 00000000 00:00 0\nhello world\n",
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        GError *error = NULL;
        KsmRangeSmaps out;
        if (ksm_range_smaps_parse(bad[i], A_START, MiB, &out, &error)) {
            g_error("ksm_range_smaps_parse accepted \"%s\"", g_strescape(bad[i], NULL));
        }
        g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
        g_clear_error(&error);
    }
}

static void test_wrapping_range(void)
{
    GError *error = NULL;
    KsmRangeSmaps out;
    g_autofree char *text = fake_smaps(TRUE);
    g_assert_false(ksm_range_smaps_parse(text, V_START, G_MAXUINT64, &out, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_INVALID);
    g_clear_error(&error);
}

static void test_read_file(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    KsmRangeSmaps out;
    g_autofree char *text = fake_smaps(TRUE);
    fake_tree_proc_write(t, 555, "smaps", text);
    g_assert_true(ksm_range_smaps(t->ctx, 555, A_START, 4 * MiB, &out, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(out.mapped_bytes, ==, 3 * MiB);
    g_assert_cmpuint(out.mergeable_bytes, ==, 2 * MiB);
    g_assert_cmpint(out.ksm_bytes, ==, 320 * KiB);
    g_assert_cmpuint(out.areas, ==, 3);
}

static void test_read_vanished(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    KsmRangeSmaps out;
    g_assert_false(ksm_range_smaps(t->ctx, 556, A_START, MiB, &out, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NO_PROCESS);
    g_clear_error(&error);
}

static void check_parts(const char *text, guint64 start, guint64 len,
                        const KsmAddrRange *want, guint n_want)
{
    GError *error = NULL;
    g_autoptr(GArray) parts = ksm_range_smaps_mergeable_parts(text, start, len, &error);

    g_assert_no_error(error);
    g_assert_nonnull(parts);
    g_assert_cmpuint(parts->len, ==, n_want);
    for (guint i = 0; i < n_want; i++) {
        g_assert_cmphex(g_array_index(parts, KsmAddrRange, i).start, ==, want[i].start);
        g_assert_cmphex(g_array_index(parts, KsmAddrRange, i).end, ==, want[i].end);
    }
}

static void test_mergeable_parts(void)
{
    g_autofree char *text = fake_smaps(TRUE);
    GError *error = NULL;

    /* The whole space: A and C, not B, the hole or the file. */
    const KsmAddrRange all[] = { { A_START, B_START }, { C_START, C_END } };
    check_parts(text, 0, G_MAXUINT64 / 2, all, G_N_ELEMENTS(all));
    /* Clipped to the range asked about. */
    const KsmAddrRange clip[] = { { A_START + 4 * KiB, B_START }, { C_START, C_START + 8 * KiB } };
    check_parts(text, A_START + 4 * KiB, C_START + 8 * KiB - (A_START + 4 * KiB), clip,
                G_N_ELEMENTS(clip));
    /* Only B: nothing. */
    check_parts(text, B_START, MiB, NULL, 0);
    g_assert_null(ksm_range_smaps_mergeable_parts(text, V_START, G_MAXUINT64, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_null(ksm_range_smaps_mergeable_parts("garbage\n", A_START, MiB, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_clear_error(&error);
}

static void test_mergeable_parts_joined(void)
{
    /* One mapping split in three by madvise of its middle: mg, mg, not. */
    GString *s = g_string_new(NULL);
    add_area(s, A_START, A_START + MiB, "rw-p", NULL, "rd wr mr mw me ac mg", 0);
    add_area(s, A_START + MiB, A_START + 2 * MiB, "rw-p", NULL, "rd wr mr mw me ac sd mg", 0);
    add_area(s, A_START + 2 * MiB, A_START + 3 * MiB, "rw-p", NULL, "rd wr mr mw me ac", 0);
    g_autofree char *text = g_string_free(s, FALSE);
    const KsmAddrRange want[] = { { A_START, A_START + 2 * MiB } };

    check_parts(text, A_START, 3 * MiB, want, G_N_ELEMENTS(want));
}

static void test_read_real_self(void)
{
    /* The real kernel: our own anonymous mapping, before and after MADV_MERGEABLE.
     * Only this process's memory is touched; no KSM knob changes. */
    GError *error = NULL;
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    gsize len = 16 * (gsize)sysconf(_SC_PAGESIZE);
    KsmRangeSmaps out;

    if (!ksm_available(ctx, NULL)) {
        g_test_skip("no KSM in this kernel (/sys/kernel/mm/ksm/run missing)");
        return;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_true(p != MAP_FAILED);
    memset(p, 0x11, len);

    g_assert_true(ksm_range_smaps(ctx, getpid(), (guintptr)p, len, &out, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(out.mapped_bytes, ==, len);
    g_assert_cmpuint(out.mergeable_bytes, ==, 0);

    if (!ksm_advise_mergeable(p, len, &error)) {
        g_test_skip_printf("MADV_MERGEABLE refused here: %s", error->message);
        g_clear_error(&error);
        munmap(p, len);
        return;
    }
    g_assert_true(ksm_range_smaps(ctx, getpid(), (guintptr)p, len, &out, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(out.mapped_bytes, ==, len);
    g_assert_cmpuint(out.mergeable_bytes, ==, len);

    g_assert_true(ksm_advise_unmergeable(p, len, &error));
    g_assert_no_error(error);
    g_assert_true(ksm_range_smaps(ctx, getpid(), (guintptr)p, len, &out, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(out.mergeable_bytes, ==, 0);
    munmap(p, len);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/smaps/parse/ranges-6.18", test_ranges_618);
    g_test_add_func("/smaps/parse/ranges-without-ksm-line", test_ranges_without_ksm_line);
    g_test_add_func("/smaps/parse/mg-flag-positions", test_mg_flag_positions);
    g_test_add_func("/smaps/parse/path-with-colons", test_path_with_colons_and_spaces);
    g_test_add_func("/smaps/parse/empty", test_empty_text);
    g_test_add_func("/smaps/parse/malformed", test_malformed);
    g_test_add_func("/smaps/parse/wrapping-range", test_wrapping_range);
    g_test_add_func("/smaps/parse/mergeable-parts", test_mergeable_parts);
    g_test_add_func("/smaps/parse/mergeable-parts-joined", test_mergeable_parts_joined);
    FAKE_TEST("/smaps/read/file", test_read_file);
    FAKE_TEST("/smaps/read/vanished", test_read_vanished);
    g_test_add_func("/smaps/read/real-self", test_read_real_self);

    return g_test_run();
}
