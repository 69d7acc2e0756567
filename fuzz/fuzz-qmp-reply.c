/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-qmp-reply.c: what a QEMU sends on its QMP socket, as `samepage
 * unmerge --pid` reads it: the greeting and the qmp_capabilities reply
 * (cli/qmp-unix.c, cli/qmp-message.c), then the replies to ksm-unmerge,
 * query-jobs and the job commands (cli/unmerge-guest.c).  The peer check
 * (which process is at the other end) is not fuzzed: the harness is both.  A QEMU is a guest's process: what it
 * says is the guest owner's, not ours.
 *
 * Input: the bytes the QEMU side sends, over a real unix socket (a thread
 * plays QEMU: it sends them line by line without waiting for commands, then
 * ends its side).  "@JOB@" in a line stands for the job id samepage chose
 * (its pid and the time): before such a line the thread reads samepage's
 * commands until the ksm-unmerge names it (20 ms at most), so replies can
 * be about samepage's own job.  Inputs of more than MAX_LINES lines are
 * skipped, since every "running" job costs unmerge-guest.c's 100 ms poll.
 */
#include <errno.h>
#include <poll.h>
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

static void send_all(int fd, const char *data, size_t size)
{
    for (size_t off = 0; off < size;) {
        ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;   /* samepage hung up: it has heard enough */
        }
        off += n;
    }
}

#define JOB_PREFIX "samepage-unmerge-"

/* Read samepage's commands until one names its job ("samepage-unmerge-PID-MS"). */
static char *learn_job_id(int fd, GString *heard)
{
    for (;;) {
        const char *at = g_strstr_len(heard->str, heard->len, JOB_PREFIX);
        if (at) {
            size_t n = strspn(at + strlen(JOB_PREFIX), "0123456789-");
            if (at[strlen(JOB_PREFIX) + n] == '"') {
                return g_strndup(at, strlen(JOB_PREFIX) + n);
            }
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char buf[4096];
        if (poll(&p, 1, 20) <= 0) {
            return NULL;
        }
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0) {
            return NULL;
        }
        g_string_append_len(heard, buf, r);
    }
}

static void *qemu_side(void *arg)
{
    Qemu *q = arg;
    g_autoptr(GString) heard = g_string_new(NULL);
    g_autofree char *job = NULL;
    gboolean asked = FALSE;
    int fd = accept(q->listen_fd, NULL, NULL);

    if (fd < 0) {
        return NULL;
    }
    for (size_t start = 0; start < q->size;) {
        const char *line = (const char *)q->data + start;
        const char *nl = memchr(line, '\n', q->size - start);
        size_t len = nl ? (size_t)(nl - line) + 1 : q->size - start;
        if (!asked && g_strstr_len(line, len, "@JOB@")) {
            job = learn_job_id(fd, heard);
            asked = TRUE;
        }
        if (job) {
            g_autofree char *text = g_strndup(line, len);   /* (cut at a NUL) */
            g_auto(GStrv) parts = g_strsplit(text, "@JOB@", -1);
            g_autofree char *replaced = g_strjoinv(job, parts);
            send_all(fd, replaced, strlen(replaced));
        } else {
            send_all(fd, line, len);
        }
        start += len;
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
    CliQmp *qmp = cli_qmp_unix_open(socket_path, NULL, 0, 10, &error);
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
