/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-knobs.c: knob validation, writes, all-or-nothing sets, save/restore.
 *
 * A regular file never answers a write with EBUSY or EINVAL the way a sysfs
 * attribute does, so this program is linked with -Wl,--wrap=write: libksm's
 * write(2) calls go through __wrap_write below, which records every write
 * into the fake KSM directory (to check the order) and can refuse one with
 * a chosen errno, like the kernel would.  A sysfs attribute ignores
 * O_TRUNC and a refused write leaves the value as it was, so open64 is
 * wrapped too: O_TRUNC is dropped for files in the fake KSM directory and a
 * write that goes through replaces the whole content.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake-tree.h"

/* ---- the fake kernel refusal ---- */

static char *wrap_dir;          /* realpath of the fake ksm dir; NULL: pass through */
static GPtrArray *wrap_log;     /* "name=value" for each write into wrap_dir */
static char *wrap_refuse_name;  /* basename to refuse */
static int wrap_refuse_errno;

ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
int __real_open64(const char *path, int flags, ...);
int __wrap_open64(const char *path, int flags, ...);

/* The basename when path is in the fake KSM directory, else NULL. */
static const char *in_wrap_dir(const char *path)
{
    if (!wrap_dir) {
        return NULL;
    }
    gsize dlen = strlen(wrap_dir);
    if (strncmp(path, wrap_dir, dlen) == 0 && path[dlen] == '/') {
        return path + dlen + 1;
    }
    return NULL;
}

int __wrap_open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    char *real = wrap_dir ? realpath(path, NULL) : NULL;
    if (real && in_wrap_dir(real)) {
        flags &= ~O_TRUNC;
    }
    free(real);
    return __real_open64(path, flags, mode);
}

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    char link[64], path[PATH_MAX];
    const char *base = NULL;

    if (wrap_dir) {
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t l = readlink(link, path, sizeof(path) - 1);
        if (l > 0) {
            path[l] = '\0';
            base = in_wrap_dir(path);
        }
    }
    if (!base) {
        return __real_write(fd, buf, n);
    }
    if (wrap_log->len > 1000) {
        g_error("libksm wrote %u times into the fake KSM directory: a retry loop?",
                wrap_log->len);
    }
    char *value = g_strndup(buf, n);
    g_strchomp(value);
    g_ptr_array_add(wrap_log, g_strdup_printf("%s=%s", base, value));
    g_free(value);
    if (wrap_refuse_name && strcmp(base, wrap_refuse_name) == 0) {
        errno = wrap_refuse_errno;
        return -1;
    }
    /* sysfs: the write is the whole new value. */
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
        return -1;
    }
    return __real_write(fd, buf, n);
}

typedef struct {
    FakeTree t;
} Fixture;

static void setup(Fixture *f, gconstpointer data)
{
    fake_tree_setup(&f->t, data);
    fake_tree_ksm_618(&f->t);
    wrap_dir = realpath(f->t.ksm_dir, NULL);
    g_assert_nonnull(wrap_dir);
    wrap_log = g_ptr_array_new_with_free_func(g_free);
    wrap_refuse_name = NULL;
    wrap_refuse_errno = 0;
}

static void teardown(Fixture *f, gconstpointer data)
{
    free(wrap_dir);
    wrap_dir = NULL;
    g_ptr_array_unref(wrap_log);
    wrap_log = NULL;
    g_free(wrap_refuse_name);
    wrap_refuse_name = NULL;
    fake_tree_teardown(&f->t, data);
}

static void refuse(const char *name, int err)
{
    g_free(wrap_refuse_name);
    wrap_refuse_name = g_strdup(name);
    wrap_refuse_errno = err;
}

static char *log_text(void)
{
    g_ptr_array_add(wrap_log, NULL);
    char *s = g_strjoinv(" ", (char **)wrap_log->pdata);
    g_ptr_array_remove_index(wrap_log, wrap_log->len - 1);
    return s;
}

#define assert_log(want) do { \
    g_autofree char *log_ = log_text(); \
    g_assert_cmpstr(log_, ==, (want)); \
} while (0)

/* The file's content without its trailing newline. */
static char *knob_file(Fixture *f, const char *name)
{
    char *text = fake_tree_ksm_read(&f->t, name);
    return g_strchomp(text);
}

