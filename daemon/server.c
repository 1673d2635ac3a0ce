/* server.c - the Unix socket, connections and requests of engramd.
 *
 * DESIGN
 * A connection is a small state machine, driven only by the loop thread:
 *
 *   CONN_OPEN      reading: every complete line becomes a request.
 *   CONN_PAUSED    not reading, because the client has more than max_output
 *                  bytes of replies queued (it stopped reading) or
 *                  max_inflight requests running.  Resumes when both drop
 *                  below half their limits.  Other clients are unaffected:
 *                  all socket I/O is non-blocking.
 *   CONN_DRAINING  the peer closed its side, or the server is stopping: no
 *                  more requests are read, requests in flight are cancelled,
 *                  and once none is left the queued replies are flushed
 *                  (uv_shutdown) and the socket is closed.
 *   CONN_CLOSED    the handle is closed; the memory is freed when the last
 *                  request holding a reference finishes.
 *
 * Memory per connection is bounded: the framer holds at most max_line bytes,
 * and a client whose queued replies pass 4 x max_output is disconnected.
 *
 * Worker threads never touch handles.  ed_req_emit() from a worker appends
 * the serialised event to the server's outbox under a mutex and wakes the
 * loop with uv_async_send(); the loop writes it.  A request's final event is
 * written by ed_req_finish() on the loop thread after draining the outbox,
 * so a stream's events keep their order.
 */
#include "config.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "engramd.h"
#include "frame.h"
#include "proto.h"
#include "text.h"

enum conn_state { CONN_OPEN, CONN_PAUSED, CONN_DRAINING, CONN_CLOSED };

struct ed_conn {
	uv_pipe_t pipe;			/* must stay first: handle->data is unused */
	ed_server *srv;
	enum conn_state state;
	int refs;			/* 1 for the socket + 1 per live request */
	int inflight;			/* requests not yet finished */
	int shutting;			/* uv_shutdown issued */
	size_t out_bytes;		/* reply bytes queued, not yet written */
	uint64_t serial;
	ed_frame frame;
	ed_req **reqs;			/* live requests, for cancellation */
	int nreqs, capreqs;
	ed_conn *prev, *next;		/* server's list */
	int pumping;			/* inside conn_pump or on_read */
	/* A request's input sent in parts ("more": true), see conn_input(). */
	json_t *up_id;			/* the id being uploaded, or NULL */
	const ed_op *up_op;		/* and its op */
	json_t *skip_id;		/* an upload refused: drop its parts */
	unsigned char *up_buf;		/* owned */
	size_t up_len, up_cap;
	int up_input;			/* some part had text or data */
	size_t held_len;		/* bytes in held not yet framed */
	char rbuf[64 * 1024];		/* libuv reads here */
	char held[64 * 1024];		/* unframed input kept while paused */
};

struct outmsg {				/* an event from a worker, for the loop */
	struct outmsg *next;
	ed_conn *conn;
	size_t len;
	char data[];
};

struct ed_server {
	uv_loop_t *loop;
	ed_settings *settings;		/* borrowed from main */
	uv_pipe_t listener;
	int listening;
	int stopping;
	int done;			/* wake and stop_timer closed */
	void (*on_stop)(void *);	/* main's hook, run when stopping begins */
	void *on_stop_arg;
	uv_async_t wake;
	uv_timer_t stop_timer;
	uv_thread_t loop_thread;
	pthread_mutex_t outbox_mu;
	struct outmsg *outbox, **outbox_tail;
	ed_conn *conns;
	ed_stats stats;
	uint64_t next_serial;
	uint64_t started_ms;
};

struct wreq {
	uv_write_t w;
	ed_conn *conn;
	size_t len;
	char data[];
};

static void conn_maybe_close(ed_conn *c);
static void conn_drain(ed_conn *c);
static void server_maybe_done(ed_server *srv);
static void conn_update_reading(ed_conn *c);

/* ------------------------------------------------------------- refcounts */

static void conn_unref(ed_conn *c)
{
	if (--c->refs > 0)
		return;
	ed_frame_free(&c->frame);
	free(c->reqs);
	free(c->up_buf);
	json_decref(c->up_id);
	json_decref(c->skip_id);
	free(c);
}

