/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-cli-unmerge.c: `samepage unmerge`.
 *
 *   --all    the binary against a fake KSM tree: done, refused (with and
 *            without --stop-if-refused), --force, lock busy, exit codes
 *   --pid    the binary against a fake QEMU: a /proc/PID/cmdline naming a
 *            QMP socket served by a thread here that speaks enough QMP
 *            (greeting, capabilities, ksm-unmerge, query-jobs, job-dismiss)
 *   parser   the QMP socket found from QEMU command lines, in-process
 */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "hook-fixture.h"
#include "qmp.h"

/* A pid that is not this test's: a fake QEMU whose socket someone else serves. */
#define OTHER_PID 31337

typedef struct {
    int status;          /* exit status, or 128 + signal */
    char *out, *err;
    gint64 elapsed_ms;
} Run;

static void run_cli(HookFixture *fx, Run *r, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GSubprocessLauncher) launcher =
        g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
    g_autoptr(GError) error = NULL;
    va_list args;
    const char *arg;

    g_ptr_array_add(argv, (gpointer)g_getenv("SAMEPAGE_CLI"));
    g_ptr_array_add(argv, (gpointer)"unmerge");
    va_start(args, r);
    while ((arg = va_arg(args, const char *))) {
        g_ptr_array_add(argv, (gpointer)arg);
    }
    va_end(args);
    g_ptr_array_add(argv, (gpointer)"--sysfs-root");
    g_ptr_array_add(argv, fx->sysfs);
    g_ptr_array_add(argv, (gpointer)"--procfs-root");
    g_ptr_array_add(argv, fx->procfs);
    g_ptr_array_add(argv, NULL);
    g_subprocess_launcher_setenv(launcher, "SAMEPAGE_LOCK", fx->lock, TRUE);
    gint64 start = g_get_monotonic_time();
    g_autoptr(GSubprocess) proc = g_subprocess_launcher_spawnv(
        launcher, (const char *const *)argv->pdata, &error);
    g_assert_no_error(error);
    /* Not _utf8: a test checks that hostile bytes do not come through. */
    g_autoptr(GBytes) out = NULL, err = NULL;
    g_assert_true(g_subprocess_communicate(proc, NULL, NULL, &out, &err, &error));
    /* (an empty GBytes has NULL data) */
    r->out = g_strndup(g_bytes_get_size(out) ? g_bytes_get_data(out, NULL) : "", g_bytes_get_size(out));
    r->err = g_strndup(g_bytes_get_size(err) ? g_bytes_get_data(err, NULL) : "", g_bytes_get_size(err));
    r->elapsed_ms = (g_get_monotonic_time() - start) / 1000;
    r->status = g_subprocess_get_if_exited(proc) ? g_subprocess_get_exit_status(proc)
                                                 : 128 + g_subprocess_get_term_sig(proc);
    if (g_test_verbose()) {
        g_printerr("samepage -> %d\n%s%s", r->status, r->out, r->err);
    }
}

static void run_clear(Run *r)
{
    g_free(r->out);
    g_free(r->err);
    memset(r, 0, sizeof(*r));
}

static JsonObject *json_line(const char *text)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;
    if (!json_parser_load_from_data(parser, text, -1, &error)) {
        g_error("not JSON (%s): %s", error->message, text);
    }
    return json_object_ref(json_node_get_object(json_parser_get_root(parser)));
}

/* ---- --all ---- */

static void test_all_done(HookFixture *fx, gconstpointer data)
{
    Run r = { 0 };

    hook_fixture_ksm_set(fx, "run", "1");
    hook_fixture_ksm_set(fx, "pages_sharing", "1000");
    run_cli(fx, &r, "--all", "--json", NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_autoptr(JsonObject) o = json_line(r.out);
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, "done");
    g_assert_cmpint(json_object_get_int_member(o, "needed_bytes"), ==, 1000 * 4096);
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "2");
    run_clear(&r);

    /* Without --json: one human line. */
    run_cli(fx, &r, "--all", NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_true(g_str_has_prefix(r.out, "unmerge done: "));
    run_clear(&r);
}

static void test_all_refused(HookFixture *fx, gconstpointer data)
{
    Run r = { 0 };

    hook_fixture_ksm_set(fx, "run", "1");
    hook_fixture_ksm_set(fx, "pages_sharing", "1000");
    hook_fixture_meminfo(fx, 100 * 1024);   /* 100 MiB available */
    run_cli(fx, &r, "--all", "--json", "--reserve", "200", NULL);
    g_assert_cmpint(r.status, ==, 1);
    g_autoptr(JsonObject) o = json_line(r.out);
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, "refused");
    g_assert_false(json_object_get_boolean_member(o, "stopped_ksmd"));
    hook_assert_contains(r.err, "refused");
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "1");
    run_clear(&r);

    run_cli(fx, &r, "--all", "--reserve", "200", "--stop-if-refused", NULL);
    g_assert_cmpint(r.status, ==, 1);
    hook_assert_contains(r.out, "unmerge refused: ");
    hook_assert_contains(r.out, "ksmd stopped");
    g_autofree char *runv2 = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv2, ==, "0");
    run_clear(&r);

    run_cli(fx, &r, "--all", "--reserve", "200", "--force", "--json", NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_autofree char *runv3 = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv3, ==, "2");
    run_clear(&r);
}

