/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log.c: one line per decision, to syslog and stderr (libvirt keeps a failing
 * hook's stderr in its error message and log), and optionally to a file for
 * hosts without a syslog daemon.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "hook.h"

G_DEFINE_QUARK(samepage-hook-error, hook_error)

static struct {
    gboolean syslog;
    gboolean to_stderr;
    HookLogLevel level;
    char *file;
    char *prefix;   /* "domain 'NAME' (UUID): " */
} logger = { FALSE, TRUE, HOOK_LOG_INFO, NULL, NULL };

void hook_log_open(gboolean use_syslog)
{
    logger.syslog = use_syslog;
    if (use_syslog) {
        /* LOG_PID: the detached child's lines are told apart from the hook's. */
        openlog(HOOK_NAME, LOG_PID, LOG_DAEMON);
    }
}

void hook_log_set_level(HookLogLevel level)
{
    logger.level = level;
}

void hook_log_set_file(const char *path)
{
    g_free(logger.file);
    logger.file = path && *path ? g_strdup(path) : NULL;
}

void hook_log_set_stderr(gboolean on)
{
    logger.to_stderr = on;
}

void hook_log_set_domain(const char *name, const char *uuid)
{
    g_autofree char *qname = name ? hook_quote(name) : NULL;

    g_free(logger.prefix);
    if (qname && uuid) {
        logger.prefix = g_strdup_printf("domain '%s' (%s): ", qname, uuid);
    } else if (qname) {
        logger.prefix = g_strdup_printf("domain '%s': ", qname);
    } else {
        logger.prefix = NULL;
    }
}

gboolean hook_log_level_parse(const char *text, HookLogLevel *level)
{
    static const char *const names[] = { "debug", "info", "warning", "error" };

    for (guint i = 0; i < G_N_ELEMENTS(names); i++) {
        if (g_ascii_strcasecmp(text, names[i]) == 0) {
            *level = (HookLogLevel)i;
            return TRUE;
        }
    }
    return FALSE;
}

char *hook_quote(const char *text)
{
    GString *out = g_string_new(NULL);
    const char *p = text;
    guint chars = 0;

    while (*p && chars < 200) {
        gunichar c = g_utf8_get_char_validated(p, -1);
        if (c == (gunichar)-1 || c == (gunichar)-2) {
            /* Not UTF-8: show the byte, go on with the next one. */
            g_string_append_printf(out, "\\x%02x", (guchar)*p);
            p++;
        } else {
            if (c == '\\' || c == '\'' || c == '"') {
                g_string_append_c(out, '\\');
                g_string_append_unichar(out, c);
            } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) ||
                       c == 0x2028 || c == 0x2029) {
                g_string_append_printf(out, "\\u%04x", c);
            } else {
                g_string_append_unichar(out, c);
            }
            p = g_utf8_next_char(p);
        }
        chars++;
    }
    if (*p) {
        g_string_append(out, "...");
    }
    return g_string_free(out, FALSE);
}

static int syslog_priority(HookLogLevel level)
{
    switch (level) {
    case HOOK_LOG_DEBUG:
        return LOG_DEBUG;
    case HOOK_LOG_INFO:
        return LOG_INFO;
    case HOOK_LOG_WARNING:
        return LOG_WARNING;
    default:
        return LOG_ERR;
    }
}

static void append_to_file(const char *line)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_local();
    g_autofree char *stamp = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S.%f%z");
    g_autofree char *text = g_strdup_printf("%s %s[%d]: %s\n", stamp, HOOK_NAME,
                                            (int)getpid(), line);
    /* O_APPEND: concurrent hooks and the detached child write whole lines. */
    int fd = open(logger.file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

    if (fd >= 0) {
        (void)!write(fd, text, strlen(text));
        close(fd);
    }
}

void hook_log(HookLogLevel level, const char *format, ...)
{
    va_list args;

    if (level < logger.level) {
        return;
    }
    va_start(args, format);
    g_autofree char *message = g_strdup_vprintf(format, args);
    va_end(args);
    g_autofree char *line = g_strconcat(logger.prefix ? logger.prefix : "", message, NULL);

    if (logger.syslog) {
        syslog(syslog_priority(level), "%s", line);
    }
    if (logger.to_stderr) {
        fprintf(stderr, "%s: %s\n", HOOK_NAME, line);
    }
    if (logger.file) {
        append_to_file(line);
    }
}
