/* ops_session.c - the protocol's ops for sessions, ingest jobs and the
 * store: ingest, jobs, job, cancel, sessions, session_show, session_rm,
 * session_rename, source, store, gc, store_check.  Contract: docs/PROTOCOL.md.
 *
 * Ops about jobs run on the loop thread (the job table is the loop's,
 * jobs.c); ops that read or write the store more than a row or two run on
 * a worker, taking the store's mutex around each short sequence. */
#include "config.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "engine.h"
#include "engramd.h"
#include "memstore.h"
#include "text.h"

/* Paths per ingest request, and the longest one. */
#define MAX_PATHS 1024
#define MAX_PATH_LEN 4096
/* Documents listed by session_show. */
#define SHOW_DOCS 1000
/* Tokens of a span detokenized by `source`. */
#define SOURCE_MAX_TOKENS 65536

/* ---------------------------------------------------------------- args */

/* A string argument: NULL (after failing r) when missing and required, or
 * present with the wrong type; *absent set when it is missing. */
static const char *arg_str(ed_req *r, const char *key, int required)
{
	json_t *v = json_object_get(r->msg, key);
	if (!v) {
		if (required)
			ed_req_fail(r, ED_ERR_MISSING_FIELD, "missing field '%s'", key);
		return NULL;
	}
	if (!json_is_string(v)) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'%s' must be a string", key);
		return NULL;
	}
	return json_string_value(v);
}

/* A session name argument, checked. */
static const char *arg_name(ed_req *r, const char *key)
{
	const char *s = arg_str(r, key, 1);
	if (s && !ms_name_valid(s)) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'%s': bad session name (1 to 128 of "
			    "A-Z a-z 0-9 . _ -, not starting with '.')", key);
		return NULL;
	}
	return s;
}

/* A non-negative integer argument; -1 after failing r. */
static int64_t arg_uint(ed_req *r, const char *key, int required, int64_t def)
{
	json_t *v = json_object_get(r->msg, key);
	if (!v) {
		if (required) {
			ed_req_fail(r, ED_ERR_MISSING_FIELD, "missing field '%s'", key);
			return -1;
		}
		return def;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'%s' must be a non-negative integer", key);
		return -1;
	}
	return json_integer_value(v);
}

/* Maps a memstore error to the protocol's. */
static void fail_ms(ed_req *r, int rc, ms_store *ms, const char *what)
{
	ed_err e = rc == MS_ENOTFOUND ? ED_ERR_NOT_FOUND :
		   rc == MS_ENAME || rc == MS_EEXIST || rc == MS_EINVAL || rc == MS_ERANGE ?
		   ED_ERR_INVALID_ARGUMENT : ED_ERR_INTERNAL;
	ed_req_fail(r, e, "%s: %s", what, ms ? ms_errmsg(ms) : ms_strerror(rc));
}

void ed_audit(ms_store *ms, const char *action, const char *session,
	      json_t *settings)
{
	ms_audit a = { 0 };
	char *s = settings ? json_dumps(settings, JSON_COMPACT) : NULL;
	/* Only engramd's own user may connect (SO_PEERCRED), so the uid is it. */
	snprintf(a.who, sizeof(a.who), "uid %u", (unsigned)getuid());
	snprintf(a.action, sizeof(a.action), "%s", action);
	snprintf(a.session, sizeof(a.session), "%s", session ? session : "");
	const eng_model *m = ed_model();
	snprintf(a.model, sizeof(a.model), "%s", m ? eng_model_info_get(m)->fingerprint : "");
	snprintf(a.settings, sizeof(a.settings), "%.4096s", s ? s : "");
	if (ms_audit_append(ms, &a) < 0)
		ed_log(ED_LOG_WARN, "audit %s %s: %s", action, a.session, ms_errmsg(ms));
	free(s);
}

/* ---------------------------------------------------------------- ingest */

/* The session's geometry from the model: the layers whose KV is kept
 * whole (gemma3: the global ones; others: all). */
