/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kt-harness.c: setup, reporting, cleanup and the guardian of one kernel test.
 * See kt-harness.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt-harness.h"

Kt *kt;

typedef struct {
    char *path;
    char *value;
} KtSavedFile;

static void saved_file_free(gpointer p)
{
    KtSavedFile *f = p;
    g_free(f->path);
    g_free(f->value);
    g_free(f);
}

/* ------------------------------------------------------------------ output */

static void vprint_prefixed(const char *prefix, const char *fmt, va_list ap)
{
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    g_auto(GStrv) lines = g_strsplit(msg, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        if (!lines[i][0] && !lines[i + 1]) {
            break;
        }
        printf("%s%s\n", prefix, lines[i]);
    }
    fflush(stdout);
}

void kt_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint_prefixed("# ", fmt, ap);
    va_end(ap);
}

double kt_elapsed(void)
{
    return kt ? (g_get_monotonic_time() - kt->t0_us) / 1e6 : 0.0;
}

gboolean kt_ok(gboolean cond, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    kt->checks++;
    if (!cond) {
        kt->failed++;
    }
    printf("%s %u - %s\n", cond ? "ok" : "not ok", kt->checks, msg);
    fflush(stdout);
    return cond;
}

void kt_skip_check(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    kt->checks++;
    printf("ok %u # SKIP %s\n", kt->checks, msg);
    fflush(stdout);
}

/* ----------------------------------------------------------------- cleanup */

static void restore_files(void)
{
    if (!kt->files) {
        return;
    }
    for (guint i = kt->files->len; i-- > 0;) {
        KtSavedFile *f = g_ptr_array_index(kt->files, i);
        g_autoptr(GError) err = NULL;
        if (!g_file_set_contents(f->path, f->value, -1, &err)) {
            /* sysfs files cannot be replaced by rename: write in place. */
            int fd = open(f->path, O_WRONLY | O_CLOEXEC);
            gboolean ok = fd >= 0 && write(fd, f->value, strlen(f->value)) >= 0;
            if (fd >= 0) {
                close(fd);
            }
            if (!ok) {
                kt_ok(FALSE, "restore %s to '%s': %s", f->path, f->value, g_strerror(errno));
                continue;
            }
        }
        kt_note("restored %s = %s", f->path, f->value);
        kt_guardian_send("unfile %s\n", f->path);
    }
    g_ptr_array_set_size(kt->files, 0);
}

static void kill_children(void)
{
    if (!kt->children) {
        return;
    }
    for (guint i = 0; i < kt->children->len; i++) {
        KtChild *c = g_ptr_array_index(kt->children, i);
        if (!c->reaped) {
            kt_note("cleanup: killing %s (pid %d)", c->label, c->pid);
            kt_child_kill(c);
        }
    }
}

static void remove_cgroups(void)
{
    if (!kt->cgroups) {
        return;
    }
    while (kt->cgroups->len) {
        KtCgroup *cg = g_ptr_array_index(kt->cgroups, kt->cgroups->len - 1);
        g_autoptr(GError) err = NULL;
        g_autofree char *path = g_strdup(kt_cgroup_path(cg));
        if (!kt_cgroup_destroy(cg, 15000, &err)) {
            kt_ok(FALSE, "remove cgroup %s: %s", path, err->message);
            /* kt_cgroup_destroy dropped it from the list either way */
        }
    }
}

static void restore_knobs(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *differs = NULL;

    if (!kt->saved) {
        return;
    }
    if (!ksm_knobs_restore(kt->ctx, kt->saved, &err)) {
        kt_ok(FALSE, "restore KSM knobs: %s", err->message);
        g_clear_error(&err);
    }
    if (!ksm_knob_state_matches(kt->ctx, kt->saved, &differs, &err)) {
        kt_ok(FALSE, "KSM knobs are back as saved: %s",
              differs ? differs : err ? err->message : "?");
    } else {
        kt_note("KSM knobs restored to their saved values");
        if (kt->state_path) {
            unlink(kt->state_path);
        }
    }
}

static void stop_guardian(void)
{
    if (kt->guardian_fd < 0) {
        return;
    }
    kt_guardian_send("done\n");
    close(kt->guardian_fd);
    kt->guardian_fd = -1;
    for (int i = 0; i < 500; i++) {
        int st;
        pid_t r = waitpid(kt->guardian_pid, &st, WNOHANG);
        if (r == kt->guardian_pid || (r < 0 && errno == ECHILD)) {
            kt->guardian_pid = 0;
            return;
        }
        g_usleep(10 * 1000);
    }
    kt_note("guardian %d did not exit; killing it", kt->guardian_pid);
    kill(kt->guardian_pid, SIGKILL);
    waitpid(kt->guardian_pid, NULL, 0);
    kt->guardian_pid = 0;
}

