/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cmd-fingerprint.c: `samepage fingerprint`: the fleet fingerprint of
 * guests on this host, one JSON file (format in ksm-fingerprint-file.c)
 * that `samepage place` reads on any host of the fleet.
 *
 * The sketch and what it predicts are defined in ksm/ksm-fingerprint.h;
 * the reading is the census's (policy/census), so only present pages of
 * private anonymous memory are read, as `samepage estimate` does.
 *
 * The fleet key: a file only root can read (owned by root or the caller,
 * mode 0600 or stricter, no link: cli_open_trusted_file plus a read-bits
 * check).  Without it the command refuses and says how to make one: an
 * unkeyed fingerprint could be matched against known pages by anyone who
 * sees the file.
 *
 * CPU share: the command lowers its own priority (nice, default 10) and
 * paces its reading (--rate MiB/s, default 512; 0 for none).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ksm/ksm-fingerprint.h>

#include "cli.h"

#define DEFAULT_KEY   "/etc/samepage/fleet.key"
#define DEFAULT_RATE  512.0
#define DEFAULT_NICE  10

static const char key_howto[] =
    "make one key for the whole fleet and copy it to every host, root-owned, mode 0600:\n"
    "  install -d -m 755 /etc/samepage\n"
    "  (umask 077; head -c 32 /dev/urandom > /etc/samepage/fleet.key)";

static KsmFleetKey *cli_load_fleet_key(const char *path, GError **error)
{
    g_autofree char *shown = cli_escape_text(path);
    GError *local = NULL;
    int fd = cli_open_trusted_file(path, O_RDONLY, &local);

    if (fd < 0) {
        gboolean missing = g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT);
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID, "fleet key %s: %s\n%s", shown,
                    missing ? "there is no such file" : local->message, key_howto);
        g_error_free(local);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || (st.st_mode & (S_IRWXG | S_IRWXO))) {
        close(fd);
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID,
                    "fleet key %s is readable by group or others (mode %04o): whoever reads "
                    "it can tell which pages a fingerprint holds (chmod 600 it)", shown,
                    (unsigned)(st.st_mode & 07777));
        return NULL;
    }
    guint8 buf[KSM_FLEET_KEY_MAX + 1];
    gsize len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;
            close(fd);
            g_set_error(error, KSM_ERROR, KSM_ERROR_FAILED, "cannot read fleet key %s: %s",
                        shown, g_strerror(e));
            return NULL;
        }
        if (n == 0 || (len += (gsize)n) == sizeof(buf)) {
            break;
        }
    }
    close(fd);
    KsmFleetKey *key = ksm_fleet_key_new(buf, len, &local);
    memset(buf, 0, sizeof(buf));
    if (!key) {
        g_set_error(error, KSM_ERROR, KSM_ERROR_INVALID, "fleet key %s: %s", shown,
                    local->message);
        g_error_free(local);
    }
    return key;
}

/*
 * The per-guest figures a fingerprint run learns on the way, as Prometheus
 * text for node_exporter's textfile collector: what a guest could share
 * needs no exchange of fingerprints.  `samepage stats --prometheus` cannot
 * give them: it reads only KSM's counters (ksm_stat), never the guests'
 * pages, and reading every guest's memory at each scrape (seconds per GiB)
 * is not what a scrape may cost.
 */
static char *guests_to_prometheus(const KsmFingerprint *fp)
{
    static const struct {
        const char *metric, *help;
    } families[] = {
        { "samepage_guest_present_pages", "Pages of the guest read by samepage fingerprint "
          "(present private anonymous memory)" },
        { "samepage_guest_zero_pages", "Of those, zero pages" },
        { "samepage_guest_distinct_pages", "Distinct non-zero page contents of the guest "
          "(estimated from its sketch; exact below 8192)" },
        { "samepage_guest_duplicate_pages", "Non-zero pages whose content occurs earlier in "
          "the same guest: what KSM can merge inside it alone (estimated)" },
        { "samepage_guest_fingerprint_timestamp_seconds", "When the fingerprint was made" },
    };
    GString *out = g_string_new(NULL);
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    for (guint f = 0; f < G_N_ELEMENTS(families); f++) {
        g_autofree char *help = cli_prometheus_escape_help(families[f].help);
        g_string_append_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", families[f].metric, help,
                               families[f].metric);
        for (guint i = 0; i < fp->guests->len; i++) {
            const KsmFingerprintGuest *g = g_ptr_array_index(fp->guests, i);
            g_autofree char *name = cli_prometheus_escape_label(g->name ? g->name : "");
            double distinct = ksm_sketch_distinct(g->sketch);
            gint64 v = 0;
            switch (f) {
            case 0: v = (gint64)(g->sketch->pages + g->sketch->zero_pages); break;
            case 1: v = (gint64)g->sketch->zero_pages; break;
            case 2: v = (gint64)(distinct + 0.5); break;
            case 3: v = MAX((gint64)g->sketch->pages - (gint64)(distinct + 0.5), 0); break;
            case 4: v = g_date_time_to_unix(now); break;
            }
            g_string_append_printf(out, "%s{pid=\"%" G_GINT64_FORMAT "\",guest=\"%s\"} %"
                                   G_GINT64_FORMAT "\n", families[f].metric, g->pid, name, v);
        }
    }
    return g_string_free(out, FALSE);
}

