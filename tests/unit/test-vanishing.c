/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-vanishing.c: KSM's sysfs files and a process's /proc files that
 * vanish, or turn into directories, symlinks (dangling, looping, to a
 * device) or FIFOs, before and while libksm reads them.  Every read must end
 * in a result or a KSM_ERROR whose message names the file: never a crash, a
 * hang on a FIFO or an endless read of /dev/zero.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake-tree.h"
#include "ksm/ksm-task.h"

#define PID 4242
#define SMAPS "7f0000000000-7f0000100000 rw-p 00000000 00:00 0\n" \
              "KSM:                 256 kB\n" \
              "VmFlags: rd wr mr mw me ac mg\n"

/* Make path (file, directory, symlink or FIFO) whatever it is now. */
typedef enum { AS_FILE, AS_DIR, AS_DANGLING, AS_LOOP, AS_FIFO, AS_DEVICE, AS_ABSENT,
               AS__COUNT } Shape;

static const char *const shape_names[] = {
    "file", "directory", "dangling symlink", "symlink loop", "FIFO", "symlink to dev-zero",
    "absent",
};

static void remove_any(const char *path)
{
    if (rmdir(path) < 0 && errno != ENOENT) {
        unlink(path);
    }
}

static void make_shape(const char *path, Shape shape, const char *content)
{
    g_autofree char *tmp = g_strconcat(path, ".new", NULL);

    remove_any(tmp);
    switch (shape) {
    case AS_FILE:
        g_assert_true(g_file_set_contents(tmp, content, -1, NULL));
        break;
    case AS_DIR:
        g_assert_cmpint(mkdir(tmp, 0700), ==, 0);
        break;
    case AS_DANGLING:
        g_assert_cmpint(symlink("no-such-file", tmp), ==, 0);
        break;
    case AS_LOOP: {
        g_autofree char *base = g_path_get_basename(path);
        g_assert_cmpint(symlink(base, tmp), ==, 0);   /* path -> itself once in place */
        break;
    }
    case AS_FIFO:
        g_assert_cmpint(mkfifo(tmp, 0600), ==, 0);
        break;
    case AS_DEVICE:
        g_assert_cmpint(symlink("/dev/zero", tmp), ==, 0);
        break;
    case AS_ABSENT:
        remove_any(path);
        return;
    default:
        g_assert_not_reached();
    }
    /* rename replaces a file or an empty directory in one step (what a
     * reader racing with it sees: the old thing or the new one). */
    if (rename(tmp, path) < 0) {
        remove_any(path);
        g_assert_cmpint(rename(tmp, path), ==, 0);
    }
}

static void assert_names_file(const GError *error, const char *name)
{
    g_assert_nonnull(error);
    g_assert_true(error->domain == KSM_ERROR);
    if (!strstr(error->message, name)) {
        g_error("the error does not name %s: %s", name, error->message);
    }
}

/*
 * One shape of pages_sharing and of /proc/PID/ksm_stat, read in a
 * subprocess: a FIFO would block open(2) and /dev/zero never ends, so the
 * parent sees a hang as a timeout and a runaway read as a failure (1 GiB
 * address-space limit), not as a test run that never finishes.
 */
