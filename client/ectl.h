/* ectl.h - engramctl's connection to engramd (prefix ectl_).
 *
 * One blocking connection, one request at a time: engramctl is a
 * short-lived command, and a plain read loop is easier to follow than an
 * event loop.  Ctrl-C (SIGINT) interrupts any wait; the caller then exits
 * with status 130, and closing the socket cancels the request in engramd.
 */
#ifndef ENGRAM_CLIENT_ECTL_H
#define ENGRAM_CLIENT_ECTL_H

#include <jansson.h>
#include "frame.h"

/* Exit statuses, documented in engramctl(1). */
enum {
	ECTL_EXIT_OK = 0,
	ECTL_EXIT_ERROR = 1,		/* the daemon answered with an error */
	ECTL_EXIT_USAGE = 2,
	ECTL_EXIT_UNREACHABLE = 3,	/* no daemon, or the connection broke */
	ECTL_EXIT_INTERRUPTED = 130,
};

typedef struct ectl_conn {
	int fd;
	long long next_id;
	ed_frame frame;
	json_t **queue;			/* events framed but not yet returned */
	size_t nqueue, capqueue, headq;
	char *path;			/* owned */
} ectl_conn;

/* Called for each event of a request, the final one included.  Return 0 to
 * keep reading. */
typedef int (*ectl_event_cb)(void *arg, json_t *ev);

/* Connects; on failure prints why to stderr and returns
 * -ECTL_EXIT_UNREACHABLE. */
int ectl_connect(ectl_conn *c, const char *path);
void ectl_close(ectl_conn *c);
/* Sends req (adds "id"; steals req) and passes every event for it to cb
 * until the final one ("done" or "error").  Returns the exit status to use:
 * OK after "done", ERROR after "error", UNREACHABLE when the connection
 * broke, INTERRUPTED on SIGINT. */
int ectl_call(ectl_conn *c, json_t *req, ectl_event_cb cb, void *arg);

/* Set by the SIGINT handler. */
extern volatile int ectl_interrupted;

#endif