static void model_geom(const eng_model *m, int mode, ms_geom *g, uint8_t fp[16])
{
	const eng_hparams *hp = eng_model_hparams(m);
	uint32_t layers = eng_hparams_n_global(hp);
	*g = (ms_geom){ .n_layers = layers ? layers : 1, .n_kv_heads = hp->n_head_kv,
			.head_dim = hp->head_dim_k, .block_tokens = MS_DEFAULT_BLOCK_TOKENS,
			.mode = (ms_mode)mode };
	const char *hex = eng_model_info_get(m)->fingerprint;
	for (int i = 0; i < 16; i++)
		sscanf(hex + 2 * i, "%2hhx", &fp[i]);
}

/* The roots: "paths" made absolute against "cwd".  Returns a malloc'd
 * array of malloc'd strings, or NULL after failing r. */
static char **ingest_paths(ed_req *r, size_t *n)
{
	json_t *paths = json_object_get(r->msg, "paths"), *p;
	json_t *cwdj = json_object_get(r->msg, "cwd");
	const char *cwd = NULL;
	char **v = NULL;
	size_t i;

	if (!paths) {
		ed_req_fail(r, ED_ERR_MISSING_FIELD, "missing field 'paths'");
		return NULL;
	}
	if (!json_is_array(paths) || !json_array_size(paths) ||
	    json_array_size(paths) > MAX_PATHS) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'paths' must be an array of 1 to %d "
			    "strings", MAX_PATHS);
		return NULL;
	}
	if (cwdj) {
		cwd = json_string_value(cwdj);
		if (!cwd || cwd[0] != '/' || strlen(cwd) > MAX_PATH_LEN) {
			ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'cwd' must be an absolute path");
			return NULL;
		}
	}
	if (!(v = calloc(json_array_size(paths), sizeof(*v)))) {
		ed_req_fail(r, ED_ERR_INTERNAL, "out of memory");
		return NULL;
	}
	json_array_foreach(paths, i, p) {
		const char *s = json_string_value(p);
		size_t len = json_string_length(p);
		if (!s || !len || len > MAX_PATH_LEN || memchr(s, 0, len)) {
			ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "paths[%zu] must be a non-empty "
				    "path of at most %d bytes", i, MAX_PATH_LEN);
			goto fail;
		}
		if (s[0] != '/' && !cwd) {
			ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "paths[%zu] is relative and no "
				    "'cwd' was given", i);
			goto fail;
		}
		size_t need = (s[0] == '/' ? 0 : strlen(cwd) + 1) + len + 1;
		if (!(v[i] = malloc(need))) {
			ed_req_fail(r, ED_ERR_INTERNAL, "out of memory");
			goto fail;
		}
		if (s[0] == '/')
			memcpy(v[i], s, len + 1);
		else
			snprintf(v[i], need, "%s/%s", cwd, s);
	}
	*n = json_array_size(paths);
	return v;
fail:
	for (size_t k = 0; k < json_array_size(paths); k++)
		free(v[k]);
	free(v);
	return NULL;
}

/* 0 when at least one root can be reached; otherwise fails r with the
 * first root's error and returns -1, so that a mistyped path neither
 * creates a session nor empties one. */
static int ingest_roots_exist(ed_req *r, char **roots, size_t n)
{
	struct stat st;
	int e = 0;

	for (size_t i = 0; i < n; i++) {
		if (stat(roots[i], &st) == 0)
			return 0;
		if (i == 0)
			e = errno;
	}
	ed_req_fail(r, e == EACCES ? ED_ERR_PERMISSION_DENIED : ED_ERR_NOT_FOUND,
		    "%s: %s%s", roots[0], strerror(e),
		    n > 1 ? " (and no other path can be read)" : "");
	return -1;
}

