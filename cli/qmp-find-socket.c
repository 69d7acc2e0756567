/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qmp-find-socket.c: where a running QEMU listens for QMP, from its command
 * line.  (Opening the socket is qmp-unix.c's job.)
 *
 * Two spellings reach a unix socket QMP server:
 *   -qmp unix:PATH,server=on,wait=off      (also -qmp-pretty, "server,nowait")
 *   -chardev socket,id=ID,path=PATH,server=on,wait=off
 *   -mon chardev=ID,mode=control
 * QEMU option values escape a comma as ",,"; options may be spelled with
 * one dash or two.  Reading /proc/PID/cmdline is not KSM business, so this
 * is samepage's own code.
 */
#include <string.h>
#include <unistd.h>

#include "qmp.h"

/* Split "a,b=c,,d" QemuOpts style: ",," is a literal comma. */
static GPtrArray *split_opts(const char *text)
{
    GPtrArray *parts = g_ptr_array_new_with_free_func(g_free);
    GString *cur = g_string_new(NULL);

    for (const char *p = text; *p; p++) {
        if (*p == ',') {
            if (p[1] == ',') {
                g_string_append_c(cur, ',');
                p++;
                continue;
            }
            g_ptr_array_add(parts, g_string_free(cur, FALSE));
            cur = g_string_new(NULL);
            continue;
        }
        g_string_append_c(cur, *p);
    }
    g_ptr_array_add(parts, g_string_free(cur, FALSE));
    return parts;
}

/*
 * key=value pairs; a bare first word is the implied key's value
 * (-chardev socket,... -> backend=socket; -mon ID -> chardev=ID); other bare
 * words are flags: "server" -> server=on, "noserver" -> server=off,
 * "nowait" -> wait=off.
 */
static GHashTable *parse_opts(const char *text, const char *implied)
{
    GHashTable *opts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    g_autoptr(GPtrArray) parts = split_opts(text);

    for (guint i = 0; i < parts->len; i++) {
        const char *part = parts->pdata[i];
        const char *eq = strchr(part, '=');
        if (eq) {
            g_hash_table_replace(opts, g_strndup(part, eq - part), g_strdup(eq + 1));
        } else if (i == 0 && implied) {
            g_hash_table_replace(opts, g_strdup(implied), g_strdup(part));
        } else if (g_str_has_prefix(part, "no") && part[2]) {
            g_hash_table_replace(opts, g_strdup(part + 2), g_strdup("off"));
        } else if (*part) {
            g_hash_table_replace(opts, g_strdup(part), g_strdup("on"));
        }
    }
    return opts;
}

static gboolean is_on(GHashTable *opts, const char *key)
{
    const char *v = g_hash_table_lookup(opts, key);
    return v && (strcmp(v, "on") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 ||
                 strcmp(v, "y") == 0);
}

static const char *option_name(const char *arg)
{
    if (arg[0] != '-') {
        return NULL;
    }
    return arg[1] == '-' ? arg + 2 : arg + 1;
}

static char *absolute(const char *path, const char *cwd)
{
    if (g_path_is_absolute(path) || !cwd) {
        return g_strdup(path);
    }
    return g_build_filename(cwd, path, NULL);
}

/* A unix socket QMP server from a chardev's options, or why not. */
static char *chardev_socket(GHashTable *opts, const char *what, const char *cwd, GString *why)
{
    const char *path = g_hash_table_lookup(opts, "path");

    if (!path) {
        if (g_hash_table_contains(opts, "fd")) {
            g_string_append_printf(why, "; %s is a socket passed as a file descriptor "
                                   "(libvirt does this: use --domain)", what);
        } else if (g_hash_table_contains(opts, "host") || g_hash_table_contains(opts, "port")) {
            g_string_append_printf(why, "; %s is a TCP socket (only unix sockets are used)",
                                   what);
        }
        return NULL;
    }
    if (is_on(opts, "abstract")) {
        g_string_append_printf(why, "; %s is an abstract socket", what);
        return NULL;
    }
    if (!is_on(opts, "server")) {
        g_string_append_printf(why, "; %s is a client socket (QEMU connects out: server=off)",
                               what);
        return NULL;
    }
    return absolute(path, cwd);
}

char *cli_qmp_find_socket_in_argv(const char *const *argv, guint argc, const char *cwd,
                                  GError **error)
{
    g_autoptr(GHashTable) chardevs =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_hash_table_unref);
    g_autoptr(GPtrArray) monitors = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GString) why = g_string_new(NULL);

    for (guint i = 1; i + 1 < argc; i++) {
        const char *name = option_name(argv[i]);
        const char *value = argv[i + 1];
        if (!name) {
            continue;
        }
        if (strcmp(name, "qmp") == 0 || strcmp(name, "qmp-pretty") == 0) {
            i++;
            if (!g_str_has_prefix(value, "unix:")) {
                g_autofree char *shown = cli_escape_text(value);
                g_string_append_printf(why, "; -%s %s is not a unix socket", name, shown);
                continue;
            }
            g_autoptr(GHashTable) opts = parse_opts(value + strlen("unix:"), "path");
            g_autofree char *what = g_strdup_printf("-%s", name);
            char *path = chardev_socket(opts, what, cwd, why);
            if (path) {
                return path;
            }
        } else if (strcmp(name, "chardev") == 0) {
            i++;
            GHashTable *opts = parse_opts(value, "backend");
            const char *id = g_hash_table_lookup(opts, "id");
            if (id && g_strcmp0(g_hash_table_lookup(opts, "backend"), "socket") == 0) {
                g_hash_table_replace(chardevs, g_strdup(id), opts);
            } else {
                g_hash_table_unref(opts);
            }
        } else if (strcmp(name, "mon") == 0) {
            i++;
            g_autoptr(GHashTable) opts = parse_opts(value, "chardev");
            const char *id = g_hash_table_lookup(opts, "chardev");
            if (id && g_strcmp0(g_hash_table_lookup(opts, "mode"), "control") == 0) {
                g_ptr_array_add(monitors, g_strdup(id));
            }
        }
    }
    /* -mon may come before or after its -chardev: match once all are read. */
    for (guint i = 0; i < monitors->len; i++) {
        GHashTable *opts = g_hash_table_lookup(chardevs, monitors->pdata[i]);
        g_autofree char *id = cli_escape_text(monitors->pdata[i]);
        g_autofree char *what = g_strdup_printf("chardev '%s'", id);
        char *path = opts ? chardev_socket(opts, what, cwd, why) : NULL;
        if (path) {
            return path;
        }
    }
    g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_NOT_FOUND,
                "no QMP unix socket server on the command line (-qmp unix:PATH,server=on or "
                "-chardev socket,path=PATH,server=on with -mon mode=control)%s", why->str);
    return NULL;
}

