/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-qmp-reply.c: what a QEMU sends on its QMP socket, as `samepage
 * unmerge --pid` reads it: the greeting and the qmp_capabilities reply
 * (cli/qmp-client.c), then the replies to ksm-unmerge, query-jobs and the
 * job commands (cli/unmerge-guest.c).  A QEMU is a guest's process: what it
 * says is the guest owner's, not ours.
 *
 * Input: the bytes the QEMU side sends, over a real unix socket (a thread
 * plays QEMU: it sends them all, then ends its side).  Each reply is one
 * line; inputs of more than MAX_LINES lines are skipped, since every
 * "running" job costs unmerge-guest.c's 100 ms poll.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz-common.h"
#include "unmerge.h"

#define MAX_LINES 8

typedef struct {
    int listen_fd;
    const uint8_t *data;
    size_t size;
} Qemu;

static char *socket_path;
static int listen_fd = -1;

static void setup(void)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };

    if (listen_fd >= 0) {
        return;
    }
    socket_path = g_build_filename(fuzz_root(), "qmp.sock", NULL);
    if (strlen(socket_path) >= sizeof(addr.sun_path)) {
        g_error("fuzz-qmp-reply: socket path too long: %s", socket_path);
    }
    strcpy(addr.sun_path, socket_path);
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(listen_fd, 4) < 0) {
        g_error("fuzz-qmp-reply: cannot listen on %s: %s", socket_path, g_strerror(errno));
    }
}

static void *qemu_side(void *arg)
{
    Qemu *q = arg;
    int fd = accept(q->listen_fd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    for (size_t off = 0; off < q->size;) {
        ssize_t n = send(fd, q->data + off, q->size - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;   /* samepage hung up: it has heard enough */
        }
        off += n;
    }
    shutdown(fd, SHUT_WR);
    char sink[4096];
    while (read(fd, sink, sizeof(sink)) > 0) {
    }
    close(fd);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    guint lines = 0;

    fuzz_init();
    setup();
    for (size_t i = 0; i < size; i++) {
        lines += data[i] == '\n';
    }
    if (lines > MAX_LINES) {
        return -1;
    }

    Qemu q = { .listen_fd = listen_fd, .data = data, .size = size };
    pthread_t thread;
    if (pthread_create(&thread, NULL, qemu_side, &q) != 0) {
        g_error("fuzz-qmp-reply: cannot start the QEMU side");
    }
    g_autoptr(GError) error = NULL;
    CliQmp *qmp = cli_qmp_socket_open(socket_path, 10, &error);
    if (qmp) {
        CliGuestUnmergeOptions opts = { .backend = "mem0", .timeout_s = 60 };
        int status = cli_guest_unmerge(qmp, fuzz_ctx(), "pid", "4242", 0, &opts);
        g_assert(status == CLI_EXIT_OK || status == CLI_EXIT_FAILURE);
        qmp->close(qmp);
    } else {
        g_assert(error && error->domain == CLI_QMP_ERROR);
    }
    pthread_join(thread, NULL);
    return 0;
}
