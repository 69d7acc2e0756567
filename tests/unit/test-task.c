/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-task.c: libksm's one reader of /proc/PID/stat and /proc/PID/cmdline
 * (ksm-task.c), and of maps/smaps text (ksm-maps.c).
 */
#include <string.h>
#include <unistd.h>

#include "fake-tree.h"
#include <ksm/ksm-maps.h>
#include <ksm/ksm-task.h>

/* The real layout: pid (comm) state ppid pgrp session tty tpgid flags minflt
 * cminflt majflt cmajflt utime stime cutime cstime priority nice threads
 * itrealvalue starttime ... */
static const char stat_line[] =
    "4242 (qemu) x (y)) S 1 4242 4242 0 -1 4194560 10 0 0 0 150 50 0 0 20 0 3 0 "
    "987654 1000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

static void test_stat_parse(void)
{
    g_autoptr(GError) error = NULL;
    KsmTaskStat ts;

    g_assert_true(ksm_task_stat_parse(stat_line, &ts, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(ts.comm, ==, "qemu) x (y)");
    g_assert_cmpint(ts.state, ==, 'S');
    g_assert_cmpuint(ts.flags, ==, 4194560);
    g_assert_cmpuint(ts.cpu_ticks, ==, 200);
    g_assert_true(ts.has_start_time);
    g_assert_cmpuint(ts.start_time, ==, 987654);

    /* Up to stime only: no start time, not an error. */
    g_assert_true(ksm_task_stat_parse("7 (k) R 2 0 0 0 -1 2097152 0 0 0 0 5 6\n", &ts, &error));
    g_assert_false(ts.has_start_time);
    g_assert_cmpuint(ts.cpu_ticks, ==, 11);
    g_assert_cmpint(ts.state, ==, 'R');

    /* No (comm), or too short: a parse error. */
    g_assert_false(ksm_task_stat_parse("7 k R 2", &ts, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_clear_error(&error);
    g_assert_false(ksm_task_stat_parse("7 (k) R 2 0 0 0 -1 5\n", &ts, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
}

static void test_stat_read(FakeTree *t, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    KsmTaskStat ts;

    fake_tree_write(t, "proc/4242/stat", stat_line);
    g_assert_true(ksm_task_stat_read(t->ctx, 4242, &ts, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(ts.start_time, ==, 987654);

    g_assert_false(ksm_task_stat_read(t->ctx, 4243, &ts, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NO_PROCESS);

    /* The real thing: this process is running, and has started. */
    g_autoptr(KsmContext) real = ksm_context_new(NULL, NULL);
    g_clear_error(&error);
    g_assert_true(ksm_task_stat_read(real, getpid(), &ts, &error));
    g_assert_no_error(error);
    g_assert_cmpint(ts.state, ==, 'R');
    g_assert_true(ts.has_start_time);
}

static void write_cmdline(FakeTree *t, pid_t pid, const char *text, gsize len)
{
    g_autofree char *rel = g_strdup_printf("proc/%d/cmdline", (int)pid);
    g_autofree char *path = fake_tree_path(t, rel);
    g_autofree char *dir = g_path_get_dirname(path);
    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    g_assert_true(g_file_set_contents(path, text, (gssize)len, NULL));
}

static void test_cmdline_read(FakeTree *t, gconstpointer data)
{
    static const char cmd[] = "qemu-system-x86_64\0-name\0guest=vm1\0-uuid\0a-b\0";
    g_autoptr(GError) error = NULL;

    write_cmdline(t, 10, cmd, sizeof(cmd) - 1);
    g_auto(GStrv) argv = ksm_task_cmdline_read(t->ctx, 10, 0, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(g_strv_length(argv), ==, 5);
    g_assert_cmpstr(argv[0], ==, "qemu-system-x86_64");
    g_assert_cmpstr(argv[2], ==, "guest=vm1");
    g_assert_cmpstr(argv[4], ==, "a-b");

    /* A process may overwrite its argv: the last word without its NUL. */
    write_cmdline(t, 11, "a\0bc", 4);
    g_auto(GStrv) odd = ksm_task_cmdline_read(t->ctx, 11, 0, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(g_strv_length(odd), ==, 2);
    g_assert_cmpstr(odd[1], ==, "bc");

    /* Over the bound: refused, not truncated. */
    g_auto(GStrv) big = ksm_task_cmdline_read(t->ctx, 10, 8, &error);
    g_assert_null(big);
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_clear_error(&error);

    /* A kernel thread has none; a gone process is NO_PROCESS. */
    write_cmdline(t, 12, "", 0);
    g_assert_null(ksm_task_cmdline_read(t->ctx, 12, 0, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE);
    g_clear_error(&error);
    g_assert_null(ksm_task_cmdline_read(t->ctx, 13, 0, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_NO_PROCESS);
}

typedef struct {
    GPtrArray *names;
    guint64 rss_kb, ksm_kb;
    int mergeable[4];
    guint n;
} Seen;

static void collect(const KsmMapsArea *a, gpointer opaque)
{
    Seen *s = opaque;
    g_ptr_array_add(s->names, g_strdup_printf("%s %s %" G_GUINT64_FORMAT, a->perms, a->name,
                                              a->inode));
    if (a->rss_kb > 0) {
        s->rss_kb += (guint64)a->rss_kb;
    }
    if (a->ksm_kb > 0) {
        s->ksm_kb += (guint64)a->ksm_kb;
    }
    if (s->n < G_N_ELEMENTS(s->mergeable)) {
        s->mergeable[s->n] = a->mergeable;
    }
    s->n++;
}

static void test_maps_parse(void)
{
    static const char smaps[] =
        "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
        "Rss:                 512 kB\n"
        "KSM:                 256 kB\n"
        "VmFlags: rd wr mr mw me ac sd mg\n"
        "7f0000100000-7f0000200000 rw-p 00000000 fd:01 77    /memfd:ram: x (deleted)\n"
        "Rss:                  8 kB\n"
        "VmFlags: rd wr mr mw me sd\n"
        "7f0000200000-7f0000300000 r--p 00000000 00:00 0     [anon:guest ram]\n";
    g_autoptr(GError) error = NULL;
    Seen s = { .names = g_ptr_array_new_with_free_func(g_free) };

    g_assert_true(ksm_maps_parse(smaps, collect, &s, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(s.n, ==, 3);
    g_assert_cmpstr(s.names->pdata[0], ==, "rw-p  0");
    g_assert_cmpstr(s.names->pdata[1], ==, "rw-p /memfd:ram: x (deleted) 77");
    g_assert_cmpstr(s.names->pdata[2], ==, "r--p [anon:guest ram] 0");
    g_assert_cmpuint(s.rss_kb, ==, 520);
    g_assert_cmpuint(s.ksm_kb, ==, 256);
    g_assert_cmpint(s.mergeable[0], ==, 1);
    g_assert_cmpint(s.mergeable[1], ==, 0);
    g_assert_cmpint(s.mergeable[2], ==, -1);   /* no VmFlags line: unknown */
    g_ptr_array_unref(s.names);

    /* A field before any area, and a line that is neither: errors naming the line. */
    s = (Seen){ .names = g_ptr_array_new_with_free_func(g_free) };
    g_assert_false(ksm_maps_parse("Rss: 4 kB\n", collect, &s, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_assert_nonnull(strstr(error->message, "line 1"));
    g_clear_error(&error);
    g_assert_false(ksm_maps_parse("7f00-7f10 rw-p 0 00:00 0\nnonsense here\n", collect, &s,
                                  &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_assert_nonnull(strstr(error->message, "line 2"));
    g_ptr_array_unref(s.names);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/task/stat/parse", test_stat_parse);
    FAKE_TEST("/task/stat/read", test_stat_read);
    FAKE_TEST("/task/cmdline/read", test_cmdline_read);
    g_test_add_func("/maps/parse", test_maps_parse);
    return g_test_run();
}
