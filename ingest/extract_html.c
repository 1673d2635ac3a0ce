/* extract_html.c - HTML to text with libxml2's forgiving HTML parser: no
 * network, no error output, recovery on; scripts and styles dropped, block
 * elements end lines, whitespace collapsed outside <pre>. */
#include "config.h"
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include "ing_internal.h"

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init_once(void)
{
	xmlInitParser();
}

void ing__xml_init(void)
{
	pthread_once(&xml_once, xml_init_once);
}

/* Output state: whitespace is collapsed, and runs of newlines are capped
 * at two (one blank line) so that markup-heavy pages do not turn into
 * pages of empty lines. */
struct html_out {
	ing__buf *b;
	int nl_run;		/* '\n' at the end of the output (0..2) */
	int space;		/* a collapsed space is pending */
	int pre;		/* depth inside <pre> */
	uint64_t n_bad;
	int rc;
};

static const char *const skip_tags[] = {
	"script", "style", "noscript", "template", "head", NULL
};
static const char *const block_tags[] = {
	"div", "li", "ul", "ol", "dl", "dt", "dd", "tr", "form", "fieldset",
	"figure", "figcaption", "address", "section", "article", "header",
	"footer", "nav", "aside", "main", "hr", "caption", "thead", "tbody",
	"tfoot", "option", "body", "html", "center", NULL
};
static const char *const para_tags[] = {
	"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table",
	"blockquote", "title", NULL
};

static int in_list(const xmlChar *name, const char *const *list)
{
	if (!name)
		return 0;
	for (size_t i = 0; list[i]; i++)
		if (!strcasecmp((const char *)name, list[i]))
			return 1;
	return 0;
}

static void out_raw(struct html_out *o, const char *s, size_t n)
{
	if (o->rc == 0)
		o->rc = ing__text_append(o->b, s, n, ING__ENC_UTF8, &o->n_bad);
}

static void out_newlines(struct html_out *o, int want)
{
	o->space = 0;
	if (o->b->len == 0)
		return;		/* no leading blank lines */
	while (o->nl_run < want) {
		out_raw(o, "\n", 1);
		o->nl_run++;
	}
}

static void out_text(struct html_out *o, const char *s)
{
	if (o->pre) {
		size_t n = strlen(s);
		if (n) {
			out_raw(o, s, n);
			o->nl_run = s[n - 1] == '\n' ? 1 : 0;
		}
		return;
	}
	while (*s) {
		if (strchr(" \t\r\n\f\v", *s)) {
			if (o->nl_run == 0 && o->b->len)
				o->space = 1;
			s++;
			continue;
		}
		size_t n = strcspn(s, " \t\r\n\f\v");
		if (o->space)
			out_raw(o, " ", 1);
		o->space = 0;
		out_raw(o, s, n);
		o->nl_run = 0;
		s += n;
	}
}

static void elem_open(struct html_out *o, xmlNode *n)
{
	if (in_list(n->name, para_tags))
		out_newlines(o, 2);
	else if (in_list(n->name, block_tags))
		out_newlines(o, 1);
	else if (!strcasecmp((const char *)n->name, "td") ||
		 !strcasecmp((const char *)n->name, "th"))
		o->space = o->nl_run == 0 && o->b->len;
	if (!strcasecmp((const char *)n->name, "pre"))
		o->pre++;
}

static void elem_close(struct html_out *o, xmlNode *n)
{
	if (!strcasecmp((const char *)n->name, "br")) {
		o->space = 0;
		if (o->nl_run < 2) {
			out_raw(o, "\n", 1);
			o->nl_run++;
		}
		return;
	}
	if (!strcasecmp((const char *)n->name, "pre") && o->pre)
		o->pre--;
	if (in_list(n->name, para_tags))
		out_newlines(o, 2);
	else if (in_list(n->name, block_tags))
		out_newlines(o, 1);
}

/* Walks the tree without recursion (depth is bounded by libxml2, but a
 * loop keeps the stack flat anyway). */
static void walk_tree(struct html_out *o, xmlNode *root)
{
	xmlNode *n = root;

	while (n && o->rc == 0) {
		int descend = 0;
		if (n->type == XML_ELEMENT_NODE) {
			/* <title> lives in <head>: keep it, drop the rest. */
			if (!in_list(n->name, skip_tags)) {
				elem_open(o, n);
				descend = 1;
			} else if (!strcasecmp((const char *)n->name, "head")) {
				for (xmlNode *c = n->children; c; c = c->next)
					if (c->type == XML_ELEMENT_NODE &&
					    !strcasecmp((const char *)c->name, "title")) {
						xmlChar *t = xmlNodeGetContent(c);
						if (t) {
							out_newlines(o, 2);
							out_text(o, (const char *)t);
							out_newlines(o, 2);
							xmlFree(t);
						}
					}
			}
		} else if ((n->type == XML_TEXT_NODE ||
			    n->type == XML_CDATA_SECTION_NODE) && n->content) {
			out_text(o, (const char *)n->content);
		}
		if (descend && n->children) {
			n = n->children;
			continue;
		}
		if (descend)
			elem_close(o, n);
		/* Up until a node has a next sibling, closing elements. */
		while (n && n != root && !n->next) {
			n = n->parent;
			if (n && n->type == XML_ELEMENT_NODE)
				elem_close(o, n);
		}
		if (!n || n == root)
			break;
		n = n->next;
	}
}

int ing__html_to_text(const void *data, size_t len, const char *encoding,
		      ing__buf *out)
{
	struct html_out o = { .b = out };
	htmlDocPtr d;

	if (len > INT_MAX)
		return ING_ETOOBIG;
	ing__xml_init();
	d = htmlReadMemory(data, (int)len, NULL, encoding,
			   HTML_PARSE_NONET | HTML_PARSE_NOERROR |
			   HTML_PARSE_NOWARNING | HTML_PARSE_RECOVER);
	if (!d)
		return len ? ING_EFORMAT : 0;
	xmlNode *root = xmlDocGetRootElement(d);
	if (root)
		walk_tree(&o, root);
	xmlFreeDoc(d);
	/* Drop trailing blank lines. */
	while (out->len && out->p[out->len - 1] == '\n')
		out->p[--out->len] = '\0';
	return o.rc;
}

int ing__extract_html(const void *data, size_t len, const ing_settings *s,
		      ing_doc *doc)
{
	ing__buf b;
	int rc;

	ing__buf_init(&b, s->max_text_bytes);
	rc = ing__html_to_text(data, len, NULL, &b);
	if (rc == 0)
		rc = ing__doc_finish(&b, doc);
	ing__buf_free(&b);
	return rc;
}
