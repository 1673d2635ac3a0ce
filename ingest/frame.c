/* frame.c - the framing text around each document in a session's stream:
 * header, page markers, footer.  The format is specified, byte for byte,
 * in docs/FRAMING.md (ING_FRAMING_VERSION). */
#include "config.h"
#include <stdio.h>
#include <string.h>
#include "ing_internal.h"

/* Paths are shown as UTF-8 text on one line: control bytes, invalid UTF-8,
 * '\' and '>' are written as \xNN (and '\' as "\\"), so a header can never
 * be broken or imitated by a file name. */
static int path_escaped(ing__buf *b, const char *path)
{
	const unsigned char *p = (const unsigned char *)path;
	size_t n = strlen(path);
	int rc = 0;
	char esc[8];

	for (size_t i = 0; i < n && rc == 0;) {
		uint32_t cp;
		size_t k = ing__utf8_dec(p + i, n - i, &cp);
		if (p[i] == '\\') {
			rc = ing__buf_add(b, "\\\\", 2);
			i++;
		} else if (k == 0 || p[i] < 0x20 || p[i] == 0x7F || p[i] == '>') {
			snprintf(esc, sizeof(esc), "\\x%02x", p[i]);
			rc = ing__buf_adds(b, esc);
			i++;
		} else {
			rc = ing__buf_add(b, p + i, k);
			i += k;
		}
	}
	return rc;
}

int ing_frame_header(const char *path, const ing_doc *doc, char **out,
		     size_t *out_len)
{
	ing__buf b;
	char tail[96];
	int rc;

	if (!path || !doc || !out)
		return ING_EINVAL;
	ing__buf_init(&b, 0);
	if (doc->n_pages)
		snprintf(tail, sizeof(tail), " (%s, %u page%s) >>>\n",
			 doc->type ? doc->type : "text", doc->n_pages,
			 doc->n_pages == 1 ? "" : "s");
	else
		snprintf(tail, sizeof(tail), " (%s, %u line%s) >>>\n",
			 doc->type ? doc->type : "text", doc->n_lines,
			 doc->n_lines == 1 ? "" : "s");
	rc = ing__buf_adds(&b, "<<< file: ");
	if (rc == 0)
		rc = path_escaped(&b, path);
	if (rc == 0)
		rc = ing__buf_adds(&b, tail);
	if (rc == 0)
		rc = ing__buf_take(&b, out, out_len);
	ing__buf_free(&b);
	return rc;
}

size_t ing_frame_page(uint32_t page, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "<<< page %u >>>\n", page);
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

int ing_frame_footer(const char *path, char **out, size_t *out_len)
{
	ing__buf b;
	int rc;

	if (!path || !out)
		return ING_EINVAL;
	ing__buf_init(&b, 0);
	rc = ing__buf_adds(&b, "<<< end of file: ");
	if (rc == 0)
		rc = path_escaped(&b, path);
	if (rc == 0)
		rc = ing__buf_adds(&b, " >>>\n\n");
	if (rc == 0)
		rc = ing__buf_take(&b, out, out_len);
	ing__buf_free(&b);
	return rc;
}
