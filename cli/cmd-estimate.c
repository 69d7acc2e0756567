/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cmd-estimate.c: `samepage estimate`: how much memory KSM could merge in a
 * set of processes, next to what it has merged there.
 *
 * The page census itself (reading the processes' memory, hashing,
 * confirming duplicates byte for byte) is libksm's ksm_census_run; the
 * definitions of every figure are in ksm/ksm-census.h.  This file picks
 * the processes, shows progress and prints the result.
 *
 * Defaults follow the host: zero pages are freeable all (use_zero_pages=1)
 * or as one more content (use_zero_pages=0), and max_page_sharing caps how
 * many copies one KSM page can replace.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <json-glib/json-glib.h>

#include "cli.h"

#define LARGE_INPUT (G_GUINT64_CONSTANT(4) << 30)   /* progress even without a tty */

typedef struct {
    gboolean tty;
    gboolean shown;          /* a progress line is on the screen */
    gint64 last_us;          /* last redraw (tty) */
    gint64 start_us;
    guint last_tenth;        /* last 10% step printed (no tty) */
} Progress;

/* A guest name for each pid we know to be QEMU. */
typedef struct {
    GArray *targets;         /* KsmCensusTarget */
    GHashTable *guests;      /* pid -> guest name (owned) */
} Selection;

static void on_progress(const KsmCensusProgress *p, gpointer data)
{
    Progress *pr = data;
    gint64 now = g_get_monotonic_time();

    if (p->finished) {
        if (pr->shown && pr->tty) {
            fputs("\r\033[K", stderr);   /* leave the terminal as it was */
        }
        return;
    }
    guint percent = p->bytes_total ? (guint)(p->bytes_done * 100 / p->bytes_total) : 0;
    g_autofree char *done = cli_format_bytes((gint64)p->bytes_done);
    g_autofree char *total = cli_format_bytes((gint64)p->bytes_total);
    double secs = (double)(now - pr->start_us) / 1e6;
    double rate = secs > 0 ? (double)p->bytes_done / secs / 1e9 : 0;

    if (pr->tty) {
        if (now - pr->last_us < 100000) {
            return;   /* ten redraws a second are plenty */
        }
        pr->last_us = now;
        fprintf(stderr, "\r\033[Kestimate: %s of ~%s (%u%%), process %u/%u (pid %d), %.2f GB/s",
                done, total, percent, p->target_index + 1, p->n_targets, (int)p->pid, rate);
        pr->shown = TRUE;
    } else if (p->bytes_total >= LARGE_INPUT && percent / 10 > pr->last_tenth) {
        /* A log, not a terminal: one plain line per 10%. */
        pr->last_tenth = percent / 10;
        fprintf(stderr, "estimate: %s of ~%s (%u%%), %.2f GB/s\n", done, total, percent, rate);
    }
}

/* "4G", "512M", "1073741824", "2GiB": IEC units. */
static gboolean parse_size(const char *text, guint64 *bytes)
{
    char *end;
    errno = 0;
    guint64 v = g_ascii_strtoull(text, &end, 10);
    if (errno || end == text) {
        return FALSE;
    }
    guint shift = 0;
    switch (g_ascii_toupper(*end)) {
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    default: break;
    }
    if (shift && (g_ascii_strcasecmp(end, "iB") == 0 || g_ascii_strcasecmp(end, "B") == 0)) {
        end += strlen(end);
    }
    if (*end || (shift && v > (G_MAXUINT64 >> shift))) {
        return FALSE;
    }
    *bytes = v << shift;
    return TRUE;
}

static void add_target(Selection *sel, pid_t pid)
{
    for (guint i = 0; i < sel->targets->len; i++) {
        if (g_array_index(sel->targets, KsmCensusTarget, i).pid == pid) {
            return;   /* named twice (--pid and --all-qemu): read once */
        }
    }
    KsmCensusTarget t = { pid, 0, 0 };
    g_array_append_val(sel->targets, t);
}

