/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * policy.c: a domain's KSM policy from the XML libvirt gives the hook.
 *
 * The policy lives in <metadata>, in samepage's own namespace:
 *
 *   <metadata>
 *     <ksm:policy xmlns:ksm="https://samepage.invalid/xmlns/ksm/1"
 *                 merge="yes" group="tenant-a"/>
 *   </metadata>
 *
 * merge must agree with libvirt's own <memoryBacking><nosharepages/>, which
 * is what actually decides QEMU's mem-merge: merge="yes" with nosharepages
 * would be a guest the operator believes merges and never does; merge="no"
 * without it a guest believed private whose pages are shared.  Either is
 * refused, naming both.  Without merge, nosharepages decides.
 *
 * The XML is parsed without network access, DTD loading or entity
 * substitution, and a document type declaration is refused outright (it
 * could only declare entities): the XML comes from libvirt, but hostile
 * content must not make the hook fetch or expand anything.  It is the one
 * reader of the domain XML: memory.c (the incoming migration's size) reads
 * through it too (domain-xml.h).
 */
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "hook.h"
#include "domain-xml.h"

#define MAX_GROUP_LEN 64

void hook_policy_init(HookPolicy *p)
{
    memset(p, 0, sizeof(*p));
    p->merge = -1;
    p->warnings = g_ptr_array_new_with_free_func(g_free);
}

void hook_policy_clear(HookPolicy *p)
{
    g_free(p->name);
    g_free(p->uuid);
    g_free(p->group);
    if (p->warnings) {
        g_ptr_array_unref(p->warnings);
    }
    memset(p, 0, sizeof(*p));
}

gboolean hook_uuid_normalize(const char *text, char out[37])
{
    /* libvirt prints 8-4-4-4-12 hex; accept that form only, in any case. */
    if (!text || strlen(text) != 36) {
        return FALSE;
    }
    for (int i = 0; i < 36; i++) {
        char c = text[i];
        gboolean dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-' : !g_ascii_isxdigit(c)) {
            return FALSE;
        }
        out[i] = g_ascii_tolower(c);
    }
    out[36] = '\0';
    return TRUE;
}

gboolean hook_group_valid(const char *group)
{
    size_t len = strlen(group);

    if (len == 0 || len > MAX_GROUP_LEN || !g_ascii_isalnum(group[0])) {
        return FALSE;
    }
    for (size_t i = 0; i < len; i++) {
        if (!g_ascii_isalnum(group[i]) && !strchr("._-", group[i])) {
            return FALSE;
        }
    }
    return TRUE;
}

/* libxml2 prints parse errors to stderr by default; keep the first one for
 * our own message instead. */
static void collect_error(void *data, const xmlError *err)
{
    GString *first = data;
    if (first->len == 0 && err && err->message) {
        g_string_append_printf(first, "line %d: %s", err->line, err->message);
        g_strchomp(first->str);
        first->len = strlen(first->str);
    }
}

/* Set by the SAX callback for <!DOCTYPE ...> (the hook has one thread). */
static gboolean saw_doctype;

static void refuse_doctype(void *user_data, const xmlChar *name, const xmlChar *external_id,
                           const xmlChar *system_id)
{
    saw_doctype = TRUE;
    xmlStopParser((xmlParserCtxtPtr)user_data);
}

xmlDocPtr hook_xml_read(const char *xml, gsize len, GError **error)
{
    GString *first = g_string_new(NULL);

    if (len == 0) {
        g_string_free(first, TRUE);
        g_set_error(error, HOOK_ERROR, 0, "no domain XML on stdin");
        return NULL;
    }
    if (len > G_MAXINT) {
        g_string_free(first, TRUE);
        g_set_error(error, HOOK_ERROR, 0, "the domain XML is too large");
        return NULL;
    }
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        g_string_free(first, TRUE);
        g_set_error(error, HOOK_ERROR, 0, "cannot create an XML parser");
        return NULL;
    }
    /*
     * libvirt never writes a document type declaration.  One in the hook's
     * input can only declare entities, which the tree walk (xmlNodeGetContent)
     * would expand outside libxml2's amplification guard: 160 KB of nested
     * entities took 36 s and 7.8 GB.  The parse stops at the DOCTYPE, before
     * its internal subset is read.
     */
    ctxt->sax->internalSubset = refuse_doctype;
    saw_doctype = FALSE;
    xmlSetStructuredErrorFunc(first, (xmlStructuredErrorFunc)collect_error);
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, xml, (int)len, "domain.xml", NULL,
                                      XML_PARSE_NONET);
    xmlSetStructuredErrorFunc(NULL, NULL);
    xmlFreeParserCtxt(ctxt);
    if (saw_doctype) {
        xmlFreeDoc(doc);
        g_set_error(error, HOOK_ERROR, 0, "the domain XML has a document type declaration "
                    "(<!DOCTYPE>), which libvirt never writes: refused, its entities are "
                    "not expanded");
        doc = NULL;
    } else if (!doc) {
        g_set_error(error, HOOK_ERROR, 0, "the domain XML is malformed (%s)",
                    first->len ? first->str : "libxml2 gave no reason");
    }
    g_string_free(first, TRUE);
    return doc;
}

