/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kt-suite-state: the kernel suite's first and last test.
 *
 *   kt-suite-state save     (meson test 'kernel-save', highest priority)
 *     writes every KSM knob to /run/samepage/kernel-suite.knobs
 *     and lists other processes with KSM state (they share the counters)
 *   kt-suite-state restore  (meson test 'kernel-restore', lowest priority)
 *     restores the knobs from that file whatever happened in between,
 *     verifies them, removes leftover samepage-test-* cgroups, and says
 *     whether per-test state files were left behind (a test that died).
 *
 *   kt-suite-state others   just that list (scripts/kernel-selftests)
 *
 * Skips (77) where KSM is absent or not writable, like every kernel test.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kt-harness.h"

#define SUITE_STATE KT_STATE_DIR "/kernel-suite.knobs"

static const char *state_path(void)
{
    const char *env = g_getenv("SAMEPAGE_KT_SUITE_STATE");
    return env && *env ? env : SUITE_STATE;
}

static void oneline(const char *label, const char *text)
{
    g_autofree char *s = g_strdelimit(g_strdup(text), "\n", ' ');
    printf("# %s: %s\n", label, s);
}

/* Processes with KSM state (registered areas, merge-any, rmap_items): they
 * share the global counters with the suite. */
static void print_others(KsmContext *ctx)
{
    g_autoptr(GDir) dir = g_dir_open("/proc", 0, NULL);
    GString *s = g_string_new(NULL);
    guint n = 0;
    const char *name;

    while (dir && (name = g_dir_read_name(dir))) {
        char *end;
        long pid = strtol(name, &end, 10);
        if (*end || pid <= 0 || pid == getpid()) {
            continue;
        }
        g_auto(KsmProcStat) st;
        ksm_proc_stat_init(&st);
        if (!ksm_proc_stat_read(ctx, pid, &st, NULL)) {
            continue;
        }
        gint64 rmap = st.present[KSM_PROC_RMAP_ITEMS] ? st.value[KSM_PROC_RMAP_ITEMS] : 0;
        gint64 merging = st.present[KSM_PROC_MERGING_PAGES] ? st.value[KSM_PROC_MERGING_PAGES] : 0;
        if (st.mergeable == 1 || st.merge_any == 1 || rmap > 0 || merging > 0) {
            g_autofree char *cp = g_strdup_printf("/proc/%ld/comm", pid);
            g_autofree char *comm = NULL;
            g_file_get_contents(cp, &comm, NULL, NULL);
            g_string_append_printf(s, "%s%ld(%s) rmap_items=%" G_GINT64_FORMAT " merging=%"
                                   G_GINT64_FORMAT, n++ ? ", " : "", pid,
                                   comm ? g_strstrip(comm) : "?", rmap, merging);
        }
    }
    if (n) {
        printf("# other processes with KSM state (%u): %s\n", n, s->str);
    } else {
        printf("# no other process has KSM state\n");
    }
    g_string_free(s, TRUE);
}

static int do_save(KsmContext *ctx)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *old = NULL;

    if (g_file_get_contents(state_path(), &old, NULL, NULL)) {
        oneline("a previous suite state was left (the last run did not reach kernel-restore)", old);
    }
    g_autoptr(KsmKnobState) st = ksm_knobs_save(ctx, &err);
    if (!st) {
        printf("not ok 1 - save KSM knobs: %s\n", err->message);
        return 1;
    }
    g_autofree char *text = ksm_knob_state_to_text(st);
    g_mkdir_with_parents(KT_STATE_DIR, 0700);
    if (!g_file_set_contents(state_path(), text, -1, &err)) {
        printf("not ok 1 - write %s: %s\n", state_path(), err->message);
        return 1;
    }
    oneline("saved", text);
    print_others(ctx);
    char *reason = NULL;
    if (!kt_cgroup_supported(&reason)) {
        printf("# note: %s: the OOM tests (R14, R15, R19, R20) will skip\n", reason);
    } else {
        printf("# memory cgroups: %s\n", reason);
    }
    g_free(reason);
    printf("ok 1 - KSM knobs saved to %s\n1..1\n", state_path());
    return 0;
}

