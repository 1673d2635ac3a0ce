/* stream.c - a session's token stream and ingest manifest in the SQLite
 * catalog (tables stream and manifests, schema version 2), and the span
 * queries the daemon needs around them (truncate, count, documents).
 *
 * Invariant: a session's stream is the chunks 0..k of MS_STREAM_CHUNK ids
 * each (int32 little-endian), every one full except the last; so the
 * length is k * MS_STREAM_CHUNK + the last chunk's ids, one index probe.
 * Every multi-statement change runs in one transaction. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "ms_internal.h"

#define CHUNK_BYTES (MS_STREAM_CHUNK * sizeof(int32_t))

/* Here a constraint that fails is a foreign key: no such session. */
static int sfail(ms_store *ms, const char *what)
{
	return ms__sql_fail(ms, what, MS_ENOTFOUND);
}

static int sexec(ms_store *ms, const char *sql)
{
	return ms__sql_exec(ms, sql, MS_ENOTFOUND);
}

static void rollback(ms_store *ms)
{
	sqlite3_exec(ms->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Ends a transaction: COMMIT when rc is 0, else ROLLBACK; returns rc. */
static int finish(ms_store *ms, int rc)
{
	if (rc) {
		rollback(ms);
		return rc;
	}
	return sexec(ms, "COMMIT");
}

/* Runs a statement with one int64 bound per ? (up to 3) to completion. */
static int run3(ms_store *ms, const char *sql, int nb, int64_t a, int64_t b,
		int64_t c, const char *what)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, sql, &st);
	if (rc)
		return rc;
	int64_t v[3] = { a, b, c };
	for (int i = 0; i < nb; i++)
		sqlite3_bind_int64(st, i + 1, v[i]);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sfail(ms, what);
	sqlite3_finalize(st);
	return rc;
}

static int session_exists(ms_store *ms, int64_t id)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT 1 FROM sessions WHERE id = ? AND state = 'active'", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ?
	     ms__fail(ms, MS_ENOTFOUND, "no session %lld", (long long)id) :
	     sfail(ms, "session");
	sqlite3_finalize(st);
	return rc;
}

/* The last chunk's index and id count; *count 0 and *chunk -1 when the
 * stream is empty. */
static int last_chunk(ms_store *ms, int64_t id, int64_t *chunk, size_t *count)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT chunk, length(tokens) FROM stream WHERE "
		       "session_id = ? ORDER BY chunk DESC LIMIT 1", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	*chunk = -1;
	*count = 0;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*chunk = sqlite3_column_int64(st, 0);
		*count = (size_t)sqlite3_column_int64(st, 1) / sizeof(int32_t);
	}
	rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sfail(ms, "stream tail");
	sqlite3_finalize(st);
	return rc;
}

/* Writes chunk `chunk` as old bytes (may be NULL) followed by ids. */
static int put_chunk(ms_store *ms, int64_t id, int64_t chunk, const void *old,
		     size_t old_n, const int32_t *ids, size_t n)
{
	unsigned char *buf = malloc((old_n + n) * sizeof(int32_t));
	sqlite3_stmt *st;
	int rc;
	if (!buf)
		return ms__fail(ms, MS_ENOMEM, "stream chunk");
	if (old_n)
		memcpy(buf, old, old_n * sizeof(int32_t));
	memcpy(buf + old_n * sizeof(int32_t), ids, n * sizeof(int32_t));
	if ((rc = ms__sql_prep(ms, "INSERT OR REPLACE INTO stream(session_id, chunk, "
			"tokens) VALUES(?, ?, ?)", &st))) {
		free(buf);
		return rc;
	}
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, chunk);
	sqlite3_bind_blob(st, 3, buf, (int)((old_n + n) * sizeof(int32_t)), free);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sfail(ms, "stream append");
	sqlite3_finalize(st);
	return rc;
}