static gboolean is_element(xmlNodePtr node, const char *name)
{
    return node->type == XML_ELEMENT_NODE && node->ns == NULL &&
           strcmp((const char *)node->name, name) == 0;
}

xmlNodePtr hook_xml_child(xmlNodePtr parent, const char *name)
{
    for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next) {
        if (is_element(n, name)) {
            return n;
        }
    }
    return NULL;
}

char *hook_xml_text(xmlNodePtr node)
{
    xmlChar *content = node ? xmlNodeGetContent(node) : NULL;
    char *copy = content ? g_strstrip(g_strdup((const char *)content)) : NULL;
    xmlFree(content);
    return copy;
}

xmlNodePtr hook_xml_domain(xmlDocPtr doc)
{
    xmlNodePtr root = xmlDocGetRootElement(doc);

    /* libvirt's status file (/run/libvirt/qemu/NAME.xml) wraps the live
     * definition: the hook reads it to rebuild a corrupt state file. */
    if (root && is_element(root, "domstatus")) {
        root = hook_xml_child(root, "domain");
    }
    return root && is_element(root, "domain") ? root : NULL;
}

gboolean hook_xml_identify(xmlDocPtr doc, HookPolicy *p, GError **error)
{
    xmlNodePtr root = hook_xml_domain(doc);
    char uuid[37];

    if (!root) {
        g_set_error(error, HOOK_ERROR, 0, "the XML on stdin is not a <domain>");
        return FALSE;
    }
    p->name = hook_xml_text(hook_xml_child(root, "name"));
    g_autofree char *text = hook_xml_text(hook_xml_child(root, "uuid"));
    if (!text || !hook_uuid_normalize(text, uuid)) {
        g_autofree char *quoted = text ? hook_quote(text) : NULL;
        g_set_error(error, HOOK_ERROR, 0, "the domain XML has %s <uuid>%s%s",
                    text ? "an invalid" : "no", quoted ? ": " : "", quoted ? quoted : "");
        return FALSE;
    }
    p->uuid = g_strdup(uuid);
    return TRUE;
}

