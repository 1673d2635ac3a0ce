/* extract_eml.c - e-mail (RFC 5322 / MIME) to text: the main headers kept
 * (RFC 2047 words decoded), multipart walked (depth and part counts
 * bounded), quoted-printable and base64 decoded, text/plain preferred in
 * multipart/alternative, text/html through the HTML extractor, other parts
 * named as attachments. */
#include "config.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "ing_internal.h"

#define MAX_DEPTH 16
#define MAX_PARTS 256
#define MAX_HEADERS 128

struct hdr { const char *name; size_t nlen; char *value; };

struct msg {
	struct hdr h[MAX_HEADERS];
	size_t n;
	const char *body;
	size_t body_len;
};

struct eml {
	ing__buf *out;
	uint64_t *n_bad;
	size_t parts;
};

static void msg_free(struct msg *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->h[i].value);
	m->n = 0;
}

/* Splits the header block from the body and unfolds header lines. */
static int msg_parse(const char *p, size_t len, struct msg *m)
{
	size_t i = 0;

	m->n = 0;
	while (i < len) {
		size_t e = i;
		while (e < len && p[e] != '\n')
			e++;
		size_t le = e;
		if (le > i && p[le - 1] == '\r')
			le--;
		if (le == i) {		/* the empty line: body follows */
			i = e < len ? e + 1 : e;
			break;
		}
		if ((p[i] == ' ' || p[i] == '\t') && m->n) {
			/* A continuation line: append to the last value. */
			struct hdr *h = &m->h[m->n - 1];
			size_t old = strlen(h->value), add = le - i;
			char *v = realloc(h->value, old + add + 1);
			if (!v)
				return ING_ENOMEM;
			memcpy(v + old, p + i, add);
			v[old + add] = '\0';
			h->value = v;
		} else {
			const char *colon = memchr(p + i, ':', le - i);
			if (!colon) {	/* not a header: the body starts here */
				break;
			}
			if (m->n < MAX_HEADERS) {
				struct hdr *h = &m->h[m->n];
				const char *v = colon + 1;
				while (v < p + le && (*v == ' ' || *v == '\t'))
					v++;
				h->name = p + i;
				h->nlen = (size_t)(colon - (p + i));
				h->value = strndup(v, (size_t)(p + le - v));
				if (!h->value)
					return ING_ENOMEM;
				m->n++;
			}
		}
		i = e < len ? e + 1 : e;
	}
	m->body = p + i;
	m->body_len = len - i;
	return 0;
}

static const char *msg_get(const struct msg *m, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < m->n; i++)
		if (m->h[i].nlen == n && !strncasecmp(m->h[i].name, name, n))
			return m->h[i].value;
	return NULL;
}

/* The media type of a Content-Type value, lowercased into buf. */
static void ctype_of(const char *v, char *buf, size_t cap, const char *dflt)
{
	size_t k = 0;
	if (!v)
		v = dflt;
	while (*v == ' ' || *v == '\t')
		v++;
	while (*v && *v != ';' && !isspace((unsigned char)*v) && k + 1 < cap)
		buf[k++] = (char)tolower((unsigned char)*v++);
	buf[k] = '\0';
}