static void op_ingest(ed_req *r)
{
	const eng_model *m = ed_model();
	ed_jobs_recover();
	const char *name;
	char **roots = NULL;
	size_t n = 0;
	int detach;
	int64_t sid = 0, job;

	if (!ed_model_need(r))
		goto out;
	if (!(name = arg_name(r, "session")) || (detach = ed_req_arg_bool(r, "detach", 0)) < 0 ||
	    !(roots = ingest_paths(r, &n)) || ingest_roots_exist(r, roots, n) < 0)
		goto out;

	/* The session: found, or created with the model's geometry. */
	ms_session_info si;
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_session_get(ms, name, &si) : MS_EIO;
	if (rc == 0) {
		sid = si.id;
	} else if (rc == MS_ENOTFOUND) {
		ms_geom g;
		uint8_t fp[16];
		model_geom(m, ed_req_settings(r)->kv_mode, &g, fp);
		rc = ms_session_create(ms, name, fp, &g, &sid);
	}
	if (rc < 0) {
		fail_ms(r, rc, ms, "session");
	} else {
		json_t *set = json_pack("{s:o,s:b}", "paths", json_deep_copy(json_object_get(r->msg, "paths")),
					"detach", detach);
		ed_audit(ms, "ingest", name, set);
		json_decref(set);
	}
	ed_store_unlock();
	if (rc < 0)
		goto out;

	ed_err e;
	char msg[256];
	ed_job_args a = { .session_id = sid, .session = name,
			  .roots = (const char *const *)roots, .n_roots = n };
	if (ed_job_start(r, &a, &job, &e, msg, sizeof(msg)) < 0) {
		ed_req_fail(r, e, "%s", msg);
		goto out;
	}
	if (detach) {
		r->result = json_pack("{s:I,s:s}", "job", (json_int_t)job, "session", name);
		goto out;
	}
	/* Tells the client the job id at once: Ctrl-C leaves the job running. */
	ed_req_emit(r, "job", json_pack("{s:I,s:s}", "job", (json_int_t)job, "session", name));
	if (ed_job_follow(job, r) == 0) {
		for (size_t i = 0; i < n; i++)
			free(roots[i]);
		free(roots);
		return;
	}
	r->result = ed_job_describe(job, 0);
out:
	for (size_t i = 0; roots && i < n; i++)
		free(roots[i]);
	free(roots);
	ed_req_finish(r);
}

/* ---------------------------------------------------------------- prefill */

static void op_prefill(ed_req *r)
{
	ed_jobs_recover();
	const char *name;
	int detach, reuse;
	ms_session_info si;
	int64_t job;
	ed_err e;
	char msg[256];

	if (!ed_model_need(r) || !(name = arg_name(r, "session")) ||
	    (detach = ed_req_arg_bool(r, "detach", 0)) < 0 ||
	    (reuse = ed_req_arg_bool(r, "reuse", 1)) < 0)
		goto out;
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_session_get(ms, name, &si) : MS_EIO;
	if (rc < 0)
		fail_ms(r, rc, ms, name);
	else
		ed_audit(ms, "prefill", name, NULL);
	ed_store_unlock();
	if (rc < 0)
		goto out;
	if (ed_prefill_start(r, si.id, name, reuse, &job, &e, msg, sizeof(msg)) < 0) {
		ed_req_fail(r, e, "%s", msg);
		goto out;
	}
	if (detach) {
		r->result = json_pack("{s:I,s:s}", "job", (json_int_t)job, "session", name);
		goto out;
	}
	ed_req_emit(r, "job", json_pack("{s:I,s:s}", "job", (json_int_t)job, "session", name));
	if (ed_job_follow(job, r) == 0)
		return;
	r->result = ed_job_describe(job, 0);
out:
	ed_req_finish(r);
}

/* ---------------------------------------------------------------- jobs */

static void op_jobs(ed_req *r)
{
	int64_t limit = arg_uint(r, "limit", 0, 100);
	if (limit >= 0 && (limit < 1 || limit > 10000))
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'limit' must be 1 to 10000");
	else if (limit >= 0) {
		json_t *a = ed_jobs_list((size_t)limit);
		if (a)
			r->result = json_pack("{s:o}", "jobs", a);
		else
			ed_req_fail(r, ED_ERR_INTERNAL, "cannot list jobs");
	}
	ed_req_finish(r);
}

