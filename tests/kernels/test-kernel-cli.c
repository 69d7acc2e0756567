/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-kernel-cli.c: every samepage subcommand against the RUNNING kernel,
 * whatever its version (the kernel test guest runs it on Debian's 6.1 and
 * 6.12, scripts/test on the host's own).
 *
 * The oracle is the kernel's own directory: a file missing from
 * /sys/kernel/mm/ksm must be missing from every output (never printed as 0,
 * never an error), a file present must be there.  The scan policy must reach
 * its steady phase with the counters this kernel has (no pages_scanned before
 * 6.6), and the safe unmerge must bring pages_sharing back to 0.
 *
 * Changes knobs: run it under the shared lock.  Every knob is saved with
 * `samepage save` first and put back with `samepage restore` (checked), also
 * when a check fails.  Waits for ksmd stretch by SAMEPAGE_TIMEOUT_SCALE (TCG).
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ksm/ksm-advise.h"

#define KSM_DIR "/sys/kernel/mm/ksm"
#define CHILD_MIB 32

static const char *cli;
static char *saved_knobs;   /* samepage save's file, restored at exit */
static guint scale = 1;

/* Files newer kernels added; each is checked absent-or-present. */
static const char *const newer_files[] = {
    "pages_scanned", "pages_skipped", "general_profit", "ksm_zero_pages", "smart_scan",
    "advisor_mode", "advisor_max_cpu", "advisor_target_scan_time",
    "advisor_min_pages_to_scan", "advisor_max_pages_to_scan", "use_zero_pages",
    "stable_node_chains", "stable_node_dups",
};

static gboolean ksm_has(const char *name)
{
    g_autofree char *path = g_build_filename(KSM_DIR, name, NULL);
    return g_file_test(path, G_FILE_TEST_EXISTS);
}

static gint64 ksm_read(const char *name)
{
    g_autofree char *path = g_build_filename(KSM_DIR, name, NULL);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    return g_ascii_strtoll(text, NULL, 10);
}

/* Run samepage ARGS...; returns the exit status, stdout and stderr. */
static int samepage(char **out, char **err, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) error = NULL;
    va_list ap;
    int wait_status = 0;
    const char *a;

    g_ptr_array_add(argv, (char *)cli);
    va_start(ap, err);
    while ((a = va_arg(ap, const char *))) {
        g_ptr_array_add(argv, (char *)a);
    }
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               out, err, &wait_status, &error));
    g_assert_no_error(error);
    g_assert_true(WIFEXITED(wait_status));
    return WEXITSTATUS(wait_status);
}

static JsonObject *parse_object(JsonParser *parser, const char *text)
{
    g_autoptr(GError) error = NULL;
    if (!json_parser_load_from_data(parser, text, -1, &error)) {
        g_error("not JSON (%s): %s", error->message, text);
    }
    JsonNode *root = json_parser_get_root(parser);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(root));
    return json_node_get_object(root);
}

/* ---- stats --json: exactly the files this kernel has ---- */
static void test_stats_json(void)
{
    g_autofree char *out = NULL, *err = NULL;
    g_assert_cmpint(samepage(&out, &err, "stats", "--json", NULL), ==, 0);
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *root = parse_object(parser, out);
    JsonObject *knobs = json_object_get_object_member(root, "knobs");
    JsonObject *counters = json_object_get_object_member(root, "counters");
    JsonObject *derived = json_object_get_object_member(root, "derived");
    g_assert_nonnull(knobs);
    g_assert_nonnull(counters);
    g_assert_nonnull(derived);

    for (guint s = 0; s < 2; s++) {
        JsonObject *o = s ? counters : knobs;
        g_autoptr(GList) names = json_object_get_members(o);
        for (GList *l = names; l; l = l->next) {
            if (!ksm_has(l->data)) {
                g_error("stats --json reports %s, which this kernel does not have",
                        (char *)l->data);
            }
        }
    }
    for (guint i = 0; i < G_N_ELEMENTS(newer_files); i++) {
        const char *f = newer_files[i];
        gboolean listed = json_object_has_member(knobs, f) || json_object_has_member(counters, f);
        g_test_message("%s: %s", f, ksm_has(f) ? "present" : "absent");
        g_assert_cmpint(listed, ==, ksm_has(f));
    }
    /* Profit: the kernel's own figure where it has one, computed otherwise. */
    g_assert_true(json_object_has_member(derived, "profit_bytes"));
    g_assert_cmpint(json_object_get_boolean_member(derived, "profit_from_kernel"), ==,
                    ksm_has("general_profit"));
}

