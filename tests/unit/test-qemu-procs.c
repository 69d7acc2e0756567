/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-qemu-procs.c: finding QEMU processes in /proc and their guest names.
 */
#include <string.h>

#include "fake-tree.h"
#include <ksm/ksm-qemu-procs.h>

/* ---- ksm_qemu_name_from_argv ---- */

static char *name_of(const char *const *argv)
{
    return ksm_qemu_name_from_argv(argv, g_strv_length((char **)argv));
}

#define CHECK_NAME(want, ...) do { \
    const char *const argv_[] = { __VA_ARGS__, NULL }; \
    g_autofree char *got_ = name_of(argv_); \
    g_assert_cmpstr(got_, ==, (want)); \
} while (0)

static void test_name_forms(void)
{
    /* libvirt's form */
    CHECK_NAME("vm1", "qemu-system-x86_64", "-name", "guest=vm1,debug-threads=on", "-S");
    /* the short form: the first item is the implied guest= */
    CHECK_NAME("vm2", "qemu-system-x86_64", "-name", "vm2");
    CHECK_NAME("vm3", "qemu-system-x86_64", "-name", "vm3,process=qemu-vm3");
    /* guest= not first */
    CHECK_NAME("vm4", "qemu-system-x86_64", "-name", "debug-threads=on,guest=vm4");
    /* --name is the same option */
    CHECK_NAME("vm5", "qemu-system-x86_64", "-m", "1G", "--name", "vm5");
    /* no -name at all */
    CHECK_NAME(NULL, "qemu-system-x86_64", "-m", "1G", "-nographic");
    /* -name as the last word, without its value */
    CHECK_NAME(NULL, "qemu-system-x86_64", "-name");
    /* only argv[0] */
    CHECK_NAME(NULL, "qemu-system-x86_64");
    /* a value that happens to be "-name" is not the option */
    CHECK_NAME(NULL, "qemu-system-x86_64", "-device", "virtio-blk,serial=-name");
}

static void test_name_escaped_commas(void)
{
    /* QEMU option syntax: ",," is a literal comma. */
    CHECK_NAME("a,b", "qemu-system-x86_64", "-name", "guest=a,,b,debug-threads=on");
    CHECK_NAME("a,b", "qemu-system-x86_64", "-name", "a,,b");
    CHECK_NAME("a,,b", "qemu-system-x86_64", "-name", "guest=a,,,,b");
    CHECK_NAME("end,", "qemu-system-x86_64", "-name", "guest=end,,");
    CHECK_NAME(",start", "qemu-system-x86_64", "-name", ",,start,debug-threads=on");
    CHECK_NAME("x=y", "qemu-system-x86_64", "-name", "guest=x=y");
}

static void test_name_argc_limits(void)
{
    /* argc is the bound, not a NULL terminator. */
    const char *const argv[] = { "qemu-system-x86_64", "-name", "vm1", "-name", "vm2" };
    g_autofree char *two = ksm_qemu_name_from_argv(argv, 2);
    g_assert_null(two);
    g_autofree char *three = ksm_qemu_name_from_argv(argv, 3);
    g_assert_cmpstr(three, ==, "vm1");
    g_autofree char *none = ksm_qemu_name_from_argv(argv, 0);
    g_assert_null(none);
}

/* ---- ksm_find_qemu_processes ---- */

static const KsmQemuProcess *find_pid(GPtrArray *procs, pid_t pid)
{
    for (guint i = 0; i < procs->len; i++) {
        const KsmQemuProcess *qp = g_ptr_array_index(procs, i);
        if (qp->pid == pid) {
            return qp;
        }
    }
    return NULL;
}