static void cleanup_all(void)
{
    if (!kt || kt->finished) {
        return;
    }
    kt->finished = TRUE;
    kill_children();
    remove_cgroups();
    restore_files();
    /* With run=1 let ksmd drop the slots and rmap_items of this test's exited
     * processes now: restoring run=0 first would leave them allocated (R18). */
    gint64 run = -1;
    if (kt->saved && ksm_field_read(kt->ctx, KSM_FIELD_RUN, &run, NULL) && run == KSM_RUN_MERGE) {
        kt_note("letting ksmd drop the KSM metadata of this test's exited processes");
        kt_wait_scans_or_idle(2, 15000);
    }
    restore_knobs();
    if (kt->dmesg) {
        kt_dmesg_check("at the end");
    }
    stop_guardian();
    if (kt->lock) {
        ksm_host_lock_release(kt->lock);
        kt->lock = NULL;
    }
}

int kt_finish(void)
{
    cleanup_all();
    if (kt->oom_kills && kt->oom_kills->len) {
        g_autofree char *who = NULL;
        GString *s = g_string_new(NULL);
        for (guint i = 0; i < kt->oom_kills->len; i++) {
            g_string_append_printf(s, "%s%s", i ? ", " : "",
                                   (char *)g_ptr_array_index(kt->oom_kills, i));
        }
        who = g_string_free(s, FALSE);
        kt_note("OOM killer victims during the test: %s", who);
    }
    printf("1..%u\n", kt->checks);
    kt_note("%s: %u checks, %u failed, %.1f s", kt->name, kt->checks, kt->failed, kt_elapsed());
    fflush(stdout);
    return kt->failed ? 1 : 0;
}

void kt_skip(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (kt) {
        cleanup_all();
    }
    printf("1..0 # SKIP %s\n", msg);
    fflush(stdout);
    exit(77);
}

void kt_bail(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    printf("Bail out! %s\n", msg);
    fflush(stdout);
    if (kt) {
        kt->failed++;
        cleanup_all();
        kt_note("%s: bailed out after %u checks, %.1f s", kt->name, kt->checks, kt_elapsed());
    }
    exit(1);
}

/* ------------------------------------------------------------ the guardian */

void kt_guardian_send(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    if (!kt || kt->guardian_fd < 0) {
        return;
    }
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    gsize len = strlen(msg), done = 0;
    while (done < len) {
        ssize_t n = write(kt->guardian_fd, msg + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        done += n;
    }
}

static G_NORETURN void guardian_main(int rfd, const char *name, const char *state_text,
                                     const char *state_path)
{
    GString *in = g_string_new(NULL);
    g_autoptr(GPtrArray) cgroups = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GHashTable) files = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    gboolean done = FALSE;
    char buf[512];

    setsid();
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGABRT, SIG_DFL);

    for (;;) {
        ssize_t n = read(rfd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        g_string_append_len(in, buf, n);
        char *nl;
        while ((nl = memchr(in->str, '\n', in->len))) {
            g_autofree char *line = g_strndup(in->str, nl - in->str);
            g_string_erase(in, 0, nl - in->str + 1);
            if (g_str_equal(line, "done")) {
                done = TRUE;
            } else if (g_str_has_prefix(line, "cgroup ")) {
                g_ptr_array_add(cgroups, g_strdup(line + 7));
            } else if (g_str_has_prefix(line, "uncgroup ")) {
                for (guint i = 0; i < cgroups->len; i++) {
                    if (g_str_equal(g_ptr_array_index(cgroups, i), line + 9)) {
                        g_ptr_array_remove_index(cgroups, i);
                        break;
                    }
                }
            } else if (g_str_has_prefix(line, "file ")) {
                char *tab = strchr(line + 5, '\t');
                if (tab) {
                    *tab = '\0';
                    if (!g_hash_table_contains(files, line + 5)) {
                        g_hash_table_insert(files, g_strdup(line + 5), g_strdup(tab + 1));
                    }
                }
            } else if (g_str_has_prefix(line, "unfile ")) {
                g_hash_table_remove(files, line + 7);
            }
        }
    }
    if (done) {
        _exit(0);
    }

    fprintf(stderr, "# guardian[%d]: test %s ended without cleaning up: restoring\n",
            getpid(), name);
    for (guint i = 0; i < cgroups->len; i++) {
        g_autoptr(GError) err = NULL;
        const char *path = g_ptr_array_index(cgroups, i);
        if (kt_cgroup_remove_path(path, 15000, &err)) {
            fprintf(stderr, "# guardian: removed cgroup %s\n", path);
        } else {
            fprintf(stderr, "# guardian: could not remove cgroup %s: %s\n", path, err->message);
        }
    }
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, files);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        int fd = open(k, O_WRONLY | O_CLOEXEC);
        gboolean ok = fd >= 0 && write(fd, v, strlen(v)) >= 0;
        if (fd >= 0) {
            close(fd);
        }
        fprintf(stderr, "# guardian: %s %s = %s\n", ok ? "restored" : "could not restore",
                (char *)k, (char *)v);
    }
    g_autoptr(KsmContext) ctx = ksm_context_new(NULL, NULL);
    g_autoptr(GError) err = NULL;
    g_autoptr(KsmKnobState) state = ksm_knob_state_from_text(state_text, &err);
    if (state && ksm_knobs_restore(ctx, state, &err)) {
        fprintf(stderr, "# guardian: KSM knobs restored\n");
        unlink(state_path);
    } else {
        fprintf(stderr, "# guardian: could not restore KSM knobs: %s\n", err->message);
    }
    _exit(0);
}

