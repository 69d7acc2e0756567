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

char *hook_log_sanitize(const char *line)
{
    GString *out = g_string_new(NULL);
    const char *p = line;

    while (*p) {
        gunichar c = g_utf8_get_char_validated(p, -1);
        if (c == (gunichar)-1 || c == (gunichar)-2) {
            g_string_append_printf(out, "\\x%02x", (guchar)*p);
            p++;
            continue;
        }
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == 0x2028 || c == 0x2029) {
            g_string_append_printf(out, "\\u%04x", c);
        } else {
            g_string_append_unichar(out, c);
        }
        p = g_utf8_next_char(p);
    }
    return g_string_free(out, FALSE);
}

static void append_to_file(const char *line)
{
    static gboolean reported;
    g_autoptr(GDateTime) now = g_date_time_new_now_local();
    g_autofree char *stamp = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S.%f%z");
    g_autofree char *text = g_strdup_printf("%s %s[%d]: %s\n", stamp, HOOK_NAME,
                                            (int)getpid(), line);
    g_autoptr(GError) error = NULL;
    /* O_APPEND: concurrent hooks and the detached child write whole lines.
     * Opened per line (the detached child closes every descriptor), each time
     * with the checks of a file root creates: trusted directory, no symlink,
     * no FIFO, root's, one link. */
    int fd = hook_open_append(logger.file, &error);

    if (fd < 0) {
        if (!reported) {
            g_autofree char *msg = hook_log_sanitize(error->message);
            reported = TRUE;
            if (logger.syslog) {
                syslog(LOG_ERR, "log_file not written: %s", msg);
            }
            if (logger.to_stderr) {
                fprintf(stderr, "%s: log_file not written: %s\n", HOOK_NAME, msg);
            }
        }
        return;
    }
    (void)!write(fd, text, strlen(text));
    close(fd);
}

static void log_line(HookLogLevel level, gboolean to_stderr, const char *format, va_list args)
{
    if (level < logger.level) {
        return;
    }
    g_autofree char *message = g_strdup_vprintf(format, args);
    g_autofree char *raw = g_strconcat(logger.prefix ? logger.prefix : "", message, NULL);
    g_autofree char *line = hook_log_sanitize(raw);

    if (logger.syslog) {
        syslog(syslog_priority(level), "%s", line);
    }
    if (to_stderr && logger.to_stderr) {
        fprintf(stderr, "%s: %s\n", HOOK_NAME, line);
    }
    if (logger.file) {
        append_to_file(line);
    }
}

void hook_log(HookLogLevel level, const char *format, ...)
{
    va_list args;

    va_start(args, format);
    log_line(level, TRUE, format, args);
    va_end(args);
}

void hook_log_host(HookLogLevel level, const char *format, ...)
{
    va_list args;

    va_start(args, format);
    log_line(level, FALSE, format, args);
    va_end(args);
}