/* ---- stats --prometheus: no metric for a file the kernel lacks ---- */
static void test_stats_prometheus(void)
{
    g_autofree char *out = NULL, *err = NULL;
    g_assert_cmpint(samepage(&out, &err, "stats", "--prometheus", NULL), ==, 0);
    for (guint i = 0; i < G_N_ELEMENTS(newer_files); i++) {
        const char *f = newer_files[i];
        const char *bare = g_str_has_prefix(f, "ksm_") ? f + 4 : f;
        g_autofree char *metric = g_strdup_printf("\nksm_%s", bare);
        g_autofree char *text = g_strconcat("\n", out, NULL);
        if (!ksm_has(f) && strstr(text, metric)) {
            g_error("stats --prometheus has %s, which this kernel does not have", metric + 1);
        }
    }
    g_assert_nonnull(strstr(out, "\nksm_pages_sharing "));
}

/* ---- status and the table: absent said as absent ---- */
static void test_status(void)
{
    g_autofree char *out = NULL, *err = NULL, *tout = NULL, *terr = NULL;
    g_assert_cmpint(samepage(&out, &err, "status", NULL), ==, 0);
    g_assert_cmpstr(err, ==, "");
    if (!ksm_has("advisor_mode")) {
        g_assert_nonnull(strstr(out, "Advisor:        not in this kernel"));
    }
    g_assert_cmpint(samepage(&tout, &terr, "stats", NULL), ==, 0);
    g_assert_cmpstr(terr, ==, "");
}

/* ---- save, set, restore --check, restore; a knob the kernel lacks ---- */
static void test_set_restore(void)
{
    g_autofree char *out = NULL, *err = NULL;
    g_autofree char *file = g_build_filename(g_get_tmp_dir(), "samepage-kcli-set.knobs", NULL);
    gint64 before = ksm_read("sleep_millisecs");
    gint64 want = before == 37 ? 38 : 37;
    g_autofree char *set = g_strdup_printf("sleep_millisecs=%" G_GINT64_FORMAT, want);

    g_assert_cmpint(samepage(&out, &err, "save", "-f", file, NULL), ==, 0);
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(samepage(&out, &err, "set", set, NULL), ==, 0);
    g_assert_cmpint(ksm_read("sleep_millisecs"), ==, want);
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(samepage(&out, &err, "restore", "--check", "-f", file, NULL), ==, 1);
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(samepage(&out, &err, "restore", "-f", file, NULL), ==, 0);
    g_assert_cmpint(ksm_read("sleep_millisecs"), ==, before);
    g_unlink(file);

    /* Setting a knob this kernel does not have: refused, named, nothing written. */
    for (guint i = 0; i < G_N_ELEMENTS(newer_files); i++) {
        const char *f = newer_files[i];
        if (ksm_has(f) || !g_str_equal(f, "smart_scan")) {
            continue;
        }
        g_clear_pointer(&out, g_free);
        g_clear_pointer(&err, g_free);
        int st = samepage(&out, &err, "set", "smart_scan=1", NULL);
        g_printerr("set smart_scan=1 on a kernel without it: exit %d: %s\n", st, err);
        g_assert_cmpint(st, !=, 0);
        g_assert_nonnull(strstr(err, "smart_scan"));
        g_assert_false(ksm_has("smart_scan"));
    }
}

/* ---- a child with CHILD_MIB of mergeable memory, two distinct pages ---- */
static GPid child_pid;

