/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * config.c: the host's KSM policy, /etc/samepage/ksm.conf (GKeyFile).
 *
 * One small file, one group, flat keys: an operator edits it by hand.  A
 * missing file means the defaults; a bad value is an error naming the file
 * and the key (prepare then refuses, because a guest started under a policy
 * nobody can read is a guess; stopped/release go on with the defaults, so a
 * typo never leaves a host half cleaned).
 */
#include <errno.h>
#include <string.h>

#include "hook.h"

#define GROUP "ksm"

const char hook_config_default_text[] =
    "# /etc/samepage/ksm.conf: KSM policy of this host for the samepage libvirt hook.\n"
    "# Read at every hook invocation: changes apply to the next guest event.\n"
    "[ksm]\n"
    "# strict: a mergeable guest whose trust group (<ksm:policy group=\"...\"/>)\n"
    "# differs from the running mergeable guests' is refused; permissive: it\n"
    "# starts and the conflict is logged.\n"
    "policy=strict\n"
    "# How ksmd scans while mergeable guests run: tune (samepage's policy: a\n"
    "# `samepage tune` started with ksmd and stopped with the last guest), manual\n"
    "# (pages_to_scan and sleep_millisecs) or advisor (the kernel's scan-time\n"
    "# advisor, Linux 6.8+).  README, Performance, compares them.\n"
    "scan=tune\n"
    "samepage=" HOOK_CLI_PATH "\n"
    "# scan=manual; also the rate while samepage tune starts:\n"
    "pages_to_scan=1000\n"
    "sleep_millisecs=20\n"
    "#advisor_max_cpu=70\n"
    "#advisor_target_scan_time=200\n"
    "# The kernel's smart scan (Linux 6.7+): off, on or keep (leave it as it is).\n"
    "# off by default: with it on, guest pages that sat unchanged for a while are\n"
    "# looked at once every 9 scans, and two guests' identical pages looked at in\n"
    "# different scans never merge (kernel/tests/kt-r21-smart-scan-phase.c).\n"
    "smart_scan=off\n"
    "# When the last mergeable guest is gone, unmerge only if MemAvailable minus\n"
    "# this reserve covers what unmerging needs; otherwise stop ksmd (run=0).\n"
    "reserve_mib=256\n"
    "# An incoming migration arrives unmerged: with migrate_headroom_check=on the\n"
    "# hook refuses it (libvirt cancels it, the guest stays on its source) unless\n"
    "# the guest's <memory> plus migrate_margin_mib (QEMU's own memory beside\n"
    "# the guest's RAM) fits in MemAvailable minus reserve_mib, the unmerge's rule.\n"
    "# off: no check.  The check also runs for an offline migration (libvirt\n"
    "# does not tell the hook which it is).\n"
    "migrate_headroom_check=on\n"
    "migrate_margin_mib=256\n"
    "# The unmerge is interrupted after this long (the kernel then sets run=0).\n"
    "unmerge_deadline_s=300\n"
    "# How long a hook invocation waits for the samepage host lock.\n"
    "lock_timeout_s=5\n"
    "# debug, info, warning, error.  Lines go to syslog (daemon facility, tag\n"
    "# samepage-ksm) and stderr; log_file adds a file (hosts without syslog).\n"
    "log_level=info\n"
    "#log_file=/var/log/samepage-ksm.log\n";

static const char *const known_keys[] = {
    "policy", "scan", "pages_to_scan", "sleep_millisecs", "advisor_max_cpu",
    "advisor_target_scan_time", "smart_scan", "samepage", "reserve_mib", "unmerge_deadline_s", "lock_timeout_s",
    "migrate_headroom_check", "migrate_margin_mib", "log_level", "log_file", NULL,
};

void hook_config_init(HookConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->policy = HOOK_POLICY_STRICT;
    cfg->scan_mode = HOOK_SCAN_TUNE;
    cfg->cli_path = g_strdup(HOOK_CLI_PATH);
    /* 1000 pages every 20 ms is ~200 MB/s of scanning: merges a few guests
     * in seconds, a few percent of one CPU. */
    cfg->pages_to_scan = 1000;
    cfg->sleep_millisecs = 20;
    cfg->advisor_max_cpu = -1;
    cfg->advisor_target_scan_time = -1;
    /* Off: merging every identical page is what the guests are here for;
     * smart scan saves ksmd time by skipping idle pages but, with no reset
     * of a page's age when it changes, can keep pairs apart for good. */
    cfg->smart_scan = 0;
    cfg->reserve_mib = 256;
    /* On: an incoming guest that does not fit is the OOM killer here. */
    cfg->migrate_check = TRUE;
    /* QEMU's memory beside the guest's RAM: video memory, ROMs, device
     * buffers, its heap and the migration's own buffers.  Measured on this
     * project's QEMU 7.2 with a 192 MiB guest, -nodefaults and no display
     * (Rss outside the RAM mapping, smaps): 37 MiB under KVM, 90 MiB under
     * TCG (its translation cache).  A libvirt guest's video device adds its
     * memory (QXL: 64 MiB and more), hence 256. */
    cfg->migrate_margin_mib = 256;
    cfg->unmerge_deadline_s = 300;
    cfg->lock_timeout_ms = 5000;
    cfg->log_level = HOOK_LOG_INFO;
}