static void op_job(ed_req *r)
{
	int64_t id = arg_uint(r, "job", 1, 0);
	if (id >= 0) {
		json_t *o = ed_job_describe(id, 1);
		if (o)
			r->result = o;
		else
			ed_req_fail(r, ED_ERR_NOT_FOUND, "no job %lld", (long long)id);
	}
	ed_req_finish(r);
}

static void op_cancel(ed_req *r)
{
	int64_t id = arg_uint(r, "job", 1, 0);
	if (id >= 0) {
		int rc = ed_job_cancel(id);
		if (rc < 0)
			ed_req_fail(r, ED_ERR_NOT_FOUND, "no job %lld", (long long)id);
		else
			r->result = json_pack("{s:I,s:b}", "job", (json_int_t)id,
					      "cancelling", rc == 0);
	}
	ed_req_finish(r);
}

/* ---------------------------------------------------------------- sessions */

static json_t *session_json(ms_store *ms, const ms_session_info *s)
{
	uint64_t stream = 0, spans = 0, docs = 0;
	ms_stream_length(ms, s->id, &stream);
	ms_span_count(ms, s->id, &spans, &docs);
	char fp[33];
	for (int i = 0; i < 16; i++)
		snprintf(fp + 2 * i, 3, "%02x", s->fingerprint[i]);
	return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:s}",
		"session", s->name, "created", (json_int_t)s->created,
		"stream_tokens", (json_int_t)stream,
		"prefilled_tokens", (json_int_t)s->n_tokens,
		"documents", (json_int_t)docs, "spans", (json_int_t)spans,
		"fingerprint", fp);
}

static void sessions_worker(ed_req *r)
{
	ms_session_info *v = NULL;
	size_t n = 0;
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_session_list(ms, &v, &n) : MS_EIO;
	if (rc < 0) {
		fail_ms(r, rc, ms, "sessions");
	} else {
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, session_json(ms, &v[i]));
		r->result = json_pack("{s:o}", "sessions", a);
	}
	ed_store_unlock();
	ms_free(v);
}

static void show_worker(ed_req *r)
{
	const char *name = arg_name(r, "session");
	ms_session_info si;
	ms_session_doc *docs = NULL;
	size_t n = 0;
	if (!name)
		return;
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_session_get(ms, name, &si) : MS_EIO;
	if (rc == 0)
		rc = ms_session_docs(ms, si.id, SHOW_DOCS, &docs, &n);
	if (rc < 0) {
		fail_ms(r, rc, ms, name);
	} else {
		json_t *o = session_json(ms, &si), *a = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, json_pack("{s:o,s:s,s:I,s:I,s:s,s:I,s:I}",
				"path", ed_json_path(docs[i].doc.path), "kind", docs[i].doc.kind,
				"size", (json_int_t)docs[i].doc.size,
				"mtime", (json_int_t)docs[i].doc.mtime,
				"hash", docs[i].doc.content_hash,
				"tok_start", (json_int_t)docs[i].tok_start,
				"tok_end", (json_int_t)docs[i].tok_end));
		json_object_set_new(o, "document_list", a);
		json_object_set_new(o, "geometry", json_pack("{s:i,s:i,s:i,s:i,s:i}",
			"layers", (int)si.geom.n_layers, "kv_heads", (int)si.geom.n_kv_heads,
			"head_dim", (int)si.geom.head_dim, "block_tokens", (int)si.geom.block_tokens,
			"mode", (int)si.geom.mode));
		json_object_set_new(o, "blocks", json_integer((json_int_t)si.n_blocks));
		r->result = o;
	}
	ed_store_unlock();
	ms_free(docs);
}