char *cli_qmp_find_socket_of_pid(const KsmContext *ctx, pid_t pid, GError **error)
{
    g_autofree char *dir = g_strdup_printf("%s/%d", ksm_context_procfs(ctx), (int)pid);
    g_autofree char *cmdline_path = g_build_filename(dir, "cmdline", NULL);
    g_autofree char *cwd_link = g_build_filename(dir, "cwd", NULL);
    g_autofree char *text = NULL;
    gsize len = 0;

    if (!g_file_get_contents(cmdline_path, &text, &len, NULL) || len == 0) {
        g_set_error(error, CLI_QMP_ERROR, CLI_QMP_ERROR_NOT_FOUND,
                    "no process %d (or it has no command line)", (int)pid);
        return NULL;
    }
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    for (const char *arg = text; arg < text + len; arg += strlen(arg) + 1) {
        g_ptr_array_add(argv, (gpointer)arg);
    }
    /* argv[0] proves nothing: the executable must be a QEMU root installed. */
    if (!cli_qmp_check_qemu_process(ctx, pid, error)) {
        return NULL;
    }
    /* A relative socket path is relative to QEMU's working directory. */
    g_autofree char *cwd = g_file_read_link(cwd_link, NULL);
    char *path = cli_qmp_find_socket_in_argv((const char *const *)argv->pdata, argv->len,
                                             cwd, error);
    if (!path) {
        g_prefix_error(error, "QEMU process %d: ", (int)pid);
    }
    return path;
}
