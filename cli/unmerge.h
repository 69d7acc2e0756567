/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unmerge.h: what `samepage unmerge` shares between its files.
 *
 *   cmd-unmerge.c       options; --all (the safe host-wide unmerge, libksm)
 *   unmerge-guest.c     one guest through its QMP ksm-unmerge job
 *   qmp-socket.c        a QEMU's QMP socket, from its command line
 *   qmp-client.c        QMP over a unix socket (json-glib)
 *   unmerge-libvirt.c   QMP through libvirt (virDomainQemuMonitorCommand)
 */
#ifndef CLI_UNMERGE_H
#define CLI_UNMERGE_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <sys/types.h>

#include "cli.h"

#define CLI_QMP_ERROR (cli_qmp_error_quark())
GQuark cli_qmp_error_quark(void);
typedef enum {
    CLI_QMP_ERROR_FAILED,       /* transport: connect, read, write, timeout */
    CLI_QMP_ERROR_COMMAND,      /* QEMU answered with an error */
    CLI_QMP_ERROR_NO_COMMAND,   /* QEMU has no such command (CommandNotFound) */
    CLI_QMP_ERROR_NOT_FOUND,    /* no QMP socket / no such domain */
} CliQmpError;

/*
 * A way to run one QMP command: the direct socket or libvirt.  execute
 * returns the "return" member of the reply (a new node), or FALSE/NULL with
 * the QMP error's class and desc in the message.
 */
typedef struct CliQmp CliQmp;
struct CliQmp {
    JsonNode *(*execute)(CliQmp *qmp, const char *command, JsonObject *arguments,
                         GError **error);
    void (*close)(CliQmp *qmp);
};

/* A member of a QMP reply, if it has that type (else fallback / NULL): what
 * QEMU sends is checked, never assumed. */
const char *cli_qmp_string_member(JsonObject *obj, const char *name, const char *fallback);
gint64 cli_qmp_int_member(JsonObject *obj, const char *name, gint64 fallback);
JsonObject *cli_qmp_object_node(JsonNode *node);
/* Turn a QMP reply object into the "return" node or an error (shared by both transports). */
JsonNode *cli_qmp_reply_result(JsonObject *reply, GError **error);
/* {"execute": command, "arguments": arguments} as text. */
char *cli_qmp_command_text(const char *command, JsonObject *arguments);

/* qmp-client.c: connect, read the greeting, qmp_capabilities.  timeout_s bounds
 * every read (a QMP socket with a client already is silent). */
CliQmp *cli_qmp_socket_open(const char *path, guint timeout_s, GError **error);

/* qmp-socket.c */
typedef struct {
    char *path;          /* absolute path of the unix socket */
} CliQmpSocket;
/*
 * The QMP unix socket of a QEMU command line: -qmp unix:PATH,server=on...,
 * -qmp-pretty, or -chardev socket,id=X,path=PATH,server=on with
 * -mon chardev=X,mode=control.  cwd resolves a relative path.  The error
 * says why not (no QMP, a TCP or client-mode socket, a socket passed as a
 * file descriptor as libvirt does).
 */
char *cli_qmp_socket_from_argv(const char *const *argv, guint argc, const char *cwd,
                                  GError **error);
/* The same for a running process, from /proc/PID/cmdline and cwd. */
char *cli_qmp_socket_of_pid(const KsmContext *ctx, pid_t pid, GError **error);

/* unmerge-libvirt.c: NULL with an error when built without libvirt. */
CliQmp *cli_qmp_libvirt_open(const char *uri, const char *domain, GError **error);

/* unmerge-guest.c */
typedef struct {
    const char *backend;     /* memory backend id, NULL: all */
    gboolean force;
    guint timeout_s;         /* for the whole job */
    gboolean json;
} CliGuestUnmergeOptions;

/* Run ksm-unmerge as a job, wait for it, dismiss it, print the outcome.
 * pid (0 if unknown) is for before/after merging pages.  Returns the exit code. */
int cli_guest_unmerge(CliQmp *qmp, const KsmContext *ctx, const char *target_kind,
                         const char *target, pid_t pid, const CliGuestUnmergeOptions *opts);

#endif