static void read_one_shape(FakeTree *t, Shape shape)
{
    g_autofree char *sharing = fake_tree_path(t, "sys/kernel/mm/ksm/pages_sharing");
    g_autofree char *stat_rel = g_strdup_printf("proc/%d/ksm_stat", PID);
    g_autofree char *ksm_stat = fake_tree_path(t, stat_rel);
    g_autoptr(GError) error = NULL;
    gint64 v = -1;
    struct rlimit limit = { 1UL << 30, 1UL << 30 };

    fake_tree_ksm_618(t);
    fake_tree_proc_write(t, PID, "smaps", SMAPS);
    fake_tree_proc_write(t, PID, "ksm_stat", "ksm_merging_pages 7\n");
    make_shape(sharing, shape, "5\n");
    make_shape(ksm_stat, shape, "ksm_merging_pages 7\n");
    g_assert_cmpint(setrlimit(RLIMIT_AS, &limit), ==, 0);

    gboolean ok = ksm_field_read(t->ctx, KSM_FIELD_PAGES_SHARING, &v, &error);
    if (shape == AS_FILE) {
        g_assert_no_error(error);
        g_assert_true(ok);
        g_assert_cmpint(v, ==, 5);
    } else {
        g_assert_false(ok);
        assert_names_file(error, "pages_sharing");
        g_test_message("%s: %s", shape_names[shape], error->message);
    }
    g_clear_error(&error);

    /* The snapshot leaves out what is not there (or is a directory); what is
     * there but not a readable file is an error naming it. */
    KsmSnapshot *snap = ksm_snapshot_read(t->ctx, &error);
    if (snap) {
        g_assert_no_error(error);
        g_assert_true(shape == AS_FILE || shape == AS_DIR || shape == AS_DANGLING ||
                      shape == AS_ABSENT);
        g_assert_cmpint(snap->present[KSM_FIELD_PAGES_SHARING], ==, shape == AS_FILE);
        g_assert_true(snap->present[KSM_FIELD_PAGES_SHARED]);
        ksm_snapshot_free(snap);
    } else {
        assert_names_file(error, "pages_sharing");
    }
    g_clear_error(&error);

    g_auto(KsmProcStat) st = { 0 };
    ok = ksm_proc_stat_read(t->ctx, PID, &st, &error);
    if (shape == AS_FILE) {
        g_assert_no_error(error);
        g_assert_true(ok);
        g_assert_cmpint(st.value[KSM_PROC_MERGING_PAGES], ==, 7);
    } else {
        g_assert_false(ok);
        /* (absent: the fallback ksm_merging_pages is absent too, and the
         * error says /proc/PID/ksm_stat needs Linux 6.1+) */
        assert_names_file(error, "ksm_stat");
    }
}

