/* frame.c - newline framing with a hard bound on line length.
 * The invariants are in frame.h. */
#include "config.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "frame.h"

void ed_frame_init(ed_frame *f, size_t max_line)
{
	memset(f, 0, sizeof(*f));
	f->max_line = max_line ? max_line : 1;
}

void ed_frame_free(ed_frame *f)
{
	free(f->buf);
	f->buf = NULL;
	f->len = f->cap = 0;
	f->discarding = 0;
}

size_t ed_frame_pending(const ed_frame *f)
{
	return f->len;
}

/* Appends to the partial line; the caller has checked the bound. */
static int frame_append(ed_frame *f, const char *p, size_t n)
{
	if (f->len + n > f->cap) {
		size_t cap = f->cap ? f->cap : 256;
		while (cap < f->len + n)
			cap *= 2;
		if (cap > f->max_line)
			cap = f->max_line;
		char *nb = realloc(f->buf, cap);
		if (!nb)
			return -ENOMEM;
		f->buf = nb;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, p, n);
	f->len += n;
	return 0;
}

/* Handles the bytes of one line segment [p, p+n) that ends with a newline
 * when eol is set.  Returns the callback's value or an error. */
static int frame_segment(ed_frame *f, const char *p, size_t n, int eol,
			 ed_frame_cb cb, void *arg)
{
	int rc;

	if (f->discarding) {
		if (eol)
			f->discarding = 0;
		return 0;
	}
	if (f->len + n > f->max_line) {
		size_t seen = f->len + n;
		f->len = 0;
		f->discarding = !eol;
		return cb(arg, ED_FRAME_TOO_LONG, NULL, seen);
	}
	if (!eol)
		return frame_append(f, p, n);
	if (f->len == 0)	/* the whole line is in the input: no copy */
		return cb(arg, ED_FRAME_LINE, p, n);
	if ((rc = frame_append(f, p, n)) < 0)
		return rc;
	size_t len = f->len;
	f->len = 0;
	return cb(arg, ED_FRAME_LINE, f->buf, len);
}

int ed_frame_feed(ed_frame *f, const char *data, size_t n,
		  ed_frame_cb cb, void *arg, size_t *used)
{
	size_t off = 0;
	int rc = 0;

	while (off < n) {
		const char *nl = memchr(data + off, '\n', n - off);
		size_t seg = nl ? (size_t)(nl - (data + off)) : n - off;
		rc = frame_segment(f, data + off, seg, nl != NULL, cb, arg);
		off += seg + (nl ? 1 : 0);
		if (rc)
			break;
	}
	if (used)
		*used = off;
	return rc;
}
