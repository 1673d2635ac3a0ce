/* jobs.c - ingest and prefill jobs: an in-memory table of running and
 * recent jobs, mirrored in the catalog's jobs table.  An ingest job runs
 * ing_job_run on the thread pool; its sinks write the session's token
 * stream, spans and manifest to the memstore.  A prefill job runs
 * ed_prefill_run (prefill.c).  Protocol: docs/PROTOCOL.md (### ingest,
 * ### prefill).
 *
 * DESIGN
 *  - The table, the followers and the progress timer belong to the loop
 *    thread.  The worker touches only its job's sink state, and the report
 *    list under the job's mutex.  ing_job_progress() and ing_job_cancel()
 *    are safe from the loop while the worker runs.
 *  - Store order, so that a crash at any point leaves a session the next
 *    run repairs rather than trusts: on the first emitted token the stored
 *    manifest is deleted, then stream and spans are cut at that token;
 *    tokens are appended in batches; at the end the spans of the new
 *    tokens, then the new manifest are written.  Without a manifest the
 *    next run starts the stream from 0.  A cancelled or failed run cuts
 *    the stream back to where it started writing, so what remains is
 *    mapped, and stores the previous manifest's entries up to there, so
 *    the next run resumes; a killed one leaves unmapped tokens that
 *    ed_jobs_recover() cuts off after the restart.
 *  - A job outlives its request: following clients that leave just stop
 *    following.  At shutdown the timer sees ed_server_stopping() and
 *    cancels every running job, so the loop can end.
 *  - After a restart, catalog rows still queued or running are marked
 *    failed with the error "interrupted" (shown as state "interrupted").
 */
#include "config.h"
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "engine.h"
#include "engramd.h"
#include "ingest.h"
#include "memstore.h"
#include "text.h"

#define JOB_TICK_MS 250
/* Tokens buffered before one stream commit (a commit costs an fsync). */
#define JOB_FLUSH_TOKENS 65536
/* Skipped/failed/noted files kept per job (counts go on beyond). */
#define JOB_REPORT_MAX 10000
/* Entries of the report and of the changes in a summary. */
#define JOB_SUMMARY_LIST 50
/* Finished jobs kept in memory with their report; older ones are only in
 * the catalog. */
#define JOB_KEEP_FINISHED 32
#define INTERRUPTED "interrupted"

enum job_kind { JOB_INGEST, JOB_PREFILL };

typedef struct job {
	enum job_kind kind;
	ed_prefill *pf;			/* JOB_PREFILL: owned */
	int64_t id, session_id;
	char session[129];
	char **roots;			/* owned */
	size_t n_roots;
	ed_server *srv;
	ms_job_state state;		/* loop thread's view */
	uint64_t t0, t1;		/* uv_now at start and end, ms */
	ing_job *ij;			/* owned until the job ends */
	ing_manifest prev;		/* filled by the worker before the run */
	const eng_vocab *vocab;
	uv_work_t work;
	/* Worker's sink state. */
	int32_t *pend;			/* tokens not yet committed */
	size_t npend, cappend;
	int emitted;			/* first emit done: stream cut there */
	uint64_t cut;			/* where (the unchanged prefix's end) */
	uint64_t tokens_written;
	int failed_store;		/* a store write failed: the job fails */
	double store_s;			/* seconds spent writing the store */
	/* Results, written by the worker, read by the loop after the run. */
	int rc;
	ms_job_state final;
	char error[1024];
	/* Report, under mu: the worker appends, the loop reads. */
	pthread_mutex_t mu;
	json_t *report;			/* array of {path, severity, code, reason, message} */
	uint64_t n_skipped, n_failed, n_notes;
	/* Loop thread. */
	ing_progress last;		/* final progress after the run */
	json_t *summary;		/* after the run */
	ed_req **fol;
	size_t nfol, capfol;
	struct job *next;		/* newest first */
} job;

static struct {
	job *head;
	uv_timer_t timer;
	int timer_init, ticking, inited;
	int running;
} J;

static const char *state_name(ms_job_state s, const char *error)
{
	switch (s) {
	case MS_JOB_QUEUED: return "queued";
	case MS_JOB_RUNNING: return "running";
	case MS_JOB_DONE: return "done";
	case MS_JOB_CANCELED: return "cancelled";
	case MS_JOB_FAILED:
		return error && !strcmp(error, INTERRUPTED) ? INTERRUPTED : "failed";
	}
	return "unknown";
}

/* A session whose job was interrupted may hold tokens past its spans (a
 * kill mid-run, before the spans were written): cut them off, so what
 * remains is a mapped stream.  Its manifest was dropped when the run
 * started writing, so the next run redoes the rest. */
static void repair_session(ms_store *ms, int64_t sid)
{
	uint64_t end = 0, len = 0;
	void *m = NULL;
	size_t mlen;
	if (!sid || ms_manifest_get(ms, sid, &m, &mlen) == 0) {
		ms_free(m);
		return;		/* a manifest: the run never started writing */
	}
	if (ms_span_end(ms, sid, &end) < 0 || ms_stream_length(ms, sid, &len) < 0 || len <= end)
		return;
	if (ms_stream_truncate(ms, sid, end) == 0)
		ed_log(ED_LOG_WARN, "session %lld: %llu unmapped tokens of an interrupted job "
		       "removed", (long long)sid, (unsigned long long)(len - end));
}

