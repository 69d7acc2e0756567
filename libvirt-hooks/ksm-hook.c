/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-hook.c: main of the samepage libvirt hook (see hook.h for the files).
 *
 *   samepage-ksm DOMAIN OPERATION SUB_OPERATION EXTRA   < domain.xml
 *   samepage-ksm --check-config [FILE]
 *   samepage-ksm --print-default-config     (what the installer writes)
 *
 * libvirtd always passes exactly four arguments, and the first is a domain
 * name a libvirt client chose: "--check-config", "-x" or "--help" are valid
 * domain names.  So four arguments are always a hook invocation, whatever
 * they look like, and the options are recognised only alone (one or two
 * arguments).  No option parser ever sees a domain name.
 *
 * Operations the hook does not use exit 0 before reading anything: libvirt
 * runs every qemu.d hook for every event, and an idle hook must cost nothing.
 *
 * The same binary is libvirt's daemon hook, daemon.d/samepage-ksm, run as
 * `daemon.d/samepage-ksm - start - start` when libvirtd starts (shutdown and
 * reload too; those do nothing).  Which of the two a call is comes from the
 * path libvirtd ran (argv[0], the hook's path in its hooks directory), never
 * from the arguments: "-" is a valid domain name and "start" a qemu
 * operation, so the arguments alone could be a guest's event.  libvirtd is
 * the only one that runs what is in its hooks directories, and a qemu.d
 * hook's argv[0] never has daemon.d as its directory.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hook.h"

/* libvirt's domain XML is kilobytes; anything near this is not a domain. */
#define MAX_XML_BYTES (16 * 1024 * 1024)

static const char *const used_ops[] = {
    "prepare", "started", "stopped", "release", "reconnect", "attach", "migrate", NULL,
};

static const char *env_or(const char *name, const char *fallback)
{
    const char *value = g_getenv(name);
    return value && *value ? value : fallback;
}

static char *read_stdin(gsize *len, GError **error)
{
    GString *buf = g_string_new(NULL);
    char chunk[65536];

    for (;;) {
        ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));
        if (n == 0) {
            break;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            g_set_error(error, HOOK_ERROR, 0, "cannot read the domain XML: %s",
                        g_strerror(errno));
            g_string_free(buf, TRUE);
            return NULL;
        }
        if (buf->len + n > MAX_XML_BYTES) {
            g_set_error(error, HOOK_ERROR, 0, "the domain XML on stdin is over %d MiB",
                        MAX_XML_BYTES >> 20);
            g_string_free(buf, TRUE);
            return NULL;
        }
        g_string_append_len(buf, chunk, n);
    }
    *len = buf->len;
    return g_string_free(buf, FALSE);
}

static int check_config(const char *path)
{
    HookConfig cfg;
    g_autoptr(GError) error = NULL;

    hook_config_init(&cfg);
    if (!hook_config_load(&cfg, path, &error)) {
        g_autofree char *msg = hook_log_sanitize(error->message);
        fprintf(stderr, "%s: %s\n", HOOK_NAME, msg);
        hook_config_clear(&cfg);
        return HOOK_EXIT_USAGE;
    }
    g_autofree char *qpath = hook_log_sanitize(cfg.path);
    printf("%s: %s policy=%s scan=%s reserve_mib=%" G_GUINT64_FORMAT
           " unmerge_deadline_s=%" G_GINT64_FORMAT " migrate_headroom_check=%s"
           " migrate_margin_mib=%" G_GUINT64_FORMAT "\n", qpath,
           cfg.from_file ? "ok:" : "missing, defaults:", hook_policy_name(cfg.policy),
           hook_scan_mode_name(cfg.scan_mode), cfg.reserve_mib,
           cfg.unmerge_deadline_s, cfg.migrate_check ? "on" : "off", cfg.migrate_margin_mib);
    hook_config_clear(&cfg);
    return HOOK_EXIT_OK;
}

static int usage(void)
{
    fprintf(stderr, "usage: %s DOMAIN OPERATION SUB_OPERATION EXTRA < domain.xml\n"
            "       %s --check-config [FILE]\n"
            "       %s --print-default-config\n"
            "A libvirt hook: install it as /etc/libvirt/hooks/qemu.d/%s.\n",
            HOOK_NAME, HOOK_NAME, HOOK_NAME, HOOK_NAME);
    return HOOK_EXIT_USAGE;
}