static void child_start(void)
{
    int ready[2];
    g_assert_cmpint(pipe(ready), ==, 0);
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        /* Never outlive the test (an aborted check). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        size_t len = (size_t)CHILD_MIB << 20;
        long ps = sysconf(_SC_PAGESIZE);
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            _exit(1);
        }
        for (size_t off = 0; off < len; off += (size_t)ps) {
            memset(p + off, (off / (size_t)ps) % 2 ? 0x5a : 0xa5, (size_t)ps);
        }
        if (!ksm_advise_mergeable(p, len, NULL)) {
            _exit(2);
        }
        if (write(ready[1], "r", 1) != 1) {
            _exit(3);
        }
        for (;;) {
            pause();
        }
    }
    close(ready[1]);
    char c = 0;
    g_assert_cmpint(read(ready[0], &c, 1), ==, 1);
    close(ready[0]);
    child_pid = pid;
}

static void child_stop(void)
{
    if (child_pid > 0) {
        kill(child_pid, SIGKILL);
        waitpid(child_pid, NULL, 0);
        child_pid = 0;
    }
}

static gboolean wait_sharing(gboolean want_some, guint seconds)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)seconds * scale * G_USEC_PER_SEC;
    while (g_get_monotonic_time() < deadline) {
        gint64 sharing = ksm_read("pages_sharing");
        if (want_some ? sharing > 0 : sharing == 0) {
            return TRUE;
        }
        g_usleep(200 * 1000);
    }
    return FALSE;
}

/* ---- tune converges, estimate reads the child, watch runs, unmerge --all ---- */
static void test_tune_estimate_unmerge(void)
{
    g_autofree char *out = NULL, *err = NULL;
    /* The tune's record wants a directory no one else can write (not /tmp). */
    g_autofree char *state_dir = g_dir_make_tmp("samepage-kcli-XXXXXX", NULL);
    g_assert_nonnull(state_dir);
    g_autofree char *state = g_build_filename(state_dir, "tune.state", NULL);
    g_autofree char *state_arg = g_strdup_printf("--state-file=%s", state);
    g_autofree char *duration = g_strdup_printf("--duration=%u", 60 * scale);
    const char *argv[] = { cli, "tune", "--json", "--fast-scan=1", "--interval=1",
                           "--mergeable-every=1", "--restore-on-exit", duration, state_arg, NULL };
    g_autoptr(GError) error = NULL;
    GPid tune;
    int out_fd, err_fd;

    child_start();
    /* samepage's scan policy on this kernel's counters: fast scans of the
     * child's memory until a full scan adds nothing, then the steady phase;
     * stopped (SIGTERM, knobs put back) as soon as it says so. */
    g_assert_true(g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                           NULL, NULL, &tune, NULL, &out_fd, &err_fd, &error));
    g_assert_no_error(error);
    GString *text = g_string_new(NULL);
    gboolean steady = FALSE, eof = FALSE;
    gint64 deadline = g_get_monotonic_time() + 40 * (gint64)scale * G_USEC_PER_SEC;
    while (!steady && !eof && g_get_monotonic_time() < deadline) {
        struct pollfd pfd = { .fd = out_fd, .events = POLLIN };
        char buf[1024];
        if (poll(&pfd, 1, 200) != 1) {
            continue;
        }
        ssize_t n = read(out_fd, buf, sizeof(buf));
        if (n <= 0) {
            eof = TRUE;
            break;
        }
        g_string_append_len(text, buf, n);
        char *nl;
        while ((nl = strchr(text->str, '\n'))) {
            g_autofree char *line = g_strndup(text->str, (gsize)(nl - text->str));
            g_string_erase(text, 0, nl - text->str + 1);
            g_autoptr(JsonParser) parser = json_parser_new();
            JsonObject *o = parse_object(parser, line);
            g_printerr("tune: %s\n", line);
            steady = steady || g_str_equal(json_object_get_string_member(o, "phase"), "steady");
        }
    }
    kill(tune, SIGTERM);
    int ws = 0;
    waitpid(tune, &ws, 0);
    g_spawn_close_pid(tune);
    g_autofree char *err_text = NULL;
    {
        GString *e = g_string_new(NULL);
        char buf[1024];
        ssize_t n;
        while ((n = read(err_fd, buf, sizeof(buf))) > 0) {
            g_string_append_len(e, buf, n);
        }
        err_text = g_string_free(e, FALSE);
    }
    close(out_fd);
    close(err_fd);
    g_string_free(text, TRUE);
    g_unlink(state);
    g_rmdir(state_dir);
    g_printerr("tune: pages_scanned %s; wait status %d; stderr: %s\n",
               ksm_has("pages_scanned") ? "present" : "absent", ws, err_text);
    if (!steady) {
        g_autofree char *sout = NULL, *serr = NULL;
        samepage(&sout, &serr, "stats", "--json", NULL);
        g_printerr("stats after the tune: %s\n", sout);
        g_error("samepage tune did not reach the steady phase within %u s", 40 * scale);
    }
    g_assert_true(WIFEXITED(ws));
    g_assert_cmpint(WEXITSTATUS(ws), ==, 0);
    g_assert_cmpint(ksm_read("pages_sharing"), >, 0);

    /* estimate: the census of the child's memory. */
    g_autofree char *pid = g_strdup_printf("%d", (int)child_pid);
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(samepage(&out, &err, "estimate", "--json", "--pid", pid, NULL), ==, 0);
    {
        g_autoptr(JsonParser) parser = json_parser_new();
        parse_object(parser, out);
    }

    /* watch: two refreshes. */
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(samepage(&out, &err, "watch", "-n", "2", "-i", "1", NULL), ==, 0);

    /* unmerge --all: the kernel's unmerge behind the headroom check. */
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    g_autofree char *deadline_arg = g_strdup_printf("--deadline=%u", 60 * scale);
    int st = samepage(&out, &err, "unmerge", "--all", "--json", "--reserve=64", deadline_arg, NULL);
    g_printerr("unmerge --all: exit %d: %s %s\n", st, out, err);
    g_assert_cmpint(st, ==, 0);
    g_assert_true(wait_sharing(FALSE, 10));
    child_stop();
}