static void test_all_lock_busy(HookFixture *fx, gconstpointer data)
{
    Run r = { 0 };
    g_autofree char *dir = g_path_get_dirname(fx->lock);

    g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
    int fd = open(fx->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    g_assert_cmpint(flock(fd, LOCK_EX), ==, 0);
    gint64 start = g_get_monotonic_time();
    run_cli(fx, &r, "--all", "--lock-timeout", "0.5", NULL);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_cmpint(g_get_monotonic_time() - start, <, 5 * G_USEC_PER_SEC);
    hook_assert_contains(r.err, "holds");
    g_autofree char *runv = hook_fixture_ksm_get(fx, "run");
    g_assert_cmpstr(runv, ==, "0");
    close(fd);
    run_clear(&r);
}

static void test_usage(HookFixture *fx, gconstpointer data)
{
    Run r = { 0 };

    run_cli(fx, &r, NULL);
    g_assert_cmpint(r.status, ==, 2);
    run_clear(&r);
    run_cli(fx, &r, "--all", "--pid", "1", NULL);
    g_assert_cmpint(r.status, ==, 2);
    run_clear(&r);
    run_cli(fx, &r, "--all", "--backend", "ram0", NULL);
    g_assert_cmpint(r.status, ==, 2);
    run_clear(&r);
    run_cli(fx, &r, "--all", "--bogus", NULL);
    g_assert_cmpint(r.status, ==, 2);
    run_clear(&r);

    g_autofree char *run_file = g_build_filename(fx->ksm_dir, "run", NULL);
    g_unlink(run_file);
    run_cli(fx, &r, "--all", NULL);
    g_assert_cmpint(r.status, ==, 3);
    run_clear(&r);
}

/* ---- --pid against a fake QMP server ---- */

typedef enum {
    FAKE_OK, FAKE_NO_COMMAND, FAKE_REFUSE, FAKE_JOB_ERROR,
    /* A hostile peer (a compromised QEMU, or whoever bound the socket path): */
    FAKE_ERROR_CLASS_INT,     /* {"error": {"class": 5}} */
    FAKE_STATUS_NOT_STRING,   /* query-jobs: "status": 7 */
    FAKE_DEEP,                /* JSON nested 200 000 levels */
    FAKE_ENDLESS,             /* a line that never ends */
    FAKE_TRICKLE,             /* a byte every 50 ms, never a whole reply */
    FAKE_ESCAPES,             /* terminal escapes and a forged line in the error */
    FAKE_BLANK,               /* a reply line of blanks only (json-glib: no root) */
    /* QEMU killed during the job (its /proc entry changes, the socket closes): */
    FAKE_DIES_ZOMBIE,         /* a zombie its parent has not reaped */
    FAKE_DIES_GONE,           /* reaped: no /proc/PID */
    FAKE_HANGS_UP,            /* the socket closes, the process lives on */
} FakeMode;

typedef struct {
    FakeMode mode;
    GSocket *listener;
    char *path;
    GThread *thread;
    GPtrArray *commands;   /* "name" or "name {args}" as received */
    char *unmerge_args;    /* the arguments of ksm-unmerge, as JSON */
    gint64 bytes_sent;     /* FAKE_ENDLESS: how much the client swallowed */
    char *proc_dir;        /* the fake QEMU's /proc/PID */
} FakeQmp;

/* The fake QEMU's /proc/PID/stat: its state, and a start time (field 22). */
static void fake_stat(const char *proc_dir, char state)
{
    g_autofree char *path = g_build_filename(proc_dir, "stat", NULL);
    g_autofree char *text = g_strdup_printf("%s (qemu-system-x86) %c 1 1 1 0 -1 4194560 0 0 0 0 "
                                            "10 5 0 0 20 0 3 0 12345 0 0\n",
                                            strrchr(proc_dir, '/') + 1, state);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

/* FAKE_DIES_*: what the kernel shows of a QEMU killed by SIGKILL. */
static void fake_die(FakeQmp *f)
{
    if (f->mode == FAKE_DIES_ZOMBIE) {
        fake_stat(f->proc_dir, 'Z');
        return;
    }
    static const char *const files[] = { "stat", "cmdline", "exe", "status" };
    for (guint i = 0; i < G_N_ELEMENTS(files); i++) {
        g_autofree char *path = g_build_filename(f->proc_dir, files[i], NULL);
        g_unlink(path);
    }
    g_rmdir(f->proc_dir);
}

/* Send until the client hangs up (or 256 MiB: the client never stopped). */
static void send_endless(FakeQmp *f, GOutputStream *out)
{
    static char chunk[65536];
    memset(chunk, 'x', sizeof(chunk));
    g_output_stream_write_all(out, "{\"return\": \"", 12, NULL, NULL, NULL);
    while (f->bytes_sent < (G_GINT64_CONSTANT(256) << 20) &&
           g_output_stream_write_all(out, chunk, sizeof(chunk), NULL, NULL, NULL)) {
        f->bytes_sent += sizeof(chunk);
    }
}

static void send_trickle(GOutputStream *out)
{
    const char *reply = "{\"return\": [{\"id\": \"...";
    for (int i = 0; i < 2000; i++) {
        if (!g_output_stream_write_all(out, reply + (i % strlen(reply)), 1, NULL, NULL, NULL)) {
            return;
        }
        g_usleep(50 * 1000);
    }
}

static void send_deep(GOutputStream *out)
{
    GString *deep = g_string_new("{\"return\": ");
    for (int i = 0; i < 200000; i++) {
        g_string_append_c(deep, '[');
    }
    for (int i = 0; i < 200000; i++) {
        g_string_append_c(deep, ']');
    }
    g_string_append(deep, "}\r\n");
    g_output_stream_write_all(out, deep->str, deep->len, NULL, NULL, NULL);
    g_string_free(deep, TRUE);
}

static void send_line(GOutputStream *out, const char *text)
{
    g_autofree char *line = g_strconcat(text, "\r\n", NULL);
    g_output_stream_write_all(out, line, strlen(line), NULL, NULL, NULL);
}

static gpointer fake_qmp_thread(gpointer data)
{
    FakeQmp *f = data;
    g_autoptr(GSocket) sock = g_socket_accept(f->listener, NULL, NULL);
    if (!sock) {
        return NULL;
    }
    g_autoptr(GSocketConnection) conn = g_socket_connection_factory_create_connection(sock);
    g_autoptr(GDataInputStream) in =
        g_data_input_stream_new(g_io_stream_get_input_stream(G_IO_STREAM(conn)));
    GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(conn));
    char *job_id = NULL;
    int polls = 0;

    send_line(out, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7, \"minor\": 2, "
                   "\"micro\": 0}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}");
    for (;;) {
        g_autofree char *line = g_data_input_stream_read_line_utf8(in, NULL, NULL, NULL);
        if (!line) {
            break;
        }
        g_autoptr(JsonParser) parser = json_parser_new();
        g_assert_true(json_parser_load_from_data(parser, line, -1, NULL));
        JsonObject *cmd = json_node_get_object(json_parser_get_root(parser));
        const char *name = json_object_get_string_member(cmd, "execute");
        g_ptr_array_add(f->commands, g_strdup(name));

        if (strcmp(name, "qmp_capabilities") == 0 || strcmp(name, "job-dismiss") == 0) {
            send_line(out, "{\"return\": {}}");
        } else if (strcmp(name, "ksm-unmerge") == 0) {
            JsonObject *args = json_object_get_object_member(cmd, "arguments");
            JsonNode *node = json_node_new(JSON_NODE_OBJECT);
            json_node_set_object(node, args);
            f->unmerge_args = json_to_string(node, FALSE);
            json_node_unref(node);
            job_id = g_strdup(json_object_get_string_member(args, "job-id"));
            if (f->mode == FAKE_ERROR_CLASS_INT) {
                send_line(out, "{\"error\": {\"class\": 5}}");
            } else if (f->mode == FAKE_DEEP) {
                send_deep(out);
            } else if (f->mode == FAKE_ENDLESS) {
                send_endless(f, out);
                break;
            } else if (f->mode == FAKE_ESCAPES) {
                send_line(out, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
                               "\"\\u001b[2J\\u001b]0;pwned\\u0007\\r\\nunmerge of pid 1: done "
                               "\\u009b31m\\u202egnp.exe\"}}");
            } else if (f->mode == FAKE_BLANK) {
                send_line(out, " \t ");
            } else if (f->mode == FAKE_NO_COMMAND) {
                send_line(out, "{\"error\": {\"class\": \"CommandNotFound\", "
                               "\"desc\": \"The command ksm-unmerge has not been found\"}}");
            } else if (f->mode == FAKE_REFUSE) {
                send_line(out, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
                               "\"unmerging may need 512 MiB but only 100 MiB is available\"}}");
            } else {
                /* An event before the reply: a client must skip it. */
                send_line(out, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
                               "\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": "
                               "\"created\", \"id\": \"x\"}}");
                send_line(out, "{\"return\": {}}");
            }
        } else if (strcmp(name, "query-jobs") == 0 && f->mode == FAKE_TRICKLE) {
            send_trickle(out);
            break;
        } else if (strcmp(name, "query-jobs") == 0 && f->mode == FAKE_STATUS_NOT_STRING) {
            g_autofree char *reply = g_strdup_printf(
                "{\"return\": [{\"id\": \"%s\", \"status\": 7, \"current-progress\": "
                "\"x\", \"total-progress\": [1]}]}", job_id);
            send_line(out, reply);
        } else if (strcmp(name, "query-jobs") == 0 && polls == 1 &&
                   (f->mode == FAKE_DIES_ZOMBIE || f->mode == FAKE_DIES_GONE ||
                    f->mode == FAKE_HANGS_UP)) {
            /* Killed after one "running" answer: the connection closes
             * (when this thread returns) without a reply. */
            if (f->mode != FAKE_HANGS_UP) {
                fake_die(f);
            }
            break;
        } else if (strcmp(name, "query-jobs") == 0) {
            polls++;
            g_autofree char *reply = NULL;
            if (polls < 3) {
                reply = g_strdup_printf("{\"return\": [{\"id\": \"other\", \"type\": \"backup\", "
                                        "\"status\": \"running\", \"current-progress\": 0, "
                                        "\"total-progress\": 1}, {\"id\": \"%s\", \"type\": "
                                        "\"ksm-unmerge\", \"status\": \"running\", "
                                        "\"current-progress\": %d, \"total-progress\": 4}]}",
                                        job_id, polls);
            } else if (f->mode == FAKE_JOB_ERROR) {
                reply = g_strdup_printf("{\"return\": [{\"id\": \"%s\", \"type\": \"ksm-unmerge\", "
                                        "\"status\": \"concluded\", \"current-progress\": 2, "
                                        "\"total-progress\": 4, \"error\": \"madvise: Cannot "
                                        "allocate memory\"}]}", job_id);
            } else {
                reply = g_strdup_printf("{\"return\": [{\"id\": \"%s\", \"type\": \"ksm-unmerge\", "
                                        "\"status\": \"concluded\", \"current-progress\": 4, "
                                        "\"total-progress\": 4}]}", job_id);
            }
            send_line(out, reply);
        } else {
            send_line(out, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}}");
        }
    }
    g_free(job_id);
    return NULL;
}