/* Fill sel from the options; on error print it and return the exit code. */
static int select_targets(const KsmContext *ctx, char **pids, gboolean all_qemu, char **domains,
                          Selection *sel)
{
    g_autoptr(GPtrArray) qemus = ksm_find_qemu_processes(ctx);

    for (guint i = 0; i < qemus->len; i++) {
        const KsmQemuProcess *qp = g_ptr_array_index(qemus, i);
        if (qp->name) {
            g_hash_table_insert(sel->guests, GINT_TO_POINTER(qp->pid), g_strdup(qp->name));
        }
    }
    for (guint i = 0; pids && pids[i]; i++) {
        char *end;
        errno = 0;
        long pid = strtol(pids[i], &end, 10);
        if (errno || *end || end == pids[i] || pid <= 0 || pid > G_MAXINT32) {
            return cli_fail(CLI_EXIT_USAGE, "--pid '%s' is not a process id", pids[i]);
        }
        add_target(sel, (pid_t)pid);
    }
    for (guint d = 0; domains && domains[d]; d++) {
        gboolean found = FALSE;
        for (guint i = 0; i < qemus->len; i++) {
            const KsmQemuProcess *qp = g_ptr_array_index(qemus, i);
            if (qp->name && strcmp(qp->name, domains[d]) == 0) {
                add_target(sel, qp->pid);
                found = TRUE;
            }
        }
        if (!found) {
            g_autofree char *shown = cli_escape_text(domains[d]);
            return cli_fail(CLI_EXIT_FAILURE,
                            "no QEMU process runs a guest named '%s' (-name)", shown);
        }
    }
    if (all_qemu) {
        if (qemus->len == 0) {
            return cli_fail(CLI_EXIT_FAILURE, "--all-qemu: no QEMU process is running");
        }
        for (guint i = 0; i < qemus->len; i++) {
            add_target(sel, ((const KsmQemuProcess *)g_ptr_array_index(qemus, i))->pid);
        }
    }
    if (sel->targets->len == 0) {
        return cli_fail(CLI_EXIT_USAGE,
                           "say which processes: --pid PID, --all-qemu or --domain NAME");
    }
    return CLI_EXIT_OK;
}

static const char *zero_mode_name(KsmCensusZeroMode mode)
{
    switch (mode) {
    case KSM_CENSUS_ZERO_TO_ZERO_PAGE:
        return "zero-page";
    case KSM_CENSUS_ZERO_AS_CONTENT:
        return "content";
    case KSM_CENSUS_ZERO_EXCLUDE:
        return "excluded";
    }
    return "?";
}

static const char *zero_mode_text(KsmCensusZeroMode mode)
{
    switch (mode) {
    case KSM_CENSUS_ZERO_TO_ZERO_PAGE:
        return "use_zero_pages=1: every zero page";
    case KSM_CENSUS_ZERO_AS_CONTENT:
        return "use_zero_pages=0: all but one, like any other content";
    case KSM_CENSUS_ZERO_EXCLUDE:
        return "--no-zero: not counted";
    }
    return "?";
}

/* ---- JSON ------------------------------------------------------------------ */

static void member_int(JsonBuilder *b, const char *name, gint64 value)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, value);
}

/* -1 means unknown: null. */
static void member_known(JsonBuilder *b, const char *name, gint64 value)
{
    json_builder_set_member_name(b, name);
    if (value < 0) {
        json_builder_add_null_value(b);
    } else {
        json_builder_add_int_value(b, value);
    }
}

static void add_json_process(JsonBuilder *b, const KsmCensusProcess *p, const char *guest)
{
    json_builder_begin_object(b);
    member_int(b, "pid", p->pid);
    json_builder_set_member_name(b, "guest");
    if (guest) {
        g_autofree char *valid = cli_utf8_valid(guest);   /* -name may be any bytes */
        json_builder_add_string_value(b, valid);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "gone");
    json_builder_add_boolean_value(b, p->gone);
    member_int(b, "areas", p->areas);
    member_int(b, "area_bytes", (gint64)p->area_bytes);
    member_int(b, "pages", (gint64)p->pages);
    member_int(b, "zero_pages", (gint64)p->zero_pages);
    member_known(b, "zero_mapped_pages", p->zero_mapped_pages);
    member_int(b, "dup_within_pages", (gint64)p->dup_within);
    member_int(b, "dup_across_pages", (gint64)p->dup_across);
    member_int(b, "absent_pages", (gint64)p->absent_pages);
    member_int(b, "swapped_pages", (gint64)p->swapped_pages);
    member_int(b, "unreadable_pages", (gint64)p->unreadable_pages);
    member_known(b, "ksm_merging_pages", p->ksm_merging_pages);
    member_known(b, "ksm_zero_pages", p->ksm_zero_pages);
    json_builder_set_member_name(b, "ksm_process_profit");
    if (p->ksm_process_profit == G_MININT64) {
        json_builder_add_null_value(b);
    } else {
        json_builder_add_int_value(b, p->ksm_process_profit);
    }
    json_builder_end_object(b);
}