static int append_locked(ms_store *ms, int64_t id, const int32_t *ids, size_t n)
{
	int64_t chunk;
	size_t have;
	int rc;

	if ((rc = session_exists(ms, id)) || (rc = last_chunk(ms, id, &chunk, &have)))
		return rc;
	uint64_t len = chunk < 0 ? 0 : (uint64_t)chunk * MS_STREAM_CHUNK + have;
	if (n > MS_STREAM_MAX || len + n > MS_STREAM_MAX)
		return ms__fail(ms, MS_ERANGE, "stream over %llu tokens",
				(unsigned long long)MS_STREAM_MAX);
	if (chunk >= 0 && have < MS_STREAM_CHUNK && n) {
		/* Fill the partial last chunk first: read it, then rewrite. */
		sqlite3_stmt *st;
		size_t k = MS_STREAM_CHUNK - have < n ? MS_STREAM_CHUNK - have : n;
		if ((rc = ms__sql_prep(ms, "SELECT tokens FROM stream WHERE session_id = ? "
				"AND chunk = ?", &st)))
			return rc;
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, chunk);
		if (sqlite3_step(st) != SQLITE_ROW) {
			rc = sfail(ms, "stream read");
			sqlite3_finalize(st);
			return rc;
		}
		rc = put_chunk(ms, id, chunk, sqlite3_column_blob(st, 0), have, ids, k);
		sqlite3_finalize(st);
		if (rc)
			return rc;
		ids += k;
		n -= k;
	}
	while (n) {
		size_t k = n < MS_STREAM_CHUNK ? n : MS_STREAM_CHUNK;
		if ((rc = put_chunk(ms, id, ++chunk, NULL, 0, ids, k)))
			return rc;
		ids += k;
		n -= k;
	}
	return 0;
}

int ms_stream_append(ms_store *ms, int64_t id, const int32_t *ids, size_t n)
{
	if (!ms || (!ids && n))
		return MS_EINVAL;
	if (!n)
		return 0;
	int rc = sexec(ms, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	return finish(ms, append_locked(ms, id, ids, n));
}

int ms_stream_length(ms_store *ms, int64_t id, uint64_t *n)
{
	if (!ms || !n)
		return MS_EINVAL;
	int64_t chunk;
	size_t have;
	int rc = last_chunk(ms, id, &chunk, &have);
	if (rc)
		return rc;
	*n = chunk < 0 ? 0 : (uint64_t)chunk * MS_STREAM_CHUNK + have;
	return 0;
}

int ms_stream_read(ms_store *ms, int64_t id, uint64_t start, size_t n,
		   int32_t *out, size_t *got)
{
	if (!ms || (!out && n) || !got || start > MS_STREAM_MAX || n > MS_STREAM_MAX)
		return MS_EINVAL;
	*got = 0;
	if (!n)
		return 0;
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT chunk, tokens FROM stream WHERE session_id = ? "
		       "AND chunk >= ? AND chunk <= ? ORDER BY chunk", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, (int64_t)(start / MS_STREAM_CHUNK));
	sqlite3_bind_int64(st, 3, (int64_t)((start + n - 1) / MS_STREAM_CHUNK));
	uint64_t pos = start;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t base = (uint64_t)sqlite3_column_int64(st, 0) * MS_STREAM_CHUNK;
		size_t cnt = (size_t)sqlite3_column_bytes(st, 1) / sizeof(int32_t);
		const unsigned char *b = sqlite3_column_blob(st, 1);
		if (base > pos || pos >= base + cnt)
			break;	/* a gap cannot happen (invariant); stop short */
		size_t off = (size_t)(pos - base);
		size_t k = cnt - off < n - *got ? cnt - off : n - *got;
		memcpy(out + *got, b + off * sizeof(int32_t), k * sizeof(int32_t));
		*got += k;
		pos += k;
	}
	rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sfail(ms, "stream read");
	sqlite3_finalize(st);
	return rc;
}