#define assert_file(f, name, want) do { \
    g_autofree char *got_ = knob_file((f), (name)); \
    g_assert_cmpstr(got_, ==, (want)); \
} while (0)

/* ---- ksm_knob_parse ---- */

static void parse_fails(Fixture *f, const char *name, const char *text, int code)
{
    GError *error = NULL;
    KsmField field = KSM_FIELD__COUNT;
    gint64 v = -4242;
    if (ksm_knob_parse(f->t.ctx, name, text, &field, &v, &error)) {
        g_error("ksm_knob_parse(%s, \"%s\") accepted it as %" G_GINT64_FORMAT, name, text, v);
    }
    g_assert_error(error, KSM_ERROR, code);
    g_assert_nonnull(strstr(error->message, name));
    g_clear_error(&error);
}

static void parse_ok(Fixture *f, const char *name, const char *text, KsmField want_field,
                     gint64 want)
{
    GError *error = NULL;
    KsmField field = KSM_FIELD__COUNT;
    gint64 v = -4242;
    gboolean ok = ksm_knob_parse(f->t.ctx, name, text, &field, &v, &error);
    g_assert_no_error(error);
    g_assert_true(ok);
    g_assert_cmpint(field, ==, want_field);
    g_assert_cmpint(v, ==, want);
}

static void test_parse_valid(Fixture *f, gconstpointer data)
{
    parse_ok(f, "run", "0", KSM_FIELD_RUN, 0);
    parse_ok(f, "run", "1", KSM_FIELD_RUN, 1);
    parse_ok(f, "run", "2", KSM_FIELD_RUN, 2);
    parse_ok(f, "pages_to_scan", "5000", KSM_FIELD_PAGES_TO_SCAN, 5000);
    parse_ok(f, "sleep_millisecs", "0", KSM_FIELD_SLEEP_MILLISECS, 0);
    parse_ok(f, "max_page_sharing", "2", KSM_FIELD_MAX_PAGE_SHARING, 2);
    parse_ok(f, "advisor_target_scan_time", "1", KSM_FIELD_ADVISOR_TARGET_SCAN_TIME, 1);
    parse_ok(f, "advisor_mode", "scan-time", KSM_FIELD_ADVISOR_MODE, KSM_ADVISOR_SCAN_TIME);
    parse_ok(f, "advisor_mode", "none", KSM_FIELD_ADVISOR_MODE, KSM_ADVISOR_NONE);
    parse_ok(f, "merge_across_nodes", "0", KSM_FIELD_MERGE_ACROSS_NODES, 0);
    parse_ok(f, "use_zero_pages", "1", KSM_FIELD_USE_ZERO_PAGES, 1);
    parse_ok(f, "smart_scan", "0", KSM_FIELD_SMART_SCAN, 0);
}

static void test_parse_unknown(Fixture *f, gconstpointer data)
{
    parse_fails(f, "bogus", "1", KSM_ERROR_UNKNOWN_KNOB);
    parse_fails(f, "RUN", "1", KSM_ERROR_UNKNOWN_KNOB);
    parse_fails(f, "ksm_rmap_items", "1", KSM_ERROR_UNKNOWN_KNOB);
}

static void test_parse_absent_on_this_kernel(Fixture *f, gconstpointer data)
{
    /* libksm knows smart_scan, but a 4.x kernel has no such file. */
    fake_tree_ksm_remove(&f->t, "smart_scan");
    fake_tree_ksm_remove(&f->t, "advisor_mode");
    parse_fails(f, "smart_scan", "1", KSM_ERROR_UNKNOWN_KNOB);
    parse_fails(f, "advisor_mode", "scan-time", KSM_ERROR_UNKNOWN_KNOB);
}

static void test_parse_counter_read_only(Fixture *f, gconstpointer data)
{
    static const char *const counters[] = {
        "pages_shared", "pages_sharing", "full_scans", "general_profit", "ksm_zero_pages",
    };
    for (guint i = 0; i < G_N_ELEMENTS(counters); i++) {
        GError *error = NULL;
        KsmField field;
        gint64 v;
        g_assert_false(ksm_knob_parse(f->t.ctx, counters[i], "0", &field, &v, &error));
        g_assert_error(error, KSM_ERROR, KSM_ERROR_INVALID);
        g_assert_nonnull(strstr(error->message, counters[i]));
        g_assert_nonnull(strstr(error->message, "read-only"));
        g_clear_error(&error);
    }
}