/* session_rm and session_rename refuse a session with a running job. */
static int session_idle(ed_req *r, const char *name)
{
	ms_session_info si;
	ed_jobs_recover();
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_session_get(ms, name, &si) : MS_EIO;
	if (rc < 0)
		fail_ms(r, rc, ms, name);
	ed_store_unlock();
	if (rc < 0)
		return 0;
	char msg[256];
	if (ed_session_busy(si.id, name, msg, sizeof(msg))) {
		ed_req_fail(r, ED_ERR_BUSY, "%s", msg);
		return 0;
	}
	return 1;
}

static void rm_worker(ed_req *r)
{
	const char *name = json_string_value(json_object_get(r->msg, "session"));
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_session_delete(ms, name) : MS_EIO;
	if (rc < 0)
		fail_ms(r, rc, ms, name);
	else {
		ed_audit(ms, "session_rm", name, NULL);
		r->result = json_pack("{s:s,s:b}", "session", name, "removed", 1);
	}
	ed_store_unlock();
	ed_idle_touch();
}

static void op_session_rm(ed_req *r)
{
	const char *name = arg_name(r, "session");
	if (name && session_idle(r, name)) {
		ed_req_defer(r, rm_worker);
		return;
	}
	ed_req_finish(r);
}

static void rename_worker(ed_req *r)
{
	const char *from = json_string_value(json_object_get(r->msg, "session"));
	const char *to = json_string_value(json_object_get(r->msg, "to"));
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_session_rename(ms, from, to) : MS_EIO;
	if (rc == MS_EEXIST)
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "a session named %s exists", to);
	else if (rc < 0)
		fail_ms(r, rc, ms, from);
	else {
		json_t *set = json_pack("{s:s}", "to", to);
		/* Recorded under the new name: the history follows the session. */
		ed_audit(ms, "session_rename", to, set);
		json_decref(set);
		r->result = json_pack("{s:s,s:s}", "session", to, "from", from);
	}
	ed_store_unlock();
}

static void fork_worker(ed_req *r)
{
	const char *from = json_string_value(json_object_get(r->msg, "session"));
	const char *to = json_string_value(json_object_get(r->msg, "to"));
	ms_session_info si;
	uint64_t stream = 0;
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_session_fork(ms, from, to, NULL) : MS_EIO;
	if (rc == 0)
		rc = ms_session_get(ms, to, &si);
	if (rc == 0)
		rc = ms_stream_length(ms, si.id, &stream);
	if (rc == MS_EEXIST)
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "a session named %s exists", to);
	else if (rc < 0)
		fail_ms(r, rc, ms, from);
	else {
		json_t *set = json_pack("{s:s}", "from", from);
		ed_audit(ms, "session_fork", to, set);
		json_decref(set);
		r->result = json_pack("{s:s,s:s,s:I,s:I}", "session", to, "from", from,
				      "prefilled_tokens", (json_int_t)si.n_tokens,
				      "stream_tokens", (json_int_t)stream);
	}
	ed_store_unlock();
	ed_idle_touch();	/* its write's pages, freed to the heap */
}

/* A fork shares the source's blocks; a job writing the source meanwhile
 * would give a fork of a moving target: refused like rename. */
static void op_session_fork(ed_req *r)
{
	const char *name = arg_name(r, "session");
	if (name && arg_name(r, "to") && session_idle(r, name)) {
		ed_req_defer(r, fork_worker);
		return;
	}
	ed_req_finish(r);
}

static void op_session_rename(ed_req *r)
{
	const char *name = arg_name(r, "session");
	if (name && arg_name(r, "to") && session_idle(r, name)) {
		ed_req_defer(r, rename_worker);
		return;
	}
	ed_req_finish(r);
}

/* ---------------------------------------------------------------- source */