int ms_stream_truncate(ms_store *ms, int64_t id, uint64_t n)
{
	if (!ms || n > MS_STREAM_MAX)
		return MS_EINVAL;
	int rc = sexec(ms, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	int64_t keep = (int64_t)((n + MS_STREAM_CHUNK - 1) / MS_STREAM_CHUNK);
	rc = run3(ms, "DELETE FROM stream WHERE session_id = ? AND chunk >= ?", 2,
		  id, keep, 0, "stream truncate");
	if (!rc && n % MS_STREAM_CHUNK) {
		int64_t bytes = (int64_t)(n % MS_STREAM_CHUNK * sizeof(int32_t));
		rc = run3(ms, "UPDATE stream SET tokens = substr(tokens, 1, ?1) "
			  "WHERE session_id = ?2 AND chunk = ?3 AND length(tokens) > ?1",
			  3, bytes, id, (int64_t)(n / MS_STREAM_CHUNK), "stream truncate");
	}
	return finish(ms, rc);
}

/* ---- fork ----------------------------------------------------------- */

int ms__stream_copy(ms_store *ms, int64_t from, int64_t to)
{
	int rc;
	if ((rc = run3(ms, "INSERT INTO stream(session_id, chunk, tokens) "
		       "SELECT ?1, chunk, tokens FROM stream WHERE session_id = ?2",
		       2, to, from, 0, "fork stream")) ||
	    (rc = run3(ms, "INSERT INTO spans(session_id, tok_start, tok_end, "
		       "document_id, line_start, line_end, page) SELECT ?1, "
		       "tok_start, tok_end, document_id, line_start, line_end, "
		       "page FROM spans WHERE session_id = ?2", 2, to, from, 0,
		       "fork spans")) ||
	    (rc = run3(ms, "INSERT INTO manifests(session_id, data) SELECT ?1, "
		       "data FROM manifests WHERE session_id = ?2", 2, to, from,
		       0, "fork manifest")))
		return rc;
	return 0;
}

/* ---- spans ---------------------------------------------------------- */

int ms_span_truncate(ms_store *ms, int64_t session_id, uint64_t pos)
{
	if (!ms || pos > (uint64_t)INT64_MAX)
		return MS_EINVAL;
	int rc = sexec(ms, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	rc = run3(ms, "DELETE FROM spans WHERE session_id = ? AND tok_start >= ?",
		  2, session_id, (int64_t)pos, 0, "span truncate");
	if (!rc)
		rc = run3(ms, "UPDATE spans SET tok_end = ?2 WHERE session_id = ?1 "
			  "AND tok_start < ?2 AND tok_end > ?2", 2, session_id,
			  (int64_t)pos, 0, "span truncate");
	return finish(ms, rc);
}

static int span_append_locked(ms_store *ms, const ms_span *v, size_t n)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT max(tok_end) FROM spans WHERE session_id = ?", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, v[0].session_id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		rc = sfail(ms, "span end");
		sqlite3_finalize(st);
		return rc;
	}
	uint64_t end = (uint64_t)sqlite3_column_int64(st, 0);	/* NULL reads 0 */
	sqlite3_finalize(st);
	if ((rc = ms__sql_prep(ms, "INSERT INTO spans(session_id, tok_start, tok_end, "
			"document_id, line_start, line_end, page) VALUES(?, ?, ?, ?, ?, ?, ?)",
			&st)))
		return rc;
	for (size_t i = 0; i < n && !rc; i++) {
		const ms_span *s = &v[i];
		if (s->session_id != v[0].session_id || s->tok_start < end ||
		    s->tok_end <= s->tok_start || s->tok_end > (uint64_t)INT64_MAX ||
		    s->line_end < s->line_start || s->page < 0) {
			rc = ms__fail(ms, MS_EINVAL, "span %zu: out of order or bad range", i);
			break;
		}
		end = s->tok_end;
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, s->session_id);
		sqlite3_bind_int64(st, 2, (int64_t)s->tok_start);
		sqlite3_bind_int64(st, 3, (int64_t)s->tok_end);
		sqlite3_bind_int64(st, 4, s->document_id);
		sqlite3_bind_int64(st, 5, s->line_start);
		sqlite3_bind_int64(st, 6, s->line_end);
		sqlite3_bind_int64(st, 7, s->page);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = sfail(ms, "append span");	/* a foreign key: not found */
	}
	sqlite3_finalize(st);
	return rc;
}

int ms_span_append(ms_store *ms, const ms_span *spans, size_t n)
{
	if (!ms || (!spans && n))
		return MS_EINVAL;
	if (!n)
		return 0;
	int rc = sexec(ms, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	return finish(ms, span_append_locked(ms, spans, n));
}

int ms_span_end(ms_store *ms, int64_t session_id, uint64_t *end)
{
	if (!ms || !end)
		return MS_EINVAL;
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT max(tok_end) FROM spans WHERE session_id = ?", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, session_id);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*end = (uint64_t)sqlite3_column_int64(st, 0);	/* NULL reads 0 */
		rc = 0;
	} else {
		rc = sfail(ms, "span end");
	}
	sqlite3_finalize(st);
	return rc;
}