static void test_parse_bad_values(Fixture *f, gconstpointer data)
{
    static const char *const bad_ints[] = {
        "", "abc", "12abc", "1.5", "0x10", "-", "1 2", "99999999999999999999",
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad_ints); i++) {
        parse_fails(f, "pages_to_scan", bad_ints[i], KSM_ERROR_INVALID);
        parse_fails(f, "run", bad_ints[i], KSM_ERROR_INVALID);
    }
    parse_fails(f, "run", "3", KSM_ERROR_INVALID);
    parse_fails(f, "run", "4", KSM_ERROR_INVALID);     /* the offline bit is the kernel's */
    parse_fails(f, "run", "-1", KSM_ERROR_INVALID);
    parse_fails(f, "max_page_sharing", "1", KSM_ERROR_INVALID);
    parse_fails(f, "max_page_sharing", "0", KSM_ERROR_INVALID);
    parse_fails(f, "advisor_target_scan_time", "0", KSM_ERROR_INVALID);
    parse_fails(f, "pages_to_scan", "-1", KSM_ERROR_INVALID);
    parse_fails(f, "sleep_millisecs", "-20", KSM_ERROR_INVALID);
    parse_fails(f, "merge_across_nodes", "2", KSM_ERROR_INVALID);
    parse_fails(f, "use_zero_pages", "yes", KSM_ERROR_INVALID);
    parse_fails(f, "advisor_mode", "bogus", KSM_ERROR_INVALID);
    parse_fails(f, "advisor_mode", "2", KSM_ERROR_INVALID);
    parse_fails(f, "advisor_mode", "", KSM_ERROR_INVALID);
}

static void test_parse_every_range_edge(Fixture *f, gconstpointer data)
{
    /* For every knob: min and max accepted, min-1 and max+1 refused. */
    for (int i = 0; i < KSM_FIELD__COUNT; i++) {
        const KsmFieldInfo *info = ksm_field_info((KsmField)i);
        if (!info->knob) {
            continue;
        }
        g_autofree char *lo = ksm_field_format((KsmField)i, info->min);
        g_autofree char *hi = ksm_field_format((KsmField)i, info->max);
        parse_ok(f, info->name, lo, (KsmField)i, info->min);
        parse_ok(f, info->name, hi, (KsmField)i, info->max);
        if (i != KSM_FIELD_ADVISOR_MODE) {
            g_autofree char *below = g_strdup_printf("%" G_GINT64_FORMAT, info->min - 1);
            g_autofree char *above = g_strdup_printf("%" G_GINT64_FORMAT, info->max + 1);
            parse_fails(f, info->name, below, KSM_ERROR_INVALID);
            parse_fails(f, info->name, above, KSM_ERROR_INVALID);
        }
    }
}

/* ---- ksm_knob_write ---- */

static void test_write(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    g_assert_true(ksm_knob_write(f->t.ctx, KSM_FIELD_SLEEP_MILLISECS, 200, &error));
    g_assert_no_error(error);
    assert_file(f, "sleep_millisecs", "200");
    g_assert_true(ksm_knob_write(f->t.ctx, KSM_FIELD_ADVISOR_MODE, KSM_ADVISOR_SCAN_TIME, &error));
    g_assert_no_error(error);
    assert_file(f, "advisor_mode", "scan-time");
    assert_log("sleep_millisecs=200 advisor_mode=scan-time");

    gint64 v = -1;
    g_assert_true(ksm_field_read(f->t.ctx, KSM_FIELD_SLEEP_MILLISECS, &v, &error));
    g_assert_no_error(error);
    g_assert_cmpint(v, ==, 200);
}

