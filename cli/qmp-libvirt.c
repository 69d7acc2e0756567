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
#include <gmodule.h>
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

/*
 * libvirt is loaded when --domain needs it, not linked: it brings some 45
 * libraries (gnutls, curl, krb5, ICU) whose loading took 12 of the 17 ms of
 * CPU every `samepage stats` spent, for a node_exporter run every few
 * seconds that never talks to libvirt.
 */
static struct {
    __typeof__(virGetLastError) *GetLastError;
    __typeof__(virDomainQemuMonitorCommand) *DomainQemuMonitorCommand;
    __typeof__(virDomainFree) *DomainFree;
    __typeof__(virConnectClose) *ConnectClose;
    __typeof__(virSetErrorFunc) *SetErrorFunc;
    __typeof__(virConnectOpen) *ConnectOpen;
    __typeof__(virDomainLookupByName) *DomainLookupByName;
    __typeof__(virDomainIsActive) *DomainIsActive;
} lv;

#define LIBVIRT_QEMU_SONAME "libvirt-qemu.so.0"

static gboolean libvirt_load(GError **error)
{
    static const struct {
        const char *name;
        gsize offset;
    } symbols[] = {
#define SYM(field) { "vir" #field, G_STRUCT_OFFSET(__typeof__(lv), field) }
        SYM(GetLastError), SYM(DomainQemuMonitorCommand), SYM(DomainFree),
        SYM(ConnectClose), SYM(SetErrorFunc), SYM(ConnectOpen), SYM(DomainLookupByName),
        SYM(DomainIsActive),
#undef SYM
    };
    static GModule *module;

    if (module) {
        return TRUE;
    }
    /* The soname, as the dynamic linker would have found it (no path from
     * the environment beyond what ld.so itself honours). */
    GModule *m = g_module_open(LIBVIRT_QEMU_SONAME, G_MODULE_BIND_LOCAL);
    if (!m) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                    "--domain needs libvirt, and %s cannot be loaded (%s): install "
                    "libvirt0, or use --pid for a QEMU with its own QMP socket",
                    LIBVIRT_QEMU_SONAME, g_module_error());
        return FALSE;
    }
    for (guint i = 0; i < G_N_ELEMENTS(symbols); i++) {
        gpointer *slot = G_STRUCT_MEMBER_P(&lv, symbols[i].offset);
        if (!g_module_symbol(m, symbols[i].name, slot) || !*slot) {
            g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                        "%s has no %s: this libvirt is too old for --domain",
                        LIBVIRT_QEMU_SONAME, symbols[i].name);
            memset(&lv, 0, sizeof(lv));
            g_module_close(m);
            return FALSE;
        }
    }
    module = m;   /* kept loaded until exit */
    return TRUE;
}

typedef struct {
    CliQmp base;
    virConnectPtr conn;
    virDomainPtr dom;
} QmpLibvirt;

/* Escaped: libvirt passes QEMU's own error text on. */
static char *last_libvirt_error(void)
{
    virErrorPtr err = lv.GetLastError();
    return cli_escape_text(err && err->message ? err->message : "unknown libvirt error");
}

static JsonNode *libvirt_execute(CliQmp *qmp, const char *command, JsonObject *arguments,
                                 GError **error)
{
    QmpLibvirt *q = (QmpLibvirt *)qmp;
    g_autofree char *text = cli_qmp_command_text(command, arguments);
    char *result = NULL;

    if (lv.DomainQemuMonitorCommand(q->dom, text, &result, 0) < 0) {
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
        lv.DomainFree(q->dom);
    }
    if (q->conn) {
        lv.ConnectClose(q->conn);
    }
    g_free(q);
}

/* libvirt prints errors to stderr by default; ours carry them instead. */
static void quiet_errors(void *data, virErrorPtr err)
{
}

CliQmp *cli_qmp_libvirt_open(const char *uri, const char *domain, GError **error)
{
    if (!libvirt_load(error)) {
        return NULL;
    }
    QmpLibvirt *q = g_new0(QmpLibvirt, 1);

    q->base.execute = libvirt_execute;
    q->base.close = libvirt_close;
    lv.SetErrorFunc(NULL, quiet_errors);
    q->conn = lv.ConnectOpen(uri);
    if (!q->conn) {
        g_autofree char *msg = last_libvirt_error();
        g_autofree char *shown = cli_escape_text(uri);
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED,
                    "cannot connect to libvirt at %s: %s", shown, msg);
        libvirt_close(&q->base);
        return NULL;
    }
    q->dom = lv.DomainLookupByName(q->conn, domain);
    if (!q->dom) {
        g_autofree char *msg = last_libvirt_error();
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_NOT_FOUND, "%s", msg);
        libvirt_close(&q->base);
        return NULL;
    }
    if (lv.DomainIsActive(q->dom) != 1) {
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
