/* buf.c - the bounded string builder and UTF-8 decoding shared by the
 * extractors (ing_internal.h). */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "ing_internal.h"

void ing__buf_init(ing__buf *b, size_t limit)
{
	memset(b, 0, sizeof(*b));
	b->limit = limit ? limit : SIZE_MAX / 2;
}

void ing__buf_free(ing__buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

int ing__buf_add(ing__buf *b, const void *p, size_t n)
{
	if (n > b->limit - b->len)
		return ING_ETOOBIG;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *nb = realloc(b->p, cap);
		if (!nb)
			return ING_ENOMEM;
		b->p = nb;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int ing__buf_addc(ing__buf *b, char c)
{
	return ing__buf_add(b, &c, 1);
}

int ing__buf_adds(ing__buf *b, const char *s)
{
	return ing__buf_add(b, s, strlen(s));
}

int ing__buf_addcp(ing__buf *b, uint32_t cp)
{
	unsigned char u[4];
	size_t n;

	if (cp >= 0xD800 && (cp < 0xE000 || cp > 0x10FFFF))
		cp = 0xFFFD;
	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = 0xC0 | (cp >> 6);
		u[1] = 0x80 | (cp & 0x3F);
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = 0xE0 | (cp >> 12);
		u[1] = 0x80 | ((cp >> 6) & 0x3F);
		u[2] = 0x80 | (cp & 0x3F);
		n = 3;
	} else {
		u[0] = 0xF0 | (cp >> 18);
		u[1] = 0x80 | ((cp >> 12) & 0x3F);
		u[2] = 0x80 | ((cp >> 6) & 0x3F);
		u[3] = 0x80 | (cp & 0x3F);
		n = 4;
	}
	return ing__buf_add(b, u, n);
}

int ing__buf_take(ing__buf *b, char **out, size_t *len)
{
	int rc;

	if (!b->p && (rc = ing__buf_add(b, "", 0)) < 0)
		return rc;
	*out = b->p;
	if (len)
		*len = b->len;
	b->p = NULL;
	b->len = b->cap = 0;
	return 0;
}

size_t ing__utf8_dec(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c;
	size_t k;

	if (n == 0)
		return 0;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		k = 2;
		c = s[0] & 0x1F;
	} else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		k = 3;
		c = s[0] & 0x0F;
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		k = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < k)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are invalid. */
	if ((k == 3 && c < 0x800) || (k == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
	    (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return k;
}