static void restore_knobs(void)
{
    if (!saved_knobs) {
        return;
    }
    child_stop();
    g_autofree char *out = NULL, *err = NULL;
    int st = samepage(&out, &err, "restore", "-f", saved_knobs, NULL);
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    int check = samepage(&out, &err, "restore", "--check", "-f", saved_knobs, NULL);
    if (st != 0 || check != 0) {
        g_printerr("test-kernel-cli: the knobs were not restored from %s: %s\n", saved_knobs, err);
        _exit(1);
    }
    g_unlink(saved_knobs);
    g_clear_pointer(&saved_knobs, g_free);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    cli = g_getenv("SAMEPAGE_CLI");
    const char *s = g_getenv("SAMEPAGE_TIMEOUT_SCALE");
    if (s && atoi(s) > 0) {
        scale = (guint)atoi(s);
    }
    if (!cli) {
        g_printerr("SAMEPAGE_CLI is not set\n");
        return 1;
    }
    if (geteuid() != 0 || !g_file_test(KSM_DIR "/run", G_FILE_TEST_EXISTS)) {
        printf("1..0 # SKIP %s\n", geteuid() ? "not root" : "this kernel has no KSM");
        return 77;
    }
    /* Save every knob before anything changes one. */
    saved_knobs = g_build_filename(g_get_tmp_dir(), "samepage-kernel-cli.knobs", NULL);
    g_autofree char *out = NULL, *err = NULL;
    if (samepage(&out, &err, "save", "-f", saved_knobs, NULL) != 0) {
        g_printerr("samepage save failed: %s\n", err);
        return 1;
    }
    /* The checks run in a child: an assertion aborts it, and the knobs are
     * still put back here. */
    fflush(stdout);
    pid_t runner = fork();
    if (runner < 0) {
        restore_knobs();
        return 1;
    }
    if (runner > 0) {
        int ws = 0;
        while (waitpid(runner, &ws, 0) < 0) {
        }
        restore_knobs();
        return WIFEXITED(ws) ? WEXITSTATUS(ws) : 1;
    }
    g_clear_pointer(&saved_knobs, g_free);   /* the parent restores */

    g_test_add_func("/kernelcli/stats-json", test_stats_json);
    g_test_add_func("/kernelcli/stats-prometheus", test_stats_prometheus);
    g_test_add_func("/kernelcli/status", test_status);
    g_test_add_func("/kernelcli/set-restore", test_set_restore);
    g_test_add_func("/kernelcli/tune-estimate-watch-unmerge", test_tune_estimate_unmerge);
    int rc = g_test_run();
    child_stop();
    fflush(stdout);
    _exit(rc);
}
