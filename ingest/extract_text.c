/* extract_text.c - plain text and source code in common encodings to clean
 * UTF-8: BOMs, UTF-16, windows-1252 fallback, U+FFFD for invalid bytes,
 * '\n' line ends.  The binary-file heuristic lives here too. */
#include "config.h"
#include <string.h>
#include "ing_internal.h"

#define SNIFF_BYTES 8192

/* windows-1252 0x80..0x9F; 0 marks the five undefined bytes. */
static const uint16_t cp1252_hi[32] = {
	0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
	0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
};

const char *ing__enc_name(int enc)
{
	switch (enc) {
	case ING__ENC_UTF8: return "UTF-8";
	case ING__ENC_UTF16LE: return "UTF-16LE";
	case ING__ENC_UTF16BE: return "UTF-16BE";
	case ING__ENC_CP1252: return "windows-1252";
	case ING__ENC_LATIN1: return "ISO-8859-1";
	}
	return "unknown";
}

int ing__text_sniff(const void *data, size_t len, int *enc, size_t *skip)
{
	const unsigned char *p = data;
	size_t n = len < SNIFF_BYTES ? len : SNIFF_BYTES, odd = 0;
	size_t good_multi = 0, bad = 0;

	*skip = 0;
	if (len >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) {
		*enc = ING__ENC_UTF8;
		*skip = 3;
		return 0;
	}
	if (len >= 2 && p[0] == 0xFF && p[1] == 0xFE) {
		*enc = ING__ENC_UTF16LE;
		*skip = 2;
		return 0;
	}
	if (len >= 2 && p[0] == 0xFE && p[1] == 0xFF) {
		*enc = ING__ENC_UTF16BE;
		*skip = 2;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		if (c == 0)
			return ING_EBINARY;
		if ((c < 0x20 && !strchr("\t\n\r\f\v\b\x1b", c)) || c == 0x7F)
			odd++;
	}
	if (n && odd * 10 > n * 3)
		return ING_EBINARY;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t k = ing__utf8_dec(p + i, len - i, &cp);
		if (k == 0) {
			bad++;
			i++;
		} else {
			good_multi += k > 1;
			i += k;
		}
	}
	/* Text with valid multi-byte sequences and fewer broken ones is UTF-8
	 * with damage; broken sequences alone mean a legacy 8-bit encoding. */
	*enc = (bad == 0 || good_multi > bad) ? ING__ENC_UTF8 : ING__ENC_CP1252;
	return 0;
}

/* Appends one decoded code point, normalising line ends and NULs.  *cr
 * remembers a '\r' so that "\r\n" gives one '\n'. */
static int put_cp(ing__buf *b, uint32_t cp, int *cr, uint64_t *n_bad)
{
	if (*cr) {
		*cr = 0;
		if (cp == '\n')
			return 0;
	}
	if (cp == '\r') {
		*cr = 1;
		cp = '\n';
	} else if (cp == 0) {
		cp = 0xFFFD;
		(*n_bad)++;
	}
	if (cp < 0x80)
		return ing__buf_addc(b, (char)cp);
	return ing__buf_addcp(b, cp);
}

static int append_utf8(ing__buf *b, const unsigned char *p, size_t len,
		       uint64_t *n_bad)
{
	int cr = 0, rc;
	size_t i = 0;

	while (i < len) {
		/* Copy runs of plain ASCII at once: most source is. */
		size_t j = i;
		while (j < len && p[j] >= 0x20 && p[j] < 0x80)
			j++;
		if (j > i) {
			if (cr && p[i] != '\n')
				cr = 0;
			if ((rc = ing__buf_add(b, p + i, j - i)) < 0)
				return rc;
			cr = 0;
			i = j;
			continue;
		}
		uint32_t cp;
		size_t k = ing__utf8_dec(p + i, len - i, &cp);
		if (k == 0) {
			cp = 0xFFFD;
			(*n_bad)++;
			k = 1;
		}
		if ((rc = put_cp(b, cp, &cr, n_bad)) < 0)
			return rc;
		i += k;
	}
	return 0;
}

static int append_utf16(ing__buf *b, const unsigned char *p, size_t len,
			int be, uint64_t *n_bad)
{
	int cr = 0, rc;
	size_t i = 0;

	while (i + 1 < len) {
		uint32_t u = be ? (p[i] << 8 | p[i + 1]) : (p[i + 1] << 8 | p[i]);
		i += 2;
		if (u >= 0xD800 && u <= 0xDBFF && i + 1 < len) {
			uint32_t v = be ? (p[i] << 8 | p[i + 1]) : (p[i + 1] << 8 | p[i]);
			if (v >= 0xDC00 && v <= 0xDFFF) {
				u = 0x10000 + ((u - 0xD800) << 10) + (v - 0xDC00);
				i += 2;
			}
		}
		if (u >= 0xD800 && u <= 0xDFFF) {
			u = 0xFFFD;
			(*n_bad)++;
		}
		if ((rc = put_cp(b, u, &cr, n_bad)) < 0)
			return rc;
	}
	if (i < len) {		/* an odd trailing byte */
		(*n_bad)++;
		return put_cp(b, 0xFFFD, &cr, n_bad);
	}
	return 0;
}

static int append_8bit(ing__buf *b, const unsigned char *p, size_t len,
		       int cp1252, uint64_t *n_bad)
{
	int cr = 0, rc;

	for (size_t i = 0; i < len; i++) {
		uint32_t cp = p[i];
		if (cp1252 && cp >= 0x80 && cp < 0xA0) {
			cp = cp1252_hi[cp - 0x80];
			if (!cp) {
				cp = 0xFFFD;
				(*n_bad)++;
			}
		}
		if ((rc = put_cp(b, cp, &cr, n_bad)) < 0)
			return rc;
	}
	return 0;
}

int ing__text_append(ing__buf *b, const void *data, size_t len, int enc,
		     uint64_t *n_bad)
{
	const unsigned char *p = data;

	switch (enc) {
	case ING__ENC_UTF8:
		return append_utf8(b, p, len, n_bad);
	case ING__ENC_UTF16LE:
	case ING__ENC_UTF16BE:
		return append_utf16(b, p, len, enc == ING__ENC_UTF16BE, n_bad);
	case ING__ENC_CP1252:
	case ING__ENC_LATIN1:
		return append_8bit(b, p, len, enc == ING__ENC_CP1252, n_bad);
	}
	return ING_EINVAL;
}

int ing__doc_finish(ing__buf *b, ing_doc *doc)
{
	int rc;

	if (b->len && b->p[b->len - 1] != '\n' &&
	    (rc = ing__buf_addc(b, '\n')) < 0)
		return rc;
	if ((rc = ing__buf_take(b, &doc->text, &doc->len)) < 0)
		return rc;
	doc->n_lines = 0;
	for (const char *q = doc->text; (q = memchr(q, '\n', doc->len - (size_t)(q - doc->text))); q++)
		doc->n_lines++;
	return 0;
}

int ing__extract_text(const void *data, size_t len, const ing_settings *s,
		      ing_doc *doc)
{
	ing__buf b;
	int enc, rc;
	size_t skip;

	if ((rc = ing__text_sniff(data, len, &enc, &skip)) < 0)
		return rc;
	ing__buf_init(&b, s->max_text_bytes);
	rc = ing__text_append(&b, (const char *)data + skip, len - skip, enc,
			      &doc->n_replaced);
	if (rc == 0)
		rc = ing__doc_finish(&b, doc);
	ing__buf_free(&b);
	if (rc == 0)
		doc->encoding = ing__enc_name(enc);
	return rc;
}