typedef struct {
    GArray *pids;            /* pid_t */
    GHashTable *names;       /* pid -> guest name (owned) */
} Selection;

static void add_pid(Selection *sel, pid_t pid)
{
    for (guint i = 0; i < sel->pids->len; i++) {
        if (g_array_index(sel->pids, pid_t, i) == pid) {
            return;
        }
    }
    g_array_append_val(sel->pids, pid);
}

static int select_guests(const KsmContext *ctx, char **pids, char **domains, gboolean host,
                         Selection *sel)
{
    g_autoptr(GPtrArray) qemus = ksm_find_qemu_processes(ctx);

    for (guint i = 0; i < qemus->len; i++) {
        const KsmQemuProcess *qp = g_ptr_array_index(qemus, i);
        if (qp->name) {
            g_hash_table_insert(sel->names, GINT_TO_POINTER(qp->pid), g_strdup(qp->name));
        }
    }
    for (guint i = 0; pids && pids[i]; i++) {
        char *end;
        errno = 0;
        long pid = strtol(pids[i], &end, 10);
        if (errno || *end || end == pids[i] || pid <= 0 || pid > G_MAXINT32) {
            g_autofree char *shown = cli_escape_text(pids[i]);
            return cli_fail(CLI_EXIT_USAGE, "--pid '%s' is not a process id", shown);
        }
        add_pid(sel, (pid_t)pid);
    }
    for (guint d = 0; domains && domains[d]; d++) {
        gboolean found = FALSE;
        for (guint i = 0; i < qemus->len; i++) {
            const KsmQemuProcess *qp = g_ptr_array_index(qemus, i);
            if (qp->name && strcmp(qp->name, domains[d]) == 0) {
                add_pid(sel, qp->pid);
                found = TRUE;
            }
        }
        if (!found) {
            g_autofree char *shown = cli_escape_text(domains[d]);
            return cli_fail(CLI_EXIT_FAILURE, "no QEMU process runs a guest named '%s' (-name)",
                            shown);
        }
    }
    if (host) {
        for (guint i = 0; i < qemus->len; i++) {
            add_pid(sel, ((const KsmQemuProcess *)g_ptr_array_index(qemus, i))->pid);
        }
    }
    if (sel->pids->len == 0 && !host) {
        return cli_fail(CLI_EXIT_USAGE, "say which guests: --domain NAME, --pid PID or --host");
    }
    return CLI_EXIT_OK;
}

