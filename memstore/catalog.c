/* catalog.c - the SQLite catalog: schema and forward migrations, sessions
 * (with the write order of memstore.h's ONE TRUTH), documents, spans, jobs
 * and the audit log.  Every value is bound, never pasted into SQL. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ms_internal.h"

/* Migration i takes the schema from user_version i to i + 1.  Only append. */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE sessions("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE,"
	" fingerprint BLOB NOT NULL CHECK(length(fingerprint) = 16),"
	" created INTEGER NOT NULL,"
	" n_tokens INTEGER NOT NULL DEFAULT 0,"	/* advisory: LMDB is truth */
	" head BLOB,"
	" state TEXT NOT NULL DEFAULT 'active'"
	"  CHECK(state IN ('active', 'deleting')),"
	" n_layers INTEGER NOT NULL, n_kv_heads INTEGER NOT NULL,"
	" head_dim INTEGER NOT NULL, block_tokens INTEGER NOT NULL,"
	" mode INTEGER NOT NULL);"
	"CREATE TABLE documents("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" path TEXT NOT NULL, content_hash TEXT NOT NULL,"
	" size INTEGER NOT NULL, mtime INTEGER NOT NULL, kind TEXT NOT NULL,"
	" UNIQUE(path, content_hash));"
	"CREATE TABLE spans("
	" session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
	" tok_start INTEGER NOT NULL, tok_end INTEGER NOT NULL,"
	" document_id INTEGER NOT NULL REFERENCES documents(id),"
	" line_start INTEGER NOT NULL, line_end INTEGER NOT NULL,"
	" page INTEGER NOT NULL,"
	" CHECK(tok_end > tok_start),"
	" PRIMARY KEY(session_id, tok_start)) WITHOUT ROWID;"
	"CREATE TABLE jobs("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" kind TEXT NOT NULL,"
	" session_id INTEGER REFERENCES sessions(id) ON DELETE SET NULL,"
	" state INTEGER NOT NULL CHECK(state BETWEEN 0 AND 4),"
	" done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,"
	" error TEXT NOT NULL DEFAULT '',"
	" created INTEGER NOT NULL, updated INTEGER NOT NULL);"
	"CREATE TABLE audit("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" ts INTEGER NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL,"
	" session TEXT NOT NULL, model TEXT NOT NULL, settings TEXT NOT NULL);"
	"CREATE INDEX audit_by_session ON audit(session, id);",
	/* 1 -> 2: a session's token stream (ingest's output, before prefill)
	 * in chunks of MS_STREAM_CHUNK ids, and its ingest manifest.  Every
	 * chunk but the last is full (stream.c). */
	"CREATE TABLE stream("
	" session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
	" chunk INTEGER NOT NULL,"
	" tokens BLOB NOT NULL,"
	" PRIMARY KEY(session_id, chunk)) WITHOUT ROWID;"
	"CREATE TABLE manifests("
	" session_id INTEGER PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,"
	" data BLOB NOT NULL);",
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))
static_assert(N_MIGRATIONS == MS_SCHEMA_VERSION, "one migration per version");

int ms__sql_fail(ms_store *ms, const char *what, int on_constraint)
{
	int code = sqlite3_errcode(ms->db);
	int ms_code = MS_ESQLITE;
	if (code == SQLITE_NOMEM)
		ms_code = MS_ENOMEM;
	else if (code == SQLITE_FULL)
		ms_code = MS_EFULL;
	else if (code == SQLITE_IOERR)
		ms_code = MS_EIO;
	else if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
		ms_code = MS_ECORRUPT;
	else if (code == SQLITE_CONSTRAINT)
		ms_code = on_constraint;
	return ms__fail(ms, ms_code, "%s: %s", what, sqlite3_errmsg(ms->db));
}

int ms__sql_exec(ms_store *ms, const char *sql, int on_constraint)
{
	if (sqlite3_exec(ms->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return ms__sql_fail(ms, sql, on_constraint);
	return 0;
}

int ms__sql_prep(ms_store *ms, const char *sql, sqlite3_stmt **st)
{
	if (sqlite3_prepare_v2(ms->db, sql, -1, st, NULL) != SQLITE_OK)
		return ms__sql_fail(ms, "prepare", MS_ESQLITE);
	return 0;
}

int ms__sql_collect(ms_store *ms, sqlite3_stmt *st, size_t elem,
    void (*row)(sqlite3_stmt *, void *), const char *what, void **out,
    size_t *n)
{
	char *v = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			char *nv;
			cap = cap ? cap * 2 : 16;
			if (!(nv = realloc(v, cap * elem))) {
				rc = ms__fail(ms, MS_ENOMEM, "%s", what);
				goto fail;
			}
			v = nv;
		}
		row(st, v + cnt++ * elem);
	}
	if (rc != SQLITE_DONE) {
		rc = ms__sql_fail(ms, what, MS_ESQLITE);
		goto fail;
	}
	sqlite3_finalize(st);
	*out = v;
	*n = cnt;
	return 0;
fail:
	sqlite3_finalize(st);
	free(v);
	return rc;
}