/* Once per process: rows a previous engramd left running are interrupted. */
void ed_jobs_recover(void)
{
	ms_job *v = NULL;
	size_t n = 0;
	if (J.inited)
		return;
	J.inited = 1;
	ms_store *ms = ed_store_lock();
	if (ms && ms_job_list(ms, 10000, &v, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (v[i].state != MS_JOB_QUEUED && v[i].state != MS_JOB_RUNNING)
				continue;
			v[i].state = MS_JOB_FAILED;
			snprintf(v[i].error, sizeof(v[i].error), "%s", INTERRUPTED);
			if (ms_job_update(ms, &v[i]) == 0)
				ed_log(ED_LOG_WARN, "job %lld was interrupted by a stop",
				       (long long)v[i].id);
			repair_session(ms, v[i].session_id);
		}
		ms_free(v);
	}
	ed_store_unlock();
}

static job *job_find(int64_t id)
{
	for (job *j = J.head; j; j = j->next)
		if (j->id == id)
			return j;
	return NULL;
}

static void job_free(job *j)
{
	for (size_t i = 0; i < j->n_roots; i++)
		free(j->roots[i]);
	free(j->roots);
	ing_job_close(j->ij);
	free(j->pf);
	ing_manifest_free(&j->prev);
	free(j->pend);
	json_decref(j->report);
	json_decref(j->summary);
	free(j->fol);
	pthread_mutex_destroy(&j->mu);
	free(j);
}

/* Keeps at most JOB_KEEP_FINISHED finished jobs in memory. */
static void jobs_trim(void)
{
	size_t kept = 0;
	for (job **pp = &J.head; *pp;) {
		job *j = *pp;
		if (j->state == MS_JOB_RUNNING || ++kept <= JOB_KEEP_FINISHED) {
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		job_free(j);
	}
}

json_t *ed_json_path(const char *path)
{
	size_t n = strlen(path);
	if (ed_utf8_valid(path, n))
		return json_stringn(path, n);
	/* Bytes as on disk that are not UTF-8: shown with '?' for every
	 * non-ASCII byte (JSON strings are UTF-8). */
	char *c = malloc(n + 1);
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)path[i] < 0x80 ? path[i] : '?';
	json_t *j = json_stringn(c, n);
	free(c);
	return j;
}

/* ---------------------------------------------------------------- sinks */

/* ing_tokenize_fn: the model's tokenizer, no BOS, no special tokens. */
static int sink_tokenize(void *arg, const char *text, size_t len, int32_t *ids,
			 size_t cap, size_t *n_ids)
{
	job *j = arg;
	int32_t *v = NULL;
	size_t n = 0;
	if (eng_tokenize(j->vocab, text, len, 0, &v, &n) < 0) {
		*n_ids = 0;
		return -1;
	}
	*n_ids = n;
	if (n > cap) {
		free(v);
		return 1;
	}
	if (n)
		memcpy(ids, v, n * sizeof(*ids));
	free(v);
	return 0;
}

double ed_now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void job_store_fail(job *j, const char *what, int rc, ms_store *ms)
{
	if (j->failed_store)
		return;
	j->failed_store = 1;
	snprintf(j->error, sizeof(j->error), "store: %s: %s", what,
		 ms ? ms_errmsg(ms) : ms_strerror(rc));
	ed_log(ED_LOG_ERROR, "job %lld: %s", (long long)j->id, j->error);
}

/* Commits the buffered tokens to the session's stream. */
static int sink_flush(job *j)
{
	if (!j->npend)
		return 0;
	double t0 = ed_now_s();
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_stream_append(ms, j->session_id, j->pend, j->npend) : MS_EIO;
	if (rc < 0)
		job_store_fail(j, "append to the stream", rc, ms);
	ed_store_unlock();
	j->store_s += ed_now_s() - t0;
	if (rc < 0)
		return -1;
	j->tokens_written += j->npend;
	j->npend = 0;
	return 0;
}

/* The stream changes from stream position cut on: KV computed past it is
 * wrong.  A resume needs the window layers' state at its start: the KV
 * goes back to the last checkpoint before the cut (ms_session_rewind;
 * none: all of it, its blocks staying shared with any other session).
 * Done before the stream is cut: a crash in between leaves less KV, never
 * stale KV. */
static int kv_cut(ms_store *ms, int64_t sid, uint64_t cut)
{
	int32_t *pre = NULL;
	size_t n_pre = 0;
	ms_txn *txn;
	ms_session_info si;
	int rc = ed_session_preamble(ed_model(), &pre, &n_pre);
	free(pre);
	if (rc < 0)
		return MS_EINVAL;
	if ((rc = ms_read_begin(ms, &txn)) < 0)
		return rc;
	rc = ms_session_head(txn, sid, &si);
	ms_read_end(txn);
	if (rc < 0)
		return rc;
	if (si.n_tokens <= n_pre + cut)
		return 0;
	return ms_session_rewind(ms, sid, n_pre + cut, NULL);
}

/* ing_emit_fn: the first call cuts the stored stream where the new tokens
 * go (and drops the manifest first); then tokens are batched. */