/*
 * A fake QEMU process PID in the fake /proc: cmdline (argv), exe (a symlink
 * to exe_target) and status (Uid: uid).
 */
static void fake_process(HookFixture *fx, pid_t pid, const GString *argv, const char *exe_target,
                         uid_t uid)
{
    g_autofree char *dir = g_strdup_printf("%s/%d", fx->procfs, (int)pid);
    g_autofree char *cmdline = g_build_filename(dir, "cmdline", NULL);
    g_autofree char *exe = g_build_filename(dir, "exe", NULL);
    g_autofree char *status = g_build_filename(dir, "status", NULL);
    g_autofree char *status_text = g_strdup_printf("Name:\tqemu-system-x86\nUmask:\t0022\n"
                                                   "Uid:\t%u\t%u\t%u\t%u\n", (unsigned)uid,
                                                   (unsigned)uid, (unsigned)uid, (unsigned)uid);

    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    g_assert_true(g_file_set_contents(cmdline, argv->str, argv->len, NULL));
    g_unlink(exe);
    g_assert_cmpint(symlink(exe_target, exe), ==, 0);
    g_assert_true(g_file_set_contents(status, status_text, -1, NULL));
}

/* A QEMU binary as root installs it: ours, mode 0755. */
static char *fake_qemu_binary(HookFixture *fx, const char *name, int mode)
{
    g_autofree char *dir = g_build_filename(fx->root, "bin", NULL);
    char *path = g_build_filename(dir, name, NULL);

    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    g_assert_true(g_file_set_contents(path, "#!/bin/false\n", -1, NULL));
    g_assert_cmpint(chmod(path, mode), ==, 0);
    return path;
}

