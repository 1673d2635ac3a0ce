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

/* The same, for a request with an input of any size and any bytes: sent
 * as "text" when it is short UTF-8, else as base64 "data" in parts
 * ("more": true) that engramd joins (docs/PROTOCOL.md). */
int ectl_call_input(ectl_conn *c, json_t *req, const char *input, size_t len,
		    ectl_event_cb cb, void *arg);

/* Set by the SIGINT handler. */
extern volatile int ectl_interrupted;

/* ---------------------------------------------------------------- commands */

typedef struct ectl_ctx {
	const char *socket;
	int json;		/* print events as JSON lines */
	ectl_conn conn;
} ectl_ctx;

typedef struct ectl_command {
	const char *name;
	const char *args;	/* usage after the name */
	const char *summary;
	const char *help;	/* longer text for COMMAND --help */
	/* argv[0] is the command's name; returns an exit status. */
	int (*run)(ectl_ctx *x, int argc, char **argv);
} ectl_command;

/* The tables, each ending with a NULL name (cmd_*.c). */
extern const ectl_command ectl_cmds_daemon[];
extern const ectl_command ectl_cmds_model[];
extern const ectl_command ectl_cmds_session[];
extern const ectl_command ectl_cmds_generate[];

/* output.c: prints an event as a JSON line (--json) or, for an error
 * event, as "engramctl: code: message" on stderr.  An ectl_event_cb. */
int ectl_print_event(void *arg, json_t *ev);
/* Connects, sends req (stolen), prints its events with ectl_print_event,
 * and keeps the final "done" event in *done (NULL if none; the caller
 * decrefs; done may be NULL).  Returns an exit status. */
int ectl_request(ectl_ctx *x, json_t *req, json_t **done);
/* Usage error unless the command got no arguments. */
int ectl_no_args(int argc, char **argv, const char *name);
/* arg itself, or all of standard input for "-": *buf malloc'd, the caller
 * frees it.  Returns 0 or an exit status. */
int ectl_read_input(const char *arg, char **buf, size_t *len);
/* Field accessors that never fail: "-" and 0 when absent. */
const char *ectl_jstr(json_t *o, const char *k);
/* ectl_jstr for a file path in text output: control characters (a
 * newline in a file name) as C escapes, so that one line is one entry.
 * The result lives until the fourth call after. */
const char *ectl_jpath(json_t *o, const char *k);
long long ectl_jint(json_t *o, const char *k);
void ectl_print_duration(double seconds);

#endif