static void start_guardian(const char *state_text)
{
    int p[2];

    if (pipe2(p, O_CLOEXEC) < 0) {
        kt_bail("pipe: %s", g_strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        kt_bail("fork: %s", g_strerror(errno));
    }
    if (pid == 0) {
        close(p[1]);
        guardian_main(p[0], kt->name, state_text, kt->state_path);
    }
    close(p[0]);
    kt->guardian_fd = p[1];
    kt->guardian_pid = pid;
}

/* ------------------------------------------------------------------- begin */

static void on_signal(int sig)
{
    char msg[160];
    int n = snprintf(msg, sizeof(msg),
                     "Bail out! caught signal %d (%s): exiting; the guardian restores the "
                     "KSM knobs and removes this test's cgroups\n", sig, strsignal(sig));
    if (n > 0) {
        ssize_t ignored = write(STDOUT_FILENO, msg, (size_t)n);
        (void)ignored;
    }
    _exit(128 + sig);
}

void kt_begin(const char *name, const char *title, const char *seed)
{
    g_autoptr(GError) err = NULL;
    struct sigaction sa = { .sa_handler = on_signal };

    setvbuf(stdout, NULL, _IOLBF, 0);
    kt = g_new0(Kt, 1);
    kt->name = name;
    kt->guardian_fd = -1;
    kt->t0_us = g_get_monotonic_time();
    kt->children = g_ptr_array_new();
    kt->cgroups = g_ptr_array_new();
    kt->files = g_ptr_array_new_with_free_func(saved_file_free);
    kt->oom_kills = g_ptr_array_new_with_free_func(g_free);

    printf("# %s: %s\n", name, title);
    if (seed) {
        kt_note("from: %s", seed);
    }
    g_autofree char *uname = NULL;
    g_file_get_contents("/proc/sys/kernel/osrelease", &uname, NULL, NULL);
    kt_note("kernel %s, pid %d, page size %ld", uname ? g_strstrip(uname) : "?",
            getpid(), sysconf(_SC_PAGESIZE));

    kt->ctx = ksm_context_new(NULL, NULL);
    kt->page_size = ksm_context_page_size(kt->ctx);
    if (!ksm_available(kt->ctx, &err)) {
        kt_skip("%s", err->message);
    }
    if (!ksm_writable(kt->ctx, &err)) {
        kt_skip("%s", err->message);
    }

    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    kt->lock = ksm_host_lock_acquire(NULL, 120000, &err);
    if (!kt->lock) {
        kt_skip("cannot take the samepage host lock within 120 s: %s", err->message);
    }

    kt->saved = ksm_knobs_save(kt->ctx, &err);
    if (!kt->saved) {
        kt_bail("ksm_knobs_save: %s", err->message);
    }
    g_autofree char *text = ksm_knob_state_to_text(kt->saved);
    g_mkdir_with_parents(KT_STATE_DIR, 0700);
    kt->state_path = g_strdup_printf(KT_STATE_DIR "/kernel-%s.knobs", name);
    if (!g_file_set_contents(kt->state_path, text, -1, &err)) {
        kt_bail("cannot write %s: %s", kt->state_path, err->message);
    }
    g_autofree char *oneline = g_strdelimit(g_strdup(text), "\n", ' ');
    kt_note("saved knobs to %s: %s", kt->state_path,
            g_str_has_prefix(oneline, "# samepage: saved KSM knobs ")
                ? oneline + strlen("# samepage: saved KSM knobs ") : oneline);

    start_guardian(text);

    g_autofree char *marker = g_strdup_printf("samepage-kt: %s start pid=%d", name, getpid());
    kt->dmesg = kt_dmesg_open(marker, &err);
    if (!kt->dmesg) {
        kt_note("kernel log not readable (%s): BUG/WARNING lines cannot be checked",
                err->message);
        g_clear_error(&err);
    }

    g_autofree char *others = NULL;
    guint n = kt_other_mergeable(&others);
    if (n) {
        kt_note("other processes with KSM state on this host (%u): %s", n, others);
        kt_note("global counters are compared as deltas with tolerance; "
                "per-process figures carry the assertions");
    } else {
        kt_note("no other process on this host has KSM state");
    }
}

/* --------------------------------------------------------------------- KSM */

void kt_set(const char *first, ...)
{
    va_list ap;
    g_autoptr(GPtrArray) want = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;

    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        const char *eq = strchr(a, '=');
        g_autofree char *name = eq ? g_strndup(a, eq - a) : g_strdup(a);
        KsmField f;
        gint64 v;
        if (!ksm_field_from_name(name, &f) || !ksm_field_read(kt->ctx, f, &v, NULL)) {
            kt_note("this kernel has no knob %s: not set", name);
            continue;
        }
        g_ptr_array_add(want, g_strdup(a));
    }
    va_end(ap);
    if (!want->len) {
        return;
    }
    g_autofree KsmKnobSetting *old = g_new0(KsmKnobSetting, want->len);
    if (!ksm_knobs_set(kt->ctx, (const char *const *)want->pdata, want->len, old, NULL, &err)) {
        kt_bail("setting KSM knobs failed: %s", err->message);
    }
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < want->len; i++) {
        g_autofree char *was = ksm_field_format(old[i].field, old[i].value);
        g_string_append_printf(s, "%s%s (was %s)", i ? ", " : "",
                               (char *)g_ptr_array_index(want, i), was);
    }
    kt_note("set %s", s->str);
    g_string_free(s, TRUE);
}

