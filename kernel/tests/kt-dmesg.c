/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kt-dmesg.c: the kernel log since the test started.
 *
 * /dev/kmsg is opened non-blocking and positioned at its end when the test
 * begins (SEEK_END), so only records logged afterwards are read; a marker
 * line is also written for whoever reads dmesg later.  Each read() returns
 * one record "prio,seq,usec,flags;text\n" (+ continuation lines); EPIPE means
 * records were overwritten before we read them (we go on from the next).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kt-harness.h"

struct KtDmesg {
    int fd;
    guint lost;
};

KtDmesg *kt_dmesg_open(const char *marker, GError **error)
{
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "/dev/kmsg: %s", g_strerror(errno));
        return NULL;
    }
    if (lseek(fd, 0, SEEK_END) < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "seek /dev/kmsg: %s", g_strerror(errno));
        close(fd);
        return NULL;
    }
    if (marker) {
        int w = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
        if (w >= 0) {
            g_autofree char *line = g_strdup_printf("%s\n", marker);
            ssize_t ignored = write(w, line, strlen(line));
            (void)ignored;
            close(w);
        }
    }
    KtDmesg *d = g_new0(KtDmesg, 1);
    d->fd = fd;
    return d;
}

void kt_dmesg_free(KtDmesg *d)
{
    if (d) {
        close(d->fd);
        g_free(d);
    }
}

GPtrArray *kt_dmesg_read_new(KtDmesg *d)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    char buf[8192];

    for (;;) {
        ssize_t n = read(d->fd, buf, sizeof(buf) - 1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EPIPE) {
                d->lost++;
                continue;
            }
            break;      /* EAGAIN: nothing more */
        }
        if (n == 0) {
            break;
        }
        buf[n] = '\0';
        char *semi = strchr(buf, ';');
        if (!semi) {
            continue;
        }
        char *nl = strchr(semi + 1, '\n');
        if (nl) {
            *nl = '\0';
        }
        /* prefix: prio,seq,usec,flags */
        unsigned long long usec = 0;
        char *comma1 = strchr(buf, ',');
        char *comma2 = comma1 ? strchr(comma1 + 1, ',') : NULL;
        if (comma2) {
            usec = strtoull(comma2 + 1, NULL, 10);
        }
        g_ptr_array_add(out, g_strdup_printf("[%5llu.%06llu] %s", usec / 1000000,
                                             usec % 1000000, semi + 1));
    }
    return out;
}

static const char *const bad_patterns[] = {
    "BUG:", "WARNING:", "hung_task", "blocked for more than", "unable to reap",
    "Oops", "general protection fault", "kernel BUG", NULL,
};

const char *kt_dmesg_bad_pattern(const char *line)
{
    for (guint i = 0; bad_patterns[i]; i++) {
        if (strstr(line, bad_patterns[i])) {
            return bad_patterns[i];
        }
    }
    return NULL;
}

gboolean kt_dmesg_oom_victim(const char *line, pid_t *pid, char **comm)
{
    const char *p = strstr(line, "Killed process ");
    if (p) {
        char *end;
        long v = strtol(p + strlen("Killed process "), &end, 10);
        if (v > 0) {
            *pid = (pid_t)v;
            if (comm) {
                const char *o = strchr(end, '('), *c = o ? strchr(o, ')') : NULL;
                *comm = o && c ? g_strndup(o + 1, c - o - 1) : g_strdup("?");
            }
            return TRUE;
        }
    }
    return FALSE;
}

static gboolean interesting(const char *line)
{
    return strstr(line, "oom") || strstr(line, "Killed process") ||
           strstr(line, "Memory cgroup") || strstr(line, "out of memory") ||
           strstr(line, "ksm") || strstr(line, "reap");
}

guint kt_dmesg_check(const char *when)
{
    guint bad = 0, shown = 0;

    if (!kt->dmesg) {
        return 0;
    }
    g_autoptr(GPtrArray) lines = kt_dmesg_read_new(kt->dmesg);
    if (kt->dmesg->lost) {
        kt_note("kernel log: %u records were overwritten before they could be read",
                kt->dmesg->lost);
        kt->dmesg->lost = 0;
    }
    for (guint i = 0; i < lines->len; i++) {
        const char *line = g_ptr_array_index(lines, i);
        const char *pat = kt_dmesg_bad_pattern(line);
        pid_t pid;
        char *comm = NULL;

        if (strstr(line, "samepage-kt:")) {
            continue;
        }
        if (pat && kt->reap_failure_is_finding && strcmp(pat, "unable to reap") == 0) {
            kt->reap_findings++;
            kt_note("FINDING (recorded, not a failure here): %s", line);
            continue;
        }
        if (pat) {
            bad++;
            kt_ok(FALSE, "kernel log %s has no '%s': %s", when, pat, line);
            /* the report that follows (call trace, locks) */
            for (guint j = i + 1; j < lines->len && j < i + 40; j++) {
                kt_note("  kernel: %s", (char *)g_ptr_array_index(lines, j));
            }
            continue;
        }
        if (kt_dmesg_oom_victim(line, &pid, &comm)) {
            g_ptr_array_add(kt->oom_kills, g_strdup_printf("%d(%s)", pid, comm));
            g_free(comm);
        }
        if (interesting(line) && shown < 60) {
            kt_note("kernel: %s", line);
            shown++;
        }
    }
    if (!bad) {
        kt_note("kernel log %s: %u new lines, none with BUG:/WARNING:/hung_task/"
                "blocked for more than/unable to reap", when, lines->len);
    }
    return bad;
}

GArray *kt_oom_victims(void)
{
    GArray *pids = g_array_new(FALSE, FALSE, sizeof(pid_t));
    for (guint i = 0; i < kt->oom_kills->len; i++) {
        pid_t pid = (pid_t)strtol(g_ptr_array_index(kt->oom_kills, i), NULL, 10);
        g_array_append_val(pids, pid);
    }
    return pids;
}
