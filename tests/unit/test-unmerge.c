/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-unmerge.c: ksm_safe_unmerge on a fake tree: the preflight refuses
 * without writing, an unreadable pages_sharing refuses, the host lock is
 * honoured, and the run=2 write really happens in a forked child.
 */
#include <string.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "fake-tree.h"
#include <ksm/ksm-unmerge.h>

/* 8 GiB available. */
#define MEMINFO "MemTotal: 16000000 kB\nMemAvailable: 8388608 kB\n"

typedef struct {
    FakeTree t;
    char *lock_path;
    KsmUnmergeOptions opts;
} Fixture;

static void setup(Fixture *f, gconstpointer data)
{
    fake_tree_setup(&f->t, data);
    fake_tree_ksm_618(&f->t);
    fake_tree_write(&f->t, "proc/meminfo", MEMINFO);
    f->lock_path = fake_tree_path(&f->t, "run/samepage/ksm.lock");
    ksm_unmerge_options_init(&f->opts);
    f->opts.lock_path = f->lock_path;
    f->opts.lock_timeout_ms = 0;
    f->opts.reserve_bytes = 1ULL << 30;
}

static void teardown(Fixture *f, gconstpointer data)
{
    g_free(f->lock_path);
    fake_tree_teardown(&f->t, data);
}

#define UNMERGE_TEST(path, func) \
    g_test_add((path), Fixture, NULL, setup, (func), teardown)

static void set_sharing(Fixture *f, const char *pages)
{
    fake_tree_ksm_write(&f->t, "pages_sharing", pages);
    fake_tree_ksm_write(&f->t, "ksm_zero_pages", "0\n");
    fake_tree_ksm_write(&f->t, "run", "1\n");
}

static void test_done(Fixture *f, gconstpointer data)
{
    KsmUnmergeOutcome out;
    GError *error = NULL;

    set_sharing(f, "1000\n");
    g_assert_true(ksm_safe_unmerge(f->t.ctx, &f->opts, &out, &error));
    g_assert_no_error(error);
    g_assert_cmpint(out.result, ==, KSM_UNMERGE_DONE);
    g_assert_cmpuint(out.needed_bytes, ==, 1000 * 4096);
    g_assert_cmpint(out.before[KSM_FIELD_PAGES_SHARING], ==, 1000);
    /* The child, not this process, wrote the 2. */
    g_assert_cmpint(out.writer_pid, >, 0);
    g_assert_cmpint(out.writer_pid, !=, getpid());
    g_autofree char *run = fake_tree_ksm_read(&f->t, "run");
    g_assert_cmpstr(run, ==, "2");
    ksm_unmerge_outcome_clear(&out);
}

static void test_refused(Fixture *f, gconstpointer data)
{
    KsmUnmergeOutcome out;
    GError *error = NULL;

    /* 3M pages = 11.4 GiB needed; 8 GiB - 1 GiB reserve available. */
    set_sharing(f, "3000000\n");
    g_assert_true(ksm_safe_unmerge(f->t.ctx, &f->opts, &out, &error));
    g_assert_no_error(error);
    g_assert_cmpint(out.result, ==, KSM_UNMERGE_REFUSED);
    g_assert_cmpuint(out.available_bytes, ==, 7ULL << 30);
    g_assert_false(out.stopped_ksmd);
    g_assert_nonnull(strstr(out.message, "11718 MiB"));
    g_assert_nonnull(strstr(out.message, "7168 MiB"));
    g_autofree char *run = fake_tree_ksm_read(&f->t, "run");
    g_assert_cmpstr(run, ==, "1\n");
    ksm_unmerge_outcome_clear(&out);

    /* Asked to: ksmd is stopped, still nothing unmerged. */
    f->opts.stop_if_refused = TRUE;
    g_assert_true(ksm_safe_unmerge(f->t.ctx, &f->opts, &out, &error));
    g_assert_cmpint(out.result, ==, KSM_UNMERGE_REFUSED);
    g_assert_true(out.stopped_ksmd);
    g_autofree char *run2 = fake_tree_ksm_read(&f->t, "run");
    g_assert_cmpstr(run2, ==, "0");
    ksm_unmerge_outcome_clear(&out);
}

