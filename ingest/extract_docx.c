/* extract_docx.c - DOCX text: word/document.xml is read out of the zip with
 * libarchive under a hard cap on its decompressed size (zip bombs), then
 * streamed through libxml2's reader taking w:t, w:tab, w:br/w:cr and w:p.
 * No DTDs, no entity expansion, no network. */
#include "config.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <archive.h>
#include <archive_entry.h>
#include <libxml/xmlreader.h>
#include "ing_internal.h"

#define W_NS "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

/* Reads the named part into *out (malloc'd) with at most cap bytes. */
static int zip_read_part(const void *data, size_t len, const char *want,
			 const ing_settings *s, ing__buf *out)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	uint32_t n_entries = 0;
	int rc = ING_EFORMAT, r;
	char chunk[16384];

	if (!a)
		return ING_ENOMEM;
	archive_read_support_format_zip(a);
	if (archive_read_open_memory(a, data, len) != ARCHIVE_OK)
		goto done;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK ||
	       r == ARCHIVE_WARN) {
		if (++n_entries > s->max_zip_entries) {
			rc = ING_EBOMB;
			goto done;
		}
		const char *name = archive_entry_pathname(e);
		if (!name || strcmp(name, want) != 0)
			continue;
		if (archive_entry_is_encrypted(e)) {
			rc = ING_EENCRYPTED;
			goto done;
		}
		/* The declared size is a hint only: the real bytes are counted. */
		if (archive_entry_size_is_set(e) &&
		    (uint64_t)archive_entry_size(e) > s->max_zip_entry_bytes) {
			rc = ING_EBOMB;
			goto done;
		}
		ing__buf_init(out, s->max_zip_entry_bytes);
		for (;;) {
			la_ssize_t k = archive_read_data(a, chunk, sizeof(chunk));
			if (k == 0)
				break;
			if (k < 0) {
				rc = ING_EFORMAT;
				goto done;
			}
			if ((rc = ing__buf_add(out, chunk, (size_t)k)) < 0) {
				if (rc == ING_ETOOBIG)
					rc = ING_EBOMB;
				goto done;
			}
		}
		rc = 0;
		goto done;
	}
	if (r == ARCHIVE_EOF)
		rc = ING_EFORMAT;	/* a zip, but not a Word document */
done:
	archive_read_free(a);
	return rc;
}

static int is_w(xmlTextReaderPtr r, const char *local)
{
	const xmlChar *ns = xmlTextReaderConstNamespaceUri(r);
	const xmlChar *ln = xmlTextReaderConstLocalName(r);
	return ns && ln && !strcmp((const char *)ns, W_NS) &&
	       !strcmp((const char *)ln, local);
}

static int xml_to_text(const char *xml, size_t len, ing__buf *b,
		       uint64_t *n_bad)
{
	xmlTextReaderPtr r;
	int in_t = 0, rc = 0, k;

	if (len > INT_MAX)
		return ING_EBOMB;
	ing__xml_init();
	r = xmlReaderForMemory(xml, (int)len, NULL, NULL,
			       XML_PARSE_NONET | XML_PARSE_NOERROR |
			       XML_PARSE_NOWARNING);
	if (!r)
		return ING_ENOMEM;
	while (rc == 0 && (k = xmlTextReaderRead(r)) == 1) {
		int type = xmlTextReaderNodeType(r);
		if (type == XML_READER_TYPE_DOCUMENT_TYPE) {
			rc = ING_EFORMAT;	/* Word never writes DTDs */
		} else if (type == XML_READER_TYPE_ELEMENT) {
			if (is_w(r, "t"))
				in_t = !xmlTextReaderIsEmptyElement(r);
			else if (is_w(r, "tab"))
				rc = ing__buf_addc(b, '\t');
			else if (is_w(r, "br") || is_w(r, "cr"))
				rc = ing__buf_addc(b, '\n');
			else if (is_w(r, "p") && xmlTextReaderIsEmptyElement(r))
				rc = ing__buf_addc(b, '\n');
		} else if (type == XML_READER_TYPE_END_ELEMENT) {
			if (is_w(r, "t"))
				in_t = 0;
			else if (is_w(r, "p"))
				rc = ing__buf_addc(b, '\n');
		} else if (in_t && (type == XML_READER_TYPE_TEXT ||
				    type == XML_READER_TYPE_SIGNIFICANT_WHITESPACE ||
				    type == XML_READER_TYPE_CDATA)) {
			const xmlChar *v = xmlTextReaderConstValue(r);
			if (v)
				rc = ing__text_append(b, v, strlen((const char *)v),
						      ING__ENC_UTF8, n_bad);
		}
	}
	if (rc == 0 && k < 0)
		rc = ING_EFORMAT;
	xmlFreeTextReader(r);
	return rc;
}

int ing__extract_docx(const void *data, size_t len, const ing_settings *s,
		      ing_doc *doc)
{
	ing__buf xml, b;
	int rc;

	ing__buf_init(&xml, s->max_zip_entry_bytes);
	ing__buf_init(&b, s->max_text_bytes);
	rc = zip_read_part(data, len, "word/document.xml", s, &xml);
	if (rc == 0)
		rc = xml_to_text(xml.p ? xml.p : "", xml.len, &b, &doc->n_replaced);
	if (rc == 0)
		rc = ing__doc_finish(&b, doc);
	ing__buf_free(&xml);
	ing__buf_free(&b);
	return rc;
}