static void test_find(FakeTree *t, gconstpointer data)
{
    const char *const vm1[] = { "/usr/bin/qemu-system-x86_64", "-name",
                                "guest=vm1,debug-threads=on", "-machine", "pc-q35-7.2", NULL };
    const char *const vm2[] = { "qemu-system-x86_64", "-name", "vm2", "-m", "512", NULL };
    const char *const anon[] = { "/usr/bin/qemu-system-x86_64", "-m", "256", NULL };
    const char *const bash[] = { "/bin/bash", "-c", "qemu-system-x86_64 -name fake", NULL };
    const char *const kvm[] = { "/usr/libexec/qemu-kvm", "-name", "guest=rhel", NULL };
    const char *const arm[] = { "/opt/qemu/bin/qemu-system-aarch64", "-name", "arm1", NULL };
    const char *const img[] = { "qemu-img", "convert", "-name", "x", NULL };
    const char *const wrapper[] = { "/usr/bin/env", "qemu-system-x86_64", "-name", "w", NULL };

    fake_tree_proc_cmdline(t, 100, vm1);
    fake_tree_proc_cmdline(t, 200, vm2);
    fake_tree_proc_cmdline(t, 300, anon);
    fake_tree_proc_cmdline(t, 400, bash);
    fake_tree_proc_cmdline(t, 600, kvm);
    fake_tree_proc_cmdline(t, 700, arm);
    fake_tree_proc_cmdline(t, 800, img);
    fake_tree_proc_cmdline(t, 900, wrapper);
    /* pid 500: the directory is there but cmdline is gone (exiting) */
    fake_tree_proc_write(t, 500, "status", "Name:\tqemu-system-x86\n");
    /* pid 2: a kernel thread, empty cmdline */
    fake_tree_proc_write(t, 2, "cmdline", "");
    /* things in /proc that are not processes */
    fake_tree_write(t, "proc/meminfo", "MemTotal: 1 kB\n");
    fake_tree_mkdir(t, "proc/sys/vm");
    fake_tree_mkdir(t, "proc/123abc");
    fake_tree_write(t, "proc/self", "not a directory\n");

    g_autoptr(GPtrArray) procs = ksm_find_qemu_processes(t->ctx);
    g_assert_nonnull(procs);
    g_assert_cmpuint(procs->len, ==, 5);

    const KsmQemuProcess *p = find_pid(procs, 100);
    g_assert_nonnull(p);
    g_assert_cmpstr(p->name, ==, "vm1");
    g_assert_cmpstr(p->exe, ==, "qemu-system-x86_64");

    p = find_pid(procs, 200);
    g_assert_nonnull(p);
    g_assert_cmpstr(p->name, ==, "vm2");
    g_assert_cmpstr(p->exe, ==, "qemu-system-x86_64");

    p = find_pid(procs, 300);
    g_assert_nonnull(p);
    g_assert_null(p->name);

    p = find_pid(procs, 600);
    g_assert_nonnull(p);
    g_assert_cmpstr(p->name, ==, "rhel");
    g_assert_cmpstr(p->exe, ==, "qemu-kvm");

    p = find_pid(procs, 700);
    g_assert_nonnull(p);
    g_assert_cmpstr(p->name, ==, "arm1");
    g_assert_cmpstr(p->exe, ==, "qemu-system-aarch64");

    g_assert_null(find_pid(procs, 400));   /* bash */
    g_assert_null(find_pid(procs, 500));   /* vanished */
    g_assert_null(find_pid(procs, 2));     /* kernel thread */
    g_assert_null(find_pid(procs, 800));   /* qemu-img */
    g_assert_null(find_pid(procs, 900));   /* argv[0] is env */
}

static void test_find_none(FakeTree *t, gconstpointer data)
{
    const char *const bash[] = { "/bin/bash", NULL };
    fake_tree_proc_cmdline(t, 1, bash);
    g_autoptr(GPtrArray) procs = ksm_find_qemu_processes(t->ctx);
    g_assert_nonnull(procs);
    g_assert_cmpuint(procs->len, ==, 0);
}

static void test_find_no_proc(FakeTree *t, gconstpointer data)
{
    fake_tree_remove(t, "proc");
    g_autoptr(GPtrArray) procs = ksm_find_qemu_processes(t->ctx);
    g_assert_nonnull(procs);
    g_assert_cmpuint(procs->len, ==, 0);
}

static void test_find_cmdline_without_final_nul(FakeTree *t, gconstpointer data)
{
    /* A process that rewrote its argv area may drop the trailing NUL. */
    g_autofree char *path = fake_tree_path(t, "proc/321/cmdline");
    static const char text[] = "qemu-system-x86_64\0-name\0nonul";
    fake_tree_mkdir(t, "proc/321");
    GError *error = NULL;
    g_file_set_contents(path, text, sizeof(text) - 1, &error);
    g_assert_no_error(error);
    g_autoptr(GPtrArray) procs = ksm_find_qemu_processes(t->ctx);
    g_assert_cmpuint(procs->len, ==, 1);
    const KsmQemuProcess *p = g_ptr_array_index(procs, 0);
    g_assert_cmpint(p->pid, ==, 321);
    g_assert_cmpstr(p->name, ==, "nonul");
}

static void test_find_real_host(void)
{
    /* The real /proc: whatever is running, the call must not fail, and every
     * entry must look like a QEMU. */
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GPtrArray) procs = ksm_find_qemu_processes(ctx);
    g_assert_nonnull(procs);
    for (guint i = 0; i < procs->len; i++) {
        const KsmQemuProcess *qp = g_ptr_array_index(procs, i);
        g_assert_cmpint(qp->pid, >, 0);
        g_assert_true(g_str_has_prefix(qp->exe, "qemu-system-") ||
                      g_str_equal(qp->exe, "qemu-kvm"));
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/qemu-procs/name/forms", test_name_forms);
    g_test_add_func("/qemu-procs/name/escaped-commas", test_name_escaped_commas);
    g_test_add_func("/qemu-procs/name/argc", test_name_argc_limits);
    FAKE_TEST("/qemu-procs/find/mixed", test_find);
    FAKE_TEST("/qemu-procs/find/none", test_find_none);
    FAKE_TEST("/qemu-procs/find/no-proc", test_find_no_proc);
    FAKE_TEST("/qemu-procs/find/no-final-nul", test_find_cmdline_without_final_nul);
    g_test_add_func("/qemu-procs/find/real-host", test_find_real_host);

    return g_test_run();
}