static char *to_json(const KsmCensus *s, GHashTable *guests)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    gint64 page = (gint64)s->page_size;

    json_builder_begin_object(b);
    member_int(b, "page_size", page);
    json_builder_set_member_name(b, "zero_pages_count_as");
    json_builder_add_string_value(b, zero_mode_name(s->zero_mode));
    member_int(b, "max_page_sharing", (gint64)s->max_page_sharing);
    json_builder_set_member_name(b, "seconds");
    json_builder_add_double_value(b, s->seconds);
    member_int(b, "bytes_read", (gint64)(s->pages * s->page_size));
    member_int(b, "pages", (gint64)s->pages);
    member_int(b, "zero_pages", (gint64)s->zero_pages);
    member_known(b, "zero_mapped_pages", s->zero_mapped_pages);
    member_int(b, "distinct_contents", (gint64)s->distinct);
    member_int(b, "unique_pages", (gint64)s->unique_pages);
    member_int(b, "dup_within_pages", (gint64)s->dup_within);
    member_int(b, "dup_across_pages", (gint64)s->dup_across);
    member_int(b, "freeable_pages", (gint64)s->freeable_pages);
    member_int(b, "freeable_bytes", (gint64)s->freeable_pages * page);
    member_int(b, "freeable_zero_pages", (gint64)s->freeable_zero_pages);
    member_known(b, "merged_pages", s->merged_pages);
    member_known(b, "merged_bytes", s->merged_pages < 0 ? -1 : s->merged_pages * page);
    json_builder_set_member_name(b, "merged_exact");
    json_builder_add_boolean_value(b, s->merged_exact);
    json_builder_set_member_name(b, "merged_ratio");
    if (s->ratio < 0) {
        json_builder_add_null_value(b);
    } else {
        json_builder_add_double_value(b, s->ratio);
    }
    member_known(b, "ksm_frame_pages", s->ksm_frame_pages);
    member_known(b, "shared_other_pages", s->shared_other_pages);
    member_int(b, "unconfirmed_pages", (gint64)s->unconfirmed_pages);
    member_int(b, "absent_pages", (gint64)s->absent_pages);
    member_int(b, "swapped_pages", (gint64)s->swapped_pages);
    member_int(b, "unreadable_pages", (gint64)s->unreadable_pages);
    json_builder_set_member_name(b, "frames_visible");
    json_builder_add_boolean_value(b, s->frames_visible);
    json_builder_set_member_name(b, "truncated");
    json_builder_add_boolean_value(b, s->truncated);
    json_builder_set_member_name(b, "processes");
    json_builder_begin_array(b);
    for (guint i = 0; i < s->n_processes; i++) {
        const KsmCensusProcess *p = &s->processes[i];
        add_json_process(b, p, g_hash_table_lookup(guests, GINT_TO_POINTER(p->pid)));
    }
    json_builder_end_array(b);
    json_builder_end_object(b);

    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    json_generator_set_pretty(gen, TRUE);
    json_generator_set_root(gen, root);
    g_autofree char *text = json_generator_to_data(gen, NULL);
    return g_strconcat(text, "\n", NULL);
}

/* ---- table ------------------------------------------------------------------ */

static char *pages_text(const KsmCensus *s, guint64 pages)
{
    return cli_format_bytes((gint64)ksm_census_bytes(s, pages));
}