static gboolean parse_policy_element(xmlNodePtr el, HookPolicy *p, GError **error)
{
    for (xmlAttrPtr a = el->properties; a; a = a->next) {
        const char *name = (const char *)a->name;
        xmlChar *raw = xmlNodeListGetString(el->doc, a->children, 1);
        g_autofree char *value = g_strdup(raw ? (const char *)raw : "");
        g_autofree char *quoted = hook_quote(value);
        xmlFree(raw);

        if (a->ns && strcmp((const char *)a->ns->href, HOOK_XMLNS) != 0) {
            continue;   /* someone else's attribute: not ours to judge */
        }
        if (strcmp(name, "merge") == 0) {
            if (strcmp(value, "yes") == 0) {
                p->merge = 1;
            } else if (strcmp(value, "no") == 0) {
                p->merge = 0;
            } else {
                g_set_error(error, HOOK_ERROR, 0,
                            "<ksm:policy merge=\"%s\"/>: merge takes yes or no", quoted);
                return FALSE;
            }
        } else if (strcmp(name, "group") == 0) {
            if (!hook_group_valid(value)) {
                g_set_error(error, HOOK_ERROR, 0,
                            "<ksm:policy group=\"%s\"/>: a trust group is 1 to %d "
                            "characters of A-Z a-z 0-9 . _ -, starting with a letter "
                            "or digit", quoted, MAX_GROUP_LEN);
                return FALSE;
            }
            g_free(p->group);
            p->group = g_strdup(value);
        } else {
            /* A typo ("grup") would silently put the guest in the default
             * group: refuse instead. */
            g_autofree char *qname = hook_quote(name);
            g_set_error(error, HOOK_ERROR, 0,
                        "<ksm:policy %s=\"...\"/>: unknown attribute (known: merge, group)",
                        qname);
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean parse_metadata(xmlNodePtr root, HookPolicy *p, GError **error)
{
    xmlNodePtr metadata = hook_xml_child(root, "metadata");

    for (xmlNodePtr n = metadata ? metadata->children : NULL; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE || !n->ns || !n->ns->href ||
            strcmp((const char *)n->ns->href, HOOK_XMLNS) != 0) {
            continue;
        }
        if (strcmp((const char *)n->name, "policy") != 0) {
            g_autofree char *qname = hook_quote((const char *)n->name);
            g_set_error(error, HOOK_ERROR, 0,
                        "unknown element <%s> in the samepage namespace %s (known: policy)",
                        qname, HOOK_XMLNS);
            return FALSE;
        }
        if (p->has_policy) {
            g_set_error(error, HOOK_ERROR, 0,
                        "more than one <ksm:policy> element in <metadata>: which one is "
                        "meant is a guess");
            return FALSE;
        }
        p->has_policy = TRUE;
        if (!parse_policy_element(n, p, error)) {
            return FALSE;
        }
    }
    return TRUE;
}

/* Memory KSM can never merge, whatever the policy says (shared, file-backed,
 * hugetlb: only private anonymous memory merges, mm/ksm.c): worth a warning
 * for a guest meant to merge. */
static void check_backing(xmlNodePtr backing, HookPolicy *p)
{
    xmlNodePtr access = hook_xml_child(backing, "access");
    g_autofree char *mode = access ? (char *)xmlGetProp(access, (const xmlChar *)"mode") : NULL;

    if (hook_xml_child(backing, "hugepages")) {
        g_ptr_array_add(p->warnings, g_strdup(
            "<memoryBacking><hugepages/>: hugetlb memory never merges, KSM saves nothing "
            "for this guest"));
    }
    if (mode && strcmp(mode, "shared") == 0) {
        g_ptr_array_add(p->warnings, g_strdup(
            "<memoryBacking><access mode='shared'/>: shared memory never merges, KSM "
            "saves nothing for this guest"));
    }
}

gboolean hook_policy_identify(const char *xml, gsize len, HookPolicy *p, GError **error)
{
    xmlDocPtr doc = hook_xml_read(xml, len, error);
    gboolean ok = doc && hook_xml_identify(doc, p, error);

    xmlFreeDoc(doc);
    return ok;
}

gboolean hook_policy_parse(const char *xml, gsize len, HookPolicy *p, GError **error)
{
    xmlDocPtr doc = hook_xml_read(xml, len, error);
    gboolean ok = FALSE;

    if (!doc || !hook_xml_identify(doc, p, error)) {
        goto out;
    }
    xmlNodePtr root = hook_xml_domain(doc);
    xmlNodePtr backing = hook_xml_child(root, "memoryBacking");
    p->nosharepages = hook_xml_child(backing, "nosharepages") != NULL;
    if (!parse_metadata(root, p, error)) {
        goto out;
    }
    if (p->merge == 1 && p->nosharepages) {
        g_set_error(error, HOOK_ERROR, 0,
                    "contradictory KSM policy: <ksm:policy merge=\"yes\"/> in <metadata> but "
                    "<memoryBacking><nosharepages/>, with which libvirt starts QEMU with "
                    "mem-merge=off and nothing merges; remove one of the two");
        goto out;
    }
    if (p->merge == 0 && !p->nosharepages) {
        g_set_error(error, HOOK_ERROR, 0,
                    "contradictory KSM policy: <ksm:policy merge=\"no\"/> in <metadata> but no "
                    "<memoryBacking><nosharepages/>, without which libvirt starts QEMU with "
                    "mem-merge=on and the guest's memory merges; add <nosharepages/> or "
                    "remove merge=\"no\"");
        goto out;
    }
    p->mergeable = p->merge >= 0 ? p->merge == 1 : !p->nosharepages;
    if (!p->group) {
        p->group = g_strdup("default");
    }
    if (p->mergeable && backing) {
        check_backing(backing, p);
    }
    ok = TRUE;
out:
    xmlFreeDoc(doc);
    return ok;
}