/* The text of stream tokens [a, b), detokenized. */
static json_t *span_text(ms_store *ms, int64_t sid, uint64_t a, uint64_t b)
{
	const eng_model *m = ed_model();
	if (!m || b <= a)
		return NULL;
	size_t n = b - a > SOURCE_MAX_TOKENS ? SOURCE_MAX_TOKENS : (size_t)(b - a), got = 0;
	int32_t *ids = malloc(n * sizeof(*ids));
	char *out = NULL;
	size_t len = 0, cap = 0;
	json_t *res = NULL;
	if (!ids || ms_stream_read(ms, sid, a, n, ids, &got) < 0)
		goto done;
	const eng_vocab *v = eng_model_vocab(m);
	for (size_t i = 0; i < got; i++) {
		size_t k = 0;
		if (eng_token_to_piece(v, ids[i], 0, out + len, cap - len, &k) < 0)
			goto done;
		if (k > cap - len) {
			cap = (cap + k) * 2;
			char *nb = realloc(out, cap);
			if (!nb)
				goto done;
			out = nb;
			if (eng_token_to_piece(v, ids[i], 0, out + len, cap - len, &k) < 0)
				goto done;
		}
		len += k;
	}
	res = ed_utf8_valid(out ? out : "", len) ? json_stringn(out ? out : "", len) : NULL;
done:
	free(ids);
	free(out);
	return res;
}

static void source_worker(ed_req *r)
{
	const char *name = arg_name(r, "session");
	int64_t pos = name ? arg_uint(r, "pos", 1, 0) : -1;
	int text = pos >= 0 ? ed_req_arg_bool(r, "with_text", 0) : -1;
	ms_session_info si;
	ms_span sp;
	ms_document d;
	if (text < 0)
		return;
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_session_get(ms, name, &si) : MS_EIO;
	if (rc < 0) {
		fail_ms(r, rc, ms, name);
		goto out;
	}
	if ((rc = ms_span_lookup(ms, si.id, (uint64_t)pos, &sp)) < 0) {
		uint64_t len = 0;
		ms_stream_length(ms, si.id, &len);
		if (rc == MS_ENOTFOUND)
			ed_req_fail(r, ED_ERR_NOT_FOUND, "no source for token %lld of %s "
				    "(its stream has %llu tokens)", (long long)pos, name,
				    (unsigned long long)len);
		else
			fail_ms(r, rc, ms, "source");
		goto out;
	}
	if ((rc = ms_document_get(ms, sp.document_id, &d)) < 0) {
		fail_ms(r, rc, ms, "document");
		goto out;
	}
	r->result = json_pack("{s:s,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:b,s:s}",
		"session", name, "pos", (json_int_t)pos,
		"path", ed_json_path(d.path),
		"line_start", (json_int_t)sp.line_start, "line_end", (json_int_t)sp.line_end,
		"page", (json_int_t)sp.page,
		"tok_start", (json_int_t)sp.tok_start, "tok_end", (json_int_t)sp.tok_end,
		"framing", sp.line_start == 0, "hash", d.content_hash);
	if (!r->result)
		ed_req_fail(r, ED_ERR_INTERNAL, "cannot describe the span");
	else if (text) {
		json_t *t = span_text(ms, si.id, sp.tok_start, sp.tok_end);
		if (t)
			json_object_set_new(r->result, "text", t);
	}
out:
	ed_store_unlock();
}

/* ---------------------------------------------------------------- store */