int cli_cmd_fingerprint(CliGlobal *global, int argc, char **argv)
{
    g_auto(GStrv) pids = NULL;
    g_auto(GStrv) domains = NULL;
    g_autofree char *key_path = NULL, *output = NULL, *group = NULL, *hostname = NULL;
    g_autofree char *prom_path = NULL;
    gboolean host = FALSE, mergeable_only = FALSE;
    double rate = DEFAULT_RATE;
    gint nice_level = DEFAULT_NICE, k = KSM_SKETCH_MAX_K;
    const GOptionEntry entries[] = {
        { "domain", 'd', 0, G_OPTION_ARG_STRING_ARRAY, &domains,
          "The QEMU process of guest NAME (its -name; repeatable)", "NAME" },
        { "pid", 'p', 0, G_OPTION_ARG_STRING_ARRAY, &pids, "Process PID (repeatable)", "PID" },
        { "host", 0, 0, G_OPTION_ARG_NONE, &host, "Every QEMU process on this host", NULL },
        { "key", 0, 0, G_OPTION_ARG_FILENAME, &key_path,
          "The fleet key (default " DEFAULT_KEY ")", "FILE" },
        { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output,
          "Write the fingerprint to FILE (mode 0600; default: standard output)", "FILE" },
        { "trust-group", 'g', 0, G_OPTION_ARG_STRING, &group,
          "The guests' trust group (as <ksm:policy group=>; default: unknown, which place "
          "treats as 'default')", "GROUP" },
        { "hostname", 0, 0, G_OPTION_ARG_STRING, &hostname,
          "Host name written in the file (default: this host's)", "NAME" },
        { "rate", 'r', 0, G_OPTION_ARG_DOUBLE, &rate,
          "Read at most MIB MiB/s (default 512; 0: no limit)", "MIB" },
        { "nice", 'n', 0, G_OPTION_ARG_INT, &nice_level,
          "Lower this command's priority by N (default 10)", "N" },
        { "sketch-size", 'k', 0, G_OPTION_ARG_INT, &k,
          "Hashes kept per guest, 16 to 8192 (8 bytes each; default 8192)", "K" },
        { "prometheus", 0, 0, G_OPTION_ARG_FILENAME, &prom_path,
          "Also write per-guest figures (distinct, duplicate, zero pages) as Prometheus text "
          "to FILE (for node_exporter's textfile collector)", "FILE" },
        { "mergeable-only", 'm', 0, G_OPTION_ARG_NONE, &mergeable_only,
          "Only areas registered with KSM now (smaps VmFlags mg)", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) octx =
        cli_option_context_new(global, "fingerprint", "",
                               "Sketch the page contents of guests (root): a keyed bottom-k\n"
                               "sketch per guest, at most 64 KiB, in one JSON file per host\n"
                               "for `samepage place`.  Needs the fleet key (--key).", entries);

    if (!cli_parse_options(octx, &argc, &argv)) {
        return CLI_EXIT_USAGE;
    }
    if (argc > 1) {
        g_autofree char *shown = cli_escape_text(argv[1]);
        return cli_fail(CLI_EXIT_USAGE, "fingerprint takes no arguments, got '%s'", shown);
    }
    if (rate < 0 || rate > 1e6) {
        return cli_fail(CLI_EXIT_USAGE, "--rate %g: give MiB/s from 0 (no limit) to 1000000",
                        rate);
    }
    if (k < 16 || k > (gint)KSM_SKETCH_MAX_K) {
        return cli_fail(CLI_EXIT_USAGE, "--sketch-size %d: give 16 to %u", k, KSM_SKETCH_MAX_K);
    }
    if (nice_level < 0 || nice_level > 19) {
        return cli_fail(CLI_EXIT_USAGE, "--nice %d: give 0 to 19", nice_level);
    }
    if (group && !ksm_trust_group_valid(group)) {
        g_autofree char *shown = cli_escape_text(group);
        return cli_fail(CLI_EXIT_USAGE, "--trust-group '%s': a trust group is 1 to %u "
                        "characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
                        shown, KSM_TRUST_GROUP_MAX);
    }
    if (hostname && (!*hostname || strlen(hostname) > 255 || !g_utf8_validate(hostname, -1, NULL))) {
        return cli_fail(CLI_EXIT_USAGE, "--hostname: give 1 to 255 bytes of UTF-8");
    }

    /* The key first: without it nothing is read. */
    g_autoptr(GError) error = NULL;
    g_autoptr(KsmFleetKey) key = cli_load_fleet_key(key_path ? key_path : DEFAULT_KEY, &error);
    if (!key) {
        return cli_fail(CLI_EXIT_FAILURE, "%s", error->message);
    }

    g_autoptr(KsmContext) ctx = cli_context_new(global);
    Selection sel = {
        .pids = g_array_new(FALSE, FALSE, sizeof(pid_t)),
        .names = g_hash_table_new_full(NULL, NULL, NULL, g_free),
    };
    g_autoptr(GArray) pids_owner = sel.pids;
    g_autoptr(GHashTable) names_owner = sel.names;
    int status = select_guests(ctx, pids, domains, host, &sel);
    if (status != CLI_EXIT_OK) {
        return status;
    }

    errno = 0;
    if (nice_level > 0 && nice(nice_level) == -1 && errno) {
        g_printerr("samepage: warning: cannot lower the priority: %s\n", g_strerror(errno));
    }

    KsmFingerprintOptions fopts = { .k = (guint)k, .rate_mib_s = rate,
                                    .mergeable_only = mergeable_only };
    double seconds = 0;
    guint64 bytes = 0;
    g_autoptr(GPtrArray) sketches = NULL;
    if (sel.pids->len > 0) {
        sketches = ksm_fingerprint_processes(ctx, key, (const pid_t *)sel.pids->data,
                                             sel.pids->len, &fopts, &seconds, &bytes, &error);
        if (!sketches) {
            return cli_fail_error(error);
        }
    }

    g_autoptr(KsmFingerprint) fp = ksm_fingerprint_new(hostname ? hostname : g_get_host_name(),
                                                       ksm_fleet_key_id(key),
                                                       ksm_context_page_size(ctx));
    for (guint i = 0; i < sel.pids->len; i++) {
        pid_t pid = g_array_index(sel.pids, pid_t, i);
        KsmSketch *s = g_ptr_array_steal_index(sketches, 0);
        ksm_fingerprint_add_guest(fp, g_hash_table_lookup(sel.names, GINT_TO_POINTER(pid)),
                                  pid, group, s);
    }
    g_autofree char *text = ksm_fingerprint_to_json(fp);
    if (output) {
        if (!cli_write_file_safely(output, text, &error)) {
            return cli_fail(CLI_EXIT_FAILURE, "%s", error->message);
        }
    } else {
        fputs(text, stdout);
    }
    if (prom_path) {
        g_autofree char *prom = guests_to_prometheus(fp);
        if (!cli_write_file_safely(prom_path, prom, &error)) {
            return cli_fail(CLI_EXIT_FAILURE, "%s", error->message);
        }
    }
    g_autofree char *read_text = cli_format_bytes((gint64)bytes);
    g_autofree char *shown_out = output ? cli_escape_text(output) : NULL;
    g_printerr("fingerprint: %u guest%s, %s read in %.2f s (%.0f MiB/s)%s%s\n",
               sel.pids->len, sel.pids->len == 1 ? "" : "s", read_text, seconds,
               seconds > 0 ? (double)bytes / seconds / 1048576.0 : 0.0,
               output ? ", written to " : "", output ? shown_out : "");
    return CLI_EXIT_OK;
}