static void test_unreadable_sharing(Fixture *f, gconstpointer data)
{
    KsmUnmergeOutcome out;
    GError *error = NULL;

    /* Without pages_sharing the preflight cannot be done: refuse, touch nothing. */
    set_sharing(f, "many\n");
    g_assert_false(ksm_safe_unmerge(f->t.ctx, &f->opts, &out, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_assert_nonnull(strstr(error->message, "pages_sharing"));
    g_clear_error(&error);
    g_autofree char *run = fake_tree_ksm_read(&f->t, "run");
    g_assert_cmpstr(run, ==, "1\n");
}

static void test_lock_busy(Fixture *f, gconstpointer data)
{
    KsmUnmergeOutcome out;
    GError *error = NULL;

    set_sharing(f, "10\n");
    g_autoptr(KsmHostLock) held = ksm_host_lock_acquire(f->lock_path, 0, &error);
    g_assert_no_error(error);
    g_assert_false(ksm_safe_unmerge(f->t.ctx, &f->opts, &out, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_LOCKED);
    g_clear_error(&error);
    g_autofree char *run = fake_tree_ksm_read(&f->t, "run");
    g_assert_cmpstr(run, ==, "1\n");
}

static void test_outcome_json(Fixture *f, gconstpointer data)
{
    KsmUnmergeOutcome out;
    GError *error = NULL;

    set_sharing(f, "1000\n");
    g_assert_true(ksm_safe_unmerge(f->t.ctx, &f->opts, &out, &error));
    g_autofree char *json = ksm_unmerge_outcome_to_json(&out);
    g_assert_null(strchr(json, '\n'));

    g_autoptr(JsonParser) parser = json_parser_new();
    g_assert_true(json_parser_load_from_data(parser, json, -1, &error));
    JsonObject *o = json_node_get_object(json_parser_get_root(parser));
    g_assert_cmpstr(json_object_get_string_member(o, "event"), ==, "ksm-unmerge");
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, "done");
    g_assert_cmpint(json_object_get_int_member(o, "needed_bytes"), ==, 1000 * 4096);
    JsonObject *before = json_object_get_object_member(o, "before");
    g_assert_cmpint(json_object_get_int_member(before, "pages_sharing"), ==, 1000);
    g_assert_true(json_object_has_member(o, "after"));
    ksm_unmerge_outcome_clear(&out);
}

/* The one "does it fit" rule (the unmerge and the hook's incoming
 * migration): MemAvailable minus the reserve, never below 0. */
static void test_room(void)
{
    KsmHeadroom room = { .mem_available = G_GUINT64_CONSTANT(8) << 30 };

    g_assert_cmpuint(ksm_unmerge_room(&room, 256 << 20), ==,
                     (G_GUINT64_CONSTANT(8) << 30) - (256 << 20));
    g_assert_cmpuint(ksm_unmerge_room(&room, 0), ==, G_GUINT64_CONSTANT(8) << 30);
    g_assert_cmpuint(ksm_unmerge_room(&room, G_GUINT64_CONSTANT(8) << 30), ==, 0);
    g_assert_cmpuint(ksm_unmerge_room(&room, G_MAXUINT64), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    UNMERGE_TEST("/unmerge/done-in-child", test_done);
    UNMERGE_TEST("/unmerge/refused-for-headroom", test_refused);
    UNMERGE_TEST("/unmerge/unreadable-pages-sharing", test_unreadable_sharing);
    UNMERGE_TEST("/unmerge/lock-busy", test_lock_busy);
    UNMERGE_TEST("/unmerge/outcome-json", test_outcome_json);
    g_test_add_func("/unmerge/room", test_room);
    return g_test_run();
}
