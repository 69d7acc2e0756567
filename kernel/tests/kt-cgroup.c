/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kt-cgroup.c: memory cgroups the tests make, so OOM stays inside them.
 *
 * cgroup v1 (a "cgroup" mount with the memory controller, e.g.
 * /sys/fs/cgroup/memory): samepage-test-<pid>-<n> with memory.limit_in_bytes
 * (and memory.memsw.limit_in_bytes when swap accounting exists) and
 * memory.oom_control = 0 (the OOM killer enabled: a frozen cgroup would hang
 * the test instead of killing the balloon).
 * cgroup v2 (a "cgroup2" mount whose cgroup.controllers has memory): the
 * same name under the mount root with memory.max, memory.swap.max = 0 and
 * memory.oom.group = 0.
 * The test process itself never joins: a forked child moves itself in.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kt-harness.h"

struct KtCgroup {
    char *path;
    int version;
};

static guint cgroup_seq;

static gboolean write_file(const char *dir, const char *name, const char *value, GError **error)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "open %s: %s", path, g_strerror(errno));
        return FALSE;
    }
    ssize_t n = write(fd, value, strlen(value));
    int err = errno;
    close(fd);
    if (n < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(err),
                    "write '%s' to %s: %s", value, path, g_strerror(err));
        return FALSE;
    }
    return TRUE;
}

static char *read_file(const char *dir, const char *name)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return NULL;
    }
    return text;
}

static gboolean has_token(const char *list, const char *tok, const char *seps)
{
    g_auto(GStrv) parts = g_strsplit_set(list, seps, -1);
    for (guint i = 0; parts[i]; i++) {
        if (g_str_equal(g_strstrip(parts[i]), tok)) {
            return TRUE;
        }
    }
    return FALSE;
}

/* The v1 memory mount and the v2 mount (NULL when absent). */
static void find_mounts(char **v1, char **v2)
{
    g_autofree char *mounts = NULL;
    *v1 = *v2 = NULL;
    if (!g_file_get_contents("/proc/self/mounts", &mounts, NULL, NULL)) {
        return;
    }
    g_auto(GStrv) lines = g_strsplit(mounts, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        g_auto(GStrv) f = g_strsplit(lines[i], " ", 5);
        if (g_strv_length(f) < 4) {
            continue;
        }
        if (!*v1 && g_str_equal(f[2], "cgroup") && has_token(f[3], "memory", ",")) {
            *v1 = g_strdup(f[1]);
        } else if (!*v2 && g_str_equal(f[2], "cgroup2")) {
            *v2 = g_strdup(f[1]);
        }
    }
}

/* Where to make cgroups: version and parent directory. */
static gboolean cgroup_root(int *version, char **root, char **reason)
{
    g_autofree char *v1 = NULL, *v2 = NULL;

    find_mounts(&v1, &v2);
    if (v1) {
        if (access(v1, W_OK) != 0) {
            *reason = g_strdup_printf("cgroup v1 memory hierarchy %s is not writable", v1);
            return FALSE;
        }
        *version = 1;
        *root = g_steal_pointer(&v1);
        return TRUE;
    }
    if (v2) {
        g_autofree char *ctrl = read_file(v2, "cgroup.controllers");
        if (!ctrl || !has_token(ctrl, "memory", " \n")) {
            *reason = g_strdup_printf("cgroup v2 at %s has no memory controller, and no "
                                      "cgroup v1 memory hierarchy is mounted", v2);
            return FALSE;
        }
        if (access(v2, W_OK) != 0) {
            *reason = g_strdup_printf("cgroup v2 root %s is not writable", v2);
            return FALSE;
        }
        *version = 2;
        *root = g_steal_pointer(&v2);
        return TRUE;
    }
    *reason = g_strdup("no memory cgroup hierarchy is mounted (neither v1 memory nor v2)");
    return FALSE;
}

gboolean kt_cgroup_supported(char **reason)
{
    int version;
    g_autofree char *root = NULL;
    g_autofree char *why = NULL;

    if (!cgroup_root(&version, &root, &why)) {
        if (reason) {
            *reason = g_steal_pointer(&why);
        }
        return FALSE;
    }
    /* Prove it: make and remove one. */
    g_autofree char *probe = g_strdup_printf("%s/samepage-test-%d-probe", root, getpid());
    if (mkdir(probe, 0755) < 0 && errno != EEXIST) {
        if (reason) {
            *reason = g_strdup_printf("cannot create a memory cgroup (%s): %s", probe,
                                      g_strerror(errno));
        }
        return FALSE;
    }
    rmdir(probe);
    if (reason) {
        *reason = g_strdup_printf("cgroup v%d under %s", version, root);
    }
    return TRUE;
}