static void test_shape(FakeTree *t, gconstpointer data)
{
    Shape shape = GPOINTER_TO_INT(data);
    if (g_test_subprocess()) {
        read_one_shape(t, shape);
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_test_trap_assert_passed();
}

/* The whole KSM directory gone, or a file where it was. */
static void test_ksm_dir_vanishes(FakeTree *t, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    gint64 v;

    fake_tree_ksm_618(t);
    fake_tree_remove(t, "sys/kernel/mm/ksm");
    g_assert_null(ksm_snapshot_read(t->ctx, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);
    g_assert_false(ksm_field_read(t->ctx, KSM_FIELD_RUN, &v, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);

    fake_tree_write(t, "sys/kernel/mm/ksm", "not a directory\n");
    g_assert_null(ksm_snapshot_read(t->ctx, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);
    g_assert_false(ksm_field_read(t->ctx, KSM_FIELD_RUN, &v, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
}

/* /proc/PID gone: the process exited. */
static void test_process_vanishes(FakeTree *t, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_auto(KsmProcStat) st = { 0 };
    KsmRangeSmaps smaps;

    fake_tree_proc_write(t, PID, "ksm_stat", "ksm_merging_pages 7\n");
    fake_tree_proc_remove(t, PID);
    g_assert_false(ksm_proc_stat_read(t->ctx, PID, &st, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NO_PROCESS);
    g_clear_error(&error);
    g_assert_false(ksm_range_smaps(t->ctx, PID, 0, 4096, &smaps, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NO_PROCESS);
}

/*
 * The race: a thread keeps changing pages_sharing, ksm_stat and smaps
 * through every shape (and takes /proc/PID away and back) while the test
 * reads them as fast as it can.
 */
typedef struct {
    FakeTree *t;
    gint stop;
    guint changes;
} Churn;

static gpointer churn(gpointer data)
{
    Churn *c = data;
    g_autofree char *sharing = fake_tree_path(c->t, "sys/kernel/mm/ksm/pages_sharing");
    g_autofree char *stat_rel = g_strdup_printf("proc/%d/ksm_stat", PID);
    g_autofree char *smaps_rel = g_strdup_printf("proc/%d/smaps", PID);
    g_autofree char *ksm_stat = fake_tree_path(c->t, stat_rel);
    g_autofree char *smaps = fake_tree_path(c->t, smaps_rel);
    g_autofree char *proc_pid = g_strdup_printf("proc/%d", PID);
    g_autoptr(GRand) rand = g_rand_new_with_seed(42);

    while (!g_atomic_int_get(&c->stop)) {
        Shape shape = g_rand_int_range(rand, 0, AS__COUNT);
        switch (g_rand_int_range(rand, 0, 4)) {
        case 0:
            make_shape(sharing, shape, "5\n");
            break;
        case 1:
            if (!fake_tree_exists(c->t, proc_pid)) {
                fake_tree_mkdir(c->t, proc_pid);
            }
            make_shape(ksm_stat, shape, "ksm_merging_pages 7\n");
            break;
        case 2:
            if (!fake_tree_exists(c->t, proc_pid)) {
                fake_tree_mkdir(c->t, proc_pid);
            }
            make_shape(smaps, shape, SMAPS);
            break;
        default:
            if (shape == AS_ABSENT) {
                fake_tree_proc_remove(c->t, PID);
            }
            break;
        }
        c->changes++;
    }
    return NULL;
}

static void count(guint *ok, guint *failed, gboolean result, const GError *error)
{
    if (result) {
        g_assert_null(error);
        (*ok)++;
    } else {
        g_assert_nonnull(error);
        g_assert_true(error->domain == KSM_ERROR);
        g_assert_cmpuint(strlen(error->message), >, 0);
        (*failed)++;
    }
}

static void race(FakeTree *t)
{
    Churn c = { .t = t };
    guint ok = 0, failed = 0;
    struct rlimit limit = { 1UL << 30, 1UL << 30 };

    g_assert_cmpint(setrlimit(RLIMIT_AS, &limit), ==, 0);
    fake_tree_ksm_618(t);
    fake_tree_ksm_write(t, "pages_sharing", "5\n");
    fake_tree_proc_write(t, PID, "ksm_stat", "ksm_merging_pages 7\n");
    fake_tree_proc_write(t, PID, "smaps", SMAPS);
    GThread *thread = g_thread_new("churn", churn, &c);
    gint64 end = g_get_monotonic_time() + G_USEC_PER_SEC;

    while (g_get_monotonic_time() < end) {
        g_autoptr(GError) error = NULL;
        gint64 v;
        gboolean r = ksm_field_read(t->ctx, KSM_FIELD_PAGES_SHARING, &v, &error);
        g_assert_true(!r || v == 5);
        count(&ok, &failed, r, error);
        g_clear_error(&error);

        KsmSnapshot *snap = ksm_snapshot_read(t->ctx, &error);
        g_assert_true(!snap || !snap->present[KSM_FIELD_PAGES_SHARING] ||
                      snap->value[KSM_FIELD_PAGES_SHARING] == 5);
        count(&ok, &failed, snap != NULL, error);
        if (snap) {
            ksm_snapshot_free(snap);
        }
        g_clear_error(&error);

        g_auto(KsmProcStat) st = { 0 };
        r = ksm_proc_stat_read(t->ctx, PID, &st, &error);
        g_assert_true(!r || st.value[KSM_PROC_MERGING_PAGES] == 7);
        count(&ok, &failed, r, error);
        g_clear_error(&error);

        KsmRangeSmaps smaps;
        r = ksm_range_smaps(t->ctx, PID, 0x7f0000000000, 0x100000, &smaps, &error);
        g_assert_true(!r || smaps.mergeable_bytes == 0x100000);
        count(&ok, &failed, r, error);
        g_clear_error(&error);

        /* No cmdline here: missing, or the process gone, never an argv. */
        g_auto(GStrv) argv = ksm_task_cmdline_read(t->ctx, PID, 0, &error);
        g_assert_null(argv);
        g_assert_true(error && error->domain == KSM_ERROR);
    }
    g_atomic_int_set(&c.stop, 1);
    g_thread_join(thread);
    g_test_message("%u reads gave a value, %u a clear error, during %u changes",
                   ok, failed, c.changes);
    /* Both outcomes, or the churn did not race with the reads at all. */
    g_assert_cmpuint(ok, >, 0);
    g_assert_cmpuint(failed, >, 0);
    g_assert_cmpuint(c.changes, >, 100);
}

static void test_race(FakeTree *t, gconstpointer data)
{
    if (g_test_subprocess()) {
        race(t);
        return;
    }
    g_test_trap_subprocess(NULL, 30 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_test_trap_assert_passed();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (Shape s = 0; s < AS__COUNT; s++) {
        g_autofree char *path = g_strdup_printf("/vanishing/shape/%s", shape_names[s]);
        g_strdelimit(path, " ", '-');
        g_test_add(path, FakeTree, GINT_TO_POINTER(s), fake_tree_setup, test_shape,
                   fake_tree_teardown);
    }
    FAKE_TEST("/vanishing/ksm-dir", test_ksm_dir_vanishes);
    FAKE_TEST("/vanishing/process", test_process_vanishes);
    FAKE_TEST("/vanishing/race", test_race);
    return g_test_run();
}