static void on_conn_closed(uv_handle_t *h)
{
	ed_conn *c = (ed_conn *)h;
	ed_server *srv = c->srv;

	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->stats.connections--;
	conn_unref(c);
	server_maybe_done(srv);
}

static void conn_close(ed_conn *c)
{
	if (c->state == CONN_CLOSED)
		return;
	c->state = CONN_CLOSED;
	uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

/* ------------------------------------------------------------- writing */

static void on_written(uv_write_t *w, int status)
{
	struct wreq *wr = (struct wreq *)w;
	ed_conn *c = wr->conn;

	c->out_bytes -= wr->len;
	free(wr);
	if (status < 0 && c->state != CONN_CLOSED)
		conn_drain(c);	/* the peer is gone: nothing more can be said */
	conn_update_reading(c);
	conn_maybe_close(c);
	conn_unref(c);
}

/* Queues len bytes (a complete line, newline included). */
static void conn_write(ed_conn *c, const char *data, size_t len)
{
	if (c->state == CONN_CLOSED || c->shutting)
		return;
	if (c->out_bytes > 4 * c->srv->settings->max_output) {
		ed_log(ED_LOG_WARN, "conn %llu: client is not reading its replies; disconnecting",
		       (unsigned long long)c->serial);
		conn_close(c);
		return;
	}
	struct wreq *wr = malloc(sizeof(*wr) + len);
	if (!wr) {
		conn_close(c);
		return;
	}
	memcpy(wr->data, data, len);
	wr->len = len;
	wr->conn = c;
	uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
	if (uv_write(&wr->w, (uv_stream_t *)&c->pipe, &b, 1, on_written) < 0) {
		free(wr);
		c->state = CONN_DRAINING;
		conn_maybe_close(c);
		return;
	}
	c->refs++;
	c->out_bytes += len;
	conn_update_reading(c);
}

static void conn_write_json(ed_conn *c, json_t *ev)
{
	size_t len = 0;
	char *s = ed_proto_dump(ev, &len);
	if (!s) {
		conn_close(c);
		return;
	}
	conn_write(c, s, len);
	free(s);
}

static void conn_write_error(ed_conn *c, json_t *id, ed_err e, const char *msg)
{
	json_t *ev = ed_proto_error_event(id, e, msg);
	if (ev)
		conn_write_json(c, ev);
	json_decref(ev);
	c->srv->stats.errors_total++;
}

/* ------------------------------------------------------------- reading */

static int conn_wants_read(const ed_conn *c)
{
	const ed_settings *s = c->srv->settings;
	if (c->state == CONN_PAUSED)
		return c->out_bytes < s->max_output / 2 && c->inflight < (s->max_inflight + 1) / 2;
	return c->out_bytes < s->max_output && c->inflight < s->max_inflight;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	ed_conn *c = (ed_conn *)h;
	*buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void conn_pump(ed_conn *c);

static void conn_update_reading(ed_conn *c)
{
	conn_pump(c);
}

static void on_shutdown(uv_shutdown_t *sreq, int status)
{
	ed_conn *c = sreq->data;
	free(sreq);
	conn_close(c);
	conn_unref(c);
}

/* Closes a draining connection once nothing is running for it; queued
 * replies are flushed first. */
static void conn_maybe_close(ed_conn *c)
{
	if (c->state != CONN_DRAINING || c->inflight > 0 || c->shutting)
		return;
	uv_read_stop((uv_stream_t *)&c->pipe);
	uv_shutdown_t *sreq = malloc(sizeof(*sreq));
	if (!sreq || uv_shutdown(sreq, (uv_stream_t *)&c->pipe, on_shutdown) < 0) {
		free(sreq);
		conn_close(c);
		return;
	}
	sreq->data = c;
	c->shutting = 1;
	c->refs++;
}

static void conn_cancel_all(ed_conn *c)
{
	for (int i = 0; i < c->nreqs; i++)
		atomic_store(&c->reqs[i]->cancelled, 1);
}

static void conn_drain(ed_conn *c)
{
	if (c->state == CONN_CLOSED)
		return;
	if (c->state != CONN_DRAINING) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->state = CONN_DRAINING;
	}
	conn_cancel_all(c);
	conn_maybe_close(c);
}

static int conn_track(ed_conn *c, ed_req *r)
{
	if (c->nreqs == c->capreqs) {
		int cap = c->capreqs ? 2 * c->capreqs : 8;
		ed_req **n = realloc(c->reqs, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		c->reqs = n;
		c->capreqs = cap;
	}
	c->reqs[c->nreqs++] = r;
	return 0;
}

static void conn_untrack(ed_conn *c, ed_req *r)
{
	for (int i = 0; i < c->nreqs; i++)
		if (c->reqs[i] == r) {
			c->reqs[i] = c->reqs[--c->nreqs];
			return;
		}
}

static void on_work(uv_work_t *w)
{
	ed_req *r = w->data;
	r->work_fn(r);
}

static void on_work_done(uv_work_t *w, int status)
{
	ed_req *r = w->data;
	if (status == UV_ECANCELED && !r->failed)
		ed_req_fail(r, ED_ERR_CANCELLED, "cancelled before it started");
	ed_req_finish(r);
}

/* Starts one parsed request. */
static void upload_reset(ed_conn *c)
{
	json_decref(c->up_id);
	c->up_id = NULL;
	c->up_op = NULL;
	free(c->up_buf);
	c->up_buf = NULL;
	c->up_len = c->up_cap = 0;
	c->up_input = 0;
}

static int upload_append(ed_conn *c, const void *p, size_t n)
{
	if (c->up_len + n > c->up_cap) {
		size_t cap = c->up_cap ? c->up_cap : 65536;
		while (cap < c->up_len + n)
			cap *= 2;
		unsigned char *b = realloc(c->up_buf, cap);
		if (!b)
			return -ENOMEM;
		c->up_buf = b;
		c->up_cap = cap;
	}
	if (n) {	/* an empty part: up_buf may be NULL yet */
		memcpy(c->up_buf + c->up_len, p, n);
		c->up_len += n;
	}
	return 0;
}

/* A request's input is its "text" (a UTF-8 string) or "data" (base64 of
 * any bytes).  Input larger than a line is sent in parts: every line but
 * the last has "more": true and the same id; engramd joins the parts, up
 * to max_input bytes, and runs the request once the last arrives.
 * Returns 1 when the request is complete (*buf, *len: owned input, or
 * NULL), 0 when more parts are expected or the line was dropped, -1 after
 * answering with an error. */
static int conn_input(ed_conn *c, json_t *msg, json_t *id, const ed_op *op,
    unsigned char **buf, size_t *len)
{
	json_t *more = json_object_get(msg, "more");
	json_t *text = json_object_get(msg, "text"), *data = json_object_get(msg, "data");
	const char *why = NULL;
	ed_err code = ED_ERR_INVALID_ARGUMENT;

	*buf = NULL;
	*len = 0;
	if (c->skip_id && json_equal(c->skip_id, id)) {
		if (!json_is_true(more)) {
			json_decref(c->skip_id);
			c->skip_id = NULL;
		}
		return 0;
	}
	if (more && !json_is_boolean(more))
		why = "'more' must be true or false";
	else if (text && data)
		why = "give 'text' or 'data', not both";
	else if (text && !json_is_string(text))
		why = "'text' must be a string";
	else if (data && !json_is_string(data))
		why = "'data' must be a base64 string";
	if (!why && c->up_id && !json_equal(c->up_id, id)) {
		why = "another request's input is still being sent on this connection";
		code = ED_ERR_BAD_REQUEST;
	} else if (!why && c->up_id && c->up_op != op) {
		why = "every part of a request must have the same 'op'";
		code = ED_ERR_BAD_REQUEST;
	}
	if (why) {
		upload_reset(c);
		conn_write_error(c, id, code, why);
		return -1;
	}
	size_t n = text ? json_string_length(text) : data ? json_string_length(data) : 0;
	unsigned char *piece = malloc(n + 1);
	long k = n;
	if (!piece)
		goto nomem;
	if (text)
		memcpy(piece, json_string_value(text), n);
	else if (data && (k = ed_b64_decode(json_string_value(data), n, piece)) < 0) {
		free(piece);
		upload_reset(c);
		conn_write_error(c, id, ED_ERR_INVALID_ARGUMENT, "'data' is not valid base64");
		return -1;
	}
	if (c->up_len + k > c->srv->settings->max_input) {
		char m[128];
		free(piece);
		upload_reset(c);
		snprintf(m, sizeof(m), "input larger than max_input (%zu bytes)", c->srv->settings->max_input);
		conn_write_error(c, id, ED_ERR_INVALID_ARGUMENT, m);
		if (json_is_true(more))
			c->skip_id = json_incref(id);
		return -1;
	}
	if (!json_is_true(more) && !c->up_id) {
		*buf = (text || data) ? piece : (free(piece), NULL);
		*len = k;
		return 1;
	}
	if (upload_append(c, piece, k) < 0) {
		free(piece);
		goto nomem;
	}
	free(piece);
	if (!c->up_id) {
		c->up_id = json_incref(id);
		c->up_op = op;
	}
	c->up_input |= text || data;
	if (json_is_true(more))
		return 0;
	if (c->up_input && !c->up_buf && !(c->up_buf = malloc(1)))
		goto nomem;	/* empty parts: input "", as in one line */
	*buf = c->up_buf;
	*len = c->up_len;
	c->up_buf = NULL;
	upload_reset(c);
	return 1;
nomem:
	upload_reset(c);
	conn_write_error(c, id, ED_ERR_INTERNAL, "out of memory");
	return -1;
}

static void conn_dispatch(ed_conn *c, json_t *msg, json_t *id, const ed_op *op)
{
	ed_server *srv = c->srv;
	unsigned char *input;
	size_t input_len;

	if (conn_input(c, msg, id, op, &input, &input_len) <= 0) {
		json_decref(msg);
		return;
	}
	ed_req *r = calloc(1, sizeof(*r));
	if (!r || conn_track(c, r) < 0) {
		free(input);
		free(r);
		conn_write_error(c, id, ED_ERR_INTERNAL, "out of memory");
		json_decref(msg);
		return;
	}
	r->srv = srv;
	r->conn = c;
	r->msg = msg;
	r->id = id;
	r->op = op;
	r->input = input;
	r->input_len = input_len;
	c->refs++;
	c->inflight++;
	srv->stats.inflight++;
	srv->stats.requests_total++;
	if (op->on_loop)
		op->on_loop(r);
	else
		ed_req_defer(r, op->on_worker);
}

void ed_req_defer(ed_req *r, void (*fn)(ed_req *))
{
	r->work_fn = fn;
	r->work.data = r;
	if (uv_queue_work(r->srv->loop, &r->work, on_work, on_work_done) < 0) {
		ed_req_fail(r, ED_ERR_INTERNAL, "cannot queue work");
		ed_req_finish(r);
	}
}

static int on_line(void *arg, enum ed_frame_kind kind, const char *data, size_t len)
{
	ed_conn *c = arg;
	char msgbuf[256];
	json_t *msg = NULL, *id = NULL;
	const ed_op *op = NULL;
	ed_err e;

	if (kind == ED_FRAME_TOO_LONG) {
		snprintf(msgbuf, sizeof(msgbuf), "request line longer than %zu bytes",
			 c->srv->settings->max_line);
		conn_write_error(c, NULL, ED_ERR_LINE_TOO_LONG, msgbuf);
		return 0;
	}
	int rc = ed_proto_parse(data, len, &msg, &id, &op, &e, msgbuf, sizeof(msgbuf));
	if (rc > 0)
		return 0;	/* a blank line */
	if (rc < 0) {
		conn_write_error(c, id, e, msgbuf);
		json_decref(msg);
		return 0;
	}
	if (c->srv->stopping || c->state == CONN_DRAINING) {
		conn_write_error(c, id, ED_ERR_SHUTTING_DOWN, "engramd is shutting down");
		json_decref(msg);
		return 0;
	}
	conn_dispatch(c, msg, id, op);
	/* Stop framing when this connection hit a limit; the rest of the buffer
	 * is kept by the framer's caller and read again on resume. */
	return conn_wants_read(c) ? 0 : 1;
}


/* Frames as much of data as the connection's limits allow; returns the
 * bytes consumed. */
static size_t conn_feed(ed_conn *c, const char *data, size_t n)
{
	size_t off = 0, used = 0;

	while (off < n && conn_wants_read(c) && c->state != CONN_DRAINING &&
	       c->state != CONN_CLOSED) {
		int rc = ed_frame_feed(&c->frame, data + off, n - off, on_line, c, &used);
		off += used;
		if (rc < 0) {
			conn_write_error(c, NULL, ED_ERR_INTERNAL, "out of memory");
			conn_drain(c);
			return n;
		}
	}
	return c->state == CONN_DRAINING || c->state == CONN_CLOSED ? n : off;
}

/* Processes bytes held back while the connection was over a limit, then
 * starts or stops reading to match the limits.  Not re-entrant: a request
 * that finishes inside on_line lands here and returns at once; the outer
 * call then looks again. */
static void conn_pump(ed_conn *c)
{
	if (c->pumping)
		return;
	c->pumping = 1;
	while (c->held_len && conn_wants_read(c) &&
	       (c->state == CONN_OPEN || c->state == CONN_PAUSED)) {
		size_t k = conn_feed(c, c->held, c->held_len);
		memmove(c->held, c->held + k, c->held_len - k);
		c->held_len -= k;
	}
	c->pumping = 0;
	int want = conn_wants_read(c) && c->held_len == 0;
	if (c->state == CONN_OPEN && !want) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->state = CONN_PAUSED;
	} else if (c->state == CONN_PAUSED && want) {
		c->state = CONN_OPEN;
		uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
	}
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	ed_conn *c = (ed_conn *)st;

	if (n < 0) {
		/* EOF or error: the client left; cancel what it asked for.  A
		 * last line without its newline (`printf ... | socat`) is
		 * still a request: read it first. */
		if (n == UV_EOF && ed_frame_pending(&c->frame)) {
			c->pumping = 1;
			(void)conn_feed(c, "\n", 1);
			c->pumping = 0;
		}
		conn_drain(c);
		return;
	}
	c->pumping = 1;
	size_t k = conn_feed(c, buf->base, (size_t)n);
	c->pumping = 0;
	if (k < (size_t)n) {
		/* Over a limit mid-buffer: keep the rest (at most one read
		 * buffer, since we stop reading now) for when it resumes. */
		memcpy(c->held, buf->base + k, n - k);
		c->held_len = n - k;
	}
	conn_pump(c);
}

/* ------------------------------------------------------------- requests */

int ed_req_arg_bool(ed_req *r, const char *key, int def)
{
	json_t *v = json_object_get(r->msg, key);
	if (!v)
		return def;
	if (!json_is_boolean(v)) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'%s' must be true or false", key);
		return -1;
	}
	return json_is_true(v);
}