void kt_require_cgroup(void)
{
    g_autofree char *reason = NULL;
    if (!kt_cgroup_supported(&reason)) {
        kt_skip("no memory cgroup can be made: %s", reason);
    }
    kt_note("memory cgroups: %s", reason);
}

KtCgroup *kt_cgroup_create(guint64 limit_bytes, GError **error)
{
    int version;
    g_autofree char *root = NULL, *reason = NULL;

    if (!cgroup_root(&version, &root, &reason)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "%s", reason);
        return NULL;
    }
    KtCgroup *cg = g_new0(KtCgroup, 1);
    cg->version = version;
    cg->path = g_strdup_printf("%s/samepage-test-%d-%u", root, getpid(), ++cgroup_seq);

    if (version == 2) {
        g_autofree char *sub = read_file(root, "cgroup.subtree_control");
        if (!sub || !has_token(sub, "memory", " \n")) {
            if (!write_file(root, "cgroup.subtree_control", "+memory", error)) {
                g_free(cg->path);
                g_free(cg);
                return NULL;
            }
        }
    }
    if (mkdir(cg->path, 0755) < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "mkdir %s: %s", cg->path, g_strerror(errno));
        g_free(cg->path);
        g_free(cg);
        return NULL;
    }
    g_ptr_array_add(kt->cgroups, cg);
    kt_guardian_send("cgroup %s\n", cg->path);

    if (version == 1) {
        /* OOM killer on: a cgroup with it off would freeze the balloon.  New
         * cgroups inherit the parent's setting; write only when it is off
         * (6.x logs a deprecation notice for every write). */
        g_autofree char *oc = read_file(cg->path, "memory.oom_control");
        if (!oc || strstr(oc, "oom_kill_disable 1")) {
            if (!write_file(cg->path, "memory.oom_control", "0", error)) {
                return cg;   /* registered: removed at the end */
            }
        }
    } else {
        g_autofree char *swap = g_build_filename(cg->path, "memory.swap.max", NULL);
        if (g_file_test(swap, G_FILE_TEST_EXISTS)) {
            write_file(cg->path, "memory.swap.max", "0", NULL);
        }
        write_file(cg->path, "memory.oom.group", "0", NULL);
    }
    if (!kt_cgroup_set_limit(cg, limit_bytes, error)) {
        return cg;
    }
    kt_note("made memory cgroup v%d %s with limit %" G_GUINT64_FORMAT " MiB%s", version,
            cg->path, limit_bytes / KT_MIB,
            version == 1 ? ", memory.oom_control: oom_kill_disable 0 (OOM killer enabled)" : "");
    return cg;
}

const char *kt_cgroup_path(const KtCgroup *cg)
{
    return cg->path;
}

int kt_cgroup_version(const KtCgroup *cg)
{
    return cg->version;
}

gboolean kt_cgroup_set_limit(KtCgroup *cg, guint64 bytes, GError **error)
{
    g_autofree char *v = g_strdup_printf("%" G_GUINT64_FORMAT, bytes);

    if (cg->version == 2) {
        return write_file(cg->path, "memory.max", v, error);
    }
    g_autofree char *memsw = g_build_filename(cg->path, "memory.memsw.limit_in_bytes", NULL);
    gboolean has_memsw = g_file_test(memsw, G_FILE_TEST_EXISTS);
    gint64 now = kt_cgroup_limit(cg);
    /* memsw must stay >= limit: raise memsw first, lower it last. */
    if (has_memsw && now >= 0 && (guint64)now < bytes) {
        if (!write_file(cg->path, "memory.memsw.limit_in_bytes", v, error)) {
            return FALSE;
        }
        return write_file(cg->path, "memory.limit_in_bytes", v, error);
    }
    if (!write_file(cg->path, "memory.limit_in_bytes", v, error)) {
        return FALSE;
    }
    if (has_memsw) {
        return write_file(cg->path, "memory.memsw.limit_in_bytes", v, error);
    }
    return TRUE;
}

gboolean kt_cgroup_enter(const char *path, GError **error)
{
    g_autofree char *pid = g_strdup_printf("%d", getpid());
    return write_file(path, "cgroup.procs", pid, error);
}