/* A parameter of a header value (boundary, charset, name), unquoted. */
static int param_of(const char *v, const char *name, char *buf, size_t cap)
{
	size_t n = strlen(name);
	if (!v)
		return 0;
	for (const char *p = strchr(v, ';'); p; p = strchr(p + 1, ';')) {
		const char *q = p + 1;
		while (*q == ' ' || *q == '\t')
			q++;
		if (strncasecmp(q, name, n) || q[n] != '=')
			continue;
		q += n + 1;
		size_t k = 0;
		if (*q == '"') {
			q++;
			while (*q && *q != '"' && k + 1 < cap)
				buf[k++] = *q++;
		} else {
			while (*q && *q != ';' && !isspace((unsigned char)*q) &&
			       k + 1 < cap)
				buf[k++] = *q++;
		}
		buf[k] = '\0';
		return k > 0;
	}
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Quoted-printable; q_words: RFC 2047 "Q" ('_' is a space). */
static int qp_decode(const char *p, size_t len, int q_words, ing__buf *o)
{
	int rc = 0;
	for (size_t i = 0; i < len && rc == 0; i++) {
		if (p[i] == '=' && i + 2 < len + 0 && hexval(p[i + 1]) >= 0 &&
		    hexval(p[i + 2]) >= 0) {
			rc = ing__buf_addc(o, (char)(hexval(p[i + 1]) * 16 +
						     hexval(p[i + 2])));
			i += 2;
		} else if (p[i] == '=' && i + 1 < len &&
			   (p[i + 1] == '\n' || p[i + 1] == '\r')) {
			i++;		/* soft line break */
			if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')
				i++;
		} else if (q_words && p[i] == '_') {
			rc = ing__buf_addc(o, ' ');
		} else {
			rc = ing__buf_addc(o, p[i]);
		}
	}
	return rc;
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

static int b64_decode(const char *p, size_t len, ing__buf *o)
{
	uint32_t acc = 0;
	int bits = 0, rc = 0;
	for (size_t i = 0; i < len && rc == 0; i++) {
		if (p[i] == '=')
			break;
		int v = b64val((unsigned char)p[i]);
		if (v < 0)
			continue;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			rc = ing__buf_addc(o, (char)((acc >> bits) & 0xFF));
		}
	}
	return rc;
}

static int charset_enc(const char *cs)
{
	if (!cs || !*cs)
		return 0;
	if (!strcasecmp(cs, "utf-8") || !strcasecmp(cs, "utf8") ||
	    !strcasecmp(cs, "us-ascii"))
		return ING__ENC_UTF8;
	if (!strcasecmp(cs, "iso-8859-1") || !strcasecmp(cs, "latin1"))
		return ING__ENC_LATIN1;
	if (!strcasecmp(cs, "windows-1252") || !strcasecmp(cs, "cp1252"))
		return ING__ENC_CP1252;
	return 0;
}

/* Appends text bytes in charset cs (guessed when unknown). */
static int append_charset(struct eml *e, const char *p, size_t len,
			  const char *cs)
{
	int enc = charset_enc(cs), rc;
	size_t skip = 0;
	if (!enc && (rc = ing__text_sniff(p, len, &enc, &skip)) < 0)
		return rc;
	return ing__text_append(e->out, p + skip, len - skip, enc, e->n_bad);
}

/* A header value with RFC 2047 encoded words decoded. */
static int header_append(struct eml *e, const char *v)
{
	int rc = 0;
	while (*v && rc == 0) {
		const char *s = strstr(v, "=?");
		if (!s) {
			rc = append_charset(e, v, strlen(v), "utf-8");
			break;
		}
		const char *q1 = strchr(s + 2, '?');
		const char *q2 = q1 ? strchr(q1 + 1, '?') : NULL;
		const char *end = q2 ? strstr(q2 + 1, "?=") : NULL;
		if (!end || q2 != q1 + 2) {
			rc = append_charset(e, v, (size_t)(s + 2 - v), "utf-8");
			v = s + 2;
			continue;
		}
		/* Whitespace between two encoded words is dropped. */
		const char *w = v;
		while (w < s && (*w == ' ' || *w == '\t'))
			w++;
		if (w != s)
			rc = rc ? rc : append_charset(e, v, (size_t)(s - v), "utf-8");
		char cs[64] = "";
		size_t cl = (size_t)(q1 - (s + 2));
		if (cl < sizeof(cs)) {
			memcpy(cs, s + 2, cl);
			cs[cl] = '\0';
		}
		char *star = strchr(cs, '*');	/* RFC 2231 language */
		if (star)
			*star = '\0';
		ing__buf dec;
		ing__buf_init(&dec, 1 << 20);
		if (q1[1] == 'B' || q1[1] == 'b')
			rc = rc ? rc : b64_decode(q2 + 1, (size_t)(end - q2 - 1), &dec);
		else
			rc = rc ? rc : qp_decode(q2 + 1, (size_t)(end - q2 - 1), 1, &dec);
		if (rc == 0 && dec.len)
			rc = append_charset(e, dec.p, dec.len, cs);
		ing__buf_free(&dec);
		v = end + 2;
	}
	return rc;
}

static int headers_out(struct eml *e, const struct msg *m)
{
	static const char *const keep[] = {
		"From", "To", "Cc", "Date", "Subject", NULL
	};
	int rc = 0;
	for (size_t i = 0; keep[i] && rc == 0; i++) {
		const char *v = msg_get(m, keep[i]);
		if (!v)
			continue;
		rc = ing__buf_adds(e->out, keep[i]);
		if (rc == 0)
			rc = ing__buf_adds(e->out, ": ");
		if (rc == 0)
			rc = header_append(e, v);
		if (rc == 0)
			rc = ing__buf_addc(e->out, '\n');
	}
	if (rc == 0)
		rc = ing__buf_addc(e->out, '\n');
	return rc;
}

static int part_out(struct eml *e, const struct msg *m, int depth);

/* Decodes a leaf part's body per its Content-Transfer-Encoding. */
static int body_decode(const struct msg *m, ing__buf *o)
{
	char cte[32];
	ctype_of(msg_get(m, "Content-Transfer-Encoding"), cte, sizeof(cte), "7bit");
	if (!strcmp(cte, "quoted-printable"))
		return qp_decode(m->body, m->body_len, 0, o);
	if (!strcmp(cte, "base64"))
		return b64_decode(m->body, m->body_len, o);
	return ing__buf_add(o, m->body, m->body_len);
}

/* Splits a multipart body at its boundary lines; calls part_out on each
 * part, or only on the best one for multipart/alternative. */
static int multipart_out(struct eml *e, const struct msg *m, const char *ct,
			 int depth)
{
	char bnd[128], delim[140];
	const char *parts[MAX_PARTS];
	size_t plen[MAX_PARTS], np = 0;
	int rc = 0;

	if (!param_of(msg_get(m, "Content-Type"), "boundary", bnd, sizeof(bnd)))
		return append_charset(e, m->body, m->body_len, NULL);
	snprintf(delim, sizeof(delim), "--%s", bnd);
	size_t dl = strlen(delim);
	const char *p = m->body, *end = m->body + m->body_len, *cur = NULL;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if ((size_t)(le - p) >= dl && !memcmp(p, delim, dl)) {
			if (cur && np < MAX_PARTS) {
				parts[np] = cur;
				plen[np++] = (size_t)(p - cur);
			}
			if ((size_t)(le - p) >= dl + 2 && p[dl] == '-' && p[dl + 1] == '-') {
				cur = NULL;
				break;
			}
			cur = nl ? nl + 1 : end;
		}
		p = nl ? nl + 1 : end;
	}
	if (cur && np < MAX_PARTS) {	/* unterminated last part */
		parts[np] = cur;
		plen[np++] = (size_t)(end - cur);
	}
	int best = -1, alt = !strcmp(ct, "multipart/alternative");
	if (alt) {
		int html = -1;
		for (size_t i = 0; i < np && best < 0; i++) {
			struct msg sub;
			char st[64];
			if ((rc = msg_parse(parts[i], plen[i], &sub)) < 0) {
				msg_free(&sub);
				return rc;
			}
			ctype_of(msg_get(&sub, "Content-Type"), st, sizeof(st), "text/plain");
			if (!strcmp(st, "text/plain"))
				best = (int)i;
			else if (html < 0 && (!strcmp(st, "text/html") ||
					      !strncmp(st, "multipart/", 10)))
				html = (int)i;
			msg_free(&sub);
		}
		if (best < 0)
			best = html >= 0 ? html : (np ? 0 : -1);
	}
	for (size_t i = 0; i < np && rc == 0; i++) {
		if (alt && (int)i != best)
			continue;
		if (++e->parts > MAX_PARTS)
			return ING_EFORMAT;
		struct msg sub;
		rc = msg_parse(parts[i], plen[i], &sub);
		if (rc == 0)
			rc = part_out(e, &sub, depth + 1);
		msg_free(&sub);
	}
	return rc;
}

