/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-hook-config.c: /etc/samepage/ksm.conf (libvirt-hooks/config.c).
 *
 * Input: the file.  What loads must be within the ranges config.c promises,
 * and say the policy and scan mode the file names (as GKeyFile reads them).
 */
#include <string.h>

#include "fuzz-common.h"
#include "hook.h"

/* The value of a [ksm] key as GKeyFile has it, stripped; NULL if none. */
static char *file_value(const char *path, const char *key)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, NULL)) {
        return NULL;
    }
    char *value = g_key_file_get_value(kf, "ksm", key, NULL);
    return value ? g_strstrip(value) : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean quiet;
    if (!quiet) {
        hook_log_set_stderr(FALSE);   /* warnings about unknown keys, per input */
        quiet = TRUE;
    }
    fuzz_init();
    g_autofree char *path = fuzz_write("ksm.conf", data, size);
    g_autoptr(GError) error = NULL;
    HookConfig cfg;

    hook_config_init(&cfg);
    if (hook_config_load(&cfg, path, &error)) {
        g_assert(cfg.from_file);
        g_assert(cfg.cli_path && cfg.path);
        g_assert(cfg.unmerge_deadline_s >= 1 && cfg.unmerge_deadline_s <= 24 * 3600);
        g_assert(cfg.lock_timeout_ms >= 0 && cfg.lock_timeout_ms <= 30000);
        g_assert(cfg.smart_scan >= -1 && cfg.smart_scan <= 1);
        g_autofree char *scan = file_value(path, "scan");
        g_autofree char *policy = file_value(path, "policy");
        if (scan && strcmp(scan, hook_scan_mode_name(cfg.scan_mode)) != 0) {
            g_error("scan=%s loads as scan mode %s", scan, hook_scan_mode_name(cfg.scan_mode));
        }
        if (policy && strcmp(policy, hook_policy_name(cfg.policy)) != 0) {
            g_error("policy=%s loads as policy %s", policy, hook_policy_name(cfg.policy));
        }
    } else {
        g_assert(error && error->message);
    }
    hook_config_clear(&cfg);
    return 0;
}
