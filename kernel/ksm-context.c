/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ksm-context.c: the roots every libksm path is built from. */
#include <errno.h>
#include <unistd.h>

#include "ksm-private.h"

struct KsmContext {
    char *sysfs;
    char *procfs;
    char *ksm_dir;
    gsize page_size;
};

KsmContext *ksm_context_new(const char *sysfs_root, const char *procfs_root)
{
    KsmContext *ctx = g_new0(KsmContext, 1);

    ctx->sysfs = g_strdup(sysfs_root ? sysfs_root : "/sys");
    ctx->procfs = g_strdup(procfs_root ? procfs_root : "/proc");
    ctx->ksm_dir = g_build_filename(ctx->sysfs, "kernel", "mm", "ksm", NULL);
    long ps = sysconf(_SC_PAGESIZE);
    ctx->page_size = ps > 0 ? (gsize)ps : 4096;
    return ctx;
}

void ksm_context_free(KsmContext *ctx)
{
    if (!ctx) {
        return;
    }
    g_free(ctx->sysfs);
    g_free(ctx->procfs);
    g_free(ctx->ksm_dir);
    g_free(ctx);
}

const char *ksm_context_ksm_dir(const KsmContext *ctx)
{
    return ctx->ksm_dir;
}

const char *ksm_context_procfs(const KsmContext *ctx)
{
    return ctx->procfs;
}

const char *ksm_context_sysfs(const KsmContext *ctx)
{
    return ctx->sysfs;
}

gsize ksm_context_page_size(const KsmContext *ctx)
{
    return ctx->page_size;
}

void ksm_context_set_page_size(KsmContext *ctx, gsize page_size)
{
    ctx->page_size = page_size;
}

gboolean ksm_available(const KsmContext *ctx, GError **error)
{
    g_autofree char *run = g_build_filename(ctx->ksm_dir, "run", NULL);

    if (!g_file_test(run, G_FILE_TEST_EXISTS)) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_NOT_AVAILABLE,
                    "KSM is not available on this kernel (%s is missing; "
                    "it needs CONFIG_KSM=y)", ctx->ksm_dir);
        return FALSE;
    }
    return TRUE;
}

gboolean ksm_writable(const KsmContext *ctx, GError **error)
{
    if (!ksm_available(ctx, error)) {
        return FALSE;
    }
    g_autofree char *run = g_build_filename(ctx->ksm_dir, "run", NULL);
    if (access(run, W_OK) < 0) {
        return ksm_set_errno_error(error, errno, "cannot write", run);
    }
    return TRUE;
}
