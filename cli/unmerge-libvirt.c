/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unmerge-libvirt.c: QMP to a libvirt guest through libvirt itself.
 *
 * libvirt owns its guests' QMP monitors (passed to QEMU as a file
 * descriptor), so the one way in is virDomainQemuMonitorCommand.  libvirt
 * marks the domain "tainted: custom-monitor" for it; that is the price of a
 * command libvirt does not know.  Never used from the libvirt hook: a hook
 * calling back into libvirtd deadlocks it.
 */
#include <stdlib.h>
#include <string.h>

#include "unmerge.h"

#ifdef HAVE_LIBVIRT
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

typedef struct {
    CliQmp base;
    virConnectPtr conn;
    virDomainPtr dom;
} QmpLibvirt;

static char *last_libvirt_error(void)
{
    virErrorPtr err = virGetLastError();
    return g_strdup(err && err->message ? err->message : "unknown libvirt error");
}

static JsonNode *libvirt_execute(CliQmp *qmp, const char *command, JsonObject *arguments,
                                 GError **error)
{
    QmpLibvirt *q = (QmpLibvirt *)qmp;
    g_autofree char *text = cli_qmp_command_text(command, arguments);
    char *result = NULL;

    if (virDomainQemuMonitorCommand(q->dom, text, &result, 0) < 0) {
        g_autofree char *msg = last_libvirt_error();
        /* libvirt reports QEMU's own error replies as a failed call. */
        g_set_error(error, CLI_QMP_ERROR,
                    strstr(msg, "CommandNotFound") ? CLI_QMP_ERROR_NO_COMMAND
                                                   : CLI_QMP_ERROR_COMMAND,
                    "%s", msg);
        return NULL;
    }
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    gboolean ok = json_parser_load_from_data(parser, result, -1, &local) &&
                  JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser));
    free(result);
    if (!ok) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                    "libvirt returned a reply that is not a QMP object");
        return NULL;
    }
    return cli_qmp_reply_result(json_node_get_object(json_parser_get_root(parser)), error);
}

static void libvirt_close(CliQmp *qmp)
{
    QmpLibvirt *q = (QmpLibvirt *)qmp;

    if (!q) {
        return;
    }
    if (q->dom) {
        virDomainFree(q->dom);
    }
    if (q->conn) {
        virConnectClose(q->conn);
    }
    g_free(q);
}

/* libvirt prints errors to stderr by default; ours carry them instead. */
static void quiet_errors(void *data, virErrorPtr err)
{
}

CliQmp *cli_qmp_libvirt_open(const char *uri, const char *domain, GError **error)
{
    QmpLibvirt *q = g_new0(QmpLibvirt, 1);

    q->base.execute = libvirt_execute;
    q->base.close = libvirt_close;
    virSetErrorFunc(NULL, quiet_errors);
    q->conn = virConnectOpen(uri);
    if (!q->conn) {
        g_autofree char *msg = last_libvirt_error();
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                    "cannot connect to libvirt at %s: %s", uri, msg);
        libvirt_close(&q->base);
        return NULL;
    }
    q->dom = virDomainLookupByName(q->conn, domain);
    if (!q->dom) {
        g_autofree char *msg = last_libvirt_error();
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_NOT_FOUND, "%s", msg);
        libvirt_close(&q->base);
        return NULL;
    }
    if (virDomainIsActive(q->dom) != 1) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_NOT_FOUND,
                    "domain '%s' is not running", domain);
        libvirt_close(&q->base);
        return NULL;
    }
    return &q->base;
}

#else

CliQmp *cli_qmp_libvirt_open(const char *uri, const char *domain, GError **error)
{
    g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                "this samepage was built without libvirt (libvirt-dev): --domain is not "
                "available; use --pid for a QEMU with its own QMP socket");
    return NULL;
}

#endif
