/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-headroom.c: MemAvailable and the memory cgroup limit (v1 and v2)
 * that bound how much an unmerge may allocate.
 */
#include <string.h>
#include <unistd.h>

#include "fake-tree.h"

#define GiB (G_GUINT64_CONSTANT(1) << 30)
#define MiB (G_GUINT64_CONSTANT(1) << 20)

/* 24229400 kB */
#define MEMINFO \
    "MemTotal:       32863908 kB\n" \
    "MemFree:         9123456 kB\n" \
    "MemAvailable:   24229400 kB\n" \
    "Buffers:          123456 kB\n" \
    "Cached:         14000000 kB\n"
#define MEM_AVAILABLE (G_GUINT64_CONSTANT(24229400) * 1024)

/* What cgroup v1 prints for "no limit": PAGE_COUNTER_MAX pages, in bytes. */
#define V1_UNLIMITED "9223372036854771712\n"

static void setup(FakeTree *t, gconstpointer data)
{
    fake_tree_setup(t, data);
    fake_tree_write(t, "proc/meminfo", MEMINFO);
}

#define HEADROOM_TEST(path, func) \
    g_test_add((path), FakeTree, NULL, setup, (func), fake_tree_teardown)

static void read_ok(FakeTree *t, pid_t pid, KsmHeadroom *h)
{
    GError *error = NULL;
    memset(h, 0x5a, sizeof(*h));
    gboolean ok = ksm_headroom_read(t->ctx, pid, h, &error);
    g_assert_no_error(error);
    g_assert_true(ok);
}

static void test_meminfo_only(FakeTree *t, gconstpointer data)
{
    KsmHeadroom h;
    read_ok(t, 0, &h);
    g_assert_cmpuint(h.mem_available, ==, MEM_AVAILABLE);
    g_assert_false(h.has_cgroup_limit);
    g_assert_cmpuint(h.headroom, ==, MEM_AVAILABLE);
}

