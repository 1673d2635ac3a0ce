/* frame.h - splitting a byte stream into newline-terminated lines (ed_frame).
 *
 * Invariants:
 *  - The buffer never holds more than max_line bytes: memory per connection
 *    is bounded whatever the peer sends.
 *  - A line longer than max_line is reported once (ED_FRAME_TOO_LONG) and its
 *    remaining bytes are dropped up to and including its newline; the next
 *    line is framed normally.  The stream stays usable.
 *  - Lines are handed out without their '\n' (a trailing '\r' is kept: it is
 *    the parser's business).  They may contain NUL bytes.
 *
 * Used by engramd for requests and by engramctl for replies.  Not thread-safe:
 * one framer belongs to one connection and is used from one thread.
 */
#ifndef ENGRAM_DAEMON_FRAME_H
#define ENGRAM_DAEMON_FRAME_H

#include <stddef.h>

enum ed_frame_kind {
	ED_FRAME_LINE = 1,	/* a complete line: data, len */
	ED_FRAME_TOO_LONG = 2,	/* a line exceeded max_line; len = bytes seen so far */
};

typedef struct ed_frame {
	char *buf;		/* owned; capacity cap, grows up to max_line */
	size_t len;		/* bytes of the pending partial line */
	size_t cap;
	size_t max_line;	/* longest accepted line, without its '\n' */
	int discarding;		/* inside an over-long line: drop to its '\n' */
} ed_frame;

/* Called once per complete line or over-long line.  data is borrowed and
 * valid only during the call.  Return 0 to go on, nonzero to stop feeding
 * (ed_frame_feed then returns that value; unread input is kept by the
 * caller's offset). */
typedef int (*ed_frame_cb)(void *arg, enum ed_frame_kind kind,
			   const char *data, size_t len);

/* Prepares an empty framer.  max_line must be at least 1. */
void ed_frame_init(ed_frame *f, size_t max_line);
/* Frees the buffer; f can be initialised again. */
void ed_frame_free(ed_frame *f);

/* Feeds n bytes.  Calls cb for every line completed.  Returns 0, -ENOMEM, or
 * the callback's nonzero value (then *used says how many bytes of data were
 * consumed, so the caller can resume with the rest).  used may be NULL. */
int ed_frame_feed(ed_frame *f, const char *data, size_t n,
		  ed_frame_cb cb, void *arg, size_t *used);

/* Bytes of an incomplete line held (0 when between lines). */
size_t ed_frame_pending(const ed_frame *f);

#endif