static int sink_emit(void *arg, const int32_t *ids, size_t n, const ing_span *sp)
{
	job *j = arg;
	if (j->failed_store)
		return 1;
	if (!j->emitted) {
		ms_store *ms = ed_store_lock();
		int rc = ms ? 0 : MS_EIO;
		if (!rc && (rc = kv_cut(ms, j->session_id, sp->token_start)) < 0)
			job_store_fail(j, "drop the session's KV", rc, ms);
		else if (!rc && (rc = ms_manifest_del(ms, j->session_id)) < 0)
			job_store_fail(j, "drop the manifest", rc, ms);
		else if (!rc && (rc = ms_stream_truncate(ms, j->session_id, sp->token_start)) < 0)
			job_store_fail(j, "cut the stream", rc, ms);
		else if (!rc && (rc = ms_span_truncate(ms, j->session_id, sp->token_start)) < 0)
			job_store_fail(j, "cut the spans", rc, ms);
		else if (rc)
			job_store_fail(j, "closed", rc, NULL);
		ed_store_unlock();
		if (rc)
			return 1;
		j->emitted = 1;
		j->cut = sp->token_start;
	}
	if (j->npend + n > j->cappend) {
		size_t cap = j->cappend ? j->cappend : JOB_FLUSH_TOKENS;
		while (cap < j->npend + n)
			cap *= 2;
		int32_t *p = realloc(j->pend, cap * sizeof(*p));
		if (!p) {
			snprintf(j->error, sizeof(j->error), "out of memory");
			j->failed_store = 1;
			return 1;
		}
		j->pend = p;
		j->cappend = cap;
	}
	memcpy(j->pend + j->npend, ids, n * sizeof(*ids));
	j->npend += n;
	if (j->npend >= JOB_FLUSH_TOKENS && sink_flush(j) < 0)
		return 1;
	return 0;
}

/* ing_report_fn: every skipped, failed or noted file, bounded. */
static void sink_report(void *arg, enum ing_severity sev, const char *path,
			int code, const char *msg)
{
	job *j = arg;
	const char *name = sev == ING_SKIPPED ? "skipped" : sev == ING_FAILED ? "failed" : "note";
	pthread_mutex_lock(&j->mu);
	if (sev == ING_SKIPPED)
		j->n_skipped++;
	else if (sev == ING_FAILED)
		j->n_failed++;
	else
		j->n_notes++;
	if (json_array_size(j->report) < JOB_REPORT_MAX) {
		json_t *p = ed_json_path(path);
		json_t *e = json_pack("{s:s,s:s,s:s,s:s}", "severity", name,
				      "code", code ? ing_errname(code) : "",
				      "reason", code ? ing_strerror(code) : "",
				      "message", msg ? msg : "");
		if (e && p && json_object_set_new(e, "path", p) == 0)
			p = NULL;
		json_decref(p);
		if (e)
			json_array_append_new(j->report, e);
	}
	pthread_mutex_unlock(&j->mu);
}

/* ---------------------------------------------------------------- worker */

/* The previous run's manifest, if it still describes the stored stream. */
static void load_prev(job *j)
{
	void *buf = NULL;
	size_t len = 0;
	uint64_t stream = 0;
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_manifest_get(ms, j->session_id, &buf, &len) : MS_EIO;
	if (rc == 0)
		rc = ms_stream_length(ms, j->session_id, &stream);
	ed_store_unlock();
	if (rc < 0) {
		ms_free(buf);
		return;
	}
	rc = ing_manifest_decode(buf, len, &j->prev);
	ms_free(buf);
	if (rc < 0 || j->prev.token_end != stream || j->prev.token_base != 0) {
		ed_log(ED_LOG_WARN, "job %lld: the stored manifest of %s does not match "
		       "its stream (%s); ingesting it all again", (long long)j->id,
		       j->session, rc < 0 ? ing_strerror(rc) : "length differs");
		ing_manifest_free(&j->prev);
		ing_manifest_init(&j->prev);
	}
}

static const char *kind_name(const char *path)
{
	switch (ing_kind_guess(path, NULL, 0)) {
	case ING_KIND_MARKDOWN: return "markdown";
	case ING_KIND_HTML: return "html";
	case ING_KIND_PDF: return "pdf";
	case ING_KIND_DOCX: return "docx";
	case ING_KIND_EML: return "email";
	default: return "text";
	}
}

/* Writes the documents and spans of the new tokens. */
static int write_spans(job *j, ms_store *ms)
{
	const ing_srcmap *map = ing_job_srcmap(j->ij);
	const ing_manifest *man = ing_job_manifest(j->ij);
	ms_span *sp = NULL;
	int64_t *doc_ids = NULL;
	uint32_t first_doc;
	size_t ndocs;
	int rc = 0;

	if (!map->n)
		return 0;
	first_doc = map->v[0].doc_index;
	ndocs = map->v[map->n - 1].doc_index - first_doc + 1;
	doc_ids = calloc(ndocs, sizeof(*doc_ids));
	sp = malloc(map->n * sizeof(*sp));
	if (!doc_ids || !sp) {
		rc = MS_ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < man->n; i++) {
		const ing_manifest_entry *e = &man->v[i];
		if (e->status != 0 || e->doc_index < first_doc ||
		    e->doc_index >= first_doc + ndocs || e->token_end <= map->v[0].token_start)
			continue;
		ms_document d = { 0 };
		snprintf(d.path, sizeof(d.path), "%s", e->path);
		snprintf(d.content_hash, sizeof(d.content_hash), "%016" PRIx64, e->hash);
		d.size = (int64_t)e->size;
		d.mtime = e->mtime_ns / 1000000000;
		snprintf(d.kind, sizeof(d.kind), "%s", kind_name(e->path));
		if ((rc = ms_document_add(ms, &d)) < 0)
			goto fail;
		doc_ids[e->doc_index - first_doc] = d.id;
	}
	for (size_t i = 0; i < map->n; i++) {
		const ing_span *s = &map->v[i];
		sp[i] = (ms_span){ .session_id = j->session_id, .tok_start = s->token_start,
				   .tok_end = s->token_end,
				   .document_id = doc_ids[s->doc_index - first_doc],
				   .line_start = s->line_start, .line_end = s->line_end,
				   .page = s->page };
	}
	rc = ms_span_append(ms, sp, map->n);
fail:
	free(sp);
	free(doc_ids);
	return rc;
}