const ed_settings *ed_req_settings(const ed_req *r)
{
	return r->srv->settings;
}

int ed_req_is_cancelled(const ed_req *r)
{
	return atomic_load(&r->cancelled);
}

void ed_req_fail(ed_req *r, ed_err err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
	va_end(ap);
	r->err = err;
	r->failed = 1;
}

static void outbox_drain(ed_server *srv)
{
	pthread_mutex_lock(&srv->outbox_mu);
	struct outmsg *m = srv->outbox;
	srv->outbox = NULL;
	srv->outbox_tail = &srv->outbox;
	pthread_mutex_unlock(&srv->outbox_mu);
	while (m) {
		struct outmsg *next = m->next;
		conn_write(m->conn, m->data, m->len);
		free(m);
		m = next;
	}
}

static void on_wake(uv_async_t *a)
{
	outbox_drain(a->data);
}

void ed_req_emit(ed_req *r, const char *event, json_t *fields)
{
	ed_server *srv = r->srv;
	json_t *ev = ed_proto_event(r->id, event, fields);
	size_t len = 0;
	char *s = ev ? ed_proto_dump(ev, &len) : NULL;

	json_decref(ev);
	if (!s)
		return;
	uv_thread_t self = uv_thread_self();
	if (uv_thread_equal(&self, &srv->loop_thread)) {
		conn_write(r->conn, s, len);
		free(s);
		return;
	}
	struct outmsg *m = malloc(sizeof(*m) + len);
	if (m) {
		memcpy(m->data, s, len);
		m->len = len;
		m->conn = r->conn;
		m->next = NULL;
		/* No reference is taken for the message: the request's own
		 * keeps conn alive, and ed_req_finish drains the outbox before
		 * it lets go. */
		pthread_mutex_lock(&srv->outbox_mu);
		*srv->outbox_tail = m;
		srv->outbox_tail = &m->next;
		pthread_mutex_unlock(&srv->outbox_mu);
		uv_async_send(&srv->wake);
	}
	free(s);
}