/*
 * Serve QMP on a socket and name it on the command line of a fake QEMU
 * process.  That process is this test's own pid, so the server thread here
 * is the socket's peer as QEMU would be, unless qemu_pid says another pid
 * (an impostor: the socket is not served by the process named).
 */
static void fake_qmp_start_as(HookFixture *fx, FakeQmp *f, FakeMode mode, gboolean chardev_style,
                              pid_t qemu_pid)
{
    g_autoptr(GError) error = NULL;

    memset(f, 0, sizeof(*f));
    f->mode = mode;
    f->commands = g_ptr_array_new_with_free_func(g_free);
    f->path = g_build_filename(fx->root, "qmp, sock", NULL);   /* a comma: ",," on the cmdline */
    f->listener = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, 0, &error);
    g_assert_no_error(error);
    g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(f->path);
    g_assert_true(g_socket_bind(f->listener, addr, TRUE, &error));
    g_assert_true(g_socket_listen(f->listener, &error));
    f->thread = g_thread_new("fake-qmp", fake_qmp_thread, f);

    /* The fake QEMU's command line, QemuOpts escaping included. */
    g_autofree char *escaped = NULL;
    {
        g_auto(GStrv) parts = g_strsplit(f->path, ",", -1);
        escaped = g_strjoinv(",,", parts);
    }
    GString *argv = g_string_new("/usr/bin/qemu-system-x86_64");
    g_string_append_c(argv, '\0');
    if (chardev_style) {
        g_string_append(argv, "-mon");
        g_string_append_c(argv, '\0');
        g_string_append(argv, "chardev=qmp0,mode=control,pretty=on");
        g_string_append_c(argv, '\0');
        g_string_append(argv, "-chardev");
        g_string_append_c(argv, '\0');
        g_string_append_printf(argv, "socket,id=qmp0,path=%s,server=on,wait=off", escaped);
    } else {
        g_string_append(argv, "-qmp");
        g_string_append_c(argv, '\0');
        g_string_append_printf(argv, "unix:%s,server,nowait", escaped);
    }
    g_string_append_c(argv, '\0');
    g_autofree char *binary = fake_qemu_binary(fx, "qemu-system-x86_64", 0755);
    fake_process(fx, qemu_pid, argv, binary, getuid());
    g_string_free(argv, TRUE);
    f->proc_dir = g_strdup_printf("%s/%d", fx->procfs, (int)qemu_pid);
    fake_stat(f->proc_dir, 'S');
}

