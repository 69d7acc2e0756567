/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qmp-unix.c: the QEMU Machine Protocol over a unix socket.
 *
 * QMP is one JSON object per line: the server greets ({"QMP": ...}), the
 * client sends qmp_capabilities, then commands; each command gets one
 * {"return": ...} or {"error": ...}, and {"event": ...} lines may come in
 * between at any time (they are skipped here: job progress is polled).
 *
 * Every reply has a hard deadline, counted from the moment it is awaited
 * and cut by the caller's overall deadline: a QEMU whose monitor already
 * has a client (libvirt's) accepts the connection and says nothing, and a
 * hostile peer could send a byte a second forever.  A line is at most
 * CLI_QMP_MAX_MESSAGE bytes; an endless one is refused, not buffered.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qmp.h"

#define READ_CHUNK 4096

typedef struct {
    CliQmp base;
    int fd;
    char *shown_path;     /* escaped for messages */
    guint timeout_s;
    GByteArray *pending;  /* bytes received after the last complete line */
} QmpUnix;

/* Milliseconds until the reply deadline (0 when it has passed). */
static int remaining_ms(gint64 deadline)
{
    gint64 left = deadline - g_get_monotonic_time();
    return left <= 0 ? 0 : (int)MIN((left + 999) / 1000, G_MAXINT);
}

static gint64 reply_deadline(QmpUnix *q)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)q->timeout_s * G_USEC_PER_SEC;
    return q->base.deadline > 0 ? MIN(deadline, q->base.deadline) : deadline;
}

/* One line (without its CR LF) into *line; FALSE on timeout, EOF, error or
 * a line too long. */
static gboolean read_line(QmpUnix *q, gint64 deadline, gboolean want_greeting,
                          GByteArray **line, GError **error)
{
    guint scanned = 0;

    for (;;) {
        /* (An empty GByteArray's data is NULL: no pointer arithmetic on it.) */
        guint8 *nl = q->pending->len > scanned
            ? memchr(q->pending->data + scanned, '\n', q->pending->len - scanned) : NULL;
        if (nl) {
            guint n = nl - q->pending->data;
            *line = g_byte_array_sized_new(n);
            g_byte_array_append(*line, q->pending->data, n);
            g_byte_array_remove_range(q->pending, 0, n + 1);
            if ((*line)->len > 0 && (*line)->data[(*line)->len - 1] == '\r') {
                g_byte_array_set_size(*line, (*line)->len - 1);
            }
            return TRUE;
        }
        scanned = q->pending->len;
        if (q->pending->len > CLI_QMP_MAX_MESSAGE) {
            g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_MALFORMED,
                        "the peer on %s sent a line longer than %d bytes: not QMP",
                        q->shown_path, CLI_QMP_MAX_MESSAGE);
            return FALSE;
        }
        struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
        int ms = remaining_ms(deadline);
        int r = ms > 0 ? poll(&pfd, 1, ms) : 0;
        if (r < 0 && errno == EINTR) {
            continue;   /* ^C during a read: the deadline still holds */
        }
        if (r == 0) {
            g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                        "QEMU did not answer on %s in time%s", q->shown_path,
                        want_greeting ? " (the monitor may have a client already, e.g. "
                                        "libvirt: use --domain for libvirt guests)" : "");
            return FALSE;
        }
        guint8 chunk[READ_CHUNK];
        ssize_t got = r < 0 ? -1 : read(q->fd, chunk, sizeof(chunk));
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (got <= 0) {
            g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                        "QMP connection %s closed: %s", q->shown_path,
                        got == 0 ? "end of stream" : g_strerror(errno));
            return FALSE;
        }
        g_byte_array_append(q->pending, chunk, (guint)got);
    }
}

