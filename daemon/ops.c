/* ops.c - the protocol's operations.  Each op is an entry in the table at
 * the bottom: quick ones run on the loop thread, heavy ones on a worker
 * (engramd.h explains the split). */
#include "config.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "engramd.h"

/* Extra state main.c gives the ops (the server itself and what it serves). */
static struct {
	ed_server *srv;
} ops;

void ed_ops_init(ed_server *srv)
{
	ops.srv = srv;
}

/* ping [delay_ms]: answers at once, or after sleeping on a worker thread
 * (a diagnostic: it shows that slow work never holds up the loop, and lets
 * tests hold requests in flight). */
static void ping_worker(ed_req *r)
{
	json_int_t ms = json_integer_value(json_object_get(r->msg, "delay_ms"));
	for (json_int_t t = 0; t < ms; t += 10) {
		if (ed_req_is_cancelled(r)) {
			ed_req_fail(r, ED_ERR_CANCELLED, "cancelled after %lld ms", (long long)t);
			return;
		}
		usleep(10000);
	}
	r->result = json_pack("{s:b,s:I}", "pong", 1, "delay_ms", ms);
}

static void op_ping(ed_req *r)
{
	json_t *d = json_object_get(r->msg, "delay_ms");
	if (!d) {
		r->result = json_pack("{s:b}", "pong", 1);
		ed_req_finish(r);
		return;
	}
	if (!json_is_integer(d) || json_integer_value(d) < 0 ||
	    json_integer_value(d) > 600000) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT,
			    "'delay_ms' must be an integer from 0 to 600000");
		ed_req_finish(r);
		return;
	}
	ed_req_defer(r, ping_worker);
}

static void op_status(ed_req *r)
{
	const ed_settings *s = ed_server_settings(ops.srv);
	ed_stats st;

	ed_server_stats(ops.srv, &st);
	r->result = json_pack("{s:s,s:i,s:f,s:s,s:s,s:o,s:{s:i,s:I,s:I,s:I},s:i,s:b}",
		"version", PACKAGE_VERSION,
		"pid", (int)getpid(),
		"uptime_s", ed_server_uptime(ops.srv),
		"data_dir", s->data_dir,
		"socket", s->socket_path,
		"model", ed_model_brief(),
		"counts",
		  "connections", st.connections,
		  "connections_total", (json_int_t)st.connections_total,
		  "requests_total", (json_int_t)st.requests_total,
		  "errors_total", (json_int_t)st.errors_total,
		"inflight", st.inflight - 1,	/* not counting this request */
		"stopping", ed_server_stopping(ops.srv));
	if (r->result)
		json_object_set_new(r->result, "jobs", ed_jobs_running());
	if (!r->result)
		ed_req_fail(r, ED_ERR_INTERNAL, "cannot build status");
	ed_req_finish(r);
}

static void op_shutdown(ed_req *r)
{
	r->result = json_pack("{s:b}", "stopping", 1);
	ed_req_finish(r);
	ed_server_stop(ops.srv, "shutdown requested");
}

static const ed_op op_table[] = {
	{ "ping", op_ping, NULL },
	{ "status", op_status, NULL },
	{ "shutdown", op_shutdown, NULL },
	{ NULL, NULL, NULL },
};

/* Every op table; each ends with a NULL name. */
static const ed_op *const tables[] = {
	op_table, ed_ops_model, ed_ops_session, ed_ops_generate, ed_ops_ask,
};

const ed_op *ed_op_find(const char *name)
{
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const ed_op *op = tables[t]; op->name; op++)
			if (!strcmp(op->name, name))
				return op;
	return NULL;
}