static char *to_table(const KsmCensus *s, GHashTable *guests)
{
    GString *out = g_string_new(NULL);
    g_autofree char *read = pages_text(s, s->pages);

    g_string_append_printf(out, "Read %s of private anonymous memory in %u process%s, %.2f s "
                           "(%.2f GB/s)%s\n\n", read, s->n_processes,
                           s->n_processes == 1 ? "" : "es", s->seconds,
                           s->seconds > 0 ? (double)(s->pages * s->page_size) / s->seconds / 1e9 : 0,
                           s->truncated ? ", stopped at --limit" : "");
    g_string_append_printf(out, "  %-8s %-16s %10s %10s %10s %10s %12s\n", "PID", "GUEST",
                           "READ", "ZERO", "DUP-WITHIN", "DUP-ACROSS", "KSM-MERGING");
    for (guint i = 0; i < s->n_processes; i++) {
        const KsmCensusProcess *p = &s->processes[i];
        /* -name is any local user's text: escaped for the terminal. */
        g_autofree char *guest = cli_escape_text(g_hash_table_lookup(guests, GINT_TO_POINTER(p->pid)));
        g_autofree char *pages = pages_text(s, p->pages);
        g_autofree char *zero = pages_text(s, p->zero_pages);
        g_autofree char *within = pages_text(s, p->dup_within);
        g_autofree char *across = pages_text(s, p->dup_across);
        g_autofree char *merging = p->ksm_merging_pages >= 0
                                   ? pages_text(s, (guint64)p->ksm_merging_pages) : g_strdup("-");
        g_string_append_printf(out, "  %-8d %-16s %10s %10s %10s %10s %12s%s\n", (int)p->pid,
                               *guest ? guest : "-", pages, zero, within, across, merging,
                               p->gone ? "  (exited)" : "");
    }

    g_autofree char *freeable = pages_text(s, s->freeable_pages);
    g_autofree char *fzero = pages_text(s, s->freeable_zero_pages);
    g_string_append_printf(out, "\nCould be freed by merging    %s", freeable);
    if (s->max_page_sharing) {
        g_string_append_printf(out, "  (max_page_sharing %" G_GUINT64_FORMAT ")",
                               s->max_page_sharing);
    }
    g_string_append_printf(out, "\n  of which zero pages        %s  (%s)\n", fzero,
                           zero_mode_text(s->zero_mode));
    if (s->merged_pages >= 0) {
        g_autofree char *merged = pages_text(s, (guint64)s->merged_pages);
        g_string_append_printf(out, "KSM has merged               %s  (%s)\n", merged,
                               s->merged_exact ? "exact, from frame flags"
                               : "upper bound: ksm_merging_pages counts every mapping of a "
                                 "KSM page; run as root for the exact figure");
    } else {
        g_string_append(out, "KSM has merged               unknown (needs root)\n");
    }
    if (s->ratio >= 0) {
        g_string_append_printf(out, "Merged / achievable          %.1f%%\n", s->ratio * 100);
    }
    if (s->shared_other_pages > 0) {
        g_autofree char *other = pages_text(s, (guint64)s->shared_other_pages);
        g_string_append_printf(out, "Already shared, not by KSM   %s  (copy-on-write after fork, "
                               "the zero page)\n", other);
    }
    g_string_append_printf(out, "Pages: %" G_GUINT64_FORMAT " read, %" G_GUINT64_FORMAT " zero, %"
                           G_GUINT64_FORMAT " distinct contents (%" G_GUINT64_FORMAT " unique), %"
                           G_GUINT64_FORMAT " duplicates within a process, %" G_GUINT64_FORMAT
                           " across processes\n", s->pages, s->zero_pages, s->distinct,
                           s->unique_pages, s->dup_within, s->dup_across);
    if (s->swapped_pages || s->unreadable_pages || s->unconfirmed_pages) {
        g_string_append_printf(out, "Not counted: %" G_GUINT64_FORMAT " swapped out, %"
                               G_GUINT64_FORMAT " unmapped while read, %" G_GUINT64_FORMAT
                               " duplicates whose first copy changed\n", s->swapped_pages,
                               s->unreadable_pages, s->unconfirmed_pages);
    }
    return g_string_free(out, FALSE);
}

/* ---- the command ------------------------------------------------------------ */