void kt_fast_scan(void)
{
    gint64 mode = 0;
    if (ksm_field_read(kt->ctx, KSM_FIELD_ADVISOR_MODE, &mode, NULL) && mode != KSM_ADVISOR_NONE) {
        kt_set("advisor_mode=none", NULL);
    }
    kt_set("pages_to_scan=10000", "sleep_millisecs=10", NULL);
}

gint64 kt_read(KsmField field)
{
    g_autoptr(GError) err = NULL;
    gint64 v;
    if (!ksm_field_read(kt->ctx, field, &v, &err)) {
        kt_bail("reading %s: %s", ksm_field_info(field)->name, err->message);
    }
    return v;
}

KsmSnapshot *kt_snap(void)
{
    g_autoptr(GError) err = NULL;
    KsmSnapshot *s = ksm_snapshot_read(kt->ctx, &err);
    if (!s) {
        kt_bail("ksm_snapshot_read: %s", err->message);
    }
    return s;
}

gint64 kt_get(const KsmSnapshot *s, KsmField field)
{
    return ksm_snapshot_get_or(s, field, 0);
}

void kt_print_snap(const char *label, const KsmSnapshot *s)
{
    kt_note("%s: run=%" G_GINT64_FORMAT " pages_shared=%" G_GINT64_FORMAT
            " pages_sharing=%" G_GINT64_FORMAT " pages_unshared=%" G_GINT64_FORMAT
            " pages_volatile=%" G_GINT64_FORMAT " full_scans=%" G_GINT64_FORMAT
            " ksm_zero_pages=%" G_GINT64_FORMAT " general_profit=%" G_GINT64_FORMAT
            " stable_node_chains=%" G_GINT64_FORMAT " stable_node_dups=%" G_GINT64_FORMAT,
            label, kt_get(s, KSM_FIELD_RUN), kt_get(s, KSM_FIELD_PAGES_SHARED),
            kt_get(s, KSM_FIELD_PAGES_SHARING), kt_get(s, KSM_FIELD_PAGES_UNSHARED),
            kt_get(s, KSM_FIELD_PAGES_VOLATILE), kt_get(s, KSM_FIELD_FULL_SCANS),
            kt_get(s, KSM_FIELD_KSM_ZERO_PAGES), kt_get(s, KSM_FIELD_GENERAL_PROFIT),
            kt_get(s, KSM_FIELD_STABLE_NODE_CHAINS), kt_get(s, KSM_FIELD_STABLE_NODE_DUPS));
}

gint64 kt_rmap_items(const KsmSnapshot *s)
{
    return kt_get(s, KSM_FIELD_PAGES_SHARED) + kt_get(s, KSM_FIELD_PAGES_SHARING) +
           kt_get(s, KSM_FIELD_PAGES_UNSHARED) + kt_get(s, KSM_FIELD_PAGES_VOLATILE);
}

gboolean kt_wait_scans(gint64 scans, gint64 timeout_ms)
{
    g_autoptr(GError) err = NULL;
    gint64 before = kt_read(KSM_FIELD_FULL_SCANS);
    gint64 t0 = g_get_monotonic_time();
    gboolean ok = ksm_wait_full_scans(kt->ctx, scans, timeout_ms, &err);
    gint64 after = kt_read(KSM_FIELD_FULL_SCANS);

    if (ok) {
        kt_note("waited for %" G_GINT64_FORMAT " full scans: full_scans %" G_GINT64_FORMAT
                " -> %" G_GINT64_FORMAT " in %.2f s", scans, before, after,
                (g_get_monotonic_time() - t0) / 1e6);
    } else {
        kt_note("waiting for %" G_GINT64_FORMAT " full scans failed after %.2f s: %s",
                scans, (g_get_monotonic_time() - t0) / 1e6, err->message);
    }
    return ok;
}

