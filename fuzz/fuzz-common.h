/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-common.h: what the libFuzzer harnesses share.
 *
 * Parsers that read files get a fake sysfs/procfs tree (like
 * tests/unit/fake-tree.c): <tmp>/sys/kernel/mm/ksm and <tmp>/proc, made once
 * per process under TMPDIR (fuzz/run-fuzzer points it at a directory it
 * removes).  GLib criticals abort: a g_return_if_fail reached from input is a
 * bug in the caller, as in the unit tests (G_DEBUG=fatal-criticals).
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <glib.h>
#include "ksm/ksm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called at the start of every input: makes the tree and the context once. */
void fuzz_init(void);
/* The fake tree's root, sysfs and procfs roots, and a context on them. */
const char *fuzz_root(void);
const KsmContext *fuzz_ctx(void);
/* <root>/<rel>, parents created, content written whole (may hold NULs). */
char *fuzz_write(const char *rel, const void *data, size_t size);
/* A NUL-terminated copy of the input. */
char *fuzz_text(const uint8_t *data, size_t size);
/* Split data at NULs (like /proc/PID/cmdline) into a NULL-terminated vector. */
char **fuzz_split_nul(const uint8_t *data, size_t size, guint *n);

#endif
