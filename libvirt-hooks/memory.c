/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * memory.c: how much memory a guest has, from its domain XML.
 *
 *   <memory unit='KiB'>8388608</memory>
 *   <currentMemory unit='KiB'>4194304</currentMemory>
 *
 * <memory> is the guest's RAM (hotplugged DIMMs included); <currentMemory>
 * is the balloon's target, at most <memory>.  Units and their defaults are
 * libvirt's own (virScaleInteger): KiB when the attribute is absent; b,
 * byte or bytes; k, m, g, t, p, e alone or followed by iB for powers of 1024; KB,
 * MB, ... for powers of 1000; case-insensitive.  libvirt accepts at most
 * LLONG_MAX bytes and rounds up to whole KiB; so does this.
 *
 * The XML is read through the hook's one reader (policy.c, domain-xml.h),
 * with its refusals: malformed XML, a <!DOCTYPE>, no valid <uuid>.
 */
#include <string.h>

#include "domain-xml.h"

/* Bytes per unit, libvirt's spelling; 0 for a unit libvirt does not know. */
static guint64 unit_scale(const char *unit)
{
    static const char powers[] = "kmgtpe";

    if (!unit || !*unit) {
        return 1024;   /* libvirt's default unit for memory sizes: KiB */
    }
    if (g_ascii_strcasecmp(unit, "b") == 0 || g_ascii_strcasecmp(unit, "byte") == 0 ||
        g_ascii_strcasecmp(unit, "bytes") == 0) {
        return 1;
    }
    const char *p = strchr(powers, g_ascii_tolower(unit[0]));
    if (!p) {
        return 0;
    }
    guint base;
    if (unit[1] == '\0' || g_ascii_strcasecmp(unit + 1, "iB") == 0) {
        base = 1024;
    } else if (g_ascii_strcasecmp(unit + 1, "B") == 0) {
        base = 1000;
    } else {
        return 0;
    }
    guint64 scale = 1;
    for (long i = 0; i <= p - powers; i++) {
        scale *= base;   /* at most 1024^6 = 2^60: no overflow */
    }
    return scale;
}

/* One size element: its bytes, or an error naming the element and what is
 * wrong.  *present is FALSE (and no error) when the element is absent. */
static gboolean read_size(xmlNodePtr domain, const char *name, guint64 *bytes,
                          gboolean *present, GError **error)
{
    xmlNodePtr node = hook_xml_child(domain, name);

    *present = node != NULL;
    if (!node) {
        return TRUE;
    }
    g_autofree char *text = hook_xml_text(node);
    g_autofree char *unit = (char *)xmlGetProp(node, (const xmlChar *)"unit");
    g_autofree char *qtext = hook_quote(text ? text : "");
    g_autofree char *qunit = unit ? hook_quote(unit) : g_strdup("KiB");
    guint64 scale = unit_scale(unit);
    guint64 value;

    if (scale == 0) {
        g_set_error(error, HOOK_ERROR, 0, "the domain XML's <%s unit='%s'>: unknown unit "
                    "(libvirt's are b, KiB, MiB, GiB, TiB, PiB, EiB, KB, MB, ..., k, M, G, ...)",
                    name, qunit);
        return FALSE;
    }
    gboolean digits = text && *text;
    for (const char *c = text ? text : ""; *c; c++) {
        digits = digits && g_ascii_isdigit(*c);
    }
    if (!digits || !g_ascii_string_to_unsigned(text, 10, 0, G_MAXUINT64, &value, NULL)) {
        g_set_error(error, HOOK_ERROR, 0, "the domain XML's <%s>%s</%s>: not a size (a whole "
                    "number of %s%s)", name, qtext, name, qunit,
                    digits ? " up to 2^64 - 1" : "");
        return FALSE;
    }
    if (value > (guint64)G_MAXINT64 / scale) {
        g_set_error(error, HOOK_ERROR, 0, "the domain XML's <%s unit='%s'>%s</%s> is over "
                    "8 EiB, more than libvirt accepts: not a guest this host can run",
                    name, qunit, qtext, name);
        return FALSE;
    }
    value *= scale;
    /* libvirt keeps sizes in KiB, rounded up. */
    *bytes = (value + 1023) / 1024 * 1024;
    return TRUE;
}

gboolean hook_guest_memory_read(const char *xml, gsize len, HookPolicy *id,
                                HookGuestMemory *mem, GError **error)
{
    xmlDocPtr doc = hook_xml_read(xml, len, error);
    gboolean ok = FALSE, present;

    memset(mem, 0, sizeof(*mem));
    if (!doc || !hook_xml_identify(doc, id, error)) {
        goto out;
    }
    xmlNodePtr domain = hook_xml_domain(doc);
    if (!read_size(domain, "memory", &mem->memory_bytes, &present, error)) {
        goto out;
    }
    if (!present || mem->memory_bytes == 0) {
        g_set_error(error, HOOK_ERROR, 0, "the domain XML has %s: libvirt never runs a guest "
                    "without memory", present ? "<memory> 0" : "no <memory>");
        goto out;
    }
    if (!read_size(domain, "currentMemory", &mem->current_bytes, &present, error)) {
        goto out;
    }
    /* libvirt lowers a larger balloon target to <memory>. */
    if (!present || mem->current_bytes > mem->memory_bytes) {
        mem->current_bytes = mem->memory_bytes;
    }
    mem->hugepages = hook_xml_child(hook_xml_child(domain, "memoryBacking"), "hugepages") != NULL;
    ok = TRUE;
out:
    xmlFreeDoc(doc);
    return ok;
}
