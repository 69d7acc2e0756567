/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * domain-xml.h: the hook's one reader of libvirt's domain XML (policy.c),
 * for the files that need more of the document than the policy.  Kept out
 * of hook.h so that only they see libxml2's types.
 */
#ifndef SAMEPAGE_HOOK_DOMAIN_XML_H
#define SAMEPAGE_HOOK_DOMAIN_XML_H

#include <libxml/tree.h>

#include "hook.h"

/* Parse without network, DTD or entities; a <!DOCTYPE> is refused.  Errors
 * say what was wrong (the first libxml2 message, with its line). */
xmlDocPtr hook_xml_read(const char *xml, gsize len, GError **error);
/* The <domain> element, also inside libvirt's <domstatus>; NULL if none. */
xmlNodePtr hook_xml_domain(xmlDocPtr doc);
/* The first child element called name, in no namespace; NULL if none. */
xmlNodePtr hook_xml_child(xmlNodePtr parent, const char *name);
/* The element's text, stripped (NULL for a NULL node). */
char *hook_xml_text(xmlNodePtr node);
/* p->name and p->uuid (validated, lower-cased) of the domain. */
gboolean hook_xml_identify(xmlDocPtr doc, HookPolicy *p, GError **error);

#endif