gboolean kt_wait_scans_or_idle(gint64 scans, gint64 timeout_ms)
{
    gint64 t0 = g_get_monotonic_time();
    gint64 deadline = t0 + timeout_ms * 1000;
    gint64 start = kt_read(KSM_FIELD_FULL_SCANS);
    gint64 scanned = -1, last_progress = t0, last_full = start;
    gboolean have_scanned = ksm_field_read(kt->ctx, KSM_FIELD_PAGES_SCANNED, &scanned, NULL);
    /* Without pages_scanned only full_scans tells progress: be patient. */
    gint64 idle_us = have_scanned ? 600 * 1000 : 3000 * 1000;

    for (;;) {
        gint64 now_full = kt_read(KSM_FIELD_FULL_SCANS);
        gint64 now = g_get_monotonic_time();
        if (now_full < start) {
            start = now_full;   /* run=2 by someone: reset */
        }
        if (now_full - start >= scans) {
            kt_note("waited for %" G_GINT64_FORMAT " full scans: full_scans %" G_GINT64_FORMAT
                    " -> %" G_GINT64_FORMAT " in %.2f s", scans, start, now_full, (now - t0) / 1e6);
            return TRUE;
        }
        gint64 sc = -1;
        if (have_scanned && ksm_field_read(kt->ctx, KSM_FIELD_PAGES_SCANNED, &sc, NULL) &&
            sc != scanned) {
            scanned = sc;
            last_progress = now;
        }
        if (now_full != last_full) {
            last_full = now_full;
            last_progress = now;
        }
        if (now - last_progress >= idle_us) {
            kt_note("ksmd went idle after %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                    " full scans (%.2f s; nothing left to scan)", now_full - start, scans,
                    (now - t0) / 1e6);
            return TRUE;
        }
        if (now >= deadline) {
            kt_note("neither %" G_GINT64_FORMAT " full scans nor idle within %.1f s "
                    "(full_scans %" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT ")", scans,
                    timeout_ms / 1e3, start, now_full);
            return FALSE;
        }
        /* one scan or a short slice, whichever first (libksm does the waiting) */
        gint64 w0 = g_get_monotonic_time();
        if (!ksm_wait_full_scans(kt->ctx, 1, 100, NULL) && g_get_monotonic_time() - w0 < 20000) {
            g_usleep(20 * 1000);    /* run is not 1: the wait returned at once */
        }
    }
}

KsmSnapshot *kt_settle(void)
{
    g_autoptr(KsmSnapshot) s0 = kt_snap();
    kt_print_snap("at start", s0);
    if (kt_get(s0, KSM_FIELD_RUN) != KSM_RUN_MERGE) {
        kt_set("run=1", NULL);
    }
    kt_wait_scans_or_idle(2, 30000);
    KsmSnapshot *s = kt_snap();
    kt_print_snap("settled baseline", s);
    g_autofree char *others = NULL;
    kt->others_at_settle = kt_other_mergeable(&others);
    if (kt->others_at_settle) {
        kt_note("other processes with KSM state at the baseline: %s", others);
    }
    return s;
}

gboolean kt_global_ok(const char *what)
{
    g_autofree char *others = NULL;
    guint now = kt_other_mergeable(&others);
    if (!kt->others_at_settle && !now) {
        return TRUE;
    }
    kt_skip_check("%s: a global counter, asserted only on an isolated host (other processes with "
                  "KSM state: %u at the baseline, %u now%s%s)", what, kt->others_at_settle, now,
                  now ? ": " : "", now ? others : "");
    return FALSE;
}

gboolean kt_proc_ksm(pid_t pid, KtProcKsm *out)
{
    g_auto(KsmProcStat) st;
    g_autoptr(GError) err = NULL;

    ksm_proc_stat_init(&st);
    out->rmap_items = out->merging_pages = out->zero_pages = out->profit = -1;
    out->mergeable = -1;
    if (!ksm_proc_stat_read(kt->ctx, pid, &st, &err)) {
        kt_note("ksm_stat of %d: %s", pid, err->message);
        return FALSE;
    }
#define PV(f) (st.present[f] ? st.value[f] : -1)
    out->rmap_items = PV(KSM_PROC_RMAP_ITEMS);
    out->merging_pages = PV(KSM_PROC_MERGING_PAGES);
    out->zero_pages = PV(KSM_PROC_ZERO_PAGES);
    out->profit = PV(KSM_PROC_PROCESS_PROFIT);
#undef PV
    out->mergeable = st.mergeable;
    return TRUE;
}

gint64 kt_range_ksm_pages(pid_t pid, const void *addr, gsize len)
{
    KsmRangeCount rc;
    g_autoptr(GError) err = NULL;

    if (!ksm_range_count(kt->ctx, pid, (guint64)(uintptr_t)addr, len, &rc, &err)) {
        kt_note("ksm_range_count of %d %p+%zu: %s", pid, addr, len, err->message);
        return -1;
    }
    return (gint64)rc.ksm_pages;
}