/* After a successful run: spans, the stream's end, the manifest. */
static void job_commit(job *j)
{
	const ing_manifest *man = ing_job_manifest(j->ij);
	void *buf = NULL;
	size_t len = 0;
	int rc = ing_manifest_encode(man, &buf, &len);
	if (rc < 0) {
		snprintf(j->error, sizeof(j->error), "cannot encode the manifest: %s",
			 ing_strerror(rc));
		j->failed_store = 1;
		return;
	}
	double t0 = ed_now_s();
	ms_store *ms = ed_store_lock();
	if (!ms)
		job_store_fail(j, "closed", MS_EIO, NULL);
	else if ((rc = ms_stream_truncate(ms, j->session_id, man->token_end)) < 0)
		job_store_fail(j, "cut the stream", rc, ms);
	else if ((rc = ms_span_truncate(ms, j->session_id, man->token_end)) < 0)
		job_store_fail(j, "cut the spans", rc, ms);
	else if ((rc = write_spans(j, ms)) < 0)
		job_store_fail(j, "write the spans", rc, ms);
	else if ((rc = ms_manifest_put(ms, j->session_id, buf, len)) < 0)
		job_store_fail(j, "write the manifest", rc, ms);
	ed_store_unlock();
	j->store_s += ed_now_s() - t0;
	free(buf);
}

/* After an unfinished run cut the stream at j->cut (the end of the
 * previous run's unchanged prefix, a document boundary): stores the
 * previous manifest's entries up to there as the session's manifest. */
static void keep_prefix_manifest(job *j, ms_store *ms)
{
	ing_manifest m = j->prev;	/* a shallow view: entries borrowed */
	size_t k = 0;
	uint32_t docs = 0;
	void *buf = NULL;
	size_t len = 0;
	if (!j->prev.n || j->cut <= j->prev.token_base)
		return;
	for (; k < j->prev.n; k++) {
		const ing_manifest_entry *e = &j->prev.v[k];
		if (e->token_end > j->cut || (e->status == 0 && e->token_start >= j->cut))
			break;
		docs += e->status == 0;
	}
	m.n = k;
	m.token_end = j->cut;
	m.n_docs = docs;
	if (ing_manifest_encode(&m, &buf, &len) == 0 &&
	    ms_manifest_put(ms, j->session_id, buf, len) == 0)
		ed_log(ED_LOG_INFO, "job %lld: %s keeps %zu files, %llu tokens for the next run",
		       (long long)j->id, j->session, k, (unsigned long long)j->cut);
	free(buf);
}

static void job_work(uv_work_t *w)
{
	job *j = w->data;
	load_prev(j);
	j->rc = ing_job_run(j->ij);
	if (!j->failed_store)
		sink_flush(j);
	if (j->rc == 0 && !j->failed_store)
		job_commit(j);
	if (j->failed_store)
		j->final = MS_JOB_FAILED;
	else if (j->rc == ING_ECANCELED)
		j->final = MS_JOB_CANCELED;
	else if (j->rc < 0)
		j->final = MS_JOB_FAILED;
	else
		j->final = MS_JOB_DONE;
	if (j->final == MS_JOB_FAILED && !j->error[0])
		snprintf(j->error, sizeof(j->error), "ingest failed: %s", ing_strerror(j->rc));
	if (j->final == MS_JOB_CANCELED)
		snprintf(j->error, sizeof(j->error), "cancelled");
	/* An unfinished run: its tokens have no spans yet; cut them off so
	 * the session stays a mapped stream, and keep the previous run's
	 * manifest for the part that stands, so the next run resumes there. */
	if (j->final != MS_JOB_DONE && j->emitted) {
		ms_store *cs = ed_store_lock();
		if (cs && (ms_stream_truncate(cs, j->session_id, j->cut) < 0 ||
			   ms_span_truncate(cs, j->session_id, j->cut) < 0))
			ed_log(ED_LOG_ERROR, "job %lld: cannot cut the stream: %s",
			       (long long)j->id, ms_errmsg(cs));
		else if (cs)
			keep_prefix_manifest(j, cs);
		ed_store_unlock();
	}
	/* The catalog row follows. */
	ing_progress p;
	ing_job_progress(j->ij, &p);
	ms_job row = { .id = j->id, .state = j->final, .done = p.files_done,
		       .total = p.files_seen };
	snprintf(row.kind, sizeof(row.kind), "ingest");
	snprintf(row.error, sizeof(row.error), "%s", j->final == MS_JOB_DONE ? "" : j->error);
	ms_store *ms = ed_store_lock();
	if (ms && ms_job_update(ms, &row) < 0)
		ed_log(ED_LOG_ERROR, "job %lld: cannot record its end: %s",
		       (long long)j->id, ms_errmsg(ms));
	ed_store_unlock();
}