void ed_req_finish(ed_req *r)
{
	ed_server *srv = r->srv;
	ed_conn *c = r->conn;
	json_t *ev;

	if (r->on_finish)	/* before the event: its reader may act on it */
		r->on_finish(r);
	outbox_drain(srv);
	if (r->failed)
		ev = ed_proto_error_event(r->id, r->err, r->errmsg);
	else
		ev = ed_proto_event(r->id, "done", r->result ? json_incref(r->result) : NULL);
	if (ev)
		conn_write_json(c, ev);
	if (r->failed)
		srv->stats.errors_total++;
	json_decref(ev);
	json_decref(r->result);
	json_decref(r->msg);
	free(r->input);
	conn_untrack(c, r);
	c->inflight--;
	srv->stats.inflight--;
	free(r);
	conn_pump(c);
	conn_maybe_close(c);
	conn_unref(c);
	server_maybe_done(srv);
}

/* ------------------------------------------------------------- accepting */

/* Only the daemon's own user may talk to it: the socket's mode already says
 * so, and SO_PEERCRED makes sure of it whatever the file system allows. */
static int peer_allowed(ed_conn *c, uid_t *uid)
{
	uv_os_fd_t fd;
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return 0;
	*uid = cred.uid;
	return cred.uid == geteuid();
}