static void fake_qmp_start(HookFixture *fx, FakeQmp *f, FakeMode mode, gboolean chardev_style)
{
    fake_qmp_start_as(fx, f, mode, chardev_style, getpid());
}

/* Wait for the server thread: after this every command is in f->commands. */
static void fake_qmp_join(FakeQmp *f)
{
    if (f->thread) {
        g_socket_close(f->listener, NULL);
        g_thread_join(f->thread);
        f->thread = NULL;
    }
}

static void fake_qmp_stop(FakeQmp *f)
{
    fake_qmp_join(f);
    g_object_unref(f->listener);
    g_ptr_array_unref(f->commands);
    g_free(f->unmerge_args);
    g_free(f->proc_dir);
    g_unlink(f->path);
    g_free(f->path);
}

static gboolean has_command(FakeQmp *f, const char *name)
{
    for (guint i = 0; i < f->commands->len; i++) {
        if (strcmp(f->commands->pdata[i], name) == 0) {
            return TRUE;
        }
    }
    return FALSE;
}

static void test_pid_done(HookFixture *fx, gconstpointer data)
{
    FakeQmp f;
    Run r = { 0 };
    g_autofree char *pid = g_strdup_printf("%d", (int)getpid());

    fake_qmp_start(fx, &f, FAKE_OK, GPOINTER_TO_INT(data));
    run_cli(fx, &r, "--pid", pid, "--backend", "pc.ram", "--force", "--json", NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_autoptr(JsonObject) o = json_line(r.out);
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, "done");
    g_assert_cmpstr(json_object_get_string_member(o, "backend"), ==, "pc.ram");
    const char *job_id = json_object_get_string_member(o, "job_id");
    g_assert_true(g_str_has_prefix(job_id, "samepage-unmerge-"));
    fake_qmp_join(&f);
    g_assert_true(has_command(&f, "qmp_capabilities"));
    g_assert_true(has_command(&f, "job-dismiss"));
    hook_assert_contains(f.unmerge_args, "\"id\":\"pc.ram\"");
    hook_assert_contains(f.unmerge_args, "\"force\":true");
    hook_assert_contains(f.unmerge_args, "\"auto-dismiss\":false");
    hook_assert_contains(f.unmerge_args, job_id);
    fake_qmp_stop(&f);
    run_clear(&r);
}

static void test_pid_failures(HookFixture *fx, gconstpointer data)
{
    static const struct {
        FakeMode mode;
        const char *result, *text;
    } cases[] = {
        { FAKE_NO_COMMAND, "unsupported", "not samepage's QEMU" },
        { FAKE_REFUSE, "refused", "only 100 MiB" },
        { FAKE_JOB_ERROR, "failed", "Cannot allocate memory" },
    };
    g_autofree char *pid = g_strdup_printf("%d", (int)getpid());

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        FakeQmp f;
        Run r = { 0 };
        fake_qmp_start(fx, &f, cases[i].mode, FALSE);
        run_cli(fx, &r, "--pid", pid, "--json", NULL);
        g_assert_cmpint(r.status, ==, 1);
        g_autoptr(JsonObject) o = json_line(r.out);
        g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, cases[i].result);
        hook_assert_contains(json_object_get_string_member(o, "error"), cases[i].text);
        fake_qmp_stop(&f);
        run_clear(&r);
    }
}

/* QEMU killed during the job (issue 14's fault campaign): exit 1, and the
 * outcome says that QEMU exited, not only that the connection closed; a
 * closed connection of a QEMU that lives on says no such thing. */
