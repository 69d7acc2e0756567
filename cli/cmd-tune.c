/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cmd-tune.c: `samepage tune`: samepage's ksmd scan policy, in the foreground.
 *
 * The policy itself is libksm's (ksm/ksm-tune.h): converge fast when there is
 * merging to do, at a computed rate and under a CPU cap, then scan slowly.
 * This file observes, asks the policy, and writes pages_to_scan and
 * sleep_millisecs through libksm under the samepage host lock.  It leaves the
 * kernel's scan-time advisor off (the advisor owns pages_to_scan) and run at 1;
 * if someone else stops ksmd (run 0 or 2) it waits and does not restart it.
 *
 * SIGUSR1 makes it converge again at once (a guest started); SIGTERM and
 * SIGINT end it, leaving the knobs as they are.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ksm/ksm-tune.h>
#include "cli.h"

static volatile sig_atomic_t got_stop, got_kick;

static void on_stop(int sig)
{
    (void)sig;
    got_stop = 1;
}

static void on_kick(int sig)
{
    (void)sig;
    got_kick = 1;
}

static void install(int sig, void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;   /* no SA_RESTART: a signal cuts the sleep short */
    sigaction(sig, &sa, NULL);
}

static void say(gboolean json, const KsmTuneState *s, const char *event, const char *text)
{
    if (json) {
        g_autofree char *esc = g_strescape(text, NULL);
        printf("{\"time\": %.3f, \"event\": \"%s\", \"phase\": \"%s\", \"pages_to_scan\": %"
               G_GUINT64_FORMAT ", \"sleep_millisecs\": %u, \"reason\": \"%s\"}\n",
               (double)g_get_monotonic_time() / 1e6, event, ksm_tune_phase_name(s->phase),
               s->pages_to_scan, s->sleep_ms, esc);
    } else {
        g_autoptr(GDateTime) now = g_date_time_new_now_local();
        g_autofree char *stamp = g_date_time_format(now, "%H:%M:%S");
        printf("%s %s: pages_to_scan=%" G_GUINT64_FORMAT " sleep_millisecs=%u: %s\n", stamp,
               event, s->pages_to_scan, s->sleep_ms, text);
    }
    fflush(stdout);
}

/* Write knobs under the host lock; FALSE (and a message) if it could not. */
static gboolean apply(const KsmContext *ctx, GPtrArray *assign, GError **error)
{
    g_autoptr(KsmHostLock) lock = ksm_host_lock_acquire(NULL, 2000, error);
    if (!lock) {
        return FALSE;
    }
    return ksm_knobs_set(ctx, (const char *const *)assign->pdata, assign->len, NULL, NULL,
                         error);
}

static gboolean apply_policy(const KsmContext *ctx, const KsmTuneState *s, gboolean start,
                             gboolean have_advisor, GError **error)
{
    g_autoptr(GPtrArray) assign = g_ptr_array_new_with_free_func(g_free);
    if (start && have_advisor) {
        g_ptr_array_add(assign, g_strdup("advisor_mode=none"));
    }
    g_ptr_array_add(assign, g_strdup_printf("pages_to_scan=%" G_GUINT64_FORMAT, s->pages_to_scan));
    g_ptr_array_add(assign, g_strdup_printf("sleep_millisecs=%u", s->sleep_ms));
    if (start) {
        g_ptr_array_add(assign, g_strdup("run=1"));
    }
    return apply(ctx, assign, error);
}