/* Writes one error line to a connection we refuse, then closes it. */
static void conn_refuse(ed_conn *c, ed_err e, const char *msg)
{
	json_t *ev = ed_proto_error_event(NULL, e, msg);
	size_t len = 0;
	char *s = ev ? ed_proto_dump(ev, &len) : NULL;
	if (s) {
		uv_buf_t b = uv_buf_init(s, (unsigned)len);
		uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
	}
	free(s);
	json_decref(ev);
	c->srv->stats.errors_total++;
	conn_close(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
	ed_server *srv = ls->data;
	uid_t uid = 0;

	if (status < 0) {
		ed_log(ED_LOG_WARN, "accept: %s", uv_strerror(status));
		return;
	}
	ed_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->srv = srv;
	c->refs = 1;
	c->serial = ++srv->next_serial;
	ed_frame_init(&c->frame, srv->settings->max_line);
	uv_pipe_init(srv->loop, &c->pipe, 0);
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->stats.connections++;
	srv->stats.connections_total++;
	if (uv_accept(ls, (uv_stream_t *)&c->pipe) < 0) {
		conn_close(c);
		return;
	}
	if (!peer_allowed(c, &uid)) {
		ed_log(ED_LOG_WARN, "refused a connection from uid %u", (unsigned)uid);
		conn_refuse(c, ED_ERR_PERMISSION_DENIED, "only the user running engramd may connect");
		return;
	}
	if (srv->stopping) {
		conn_refuse(c, ED_ERR_SHUTTING_DOWN, "engramd is shutting down");
		return;
	}
	if (srv->stats.connections > srv->settings->max_connections) {
		conn_refuse(c, ED_ERR_BUSY, "too many connections");
		return;
	}
	c->state = CONN_OPEN;
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

/* ------------------------------------------------------------- server */

int ed_server_open(ed_server **out, ed_settings *s, uv_loop_t *loop)
{
	ed_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->loop = loop;
	srv->settings = s;
	srv->loop_thread = uv_thread_self();
	srv->outbox_tail = &srv->outbox;
	srv->started_ms = uv_now(loop);
	pthread_mutex_init(&srv->outbox_mu, NULL);
	uv_async_init(loop, &srv->wake, on_wake);
	srv->wake.data = srv;
	uv_timer_init(loop, &srv->stop_timer);
	srv->stop_timer.data = srv;
	*out = srv;
	return 0;
}

/* An existing socket file is either a live daemon (refuse to start) or left
 * by one that died (remove it). */
static int socket_path_free(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	if (live)
		return -EADDRINUSE;
	return unlink(path) < 0 ? -errno : 0;
}

int ed_server_listen(ed_server *srv)
{
	const char *path = srv->settings->socket_path;
	struct sockaddr_un sa;
	int rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		ed_log(ED_LOG_ERROR, "socket path too long (%zu bytes, at most %zu): %s",
		       strlen(path), sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	if ((rc = socket_path_free(path)) < 0) {
		if (rc == -EADDRINUSE)
			ed_log(ED_LOG_ERROR, "another engramd is listening on %s", path);
		else
			ed_log(ED_LOG_ERROR, "cannot use socket path %s: %s", path,
			       rc == -EEXIST ? "a file that is not a socket is there" : strerror(-rc));
		return rc;
	}
	uv_pipe_init(srv->loop, &srv->listener, 0);
	srv->listener.data = srv;
	/* The socket is created 0600 from the start, not chmod'ed after. */
	mode_t old = umask(0177);
	rc = uv_pipe_bind(&srv->listener, path);
	umask(old);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection);
	if (rc < 0) {
		ed_log(ED_LOG_ERROR, "cannot listen on %s: %s", path, uv_strerror(rc));
		uv_close((uv_handle_t *)&srv->listener, NULL);
		return rc;
	}
	srv->listening = 1;
	ed_log(ED_LOG_INFO, "listening on %s", path);
	return 0;
}

/* Once stopping and nothing is left, close our own handles so uv_run returns. */
static void server_maybe_done(ed_server *srv)
{
	if (!srv->stopping || srv->done || srv->conns || srv->stats.inflight > 0)
		return;
	srv->done = 1;
	uv_close((uv_handle_t *)&srv->wake, NULL);
	uv_close((uv_handle_t *)&srv->stop_timer, NULL);
}

void ed_server_on_stop(ed_server *srv, void (*cb)(void *), void *arg)
{
	srv->on_stop = cb;
	srv->on_stop_arg = arg;
}

static void on_stop_timeout(uv_timer_t *t)
{
	ed_server *srv = t->data;
	ed_log(ED_LOG_WARN, "shutdown: %d request(s) still running after %.0f s; closing anyway",
	       srv->stats.inflight, srv->settings->shutdown_timeout);
	for (ed_conn *c = srv->conns; c; c = c->next)
		conn_close(c);
	uv_stop(srv->loop);
}

void ed_server_stop(ed_server *srv, const char *why)
{
	if (srv->stopping)
		return;
	srv->stopping = 1;
	ed_log(ED_LOG_INFO, "stopping (%s): %d connection(s), %d request(s) in flight",
	       why, srv->stats.connections, srv->stats.inflight);
	if (srv->listening) {
		uv_close((uv_handle_t *)&srv->listener, NULL);
		unlink(srv->settings->socket_path);
		srv->listening = 0;
	}
	uv_timer_start(&srv->stop_timer, on_stop_timeout,
		       (uint64_t)(srv->settings->shutdown_timeout * 1000), 0);
	uv_unref((uv_handle_t *)&srv->stop_timer);
	if (srv->on_stop)
		srv->on_stop(srv->on_stop_arg);
	for (ed_conn *c = srv->conns, *n; c; c = n) {
		n = c->next;
		conn_drain(c);
	}
	server_maybe_done(srv);
}

void ed_server_close(ed_server *srv)
{
	if (!srv)
		return;
	outbox_drain(srv);
	pthread_mutex_destroy(&srv->outbox_mu);
	free(srv);
}

const ed_settings *ed_server_settings(const ed_server *srv)
{
	return srv->settings;
}

void ed_server_stats(const ed_server *srv, ed_stats *st)
{
	*st = srv->stats;
}

double ed_server_uptime(const ed_server *srv)
{
	return (uv_now(srv->loop) - srv->started_ms) / 1000.0;
}

int ed_server_stopping(const ed_server *srv)
{
	return srv->stopping;
}
