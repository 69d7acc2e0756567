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
 * SIGINT end it, leaving the knobs as they are, or, with --restore-on-exit,
 * putting back the knobs it found.
 *
 * A tune killed outright (SIGKILL, the OOM killer) cannot lower
 * pages_to_scan from its converge rate.  So it keeps a record
 * (tune-state.h): the knobs it found and that it runs, under a lock.  The
 * next tune (systemd's Restart=, the hook's next event) finds the record
 * of a dead predecessor, says so in one line, converges again from the
 * knobs as they are, and keeps the predecessor's found knobs as the ones
 * to put back.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-glib/json-glib.h>
#include <ksm/ksm-qemu-procs.h>
#include <ksm/ksm-tune.h>
#include "cli.h"
#include "tune-state.h"

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

/* One line per event on stdout; JSON lines are json-glib's (bench/ parses
 * them), so any message, translated or not, stays valid JSON. */
static void say(gboolean json, const KsmTuneState *s, const char *event, const char *text)
{
    static gboolean write_failed;

    if (json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autofree char *reason = cli_utf8_valid(text);

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "time");
        /* Milliseconds are all the precision a decision has. */
        json_builder_add_double_value(b, (double)(g_get_monotonic_time() / 1000) / 1000.0);
        json_builder_set_member_name(b, "event");
        json_builder_add_string_value(b, event);
        json_builder_set_member_name(b, "phase");
        json_builder_add_string_value(b, ksm_tune_phase_name(s->phase));
        json_builder_set_member_name(b, "pages_to_scan");
        json_builder_add_int_value(b, (gint64)s->pages_to_scan);
        json_builder_set_member_name(b, "sleep_millisecs");
        json_builder_add_int_value(b, s->sleep_ms);
        json_builder_set_member_name(b, "reason");
        json_builder_add_string_value(b, reason);
        json_builder_end_object(b);
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        g_autofree char *line = json_generator_to_data(gen, NULL);
        printf("%s\n", line);
    } else {
        g_autoptr(GDateTime) now = g_date_time_new_now_local();
        g_autofree char *stamp = g_date_time_format(now, "%H:%M:%S");
        g_autofree char *shown = cli_escape_text(text);
        printf("%s %s: pages_to_scan=%" G_GUINT64_FORMAT " sleep_millisecs=%u: %s\n", stamp,
               event, s->pages_to_scan, s->sleep_ms, shown);
    }
    /* The knobs matter more than the log: keep tuning, say it once, and
     * main makes the exit status 1. */
    if ((fflush(stdout) != 0 || ferror(stdout)) && !write_failed) {
        write_failed = TRUE;
        fprintf(stderr, "samepage: tune: cannot write to standard output (%s); tuning goes "
                        "on without a log\n", g_strerror(errno));
    }
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

/* A clean end: put the found knobs back if asked, mark the record stopped. */
static int finish(const KsmContext *ctx, CliTuneRecord *record, const KsmTuneState *state,
                  const CliTuneKnobs *found, gboolean json, gboolean restore, int status)
{
    g_autoptr(GError) error = NULL;

    if (restore) {
        g_autoptr(GPtrArray) assign = cli_tune_knobs_assignments(found);
        g_autofree char *knobs = cli_tune_knobs_describe(found);
        if (apply(ctx, assign, &error)) {
            g_autofree char *msg = g_strdup_printf("put back the knobs found at start: %s", knobs);
            say(json, state, "exit", msg);
        } else {
            g_autofree char *msg = g_strdup_printf("could not put back %s: %s", knobs,
                                                   error->message);
            say(json, state, "error", msg);
            /* The record keeps saying running: the next tune takes over. */
            return CLI_EXIT_FAILURE;
        }
    } else {
        say(json, state, "exit", "leaving the knobs as they are");
    }
    g_clear_error(&error);
    if (!cli_tune_record_write(record, FALSE, ksm_tune_phase_name(state->phase), found, &error)) {
        say(json, state, "error", error->message);
    }
    return status;
}

