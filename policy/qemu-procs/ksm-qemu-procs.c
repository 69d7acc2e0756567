/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-qemu-procs.c: find the QEMU processes on the host and their guest names
 * (command lines through libksm's one reader, ksm/ksm-task.h).
 */
#include <stdlib.h>
#include <string.h>

#include <ksm/ksm-qemu-procs.h>
#include <ksm/ksm-task.h>

static void qemu_process_free(gpointer p)
{
    KsmQemuProcess *qp = p;
    g_free(qp->name);
    g_free(qp->exe);
    g_free(qp);
}

/*
 * QEMU option syntax: "guest=vm1,debug-threads=on" or "vm1,process=x";
 * a doubled comma is a literal comma.  The first item without '=' is the
 * implied "guest" key.
 */
static char *name_from_option(const char *opt)
{
    GString *item = g_string_new(NULL);
    char *name = NULL;
    gboolean first = TRUE;

    for (const char *p = opt;; p++) {
        if (*p == ',' && p[1] == ',') {
            g_string_append_c(item, ',');
            p++;
            continue;
        }
        if (*p != ',' && *p != '\0') {
            g_string_append_c(item, *p);
            continue;
        }
        /* end of an item */
        if (g_str_has_prefix(item->str, "guest=")) {
            g_free(name);
            name = g_strdup(item->str + strlen("guest="));
        } else if (first && !strchr(item->str, '=')) {
            g_free(name);
            name = g_strdup(item->str);
        }
        first = FALSE;
        g_string_truncate(item, 0);
        if (*p == '\0') {
            break;
        }
    }
    g_string_free(item, TRUE);
    return name;
}

char *ksm_qemu_name_from_argv(const char *const *argv, guint argc)
{
    for (guint i = 0; i + 1 < argc; i++) {
        if (strcmp(argv[i], "-name") == 0 || strcmp(argv[i], "--name") == 0) {
            return name_from_option(argv[i + 1]);
        }
    }
    return NULL;
}

static gboolean is_qemu(const char *exe)
{
    return g_str_has_prefix(exe, "qemu-system-") || strcmp(exe, "qemu-kvm") == 0;
}

static gint compare_pid(gconstpointer a, gconstpointer b)
{
    const KsmQemuProcess *x = *(KsmQemuProcess *const *)a;
    const KsmQemuProcess *y = *(KsmQemuProcess *const *)b;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

GPtrArray *ksm_find_qemu_processes(const KsmContext *ctx)
{
    GPtrArray *found = g_ptr_array_new_with_free_func(qemu_process_free);
    g_autoptr(GDir) dir = g_dir_open(ksm_context_procfs(ctx), 0, NULL);
    const char *entry;

    if (!dir) {
        return found;
    }
    while ((entry = g_dir_read_name(dir))) {
        char *end;
        long pid = strtol(entry, &end, 10);

        if (*end || pid <= 0) {
            continue;
        }
        /* A process that exits while we look is simply not listed. */
        g_auto(GStrv) argv = ksm_task_cmdline_read(ctx, pid, 0, NULL);
        if (!argv) {
            continue;
        }
        g_autofree char *exe = g_path_get_basename(argv[0]);
        if (is_qemu(exe)) {
            KsmQemuProcess *qp = g_new0(KsmQemuProcess, 1);
            qp->pid = pid;
            qp->exe = g_steal_pointer(&exe);
            qp->name = ksm_qemu_name_from_argv((const char *const *)argv, g_strv_length(argv));
            g_ptr_array_add(found, qp);
        }
    }
    g_ptr_array_sort(found, compare_pid);
    return found;
}