/* In the catalog a constraint that fails is a name or row already there. */
static int sql_fail(ms_store *ms, const char *what)
{
	return ms__sql_fail(ms, what, MS_EEXIST);
}

static int exec(ms_store *ms, const char *sql)
{
	return ms__sql_exec(ms, sql, MS_EEXIST);
}

/* Steps a statement that returns no row and finalizes it. */
static int step_done(ms_store *ms, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	int ret = rc == SQLITE_DONE ? 0 : sql_fail(ms, what);
	sqlite3_finalize(st);
	return ret;
}

static int migrate(ms_store *ms)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "PRAGMA user_version", &st);
	if (rc)
		return rc;
	int ver = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	if (ver < 0)
		return sql_fail(ms, "user_version");
	if (ver > MS_SCHEMA_VERSION)
		return ms__fail(ms, MS_EVERSION, "catalog schema %d, this build "
				"knows %d", ver, MS_SCHEMA_VERSION);
	for (; ver < MS_SCHEMA_VERSION; ver++) {
		char pragma[64];
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d",
			 ver + 1);	/* an int we computed, not input */
		if ((rc = exec(ms, "BEGIN IMMEDIATE")))
			return rc;
		if ((rc = exec(ms, migrations[ver])) || (rc = exec(ms, pragma))) {
			sqlite3_exec(ms->db, "ROLLBACK", NULL, NULL, NULL);
			return rc;
		}
		if ((rc = exec(ms, "COMMIT")))
			return rc;
	}
	return 0;
}

int ms__cat_open(ms_store *ms)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/catalog.db", ms->dir);
	int rc = sqlite3_open_v2(path, &ms->db, SQLITE_OPEN_READWRITE |
				 SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = ms__fail(ms, MS_ESQLITE, "open %s: %s", path,
			      ms->db ? sqlite3_errmsg(ms->db) : "no memory");
		sqlite3_close(ms->db);
		ms->db = NULL;
		return rc;
	}
	sqlite3_busy_timeout(ms->db, ms->set.sqlite_busy_ms);
	sqlite3_extended_result_codes(ms->db, 0);
	/* WAL: readers do not block the writer; FULL: a commit survives power
	 * loss, the catalog's write rate is low. */
	if ((rc = exec(ms, "PRAGMA journal_mode = WAL")) ||
	    (rc = exec(ms, "PRAGMA synchronous = FULL")) ||
	    (rc = exec(ms, "PRAGMA foreign_keys = ON")) ||
	    (rc = migrate(ms))) {
		sqlite3_close(ms->db);
		ms->db = NULL;
		return rc;
	}
	return 0;
}

void ms__cat_close(ms_store *ms)
{
	if (ms->db)
		sqlite3_close(ms->db);
	ms->db = NULL;
}

/* ---- names ---------------------------------------------------------- */

int ms_name_valid(const char *name)
{
	if (!name || !name[0] || name[0] == '.')
		return 0;
	size_t i = 0;
	for (; name[i]; i++) {
		char c = name[i];
		if (i >= 128 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
				  (c >= '0' && c <= '9') || c == '.' || c == '_' ||
				  c == '-'))
			return 0;
	}
	return 1;
}

static int text_ok(const char *s, size_t max)
{
	return s && strnlen(s, max + 1) <= max;
}

static void copy_col(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);
	snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

/* ---- sessions ------------------------------------------------------- */

int ms__cat_set_count(ms_store *ms, int64_t id, uint64_t n_tokens,
		      const uint8_t head[16])
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "UPDATE sessions SET n_tokens = ?, head = ? WHERE id = ?",
		      &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, (int64_t)n_tokens);
	sqlite3_bind_blob(st, 2, head, 16, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, id);
	return step_done(ms, st, "update session count");
}

static int session_row_delete(ms_store *ms, int64_t id);

/* Inserts an active row; *id receives its id.  MS_EEXIST if the name is
 * taken. */
