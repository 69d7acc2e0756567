/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qmp-message.c: QMP messages, out and in.
 *
 * What comes back is read as hostile: a QEMU may be compromised, and the
 * process on a socket named on a command line may not be QEMU at all.  So a
 * message is measured before json-glib sees it (json-glib recurses once per
 * nesting level: 200 000 levels overflow the stack), and every member is
 * read through a typed getter that says "absent" for a wrong type instead
 * of returning NULL to a strcmp.
 */
#include <string.h>

#include "qmp.h"

G_DEFINE_QUARK(samepage-qmp-error, cli_qmp_error)

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

/* The deepest nesting of objects and arrays, brackets in strings aside;
 * stops counting past limit. */
static guint nesting_depth(const char *text, gsize len, guint limit)
{
    guint depth = 0, deepest = 0;
    gboolean in_string = FALSE, escaped = FALSE;

    for (gsize i = 0; i < len && deepest <= limit; i++) {
        char c = text[i];
        if (in_string) {
            if (escaped) {
                escaped = FALSE;
            } else if (c == '\\') {
                escaped = TRUE;
            } else if (c == '"') {
                in_string = FALSE;
            }
        } else if (c == '"') {
            in_string = TRUE;
        } else if (c == '{' || c == '[') {
            deepest = MAX(deepest, ++depth);
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return deepest;
}

JsonObject *cli_qmp_parse_message(const char *text, gsize len, GError **error)
{
    if (len > CLI_QMP_MAX_MESSAGE) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_MALFORMED,
                    "the peer sent a message of %" G_GSIZE_FORMAT " bytes (QMP messages "
                    "samepage reads are under %d)", len, CLI_QMP_MAX_MESSAGE);
        return NULL;
    }
    if (memchr(text, '\0', len) || !g_utf8_validate_len(text, len, NULL)) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_MALFORMED,
                    "the peer sent a message that is not UTF-8 text");
        return NULL;
    }
    if (nesting_depth(text, len, CLI_QMP_MAX_DEPTH) > CLI_QMP_MAX_DEPTH) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_MALFORMED,
                    "the peer sent JSON nested more than %d levels deep", CLI_QMP_MAX_DEPTH);
        return NULL;
    }
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    /* A line of blanks (or a BOM, or a comment) parses without an error and
     * without a root: NULL, which JSON_NODE_HOLDS_OBJECT must not be given
     * (a GLib critical, fatal in the tests and the fuzzer). */
    gboolean parsed = json_parser_load_from_data(parser, text, (gssize)len, &local);
    JsonNode *root = parsed ? json_parser_get_root(parser) : NULL;
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_autofree char *head = g_strndup(text, MIN(len, 80));
        g_autofree char *shown = cli_escape_text(head);
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_MALFORMED,
                    "the peer sent something that is not a QMP message: %s%s", shown,
                    len > 80 ? "..." : "");
        return NULL;
    }
    return json_object_ref(json_node_get_object(root));
}

const char *cli_qmp_get_string(JsonObject *obj, const char *member)
{
    JsonNode *node = obj ? json_object_get_member(obj, member) : NULL;

    if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING) {
        return NULL;
    }
    return json_node_get_string(node);
}

gboolean cli_qmp_get_int(JsonObject *obj, const char *member, gint64 *value)
{
    JsonNode *node = obj ? json_object_get_member(obj, member) : NULL;

    if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_INT64) {
        return FALSE;
    }
    *value = json_node_get_int(node);
    return TRUE;
}

JsonObject *cli_qmp_get_object(JsonObject *obj, const char *member)
{
    JsonNode *node = obj ? json_object_get_member(obj, member) : NULL;

    return node && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
}

JsonNode *cli_qmp_reply_result(JsonObject *reply, GError **error)
{
    if (json_object_has_member(reply, "return")) {
        return json_node_copy(json_object_get_member(reply, "return"));
    }
    JsonObject *err = cli_qmp_get_object(reply, "error");
    if (!err) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_MALFORMED,
                    "QEMU sent a reply with neither return nor an error object");
        return NULL;
    }
    /* QMP says both are strings; anything else is not QEMU speaking. */
    const char *klass = cli_qmp_get_string(err, "class");
    const char *desc = cli_qmp_get_string(err, "desc");
    if (!klass || !desc) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_MALFORMED,
                    "QEMU sent an error reply whose class or desc is not a string");
        return NULL;
    }
    g_autofree char *klass_shown = cli_escape_text(klass);
    g_autofree char *desc_shown = cli_escape_text(desc);
    g_set_error(error, CLI_QMP_ERROR,
                strcmp(klass, "CommandNotFound") == 0 ? CLI_QMP_ERROR_NO_COMMAND
                                                      : CLI_QMP_ERROR_COMMAND,
                "%s%s%s", klass_shown, *klass ? ": " : "", desc_shown);
    return NULL;
}
