/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qmp-libvirt.c: QMP to a libvirt guest through libvirt itself.
 *
 * libvirt owns its guests' QMP monitors (passed to QEMU as a file
 * descriptor), so the one way in is virDomainQemuMonitorCommand.  libvirt
 * marks the domain "tainted: custom-monitor" for it; that is the price of a
 * command libvirt does not know.  Never used from the libvirt hook: a hook
 * calling back into libvirtd deadlocks it.
 */
#include <stdlib.h>
#include <string.h>

#include "qmp.h"

#ifdef HAVE_LIBVIRT
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

typedef struct {
    CliQmp base;
    virConnectPtr conn;
    virDomainPtr dom;
} QmpLibvirt;

/* Escaped: libvirt passes QEMU's own error text on. */
static char *last_libvirt_error(void)
{
    virErrorPtr err = virGetLastError();
    return cli_escape_text(err && err->message ? err->message : "unknown libvirt error");
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
    /* The same checks as a direct socket: the reply is QEMU's text. */
    g_autoptr(JsonObject) reply = cli_qmp_parse_message(result, strlen(result), error);
    free(result);
    if (!reply) {
        g_prefix_error(error, "libvirt passed on a reply QEMU should not send: ");
        return NULL;
    }
    return cli_qmp_reply_result(reply, error);
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
        g_autofree char *shown = cli_escape_text(uri);
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                    "cannot connect to libvirt at %s: %s", shown, msg);
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
        g_autofree char *shown = cli_escape_text(domain);
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_NOT_FOUND,
                    "domain '%s' is not running", shown);
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