/* One libvirt event: name is the domain's (anything libvirt accepts), op and
 * subop libvirt's. */
static int hook_main(const char *name, const char *op, const char *subop)
{
    gint64 started = g_get_monotonic_time();
    if (!g_strv_contains(used_ops, op)) {
        return HOOK_EXIT_OK;
    }
    /* libvirtd may stop reading our stderr early; never die of it. */
    signal(SIGPIPE, SIG_IGN);
    /* State and lock files are root's alone. */
    umask(077);

    hook_log_open(g_strcmp0(g_getenv("SAMEPAGE_HOOK_SYSLOG"), "0") != 0);
    hook_log_set_domain(name, NULL);

    /* The operations whose failure stops what libvirt is doing: a guest's
     * start, an incoming migration.  What they cannot check, they refuse. */
    const char *refused = strcmp(op, "prepare") == 0 ? "start refused: "
                        : strcmp(op, "migrate") == 0 ? "incoming migration refused: " : NULL;

    g_autoptr(GError) error = NULL;
    /* Read all of stdin first, whatever follows: libvirtd writes the XML
     * and must never meet a closed pipe. */
    gsize len = 0;
    g_autofree char *xml = read_stdin(&len, &error);
    if (!xml) {
        hook_log(HOOK_LOG_ERROR, "%s%s", refused ? refused : "", error->message);
        return refused ? HOOK_EXIT_REFUSE : HOOK_EXIT_OK;
    }

    HookConfig cfg;
    hook_config_init(&cfg);
    if (!hook_config_load(&cfg, env_or("SAMEPAGE_HOOK_CONFIG", HOOK_CONFIG_PATH), &error)) {
        if (refused) {
            hook_log(HOOK_LOG_ERROR, "%s%s", refused, error->message);
            return HOOK_EXIT_REFUSE;
        }
        /* Cleaning up after a guest must not depend on a typo: go on with defaults. */
        hook_log(HOOK_LOG_ERROR, "%s; using the defaults", error->message);
        g_clear_error(&error);
        hook_config_clear(&cfg);
        hook_config_init(&cfg);
        cfg.path = g_strdup(env_or("SAMEPAGE_HOOK_CONFIG", HOOK_CONFIG_PATH));
    }
    hook_log_set_level(cfg.log_level);
    hook_log_set_file(cfg.log_file);

    g_autoptr(KsmContext) ctx = ksm_context_new(g_getenv("SAMEPAGE_SYSFS_ROOT"),
                                                g_getenv("SAMEPAGE_PROCFS_ROOT"));
    if (strcmp(op, "migrate") == 0) {
        /* Reads the XML and /proc/meminfo, nothing else: no state directory,
         * no lock, no knob (migrate.c). */
        int status = hook_migrate_check(&cfg, ctx, xml, len);
        hook_log(HOOK_LOG_DEBUG, "%s: exit %d after %" G_GINT64_FORMAT " ms", op, status,
                 (g_get_monotonic_time() - started) / 1000);
        hook_config_clear(&cfg);
        return status;
    }
    HookStateStore store;
    if (!hook_state_open(&store, env_or("SAMEPAGE_HOOK_STATE_DIR", HOOK_STATE_DIR),
                         env_or("SAMEPAGE_LIBVIRT_RUN_DIR", HOOK_LIBVIRT_RUN_DIR), ctx, &error)) {
        hook_log(HOOK_LOG_ERROR, "%s%s", strcmp(op, "prepare") == 0 ? "start refused: " : "",
                 error->message);
        return strcmp(op, "prepare") == 0 ? HOOK_EXIT_REFUSE : HOOK_EXIT_OK;
    }

    HookEnv env = { .cfg = &cfg, .store = &store, .ctx = ctx, .lock_path = NULL };
    hook_log(HOOK_LOG_DEBUG, "%s %s", op, subop);
    int status = hook_handle(&env, name, op, subop, xml, len);
    /* How long libvirtd waited for us: the bound operators and tests check. */
    hook_log(HOOK_LOG_DEBUG, "%s: exit %d after %" G_GINT64_FORMAT " ms", op, status,
             (g_get_monotonic_time() - started) / 1000);

    hook_state_close(&store);
    hook_config_clear(&cfg);
    return status;
}

/* Was this run as libvirt's daemon hook: HOOKS/daemon.d/NAME (libvirt >=
 * 6.5), or HOOKS/daemon itself?  See the comment at the top. */
