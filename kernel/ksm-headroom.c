/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-headroom.c: how much memory an unmerge can use before something dies.
 *
 * Unmerging gives every sharer its own copy again.  The copies come out of
 * MemAvailable and, for a process in a memory cgroup, out of that cgroup's
 * limit (the OOM killer acts on whichever runs out first).
 */
#include <string.h>

#include "ksm-private.h"

/* cgroup v1 reports "no limit" as PAGE_COUNTER_MAX pages; anything this big is unlimited. */
#define UNLIMITED_THRESHOLD (G_GUINT64_CONSTANT(1) << 62)

static gboolean read_u64_file(const char *path, guint64 *value)
{
    g_autofree char *text = ksm_read_text(path, NULL, NULL);
    gint64 v;

    if (!text) {
        return FALSE;
    }
    g_strstrip(text);
    if (strcmp(text, "max") == 0) {
        *value = G_MAXUINT64;
        return TRUE;
    }
    if (!ksm_parse_int(text, &v, NULL) || v < 0) {
        return FALSE;
    }
    *value = (guint64)v;
    return TRUE;
}

static gboolean meminfo_available(const KsmContext *ctx, guint64 *bytes, GError **error)
{
    g_autofree char *path = g_build_filename(ksm_context_procfs(ctx), "meminfo", NULL);
    g_autofree char *text = ksm_read_text(path, NULL, error);

    if (!text) {
        return FALSE;
    }
    const char *line = strstr(text, "MemAvailable:");
    if (!line) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE, "%s has no MemAvailable line", path);
        return FALSE;
    }
    const char *num = line + strlen("MemAvailable:");
    char *end;
    while (*num == ' ' || *num == '\t') {
        num++;
    }
    guint64 kb = g_ascii_strtoull(num, &end, 10);
    if (end == num || (*end && !g_ascii_isspace(*end))) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_PARSE,
                    "%s: cannot read the MemAvailable line", path);
        return FALSE;
    }
    *bytes = kb * 1024;
    return TRUE;
}

/*
 * From /proc/PID/cgroup: "N:memory:/path" (v1, controllers comma separated)
 * or "0::/path" (v2).  *v2 says which.
 */
static char *cgroup_relpath(const KsmContext *ctx, pid_t pid, gboolean *v2)
{
    g_autofree char *text = ksm_read_proc(ctx, pid, "cgroup", NULL, NULL);
    g_auto(GStrv) lines = NULL;
    char *unified = NULL;

    if (!text) {
        return NULL;
    }
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        g_auto(GStrv) parts = g_strsplit(lines[i], ":", 3);
        if (g_strv_length(parts) != 3) {
            continue;
        }
        if (strcmp(parts[1], "") == 0 && strcmp(parts[0], "0") == 0) {
            g_free(unified);
            unified = g_strdup(parts[2]);
            continue;
        }
        g_auto(GStrv) controllers = g_strsplit(parts[1], ",", -1);
        if (g_strv_contains((const char *const *)controllers, "memory")) {
            g_free(unified);
            *v2 = FALSE;
            return g_strdup(parts[2]);
        }
    }
    *v2 = TRUE;
    return unified;
}

char *ksm_memory_cgroup_dir(const KsmContext *ctx, pid_t pid)
{
    gboolean v2 = FALSE;
    g_autofree char *rel = cgroup_relpath(ctx, pid, &v2);
    if (!rel) {
        return NULL;
    }
    char *dir = v2
        ? g_build_filename(ksm_context_sysfs(ctx), "fs", "cgroup", rel, NULL)
        : g_build_filename(ksm_context_sysfs(ctx), "fs", "cgroup", "memory", rel, NULL);
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
        g_free(dir);
        return NULL;
    }
    return dir;
}

/* The tightest limit on the way up to the root; limits are hierarchical. */
static void cgroup_tightest(const KsmContext *ctx, pid_t pid, KsmHeadroom *out)
{
    gboolean v2 = FALSE;
    g_autofree char *rel = cgroup_relpath(ctx, pid, &v2);
    g_autofree char *root = NULL;
    g_autofree char *dir = NULL;
    const char *limit_file = v2 ? "memory.max" : "memory.limit_in_bytes";
    const char *usage_file = v2 ? "memory.current" : "memory.usage_in_bytes";

    if (!rel) {
        return;
    }
    root = v2 ? g_build_filename(ksm_context_sysfs(ctx), "fs", "cgroup", NULL)
              : g_build_filename(ksm_context_sysfs(ctx), "fs", "cgroup", "memory", NULL);
    dir = g_build_filename(root, rel, NULL);
    while (g_str_has_prefix(dir, root)) {
        g_autofree char *lp = g_build_filename(dir, limit_file, NULL);
        g_autofree char *up = g_build_filename(dir, usage_file, NULL);
        guint64 limit, usage;

        if (read_u64_file(lp, &limit) && read_u64_file(up, &usage) &&
            limit < UNLIMITED_THRESHOLD) {
            guint64 room = limit > usage ? limit - usage : 0;
            if (!out->has_cgroup_limit || room < out->cgroup_limit - out->cgroup_usage) {
                out->has_cgroup_limit = TRUE;
                out->cgroup_limit = limit;
                out->cgroup_usage = MIN(usage, limit);
            }
        }
        if (strcmp(dir, root) == 0) {
            break;
        }
        char *parent = g_path_get_dirname(dir);
        g_free(dir);
        dir = parent;
    }
}

gboolean ksm_headroom_read(const KsmContext *ctx, pid_t pid, KsmHeadroom *out, GError **error)
{
    memset(out, 0, sizeof(*out));
    if (!meminfo_available(ctx, &out->mem_available, error)) {
        return FALSE;
    }
    out->headroom = out->mem_available;
    if (pid > 0) {
        cgroup_tightest(ctx, pid, out);
        if (out->has_cgroup_limit) {
            out->headroom = MIN(out->headroom, out->cgroup_limit - out->cgroup_usage);
        }
    }
    return TRUE;
}