static int session_row_insert(ms_store *ms, const char *name,
			      const uint8_t fingerprint[16], const ms_geom *geom,
			      int64_t *id)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "INSERT INTO sessions(name, fingerprint, created, "
		      "n_layers, n_kv_heads, head_dim, block_tokens, mode) "
		      "VALUES(?, ?, ?, ?, ?, ?, ?, ?)", &st);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(st, 2, fingerprint, 16, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, (int64_t)time(NULL));
	sqlite3_bind_int(st, 4, (int)geom->n_layers);
	sqlite3_bind_int(st, 5, (int)geom->n_kv_heads);
	sqlite3_bind_int(st, 6, (int)geom->head_dim);
	sqlite3_bind_int(st, 7, (int)geom->block_tokens);
	sqlite3_bind_int(st, 8, (int)geom->mode);
	if ((rc = step_done(ms, st, "insert session")))
		return rc == MS_EEXIST ?
		       ms__fail(ms, MS_EEXIST, "session %s exists", name) : rc;
	*id = sqlite3_last_insert_rowid(ms->db);
	return 0;
}

/* After the LMDB half of a create or fork failed: without the row there is
 * nothing to recover.  Best effort (if this fails too, recovery completes
 * the session at open); the LMDB error's message is kept. */
static void session_row_undo(ms_store *ms, int64_t id)
{
	char keep[sizeof(ms->errmsg)];
	memcpy(keep, ms->errmsg, sizeof(keep));
	session_row_delete(ms, id);
	memcpy(ms->errmsg, keep, sizeof(keep));
}

int ms_session_create(ms_store *ms, const char *name,
		      const uint8_t fingerprint[16], const ms_geom *geom,
		      int64_t *id_out)
{
	if (!ms || !fingerprint || !geom)
		return ms__fail(ms, MS_EINVAL, "session create: NULL argument");
	if (!ms_name_valid(name))
		return ms__fail(ms, MS_ENAME, "bad session name");
	if (!ms__geom_valid(geom, MS__MAX_B) || geom->block_tokens < 1)
		return ms__fail(ms, MS_EINVAL, "bad geometry");
	int64_t id;
	int rc = session_row_insert(ms, name, fingerprint, geom, &id);
	if (rc)
		return rc;
	/* Row first, head second: a crash between leaves a row without a
	 * head, which recovery completes. */
	if ((rc = ms__head_create(ms, id, fingerprint, geom))) {
		session_row_undo(ms, id);
		return rc;
	}
	if (id_out)
		*id_out = id;
	return 0;
}

#define SESSION_COLS "id, name, fingerprint, created, n_tokens, head, " \
	"n_layers, n_kv_heads, head_dim, block_tokens, mode"

static void session_row(sqlite3_stmt *st, ms_session_info *o)
{
	memset(o, 0, sizeof(*o));
	o->id = sqlite3_column_int64(st, 0);
	copy_col(o->name, sizeof(o->name), st, 1);
	if (sqlite3_column_bytes(st, 2) == 16)
		memcpy(o->fingerprint, sqlite3_column_blob(st, 2), 16);
	o->created = sqlite3_column_int64(st, 3);
	o->n_tokens = (uint64_t)sqlite3_column_int64(st, 4);
	if (sqlite3_column_bytes(st, 5) == 16)
		memcpy(o->head.b, sqlite3_column_blob(st, 5), 16);
	o->geom.n_layers = (uint32_t)sqlite3_column_int(st, 6);
	o->geom.n_kv_heads = (uint32_t)sqlite3_column_int(st, 7);
	o->geom.head_dim = (uint32_t)sqlite3_column_int(st, 8);
	o->geom.block_tokens = (uint32_t)sqlite3_column_int(st, 9);
	o->geom.mode = (ms_mode)sqlite3_column_int(st, 10);
}

/* Overlays the LMDB truth (counts, head) on a catalog row. */
static void session_from_lmdb(ms_store *ms, ms_session_info *o)
{
	ms_txn *t;
	if (ms_read_begin(ms, &t))
		return;
	ms_session_info h;
	if (ms_session_head(t, o->id, &h) == 0) {
		o->n_tokens = h.n_tokens;
		o->n_blocks = h.n_blocks;
		o->head = h.head;
	}
	ms_read_end(t);
}

