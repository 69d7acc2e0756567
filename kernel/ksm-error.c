/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ksm-error.c: the libksm GError domain. */
#include "ksm/ksm-error.h"

G_DEFINE_QUARK(ksm-error-quark, ksm_error)
