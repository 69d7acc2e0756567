/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qmp-peer.c: is the process at the other end of a QMP socket the QEMU we
 * mean?
 *
 * `samepage unmerge --pid PID` runs as root and finds the socket on the
 * command line of PID.  Neither is evidence by itself: any user can start a
 * process whose argv[0] is qemu-system-x86_64, and any user can bind the
 * path a command line names (in /tmp, say) before QEMU does.  So samepage
 * talks only to a process whose executable is a QEMU binary root installed
 * (owned by root, or by the user running samepage, and writable by no one
 * else), and only when the socket's peer credentials (SO_PEERCRED, taken by
 * the kernel when the peer called listen) are that very process.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qmp.h"

static char *proc_file(const KsmContext *ctx, pid_t pid, const char *name)
{
    return g_strdup_printf("%s/%d/%s", ksm_context_procfs(ctx), (int)pid, name);
}

gboolean cli_qmp_check_qemu_process(const KsmContext *ctx, pid_t pid, GError **error)
{
    g_autofree char *link = proc_file(ctx, pid, "exe");
    g_autoptr(GError) local = NULL;
    g_autofree char *target = g_file_read_link(link, &local);
    struct stat st;

    if (!target) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_UNTRUSTED,
                    "cannot tell which program process %d runs (%s): samepage talks only to "
                    "a process whose executable it can check (run as root)", (int)pid,
                    local->message);
        return FALSE;
    }
    g_autofree char *shown = cli_escape_text(target);
    if (g_str_has_suffix(target, " (deleted)")) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_UNTRUSTED,
                    "process %d runs %s: its executable was removed or replaced, so it "
                    "cannot be checked", (int)pid, shown);
        return FALSE;
    }
    g_autofree char *base = g_path_get_basename(target);
    if (!g_str_has_prefix(base, "qemu-system-") && strcmp(base, "qemu-kvm") != 0) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_NOT_FOUND,
                    "process %d is %s, not QEMU (qemu-system-* or qemu-kvm)", (int)pid, shown);
        return FALSE;
    }
    /* stat follows /proc/PID/exe to the file the process runs. */
    if (stat(link, &st) != 0) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_UNTRUSTED,
                    "cannot check the executable of process %d (%s): %s", (int)pid, shown,
                    g_strerror(errno));
        return FALSE;
    }
    if (!S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
        (st.st_mode & (S_IWGRP | S_IWOTH))) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_UNTRUSTED,
                    "process %d runs %s, which is owned by uid %u with mode %04o: samepage "
                    "talks only to a QEMU binary owned by root and writable by no one else",
                    (int)pid, shown, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
        return FALSE;
    }
    return TRUE;
}

/* The real uid of a process from /proc/PID/status ("Uid:\treal\teffective..."). */
static gboolean process_uid(const KsmContext *ctx, pid_t pid, uid_t *uid, GError **error)
{
    g_autofree char *path = proc_file(ctx, pid, "status");
    g_autofree char *text = NULL;
    const char *line;
    unsigned long long value;
    char *end;

    if (!g_file_get_contents(path, &text, NULL, error)) {
        return FALSE;
    }
    line = strstr(text, "\nUid:");
    if (line) {
        errno = 0;
        value = g_ascii_strtoull(line + strlen("\nUid:"), &end, 10);
        if (errno == 0 && end != line + strlen("\nUid:") && value <= G_MAXUINT32) {
            *uid = (uid_t)value;
            return TRUE;
        }
    }
    g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_FAILED, "%s has no Uid line", path);
    return FALSE;
}

gboolean cli_qmp_check_peer(int fd, const KsmContext *ctx, pid_t pid, GError **error)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    g_autoptr(GError) local = NULL;
    uid_t uid;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred)) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_UNTRUSTED,
                    "cannot read the credentials of the QMP socket's peer: %s",
                    g_strerror(errno));
        return FALSE;
    }
    if (cred.pid != pid) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_UNTRUSTED,
                    "the QMP socket named on the command line of QEMU process %d is served "
                    "by process %d (uid %u), not by that QEMU: refusing to talk to it "
                    "(someone else may have bound that path)", (int)pid, (int)cred.pid,
                    (unsigned)cred.uid);
        return FALSE;
    }
    if (!process_uid(ctx, pid, &uid, &local)) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_UNTRUSTED,
                    "cannot read the owner of QEMU process %d: %s", (int)pid, local->message);
        return FALSE;
    }
    if (cred.uid != uid) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_UNTRUSTED,
                    "the QMP socket's peer runs as uid %u but QEMU process %d as uid %u: "
                    "refusing to talk to it", (unsigned)cred.uid, (int)pid, (unsigned)uid);
        return FALSE;
    }
    return TRUE;
}