int ms_session_get(ms_store *ms, const char *name, ms_session_info *out)
{
	if (!ms || !out)
		return MS_EINVAL;
	if (!ms_name_valid(name))
		return ms__fail(ms, MS_ENAME, "bad session name");
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT " SESSION_COLS " FROM sessions WHERE name = ? "
		      "AND state = 'active'", &st);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		session_row(st, out);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ?
		     ms__fail(ms, MS_ENOTFOUND, "no session %s", name) :
		     sql_fail(ms, "select session");
	}
	sqlite3_finalize(st);
	if (!rc)
		session_from_lmdb(ms, out);
	return rc;
}

static void session_row_v(sqlite3_stmt *st, void *o)
{
	session_row(st, o);
}

int ms_session_list(ms_store *ms, ms_session_info **out, size_t *n)
{
	if (!ms || !out || !n)
		return MS_EINVAL;
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT " SESSION_COLS " FROM sessions WHERE state = "
		      "'active' ORDER BY name", &st);
	if (rc || (rc = ms__sql_collect(ms, st, sizeof(**out), session_row_v,
	    "list sessions", (void **)out, n)))
		return rc;
	for (size_t i = 0; i < *n; i++)
		session_from_lmdb(ms, &(*out)[i]);
	return 0;
}

int ms_session_rename(ms_store *ms, const char *from, const char *to)
{
	if (!ms)
		return MS_EINVAL;
	if (!ms_name_valid(from) || !ms_name_valid(to))
		return ms__fail(ms, MS_ENAME, "bad session name");
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "UPDATE sessions SET name = ? WHERE name = ? AND "
		      "state = 'active'", &st);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, to, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, from, -1, SQLITE_TRANSIENT);
	if ((rc = step_done(ms, st, "rename session")))
		return rc;
	if (sqlite3_changes(ms->db) == 0)
		return ms__fail(ms, MS_ENOTFOUND, "no session %s", from);
	return 0;
}

static int session_set_state(ms_store *ms, int64_t id, const char *state)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "UPDATE sessions SET state = ? WHERE id = ?", &st);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, id);
	return step_done(ms, st, "set session state");
}

static int session_row_delete(ms_store *ms, int64_t id)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "DELETE FROM sessions WHERE id = ?", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	return step_done(ms, st, "delete session");
}

/* The three steps of ONE TRUTH's delete. */
static int session_delete_id(ms_store *ms, int64_t id)
{
	int rc;
	if ((rc = session_set_state(ms, id, "deleting")) ||
	    (rc = ms__session_drop_w(ms, id)) ||
	    (rc = session_row_delete(ms, id)))
		return rc;
	return 0;
}

int ms_session_delete(ms_store *ms, const char *name)
{
	ms_session_info info;
	int rc = ms_session_get(ms, name, &info);
	if (rc)
		return rc;
	return session_delete_id(ms, info.id);
}

int ms_session_fork(ms_store *ms, const char *from, const char *to,
		    int64_t *id_out)
{
	if (!ms)
		return MS_EINVAL;
	if (!ms_name_valid(from) || !ms_name_valid(to))
		return ms__fail(ms, MS_ENAME, "bad session name");
	ms_session_info src;
	int rc = ms_session_get(ms, from, &src);
	if (rc)
		return rc;
	/* ONE TRUTH: the row with its stream, spans and manifest in one
	 * SQLite transaction, then the content in one LMDB transaction.  A
	 * crash between leaves an active row without a head: recovery gives
	 * it an empty one (an empty but consistent fork). */
	if ((rc = exec(ms, "BEGIN IMMEDIATE")))
		return rc;
	int64_t id;
	if ((rc = session_row_insert(ms, to, src.fingerprint, &src.geom, &id)) ||
	    (rc = ms__stream_copy(ms, src.id, id))) {
		sqlite3_exec(ms->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	if ((rc = exec(ms, "COMMIT"))) {
		sqlite3_exec(ms->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	uint64_t n_tokens;
	uint8_t head[16];
	if ((rc = ms__session_fork_w(ms, src.id, id, &n_tokens, head))) {
		session_row_undo(ms, id);
		return rc;
	}
	/* Advisory, as after an append. */
	ms__cat_set_count(ms, id, n_tokens, head);
	if (id_out)
		*id_out = id;
	return 0;
}

int ms__cat_has_session(ms_store *ms, int64_t id, int *has)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT 1 FROM sessions WHERE id = ?", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	*has = rc == SQLITE_ROW;
	rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_fail(ms, "has session");
	sqlite3_finalize(st);
	return rc;
}

/* ---- recovery ------------------------------------------------------- */

static void id_row(sqlite3_stmt *st, void *o)
{
	*(int64_t *)o = sqlite3_column_int64(st, 0);
}

/* Collects ids of rows matching a query of one id column. */
static int ids_query(ms_store *ms, const char *sql, int64_t **out, size_t *n)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, sql, &st);
	if (rc)
		return rc;
	return ms__sql_collect(ms, st, sizeof(**out), id_row, "recovery",
	    (void **)out, n);
}

/* An active row: make sure it has a head and that its advisory count
 * matches LMDB's. */
static int recover_active(ms_store *ms, int64_t id)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT " SESSION_COLS " FROM sessions WHERE id = ?",
		      &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	ms_session_info row;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		session_row(st, &row);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return sql_fail(ms, "recovery row");
	ms_txn *t;
	if ((rc = ms_read_begin(ms, &t)))
		return rc;
	ms_session_info h;
	rc = ms_session_head(t, id, &h);
	ms_read_end(t);
	if (rc == MS_ENOTFOUND) {
		if ((rc = ms__head_create(ms, id, row.fingerprint, &row.geom)))
			return rc;
		ms->rec.heads_created++;
		memset(&h, 0, sizeof(h));
	} else if (rc) {
		return rc;
	}
	if (h.n_tokens != row.n_tokens || memcmp(h.head.b, row.head.b, 16)) {
		if ((rc = ms__cat_set_count(ms, id, h.n_tokens, h.head.b)))
			return rc;
		ms->rec.counts_repaired++;
	}
	return 0;
}