int ms_span_count(ms_store *ms, int64_t session_id, uint64_t *n_spans,
		  uint64_t *n_docs)
{
	if (!ms || !n_spans || !n_docs)
		return MS_EINVAL;
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT count(*), count(DISTINCT document_id) FROM "
		       "spans WHERE session_id = ?", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, session_id);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*n_spans = (uint64_t)sqlite3_column_int64(st, 0);
		*n_docs = (uint64_t)sqlite3_column_int64(st, 1);
		rc = 0;
	} else {
		rc = sfail(ms, "span count");
	}
	sqlite3_finalize(st);
	return rc;
}

static void text_col(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);
	snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

static void session_doc_row(sqlite3_stmt *st, void *p)
{
	ms_session_doc *o = p;

	memset(o, 0, sizeof(*o));
	o->doc.id = sqlite3_column_int64(st, 0);
	text_col(o->doc.path, sizeof(o->doc.path), st, 1);
	text_col(o->doc.content_hash, sizeof(o->doc.content_hash), st, 2);
	o->doc.size = sqlite3_column_int64(st, 3);
	o->doc.mtime = sqlite3_column_int64(st, 4);
	text_col(o->doc.kind, sizeof(o->doc.kind), st, 5);
	o->tok_start = (uint64_t)sqlite3_column_int64(st, 6);
	o->tok_end = (uint64_t)sqlite3_column_int64(st, 7);
}

int ms_session_docs(ms_store *ms, int64_t session_id, size_t limit,
		    ms_session_doc **out, size_t *n)
{
	if (!ms || !out || !n || limit < 1 || limit > 100000)
		return MS_EINVAL;
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT d.id, d.path, d.content_hash, d.size, d.mtime, "
		       "d.kind, min(s.tok_start) AS a, max(s.tok_end) FROM spans s "
		       "JOIN documents d ON d.id = s.document_id WHERE s.session_id = ? "
		       "GROUP BY d.id ORDER BY a LIMIT ?", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, session_id);
	sqlite3_bind_int64(st, 2, (int64_t)limit);
	return ms__sql_collect(ms, st, sizeof(**out), session_doc_row,
	    "session documents", (void **)out, n);
}

/* ---- manifest ------------------------------------------------------- */

int ms_manifest_put(ms_store *ms, int64_t id, const void *data, size_t len)
{
	if (!ms || !data || !len)
		return MS_EINVAL;
	if (len > MS_MANIFEST_MAX)
		return ms__fail(ms, MS_ERANGE, "manifest of %zu bytes", len);
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "INSERT OR REPLACE INTO manifests(session_id, data) "
		       "VALUES(?, ?)", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_blob(st, 2, data, (int)len, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sfail(ms, "manifest put");
	sqlite3_finalize(st);
	return rc;
}

int ms_manifest_get(ms_store *ms, int64_t id, void **data, size_t *len)
{
	if (!ms || !data || !len)
		return MS_EINVAL;
	*data = NULL;
	*len = 0;
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT data FROM manifests WHERE session_id = ?", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		size_t n = (size_t)sqlite3_column_bytes(st, 0);
		void *p = malloc(n ? n : 1);
		if (!p) {
			rc = ms__fail(ms, MS_ENOMEM, "manifest");
		} else {
			if (n)
				memcpy(p, sqlite3_column_blob(st, 0), n);
			*data = p;
			*len = n;
			rc = 0;
		}
	} else {
		rc = rc == SQLITE_DONE ?
		     ms__fail(ms, MS_ENOTFOUND, "no manifest for session %lld",
			      (long long)id) : sfail(ms, "manifest get");
	}
	sqlite3_finalize(st);
	return rc;
}

int ms_manifest_del(ms_store *ms, int64_t id)
{
	if (!ms)
		return MS_EINVAL;
	return run3(ms, "DELETE FROM manifests WHERE session_id = ?", 1, id, 0, 0,
		    "manifest delete");
}