static int part_out(struct eml *e, const struct msg *m, int depth)
{
	const char *ctv = msg_get(m, "Content-Type");
	char ct[64], cs[64] = "", name[256] = "";
	ing__buf dec;
	int rc;

	if (depth > MAX_DEPTH)
		return ING_EFORMAT;
	ctype_of(ctv, ct, sizeof(ct), "text/plain");
	if (!strncmp(ct, "multipart/", 10))
		return multipart_out(e, m, ct, depth);
	if (!strcmp(ct, "message/rfc822")) {
		struct msg sub;
		rc = msg_parse(m->body, m->body_len, &sub);
		if (rc == 0)
			rc = ing__buf_adds(e->out, "\n--- forwarded message ---\n");
		if (rc == 0)
			rc = headers_out(e, &sub);
		if (rc == 0)
			rc = part_out(e, &sub, depth + 1);
		msg_free(&sub);
		return rc;
	}
	const char *disp = msg_get(m, "Content-Disposition");
	int attach = disp && !strncasecmp(disp, "attachment", 10);
	if (attach || (strcmp(ct, "text/plain") && strcmp(ct, "text/html"))) {
		if (!param_of(disp, "filename", name, sizeof(name)))
			param_of(ctv, "name", name, sizeof(name));
		rc = ing__buf_adds(e->out, "[attachment: ");
		if (rc == 0)
			rc = header_append(e, name[0] ? name : "(unnamed)");
		if (rc == 0)
			rc = ing__buf_adds(e->out, " (");
		if (rc == 0)
			rc = append_charset(e, ct, strlen(ct), "utf-8");
		if (rc == 0)
			rc = ing__buf_adds(e->out, ")]\n");
		return rc;
	}
	param_of(ctv, "charset", cs, sizeof(cs));
	ing__buf_init(&dec, e->out->limit);
	rc = body_decode(m, &dec);
	if (rc == 0 && !strcmp(ct, "text/html")) {
		/* Give libxml2 the declared charset when we know it. */
		rc = ing__html_to_text(dec.p ? dec.p : "", dec.len,
				       cs[0] ? cs : NULL, e->out);
		if (rc == ING_EFORMAT)
			rc = 0;		/* an empty or hopeless HTML part */
		if (rc == 0)
			rc = ing__buf_addc(e->out, '\n');
	} else if (rc == 0 && dec.len) {
		rc = append_charset(e, dec.p, dec.len, cs);
		if (rc == ING_EBINARY)
			rc = ing__buf_adds(e->out, "[binary text part omitted]");
		if (rc == 0 && e->out->len && e->out->p[e->out->len - 1] != '\n')
			rc = ing__buf_addc(e->out, '\n');
	}
	ing__buf_free(&dec);
	return rc;
}

int ing__extract_eml(const void *data, size_t len, const ing_settings *s,
		     ing_doc *doc)
{
	struct msg *m = calloc(1, sizeof(*m));
	ing__buf b;
	struct eml e = { .out = &b, .n_bad = &doc->n_replaced };
	int rc;

	if (!m)
		return ING_ENOMEM;
	ing__buf_init(&b, s->max_text_bytes);
	rc = msg_parse(data, len, m);
	if (rc == 0 && m->n == 0)
		rc = ING_EFORMAT;	/* no header at all: not an e-mail */
	if (rc == 0)
		rc = headers_out(&e, m);
	if (rc == 0)
		rc = part_out(&e, m, 0);
	if (rc == 0)
		rc = ing__doc_finish(&b, doc);
	msg_free(m);
	free(m);
	ing__buf_free(&b);
	return rc;
}
