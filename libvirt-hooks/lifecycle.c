/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lifecycle.c: what the hook decides at each libvirt operation.
 *
 *   prepare    validate the policy (refusals stop the start, with the reason
 *              in virsh's error); trust groups under policy=strict; record a
 *              mergeable guest; make sure ksmd runs
 *   started    note the guest's QEMU pid (to tell stale state later)
 *   stopped,   forget the guest; if it was the last mergeable one, hand the
 *   release    safe unmerge to a detached child
 *   reconnect, libvirtd restarted (or attached a QEMU): record the guest
 *   attach     again, so the next stop decides right
 *   migrate    (ksm-hook.c sends it to migrate.c before any state is
 *              opened) an incoming guest: does it fit, unmerged
 *   others     exit 0 at once
 *
 * Why nothing happens before a guest stops: libvirt calls no hook before
 * shutdown, and unmerging a guest's pages just before it exits frees nothing
 * (exit frees them) while needing the most memory at the worst moment.  An
 * operator unmerges one guest with `samepage unmerge --domain NAME`.
 */
#include <stdarg.h>
#include <string.h>

#include "hook.h"

static void log_warnings(const HookPolicy *p)
{
    for (guint i = 0; i < p->warnings->len; i++) {
        hook_log(HOOK_LOG_WARNING, "%s", (const char *)p->warnings->pdata[i]);
    }
}

/* The running mergeable guests (other than uuid) whose group differs. */
static GString *group_conflicts(GPtrArray *guests, const HookPolicy *p, guint *n_others)
{
    GString *conflicts = g_string_new(NULL);

    *n_others = 0;
    for (guint i = 0; i < guests->len; i++) {
        const HookDomainState *st = guests->pdata[i];
        if (strcmp(st->uuid, p->uuid) == 0) {
            continue;
        }
        (*n_others)++;
        if (strcmp(st->group, p->group) != 0) {
            g_autofree char *qname = hook_quote(st->name ? st->name : "");
            g_string_append_printf(conflicts, "%s'%s' (group '%s')",
                                   conflicts->len ? ", " : "", qname, st->group);
        }
    }
    return conflicts;
}

/* scan=tune, and the samepage tune the hook recorded is gone (SIGKILL, a
 * crash): the next event repairs it (under the lock, in a detached child). */
static gboolean tune_needs_restart(HookEnv *env)
{
    gboolean died = FALSE;

    if (env->cfg->scan_mode != HOOK_SCAN_TUNE || hook_tune_running(env, NULL, &died) || !died) {
        return FALSE;
    }
    hook_log(HOOK_LOG_WARNING, "samepage tune, started by the hook for the running mergeable "
             "guests, is gone (killed or crashed): starting it again");
    return TRUE;
}

static int refuse(const char *format, ...) G_GNUC_PRINTF(1, 2);
static int refuse(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    g_autofree char *message = g_strdup_vprintf(format, args);
    va_end(args);
    /* One line on stderr: libvirt puts it in the error virsh prints. */
    hook_log(HOOK_LOG_ERROR, "start refused: %s", message);
    return HOOK_EXIT_REFUSE;
}

static int do_prepare(HookEnv *env, const char *xml, gsize len)
{
    g_auto(HookPolicy) p;
    g_autoptr(GError) error = NULL;

    hook_policy_init(&p);
    if (!hook_policy_parse(xml, len, &p, &error)) {
        if (p.name) {   /* else keep the name libvirt passed */
            hook_log_set_domain(p.name, p.uuid);
        }
        return refuse("%s", error->message);
    }
    hook_log_set_domain(p.name, p.uuid);
    log_warnings(&p);
    if (!p.mergeable) {
        hook_state_remove(env->store, p.uuid);   /* a leftover from an earlier run */
        hook_log(HOOK_LOG_INFO, "prepare: memory not mergeable (<nosharepages/>): no KSM action");
        return HOOK_EXIT_OK;
    }

    g_autoptr(KsmHostLock) lock = ksm_host_lock_acquire(env->lock_path,
                                                        env->cfg->lock_timeout_ms, &error);
    if (!lock) {
        /* Without the lock the group check and the first-guest decision
         * would be guesses; the start is retried by the operator. */
        return refuse("%s (the guest is mergeable, so the hook must record it first; "
                      "retry in a moment)", error->message);
    }

    g_autoptr(GPtrArray) guests = hook_state_list(env->store, TRUE);
    guint others;
    g_autoptr(GString) conflicts = group_conflicts(guests, &p, &others);
    if (conflicts->len) {
        /* The other guests and their groups belong to other tenants: they go
         * to the host's log only.  stderr, which libvirt hands to whoever
         * starts this guest, says only that the group is not this host's. */
        if (env->cfg->policy == HOOK_POLICY_STRICT) {
            hook_log_host(HOOK_LOG_ERROR, "start refused: trust group '%s' differs from "
                          "running mergeable guest(s) %s (policy=strict)", p.group,
                          conflicts->str);
            return refuse("trust group '%s' differs from the trust group of the mergeable "
                          "guests running on this host: guests of different trust groups "
                          "must not share pages (policy=strict); start it on another host, "
                          "or ask the host's operator (its log names the guests); or start "
                          "it with <nosharepages/> and <ksm:policy merge=\"no\"/>", p.group);
        }
        hook_log_host(HOOK_LOG_WARNING, "trust group '%s' differs from running mergeable "
                      "guest(s) %s: allowed by policy=permissive, their pages may merge",
                      p.group, conflicts->str);
    }

    HookDomainState st = {
        .name = p.name, .group = p.group, .phase = (char *)"prepared",
    };
    memcpy(st.uuid, p.uuid, sizeof(st.uuid));
    if (!hook_state_write(env->store, &st, &error)) {
        return refuse("cannot record the guest's KSM state: %s", error->message);
    }
    hook_log(HOOK_LOG_INFO, "prepare: mergeable, trust group '%s', %u other mergeable "
             "guest(s)", p.group, others);

    if (!ksm_available(env->ctx, &error)) {
        hook_log(HOOK_LOG_WARNING, "this host has no KSM, the guest starts without it: %s",
                 error->message);
        return HOOK_EXIT_OK;
    }
    /* KSM failing to start is no reason to keep the guest from running. */
    if (!hook_ensure_ksmd(env, others + 1, &error)) {
        hook_log(HOOK_LOG_ERROR, "cannot start ksmd: %s", error->message);
    }
    return HOOK_EXIT_OK;
}

/* started, reconnect, attach: the guest runs; record it with its QEMU. */
static int do_running(HookEnv *env, const char *op, const char *xml, gsize len)
{
    g_auto(HookPolicy) p;
    g_autoptr(GError) error = NULL;
    HookDomainState st = { 0 };
    gboolean had_state;

    hook_policy_init(&p);
    if (!hook_policy_parse(xml, len, &p, &error)) {
        /* The guest runs already: refusing now would help nobody. */
        if (p.name) {
            hook_log_set_domain(p.name, p.uuid);
        }
        hook_log(HOOK_LOG_WARNING, "%s: policy not readable, guest not recorded: %s", op,
                 error->message);
        return HOOK_EXIT_OK;
    }
    hook_log_set_domain(p.name, p.uuid);
    if (!p.mergeable) {
        hook_state_remove(env->store, p.uuid);
        hook_log(HOOK_LOG_DEBUG, "%s: not mergeable, nothing to record", op);
        return HOOK_EXIT_OK;
    }

    had_state = hook_state_read(env->store, p.uuid, &st, NULL);
    hook_domain_state_clear(&st);
    memcpy(st.uuid, p.uuid, sizeof(st.uuid));
    st.name = g_strdup(p.name);
    st.group = g_strdup(p.group);
    st.phase = g_strdup(strcmp(op, "started") == 0 ? "started" : "reconnected");
    st.qemu_pid = hook_find_qemu(env->ctx, env->store->libvirt_dir, p.name, p.uuid,
                                 &st.qemu_start_time);
    if (st.qemu_pid == 0) {
        hook_log(HOOK_LOG_WARNING, "%s: no QEMU found through libvirt's pid file in %s: the "
                 "guest counts as running for %d minutes, then as gone", op,
                 env->store->libvirt_dir, 10);
    }
    /*
     * One file per domain, written atomically, and libvirt runs a domain's
     * hooks one at a time: this write needs no lock.  Decisions across
     * domains (which read every file) take it.
     */
    if (!hook_state_write(env->store, &st, &error)) {
        hook_log(HOOK_LOG_ERROR, "%s: cannot record the guest: %s", op, error->message);
        hook_domain_state_clear(&st);
        return HOOK_EXIT_OK;
    }
    hook_log(HOOK_LOG_INFO, "%s: mergeable guest recorded (QEMU pid %d, trust group '%s')%s",
             op, (int)st.qemu_pid, st.group,
             had_state ? "" : ", state rebuilt");
    hook_domain_state_clear(&st);

    /* A guest we had not seen start (hook installed meanwhile, state lost)
     * on a host where ksmd does not run: start it, without holding libvirtd.
     * The same when the scan policy died meanwhile (killed, crashed). */
    if ((!had_state && strcmp(op, "started") == 0) || tune_needs_restart(env)) {
        hook_reconcile_detached(env, HOOK_RECONCILE_ENSURE);
    }
    return HOOK_EXIT_OK;
}

static int do_stopped(HookEnv *env, const char *op, const char *xml, gsize len)
{
    g_auto(HookPolicy) p;
    g_autoptr(GError) error = NULL;

    hook_policy_init(&p);
    if (!hook_policy_identify(xml, len, &p, &error)) {
        if (p.name) {
            hook_log_set_domain(p.name, NULL);
        }
        hook_log(HOOK_LOG_ERROR, "%s: cannot tell which domain this is: %s", op, error->message);
        return HOOK_EXIT_OK;
    }
    hook_log_set_domain(p.name, p.uuid);
    if (!hook_state_remove(env->store, p.uuid)) {
        /* Not mergeable, refused at prepare, or stopped already handled it. */
        hook_log(HOOK_LOG_DEBUG, "%s: not a recorded mergeable guest, nothing to do", op);
        return HOOK_EXIT_OK;
    }
    /*
     * A first look without the lock: each stop removes its own file before
     * counting, so of two guests stopping together at least the later one
     * sees none left.  The detached child decides again under the lock.
     */
    g_autoptr(GPtrArray) guests = hook_state_list(env->store, FALSE);
    if (guests->len > 0) {
        hook_log(HOOK_LOG_INFO, "%s: guest forgotten; %u mergeable guest(s) still running: "
                 "no unmerge", op, guests->len);
        if (tune_needs_restart(env)) {
            hook_reconcile_detached(env, HOOK_RECONCILE_ENSURE);
        }
        return HOOK_EXIT_OK;
    }
    hook_log(HOOK_LOG_INFO, "%s: last mergeable guest gone", op);
    hook_reconcile_detached(env, HOOK_RECONCILE_UNMERGE);
    return HOOK_EXIT_OK;
}

int hook_handle(HookEnv *env, const char *name, const char *op, const char *subop,
                const char *xml, gsize len)
{
    hook_log_set_domain(name, NULL);
    /* A detached child of an earlier event killed before it finished. */
    hook_state_detached_check(env->store);
    if (strcmp(op, "prepare") == 0) {
        return do_prepare(env, xml, len);
    }
    if (strcmp(op, "started") == 0 || strcmp(op, "reconnect") == 0 ||
        strcmp(op, "attach") == 0) {
        return do_running(env, op, xml, len);
    }
    if (strcmp(op, "stopped") == 0 || strcmp(op, "release") == 0) {
        return do_stopped(env, op, xml, len);
    }
    return HOOK_EXIT_OK;
}