int cli_cmd_estimate(CliGlobal *global, int argc, char **argv)
{
    g_auto(GStrv) pids = NULL;
    g_auto(GStrv) domains = NULL;
    g_autofree char *limit = NULL;
    gboolean all_qemu = FALSE, as_json = FALSE, no_zero = FALSE, mergeable_only = FALSE;
    const GOptionEntry entries[] = {
        { "pid", 'p', 0, G_OPTION_ARG_STRING_ARRAY, &pids, "Read process PID (repeatable)", "PID" },
        { "all-qemu", 'a', 0, G_OPTION_ARG_NONE, &all_qemu, "Read every QEMU process", NULL },
        { "domain", 'd', 0, G_OPTION_ARG_STRING_ARRAY, &domains,
          "Read the QEMU process of guest NAME (its -name; repeatable)", "NAME" },
        { "json", 'j', 0, G_OPTION_ARG_NONE, &as_json, "Print one JSON object", NULL },
        { "mergeable-only", 'm', 0, G_OPTION_ARG_NONE, &mergeable_only,
          "Only areas registered with KSM now (smaps VmFlags mg), not all anonymous memory",
          NULL },
        { "no-zero", 0, 0, G_OPTION_ARG_NONE, &no_zero,
          "Do not count zero pages as freeable (they are still reported)", NULL },
        { "limit", 0, 0, G_OPTION_ARG_STRING, &limit,
          "Stop after reading SIZE bytes (e.g. 4G)", "SIZE" },
        { NULL },
    };
    g_autoptr(GOptionContext) octx =
        cli_option_context_new(global, "estimate", "",
                                  "Read the private anonymous memory of processes (root), hash\n"
                                  "every page (XXH3), confirm duplicates byte for byte, and say\n"
                                  "how much merging could free: zero pages, pages duplicated\n"
                                  "within and across processes, next to what KSM has merged.\n"
                                  "Progress goes to stderr; the result to stdout.", entries);

    if (!cli_parse_options(octx, &argc, &argv)) {
        return CLI_EXIT_USAGE;
    }
    if (argc > 1) {
        return cli_fail(CLI_EXIT_USAGE, "estimate takes no arguments, got '%s'", argv[1]);
    }
    KsmCensusOptions opts;
    ksm_census_options_init(&opts);
    if (limit && !parse_size(limit, &opts.byte_limit)) {
        return cli_fail(CLI_EXIT_USAGE, "--limit '%s' is not a size (e.g. 512M, 4G)", limit);
    }

    g_autoptr(KsmContext) ctx = cli_context_new(global);
    Selection sel = {
        .targets = g_array_new(FALSE, FALSE, sizeof(KsmCensusTarget)),
        .guests = g_hash_table_new_full(NULL, NULL, NULL, g_free),
    };
    g_autoptr(GArray) targets_owner = sel.targets;
    g_autoptr(GHashTable) guests_owner = sel.guests;
    int status = select_targets(ctx, pids, all_qemu, domains, &sel);
    if (status != CLI_EXIT_OK) {
        return status;
    }

    /* Count as the host would merge: its use_zero_pages and max_page_sharing. */
    g_autoptr(KsmSnapshot) snap = ksm_snapshot_read(ctx, NULL);
    gint64 use_zero = snap ? ksm_snapshot_get_or(snap, KSM_FIELD_USE_ZERO_PAGES, 0) : 0;
    opts.zero_mode = no_zero ? KSM_CENSUS_ZERO_EXCLUDE
                   : use_zero ? KSM_CENSUS_ZERO_TO_ZERO_PAGE : KSM_CENSUS_ZERO_AS_CONTENT;
    opts.max_page_sharing = snap ? (guint64)MAX(ksm_snapshot_get_or(snap,
                                       KSM_FIELD_MAX_PAGE_SHARING, 0), 0) : 0;
    opts.mergeable_only = mergeable_only;
    opts.targets = (const KsmCensusTarget *)sel.targets->data;
    opts.n_targets = sel.targets->len;

    Progress progress = { .tty = isatty(STDERR_FILENO), .start_us = g_get_monotonic_time() };
    opts.progress = on_progress;
    opts.progress_data = &progress;

    g_autoptr(GError) error = NULL;
    g_autoptr(KsmCensus) census = ksm_census_run(ctx, &opts, &error);
    if (!census) {
        return cli_fail_error(error);
    }
    g_autofree char *text = as_json ? to_json(census, sel.guests) : to_table(census, sel.guests);
    fputs(text, stdout);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        return cli_fail(CLI_EXIT_FAILURE, "cannot write to standard output: %s", g_strerror(errno));
    }
    return CLI_EXIT_OK;
}
