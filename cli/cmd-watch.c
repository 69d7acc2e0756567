/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cmd-watch.c: `samepage watch`, a live view of KSM with rates.
 *
 * The counters are totals; what an operator watching a host wants is how
 * fast they move: pages merged per second, full scans per second, and what
 * ksmd costs in CPU.  Each refresh takes a snapshot and compares it with the
 * previous one.
 *
 * On a terminal each refresh redraws the screen in place; otherwise (a pipe,
 * a log, a test) it prints plain blocks one after the other.  Ctrl-C, SIGTERM
 * and SIGHUP end the GMainLoop normally, so the cursor is always given back.
 */
#include <glib-unix.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "cli.h"

#define ANSI_HOME "\033[H"
#define ANSI_CLEAR_SCREEN "\033[2J"
#define ANSI_CLEAR_TO_EOL "\033[K"
#define ANSI_CLEAR_BELOW "\033[J"
#define ANSI_HIDE_CURSOR "\033[?25l"
#define ANSI_SHOW_CURSOR "\033[?25h"

typedef struct {
    KsmContext *ctx;
    GMainLoop *loop;
    gboolean tty;
    double interval_s;
    gint remaining;            /* refreshes left; < 0: until interrupted */
    int exit_code;

    KsmSnapshot *previous;     /* NULL before the first refresh */
    pid_t ksmd_pid;            /* 0: not found (yet) */
    gboolean have_ksmd_ticks;
    guint64 ksmd_ticks;
    gint64 ksmd_ticks_us;      /* monotonic time of that reading */
    long clock_ticks_per_second;
} WatchState;

/* Read ksmd's CPU ticks; finds ksmd again if it was not found or went away. */
static gboolean read_ksmd_ticks(WatchState *state, guint64 *ticks)
{
    if (state->ksmd_pid == 0) {
        state->ksmd_pid = ksm_ksmd_pid(state->ctx, NULL);
        if (state->ksmd_pid == 0) {
            return FALSE;
        }
    }
    if (!ksm_ksmd_cpu_ticks(state->ctx, state->ksmd_pid, ticks, NULL)) {
        state->ksmd_pid = 0;
        return FALSE;
    }
    return TRUE;
}

static gint64 delta(const KsmSnapshot *now, const KsmSnapshot *before, KsmField field,
                    gboolean *ok)
{
    gint64 a, b;
    *ok = ksm_snapshot_get(now, field, &a) && ksm_snapshot_get(before, field, &b);
    return *ok ? a - b : 0;
}

static void render_rates(GString *out, WatchState *state, const KsmSnapshot *snap,
                         gboolean have_ticks, guint64 ticks, gsize page_size)
{
    if (!state->previous) {
        g_string_append(out, "Merge rate     (measuring: rates appear at the next refresh)\n");
        return;
    }
    double dt = (double)(snap->monotonic_us - state->previous->monotonic_us) / 1e6;
    if (dt <= 0) {
        return;
    }
    gboolean ok;
    gint64 merged = delta(snap, state->previous, KSM_FIELD_PAGES_SHARING, &ok);
    if (ok) {
        g_autofree char *bytes = cli_format_bytes((gint64)((double)merged / dt * page_size));
        g_string_append_printf(out, "Merge rate     %+.1f pages/s (%s/s)\n", merged / dt, bytes);
    }
    gint64 scans = delta(snap, state->previous, KSM_FIELD_FULL_SCANS, &ok);
    if (ok && scans >= 0) {
        g_string_append_printf(out, "Full scans/s   %.3f\n", scans / dt);
    } else if (ok) {
        /* A successful run=2 sets full_scans back to 0. */
        g_string_append(out, "Full scans/s   (counter reset by run=2)\n");
    }
    gint64 scanned = delta(snap, state->previous, KSM_FIELD_PAGES_SCANNED, &ok);
    if (ok && scanned >= 0) {
        g_string_append_printf(out, "Scanned        %.0f pages/s\n", scanned / dt);
    }
    if (have_ticks && state->have_ksmd_ticks && ticks >= state->ksmd_ticks) {
        double cpu_dt = (double)(snap->monotonic_us - state->ksmd_ticks_us) / 1e6;
        double cpu_s = (double)(ticks - state->ksmd_ticks) / (double)state->clock_ticks_per_second;
        g_string_append_printf(out, "ksmd CPU       %.1f %% (pid %d)\n",
                               cpu_dt > 0 ? 100.0 * cpu_s / cpu_dt : 0.0, (int)state->ksmd_pid);
    } else if (!have_ticks) {
        g_string_append(out, "ksmd CPU       (ksmd thread not found)\n");
    }
}