static int do_restore(KsmContext *ctx)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *text = NULL;
    int failed = 0, n = 0;

    /* Leftover cgroups first: their processes may hold KSM pages. */
    g_autoptr(GPtrArray) left = kt_cgroup_leftovers();
    for (guint i = 0; i < left->len; i++) {
        const char *path = g_ptr_array_index(left, i);
        g_autoptr(GError) e = NULL;
        g_autofree char *base = g_path_get_basename(path);
        int owner = 0;
        if (!g_str_has_prefix(base, "samepage-test-") ||
            sscanf(base, "samepage-test-%d-", &owner) != 1) {
            printf("# leaving %s alone (not made by this suite)\n", path);
            continue;
        }
        /* the name carries the pid of the test that made it: a live owner
         * is still using it (another run, or a test run by hand) */
        if (owner > 0 && kill(owner, 0) == 0) {
            printf("# leaving %s alone: the test that made it (pid %d) is still running\n",
                   path, owner);
            continue;
        }
        gboolean ok = kt_cgroup_remove_path(path, 15000, &e);
        printf("%s %d - leftover cgroup %s removed%s%s\n", ok ? "ok" : "not ok", ++n, path,
               ok ? "" : ": ", ok ? "" : e->message);
        failed += !ok;
    }

    if (!g_file_get_contents(state_path(), &text, NULL, &err)) {
        printf("1..0 # SKIP no suite state to restore (%s): kernel-save did not run\n",
               err->message);
        return 77;
    }
    g_autoptr(KsmKnobState) st = ksm_knob_state_from_text(text, &err);
    if (!st) {
        n++;
        printf("not ok %d - parse %s: %s\n1..%d\n", n, state_path(), err->message, n);
        return 1;
    }
    g_autoptr(KsmKnobState) now = ksm_knobs_save(ctx, NULL);
    if (now) {
        g_autofree char *nt = ksm_knob_state_to_text(now);
        oneline("knobs now", nt);
    }
    oneline("restoring", text);
    gboolean ok = ksm_knobs_restore(ctx, st, &err);
    printf("%s %d - KSM knobs restored from %s%s%s\n", ok ? "ok" : "not ok", ++n, state_path(),
           ok ? "" : ": ", ok ? "" : err->message);
    failed += !ok;
    g_clear_error(&err);

    g_autofree char *differs = NULL;
    ok = ksm_knob_state_matches(ctx, st, &differs, &err);
    printf("%s %d - every knob has its value from before the suite%s%s\n", ok ? "ok" : "not ok",
           ++n, ok ? "" : ": ", ok ? "" : differs ? differs : err ? err->message : "?");
    failed += !ok;

    /* Per-test state files are removed by tests that restored their knobs. */
    g_autoptr(GDir) dir = g_dir_open(KT_STATE_DIR, 0, NULL);
    const char *name;
    while (dir && (name = g_dir_read_name(dir))) {
        if (g_str_has_prefix(name, "kernel-") && g_str_has_suffix(name, ".knobs") &&
            !g_str_equal(name, "kernel-suite.knobs")) {
            g_autofree char *p = g_build_filename(KT_STATE_DIR, name, NULL);
            printf("# %s was left by a test that did not finish; removed (its guardian or "
                   "this restore put the knobs back)\n", p);
            unlink(p);
        }
    }
    if (!failed) {
        unlink(state_path());
    }
    printf("1..%d\n", n);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GError) err = NULL;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2 || (strcmp(argv[1], "save") && strcmp(argv[1], "restore") &&
                      strcmp(argv[1], "others"))) {
        fprintf(stderr, "usage: %s save|restore|others\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "others") == 0) {
        print_others(ctx);
        return 0;
    }
    if (!ksm_available(ctx, &err) || !ksm_writable(ctx, &err)) {
        printf("1..0 # SKIP %s\n", err->message);
        return 77;
    }
    /* The lock keeps other samepage writers out while knobs are put back. */
    g_autoptr(KsmHostLock) lock = ksm_host_lock_acquire(NULL, 60000, &err);
    if (!lock) {
        printf("# host lock: %s (going on without it)\n", err->message);
        g_clear_error(&err);
    }
    return strcmp(argv[1], "save") == 0 ? do_save(ctx) : do_restore(ctx);
}