static void store_worker(ed_req *r)
{
	ms_stats st;
	ms_session_info *v = NULL;
	size_t n = 0;
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_stats_get(ms, &st) : MS_EIO;
	if (rc == 0)
		rc = ms_session_list(ms, &v, &n);
	if (rc < 0) {
		fail_ms(r, rc, ms, "store");
	} else {
		uint64_t stream = 0;
		for (size_t i = 0; i < n; i++) {
			uint64_t k = 0;
			ms_stream_length(ms, v[i].id, &k);
			stream += k;
		}
		r->result = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:I,s:I,s:I}",
			"sessions", (json_int_t)n, "blocks", (json_int_t)st.blocks,
			"shared_blocks", (json_int_t)st.shared_blocks,
			"unique_blocks", (json_int_t)(st.blocks - st.shared_blocks),
			"block_refs", (json_int_t)st.block_refs,
			"tokens_stored", (json_int_t)st.tokens_stored,
			"bytes_on_disk", (json_int_t)st.bytes_on_disk,
			"map_size", (json_int_t)st.map_size, "map_used", (json_int_t)st.map_used,
			"bytes_per_token", st.bytes_per_token,
			"stream_tokens", (json_int_t)stream,
			"checkpoints", (json_int_t)st.checkpoints,
			"checkpoint_bytes", (json_int_t)st.checkpoint_bytes);
	}
	ed_store_unlock();
	ms_free(v);
}

static void gc_worker(ed_req *r)
{
	int compact = ed_req_arg_bool(r, "compact", 0);
	uint64_t freed = 0;
	if (compact < 0)
		return;
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_gc(ms, &freed) : MS_EIO;
	if (rc == 0 && compact)
		rc = ms_compact(ms);
	if (rc < 0) {
		fail_ms(r, rc, ms, compact ? "compact" : "gc");
	} else {
		ms_stats st;
		ms_stats_get(ms, &st);
		r->result = json_pack("{s:I,s:b,s:I}", "freed", (json_int_t)freed,
				      "compacted", compact, "bytes_on_disk",
				      (json_int_t)st.bytes_on_disk);
	}
	ed_store_unlock();
	ed_idle_touch();
}

/* fsck of the store (ms_check): problems are a result, not an error; the
 * first is named.  Holds the store lock throughout, so questions wait: a
 * deep check reads every block (bench/RESULTS.md: seconds per GB). */
static void check_worker(ed_req *r)
{
	int deep = ed_req_arg_bool(r, "deep", 0);
	uint64_t problems = 0;
	ms_stats st = { 0 };
	if (deep < 0)
		return;
	double t0 = ed_now_s();
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_check(ms, deep, &problems) : MS_EIO;
	if (rc < 0 && rc != MS_ECHECK) {
		fail_ms(r, rc, ms, "check");
	} else {
		char first[512] = "";
		if (rc == MS_ECHECK)	/* before another call can set it */
			snprintf(first, sizeof(first), "%s", ms_errmsg(ms));
		ms_stats_get(ms, &st);
		r->result = json_pack("{s:b,s:I,s:s?,s:I,s:I,s:f}", "deep", deep,
				      "problems", (json_int_t)problems, "first",
				      *first ? first : NULL,
				      "blocks", (json_int_t)st.blocks,
				      "sessions", (json_int_t)st.sessions,
				      "seconds", ed_now_s() - t0);
	}
	ed_store_unlock();
	ed_idle_touch();
}

/* Store ops on a worker, after the one-time job recovery (loop thread). */
#define LOOP_THEN(name, fn)				\
	static void name(ed_req *r)			\
	{						\
		ed_jobs_recover();			\
		ed_req_defer(r, fn);			\
	}
LOOP_THEN(op_sessions, sessions_worker)
LOOP_THEN(op_session_show, show_worker)
LOOP_THEN(op_source, source_worker)
LOOP_THEN(op_store, store_worker)

const ed_op ed_ops_session[] = {
	{ "ingest", op_ingest, NULL },
	{ "jobs", op_jobs, NULL },
	{ "job", op_job, NULL },
	{ "cancel", op_cancel, NULL },
	{ "sessions", op_sessions, NULL },
	{ "session_show", op_session_show, NULL },
	{ "session_rm", op_session_rm, NULL },
	{ "session_rename", op_session_rename, NULL },
	{ "session_fork", op_session_fork, NULL },
	{ "prefill", op_prefill, NULL },
	{ "source", op_source, NULL },
	{ "store", op_store, NULL },
	{ "gc", NULL, gc_worker },
	{ "store_check", NULL, check_worker },
	{ NULL, NULL, NULL },
};
