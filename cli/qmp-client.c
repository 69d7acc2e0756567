/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qmp-client.c: the QEMU Machine Protocol over a unix socket.
 *
 * QMP is one JSON object per line: the server greets ({"QMP": ...}), the
 * client sends qmp_capabilities, then commands; each command gets one
 * {"return": ...} or {"error": ...}, and {"event": ...} lines may come in
 * between at any time (they are skipped here: job progress is polled).
 * Every read has a timeout: a QEMU whose monitor already has a client
 * (libvirt's) accepts the connection and then says nothing.
 */
#include <string.h>

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>

#include "unmerge.h"

G_DEFINE_QUARK(samepage-qmp-error, cli_qmp_error)

typedef struct {
    CliQmp base;
    GSocketConnection *conn;
    GDataInputStream *in;
    GOutputStream *out;
    char *path;
    guint64 next_id;
} QmpSocket;

char *cli_qmp_command_text(const char *command, JsonObject *arguments)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "execute");
    json_builder_add_string_value(b, command);
    if (arguments) {
        JsonNode *args = json_node_new(JSON_NODE_OBJECT);
        json_node_set_object(args, arguments);
        json_builder_set_member_name(b, "arguments");
        json_builder_add_value(b, args);
    }
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    return json_generator_to_data(gen, NULL);
}

/*
 * json-glib's typed getters assume the type (a g_return_if_fail, or NULL
 * from a _with_default): these take whatever QEMU sent and fall back
 * unless the member has the type asked for.
 */
const char *cli_qmp_string_member(JsonObject *obj, const char *name, const char *fallback)
{
    JsonNode *node = json_object_get_member(obj, name);
    return node && JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING
        ? json_node_get_string(node) : fallback;
}

gint64 cli_qmp_int_member(JsonObject *obj, const char *name, gint64 fallback)
{
    JsonNode *node = json_object_get_member(obj, name);
    return node && JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_INT64
        ? json_node_get_int(node) : fallback;
}

JsonObject *cli_qmp_object_node(JsonNode *node)
{
    return node && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
}

JsonNode *cli_qmp_reply_result(JsonObject *reply, GError **error)
{
    if (json_object_has_member(reply, "return")) {
        return json_node_copy(json_object_get_member(reply, "return"));
    }
    JsonObject *err = cli_qmp_object_node(json_object_get_member(reply, "error"));
    if (!err) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                    "QEMU sent a reply with neither return nor an error object");
        return NULL;
    }
    const char *klass = cli_qmp_string_member(err, "class", "");
    const char *desc = cli_qmp_string_member(err, "desc", "(no description)");
    g_set_error(error, CLI_QMP_ERROR,
                strcmp(klass, "CommandNotFound") == 0 ? CLI_QMP_ERROR_NO_COMMAND
                                                      : CLI_QMP_ERROR_COMMAND,
                "%s%s%s", klass, *klass ? ": " : "", desc);
    return NULL;
}

/* The next non-event object (events are dropped). */
static JsonObject *read_message(QmpSocket *q, gboolean want_greeting, GError **error)
{
    for (;;) {
        g_autoptr(GError) local = NULL;
        gsize len;
        g_autofree char *line = g_data_input_stream_read_line_utf8(q->in, &len, NULL, &local);

        if (!line) {
            if (local && g_error_matches(local, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
                g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                            "QEMU did not answer on %s in time%s", q->path,
                            want_greeting ? " (the monitor may have a client already, e.g. "
                                            "libvirt: use --domain for libvirt guests)" : "");
            } else {
                g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                            "QMP connection %s closed: %s", q->path,
                            local ? local->message : "end of stream");
            }
            return NULL;
        }
        g_strchomp(line);
        if (!*line) {
            continue;
        }
        g_autoptr(JsonParser) parser = json_parser_new();
        if (!json_parser_load_from_data(parser, line, -1, &local) ||
            !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
            g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                        "QEMU sent something that is not a QMP message: %.80s", line);
            return NULL;
        }
        JsonObject *obj = json_node_get_object(json_parser_get_root(parser));
        if (json_object_has_member(obj, "event")) {
            continue;
        }
        if (want_greeting && !json_object_has_member(obj, "QMP")) {
            g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                        "%s is not a QMP socket (no greeting)", q->path);
            return NULL;
        }
        return json_object_ref(obj);
    }
}

static JsonNode *socket_execute(CliQmp *qmp, const char *command, JsonObject *arguments,
                                GError **error)
{
    QmpSocket *q = (QmpSocket *)qmp;
    g_autofree char *text = cli_qmp_command_text(command, arguments);
    g_autofree char *line = g_strconcat(text, "\n", NULL);
    g_autoptr(GError) local = NULL;

    if (!g_output_stream_write_all(q->out, line, strlen(line), NULL, NULL, &local)) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                    "cannot send %s to %s: %s", command, q->path, local->message);
        return NULL;
    }
    /* No pipelining: the next non-event message answers this command. */
    g_autoptr(JsonObject) reply = read_message(q, FALSE, error);
    return reply ? cli_qmp_reply_result(reply, error) : NULL;
}

static void socket_close(CliQmp *qmp)
{
    QmpSocket *q = (QmpSocket *)qmp;

    if (!q) {
        return;
    }
    g_clear_object(&q->in);
    if (q->conn) {
        g_io_stream_close(G_IO_STREAM(q->conn), NULL, NULL);
    }
    g_clear_object(&q->conn);
    g_free(q->path);
    g_free(q);
}

CliQmp *cli_qmp_socket_open(const char *path, guint timeout_s, GError **error)
{
    g_autoptr(GSocketClient) client = g_socket_client_new();
    g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(path);
    g_autoptr(GError) local = NULL;
    QmpSocket *q = g_new0(QmpSocket, 1);

    q->base.execute = socket_execute;
    q->base.close = socket_close;
    q->path = g_strdup(path);
    g_socket_client_set_timeout(client, timeout_s);
    q->conn = g_socket_client_connect(client, G_SOCKET_CONNECTABLE(addr), NULL, &local);
    if (!q->conn) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                    "cannot connect to QMP socket %s: %s", path, local->message);
        socket_close(&q->base);
        return NULL;
    }
    g_socket_set_timeout(g_socket_connection_get_socket(q->conn), timeout_s);
    q->in = g_data_input_stream_new(g_io_stream_get_input_stream(G_IO_STREAM(q->conn)));
    /* QMP ends lines with CRLF: split at LF, g_strchomp drops the CR. */
    g_data_input_stream_set_newline_type(q->in, G_DATA_STREAM_NEWLINE_TYPE_LF);
    q->out = g_io_stream_get_output_stream(G_IO_STREAM(q->conn));

    g_autoptr(JsonObject) greeting = read_message(q, TRUE, error);
    if (!greeting) {
        socket_close(&q->base);
        return NULL;
    }
    g_autoptr(JsonNode) caps = socket_execute(&q->base, "qmp_capabilities", NULL, error);
    if (!caps) {
        g_prefix_error(error, "qmp_capabilities: ");
        socket_close(&q->base);
        return NULL;
    }
    return &q->base;
}
