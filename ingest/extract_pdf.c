/* extract_pdf.c - PDF text, page by page, through poppler-glib.  Page
 * boundaries are kept (doc->page_off).  A PDF whose pages hold no text at
 * all (a scan) is ING_ENOTEXT: text is never invented. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include <poppler.h>
#include "ing_internal.h"

/* Far above real documents; keeps page_off's size bounded. */
#define MAX_PAGES 1000000

static int has_visible(const char *s)
{
	for (; *s; s++)
		if (!strchr(" \t\r\n\f\v", *s))
			return 1;
	return 0;
}

int ing__extract_pdf(const void *data, size_t len, const ing_settings *s,
		     ing_doc *doc)
{
	GError *err = NULL;
	GBytes *bytes;
	PopplerDocument *d;
	ing__buf b;
	int rc = 0, n, any = 0;

	if (len < 5 || memcmp(data, "%PDF-", 5) != 0)
		return ING_EFORMAT;
	/* The bytes are borrowed: the document is freed before we return. */
	bytes = g_bytes_new_static(data, len);
	d = poppler_document_new_from_bytes(bytes, NULL, &err);
	if (!d) {
		rc = (err && err->domain == POPPLER_ERROR &&
		      err->code == POPPLER_ERROR_ENCRYPTED) ? ING_EENCRYPTED
							    : ING_EFORMAT;
		if (err)
			g_error_free(err);
		g_bytes_unref(bytes);
		return rc;
	}
	n = poppler_document_get_n_pages(d);
	if (n <= 0 || n > MAX_PAGES) {
		g_object_unref(d);
		g_bytes_unref(bytes);
		return ING_EFORMAT;
	}
	ing__buf_init(&b, s->max_text_bytes);
	doc->page_off = calloc((size_t)n, sizeof(*doc->page_off));
	if (!doc->page_off)
		rc = ING_ENOMEM;
	for (int i = 0; i < n && rc == 0; i++) {
		PopplerPage *p = poppler_document_get_page(d, i);
		char *t = p ? poppler_page_get_text(p) : NULL;
		doc->page_off[i] = b.len;
		doc->n_pages = (uint32_t)i + 1;
		if (t && has_visible(t)) {
			any = 1;
			rc = ing__text_append(&b, t, strlen(t), ING__ENC_UTF8,
					      &doc->n_replaced);
			if (rc == 0 && b.len && b.p[b.len - 1] != '\n')
				rc = ing__buf_addc(&b, '\n');
		} else {
			doc->n_empty_pages++;
		}
		g_free(t);
		if (p)
			g_object_unref(p);
	}
	g_object_unref(d);
	g_bytes_unref(bytes);
	if (rc == 0 && !any)
		rc = ING_ENOTEXT;
	if (rc == 0)
		rc = ing__doc_finish(&b, doc);
	ing__buf_free(&b);
	return rc;
}