void kt_require_exact_counts(void)
{
    gsize len = kt->page_size;
    KsmRangeCount rc;
    g_autoptr(GError) err = NULL;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        kt_bail("mmap of one page: %s", g_strerror(errno));
    }
    /* A written private page, never madvised: no kernel may call it KSM.
     * Debian's 6.12.95 does (KPF_KSM on every anonymous page): libksm's
     * own probe refuses exact counts there, and this catches a kernel its
     * probe would miss. */
    memset(p, 0x5a, len);
    gboolean counted = ksm_range_count(kt->ctx, getpid(), (guint64)(uintptr_t)p, len, &rc,
                                       &err);
    munmap(p, len);
    if (!counted) {
        kt_skip("%s", err->message);   /* libksm says why (no root, or KPF_KSM) */
    }
    if (rc.ksm_pages > 0) {
        kt_skip("this kernel's /proc/kpageflags marks a private page that was never "
                "mergeable as KSM (KPF_KSM on every anonymous page): the exact counts "
                "this scenario checks need a kernel that sets KPF_KSM on KSM pages only");
    }
}

gint64 kt_range_mergeable_bytes(pid_t pid, const void *addr, gsize len)
{
    KsmRangeSmaps rs;
    g_autoptr(GError) err = NULL;

    if (!ksm_range_smaps(kt->ctx, pid, (guint64)(uintptr_t)addr, len, &rs, &err)) {
        kt_note("ksm_range_smaps of %d %p+%zu: %s", pid, addr, len, err->message);
        return -1;
    }
    return (gint64)rs.mergeable_bytes;
}

static gboolean is_ours(pid_t pid)
{
    if (pid == getpid() || (kt->guardian_pid && pid == kt->guardian_pid)) {
        return TRUE;
    }
    for (guint i = 0; kt->children && i < kt->children->len; i++) {
        KtChild *c = g_ptr_array_index(kt->children, i);
        if (c->pid == pid) {
            return TRUE;
        }
    }
    /* Children forked with kt_fork_plain and grandchildren: parent chain. */
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", pid);
    g_autofree char *stat = NULL;
    if (g_file_get_contents(path, &stat, NULL, NULL)) {
        const char *rp = strrchr(stat, ')');
        int ppid = 0;
        char state;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 &&
            (ppid == getpid())) {
            return TRUE;
        }
    }
    return FALSE;
}

guint kt_other_mergeable(char **desc)
{
    g_autoptr(GDir) dir = g_dir_open("/proc", 0, NULL);
    GString *s = g_string_new(NULL);
    guint n = 0;
    const char *name;

    while (dir && (name = g_dir_read_name(dir))) {
        char *end;
        long pid = strtol(name, &end, 10);
        if (*end || pid <= 0 || is_ours(pid)) {
            continue;
        }
        g_auto(KsmProcStat) st;
        ksm_proc_stat_init(&st);
        if (!ksm_proc_stat_read(kt->ctx, pid, &st, NULL)) {
            continue;
        }
        gint64 rmap = st.present[KSM_PROC_RMAP_ITEMS] ? st.value[KSM_PROC_RMAP_ITEMS] : 0;
        gint64 merging = st.present[KSM_PROC_MERGING_PAGES] ? st.value[KSM_PROC_MERGING_PAGES] : 0;
        if (st.mergeable == 1 || st.merge_any == 1 || rmap > 0 || merging > 0) {
            g_autofree char *commpath = g_strdup_printf("/proc/%ld/comm", pid);
            g_autofree char *comm = NULL;
            g_file_get_contents(commpath, &comm, NULL, NULL);
            g_string_append_printf(s, "%s%ld(%s) rmap_items=%" G_GINT64_FORMAT
                                   " merging=%" G_GINT64_FORMAT "%s",
                                   n ? ", " : "", pid, comm ? g_strstrip(comm) : "?",
                                   rmap, merging, st.merge_any == 1 ? " merge_any" : "");
            n++;
        }
    }
    if (desc) {
        *desc = g_string_free(s, FALSE);
    } else {
        g_string_free(s, TRUE);
    }
    return n;
}

/* ------------------------------------------------------------------ polling */

gboolean kt_poll(KtPollFunc fn, gpointer data, gint64 timeout_ms, gint64 interval_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;
    for (;;) {
        if (fn(data)) {
            return TRUE;
        }
        if (g_get_monotonic_time() >= deadline) {
            return FALSE;
        }
        g_usleep(interval_ms * 1000);
    }
}

/* --------------------------------------------------------------- children */

