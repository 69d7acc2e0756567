/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ksm-sample: one JSON line per interval with what the merge benchmarks
 * follow, read through libksm (nothing here opens a KSM file itself):
 *
 *   t              CLOCK_MONOTONIC seconds (Python's time.monotonic())
 *   knobs          run, pages_to_scan, sleep_millisecs, advisor_mode
 *   counters       pages_shared, pages_sharing, pages_unshared,
 *                  pages_volatile, full_scans, pages_scanned
 *   ksmd_cpu_s     ksmd's utime + stime (/proc/<ksmd>/stat, clock ticks)
 *   saved_pages    what KSM saves inside the given processes, exactly
 *                  (ksm_saved_count: KSM frames mapped n > 1 times: n - 1)
 *   cost_ms        how long the sample took to read
 *
 *   ksm-sample [--interval-ms MS] [--count N] PID[:START-END]...
 *
 * Runs until killed (SIGTERM/SIGINT) or N samples.  START-END in hex, as in
 * /proc/PID/maps; without them every private anonymous area of PID counts.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ksm/ksm.h>
#include <ksm/ksm-ksmd.h>
#include <ksm/ksm-saved.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static gboolean parse_target(const char *text, KsmCensusTarget *t)
{
    char *end;
    memset(t, 0, sizeof(*t));
    errno = 0;
    long pid = strtol(text, &end, 10);
    if (errno || end == text || pid <= 0) {
        return FALSE;
    }
    t->pid = (pid_t)pid;
    if (*end == 0) {
        return TRUE;
    }
    if (*end != ':') {
        return FALSE;
    }
    t->start = g_ascii_strtoull(end + 1, &end, 16);
    if (*end != '-') {
        return FALSE;
    }
    t->end = g_ascii_strtoull(end + 1, &end, 16);
    return *end == 0 && t->end > t->start;
}

int main(int argc, char **argv)
{
    gint interval_ms = 250, count = 0;
    const GOptionEntry entries[] = {
        { "interval-ms", 'i', 0, G_OPTION_ARG_INT, &interval_ms, "Sample every MS (250)", "MS" },
        { "count", 'n', 0, G_OPTION_ARG_INT, &count, "Stop after N samples (0: when killed)", "N" },
        { NULL },
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("PID[:START-END]...");
    g_autoptr(GError) error = NULL;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &error) || interval_ms <= 0) {
        g_printerr("ksm-sample: %s\n", error ? error->message : "bad interval");
        return 2;
    }
    g_autoptr(GArray) targets = g_array_new(FALSE, FALSE, sizeof(KsmCensusTarget));
    for (int i = 1; i < argc; i++) {
        KsmCensusTarget t;
        if (!parse_target(argv[i], &t)) {
            g_printerr("ksm-sample: '%s' is not PID or PID:START-END\n", argv[i]);
            return 2;
        }
        g_array_append_val(targets, t);
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    pid_t ksmd = ksm_ksmd_pid(ctx, NULL);
    double tick = 1.0 / (double)ksm_clock_ticks_per_second();
    static const KsmField fields[] = {
        KSM_FIELD_RUN, KSM_FIELD_PAGES_TO_SCAN, KSM_FIELD_SLEEP_MILLISECS,
        KSM_FIELD_ADVISOR_MODE, KSM_FIELD_PAGES_SHARED, KSM_FIELD_PAGES_SHARING,
        KSM_FIELD_PAGES_UNSHARED, KSM_FIELD_PAGES_VOLATILE, KSM_FIELD_FULL_SCANS,
        KSM_FIELD_PAGES_SCANNED, KSM_FIELD_KSM_ZERO_PAGES,
    };
    gint64 next = g_get_monotonic_time();

    for (int n = 0; !stop && (count == 0 || n < count); n++) {
        gint64 t0 = g_get_monotonic_time();
        GString *line = g_string_new(NULL);
        g_string_append_printf(line, "{\"t\": %.4f", (double)t0 / 1e6);

        g_autoptr(KsmSnapshot) snap = ksm_snapshot_read(ctx, NULL);
        for (guint f = 0; snap && f < G_N_ELEMENTS(fields); f++) {
            gint64 v;
            if (ksm_snapshot_get(snap, fields[f], &v)) {
                g_string_append_printf(line, ", \"%s\": %" G_GINT64_FORMAT,
                                       ksm_field_info(fields[f])->name, v);
            }
        }
        guint64 ticks;
        if (ksmd > 0 && ksm_ksmd_cpu_ticks(ctx, ksmd, &ticks, NULL)) {
            g_string_append_printf(line, ", \"ksmd_cpu_s\": %.2f", (double)ticks * tick);
        }
        if (targets->len > 0) {
            KsmSaved saved;
            g_autoptr(GError) serr = NULL;
            if (ksm_saved_count(ctx, (const KsmCensusTarget *)targets->data, targets->len,
                                &saved, &serr)) {
                g_string_append_printf(line, ", \"saved_pages\": %" G_GUINT64_FORMAT
                                       ", \"ksm_mapped_pages\": %" G_GUINT64_FORMAT
                                       ", \"present_pages\": %" G_GUINT64_FORMAT
                                       ", \"other_saved_pages\": %" G_GUINT64_FORMAT
                                       ", \"gone\": %u", saved.ksm_saved_pages,
                                       saved.ksm_mapped_pages, saved.present_pages,
                                       saved.other_saved_pages, saved.gone);
            } else {
                g_autofree char *msg = g_strescape(serr->message, NULL);
                g_string_append_printf(line, ", \"error\": \"%s\"", msg);
            }
        }
        g_string_append_printf(line, ", \"cost_ms\": %.2f}\n",
                               (double)(g_get_monotonic_time() - t0) / 1e3);
        fputs(line->str, stdout);
        fflush(stdout);
        g_string_free(line, TRUE);

        next += (gint64)interval_ms * 1000;
        gint64 now = g_get_monotonic_time();
        if (next > now) {
            g_usleep((gulong)(next - now));
        } else {
            next = now;   /* fell behind: do not burst to catch up */
        }
    }
    return 0;
}