static void test_write_refuses_invalid(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    g_assert_false(ksm_knob_write(f->t.ctx, KSM_FIELD_RUN, 3, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_false(ksm_knob_write(f->t.ctx, KSM_FIELD_MAX_PAGE_SHARING, 1, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_false(ksm_knob_write(f->t.ctx, KSM_FIELD_PAGES_SHARED, 0, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_INVALID);
    g_clear_error(&error);
    /* Nothing reached the files. */
    assert_log("");
    assert_file(f, "run", "1");
    assert_file(f, "max_page_sharing", "256");
    assert_file(f, "pages_shared", "1234");
}

static void test_write_missing_file(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    fake_tree_ksm_remove(&f->t, "smart_scan");
    g_assert_false(ksm_knob_write(f->t.ctx, KSM_FIELD_SMART_SCAN, 0, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_assert_nonnull(strstr(error->message, "smart_scan"));
    g_clear_error(&error);
    /* And the library did not create it. */
    g_assert_false(fake_tree_exists(&f->t, "sys/kernel/mm/ksm/smart_scan"));
}

typedef struct {
    const char *knob;
    KsmField field;
    gint64 value;
    int err;
    int code;
    const char *hint;       /* the message must say what to do */
} ErrnoCase;

static void test_write_errno_messages(Fixture *f, gconstpointer data)
{
    static const ErrnoCase cases[] = {
        { "merge_across_nodes", KSM_FIELD_MERGE_ACROSS_NODES, 0, EBUSY, KSM_ERROR_BUSY, "run=2" },
        { "max_page_sharing", KSM_FIELD_MAX_PAGE_SHARING, 512, EBUSY, KSM_ERROR_BUSY, "unmerge" },
        { "pages_to_scan", KSM_FIELD_PAGES_TO_SCAN, 500, EINVAL, KSM_ERROR_INVALID, "advisor_mode=none" },
        { "sleep_millisecs", KSM_FIELD_SLEEP_MILLISECS, 10, EINVAL, KSM_ERROR_INVALID, "sleep_millisecs" },
        { "run", KSM_FIELD_RUN, 1, EACCES, KSM_ERROR_PERMISSION, "root" },
        { "run", KSM_FIELD_RUN, 1, EPERM, KSM_ERROR_PERMISSION, "root" },
        { "run", KSM_FIELD_RUN, 2, EINTR, KSM_ERROR_INTERRUPTED, "run" },
        { "run", KSM_FIELD_RUN, 2, ENOMEM, KSM_ERROR_NO_MEMORY, "run" },
        { "run", KSM_FIELD_RUN, 2, EAGAIN, KSM_ERROR_NO_MEMORY, "run" },
        { "run", KSM_FIELD_RUN, 2, EIO, KSM_ERROR_FAILED, "run" },
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        GError *error = NULL;
        g_autofree char *before = knob_file(f, cases[i].knob);
        refuse(cases[i].knob, cases[i].err);
        g_assert_false(ksm_knob_write(f->t.ctx, cases[i].field, cases[i].value, &error));
        if (!g_error_matches(error, KSM_ERROR, cases[i].code)) {
            g_error("%s with %s: got code %d (%s), want %d", cases[i].knob,
                    g_strerror(cases[i].err), error ? error->code : -1,
                    error ? error->message : "no error", cases[i].code);
        }
        if (!strstr(error->message, cases[i].hint)) {
            g_error("%s with %s: message \"%s\" does not say \"%s\"", cases[i].knob,
                    g_strerror(cases[i].err), error->message, cases[i].hint);
        }
        g_clear_error(&error);
        assert_file(f, cases[i].knob, before);
    }
}

static void test_write_read_only_file(Fixture *f, gconstpointer data)
{
    /* The real EACCES path, without the write wrapper: a 0444 file. */
    GError *error = NULL;
    g_autofree char *run = g_build_filename(f->t.ksm_dir, "run", NULL);
    g_assert_cmpint(chmod(run, 0444), ==, 0);
    if (geteuid() == 0) {
        g_test_skip("running as root: file modes do not stop root, so EACCES cannot "
                    "be produced here (the errno-messages case covers the mapping)");
        return;
    }
    g_assert_false(ksm_knob_write(f->t.ctx, KSM_FIELD_RUN, 0, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PERMISSION);
    g_assert_nonnull(strstr(error->message, "root"));
    g_clear_error(&error);
    g_assert_false(ksm_writable(f->t.ctx, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PERMISSION);
    g_clear_error(&error);
    assert_file(f, "run", "1");
}

/* ---- ksm_knobs_set ---- */

static void test_set_ok(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    const char *const a[] = { "sleep_millisecs=50", "pages_to_scan=200", "use_zero_pages=0" };
    KsmKnobSetting old_v[3], new_v[3];

    g_assert_true(ksm_knobs_set(f->t.ctx, a, 3, old_v, new_v, &error));
    g_assert_no_error(error);
    assert_file(f, "sleep_millisecs", "50");
    assert_file(f, "pages_to_scan", "200");
    assert_file(f, "use_zero_pages", "0");

    /* old and new values in the order of the assignments */
    g_assert_cmpint(old_v[0].field, ==, KSM_FIELD_SLEEP_MILLISECS);
    g_assert_cmpint(old_v[0].value, ==, 20);
    g_assert_cmpint(old_v[1].field, ==, KSM_FIELD_PAGES_TO_SCAN);
    g_assert_cmpint(old_v[1].value, ==, 100);
    g_assert_cmpint(old_v[2].field, ==, KSM_FIELD_USE_ZERO_PAGES);
    g_assert_cmpint(old_v[2].value, ==, 1);
    g_assert_cmpint(new_v[0].field, ==, KSM_FIELD_SLEEP_MILLISECS);
    g_assert_cmpint(new_v[0].value, ==, 50);
    g_assert_cmpint(new_v[1].value, ==, 200);
    g_assert_cmpint(new_v[2].value, ==, 0);

    /* NULL old/new are allowed */
    const char *const b[] = { "sleep_millisecs=60" };
    g_assert_true(ksm_knobs_set(f->t.ctx, b, 1, NULL, NULL, &error));
    g_assert_no_error(error);
    assert_file(f, "sleep_millisecs", "60");
}

static void test_set_order(Fixture *f, gconstpointer data)
{
    /* Given in the worst order: the kernel needs advisor_mode before
     * pages_to_scan, run=2 before merge_across_nodes, and run=0/1 last. */
    GError *error = NULL;
    const char *const a[] = { "run=1", "pages_to_scan=300", "advisor_mode=scan-time",
                              "sleep_millisecs=30" };
    g_assert_true(ksm_knobs_set(f->t.ctx, a, G_N_ELEMENTS(a), NULL, NULL, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(wrap_log->len, ==, 4);
    g_assert_cmpstr(g_ptr_array_index(wrap_log, 3), ==, "run=1");
    guint adv = 9, pts = 9;
    for (guint i = 0; i < wrap_log->len; i++) {
        const char *w = g_ptr_array_index(wrap_log, i);
        if (g_str_has_prefix(w, "advisor_mode=")) {
            adv = i;
        } else if (g_str_has_prefix(w, "pages_to_scan=")) {
            pts = i;
        }
    }
    g_assert_cmpuint(adv, <, pts);

    g_ptr_array_set_size(wrap_log, 0);
    const char *const b[] = { "merge_across_nodes=0", "run=2" };
    g_assert_true(ksm_knobs_set(f->t.ctx, b, 2, NULL, NULL, &error));
    g_assert_no_error(error);
    assert_log("run=2 merge_across_nodes=0");
}

static void check_set_refused(Fixture *f, const char *const *a, guint n, int code)
{
    GError *error = NULL;
    g_autofree char *before_sleep = knob_file(f, "sleep_millisecs");
    g_autofree char *before_run = knob_file(f, "run");
    g_autofree char *before_pts = knob_file(f, "pages_to_scan");

    g_assert_false(ksm_knobs_set(f->t.ctx, a, n, NULL, NULL, &error));
    g_assert_error(error, KSM_ERROR, code);
    g_clear_error(&error);
    /* all or nothing: not one write */
    assert_log("");
    assert_file(f, "sleep_millisecs", before_sleep);
    assert_file(f, "run", before_run);
    assert_file(f, "pages_to_scan", before_pts);
}

static void test_set_all_or_nothing(Fixture *f, gconstpointer data)
{
    const char *const bad_value[] = { "sleep_millisecs=50", "run=0", "pages_to_scan=abc" };
    check_set_refused(f, bad_value, 3, KSM_ERROR_INVALID);
    const char *const trailing[] = { "sleep_millisecs=50", "pages_to_scan=12abc" };
    check_set_refused(f, trailing, 2, KSM_ERROR_INVALID);
    const char *const unknown[] = { "sleep_millisecs=50", "bogus=1" };
    check_set_refused(f, unknown, 2, KSM_ERROR_UNKNOWN_KNOB);
    const char *const counter[] = { "sleep_millisecs=50", "pages_shared=0" };
    check_set_refused(f, counter, 2, KSM_ERROR_INVALID);
    const char *const range[] = { "sleep_millisecs=50", "run=3" };
    check_set_refused(f, range, 2, KSM_ERROR_INVALID);
    const char *const no_eq[] = { "sleep_millisecs=50", "run" };
    check_set_refused(f, no_eq, 2, KSM_ERROR_INVALID);
    const char *const no_name[] = { "=5", "sleep_millisecs=50" };
    check_set_refused(f, no_name, 2, KSM_ERROR_INVALID);
    const char *const twice[] = { "sleep_millisecs=50", "sleep_millisecs=60" };
    check_set_refused(f, twice, 2, KSM_ERROR_INVALID);
    const char *const last_bad[] = { "run=0", "sleep_millisecs=50", "max_page_sharing=1" };
    check_set_refused(f, last_bad, 3, KSM_ERROR_INVALID);
}

static void test_set_kernel_refusal_rolls_back(Fixture *f, gconstpointer data)
{
    /* run is written last; when the kernel refuses it, the others go back. */
    GError *error = NULL;
    const char *const a[] = { "run=1", "sleep_millisecs=50", "pages_to_scan=200" };
    fake_tree_ksm_write(&f->t, "run", "0\n");
    refuse("run", EBUSY);
    g_assert_false(ksm_knobs_set(f->t.ctx, a, 3, NULL, NULL, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_BUSY);
    g_clear_error(&error);
    assert_file(f, "sleep_millisecs", "20");
    assert_file(f, "pages_to_scan", "100");
    assert_file(f, "run", "0");
    /* The last two writes were the undo. */
    g_assert_cmpuint(wrap_log->len, ==, 5);
    g_assert_cmpstr(g_ptr_array_index(wrap_log, 2), ==, "run=1");
}

static void test_set_first_refused_writes_nothing_else(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    const char *const a[] = { "merge_across_nodes=0", "sleep_millisecs=50" };
    refuse("merge_across_nodes", EBUSY);
    g_assert_false(ksm_knobs_set(f->t.ctx, a, 2, NULL, NULL, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_BUSY);
    g_assert_nonnull(strstr(error->message, "run=2"));
    g_clear_error(&error);
    assert_log("merge_across_nodes=0");
    assert_file(f, "sleep_millisecs", "20");
    assert_file(f, "merge_across_nodes", "1");
}

static void test_set_unreadable_old_value(Fixture *f, gconstpointer data)
{
    /* Old values are read first: garbage there stops the set before any write. */
    GError *error = NULL;
    const char *const a[] = { "sleep_millisecs=50", "pages_to_scan=200" };
    fake_tree_ksm_write(&f->t, "pages_to_scan", "lots\n");
    g_assert_false(ksm_knobs_set(f->t.ctx, a, 2, NULL, NULL, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_clear_error(&error);
    assert_log("");
    assert_file(f, "sleep_millisecs", "20");
}

/* ---- save and restore ---- */

static void test_save_restore_roundtrip(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    g_autoptr(KsmKnobState) saved = ksm_knobs_save(f->t.ctx, &error);
    g_assert_no_error(error);
    g_assert_nonnull(saved);

    g_autofree char *text = ksm_knob_state_to_text(saved);
    g_assert_nonnull(strstr(text, "run=1\n"));
    g_assert_nonnull(strstr(text, "advisor_mode=none\n"));
    g_assert_nonnull(strstr(text, "max_page_sharing=256\n"));
    g_assert_null(strstr(text, "pages_shared"));       /* counters are not saved */
    g_assert_null(strstr(text, "general_profit"));

    /* Change things the way a test would. */
    const char *const a[] = { "run=2", "sleep_millisecs=7", "advisor_mode=scan-time",
                              "max_page_sharing=16" };
    g_assert_true(ksm_knobs_set(f->t.ctx, a, G_N_ELEMENTS(a), NULL, NULL, &error));
    g_assert_no_error(error);

    char *differs = NULL;
    g_assert_false(ksm_knob_state_matches(f->t.ctx, saved, &differs, &error));
    g_assert_no_error(error);
    g_assert_nonnull(differs);
    g_free(differs);

    /* Restore from the text form, as a wrapper would after a crash. */
    g_autoptr(KsmKnobState) loaded = ksm_knob_state_from_text(text, &error);
    g_assert_no_error(error);
    g_assert_nonnull(loaded);
    g_autofree char *text2 = ksm_knob_state_to_text(loaded);
    g_assert_cmpstr(text2, ==, text);

    g_ptr_array_set_size(wrap_log, 0);
    g_assert_true(ksm_knobs_restore(f->t.ctx, loaded, &error));
    g_assert_no_error(error);
    assert_file(f, "run", "1");
    assert_file(f, "sleep_millisecs", "20");
    assert_file(f, "advisor_mode", "none");
    assert_file(f, "max_page_sharing", "256");
    /* Only what differed was written, and run last. */
    g_assert_cmpuint(wrap_log->len, ==, 4);
    g_assert_cmpstr(g_ptr_array_index(wrap_log, 3), ==, "run=1");

    differs = (char *)"unset";
    g_assert_true(ksm_knob_state_matches(f->t.ctx, saved, &differs, &error));
    g_assert_no_error(error);
    g_assert_null(differs);
}

static void test_restore_unchanged_writes_nothing(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    g_autoptr(KsmKnobState) saved = ksm_knobs_save(f->t.ctx, &error);
    g_assert_no_error(error);
    g_assert_true(ksm_knobs_restore(f->t.ctx, saved, &error));
    g_assert_no_error(error);
    assert_log("");
}

static void test_restore_reports_failure(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    g_autoptr(KsmKnobState) saved = ksm_knobs_save(f->t.ctx, &error);
    g_assert_no_error(error);
    fake_tree_ksm_write(&f->t, "merge_across_nodes", "0\n");
    fake_tree_ksm_write(&f->t, "sleep_millisecs", "99\n");
    refuse("merge_across_nodes", EBUSY);
    g_assert_false(ksm_knobs_restore(f->t.ctx, saved, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_BUSY);
    g_assert_nonnull(strstr(error->message, "merge_across_nodes"));
    g_clear_error(&error);
    /* A failure does not stop the rest from being restored. */
    assert_file(f, "sleep_millisecs", "20");
}

static void test_save_old_kernel(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    fake_tree_ksm_4x(&f->t);
    g_autoptr(KsmKnobState) saved = ksm_knobs_save(f->t.ctx, &error);
    g_assert_no_error(error);
    g_autofree char *text = ksm_knob_state_to_text(saved);
    g_assert_null(strstr(text, "advisor_mode"));
    g_assert_null(strstr(text, "smart_scan"));
    g_assert_nonnull(strstr(text, "pages_to_scan=100\n"));
}

static void test_save_no_ksm(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    fake_tree_remove(&f->t, "sys/kernel/mm/ksm");
    KsmKnobState *saved = ksm_knobs_save(f->t.ctx, &error);
    g_assert_null(saved);
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);
}

static void test_from_text_comments_blank(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    g_autoptr(KsmKnobState) st = ksm_knob_state_from_text(
        "# saved by a test\n\n  run=0  \nsleep_millisecs=33\n\n", &error);
    g_assert_no_error(error);
    g_assert_nonnull(st);
    g_assert_true(ksm_knobs_restore(f->t.ctx, st, &error));
    g_assert_no_error(error);
    assert_file(f, "run", "0");
    assert_file(f, "sleep_millisecs", "33");
    assert_file(f, "pages_to_scan", "100");   /* not in the state: untouched */
}

static void test_from_text_garbage(Fixture *f, gconstpointer data)
{
    static const char *const bad[] = {
        "garbage\n",
        "run=1\nthis is not a knob\n",
        "run=abc\n",
        "run=1x\n",
        "bogus=1\n",
        "pages_shared=5\n",          /* a counter */
        "=1\n",
        "run\n",
        "advisor_mode=sometimes\n",
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        GError *error = NULL;
        KsmKnobState *st = ksm_knob_state_from_text(bad[i], &error);
        if (st) {
            g_error("ksm_knob_state_from_text accepted \"%s\"", g_strescape(bad[i], NULL));
        }
        g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
        g_clear_error(&error);
    }
}

/* ---- waiting for ksmd ---- */

/* Replace the file by rename, so the reader never sees it half written. */
static void write_atomically(Fixture *f, const char *name, const char *text)
{
    g_autofree char *path = g_build_filename(f->t.ksm_dir, name, NULL);
    GError *error = NULL;
    g_file_set_contents(path, text, -1, &error);
    g_assert_no_error(error);
}

static gpointer bump_full_scans(gpointer data)
{
    Fixture *f = data;
    g_usleep(50 * 1000);
    write_atomically(f, "full_scans", "43\n");
    g_usleep(50 * 1000);
    write_atomically(f, "full_scans", "44\n");
    return NULL;
}

static void test_wait_full_scans(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    GThread *th = g_thread_new("bump", bump_full_scans, f);
    g_assert_true(ksm_wait_full_scans(f->t.ctx, 2, 10000, &error));
    g_assert_no_error(error);
    g_thread_join(th);
}

static void test_wait_full_scans_deadline(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    gint64 t0 = g_get_monotonic_time();
    g_assert_false(ksm_wait_full_scans(f->t.ctx, 1, 100, &error));
    gint64 elapsed_ms = (g_get_monotonic_time() - t0) / 1000;
    g_assert_error(error, KSM_ERROR, KSM_ERROR_INTERRUPTED);
    g_clear_error(&error);
    g_assert_cmpint(elapsed_ms, >=, 90);
    g_assert_cmpint(elapsed_ms, <, 5000);
}

static void test_wait_full_scans_not_running(Fixture *f, gconstpointer data)
{
    GError *error = NULL;
    fake_tree_ksm_write(&f->t, "run", "0\n");
    gint64 t0 = g_get_monotonic_time();
    g_assert_false(ksm_wait_full_scans(f->t.ctx, 1, 10000, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_INVALID);
    g_clear_error(&error);
    /* It says so at once instead of waiting out the deadline. */
    g_assert_cmpint((g_get_monotonic_time() - t0) / 1000, <, 5000);
}

#define KNOB_TEST(path, func) \
    g_test_add((path), Fixture, NULL, setup, (func), teardown)

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    KNOB_TEST("/knobs/parse/valid", test_parse_valid);
    KNOB_TEST("/knobs/parse/unknown", test_parse_unknown);
    KNOB_TEST("/knobs/parse/absent-on-this-kernel", test_parse_absent_on_this_kernel);
    KNOB_TEST("/knobs/parse/counter-read-only", test_parse_counter_read_only);
    KNOB_TEST("/knobs/parse/bad-values", test_parse_bad_values);
    KNOB_TEST("/knobs/parse/range-edges", test_parse_every_range_edge);
    KNOB_TEST("/knobs/write/ok", test_write);
    KNOB_TEST("/knobs/write/refuses-invalid", test_write_refuses_invalid);
    KNOB_TEST("/knobs/write/missing-file", test_write_missing_file);
    KNOB_TEST("/knobs/write/errno-messages", test_write_errno_messages);
    KNOB_TEST("/knobs/write/read-only-file", test_write_read_only_file);
    KNOB_TEST("/knobs/set/ok", test_set_ok);
    KNOB_TEST("/knobs/set/order", test_set_order);
    KNOB_TEST("/knobs/set/all-or-nothing", test_set_all_or_nothing);
    KNOB_TEST("/knobs/set/kernel-refusal-rolls-back", test_set_kernel_refusal_rolls_back);
    KNOB_TEST("/knobs/set/first-refused", test_set_first_refused_writes_nothing_else);
    KNOB_TEST("/knobs/set/unreadable-old-value", test_set_unreadable_old_value);
    KNOB_TEST("/knobs/state/roundtrip", test_save_restore_roundtrip);
    KNOB_TEST("/knobs/state/restore-unchanged", test_restore_unchanged_writes_nothing);
    KNOB_TEST("/knobs/state/restore-failure", test_restore_reports_failure);
    KNOB_TEST("/knobs/state/old-kernel", test_save_old_kernel);
    KNOB_TEST("/knobs/state/no-ksm", test_save_no_ksm);
    KNOB_TEST("/knobs/state/from-text-comments", test_from_text_comments_blank);
    KNOB_TEST("/knobs/state/from-text-garbage", test_from_text_garbage);
    KNOB_TEST("/knobs/wait/full-scans", test_wait_full_scans);
    KNOB_TEST("/knobs/wait/deadline", test_wait_full_scans_deadline);
    KNOB_TEST("/knobs/wait/not-running", test_wait_full_scans_not_running);

    return g_test_run();
}