static void test_pid_qemu_dies(HookFixture *fx, gconstpointer data)
{
    static const FakeMode modes[] = { FAKE_DIES_ZOMBIE, FAKE_DIES_GONE, FAKE_HANGS_UP };
    g_autofree char *pid = g_strdup_printf("%d", (int)getpid());
    g_autofree char *exited = g_strdup_printf("QEMU (pid %s) exited during the job", pid);

    for (guint i = 0; i < G_N_ELEMENTS(modes); i++) {
        FakeQmp f;
        Run r = { 0 };
        fake_qmp_start(fx, &f, modes[i], FALSE);
        run_cli(fx, &r, "--pid", pid, NULL);
        g_assert_cmpint(r.status, ==, 1);
        hook_assert_contains(r.out, "failed: ");
        hook_assert_contains(r.err, "query-jobs: QMP connection");
        if (modes[i] == FAKE_HANGS_UP) {
            g_assert_null(strstr(r.out, "exited during"));
        } else {
            hook_assert_contains(r.out, exited);
            hook_assert_contains(r.err, exited);
            hook_assert_contains(r.out, "nothing is left to unmerge or to undo");
        }
        fake_qmp_stop(&f);
        run_clear(&r);
    }
}

/* Only a process running a QEMU binary root installed is QEMU: argv[0] says
 * nothing (before: any process named qemu-system-* was trusted). */
static void test_pid_not_qemu(HookFixture *fx, gconstpointer data)
{
    Run r = { 0 };
    g_autofree char *pid = g_strdup_printf("%d", OTHER_PID);
    GString *argv = g_string_new(NULL);

    g_string_append_len(argv, "/bin/bash\0-c\0x\0", 15);
    fake_process(fx, OTHER_PID, argv, "/bin/bash", 0);
    run_cli(fx, &r, "--pid", pid, NULL);
    g_assert_cmpint(r.status, ==, 1);
    hook_assert_contains(r.err, "not QEMU");
    run_clear(&r);

    /* argv[0] says QEMU, the executable is a shell. */
    g_string_truncate(argv, 0);
    g_string_append_len(argv, "qemu-system-x86_64\0-qmp\0unix:/tmp/q.sock,server=on\0", 51);
    fake_process(fx, OTHER_PID, argv, "/bin/bash", 0);
    run_cli(fx, &r, "--pid", pid, NULL);
    g_assert_cmpint(r.status, ==, 1);
    hook_assert_contains(r.err, "/bin/bash, not QEMU");
    run_clear(&r);

    /* A binary named like QEMU that others may write, or nobody's. */
    g_autofree char *writable = fake_qemu_binary(fx, "qemu-system-aarch64", 0777);
    fake_process(fx, OTHER_PID, argv, writable, 0);
    run_cli(fx, &r, "--pid", pid, NULL);
    g_assert_cmpint(r.status, ==, 1);
    hook_assert_contains(r.err, "writable by no one else");
    run_clear(&r);
    if (geteuid() == 0) {
        g_autofree char *foreign = fake_qemu_binary(fx, "qemu-system-ppc64", 0755);
        g_assert_cmpint(chown(foreign, 65534, 65534), ==, 0);
        fake_process(fx, OTHER_PID, argv, foreign, 0);
        run_cli(fx, &r, "--pid", pid, NULL);
        g_assert_cmpint(r.status, ==, 1);
        hook_assert_contains(r.err, "owned by uid 65534");
        run_clear(&r);
    }
    g_string_free(argv, TRUE);

    run_cli(fx, &r, "--pid", "99999", NULL);
    g_assert_cmpint(r.status, ==, 1);
    hook_assert_contains(r.err, "no process 99999");
    run_clear(&r);
}

/*
 * The socket on QEMU's command line is served by another process (here:
 * this test, while the fake QEMU is OTHER_PID): refused on its peer
 * credentials, before a command is sent.
 */
static void test_pid_impostor(HookFixture *fx, gconstpointer data)
{
    FakeQmp f;
    Run r = { 0 };
    g_autofree char *pid = g_strdup_printf("%d", OTHER_PID);

    fake_qmp_start_as(fx, &f, FAKE_OK, FALSE, OTHER_PID);
    run_cli(fx, &r, "--pid", pid, NULL);
    g_assert_cmpint(r.status, ==, 1);
    g_autofree char *served = g_strdup_printf("served by process %d", (int)getpid());
    hook_assert_contains(r.err, served);
    fake_qmp_join(&f);
    g_assert_cmpuint(f.commands->len, ==, 0);
    fake_qmp_stop(&f);
    run_clear(&r);
}