static void test_meminfo_missing_line(FakeTree *t, gconstpointer data)
{
    /* Linux < 3.14 had no MemAvailable. */
    GError *error = NULL;
    KsmHeadroom h;
    fake_tree_write(t, "proc/meminfo", "MemTotal: 1000 kB\nMemFree: 500 kB\n");
    g_assert_false(ksm_headroom_read(t->ctx, 0, &h, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_assert_nonnull(strstr(error->message, "MemAvailable"));
    g_clear_error(&error);
}

static void test_meminfo_garbage(FakeTree *t, gconstpointer data)
{
    /* A number we cannot read must not become "0 bytes available". */
    GError *error = NULL;
    KsmHeadroom h;
    fake_tree_write(t, "proc/meminfo", "MemTotal: 1000 kB\nMemAvailable:   lots kB\n");
    g_assert_false(ksm_headroom_read(t->ctx, 0, &h, &error));
    g_assert_error(error, KSM_ERROR, KSM_ERROR_PARSE);
    g_clear_error(&error);
}

static void test_meminfo_absent(FakeTree *t, gconstpointer data)
{
    GError *error = NULL;
    KsmHeadroom h;
    fake_tree_remove(t, "proc/meminfo");
    g_assert_false(ksm_headroom_read(t->ctx, 0, &h, &error));
    g_assert_nonnull(error);
    g_assert_true(error->domain == KSM_ERROR);
    g_clear_error(&error);
}

/* ---- cgroup v1 ---- */

#define V1_CGROUP \
    "9:name=systemd:/machine.slice/vm1.scope\n" \
    "8:pids:/machine.slice/vm1.scope\n" \
    "4:memory:/machine.slice/vm1.scope\n" \
    "1:cpu:/\n" \
    "0::/machine.slice/vm1.scope\n"

static void v1_cgroup(FakeTree *t, const char *limit, const char *usage)
{
    fake_tree_proc_write(t, 1000, "cgroup", V1_CGROUP);
    fake_tree_write(t, "sys/fs/cgroup/memory/memory.limit_in_bytes", V1_UNLIMITED);
    fake_tree_write(t, "sys/fs/cgroup/memory/memory.usage_in_bytes", "30000000000\n");
    fake_tree_write(t, "sys/fs/cgroup/memory/machine.slice/memory.limit_in_bytes", V1_UNLIMITED);
    fake_tree_write(t, "sys/fs/cgroup/memory/machine.slice/memory.usage_in_bytes", "5000000000\n");
    fake_tree_write(t, "sys/fs/cgroup/memory/machine.slice/vm1.scope/memory.limit_in_bytes", limit);
    fake_tree_write(t, "sys/fs/cgroup/memory/machine.slice/vm1.scope/memory.usage_in_bytes", usage);
}

static void test_v1_limit(FakeTree *t, gconstpointer data)
{
    KsmHeadroom h;
    v1_cgroup(t, "2147483648\n", "1073741824\n");
    read_ok(t, 1000, &h);
    g_assert_cmpuint(h.mem_available, ==, MEM_AVAILABLE);
    g_assert_true(h.has_cgroup_limit);
    g_assert_cmpuint(h.cgroup_limit, ==, 2 * GiB);
    g_assert_cmpuint(h.cgroup_usage, ==, 1 * GiB);
    g_assert_cmpuint(h.headroom, ==, 1 * GiB);

    g_autofree char *dir = ksm_memory_cgroup_dir(t->ctx, 1000);
    g_autofree char *want = fake_tree_path(t, "sys/fs/cgroup/memory/machine.slice/vm1.scope");
    g_assert_cmpstr(dir, ==, want);
}

static void test_v1_unlimited(FakeTree *t, gconstpointer data)
{
    KsmHeadroom h;
    v1_cgroup(t, V1_UNLIMITED, "1073741824\n");
    read_ok(t, 1000, &h);
    g_assert_false(h.has_cgroup_limit);
    g_assert_cmpuint(h.headroom, ==, MEM_AVAILABLE);
}

static void test_v1_limit_above_available(FakeTree *t, gconstpointer data)
{
    /* A loose limit: MemAvailable is the bound. */
    KsmHeadroom h;
    v1_cgroup(t, "107374182400\n", "1073741824\n");
    read_ok(t, 1000, &h);
    g_assert_true(h.has_cgroup_limit);
    g_assert_cmpuint(h.cgroup_limit, ==, 100 * GiB);
    g_assert_cmpuint(h.headroom, ==, MEM_AVAILABLE);
}

static void test_v1_over_limit(FakeTree *t, gconstpointer data)
{
    /* usage can pass the limit for a moment: headroom 0, never a wrap-around. */
    KsmHeadroom h;
    v1_cgroup(t, "1073741824\n", "1073745920\n");
    read_ok(t, 1000, &h);
    g_assert_true(h.has_cgroup_limit);
    g_assert_cmpuint(h.headroom, ==, 0);
}

static void test_v1_parent_limit(FakeTree *t, gconstpointer data)
{
    /* Limits are hierarchical: the parent's tighter one counts. */
    KsmHeadroom h;
    v1_cgroup(t, V1_UNLIMITED, "100000000\n");
    fake_tree_write(t, "sys/fs/cgroup/memory/machine.slice/memory.limit_in_bytes", "4294967296\n");
    fake_tree_write(t, "sys/fs/cgroup/memory/machine.slice/memory.usage_in_bytes", "3221225472\n");
    read_ok(t, 1000, &h);
    g_assert_true(h.has_cgroup_limit);
    g_assert_cmpuint(h.cgroup_limit, ==, 4 * GiB);
    g_assert_cmpuint(h.headroom, ==, 1 * GiB);
}

static void test_v1_comounted(FakeTree *t, gconstpointer data)
{
    /* A memory controller listed with others on one line. */
    KsmHeadroom h;
    fake_tree_proc_write(t, 1001, "cgroup", "5:cpuacct,memory:/box\n0::/box\n");
    fake_tree_write(t, "sys/fs/cgroup/memory/box/memory.limit_in_bytes", "536870912\n");
    fake_tree_write(t, "sys/fs/cgroup/memory/box/memory.usage_in_bytes", "268435456\n");
    read_ok(t, 1001, &h);
    g_assert_true(h.has_cgroup_limit);
    g_assert_cmpuint(h.cgroup_limit, ==, 512 * MiB);
    g_assert_cmpuint(h.headroom, ==, 256 * MiB);
}

/* ---- cgroup v2 ---- */

static void v2_cgroup(FakeTree *t, const char *max, const char *current)
{
    fake_tree_proc_write(t, 2000, "cgroup", "0::/machine.slice/vm2.scope\n");
    fake_tree_write(t, "sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n");
    fake_tree_write(t, "sys/fs/cgroup/machine.slice/memory.max", "max\n");
    fake_tree_write(t, "sys/fs/cgroup/machine.slice/memory.current", "5000000000\n");
    fake_tree_write(t, "sys/fs/cgroup/machine.slice/vm2.scope/memory.max", max);
    fake_tree_write(t, "sys/fs/cgroup/machine.slice/vm2.scope/memory.current", current);
}

static void test_v2_limit(FakeTree *t, gconstpointer data)
{
    KsmHeadroom h;
    v2_cgroup(t, "536870912\n", "268435456\n");
    read_ok(t, 2000, &h);
    g_assert_true(h.has_cgroup_limit);
    g_assert_cmpuint(h.cgroup_limit, ==, 512 * MiB);
    g_assert_cmpuint(h.cgroup_usage, ==, 256 * MiB);
    g_assert_cmpuint(h.headroom, ==, 256 * MiB);

    g_autofree char *dir = ksm_memory_cgroup_dir(t->ctx, 2000);
    g_autofree char *want = fake_tree_path(t, "sys/fs/cgroup/machine.slice/vm2.scope");
    g_assert_cmpstr(dir, ==, want);
}

static void test_v2_max(FakeTree *t, gconstpointer data)
{
    KsmHeadroom h;
    v2_cgroup(t, "max\n", "268435456\n");
    read_ok(t, 2000, &h);
    g_assert_false(h.has_cgroup_limit);
    g_assert_cmpuint(h.headroom, ==, MEM_AVAILABLE);
}

static void test_v2_parent_limit(FakeTree *t, gconstpointer data)
{
    KsmHeadroom h;
    v2_cgroup(t, "max\n", "268435456\n");
    fake_tree_write(t, "sys/fs/cgroup/machine.slice/memory.max", "8589934592\n");
    fake_tree_write(t, "sys/fs/cgroup/machine.slice/memory.current", "6442450944\n");
    read_ok(t, 2000, &h);
    g_assert_true(h.has_cgroup_limit);
    g_assert_cmpuint(h.cgroup_limit, ==, 8 * GiB);
    g_assert_cmpuint(h.headroom, ==, 2 * GiB);
}

static void test_v2_garbage_limit(FakeTree *t, gconstpointer data)
{
    /* An unreadable limit is not a limit of 0 (and not a crash). */
    KsmHeadroom h;
    v2_cgroup(t, "banana\n", "268435456\n");
    read_ok(t, 2000, &h);
    g_assert_false(h.has_cgroup_limit);
    g_assert_cmpuint(h.headroom, ==, MEM_AVAILABLE);
}

static void test_v2_root(FakeTree *t, gconstpointer data)
{
    /* A process in the root cgroup: no memory.max there. */
    KsmHeadroom h;
    fake_tree_proc_write(t, 2001, "cgroup", "0::/\n");
    fake_tree_write(t, "sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n");
    read_ok(t, 2001, &h);
    g_assert_false(h.has_cgroup_limit);
    g_assert_cmpuint(h.headroom, ==, MEM_AVAILABLE);
}

static void test_hybrid_prefers_v1_memory(FakeTree *t, gconstpointer data)
{
    /* Hybrid hosts list both; the memory controller is on the v1 line. */
    KsmHeadroom h;
    fake_tree_proc_write(t, 3000, "cgroup", "0::/other\n4:memory:/box\n");
    fake_tree_write(t, "sys/fs/cgroup/memory/box/memory.limit_in_bytes", "1073741824\n");
    fake_tree_write(t, "sys/fs/cgroup/memory/box/memory.usage_in_bytes", "0\n");
    read_ok(t, 3000, &h);
    g_assert_true(h.has_cgroup_limit);
    g_assert_cmpuint(h.cgroup_limit, ==, GiB);
    g_assert_cmpuint(h.headroom, ==, GiB);
}

static void test_no_cgroup_file(FakeTree *t, gconstpointer data)
{
    KsmHeadroom h;
    fake_tree_proc_write(t, 4000, "status", "Name:\tx\n");
    read_ok(t, 4000, &h);
    g_assert_false(h.has_cgroup_limit);
    g_assert_cmpuint(h.headroom, ==, MEM_AVAILABLE);
    g_autofree char *dir = ksm_memory_cgroup_dir(t->ctx, 4000);
    g_assert_null(dir);
}

static void test_cgroup_dir_missing_in_sysfs(FakeTree *t, gconstpointer data)
{
    /* /proc says a path that sysfs does not have (another namespace). */
    fake_tree_proc_write(t, 4001, "cgroup", "0::/elsewhere\n");
    g_autofree char *dir = ksm_memory_cgroup_dir(t->ctx, 4001);
    g_assert_null(dir);
    KsmHeadroom h;
    read_ok(t, 4001, &h);
    g_assert_false(h.has_cgroup_limit);
}

static void test_real_host(void)
{
    GError *error = NULL;
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    KsmHeadroom h;
    g_assert_true(ksm_headroom_read(ctx, getpid(), &h, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(h.mem_available, >, 0);
    g_assert_cmpuint(h.headroom, <=, h.mem_available);
    if (h.has_cgroup_limit) {
        g_assert_cmpuint(h.cgroup_usage, <=, h.cgroup_limit);
        g_assert_cmpuint(h.headroom, <=, h.cgroup_limit - h.cgroup_usage);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    HEADROOM_TEST("/headroom/meminfo/only", test_meminfo_only);
    HEADROOM_TEST("/headroom/meminfo/missing-line", test_meminfo_missing_line);
    HEADROOM_TEST("/headroom/meminfo/garbage", test_meminfo_garbage);
    HEADROOM_TEST("/headroom/meminfo/absent", test_meminfo_absent);
    HEADROOM_TEST("/headroom/v1/limit", test_v1_limit);
    HEADROOM_TEST("/headroom/v1/unlimited", test_v1_unlimited);
    HEADROOM_TEST("/headroom/v1/limit-above-available", test_v1_limit_above_available);
    HEADROOM_TEST("/headroom/v1/over-limit", test_v1_over_limit);
    HEADROOM_TEST("/headroom/v1/parent-limit", test_v1_parent_limit);
    HEADROOM_TEST("/headroom/v1/comounted", test_v1_comounted);
    HEADROOM_TEST("/headroom/v2/limit", test_v2_limit);
    HEADROOM_TEST("/headroom/v2/max", test_v2_max);
    HEADROOM_TEST("/headroom/v2/parent-limit", test_v2_parent_limit);
    HEADROOM_TEST("/headroom/v2/garbage-limit", test_v2_garbage_limit);
    HEADROOM_TEST("/headroom/v2/root", test_v2_root);
    HEADROOM_TEST("/headroom/hybrid", test_hybrid_prefers_v1_memory);
    HEADROOM_TEST("/headroom/no-cgroup-file", test_no_cgroup_file);
    HEADROOM_TEST("/headroom/cgroup-dir-missing", test_cgroup_dir_missing_in_sysfs);
    g_test_add_func("/headroom/real-host", test_real_host);

    return g_test_run();
}