int cli_cmd_tune(CliGlobal *global, int argc, char **argv)
{
    KsmTuneParams params;
    ksm_tune_params_init(&params);
    double interval = 1.0, fast = params.fast_scan_ms / 1000.0, slow = params.slow_scan_ms / 1000.0;
    double idle = -1;   /* --idle-scan's default: 1200 s, or --slow-scan if longer */
    double duration = 0, mergeable_every = 5.0;
    gint max_cpu = (gint)params.max_cpu, idle_cpu = (gint)params.idle_cpu;
    gint sleep_ms = (gint)params.sleep_ms;
    gboolean once = FALSE, json = FALSE, restore_on_exit = FALSE;
    g_autofree char *state_file = NULL;
    const GOptionEntry entries[] = {
        { "once", 0, 0, G_OPTION_ARG_NONE, &once,
          "Set the converge rate for the memory registered now, start ksmd, and exit", NULL },
        { "fast-scan", 0, 0, G_OPTION_ARG_DOUBLE, &fast,
          "Seconds for a full scan while converging (3)", "SECS" },
        { "slow-scan", 0, 0, G_OPTION_ARG_DOUBLE, &slow,
          "Seconds for a full scan once converged (300)", "SECS" },
        { "idle-scan", 0, 0, G_OPTION_ARG_DOUBLE, &idle,
          "Seconds for a full scan after converged scans that found nothing: the "
          "longest (1200)", "SECS" },
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
        { "restore-on-exit", 0, 0, G_OPTION_ARG_NONE, &restore_on_exit,
          "On SIGTERM/SIGINT or --duration's end, put back the knobs found at start "
          "(for a service's stop)", NULL },
        { "state-file", 0, 0, G_OPTION_ARG_FILENAME, &state_file,
          "The tune's record (default /run/samepage/tune.state)", "FILE" },
        { NULL },
    };
    g_autoptr(GOptionContext) octx = cli_option_context_new(
        global, "tune", "",
        "samepage's ksmd scan policy (root): converge fast, then scan slowly.\n"
        "While there is merging to do, pages_to_scan is set so that a full scan\n"
        "takes --fast-scan seconds (computed from the memory registered with KSM,\n"
        "then corrected from the rate ksmd achieves), never above --max-cpu % of\n"
        "a CPU.  Once a full scan adds under 1% to pages_sharing, a full scan takes\n"
        "--slow-scan seconds, under --idle-cpu %, and each further scan that adds\n"
        "under 1% doubles that, up to --idle-scan seconds; below the kernel\n"
        "default's rate ksmd sleeps longer between batches of 100 pages (up to\n"
        "1 s).  Registered memory growing by 5%, a steady scan that still merges,\n"
        "KSM reset by run=2, or SIGUSR1 (a guest started) converge again at once.\n"
        "The kernel's scan-time advisor is turned off: it owns pages_to_scan;\n"
        "smart_scan is left as it is.  Runs in the foreground, one line per\n"
        "change;\n"
        "SIGTERM/SIGINT end it and leave the knobs as they are (with\n"
        "--restore-on-exit: put back pages_to_scan, sleep_millisecs, run and\n"
        "advisor_mode as the tune found them).  Only one tune runs at a time; it\n"
        "keeps a record (--state-file) of the knobs it found, so a tune killed\n"
        "while converging is taken over by the next one started, which converges\n"
        "again from the knobs as they are and keeps the first tune's found knobs\n"
        "to put back.  A running ksmtuned is reported: the two would fight.", entries);

    if (!cli_parse_options(octx, &argc, &argv)) {
        return CLI_EXIT_USAGE;
    }
    if (argc > 1) {
        return cli_fail(CLI_EXIT_USAGE, "tune takes no arguments, got '%s'", argv[1]);
    }
    if (idle < 0) {
        idle = MAX(params.idle_scan_ms / 1000.0, slow);
    }
    if (!(fast > 0 && slow >= fast && idle >= slow && idle <= 86400 && interval > 0 &&
          mergeable_every >= 0 && duration >= 0 &&
          max_cpu > 0 && max_cpu <= 100 && idle_cpu > 0 && idle_cpu <= 100 && sleep_ms >= 0)) {
        return cli_fail(CLI_EXIT_USAGE,
                           "need 0 < --fast-scan <= --slow-scan <= --idle-scan <= 86400, "
                           "CPU caps in 1..100, "
                           "--interval > 0");
    }
    params.fast_scan_ms = (guint)(fast * 1000);
    params.slow_scan_ms = (guint)(slow * 1000);
    params.idle_scan_ms = (guint)(idle * 1000);
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

    /* One tune at a time, and the record of the one before. */
    if (!state_file) {
        state_file = cli_tune_record_default_path(global);
    }
    g_autofree char *damaged = NULL;
    g_autoptr(CliTuneRecord) record = cli_tune_record_open(state_file, &damaged, &error);
    if (!record) {
        return cli_fail(CLI_EXIT_FAILURE, "%s", error->message);
    }
    CliTuneKnobs found;
    cli_tune_knobs_from_snapshot(first, &found);
    pid_t dead = 0;
    const char *dead_phase = NULL;
    gboolean takeover = !once && cli_tune_record_predecessor(record, &dead, &dead_phase, &found);
    if (once) {
        /* A one-shot sets the converge rate and leaves: no record of it. */
        g_clear_pointer(&record, cli_tune_record_close);
        cli_tune_knobs_from_snapshot(first, &found);
    }

    KsmTuneState state;
    ksm_tune_state_init(&state);
    if (damaged) {
        g_autofree char *msg = g_strdup_printf("ignoring the tune record: %s; the knobs as they "
                                               "are now count as found", damaged);
        say(json, &state, "warning", msg);
    }
    pid_t ksmtuned = ksm_find_ksmtuned(ctx);
    if (ksmtuned > 0) {
        g_autofree char *msg = g_strdup_printf(
            "ksmtuned is running (pid %d): it also sets pages_to_scan and sleep_millisecs, so "
            "the two will fight; stop it (systemctl disable --now ksmtuned) to use samepage tune",
            (int)ksmtuned);
        say(json, &state, "warning", msg);
    }

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

    pid_t ksmd = 0;
    KsmTuneObservation obs;
    if (!ksm_tune_observe(ctx, TRUE, &ksmd, &obs, &error)) {
        return cli_fail_error(error);
    }
    guint64 mergeable = obs.mergeable_pages;
    double mergeable_at = obs.time_s;
    ksm_tune_step(&state, &params, &obs);
    /* Recorded before the first write: a kill right after it is taken over. */
    if (record && !cli_tune_record_write(record, TRUE, ksm_tune_phase_name(state.phase), &found,
                                         &error)) {
        return cli_fail(CLI_EXIT_FAILURE, "%s", error->message);
    }
    if (!apply_policy(ctx, &state, TRUE, have_advisor, &error)) {
        /* All or nothing: the knobs are as found; a predecessor's record stays. */
        if (record && !takeover) {
            cli_tune_record_write(record, FALSE, ksm_tune_phase_name(state.phase), &found, NULL);
        }
        return cli_fail_error(error);
    }
    if (takeover) {
        g_autofree char *knobs = cli_tune_knobs_describe(&found);
        g_autofree char *msg = g_strdup_printf(
            "taking over from samepage tune pid %d, which ended without stopping (killed?) in "
            "its %s phase: converging again from the knobs as they are; the knobs it found "
            "stay the ones to put back (%s)", (int)dead, dead_phase, knobs);
        say(json, &state, "takeover", msg);
    }
    say(json, &state, "start", state.reason);
    if (once) {
        return CLI_EXIT_OK;
    }
    KsmTunePhase recorded_phase = state.phase;

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
                cli_tune_record_write(record, FALSE, ksm_tune_phase_name(state.phase), &found,
                                      NULL);
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
        if (state.phase != recorded_phase) {
            recorded_phase = state.phase;
            if (!cli_tune_record_write(record, TRUE, ksm_tune_phase_name(state.phase), &found,
                                       &error)) {
                say(json, &state, "error", error->message);
            }
        }
    }
    return finish(ctx, record, &state, &found, json, restore_on_exit, CLI_EXIT_OK);
}