/* No byte of out or err is a control character but the line ends. */
static void assert_no_controls(const char *text)
{
    for (const char *p = text; *p; p++) {
        if ((guchar)*p < 0x20 && *p != '\n') {
            g_error("control byte 0x%02x in output:\n%s", (guchar)*p, text);
        }
    }
    g_assert_true(g_utf8_validate(text, -1, NULL));
    g_assert_null(strstr(text, "\xc2\x9b"));        /* U+009B, CSI */
    g_assert_null(strstr(text, "\xe2\x80\xae"));    /* U+202E, right-to-left override */
}

/* What a hostile peer sends ends the command with exit 1 and a message,
 * within bounds: no crash, no unbounded memory or time. */
static void test_pid_hostile(HookFixture *fx, gconstpointer data)
{
    static const struct {
        FakeMode mode;
        const char *text;
        const char *timeout;
    } cases[] = {
        { FAKE_ERROR_CLASS_INT, "class or desc is not a string", "600" },
        { FAKE_STATUS_NOT_STRING, "no status string", "600" },
        { FAKE_DEEP, "nested more than", "600" },
        { FAKE_ENDLESS, "longer than", "600" },
        { FAKE_TRICKLE, "in time", "1" },
        { FAKE_BLANK, "not a QMP message", "600" },
    };
    g_autofree char *pid = g_strdup_printf("%d", (int)getpid());

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        FakeQmp f;
        Run r = { 0 };
        fake_qmp_start(fx, &f, cases[i].mode, FALSE);
        run_cli(fx, &r, "--pid", pid, "--timeout", cases[i].timeout, NULL);
        if (g_test_verbose()) {
            g_printerr("case %u: %" G_GINT64_FORMAT " ms\n", i, r.elapsed_ms);
        }
        g_assert_cmpint(r.status, ==, 1);   /* not 139 (SIGSEGV) nor 134 */
        hook_assert_contains(r.err, cases[i].text);
        /* A library's critical is a bug reached from input, even when the
         * command goes on (fatal in the fuzzer: SIGTRAP). */
        g_assert_null(strstr(r.err, "CRITICAL"));
        /* The job timeout (1 s) plus one reply's deadline (10 s), not for ever. */
        g_assert_cmpint(r.elapsed_ms, <, 20000);
        fake_qmp_join(&f);
        /* An endless line is dropped at 1 MiB, not buffered. */
        g_assert_cmpint(f.bytes_sent, <, 16 << 20);
        fake_qmp_stop(&f);
        run_clear(&r);
    }
    /* No child of this test ever grew past 100 MiB (the endless line did: 400 MB). */
    struct rusage ru;
    g_assert_cmpint(getrusage(RUSAGE_CHILDREN, &ru), ==, 0);
    g_assert_cmpint(ru.ru_maxrss, <, 100 * 1024);
}

/* QEMU's error text reaches root's terminal escaped: no escape sequence,
 * no forged line. */
static void test_pid_escapes(HookFixture *fx, gconstpointer data)
{
    g_autofree char *pid = g_strdup_printf("%d", (int)getpid());
    const char *json_flag[] = { NULL, "--json" };

    for (guint i = 0; i < G_N_ELEMENTS(json_flag); i++) {
        FakeQmp f;
        Run r = { 0 };
        fake_qmp_start(fx, &f, FAKE_ESCAPES, FALSE);
        run_cli(fx, &r, "--pid", pid, json_flag[i], NULL);
        g_assert_cmpint(r.status, ==, 1);
        assert_no_controls(r.out);
        assert_no_controls(r.err);
        g_assert_null(strstr(r.out, "\nunmerge of pid 1: done"));
        g_assert_null(strstr(r.err, "\nunmerge of pid 1: done"));
        hook_assert_contains(i ? r.out : r.err, "\\x1b[2J");
        if (i) {
            g_autoptr(JsonObject) o = json_line(r.out);
            g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, "refused");
        } else {
            /* One line on stdout: the outcome. */
            g_assert_cmpint(strchr(r.out, '\n') - r.out, ==, (int)strlen(r.out) - 1);
        }
        fake_qmp_stop(&f);
        run_clear(&r);
    }
}

/* ---- the parsers, in-process ---- */

/*
 * Lines json-glib parses without an error and without a root node: a QMP
 * message parser must refuse them, not hand NULL to JSON_NODE_HOLDS_OBJECT
 * (a GLib critical: fatal here as under the fuzzer, where fuzz-qmp-reply
 * died of it with SIGTRAP; its input is fuzz/corpus/qmp-reply/regress-blank-line).
 */
static void test_message_without_root(void)
{
    static const char *const lines[] = {
        " ", "\t", " \t  ", "\xef\xbb\xbf", "/* a comment */", "// a comment",
    };

    for (guint i = 0; i < G_N_ELEMENTS(lines); i++) {
        g_autoptr(GError) error = NULL;
        JsonObject *obj = cli_qmp_parse_message(lines[i], strlen(lines[i]), &error);
        g_assert_null(obj);
        g_assert_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_MALFORMED);
        hook_assert_contains(error->message, "not a QMP message");
    }
    /* What does parse still does. */
    g_autoptr(GError) error = NULL;
    const char *reply = " {\"return\": {}} ";
    g_autoptr(JsonObject) ok = cli_qmp_parse_message(reply, strlen(reply), &error);
    g_assert_no_error(error);
    g_assert_true(json_object_has_member(ok, "return"));
}