static gboolean run_as_daemon_hook(const char *argv0)
{
    g_autofree char *dir = g_path_get_dirname(argv0);
    g_autofree char *dir_name = g_path_get_basename(dir);
    g_autofree char *name = g_path_get_basename(argv0);

    return strcmp(dir_name, "daemon.d") == 0 ||
           (strcmp(name, "daemon") == 0 && strcmp(dir_name, "hooks") == 0);
}

/*
 * libvirtd's start.  libvirt 9.0 ignores the daemon start hook's exit status
 * (remote_daemon.c: "should we abort the daemon startup if the script
 * returned an error?"), but the hook exits 0 whatever happens, logging what
 * went wrong, so no libvirt version ever fails to start because of it.  No
 * stdin is read (libvirt passes none to daemon hooks).  Quick: the decision
 * and any unmerge are in the detached child; libvirtd waits only for the fork.
 */
static int daemon_main(const char *object, const char *op, const char *subop,
                       const char *extra)
{
    if (strcmp(object, "-") != 0 || strcmp(op, "start") != 0 || strcmp(subop, "-") != 0 ||
        strcmp(extra, "start") != 0) {
        return HOOK_EXIT_OK;   /* shutdown, reload: nothing to do */
    }
    gint64 started = g_get_monotonic_time();
    signal(SIGPIPE, SIG_IGN);
    umask(077);
    hook_log_open(g_strcmp0(g_getenv("SAMEPAGE_HOOK_SYSLOG"), "0") != 0);
    hook_log_set_domain(NULL, NULL);

    g_autoptr(GError) error = NULL;
    HookConfig cfg;
    hook_config_init(&cfg);
    if (!hook_config_load(&cfg, env_or("SAMEPAGE_HOOK_CONFIG", HOOK_CONFIG_PATH), &error)) {
        /* As at a guest's stop: a typo must not keep the repair from running. */
        hook_log(HOOK_LOG_ERROR, "libvirtd start: %s; using the defaults", error->message);
        g_clear_error(&error);
        hook_config_clear(&cfg);
        hook_config_init(&cfg);
        cfg.path = g_strdup(env_or("SAMEPAGE_HOOK_CONFIG", HOOK_CONFIG_PATH));
    }
    hook_log_set_level(cfg.log_level);
    hook_log_set_file(cfg.log_file);

    g_autoptr(KsmContext) ctx = ksm_context_new(g_getenv("SAMEPAGE_SYSFS_ROOT"),
                                                g_getenv("SAMEPAGE_PROCFS_ROOT"));
    HookStateStore store;
    if (!hook_state_open(&store, env_or("SAMEPAGE_HOOK_STATE_DIR", HOOK_STATE_DIR),
                         env_or("SAMEPAGE_LIBVIRT_RUN_DIR", HOOK_LIBVIRT_RUN_DIR), ctx, &error)) {
        hook_log(HOOK_LOG_ERROR, "libvirtd start: no repair: %s", error->message);
        hook_config_clear(&cfg);
        return HOOK_EXIT_OK;
    }
    HookEnv env = { .cfg = &cfg, .store = &store, .ctx = ctx, .lock_path = NULL };
    hook_state_detached_check(&store);
    hook_reconcile_detached(&env, HOOK_RECONCILE_DAEMON_START);
    hook_log(HOOK_LOG_DEBUG, "libvirtd start: exit 0 after %" G_GINT64_FORMAT " ms",
             (g_get_monotonic_time() - started) / 1000);
    hook_state_close(&store);
    hook_config_clear(&cfg);
    return HOOK_EXIT_OK;
}

int main(int argc, char **argv)
{
    /* libvirtd's form: DOMAIN OPERATION SUB_OPERATION EXTRA, nothing else. */
    if (argc == 5 && run_as_daemon_hook(argv[0])) {
        return daemon_main(argv[1], argv[2], argv[3], argv[4]);
    }
    if (argc == 5) {
        return hook_main(argv[1], argv[2], argv[3]);
    }
    if ((argc == 2 || argc == 3) && strcmp(argv[1], "--check-config") == 0) {
        return check_config(argc == 3 ? argv[2] : env_or("SAMEPAGE_HOOK_CONFIG",
                                                         HOOK_CONFIG_PATH));
    }
    if (argc == 2 && strcmp(argv[1], "--print-default-config") == 0) {
        fputs(hook_config_default_text, stdout);
        return HOOK_EXIT_OK;
    }
    return usage();
}
