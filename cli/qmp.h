/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qmp.h: samepage's QMP client, the way `samepage unmerge` talks to a QEMU.
 *
 *   qmp-message.c      commands out; replies in, checked: size, nesting depth,
 *                      member types (a QEMU is as hostile as any peer)
 *   qmp-find-socket.c  where a running QEMU listens for QMP (its command line)
 *   qmp-peer.c         whether the process at the other end is that QEMU
 *   qmp-unix.c         QMP over a unix socket, with a hard deadline per reply
 *   qmp-libvirt.c      QMP through libvirt (virDomainQemuMonitorCommand)
 */
#ifndef CLI_QMP_H
#define CLI_QMP_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <sys/types.h>

#include "cli.h"

/* A QMP message longer than this is refused before parsing (the largest
 * reply samepage asks for, query-jobs with a few jobs, is under 4 KiB). */
#define CLI_QMP_MAX_MESSAGE (1024 * 1024)
/* Nesting deeper than this is refused before parsing (json-glib recurses). */
#define CLI_QMP_MAX_DEPTH 32

#define CLI_QMP_ERROR (cli_qmp_error_quark())
GQuark cli_qmp_error_quark(void);
typedef enum {
    CLI_QMP_ERROR_FAILED,       /* transport: connect, read, write, timeout */
    CLI_QMP_ERROR_COMMAND,      /* QEMU answered with an error */
    CLI_QMP_ERROR_NO_COMMAND,   /* QEMU has no such command (CommandNotFound) */
    CLI_QMP_ERROR_NOT_FOUND,    /* no QMP socket / no such domain */
    CLI_QMP_ERROR_MALFORMED,    /* the peer sent something QMP never sends */
    CLI_QMP_ERROR_UNTRUSTED,    /* the peer is not the QEMU process named */
} CliQmpError;

/*
 * A way to run one QMP command: the direct socket or libvirt.  execute
 * returns the "return" member of the reply (a new node), or NULL with the QMP
 * error's class and desc in the message.  Every text in an error message
 * that came from the peer is already escaped for a terminal.
 */
typedef struct CliQmp CliQmp;
struct CliQmp {
    JsonNode *(*execute)(CliQmp *qmp, const char *command, JsonObject *arguments,
                         GError **error);
    void (*close)(CliQmp *qmp);
    /* Monotonic time (µs) after which no reply is waited for: the caller's
     * overall deadline (0: none; the per-reply timeout still applies). */
    gint64 deadline;
};

/* qmp-message.c ------------------------------------------------------------ */

/* {"execute": command, "arguments": arguments} as text. */
char *cli_qmp_command_text(const char *command, JsonObject *arguments);
/*
 * Parse one QMP message (len bytes, not NUL-terminated necessarily): refused
 * when longer than CLI_QMP_MAX_MESSAGE, nested deeper than CLI_QMP_MAX_DEPTH,
 * not UTF-8, or not a JSON object.  Returns a new reference.
 */
JsonObject *cli_qmp_parse_message(const char *text, gsize len, GError **error);
/* A reply object -> its "return" node, or the error (shared by both transports). */
JsonNode *cli_qmp_reply_result(JsonObject *reply, GError **error);
/* Typed members: NULL / FALSE when absent or of another type (never a crash). */
const char *cli_qmp_get_string(JsonObject *obj, const char *member);
gboolean cli_qmp_get_int(JsonObject *obj, const char *member, gint64 *value);
JsonObject *cli_qmp_get_object(JsonObject *obj, const char *member);

/* qmp-find-socket.c --------------------------------------------------------- */

/*
 * The QMP unix socket of a QEMU command line: -qmp unix:PATH,server=on...,
 * -qmp-pretty, or -chardev socket,id=X,path=PATH,server=on with
 * -mon chardev=X,mode=control.  cwd resolves a relative path.  The error
 * says why not (no QMP, a TCP or client-mode socket, a socket passed as a
 * file descriptor as libvirt does).
 */
char *cli_qmp_find_socket_in_argv(const char *const *argv, guint argc, const char *cwd,
                                  GError **error);
/* The same for a running process, from /proc/PID/cmdline and cwd; the
 * process must be QEMU (see cli_qmp_check_qemu_process). */
char *cli_qmp_find_socket_of_pid(const KsmContext *ctx, pid_t pid, GError **error);

/* qmp-peer.c ---------------------------------------------------------------- */

/*
 * Is pid a QEMU samepage may talk to: /proc/PID/exe is a qemu-system-* or
 * qemu-kvm binary owned by root (or by the user running samepage) and not
 * writable by group or others.  argv[0] is not evidence: any process
 * can name itself qemu-system-x86_64.
 */
gboolean cli_qmp_check_qemu_process(const KsmContext *ctx, pid_t pid, GError **error);
/*
 * Is the peer of the connected unix socket fd that process (SO_PEERCRED:
 * the same pid, and the uid /proc/PID/status gives).  Another process that
 * bound the path the command line names is refused before a byte is read.
 */
gboolean cli_qmp_check_peer(int fd, const KsmContext *ctx, pid_t pid, GError **error);

/* qmp-unix.c ---------------------------------------------------------------- */

/*
 * Connect, check the peer (when ctx is not NULL: it must be process pid),
 * read the greeting, qmp_capabilities.  timeout_s bounds each reply as a
 * whole, not each read: a peer trickling bytes cannot hold samepage.
 */
CliQmp *cli_qmp_unix_open(const char *path, const KsmContext *ctx, pid_t pid, guint timeout_s,
                          GError **error);

/* qmp-libvirt.c: NULL with an error when built without libvirt. */
CliQmp *cli_qmp_libvirt_open(const char *uri, const char *domain, GError **error);

#endif