static char *find(const char *cwd, GError **error, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    va_list args;
    const char *arg;

    g_ptr_array_add(argv, (gpointer)"qemu-system-x86_64");
    va_start(args, error);
    while ((arg = va_arg(args, const char *))) {
        g_ptr_array_add(argv, (gpointer)arg);
    }
    va_end(args);
    return cli_qmp_find_socket_in_argv((const char *const *)argv->pdata, argv->len, cwd, error);
}

static void test_socket_parser(void)
{
    g_autoptr(GError) e = NULL;
    char *p;

    p = find(NULL, &e, "-qmp", "unix:/run/q.sock,server=on,wait=off", NULL);
    g_assert_cmpstr(p, ==, "/run/q.sock");
    g_free(p);
    p = find(NULL, &e, "--qmp-pretty", "unix:/a,,b,server,nowait", NULL);
    g_assert_cmpstr(p, ==, "/a,b");
    g_free(p);
    p = find("/var/lib/vm", &e, "-qmp", "unix:rel.sock,server", NULL);
    g_assert_cmpstr(p, ==, "/var/lib/vm/rel.sock");
    g_free(p);
    /* -mon before its -chardev; an HMP monitor and a serial socket beside. */
    p = find(NULL, &e, "-mon", "chardev=hmp,mode=readline", "-mon", "qmp0,mode=control",
             "-chardev", "socket,id=hmp,path=/hmp.sock,server=on",
             "-chardev", "socket,id=serial,path=/serial.sock,server=on",
             "-chardev", "socket,id=qmp0,path=/qmp.sock,server=on,wait=off", NULL);
    g_assert_cmpstr(p, ==, "/qmp.sock");
    g_free(p);

    static const struct {
        const char *opt, *value, *why;
    } bad[] = {
        { "-qmp", "tcp:localhost:4444,server", "not a unix socket" },
        { "-qmp", "unix:/c.sock", "client socket" },
        { "-qmp", "unix:/c.sock,server=off", "client socket" },
        { "-qmp", "unix:/c.sock,server=on,abstract=on", "abstract" },
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) err = NULL;
        g_assert_null(find(NULL, &err, bad[i].opt, bad[i].value, NULL));
        hook_assert_contains(err->message, bad[i].why);
    }
    /* libvirt's style: the monitor socket is passed as a file descriptor. */
    g_autoptr(GError) err = NULL;
    g_assert_null(find(NULL, &err, "-chardev", "socket,id=charmonitor,fd=23,server=on,wait=off",
                       "-mon", "chardev=charmonitor,id=monitor,mode=control", NULL));
    hook_assert_contains(err->message, "--domain");
    g_autoptr(GError) none = NULL;
    g_assert_null(find(NULL, &none, "-m", "512", NULL));
    hook_assert_contains(none->message, "no QMP unix socket");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!g_getenv("SAMEPAGE_CLI")) {
        g_printerr("SAMEPAGE_CLI is not set (meson test sets it)\n");
        return 77;
    }
    HOOK_TEST("/samepage-unmerge/all/done", test_all_done);
    HOOK_TEST("/samepage-unmerge/all/refused", test_all_refused);
    HOOK_TEST("/samepage-unmerge/all/lock-busy", test_all_lock_busy);
    HOOK_TEST("/samepage-unmerge/usage", test_usage);
    g_test_add("/samepage-unmerge/pid/done-qmp-option", HookFixture, GINT_TO_POINTER(FALSE),
               hook_fixture_setup, test_pid_done, hook_fixture_teardown);
    g_test_add("/samepage-unmerge/pid/done-chardev-mon", HookFixture, GINT_TO_POINTER(TRUE),
               hook_fixture_setup, test_pid_done, hook_fixture_teardown);
    HOOK_TEST("/samepage-unmerge/pid/failures", test_pid_failures);
    HOOK_TEST("/samepage-unmerge/pid/qemu-dies", test_pid_qemu_dies);
    HOOK_TEST("/samepage-unmerge/pid/not-qemu", test_pid_not_qemu);
    HOOK_TEST("/samepage-unmerge/pid/impostor", test_pid_impostor);
    HOOK_TEST("/samepage-unmerge/pid/hostile-replies", test_pid_hostile);
    HOOK_TEST("/samepage-unmerge/pid/escapes", test_pid_escapes);
    g_test_add_func("/samepage-unmerge/socket-parser", test_socket_parser);
    g_test_add_func("/samepage-unmerge/message-without-root", test_message_without_root);
    return g_test_run();
}