static void prefill_work(uv_work_t *w)
{
	job *j = w->data;
	ed_prefill_run(j->pf);
	j->final = j->pf->rc == 0 ? MS_JOB_DONE : j->pf->rc == ENG_ECANCELED ?
		   MS_JOB_CANCELED : MS_JOB_FAILED;
	snprintf(j->error, sizeof(j->error), "%s", j->final == MS_JOB_CANCELED ?
		 "cancelled" : j->pf->error);
	if (j->final == MS_JOB_FAILED && !j->error[0])
		snprintf(j->error, sizeof(j->error), "prefill failed");
	ms_job row = { .id = j->id, .state = j->final, .done = atomic_load(&j->pf->done),
		       .total = atomic_load(&j->pf->total) };
	snprintf(row.kind, sizeof(row.kind), "prefill");
	snprintf(row.error, sizeof(row.error), "%s", j->final == MS_JOB_DONE ? "" : j->error);
	ms_store *ms = ed_store_lock();
	if (ms && ms_job_update(ms, &row) < 0)
		ed_log(ED_LOG_ERROR, "job %lld: cannot record its end: %s",
		       (long long)j->id, ms_errmsg(ms));
	ed_store_unlock();
}

/* ---------------------------------------------------------------- loop */

static double elapsed_s(const job *j)
{
	uint64_t end = j->state == MS_JOB_RUNNING ? uv_now(uv_default_loop()) : j->t1;
	return (end - j->t0) / 1000.0;
}

static json_t *progress_json(const job *j, const ing_progress *p)
{
	double el = elapsed_s(j);
	double rate = el > 0 ? p->tokens / el : 0;
	json_t *o = json_pack("{s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f}",
		"job", (json_int_t)j->id, "session", j->session,
		"files_seen", (json_int_t)p->files_seen,
		"files_done", (json_int_t)p->files_done,
		"files_kept", (json_int_t)p->files_kept,
		"files_skipped", (json_int_t)p->files_skipped,
		"files_failed", (json_int_t)p->files_failed,
		"bytes", (json_int_t)p->bytes_read,
		"tokens", (json_int_t)p->tokens,
		"rate", rate, "elapsed_s", el);
	/* The total is known once the walk is over (files_seen set). */
	uint64_t handled = p->files_done + p->files_failed;
	if (o && p->files_seen && handled && handled <= p->files_seen && j->state == MS_JOB_RUNNING)
		json_object_set_new(o, "eta_s", json_real(el * (p->files_seen - handled) / handled));
	return o;
}

static json_t *prefill_json(const job *j)
{
	const ed_prefill *p = j->pf;
	double el = elapsed_s(j);
	uint64_t done = atomic_load(&p->done), total = atomic_load(&p->total);
	uint64_t computed = atomic_load(&p->computed);
	double rate = el > 0 ? computed / el : 0;
	json_t *o = json_pack("{s:I,s:s,s:s,s:I,s:I,s:I,s:I,s:f,s:f}",
		"job", (json_int_t)j->id, "session", j->session, "kind", "prefill",
		"done", (json_int_t)done, "total", (json_int_t)total,
		"computed", (json_int_t)computed,
		"reused", (json_int_t)atomic_load(&p->reused), "rate", rate,
		"elapsed_s", el);
	if (o && rate > 0 && j->state == MS_JOB_RUNNING && total >= done)
		json_object_set_new(o, "eta_s", json_real((total - done) / rate));
	return o;
}

/* A running job's progress, as the `progress` events carry it. */
static json_t *job_progress(job *j)
{
	if (j->kind == JOB_PREFILL)
		return prefill_json(j);
	ing_progress p = j->last;
	if (j->state == MS_JOB_RUNNING)
		ing_job_progress(j->ij, &p);
	return progress_json(j, &p);
}

static void job_cancel(job *j)
{
	if (j->kind == JOB_PREFILL)
		atomic_store(&j->pf->cancel, 1);
	else
		ing_job_cancel(j->ij);
}

static json_t *report_slice(job *j, size_t max, int with_notes)
{
	json_t *a = json_array(), *e;
	size_t i;
	pthread_mutex_lock(&j->mu);
	json_array_foreach(j->report, i, e) {
		if (json_array_size(a) >= max)
			break;
		if (!with_notes && !strcmp(json_string_value(json_object_get(e, "severity")), "note"))
			continue;
		json_array_append_new(a, json_deep_copy(e));
	}
	pthread_mutex_unlock(&j->mu);
	return a;
}

static const char *change_name(enum ing_change_kind k)
{
	switch (k) {
	case ING_CHANGE_ADDED: return "added";
	case ING_CHANGE_REMOVED: return "removed";
	case ING_CHANGE_MODIFIED: return "modified";
	case ING_CHANGE_MOVED: return "moved";
	}
	return "?";
}

/* The summary of an ended job (the ing_job is still open). */
static json_t *summary_build(job *j)
{
	const ing_diff *d = ing_job_diff(j->ij);
	const ing_manifest *man = ing_job_manifest(j->ij);
	json_t *s = progress_json(j, &j->last);
	json_t *paths = json_array();
	json_object_set_new(s, "state", json_string(state_name(j->state, j->error)));
	json_object_set_new(s, "store_s", json_real(j->store_s));
	if (j->state == MS_JOB_DONE) {
		for (size_t i = 0; i < d->n && i < JOB_SUMMARY_LIST; i++)
			json_array_append_new(paths, json_pack("{s:o,s:s}",
				"path", ed_json_path(d->v[i].path),
				"change", change_name(d->v[i].kind)));
		json_object_set_new(s, "changes", json_pack("{s:I,s:I,s:I,s:I,s:b,s:o}",
			"added", (json_int_t)d->n_added, "removed", (json_int_t)d->n_removed,
			"modified", (json_int_t)d->n_modified, "moved", (json_int_t)d->n_moved,
			"unchanged", d->unchanged, "paths", paths));
		json_object_set_new(s, "documents", json_integer(man->n_docs));
		json_object_set_new(s, "stream_tokens", json_integer((json_int_t)man->token_end));
		json_object_set_new(s, "kept_tokens", json_integer((json_int_t)d->prefix_tokens));
	} else {
		json_decref(paths);
		json_object_set_new(s, "error", json_string(j->error));
	}
	pthread_mutex_lock(&j->mu);
	json_object_set_new(s, "skipped", json_integer((json_int_t)j->n_skipped));
	json_object_set_new(s, "failed", json_integer((json_int_t)j->n_failed));
	pthread_mutex_unlock(&j->mu);
	json_object_set_new(s, "report", report_slice(j, JOB_SUMMARY_LIST, 0));
	return s;
}