/* LMDB heads whose id has no catalog row. */
static int recover_orphans(ms_store *ms)
{
	ms_txn *t;
	int rc = ms_read_begin(ms, &t);
	if (rc)
		return rc;
	int64_t *orph = NULL;
	size_t cnt = 0, cap = 0;
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(t->txn, ms->db_heads, &c))) {
		ms_read_end(t);
		return ms__lmdb(ms, rc, "cursor");
	}
	MDB_val k, v;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	for (; mrc == 0; mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 8)
			continue;
		int64_t id = ms__sid_get(k.mv_data);
		int has;
		if ((rc = ms__cat_has_session(ms, id, &has)))
			break;
		if (has)
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			int64_t *nv = realloc(orph, cap * sizeof(*nv));
			if (!nv) {
				rc = ms__fail(ms, MS_ENOMEM, "recovery");
				break;
			}
			orph = nv;
		}
		orph[cnt++] = id;
	}
	mdb_cursor_close(c);
	ms_read_end(t);
	for (size_t i = 0; !rc && i < cnt; i++) {
		rc = ms__session_drop_w(ms, orph[i]);
		ms->rec.orphans_removed += rc == 0;
	}
	free(orph);
	return rc;
}

int ms__recover(ms_store *ms)
{
	int64_t *ids;
	size_t n;
	int rc = ids_query(ms, "SELECT id FROM sessions WHERE state = 'deleting'",
			   &ids, &n);
	if (rc)
		return rc;
	for (size_t i = 0; !rc && i < n; i++) {
		rc = session_delete_id(ms, ids[i]);
		ms->rec.deletes_finished += rc == 0;
		/* A full disk must not make the store unopenable: the row
		 * stays 'deleting' (invisible) and is retried next open. */
		if (rc == MS_EFULL || rc == MS_EBUSY)
			rc = 0;
	}
	free(ids);
	if (rc)
		return rc;
	if ((rc = ids_query(ms, "SELECT id FROM sessions", &ids, &n)))
		return rc;
	for (size_t i = 0; !rc && i < n; i++)
		rc = recover_active(ms, ids[i]);
	free(ids);
	if (rc)
		return rc;
	return recover_orphans(ms);
}

/* ---- documents ------------------------------------------------------ */

static int hex_ok(const char *s)
{
	size_t n = strnlen(s, 129);
	if (n < 1 || n > 128)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int ms_document_add(ms_store *ms, ms_document *d)
{
	if (!ms || !d)
		return MS_EINVAL;
	if (!d->path[0] || !text_ok(d->path, 4096) || !hex_ok(d->content_hash) ||
	    !ms_name_valid(d->kind) || strlen(d->kind) > 32 || d->size < 0)
		return ms__fail(ms, MS_EINVAL, "document: bad path, hash or kind");
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "INSERT INTO documents(path, content_hash, size, mtime, "
		      "kind) VALUES(?, ?, ?, ?, ?) ON CONFLICT(path, content_hash) "
		      "DO UPDATE SET size = size RETURNING id", &st);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, d->path, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, d->content_hash, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, d->size);
	sqlite3_bind_int64(st, 4, d->mtime);
	sqlite3_bind_text(st, 5, d->kind, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		d->id = sqlite3_column_int64(st, 0);
		rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sql_fail(ms, "add document");
	} else {
		rc = sql_fail(ms, "add document");
	}
	sqlite3_finalize(st);
	return rc;
}