void hook_config_clear(HookConfig *cfg)
{
    g_free(cfg->log_file);
    g_free(cfg->cli_path);
    g_free(cfg->path);
    memset(cfg, 0, sizeof(*cfg));
}

const char *hook_policy_name(HookHostPolicy policy)
{
    return policy == HOOK_POLICY_STRICT ? "strict" : "permissive";
}

const char *hook_scan_mode_name(HookScanMode mode)
{
    switch (mode) {
    case HOOK_SCAN_ADVISOR:
        return "advisor";
    case HOOK_SCAN_TUNE:
        return "tune";
    default:
        return "manual";
    }
}

static gboolean bad_value(GError **error, const char *path, const char *key,
                          const char *value, const char *want)
{
    g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                "%s: %s=%s is not valid: %s", path, key, value, want);
    return FALSE;
}

/* An integer key within [min, max]; absent keeps *value. */
static gboolean get_int(GKeyFile *kf, const char *path, const char *key,
                        gint64 min, gint64 max, gint64 *value, GError **error)
{
    g_autofree char *text = g_key_file_get_value(kf, GROUP, key, NULL);
    gint64 v;

    if (!text) {
        return TRUE;
    }
    g_strstrip(text);
    if (!g_ascii_string_to_signed(text, 10, min, max, &v, NULL)) {
        g_autofree char *want = g_strdup_printf("an integer from %" G_GINT64_FORMAT
                                                " to %" G_GINT64_FORMAT, min, max);
        return bad_value(error, path, key, text, want);
    }
    *value = v;
    return TRUE;
}

static gboolean get_knob(GKeyFile *kf, const char *path, const char *key, KsmField field,
                         gint64 *value, GError **error)
{
    const KsmFieldInfo *info = ksm_field_info(field);
    return get_int(kf, path, key, info->min, info->max, value, error);
}