static void follower_remove(job *j, size_t i)
{
	j->fol[i] = j->fol[--j->nfol];
}

static void on_tick(uv_timer_t *t)
{
	(void)t;
	for (job *j = J.head; j; j = j->next) {
		if (j->state != MS_JOB_RUNNING)
			continue;
		if (ed_server_stopping(j->srv))
			job_cancel(j);
		json_t *prog = job_progress(j);
		for (size_t i = 0; i < j->nfol;) {
			ed_req *r = j->fol[i];
			if (ed_req_is_cancelled(r)) {
				/* The client left: it stops following; the job goes on
				 * (unless engramd is stopping). */
				follower_remove(j, i);
				if (ed_server_stopping(j->srv))
					ed_req_fail(r, ED_ERR_CANCELLED, "engramd is stopping: "
						    "job %lld is cancelled", (long long)j->id);
				else
					ed_req_fail(r, ED_ERR_CANCELLED, "stopped following job "
						    "%lld; it continues", (long long)j->id);
				ed_req_finish(r);
				continue;
			}
			ed_req_emit(r, "progress", json_deep_copy(prog));
			i++;
		}
		json_decref(prog);
	}
}

static void timer_update(void)
{
	if (!J.timer_init) {
		uv_timer_init(uv_default_loop(), &J.timer);
		/* The work items keep the loop alive, not the timer. */
		uv_unref((uv_handle_t *)&J.timer);
		J.timer_init = 1;
	}
	if (J.running && !J.ticking) {
		uv_timer_start(&J.timer, on_tick, JOB_TICK_MS, JOB_TICK_MS);
		J.ticking = 1;
	} else if (!J.running && J.ticking) {
		uv_timer_stop(&J.timer);
		J.ticking = 0;
	}
}

static void job_done(uv_work_t *w, int status)
{
	job *j = w->data;
	(void)status;
	j->t1 = uv_now(uv_default_loop());
	j->state = j->final;
	if (j->kind == JOB_PREFILL) {
		j->summary = prefill_json(j);
		json_object_set_new(j->summary, "state",
				    json_string(state_name(j->state, j->error)));
		if (j->state != MS_JOB_DONE)
			json_object_set_new(j->summary, "error", json_string(j->error));
		ed_log(j->state == MS_JOB_DONE ? ED_LOG_INFO : ED_LOG_WARN,
		       "job %lld (%s): prefill %s at %llu of %llu, %llu computed, %llu reused in %.1f s%s%s",
		       (long long)j->id, j->session, state_name(j->state, j->error),
		       (unsigned long long)atomic_load(&j->pf->done),
		       (unsigned long long)atomic_load(&j->pf->total),
		       (unsigned long long)atomic_load(&j->pf->computed),
		       (unsigned long long)atomic_load(&j->pf->reused), elapsed_s(j),
		       j->error[0] ? ": " : "", j->error);
	} else {
		ing_job_progress(j->ij, &j->last);
		j->summary = summary_build(j);
		ed_log(j->state == MS_JOB_DONE ? ED_LOG_INFO : ED_LOG_WARN,
		       "job %lld (%s): %s, %llu files, %llu new tokens in %.1f s%s%s",
		       (long long)j->id, j->session, state_name(j->state, j->error),
		       (unsigned long long)j->last.files_done, (unsigned long long)j->last.tokens,
		       elapsed_s(j), j->error[0] ? ": " : "", j->error);
	}
	for (size_t i = 0; i < j->nfol; i++) {
		ed_req *r = j->fol[i];
		if (j->state == MS_JOB_DONE) {
			r->result = json_deep_copy(j->summary);
		} else if (j->state == MS_JOB_CANCELED) {
			/* the reason, unless it only says "cancelled" again */
			int why = j->error[0] && strcmp(j->error, "cancelled");
			ed_req_fail(r, ED_ERR_CANCELLED, "job %lld cancelled%s%s",
				    (long long)j->id, why ? ": " : "", why ? j->error : "");
		} else {
			ed_req_fail(r, ED_ERR_INTERNAL, "job %lld %s: %s", (long long)j->id,
				    state_name(j->state, j->error), j->error);
		}
		ed_req_finish(r);
	}
	j->nfol = 0;
	ing_job_close(j->ij);
	j->ij = NULL;
	free(j->pend);
	j->pend = NULL;
	j->npend = j->cappend = 0;
	J.running--;
	timer_update();
	jobs_trim();
}

int64_t ed_job_of_session(int64_t session_id)
{
	for (job *j = J.head; j; j = j->next)
		if (j->state == MS_JOB_RUNNING && j->session_id == session_id)
			return j->id;
	return 0;
}