KtChild *kt_child_spawn(const char *label, KtChildFunc fn, gpointer data)
{
    int cmd[2], rep[2];
    pid_t parent = getpid();

    if (pipe2(cmd, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
        kt_bail("pipe: %s", g_strerror(errno));
    }
    KtChild *c = g_new0(KtChild, 1);
    c->label = g_strdup(label);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        kt_bail("fork %s: %s", label, g_strerror(errno));
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(98);
        }
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGQUIT, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        if (kt->guardian_fd >= 0) {
            close(kt->guardian_fd);
            kt->guardian_fd = -1;
        }
        close(cmd[1]);
        close(rep[0]);
        /* name it after the first word of its label: readable OOM reports */
        char comm[16];
        g_snprintf(comm, sizeof(comm), "kt-%s", label);
        comm[strcspn(comm, " (")] = '\0';
        prctl(PR_SET_NAME, comm);
        c->pid = getpid();
        c->cmd_fd = cmd[0];
        c->rep_fd = rep[1];
        int rc = fn(c, data);
        fflush(NULL);
        _exit(rc);
    }
    close(cmd[0]);
    close(rep[1]);
    c->pid = pid;
    c->cmd_fd = cmd[1];
    c->rep_fd = rep[0];
    g_ptr_array_add(kt->children, c);
    return c;
}

gboolean kt_child_send(KtChild *c, char cmd)
{
    for (;;) {
        ssize_t n = write(c->cmd_fd, &cmd, 1);
        if (n == 1) {
            return TRUE;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        kt_note("cannot send '%c' to %s (pid %d): %s", cmd, c->label, c->pid,
                n < 0 ? g_strerror(errno) : "short write");
        return FALSE;
    }
}

gboolean kt_child_read(KtChild *c, void *buf, gsize len, gint64 timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;
    gsize done = 0;

    while (done < len) {
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        if (left <= 0) {
            kt_note("%s (pid %d) sent nothing for %" G_GINT64_FORMAT " ms (state %c)",
                    c->label, c->pid, timeout_ms, kt_pid_state(c->pid));
            return FALSE;
        }
        struct pollfd pfd = { .fd = c->rep_fd, .events = POLLIN };
        int r = poll(&pfd, 1, (int)MIN(left, 1000));
        if (r < 0 && errno != EINTR) {
            return FALSE;
        }
        if (r <= 0) {
            continue;
        }
        ssize_t n = read(c->rep_fd, (char *)buf + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            kt_note("%s (pid %d) closed its pipe (it exited or was killed)", c->label, c->pid);
            return FALSE;
        }
        done += n;
    }
    return TRUE;
}

gboolean kt_child_expect(KtChild *c, char want, gint64 timeout_ms)
{
    char got;
    if (!kt_child_read(c, &got, 1, timeout_ms)) {
        return FALSE;
    }
    if (got != want) {
        kt_note("%s (pid %d) answered '%c', expected '%c'", c->label, c->pid, got, want);
        return FALSE;
    }
    return TRUE;
}

char kt_child_recv(KtChild *self)
{
    char cmd;
    for (;;) {
        ssize_t n = read(self->cmd_fd, &cmd, 1);
        if (n == 1) {
            return cmd;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        _exit(0);
    }
}

void kt_child_write(KtChild *self, const void *buf, gsize len)
{
    gsize done = 0;
    while (done < len) {
        ssize_t n = write(self->rep_fd, (const char *)buf + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            _exit(97);
        }
        done += n;
    }
}

void kt_child_reply(KtChild *self, char msg)
{
    kt_child_write(self, &msg, 1);
}

char kt_pid_state(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", pid);
    g_autofree char *stat = NULL;
    if (!g_file_get_contents(path, &stat, NULL, NULL)) {
        return '?';
    }
    const char *rp = strrchr(stat, ')');
    return rp && rp[1] == ' ' ? rp[2] : '?';
}

gboolean kt_pid_alive(pid_t pid)
{
    char s = kt_pid_state(pid);
    return s != '?' && s != 'Z' && s != 'X';
}

void kt_print_stack(pid_t pid, const char *label)
{
    g_autofree char *p1 = g_strdup_printf("/proc/%d/wchan", pid);
    g_autofree char *wchan = NULL;
    g_file_get_contents(p1, &wchan, NULL, NULL);
    kt_note("%s (pid %d) state %c wchan %s", label, pid, kt_pid_state(pid),
            wchan ? wchan : "?");
    g_autoptr(GDir) dir = NULL;
    g_autofree char *taskdir = g_strdup_printf("/proc/%d/task", pid);
    dir = g_dir_open(taskdir, 0, NULL);
    const char *tid;
    guint shown = 0;
    while (dir && (tid = g_dir_read_name(dir)) && shown < 8) {
        g_autofree char *sp = g_strdup_printf("%s/%s/stack", taskdir, tid);
        g_autofree char *stack = NULL;
        if (g_file_get_contents(sp, &stack, NULL, NULL) && *stack) {
            kt_note("kernel stack of %s thread %s:\n%s", label, tid, stack);
            shown++;
        }
    }
}

char *kt_status_text(int status)
{
    if (WIFEXITED(status)) {
        return g_strdup_printf("exited %d", WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status)) {
        return g_strdup_printf("killed by SIG%s", sigabbrev_np(WTERMSIG(status))
                               ? sigabbrev_np(WTERMSIG(status)) : "?");
    }
    return g_strdup_printf("status 0x%x", status);
}

gboolean kt_child_reap(KtChild *c, gint64 timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;

    if (c->reaped) {
        return TRUE;
    }
    for (;;) {
        int st;
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        if (r == c->pid) {
            c->reaped = TRUE;
            c->status = st;
            c->reaped_us = g_get_monotonic_time();
            return TRUE;
        }
        if (r < 0 && errno == ECHILD) {
            c->reaped = TRUE;
            c->status = -1;
            c->reaped_us = g_get_monotonic_time();
            return TRUE;
        }
        if (g_get_monotonic_time() >= deadline) {
            kt_note("%s (pid %d) not reaped after %" G_GINT64_FORMAT " ms", c->label, c->pid,
                    timeout_ms);
            kt_print_stack(c->pid, c->label);
            return FALSE;
        }
        g_usleep(5 * 1000);
    }
}

void kt_child_kill(KtChild *c)
{
    if (c->reaped) {
        return;
    }
    kill(c->pid, SIGKILL);
    if (!kt_child_reap(c, 20000)) {
        kt_ok(FALSE, "%s (pid %d) is gone within 20 s of SIGKILL", c->label, c->pid);
    }
}

void kt_child_free(KtChild *c)
{
    if (!c) {
        return;
    }
    g_ptr_array_remove(kt->children, c);
    if (!c->reaped) {
        kt_child_kill(c);
    }
    close(c->cmd_fd);
    close(c->rep_fd);
    g_free(c->label);
    g_free(c);
}

/* ------------------------------------------------------------------ memory */

void *kt_map_anon(gsize len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "mmap %zu: %s\n", len, g_strerror(errno));
        return NULL;
    }
    return p;
}

