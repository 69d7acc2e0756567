/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tune-state.c: `samepage tune`'s record of itself (see tune-state.h).
 *
 * Format, one "key=value" a line (unknown keys or bad values: the record is
 * ignored, with a message):
 *     pid=1234
 *     state=running            running | stopped
 *     phase=converge           converge | steady
 *     found.pages_to_scan=100  the knobs the first tune of the chain found
 *     found.sleep_millisecs=20
 *     found.run=0
 *     found.advisor_mode=0     only on kernels with the advisor
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tune-state.h"

#define RECORD_MAX 4096
#define DEFAULT_PATH "/run/samepage/tune.state"

struct CliTuneRecord {
    int fd;
    char *path;
    gboolean have_predecessor;
    pid_t predecessor;
    const char *predecessor_phase;   /* static string */
    CliTuneKnobs found;
};

void cli_tune_knobs_from_snapshot(const KsmSnapshot *snap, CliTuneKnobs *knobs)
{
    memset(knobs, 0, sizeof(*knobs));
    knobs->advisor_mode = ksm_snapshot_get_or(snap, KSM_FIELD_ADVISOR_MODE, -1);
    knobs->have_advisor = knobs->advisor_mode >= 0;
    knobs->pages_to_scan = ksm_snapshot_get_or(snap, KSM_FIELD_PAGES_TO_SCAN, 100);
    knobs->sleep_millisecs = ksm_snapshot_get_or(snap, KSM_FIELD_SLEEP_MILLISECS, 20);
    knobs->run = ksm_snapshot_get_or(snap, KSM_FIELD_RUN, 0);
}

GPtrArray *cli_tune_knobs_assignments(const CliTuneKnobs *knobs)
{
    GPtrArray *assign = g_ptr_array_new_with_free_func(g_free);
    gboolean advisor_owns = knobs->have_advisor && knobs->advisor_mode != KSM_ADVISOR_NONE;

    if (knobs->have_advisor) {
        g_autofree char *mode = ksm_field_format(KSM_FIELD_ADVISOR_MODE, knobs->advisor_mode);
        g_ptr_array_add(assign, g_strdup_printf("advisor_mode=%s", mode));
    }
    if (!advisor_owns) {
        g_ptr_array_add(assign, g_strdup_printf("pages_to_scan=%" G_GINT64_FORMAT,
                                                knobs->pages_to_scan));
    }
    g_ptr_array_add(assign, g_strdup_printf("sleep_millisecs=%" G_GINT64_FORMAT,
                                            knobs->sleep_millisecs));
    if (knobs->run == KSM_RUN_STOP || knobs->run == KSM_RUN_MERGE) {
        g_ptr_array_add(assign, g_strdup_printf("run=%" G_GINT64_FORMAT, knobs->run));
    }
    return assign;
}

char *cli_tune_knobs_describe(const CliTuneKnobs *knobs)
{
    g_autoptr(GPtrArray) assign = cli_tune_knobs_assignments(knobs);
    g_ptr_array_add(assign, NULL);
    return g_strjoinv(" ", (char **)assign->pdata);
}

char *cli_tune_record_default_path(const CliGlobal *global)
{
    /* A fake tree is another "host": its tune must not meet the real one's. */
    if (global->sysfs_root) {
        return g_build_filename(global->sysfs_root, "samepage-tune.state", NULL);
    }
    return g_strdup(DEFAULT_PATH);
}

/* The directory exists (created 0700 if not), is a directory, not a link,
 * and only root or the caller can write it. */
static gboolean check_directory(const char *path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *shown = cli_escape_text(dir);
    struct stat st;

    if (g_mkdir_with_parents(dir, 0700) != 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot create %s: %s", shown, g_strerror(errno));
        return FALSE;
    }
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
        (st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "%s must be a directory of root (or of the caller) that no one else can "
                    "write, not a symbolic link: the tune record is kept there", shown);
        return FALSE;
    }
    return TRUE;
}

static gboolean parse_int(const char *text, gint64 min, gint64 max, gint64 *out)
{
    return g_ascii_string_to_signed(text, 10, min, max, out, NULL);
}

/* Fill the record's predecessor fields from text; FALSE with *why if damaged. */
static gboolean parse_record(CliTuneRecord *r, const char *text, char **why)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    gint64 pid = 0;
    gboolean running = FALSE, have_state = FALSE;
    const char *phase = NULL;
    CliTuneKnobs found = { .advisor_mode = -1 };
    guint have_found = 0;

    for (guint i = 0; lines[i]; i++) {
        const char *line = lines[i];
        const char *eq = strchr(line, '=');
        if (!*line || *line == '#') {
            continue;
        }
        if (!eq) {
            *why = g_strdup_printf("line %u has no '='", i + 1);
            return FALSE;
        }
        g_autofree char *key = g_strndup(line, eq - line);
        const char *value = eq + 1;
        gboolean ok = TRUE;
        if (strcmp(key, "pid") == 0) {
            ok = parse_int(value, 1, G_MAXINT32, &pid);
        } else if (strcmp(key, "state") == 0) {
            ok = strcmp(value, "running") == 0 || strcmp(value, "stopped") == 0;
            running = strcmp(value, "running") == 0;
            have_state = TRUE;
        } else if (strcmp(key, "phase") == 0) {
            phase = strcmp(value, "converge") == 0 ? "converge"
                  : strcmp(value, "steady") == 0 ? "steady" : NULL;
            ok = phase != NULL;
        } else if (strcmp(key, "found.pages_to_scan") == 0) {
            ok = parse_int(value, 0, G_MAXUINT32, &found.pages_to_scan);
            have_found |= 1;
        } else if (strcmp(key, "found.sleep_millisecs") == 0) {
            ok = parse_int(value, 0, G_MAXUINT32, &found.sleep_millisecs);
            have_found |= 2;
        } else if (strcmp(key, "found.run") == 0) {
            ok = parse_int(value, 0, 2, &found.run);
            have_found |= 4;
        } else if (strcmp(key, "found.advisor_mode") == 0) {
            ok = parse_int(value, KSM_ADVISOR_NONE, KSM_ADVISOR_SCAN_TIME, &found.advisor_mode);
            found.have_advisor = ok;
        } else {
            ok = FALSE;
        }
        if (!ok) {
            g_autofree char *shown = cli_escape_text(line);
            *why = g_strdup_printf("line %u (%s) is not what samepage tune writes", i + 1, shown);
            return FALSE;
        }
    }
    if (!have_state || !pid || !phase || have_found != 7) {
        *why = g_strdup("it lacks pid, state, phase or a found knob");
        return FALSE;
    }
    if (running) {
        r->have_predecessor = TRUE;
        r->predecessor = (pid_t)pid;
        r->predecessor_phase = phase;
        r->found = found;
    }
    return TRUE;
}

