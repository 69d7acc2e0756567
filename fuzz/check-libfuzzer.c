/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz/check-libfuzzer.c: meson setup links this to see that clang has libFuzzer. */
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return 0;
}