void kt_fill_same(void *addr, gsize len, guint8 byte)
{
    memset(addr, byte, len);
}

void kt_fill_unique(void *addr, gsize len, guint64 seed)
{
    gsize ps = (gsize)sysconf(_SC_PAGESIZE);
    for (gsize off = 0; off < len; off += ps) {
        guint64 *w = (guint64 *)((char *)addr + off);
        guint64 x = seed * 0x9E3779B97F4A7C15ull + off / ps + 1;
        for (gsize i = 0; i < ps / sizeof(guint64); i += 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w[i] = x;
        }
    }
}

/* ------------------------------------------------------------ host files */

gboolean kt_file_set(const char *path, const char *value)
{
    g_autofree char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        kt_note("%s is not readable: not changed", path);
        return FALSE;
    }
    g_strstrip(text);
    /* "always [madvise] never" -> "madvise" */
    char *lb = strchr(text, '['), *rb = lb ? strchr(lb, ']') : NULL;
    g_autofree char *orig = lb && rb ? g_strndup(lb + 1, rb - lb - 1) : g_strdup(text);

    gboolean known = FALSE;
    for (guint i = 0; i < kt->files->len; i++) {
        KtSavedFile *f = g_ptr_array_index(kt->files, i);
        known |= g_str_equal(f->path, path);
    }
    if (!known) {
        KtSavedFile *f = g_new0(KtSavedFile, 1);
        f->path = g_strdup(path);
        f->value = g_strdup(orig);
        g_ptr_array_add(kt->files, f);
        kt_guardian_send("file %s\t%s\n", path, orig);
    }
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    gboolean ok = fd >= 0 && write(fd, value, strlen(value)) >= 0;
    int err = errno;
    if (fd >= 0) {
        close(fd);
    }
    if (!ok) {
        kt_note("cannot set %s = %s: %s", path, value, g_strerror(err));
        return FALSE;
    }
    kt_note("set %s = %s (was %s)", path, value, orig);
    return TRUE;
}

/* ------------------------------------------------------------------ slabs */

gint64 kt_slab_active(const char *cache)
{
    g_autofree char *text = NULL;
    /* SLUB counts every object of a per-CPU slab as active: flush them back
     * to the node lists first (kmem_cache_shrink), then the count is exact. */
    g_autofree char *shrink = g_strdup_printf("/sys/kernel/slab/%s/shrink", cache);
    int fd = open(shrink, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t ignored = write(fd, "1", 1);
        (void)ignored;
        close(fd);
    }
    if (!g_file_get_contents("/proc/slabinfo", &text, NULL, NULL)) {
        return -1;
    }
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    gsize clen = strlen(cache);
    for (guint i = 0; lines[i]; i++) {
        if (strncmp(lines[i], cache, clen) == 0 && lines[i][clen] == ' ') {
            long long active = -1;
            if (sscanf(lines[i] + clen, " %lld", &active) == 1) {
                return active;
            }
        }
    }
    return -1;
}
