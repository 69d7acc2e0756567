/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-qemu-cmdline.c: a QEMU's /proc/PID/cmdline, from which libksm takes
 * its argv (kernel/ksm-task.c), the guest's name
 * (policy/qemu-procs/ksm-qemu-procs.c), samepage its QMP socket
 * (cli/qmp-find-socket.c) and the hook whether it runs a domain's -uuid
 * (libvirt-hooks/qemu-pid.c).  Any user can start a process that looks
 * like QEMU.
 *
 * Input: the command line as /proc shows it (arguments ending in NULs).
 */
#include "fuzz-common.h"
#include "hook.h"
#include "ksm/ksm-qemu-procs.h"
#include "ksm/ksm-task.h"
#include "qmp.h"

#define PID 4242

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    guint argc;
    g_auto(GStrv) argv = fuzz_split_nul(data, size, &argc);
    g_autoptr(GError) error = NULL;

    g_auto(GStrv) split = ksm_task_cmdline_split((const char *)data, size);
    g_assert(split);
    g_free(ksm_qemu_name_from_argv((const char *const *)argv, argc));
    g_autofree char *socket = cli_qmp_find_socket_in_argv((const char *const *)argv, argc,
                                                          "/run/qemu-cwd", &error);
    g_assert(socket ? g_path_is_absolute(socket) : error != NULL);
    g_clear_error(&error);

    /* The same bytes as a process of the fake /proc. */
    g_autofree char *rel = g_strdup_printf("proc/%d/cmdline", PID);
    g_free(fuzz_write(rel, data, size));
    g_autoptr(GPtrArray) found = ksm_find_qemu_processes(fuzz_ctx());
    g_assert(found->len <= 1);
    g_autoptr(GError) cmdline_error = NULL;
    g_auto(GStrv) read_argv = ksm_task_cmdline_read(fuzz_ctx(), PID, 0, &cmdline_error);
    g_assert(read_argv || (cmdline_error && cmdline_error->domain == KSM_ERROR));
    /* (No /proc/PID/exe in the fake tree: never a QEMU samepage trusts.) */
    g_autofree char *of_pid = cli_qmp_find_socket_of_pid(fuzz_ctx(), PID, &error);
    g_assert(!of_pid && error);
    hook_process_has_uuid(fuzz_ctx(), PID, "c7a5fdbd-cdaf-9455-926a-d65c16db1809");
    return 0;
}