static gboolean parse(HookConfig *cfg, GKeyFile *kf, const char *path, GError **error)
{
    g_autofree char *policy = g_key_file_get_value(kf, GROUP, "policy", NULL);
    g_autofree char *scan = g_key_file_get_value(kf, GROUP, "scan", NULL);
    g_autofree char *level = g_key_file_get_value(kf, GROUP, "log_level", NULL);
    g_autofree char *smart = g_key_file_get_value(kf, GROUP, "smart_scan", NULL);
    g_autofree char *migrate = g_key_file_get_value(kf, GROUP, "migrate_headroom_check", NULL);
    gint64 reserve = (gint64)cfg->reserve_mib, lock_s = cfg->lock_timeout_ms / 1000;
    gint64 margin = (gint64)cfg->migrate_margin_mib;

    if (policy) {
        g_strstrip(policy);
        if (strcmp(policy, "strict") == 0) {
            cfg->policy = HOOK_POLICY_STRICT;
        } else if (strcmp(policy, "permissive") == 0) {
            cfg->policy = HOOK_POLICY_PERMISSIVE;
        } else {
            return bad_value(error, path, "policy", policy, "strict or permissive");
        }
    }
    if (scan) {
        g_strstrip(scan);
        if (strcmp(scan, "manual") == 0) {
            cfg->scan_mode = HOOK_SCAN_MANUAL;
        } else if (strcmp(scan, "advisor") == 0) {
            cfg->scan_mode = HOOK_SCAN_ADVISOR;
        } else if (strcmp(scan, "tune") == 0) {
            cfg->scan_mode = HOOK_SCAN_TUNE;
        } else {
            return bad_value(error, path, "scan", scan, "tune, manual or advisor");
        }
    }
    if (smart) {
        g_strstrip(smart);
        if (strcmp(smart, "off") == 0) {
            cfg->smart_scan = 0;
        } else if (strcmp(smart, "on") == 0) {
            cfg->smart_scan = 1;
        } else if (strcmp(smart, "keep") == 0) {
            cfg->smart_scan = -1;
        } else {
            return bad_value(error, path, "smart_scan", smart, "off, on or keep");
        }
    }
    if (migrate) {
        g_strstrip(migrate);
        if (strcmp(migrate, "on") == 0) {
            cfg->migrate_check = TRUE;
        } else if (strcmp(migrate, "off") == 0) {
            cfg->migrate_check = FALSE;
        } else {
            return bad_value(error, path, "migrate_headroom_check", migrate, "on or off");
        }
    }
    if (level) {
        g_strstrip(level);
        if (!hook_log_level_parse(level, &cfg->log_level)) {
            return bad_value(error, path, "log_level", level, "debug, info, warning or error");
        }
    }
    if (!get_knob(kf, path, "pages_to_scan", KSM_FIELD_PAGES_TO_SCAN, &cfg->pages_to_scan, error) ||
        !get_knob(kf, path, "sleep_millisecs", KSM_FIELD_SLEEP_MILLISECS,
                  &cfg->sleep_millisecs, error) ||
        !get_knob(kf, path, "advisor_max_cpu", KSM_FIELD_ADVISOR_MAX_CPU,
                  &cfg->advisor_max_cpu, error) ||
        !get_knob(kf, path, "advisor_target_scan_time", KSM_FIELD_ADVISOR_TARGET_SCAN_TIME,
                  &cfg->advisor_target_scan_time, error) ||
        !get_int(kf, path, "reserve_mib", 0, G_MAXINT32, &reserve, error) ||
        !get_int(kf, path, "unmerge_deadline_s", 1, 24 * 3600, &cfg->unmerge_deadline_s, error) ||
        !get_int(kf, path, "migrate_margin_mib", 0, G_MAXINT32, &margin, error) ||
        /* The bound of a hook invocation: libvirtd waits for us. */
        !get_int(kf, path, "lock_timeout_s", 0, 30, &lock_s, error)) {
        return FALSE;
    }
    cfg->reserve_mib = (guint64)reserve;
    cfg->migrate_margin_mib = (guint64)margin;
    cfg->lock_timeout_ms = lock_s * 1000;

    g_autofree char *samepage = g_key_file_get_value(kf, GROUP, "samepage", NULL);
    if (samepage) {
        g_strstrip(samepage);
        if (!g_path_is_absolute(samepage)) {
            return bad_value(error, path, "samepage", samepage, "an absolute path");
        }
        g_free(cfg->cli_path);
        cfg->cli_path = g_strdup(samepage);
    }

    g_autofree char *file = g_key_file_get_value(kf, GROUP, "log_file", NULL);
    if (file) {
        g_strstrip(file);
        if (*file && !g_path_is_absolute(file)) {
            return bad_value(error, path, "log_file", file, "an absolute path");
        }
        g_free(cfg->log_file);
        cfg->log_file = *file ? g_strdup(file) : NULL;
    }
    return TRUE;
}

/* Unknown groups and keys are probably typos: say so, but do not refuse. */
static void warn_unknown(GKeyFile *kf, const char *path)
{
    g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
    for (guint i = 0; groups[i]; i++) {
        if (strcmp(groups[i], GROUP) != 0) {
            hook_log(HOOK_LOG_WARNING, "%s: unknown group [%s] ignored", path, groups[i]);
        }
    }
    g_auto(GStrv) keys = g_key_file_get_keys(kf, GROUP, NULL, NULL);
    for (guint i = 0; keys && keys[i]; i++) {
        if (!g_strv_contains(known_keys, keys[i])) {
            hook_log(HOOK_LOG_WARNING, "%s: unknown key '%s' ignored", path, keys[i]);
        }
    }
}

/* ksm.conf is a page of text: anything this big is not one. */
#define MAX_CONFIG_BYTES (1024 * 1024)

gboolean hook_config_load(HookConfig *cfg, const char *path, GError **error)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) local = NULL;
    g_autofree char *text = NULL;
    gsize len = 0;

    g_free(cfg->path);
    cfg->path = g_strdup(path);
    /* Root acts on this file (it names what root runs): it and every
     * directory above it must be root's alone. */
    text = hook_read_trusted(path, MAX_CONFIG_BYTES, &len, &local);
    if (!text) {
        if (g_error_matches(local, HOOK_ERROR, HOOK_ERROR_NOENT)) {
            cfg->from_file = FALSE;
            return TRUE;
        }
        g_set_error(error, HOOK_ERROR, HOOK_ERROR_UNTRUSTED, "%s", local->message);
        return FALSE;
    }
    if (!g_key_file_load_from_data(kf, text, len, G_KEY_FILE_NONE, &local)) {
        g_set_error(error, local->domain, local->code, "%s: %s (fix the file; "
                    "`samepage-ksm --check-config` checks it)", path, local->message);
        return FALSE;
    }
    cfg->from_file = TRUE;
    if (!g_key_file_has_group(kf, GROUP)) {
        hook_log(HOOK_LOG_WARNING, "%s has no [%s] group: using the defaults", path, GROUP);
    }
    warn_unknown(kf, path);
    return parse(cfg, kf, path, error);
}