int ed_session_busy(int64_t sid, const char *session, char *msg,
    size_t msglen)
{
	int64_t id = ed_job_of_session(sid);

	if (id)
		snprintf(msg, msglen, "session %s has a running job (%lld); "
		    "cancel it first", session, (long long)id);
	else if (ed_ask_keeping(sid))
		snprintf(msg, msglen, "session %s is taking a question's turn "
		    "(ask --keep); try again when it ends", session);
	else
		return 0;
	return 1;
}

/* A new job on session sid may start: fewer jobs than half the pool
 * (each holds a pool thread) and none on the session.  -1 and *err/msg
 * if not. */
static int job_room(ed_req *r, int64_t sid, const char *session, ed_err *err,
		    char *msg, size_t msglen)
{
	int max_jobs = ed_server_settings(r->srv)->workers / 2;
	if (max_jobs < 1)
		max_jobs = 1;
	if (J.running >= max_jobs) {
		*err = ED_ERR_BUSY;
		snprintf(msg, msglen, "%d jobs are running, the most at once "
			 "(half the 'workers' setting); try again when one ends", J.running);
		return -1;
	}
	if (ed_session_busy(sid, session, msg, msglen)) {
		*err = ED_ERR_BUSY;
		return -1;
	}
	return 0;
}

static int job_launch(job *j, const char *kind, uv_work_cb work, char *msg, size_t msglen);