int cli_cmd_tune(CliGlobal *global, int argc, char **argv)
{
    KsmTuneParams params;
    ksm_tune_params_init(&params);
    double interval = 1.0, fast = params.fast_scan_ms / 1000.0, slow = params.slow_scan_ms / 1000.0;
    double duration = 0, mergeable_every = 5.0;
    gint max_cpu = (gint)params.max_cpu, idle_cpu = (gint)params.idle_cpu;
    gint sleep_ms = (gint)params.sleep_ms;
    gboolean once = FALSE, json = FALSE;
    const GOptionEntry entries[] = {
        { "once", 0, 0, G_OPTION_ARG_NONE, &once,
          "Set the converge rate for the memory registered now, start ksmd, and exit", NULL },
        { "fast-scan", 0, 0, G_OPTION_ARG_DOUBLE, &fast,
          "Seconds for a full scan while converging (3)", "SECS" },
        { "slow-scan", 0, 0, G_OPTION_ARG_DOUBLE, &slow,
          "Seconds for a full scan once converged (120)", "SECS" },
        { "max-cpu", 0, 0, G_OPTION_ARG_INT, &max_cpu,
          "ksmd CPU cap while converging, % of one CPU (70, as the kernel advisor)", "PCT" },
        { "idle-cpu", 0, 0, G_OPTION_ARG_INT, &idle_cpu,
          "ksmd CPU cap once converged, % of one CPU (10)", "PCT" },
        { "sleep-ms", 0, 0, G_OPTION_ARG_INT, &sleep_ms,
          "sleep_millisecs to use (20, the kernel default)", "MS" },
        { "interval", 'i', 0, G_OPTION_ARG_DOUBLE, &interval,
          "Seconds between decisions (1)", "SECS" },
        { "mergeable-every", 0, 0, G_OPTION_ARG_DOUBLE, &mergeable_every,
          "Seconds between reads of the registered memory (smaps; 5)", "SECS" },
        { "duration", 0, 0, G_OPTION_ARG_DOUBLE, &duration,
          "Stop after SECS (default: run until SIGTERM/SIGINT)", "SECS" },
        { "json", 'j', 0, G_OPTION_ARG_NONE, &json, "One JSON line per decision", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) octx = cli_option_context_new(
        global, "tune", "",
        "samepage's ksmd scan policy (root): converge fast, then scan slowly.\n"
        "While there is merging to do, pages_to_scan is set so that a full scan\n"
        "takes --fast-scan seconds (computed from the memory registered with KSM,\n"
        "then corrected from the rate ksmd achieves), never above --max-cpu % of\n"
        "a CPU.  Once a full scan adds under 1% to pages_sharing, a full scan takes\n"
        "--slow-scan seconds, under --idle-cpu %.  Registered memory growing by 5%,\n"
        "a steady scan that still merges, KSM reset by run=2, or SIGUSR1 (a guest\n"
        "started) converge again.  The kernel's scan-time advisor is turned off:\n"
        "it owns pages_to_scan.  Runs in the foreground, one line per change;\n"
        "SIGTERM/SIGINT end it and leave the knobs as they are.", entries);

    if (!cli_parse_options(octx, &argc, &argv)) {
        return CLI_EXIT_USAGE;
    }
    if (argc > 1) {
        return cli_fail(CLI_EXIT_USAGE, "tune takes no arguments, got '%s'", argv[1]);
    }
    if (!(fast > 0 && slow >= fast && interval > 0 && mergeable_every >= 0 && duration >= 0 &&
          max_cpu > 0 && max_cpu <= 100 && idle_cpu > 0 && idle_cpu <= 100 && sleep_ms >= 0)) {
        return cli_fail(CLI_EXIT_USAGE,
                           "need 0 < --fast-scan <= --slow-scan, CPU caps in 1..100, "
                           "--interval > 0");
    }
    params.fast_scan_ms = (guint)(fast * 1000);
    params.slow_scan_ms = (guint)(slow * 1000);
    params.max_cpu = (guint)max_cpu;
    params.idle_cpu = (guint)idle_cpu;
    params.sleep_ms = (guint)sleep_ms;

    g_autoptr(KsmContext) ctx = cli_context_new(global);
    int status;
    if (!cli_require_ksm(ctx, &status)) {
        return status;
    }
    g_autoptr(GError) error = NULL;
    if (!ksm_writable(ctx, &error)) {
        return cli_fail_error(error);
    }
    g_autoptr(KsmSnapshot) first = ksm_snapshot_read(ctx, &error);
    if (!first) {
        return cli_fail_error(error);
    }
    gboolean have_advisor = ksm_snapshot_get_or(first, KSM_FIELD_ADVISOR_MODE, -1) >= 0;

    install(SIGTERM, on_stop);
    install(SIGINT, on_stop);
    install(SIGUSR1, on_kick);
    /* A starter may have blocked these until the handlers are in (the
     * libvirt hook does: a SIGUSR1 before them would end this process). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &set, NULL);

    KsmTuneState state;
    ksm_tune_state_init(&state);
    pid_t ksmd = 0;
    KsmTuneObservation obs;
    if (!ksm_tune_observe(ctx, TRUE, &ksmd, &obs, &error)) {
        return cli_fail_error(error);
    }
    guint64 mergeable = obs.mergeable_pages;
    double mergeable_at = obs.time_s;
    ksm_tune_step(&state, &params, &obs);
    if (!apply_policy(ctx, &state, TRUE, have_advisor, &error)) {
        return cli_fail_error(error);
    }
    say(json, &state, "start", state.reason);
    if (once) {
        return CLI_EXIT_OK;
    }

    double started = obs.time_s;
    gboolean waiting = FALSE;
    while (!got_stop && (duration <= 0 || obs.time_s - started < duration)) {
        g_usleep((gulong)(interval * 1e6));
        if (got_stop) {
            break;
        }
        double now = (double)g_get_monotonic_time() / 1e6;
        gboolean refresh = got_kick || now - mergeable_at >= mergeable_every;
        g_clear_error(&error);
        if (!ksm_tune_observe(ctx, refresh, &ksmd, &obs, &error)) {
            say(json, &state, "error", error->message);
            /* KSM itself gone (a test's fake tree removed): nothing left to tune. */
            if (!ksm_available(ctx, NULL)) {
                say(json, &state, "exit", "KSM is not there any more");
                return CLI_EXIT_NO_KSM;
            }
            continue;
        }
        if (refresh) {
            mergeable = obs.mergeable_pages;
            mergeable_at = obs.time_s;
        } else {
            obs.mergeable_pages = mergeable;
        }
        if (obs.run != 1) {
            if (!waiting) {
                say(json, &state, "paused", "ksmd was stopped by someone else (run is not 1): "
                    "not restarting it");
                waiting = TRUE;
            }
            continue;
        }
        if (waiting) {
            say(json, &state, "resumed", "ksmd runs again");
            waiting = FALSE;
        }
        if (got_kick) {
            got_kick = 0;
            ksm_tune_kick(&state);
        }
        if (ksm_tune_step(&state, &params, &obs)) {
            if (!apply_policy(ctx, &state, FALSE, have_advisor, &error)) {
                say(json, &state, "error", error->message);
                continue;
            }
            say(json, &state, "set", state.reason);
        }
    }
    say(json, &state, "exit", "leaving the knobs as they are");
    return CLI_EXIT_OK;
}