/* The pid in a record another tune holds, for the message (0: unknown). */
static gint64 holder_pid(int fd)
{
    char buf[RECORD_MAX + 1];
    ssize_t n = pread(fd, buf, RECORD_MAX, 0);
    const char *p;
    gint64 pid = 0;

    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    p = g_str_has_prefix(buf, "pid=") ? buf : strstr(buf, "\npid=");
    if (p) {
        p = strchr(p, '=') + 1;
        g_autofree char *digits = g_strndup(p, strspn(p, "0123456789"));
        parse_int(digits, 1, G_MAXINT32, &pid);
    }
    return pid;
}

CliTuneRecord *cli_tune_record_open(const char *path, char **damaged, GError **error)
{
    g_autofree char *shown = cli_escape_text(path);

    *damaged = NULL;
    if (!check_directory(path, error)) {
        return NULL;
    }
    int fd = cli_open_trusted_file(path, O_RDWR | O_CREAT, error);
    if (fd < 0) {
        return NULL;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        gint64 pid = holder_pid(fd);
        close(fd);
        if (e == EWOULDBLOCK) {
            g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                        "another samepage tune (pid %" G_GINT64_FORMAT ") is running: two "
                        "would fight over the knobs (its record is %s)", pid, shown);
        } else {
            g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "cannot lock %s: %s",
                        shown, g_strerror(e));
        }
        return NULL;
    }
    /* Root only, whatever umask or an older samepage left. */
    fchmod(fd, 0600);

    CliTuneRecord *r = g_new0(CliTuneRecord, 1);
    r->fd = fd;
    r->path = g_strdup(path);
    char buf[RECORD_MAX + 2];
    ssize_t n = pread(fd, buf, RECORD_MAX + 1, 0);
    if (n < 0) {
        *damaged = g_strdup_printf("cannot read %s: %s", shown, g_strerror(errno));
        return r;
    }
    if (n > RECORD_MAX) {
        *damaged = g_strdup_printf("%s is larger than %d bytes", shown, RECORD_MAX);
        return r;
    }
    buf[n] = '\0';
    g_autofree char *why = NULL;
    if (n > 0 && (strlen(buf) != (size_t)n || !parse_record(r, buf, &why))) {
        r->have_predecessor = FALSE;
        *damaged = g_strdup_printf("%s: %s", shown, why ? why : "it holds a NUL byte");
    }
    return r;
}

gboolean cli_tune_record_predecessor(const CliTuneRecord *r, pid_t *pid, const char **phase,
                                     CliTuneKnobs *found)
{
    if (!r->have_predecessor) {
        return FALSE;
    }
    *pid = r->predecessor;
    *phase = r->predecessor_phase;
    *found = r->found;
    return TRUE;
}

gboolean cli_tune_record_write(CliTuneRecord *r, gboolean running, const char *phase,
                               const CliTuneKnobs *found, GError **error)
{
    g_autoptr(GString) text = g_string_new("# samepage tune: what it found and whether it runs "
                                           "(see samepage tune --help)\n");

    g_string_append_printf(text, "pid=%d\nstate=%s\nphase=%s\n", (int)getpid(),
                           running ? "running" : "stopped", phase);
    g_string_append_printf(text, "found.pages_to_scan=%" G_GINT64_FORMAT "\n"
                                 "found.sleep_millisecs=%" G_GINT64_FORMAT "\n"
                                 "found.run=%" G_GINT64_FORMAT "\n",
                           found->pages_to_scan, found->sleep_millisecs, found->run);
    if (found->have_advisor) {
        g_string_append_printf(text, "found.advisor_mode=%" G_GINT64_FORMAT "\n",
                               found->advisor_mode);
    }
    ssize_t n = pwrite(r->fd, text->str, text->len, 0);
    if (n != (ssize_t)text->len || ftruncate(r->fd, (off_t)text->len) != 0) {
        g_autofree char *shown = cli_escape_text(r->path);
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot write the tune record %s: %s", shown, g_strerror(errno));
        return FALSE;
    }
    return TRUE;
}

void cli_tune_record_close(CliTuneRecord *r)
{
    if (!r) {
        return;
    }
    close(r->fd);   /* releases the lock */
    g_free(r->path);
    g_free(r);
}