static void render(GString *out, WatchState *state, const KsmSnapshot *snap,
                   gboolean have_ticks, guint64 ticks)
{
    gsize page_size = ksm_context_page_size(state->ctx);
    KsmDerived derived;
    ksm_derive(snap, page_size, &derived);

    g_autoptr(GDateTime) now = g_date_time_new_now_local();
    g_autofree char *clock = g_date_time_format(now, "%Y-%m-%d %H:%M:%S");
    g_string_append_printf(out, "samepage watch: every %gs, %s%s\n\n", state->interval_s, clock,
                           state->tty ? "  (Ctrl-C quits)" : "");

    gint64 run = ksm_snapshot_get_or(snap, KSM_FIELD_RUN, -1);
    g_string_append_printf(out, "KSM            %s\n", cli_run_state_name(run));
    g_autofree char *saved = cli_format_bytes((gint64)derived.saved_bytes);
    g_string_append_printf(out, "Saved          %s (%" G_GINT64_FORMAT " pages sharing %"
                           G_GINT64_FORMAT " KSM pages, %" G_GINT64_FORMAT " zero pages)\n",
                           saved, ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_SHARING, 0),
                           ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_SHARED, 0),
                           ksm_snapshot_get_or(snap, KSM_FIELD_KSM_ZERO_PAGES, 0));
    g_string_append_printf(out, "Unshared       %" G_GINT64_FORMAT " pages, volatile %"
                           G_GINT64_FORMAT " pages\n",
                           ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_UNSHARED, 0),
                           ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_VOLATILE, 0));
    g_string_append_printf(out, "Ratios         sharing %.2f, waste %.2f\n",
                           derived.sharing_ratio, derived.waste_ratio);
    double limit = cli_scan_pages_per_second(snap);
    g_string_append_printf(out, "Full scans     %" G_GINT64_FORMAT "\n",
                           ksm_snapshot_get_or(snap, KSM_FIELD_FULL_SCANS, 0));
    if (limit >= 0) {
        g_string_append_printf(out, "Scan limit     %.0f pages/s (%" G_GINT64_FORMAT
                               " pages every %" G_GINT64_FORMAT " ms)\n", limit,
                               ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_TO_SCAN, 0),
                               ksm_snapshot_get_or(snap, KSM_FIELD_SLEEP_MILLISECS, 0));
    }
    g_string_append_c(out, '\n');
    render_rates(out, state, snap, have_ticks, ticks, page_size);
}