int ed_job_start(ed_req *r, const ed_job_args *a, int64_t *id, ed_err *err,
		 char *msg, size_t msglen)
{
	const eng_model *m = ed_model();
	job *j = NULL;
	int rc;

	ed_jobs_recover();
	if (!m) {
		*err = ED_ERR_NO_MODEL;
		snprintf(msg, msglen, "engramd runs without a model (--model none)");
		return -1;
	}
	if (job_room(r, a->session_id, a->session, err, msg, msglen) < 0)
		return -1;
	*err = ED_ERR_INTERNAL;
	if (!(j = calloc(1, sizeof(*j))) || !(j->roots = calloc(a->n_roots, sizeof(char *)))) {
		free(j);
		snprintf(msg, msglen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&j->mu, NULL);
	j->report = json_array();
	ing_manifest_init(&j->prev);
	j->srv = r->srv;
	j->session_id = a->session_id;
	snprintf(j->session, sizeof(j->session), "%s", a->session);
	j->vocab = eng_model_vocab(m);
	for (size_t i = 0; i < a->n_roots; i++, j->n_roots++)
		if (!(j->roots[i] = strdup(a->roots[i]))) {
			snprintf(msg, msglen, "out of memory");
			goto fail;
		}

	/* tokenizer_id: the first 64 bits of the model's fingerprint. */
	const char *fp = eng_model_info_get(m)->fingerprint;
	char hex[17];
	snprintf(hex, sizeof(hex), "%.16s", fp);
	ing_job_config cfg = {
		.roots = (const char *const *)j->roots, .n_roots = j->n_roots,
		.tokenize = sink_tokenize, .tokenize_arg = j,
		.tokenizer_id = strtoull(hex, NULL, 16),
		.emit = sink_emit, .emit_arg = j,
		.report = sink_report, .report_arg = j,
		.prev = &j->prev,
	};
	ing_settings_init(&cfg.settings);
	if ((rc = ing_job_open(&cfg, &j->ij)) < 0) {
		snprintf(msg, msglen, "cannot open the job: %s", ing_strerror(rc));
		goto fail;
	}

	if (job_launch(j, "ingest", job_work, msg, msglen) < 0)
		goto fail;
	*id = j->id;
	ed_log(ED_LOG_INFO, "job %lld: ingest into %s, %zu path(s)", (long long)j->id,
	       j->session, j->n_roots);
	return 0;
fail:
	job_free(j);
	return -1;
}

int ed_prefill_start(ed_req *r, int64_t session_id, const char *session, int reuse,
		     int64_t *id, ed_err *err, char *msg, size_t msglen)
{
	job *j;

	ed_jobs_recover();
	if (!ed_model()) {
		*err = ED_ERR_NO_MODEL;
		snprintf(msg, msglen, "engramd runs without a model (--model none)");
		return -1;
	}
	if (job_room(r, session_id, session, err, msg, msglen) < 0)
		return -1;
	*err = ED_ERR_INTERNAL;
	if (!(j = calloc(1, sizeof(*j))) || !(j->pf = calloc(1, sizeof(*j->pf)))) {
		free(j);
		snprintf(msg, msglen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&j->mu, NULL);
	ing_manifest_init(&j->prev);
	j->report = json_array();
	j->kind = JOB_PREFILL;
	j->srv = r->srv;
	j->session_id = session_id;
	snprintf(j->session, sizeof(j->session), "%s", session);
	j->pf->session_id = session_id;
	j->pf->set = ed_server_settings(r->srv);
	j->pf->reuse = reuse;
	if (job_launch(j, "prefill", prefill_work, msg, msglen) < 0) {
		job_free(j);
		return -1;
	}
	*id = j->id;
	ed_log(ED_LOG_INFO, "job %lld: prefill of %s", (long long)j->id, j->session);
	return 0;
}

/* Records the job in the catalog as running and queues its work. */
static int job_launch(job *j, const char *kind, uv_work_cb work, char *msg, size_t msglen)
{
	int rc;
	ms_job row = { .session_id = j->session_id };
	snprintf(row.kind, sizeof(row.kind), "%s", kind);
	ms_store *ms = ed_store_lock();
	rc = ms ? ms_job_create(ms, &row) : MS_EIO;
	if (rc == 0) {
		row.state = MS_JOB_RUNNING;
		rc = ms_job_update(ms, &row);
	}
	if (rc < 0)
		snprintf(msg, msglen, "cannot record the job: %s", ms ? ms_errmsg(ms) : "store closed");
	ed_store_unlock();
	if (rc < 0)
		return -1;
	j->id = row.id;
	j->state = MS_JOB_RUNNING;
	j->t0 = uv_now(uv_default_loop());
	j->work.data = j;
	if (uv_queue_work(uv_default_loop(), &j->work, work, job_done) < 0) {
		snprintf(msg, msglen, "cannot queue the job");
		ms = ed_store_lock();
		row.state = MS_JOB_FAILED;
		snprintf(row.error, sizeof(row.error), "cannot queue the job");
		if (ms)
			ms_job_update(ms, &row);
		ed_store_unlock();
		return -1;
	}
	j->next = J.head;
	J.head = j;
	J.running++;
	timer_update();
	return 0;
}

int ed_job_follow(int64_t id, ed_req *r)
{
	job *j = job_find(id);
	if (!j || j->state != MS_JOB_RUNNING)
		return -1;
	if (j->nfol == j->capfol) {
		size_t cap = j->capfol ? j->capfol * 2 : 4;
		ed_req **v = realloc(j->fol, cap * sizeof(*v));
		if (!v)
			return -1;
		j->fol = v;
		j->capfol = cap;
	}
	j->fol[j->nfol++] = r;
	return 0;
}

static json_t *row_json(const ms_job *row)
{
	json_t *o = json_pack("{s:I,s:s,s:I,s:s,s:I,s:I,s:s,s:I,s:I}",
		"job", (json_int_t)row->id, "kind", row->kind,
		"session_id", (json_int_t)row->session_id,
		"state", state_name(row->state, row->error),
		"files_done", (json_int_t)row->done, "files_seen", (json_int_t)row->total,
		"error", row->error, "created", (json_int_t)row->created,
		"updated", (json_int_t)row->updated);
	/* A prefill's row counts positions: named as its progress names them. */
	if (o && !strcmp(row->kind, "prefill"))
		json_object_update_new(o, json_pack("{s:I,s:I}", "done",
		    (json_int_t)row->done, "total", (json_int_t)row->total));
	return o;
}

json_t *ed_job_describe(int64_t id, int full)
{
	ms_job row;
	ed_jobs_recover();
	job *j = job_find(id);
	if (j && j->kind == JOB_PREFILL) {
		json_t *o = j->state == MS_JOB_RUNNING ? prefill_json(j) :
			    json_deep_copy(j->summary);
		if (j->state == MS_JOB_RUNNING)
			json_object_set_new(o, "state", json_string("running"));
		return o;
	}
	if (j) {
		json_t *o;
		if (j->state == MS_JOB_RUNNING) {
			ing_progress p;
			ing_job_progress(j->ij, &p);
			o = progress_json(j, &p);
			json_object_set_new(o, "state", json_string("running"));
			pthread_mutex_lock(&j->mu);
			json_object_set_new(o, "skipped", json_integer((json_int_t)j->n_skipped));
			json_object_set_new(o, "failed", json_integer((json_int_t)j->n_failed));
			pthread_mutex_unlock(&j->mu);
		} else {
			o = json_deep_copy(j->summary);
		}
		json_t *roots = json_array();
		for (size_t i = 0; i < j->n_roots; i++)
			json_array_append_new(roots, ed_json_path(j->roots[i]));
		json_object_set_new(o, "paths", roots);
		json_object_set_new(o, "kind", json_string("ingest"));
		if (full)
			json_object_set_new(o, "report", report_slice(j, JOB_REPORT_MAX, 1));
		return o;
	}
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_job_get(ms, id, &row) : MS_EIO;
	ed_store_unlock();
	return rc < 0 ? NULL : row_json(&row);
}

json_t *ed_jobs_list(size_t limit)
{
	ms_job *v = NULL;
	size_t n = 0;
	json_t *a = json_array();
	ed_jobs_recover();
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_job_list(ms, limit, &v, &n) : MS_EIO;
	ed_store_unlock();
	if (rc < 0) {
		json_decref(a);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		job *j = job_find(v[i].id);
		json_t *o = row_json(&v[i]);
		if (j) {
			/* The live view: its catalog row is updated only at the end. */
			json_t *pj = job_progress(j);
			json_object_update(o, pj);
			json_decref(pj);
			json_object_set_new(o, "state", json_string(state_name(j->state, j->error)));
		}
		json_array_append_new(a, o);
	}
	ms_free(v);
	return a;
}

int ed_job_cancel(int64_t id)
{
	ed_jobs_recover();
	job *j = job_find(id);
	if (j) {
		if (j->state != MS_JOB_RUNNING)
			return 1;
		job_cancel(j);
		return 0;
	}
	ms_job row;
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_job_get(ms, id, &row) : MS_EIO;
	ed_store_unlock();
	return rc < 0 ? -1 : 1;
}

json_t *ed_jobs_running(void)
{
	json_t *a = json_array();
	for (job *j = J.head; j; j = j->next) {
		if (j->state != MS_JOB_RUNNING)
			continue;
		json_t *o = job_progress(j);
		json_object_set_new(o, "kind", json_string(j->kind == JOB_PREFILL ?
							   "prefill" : "ingest"));
		json_object_set_new(o, "state", json_string("running"));
		json_array_append_new(a, o);
	}
	return a;
}