int ms_document_get(ms_store *ms, int64_t id, ms_document *out)
{
	if (!ms || !out)
		return MS_EINVAL;
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT id, path, content_hash, size, mtime, kind FROM "
		      "documents WHERE id = ?", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		memset(out, 0, sizeof(*out));
		out->id = sqlite3_column_int64(st, 0);
		copy_col(out->path, sizeof(out->path), st, 1);
		copy_col(out->content_hash, sizeof(out->content_hash), st, 2);
		out->size = sqlite3_column_int64(st, 3);
		out->mtime = sqlite3_column_int64(st, 4);
		copy_col(out->kind, sizeof(out->kind), st, 5);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ?
		     ms__fail(ms, MS_ENOTFOUND, "no document %lld", (long long)id) :
		     sql_fail(ms, "get document");
	}
	sqlite3_finalize(st);
	return rc;
}

/* ---- spans ---------------------------------------------------------- */

/* Reads one span row of (session_id, tok_start, tok_end, document_id,
 * line_start, line_end, page). */
static void span_row(sqlite3_stmt *st, ms_span *o)
{
	o->session_id = sqlite3_column_int64(st, 0);
	o->tok_start = (uint64_t)sqlite3_column_int64(st, 1);
	o->tok_end = (uint64_t)sqlite3_column_int64(st, 2);
	o->document_id = sqlite3_column_int64(st, 3);
	o->line_start = sqlite3_column_int64(st, 4);
	o->line_end = sqlite3_column_int64(st, 5);
	o->page = sqlite3_column_int64(st, 6);
}

#define SPAN_COLS "session_id, tok_start, tok_end, document_id, line_start, " \
	"line_end, page"

/* The span with the greatest tok_start <= pos (one index probe). */
static int span_floor(ms_store *ms, int64_t sid, uint64_t pos, ms_span *o,
		      int *found)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT " SPAN_COLS " FROM spans WHERE session_id = ? "
		      "AND tok_start <= ? ORDER BY tok_start DESC LIMIT 1", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, sid);
	sqlite3_bind_int64(st, 2, (int64_t)pos);
	rc = sqlite3_step(st);
	*found = rc == SQLITE_ROW;
	if (rc == SQLITE_ROW)
		span_row(st, o);
	rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_fail(ms, "span floor");
	sqlite3_finalize(st);
	return rc;
}

/* Whether any span of sid starts in [a, b). */
static int span_starts_in(ms_store *ms, int64_t sid, uint64_t a, uint64_t b,
			  int *found)
{
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT 1 FROM spans WHERE session_id = ? AND "
		      "tok_start >= ? AND tok_start < ? LIMIT 1", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, sid);
	sqlite3_bind_int64(st, 2, (int64_t)a);
	sqlite3_bind_int64(st, 3, (int64_t)b);
	rc = sqlite3_step(st);
	*found = rc == SQLITE_ROW;
	rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_fail(ms, "span range");
	sqlite3_finalize(st);
	return rc;
}

static int span_add_one(ms_store *ms, const ms_span *s)
{
	if (s->tok_end <= s->tok_start || s->tok_end > (uint64_t)INT64_MAX ||
	    s->line_end < s->line_start || s->page < 0)
		return ms__fail(ms, MS_EINVAL, "span: bad range");
	ms_span prev;
	int found, rc = span_floor(ms, s->session_id, s->tok_start, &prev, &found);
	if (rc)
		return rc;
	if (found && prev.tok_end > s->tok_start)
		return ms__fail(ms, MS_EEXIST, "span overlaps [%llu, %llu)",
				(unsigned long long)prev.tok_start,
				(unsigned long long)prev.tok_end);
	if ((rc = span_starts_in(ms, s->session_id, s->tok_start, s->tok_end,
				 &found)))
		return rc;
	if (found)
		return ms__fail(ms, MS_EEXIST, "span overlaps a later span");
	sqlite3_stmt *st;
	if ((rc = ms__sql_prep(ms, "INSERT INTO spans(" SPAN_COLS ") VALUES(?, ?, ?, ?, "
		       "?, ?, ?)", &st)))
		return rc;
	sqlite3_bind_int64(st, 1, s->session_id);
	sqlite3_bind_int64(st, 2, (int64_t)s->tok_start);
	sqlite3_bind_int64(st, 3, (int64_t)s->tok_end);
	sqlite3_bind_int64(st, 4, s->document_id);
	sqlite3_bind_int64(st, 5, s->line_start);
	sqlite3_bind_int64(st, 6, s->line_end);
	sqlite3_bind_int64(st, 7, s->page);
	rc = step_done(ms, st, "add span");
	/* A foreign key failure is a constraint too: say which. */
	if (rc == MS_EEXIST)
		rc = ms__fail(ms, MS_ENOTFOUND, "span: no such session or "
			      "document");
	return rc;
}