/* One refresh.  Returns G_SOURCE_REMOVE once the loop should end. */
static gboolean refresh(gpointer data)
{
    WatchState *state = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(KsmSnapshot) snap = ksm_snapshot_read(state->ctx, &error);

    if (!snap) {
        state->exit_code = cli_fail_error(error);
        g_main_loop_quit(state->loop);
        return G_SOURCE_REMOVE;
    }
    guint64 ticks = 0;
    gboolean have_ticks = read_ksmd_ticks(state, &ticks);

    g_autoptr(GString) frame = g_string_new(NULL);
    render(frame, state, snap, have_ticks, ticks);
    if (state->tty) {
        /*
         * Overwrite in place rather than clear and redraw: clearing first
         * makes the screen flicker.  Each line wipes what a longer previous
         * line left, and the end wipes leftover lines below.
         */
        g_string_replace(frame, "\n", ANSI_CLEAR_TO_EOL "\n", 0);
        g_string_prepend(frame, ANSI_HOME);
        g_string_append(frame, ANSI_CLEAR_BELOW);
    } else {
        g_string_append_c(frame, '\n');   /* blocks stay apart in a log */
    }
    if (fputs(frame->str, stdout) == EOF || fflush(stdout) != 0) {
        /* Nobody sees the frames (a full disk, a closed pipe): stop, exit 1. */
        state->exit_code = cli_fail(CLI_EXIT_FAILURE, "cannot write to standard output: %s",
                                    g_strerror(errno));
        g_main_loop_quit(state->loop);
        return G_SOURCE_REMOVE;
    }

    ksm_snapshot_free(state->previous);
    state->previous = g_steal_pointer(&snap);
    state->have_ksmd_ticks = have_ticks;
    state->ksmd_ticks = ticks;
    state->ksmd_ticks_us = state->previous->monotonic_us;

    if (state->remaining > 0 && --state->remaining == 0) {
        g_main_loop_quit(state->loop);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_quit_signal(gpointer data)
{
    WatchState *state = data;
    g_main_loop_quit(state->loop);
    return G_SOURCE_CONTINUE;
}

int cli_cmd_watch(CliGlobal *global, int argc, char **argv)
{
    double interval_s = 2.0;
    gint count = 0;
    const GOptionEntry entries[] = {
        { "interval", 'i', 0, G_OPTION_ARG_DOUBLE, &interval_s,
          "Seconds between refreshes (default 2)", "S" },
        { "count", 'n', 0, G_OPTION_ARG_INT, &count,
          "Stop after N refreshes (default: until Ctrl-C)", "N" },
        { NULL },
    };
    g_autoptr(GOptionContext) octx =
        cli_option_context_new(global, "watch", "",
                                  "A live view of KSM: saved memory, pages merged per second,\n"
                                  "full scans per second, pages scanned per second and the CPU\n"
                                  "share of the ksmd thread.  Redraws in place on a terminal,\n"
                                  "prints one block per refresh otherwise.  Ctrl-C quits.",
                                  entries);
    int exit_code;

    if (!cli_parse_options(octx, &argc, &argv)) {
        return CLI_EXIT_USAGE;
    }
    if (argc > 1) {
        return cli_fail(CLI_EXIT_USAGE, "watch takes no arguments, got '%s'", argv[1]);
    }
    /* Below 10 ms the counters barely move and the screen only flickers. */
    if (!(interval_s >= 0.01 && interval_s <= 86400)) {
        return cli_fail(CLI_EXIT_USAGE, "--interval must be between 0.01 and 86400 seconds");
    }
    if (count < 0) {
        return cli_fail(CLI_EXIT_USAGE, "--count must be 0 (no limit) or more");
    }

    g_autoptr(KsmContext) ctx = cli_context_new(global);
    if (!cli_require_ksm(ctx, &exit_code)) {
        return exit_code;
    }

    WatchState state = {
        .ctx = ctx,
        .loop = g_main_loop_new(NULL, FALSE),
        .tty = isatty(STDOUT_FILENO),
        .interval_s = interval_s,
        .remaining = count > 0 ? count : -1,
        .exit_code = CLI_EXIT_OK,
        .clock_ticks_per_second = ksm_clock_ticks_per_second(),
    };
    guint signal_sources[] = {
        g_unix_signal_add(SIGINT, on_quit_signal, &state),
        g_unix_signal_add(SIGTERM, on_quit_signal, &state),
        g_unix_signal_add(SIGHUP, on_quit_signal, &state),
    };

    if (state.tty) {
        fputs(ANSI_HIDE_CURSOR ANSI_HOME ANSI_CLEAR_SCREEN, stdout);
    }
    /* The first frame now, not one interval later. */
    if (refresh(&state) == G_SOURCE_CONTINUE) {
        guint timer = g_timeout_add((guint)(interval_s * 1000), refresh, &state);
        g_main_loop_run(state.loop);
        /* The timer removed itself if it ended the loop; else remove it here. */
        GSource *source = g_main_context_find_source_by_id(NULL, timer);
        if (source) {
            g_source_destroy(source);
        }
    }
    if (state.tty) {
        fputs(ANSI_SHOW_CURSOR, stdout);
    }
    fflush(stdout);

    for (guint i = 0; i < G_N_ELEMENTS(signal_sources); i++) {
        g_source_remove(signal_sources[i]);
    }
    ksm_snapshot_free(state.previous);
    g_main_loop_unref(state.loop);
    return state.exit_code;
}
