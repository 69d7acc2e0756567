/*
 * samepage: a thread of samepage's own, for work the main loop must not
 * wait for (an unmerge's madvise calls, an exact count's walk).
 *
 * QEMU's thread pool starts a thread whenever it has none idle, and QEMU
 * aborts when a thread cannot be created (qemu_thread_create).  The work
 * samepage hands off is the work that meets limits: an unmerge fills its
 * memory cgroup up to the limit, where the kernel refuses the memory for
 * a new thread's stack, and a pids limit refuses the thread outright.  So
 * the thread is started before the work, where a failure is an error for
 * the QMP command and changes nothing, and no thread is asked for in the
 * middle of it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "ksm-backend.h"
#include "qemu/atomic.h"
#include "qemu/coroutine.h"
#include "qemu/thread.h"
#include "qapi/error.h"

struct KsmThread {
    pthread_t thread;
    QemuSemaphore work;         /* posted for each call, and to quit */
    KsmThreadFunc *func;        /* NULL: quit */
    void *arg;
    int ret;
    Coroutine *co;              /* the caller, woken when func returns */
};

static void *ksm_thread_main(void *opaque)
{
    KsmThread *t = opaque;

    for (;;) {
        qemu_sem_wait(&t->work);
        if (!t->func) {
            return NULL;
        }
        t->ret = t->func(t->arg);
        /* The result is in place before the caller can run again. */
        smp_wmb();
        aio_co_wake(t->co);
    }
}

KsmThread *ksm_thread_new(const char *what, Error **errp)
{
    KsmThread *t = g_new0(KsmThread, 1);
    sigset_t all, old;
    int err;

    qemu_sem_init(&t->work, 0);
    /* Signals are for QEMU's own threads, as qemu_thread_create has it. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&t->thread, NULL, ksm_thread_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        error_setg_errno(errp, err, "%s needs a thread and none could be "
                         "started", what);
        error_append_hint(errp, "A memory cgroup at its limit or a pids "
                          "limit refuses new threads: raise the limit and "
                          "try again.\n");
        qemu_sem_destroy(&t->work);
        g_free(t);
        return NULL;
    }
    return t;
}

int coroutine_fn ksm_thread_run_co(KsmThread *t, KsmThreadFunc *func,
                                   void *arg)
{
    assert(func && !t->func);
    t->func = func;
    t->arg = arg;
    t->co = qemu_coroutine_self();
    qemu_sem_post(&t->work);
    qemu_coroutine_yield();
    /* Pairs with the thread's smp_wmb(): read the result it wrote. */
    smp_rmb();
    t->func = NULL;
    return t->ret;
}

void ksm_thread_free(KsmThread *t)
{
    if (!t) {
        return;
    }
    /* Idle between calls: it sees func NULL and returns at once. */
    assert(!t->func);
    qemu_sem_post(&t->work);
    pthread_join(t->thread, NULL);
    qemu_sem_destroy(&t->work);
    g_free(t);
}