/* The next non-event object (events are dropped), all before deadline. */
static JsonObject *read_message(QmpUnix *q, gboolean want_greeting, GError **error)
{
    gint64 deadline = reply_deadline(q);

    for (;;) {
        g_autoptr(GByteArray) line = NULL;
        if (!read_line(q, deadline, want_greeting, &line, error)) {
            return NULL;
        }
        if (line->len == 0) {
            continue;
        }
        g_autoptr(JsonObject) obj =
            cli_qmp_parse_message((const char *)line->data, line->len, error);
        if (!obj) {
            g_prefix_error(error, "%s: ", q->shown_path);
            return NULL;
        }
        if (json_object_has_member(obj, "event")) {
            continue;
        }
        if (want_greeting && !cli_qmp_get_object(obj, "QMP")) {
            g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_MALFORMED,
                        "%s is not a QMP socket (no greeting)", q->shown_path);
            return NULL;
        }
        return g_steal_pointer(&obj);
    }
}

static gboolean write_all(QmpUnix *q, const char *data, gsize len, GError **error)
{
    gint64 deadline = reply_deadline(q);

    while (len > 0) {
        struct pollfd pfd = { .fd = q->fd, .events = POLLOUT };
        int ms = remaining_ms(deadline);
        int r = ms > 0 ? poll(&pfd, 1, ms) : 0;
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r == 0) {
            g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                        "QEMU did not read from %s in time", q->shown_path);
            return FALSE;
        }
        ssize_t sent = r < 0 ? -1 : send(q->fd, data, len, MSG_NOSIGNAL);
        if (sent < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (sent < 0) {
            g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED, "cannot write to %s: %s",
                        q->shown_path, g_strerror(errno));
            return FALSE;
        }
        data += sent;
        len -= (gsize)sent;
    }
    return TRUE;
}

static JsonNode *unix_execute(CliQmp *qmp, const char *command, JsonObject *arguments,
                              GError **error)
{
    QmpUnix *q = (QmpUnix *)qmp;
    g_autofree char *text = cli_qmp_command_text(command, arguments);
    g_autofree char *line = g_strconcat(text, "\n", NULL);

    if (!write_all(q, line, strlen(line), error)) {
        g_prefix_error(error, "cannot send %s: ", command);
        return NULL;
    }
    /* No pipelining: the next non-event message answers this command. */
    g_autoptr(JsonObject) reply = read_message(q, FALSE, error);
    return reply ? cli_qmp_reply_result(reply, error) : NULL;
}

static void unix_close(CliQmp *qmp)
{
    QmpUnix *q = (QmpUnix *)qmp;

    if (!q) {
        return;
    }
    if (q->fd >= 0) {
        close(q->fd);
    }
    g_byte_array_unref(q->pending);
    g_free(q->shown_path);
    g_free(q);
}

CliQmp *cli_qmp_unix_open(const char *path, const KsmContext *ctx, pid_t pid, guint timeout_s,
                          GError **error)
{
    QmpUnix *q = g_new0(QmpUnix, 1);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };

    q->base.execute = unix_execute;
    q->base.close = unix_close;
    q->shown_path = cli_escape_text(path);
    q->timeout_s = timeout_s;
    q->pending = g_byte_array_new();
    q->fd = -1;
    if (strlen(path) >= sizeof(addr.sun_path)) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                    "QMP socket path %s is too long for a unix socket", q->shown_path);
        unix_close(&q->base);
        return NULL;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                    "cannot connect to QMP socket %s: %s", q->shown_path, g_strerror(errno));
        unix_close(&q->base);
        return NULL;
    }
    /* Before a byte is read: is it the QEMU we mean, still? */
    if (ctx && (!cli_qmp_check_peer(q->fd, ctx, pid, error) ||
                !cli_qmp_check_qemu_process(ctx, pid, error))) {
        unix_close(&q->base);
        return NULL;
    }
    g_autoptr(JsonObject) greeting = read_message(q, TRUE, error);
    if (!greeting) {
        unix_close(&q->base);
        return NULL;
    }
    g_autoptr(JsonNode) caps = unix_execute(&q->base, "qmp_capabilities", NULL, error);
    if (!caps) {
        g_prefix_error(error, "qmp_capabilities: ");
        unix_close(&q->base);
        return NULL;
    }
    return &q->base;
}