gboolean kt_cgroup_add_pid(KtCgroup *cg, pid_t pid, GError **error)
{
    g_autofree char *v = g_strdup_printf("%d", pid);
    return write_file(cg->path, "cgroup.procs", v, error);
}

static gint64 read_number(const char *dir, const char *name)
{
    g_autofree char *text = read_file(dir, name);
    if (!text) {
        return -1;
    }
    g_strstrip(text);
    if (g_str_equal(text, "max")) {
        return G_MAXINT64;
    }
    return g_ascii_strtoll(text, NULL, 10);
}

gint64 kt_cgroup_usage(KtCgroup *cg)
{
    return read_number(cg->path, cg->version == 1 ? "memory.usage_in_bytes" : "memory.current");
}

gint64 kt_cgroup_limit(KtCgroup *cg)
{
    return read_number(cg->path, cg->version == 1 ? "memory.limit_in_bytes" : "memory.max");
}

gint64 kt_cgroup_oom_kills(KtCgroup *cg)
{
    g_autofree char *text = read_file(cg->path, cg->version == 1 ? "memory.oom_control"
                                                                  : "memory.events");
    if (!text) {
        return -1;
    }
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        if (g_str_has_prefix(lines[i], "oom_kill ")) {
            return g_ascii_strtoll(lines[i] + 9, NULL, 10);
        }
    }
    return -1;
}

GArray *kt_cgroup_pids(const char *path)
{
    GArray *pids = g_array_new(FALSE, FALSE, sizeof(pid_t));
    g_autofree char *text = read_file(path, "cgroup.procs");
    if (!text) {
        return pids;
    }
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        if (*lines[i]) {
            pid_t pid = (pid_t)strtol(lines[i], NULL, 10);
            if (pid > 0) {
                g_array_append_val(pids, pid);
            }
        }
    }
    return pids;
}

gboolean kt_cgroup_contains(KtCgroup *cg, pid_t pid)
{
    g_autoptr(GArray) pids = kt_cgroup_pids(cg->path);
    for (guint i = 0; i < pids->len; i++) {
        if (g_array_index(pids, pid_t, i) == pid) {
            return TRUE;
        }
    }
    return FALSE;
}

gboolean kt_cgroup_remove_path(const char *path, gint64 timeout_ms, GError **error)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;
    int last_err = 0;
    guint left = 0;

    for (;;) {
        g_autoptr(GArray) pids = kt_cgroup_pids(path);
        left = pids->len;
        for (guint i = 0; i < pids->len; i++) {
            kill(g_array_index(pids, pid_t, i), SIGKILL);
        }
        if (!pids->len) {
            if (rmdir(path) == 0 || errno == ENOENT) {
                return TRUE;
            }
            last_err = errno;
        }
        if (g_get_monotonic_time() >= deadline) {
            break;
        }
        g_usleep(20 * 1000);
    }
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                "%s still has %u processes%s%s after %" G_GINT64_FORMAT " ms", path, left,
                last_err ? "; rmdir: " : "", last_err ? g_strerror(last_err) : "", timeout_ms);
    return FALSE;
}

gboolean kt_cgroup_destroy(KtCgroup *cg, gint64 timeout_ms, GError **error)
{
    /* Our own children inside: kill and reap them first (a zombie can keep
     * the cgroup busy until it is reaped). */
    for (guint i = 0; i < kt->children->len; i++) {
        KtChild *c = g_ptr_array_index(kt->children, i);
        if (!c->reaped && kt_cgroup_contains(cg, c->pid)) {
            kt_child_kill(c);
        }
    }
    gboolean ok = kt_cgroup_remove_path(cg->path, timeout_ms, error);
    if (ok) {
        kt_note("removed cgroup %s", cg->path);
        kt_guardian_send("uncgroup %s\n", cg->path);
    }
    g_ptr_array_remove(kt->cgroups, cg);
    g_free(cg->path);
    g_free(cg);
    return ok;
}

GPtrArray *kt_cgroup_leftovers(void)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *v1 = NULL, *v2 = NULL;
    find_mounts(&v1, &v2);
    const char *roots[] = { v1, v2 };
    for (guint r = 0; r < G_N_ELEMENTS(roots); r++) {
        if (!roots[r]) {
            continue;
        }
        g_autoptr(GDir) dir = g_dir_open(roots[r], 0, NULL);
        const char *name;
        while (dir && (name = g_dir_read_name(dir))) {
            if (g_str_has_prefix(name, "samepage-")) {
                g_ptr_array_add(out, g_build_filename(roots[r], name, NULL));
            }
        }
    }
    return out;
}