int ms_span_add(ms_store *ms, const ms_span *spans, size_t n)
{
	if (!ms || (!spans && n))
		return MS_EINVAL;
	int rc = exec(ms, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++)
		if ((rc = span_add_one(ms, &spans[i])))
			break;
	if (rc) {
		sqlite3_exec(ms->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	return exec(ms, "COMMIT");
}

int ms_span_lookup(ms_store *ms, int64_t session_id, uint64_t pos,
		   ms_span *out)
{
	if (!ms || !out || pos > (uint64_t)INT64_MAX)
		return MS_EINVAL;
	int found, rc = span_floor(ms, session_id, pos, out, &found);
	if (rc)
		return rc;
	if (!found || out->tok_end <= pos)
		return ms__fail(ms, MS_ENOTFOUND, "no span holds token %llu",
				(unsigned long long)pos);
	return 0;
}

/* ---- jobs ----------------------------------------------------------- */

static int job_valid(const ms_job *j)
{
	return ms_name_valid(j->kind) && j->state >= MS_JOB_QUEUED &&
	       j->state <= MS_JOB_CANCELED && text_ok(j->error, 1023) &&
	       j->done <= (uint64_t)INT64_MAX && j->total <= (uint64_t)INT64_MAX;
}

int ms_job_create(ms_store *ms, ms_job *j)
{
	if (!ms || !j)
		return MS_EINVAL;
	j->state = MS_JOB_QUEUED;
	if (!job_valid(j))
		return ms__fail(ms, MS_EINVAL, "job: bad kind or fields");
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "INSERT INTO jobs(kind, session_id, state, done, total, "
		      "error, created, updated) VALUES(?, ?, ?, ?, ?, ?, ?, ?)", &st);
	if (rc)
		return rc;
	int64_t now = (int64_t)time(NULL);
	sqlite3_bind_text(st, 1, j->kind, -1, SQLITE_TRANSIENT);
	if (j->session_id)
		sqlite3_bind_int64(st, 2, j->session_id);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_int(st, 3, j->state);
	sqlite3_bind_int64(st, 4, (int64_t)j->done);
	sqlite3_bind_int64(st, 5, (int64_t)j->total);
	sqlite3_bind_text(st, 6, j->error, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 7, now);
	sqlite3_bind_int64(st, 8, now);
	if ((rc = step_done(ms, st, "create job")))
		return rc == MS_EEXIST ?
		       ms__fail(ms, MS_ENOTFOUND, "job: no such session") : rc;
	j->id = sqlite3_last_insert_rowid(ms->db);
	j->created = j->updated = now;
	return 0;
}

int ms_job_update(ms_store *ms, const ms_job *j)
{
	if (!ms || !j)
		return MS_EINVAL;
	if (!job_valid(j))
		return ms__fail(ms, MS_EINVAL, "job: bad fields");
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "UPDATE jobs SET state = ?, done = ?, total = ?, "
		      "error = ?, updated = ? WHERE id = ?", &st);
	if (rc)
		return rc;
	sqlite3_bind_int(st, 1, j->state);
	sqlite3_bind_int64(st, 2, (int64_t)j->done);
	sqlite3_bind_int64(st, 3, (int64_t)j->total);
	sqlite3_bind_text(st, 4, j->error, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 5, (int64_t)time(NULL));
	sqlite3_bind_int64(st, 6, j->id);
	if ((rc = step_done(ms, st, "update job")))
		return rc;
	return sqlite3_changes(ms->db) ? 0 :
	       ms__fail(ms, MS_ENOTFOUND, "no job %lld", (long long)j->id);
}

#define JOB_COLS "id, kind, session_id, state, done, total, error, created, updated"

static void job_row(sqlite3_stmt *st, ms_job *o)
{
	memset(o, 0, sizeof(*o));
	o->id = sqlite3_column_int64(st, 0);
	copy_col(o->kind, sizeof(o->kind), st, 1);
	o->session_id = sqlite3_column_int64(st, 2);
	o->state = (ms_job_state)sqlite3_column_int(st, 3);
	o->done = (uint64_t)sqlite3_column_int64(st, 4);
	o->total = (uint64_t)sqlite3_column_int64(st, 5);
	copy_col(o->error, sizeof(o->error), st, 6);
	o->created = sqlite3_column_int64(st, 7);
	o->updated = sqlite3_column_int64(st, 8);
}

int ms_job_get(ms_store *ms, int64_t id, ms_job *out)
{
	if (!ms || !out)
		return MS_EINVAL;
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		job_row(st, out);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ?
		     ms__fail(ms, MS_ENOTFOUND, "no job %lld", (long long)id) :
		     sql_fail(ms, "get job");
	}
	sqlite3_finalize(st);
	return rc;
}

static void job_row_v(sqlite3_stmt *st, void *o)
{
	job_row(st, o);
}

int ms_job_list(ms_store *ms, size_t limit, ms_job **out, size_t *n)
{
	if (!ms || !out || !n || limit < 1 || limit > 10000)
		return MS_EINVAL;
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "SELECT " JOB_COLS " FROM jobs ORDER BY id DESC LIMIT ?",
		      &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, (int64_t)limit);
	return ms__sql_collect(ms, st, sizeof(ms_job), job_row_v, "list jobs",
	    (void **)out, n);
}

/* ---- audit ---------------------------------------------------------- */

int ms_audit_append(ms_store *ms, ms_audit *a)
{
	if (!ms || !a)
		return MS_EINVAL;
	if (!text_ok(a->who, 128) || !text_ok(a->action, 128) || !a->who[0] ||
	    !a->action[0] || !text_ok(a->session, 128) ||
	    !text_ok(a->model, 256) || !text_ok(a->settings, 4096))
		return ms__fail(ms, MS_ERANGE, "audit: a field is too long");
	if (a->session[0] && !ms_name_valid(a->session))
		return ms__fail(ms, MS_ENAME, "audit: bad session name");
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, "INSERT INTO audit(ts, who, action, session, model, "
		      "settings) VALUES(?, ?, ?, ?, ?, ?)", &st);
	if (rc)
		return rc;
	a->ts = (int64_t)time(NULL);
	sqlite3_bind_int64(st, 1, a->ts);
	sqlite3_bind_text(st, 2, a->who, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, a->action, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, a->session, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 5, a->model, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 6, a->settings, -1, SQLITE_TRANSIENT);
	if ((rc = step_done(ms, st, "audit append")))
		return rc;
	a->id = sqlite3_last_insert_rowid(ms->db);
	return 0;
}

static void audit_row(sqlite3_stmt *st, void *p)
{
	ms_audit *o = p;
	memset(o, 0, sizeof(*o));
	o->id = sqlite3_column_int64(st, 0);
	o->ts = sqlite3_column_int64(st, 1);
	copy_col(o->who, sizeof(o->who), st, 2);
	copy_col(o->action, sizeof(o->action), st, 3);
	copy_col(o->session, sizeof(o->session), st, 4);
	copy_col(o->model, sizeof(o->model), st, 5);
	copy_col(o->settings, sizeof(o->settings), st, 6);
}

int ms_audit_list(ms_store *ms, const char *session, size_t limit,
		  ms_audit **out, size_t *n)
{
	if (!ms || !out || !n || limit < 1 || limit > 10000)
		return MS_EINVAL;
	*out = NULL;
	*n = 0;
	int all = !session || !session[0];
	if (!all && !ms_name_valid(session))
		return ms__fail(ms, MS_ENAME, "bad session name");
	sqlite3_stmt *st;
	int rc = ms__sql_prep(ms, all ?
		      "SELECT id, ts, who, action, session, model, settings FROM "
		      "audit ORDER BY id DESC LIMIT ?1" :
		      "SELECT id, ts, who, action, session, model, settings FROM "
		      "audit WHERE session = ?2 ORDER BY id DESC LIMIT ?1", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, (int64_t)limit);
	if (!all)
		sqlite3_bind_text(st, 2, session, -1, SQLITE_TRANSIENT);
	return ms__sql_collect(ms, st, sizeof(ms_audit), audit_row, "audit log",
	    (void **)out, n);
}
