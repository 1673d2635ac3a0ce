/* engramd.h - what the daemon's files share (prefix ed_).
 *
 * Threads: one loop thread runs libuv (sockets, timers, signals, replies);
 * heavy work runs on libuv's thread pool (uv_queue_work), sized by the
 * `workers` setting.  Work functions never touch a uv handle or a
 * connection; they hand events back through ed_req_emit(), which is
 * thread-safe.  The design is in docs/ARCHITECTURE.md.
 *
 * Ownership: the server (ed_server, one per process) owns every connection
 * and the settings; a connection owns its framer and its write queue; a
 * request (ed_req) holds a reference on its connection until it finishes, so
 * a connection's memory outlives its socket while work for it is in flight.
 */
#ifndef ENGRAM_DAEMON_H
#define ENGRAM_DAEMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <jansson.h>
#include <uv.h>
#include "engine.h"
#include "paths.h"

/* ---------------------------------------------------------------- settings */

/* Every setting, with its default in ed_settings_init().  Strings are owned
 * (malloc'd) by the struct and freed by ed_settings_free(). */
typedef struct ed_settings {
	char *socket_path;	/* where the socket lives */
	char *data_dir;		/* models, stores, lock, log */
	char *config_path;	/* config file read at start, if any */
	char *log_file;		/* log file; NULL means stderr */
	char *model;		/* GGUF path; NULL: the default model */
	int use_syslog;		/* log to syslog instead of a file */
	int log_level;		/* ED_LOG_* and above are written */
	int foreground;		/* stay attached to the terminal */
	size_t max_line;	/* longest request line, bytes */
	size_t max_output;	/* replies queued per connection before we stop reading it */
	size_t max_input;	/* one request's input, all parts together */
	size_t disk_budget;	/* the store's LMDB map never grows past this; 0: memstore's default */
	int max_connections;	/* further clients are refused with an error */
	int max_inflight;	/* requests in flight per connection */
	int workers;		/* thread-pool size */
	int threads;		/* engine compute threads */
	int pack;		/* ENG_PACK_* packed at start (eng_model_pack) */
	double shutdown_timeout;/* seconds to wait for work at shutdown */
	/* Sessions: block-sparse attention (eng_sparse_params) and the
	 * encoding of new sessions' KV blocks (ms_mode). */
	int sparse_top_k;	/* 0: dense always */
	int sparse_sink;
	int sparse_local;
	int sparse_prefill_local;
	int sparse_prefill_top_k;	/* 0: sparse_top_k */
	int sparse_question_top_k;	/* 0: sparse_top_k */
	int sparse_dense_max;
	int sparse_reach;	/* 0: all the trained context allows */
	int sparse_scan_max;	/* 0: questions score by summaries */
	int sparse_shortlist;	/* 0: questions past scan_max rank by summaries */
	int sparse_squeeze;	/* 1: blocks moved up stay in the reach */
	int sparse_codes;	/* 1: a shortlist is ranked by key codes */
	int kv_mode;		/* 0 f16, 1 q8, 2 q4 (ms_mode) */
	int prefill_checkpoint;	/* tokens between checkpoints; 0: none */
	int warm_start;		/* 1: read the last asked session at start */
	int idle_trim;		/* seconds idle before ed_store_trim; 0: never */
} ed_settings;

void ed_settings_init(ed_settings *s);
void ed_settings_free(ed_settings *s);
/* Applies one key = value setting; on error writes a message to err.
 * Returns 0 or -EINVAL. */
int ed_settings_set(ed_settings *s, const char *key, const char *value,
		    char *err, size_t errlen);
/* Reads a config file (key = value lines, '#' comments).  A missing file is
 * -ENOENT (the caller decides whether that is an error). */
int ed_config_load(ed_settings *s, const char *path, char *err, size_t errlen);
/* Fills in socket_path and data_dir from the XDG defaults (paths.h) where
 * they are unset.  Returns 0 or -ENOMEM. */
int ed_paths_default(ed_settings *s);

/* ---------------------------------------------------------------- logging */

enum { ED_LOG_DEBUG, ED_LOG_INFO, ED_LOG_WARN, ED_LOG_ERROR };

int ed_log_open(const ed_settings *s);
int ed_log_reopen(void);	/* SIGHUP: reopen the file, for logrotate */
void ed_log_close(void);
void ed_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ed_log_level_parse(const char *name);

/* ---------------------------------------------------------------- errors */

/* The protocol's error codes.  Documented in docs/PROTOCOL.md; the list only
 * grows. */
#define ED_ERROR_MAP(X)                                                  \
	X(ED_ERR_INVALID_JSON, "invalid_json")                          \
	X(ED_ERR_INVALID_UTF8, "invalid_utf8")                          \
	X(ED_ERR_LINE_TOO_LONG, "line_too_long")                        \
	X(ED_ERR_BAD_REQUEST, "bad_request")                            \
	X(ED_ERR_UNKNOWN_OP, "unknown_op")                              \
	X(ED_ERR_MISSING_FIELD, "missing_field")                        \
	X(ED_ERR_INVALID_ARGUMENT, "invalid_argument")                  \
	X(ED_ERR_NOT_FOUND, "not_found")                                \
	X(ED_ERR_BUSY, "busy")                                          \
	X(ED_ERR_TOO_MANY_REQUESTS, "too_many_requests")                \
	X(ED_ERR_SHUTTING_DOWN, "shutting_down")                        \
	X(ED_ERR_CANCELLED, "cancelled")                                \
	X(ED_ERR_PERMISSION_DENIED, "permission_denied")                \
	X(ED_ERR_NO_MODEL, "no_model")                                  \
	X(ED_ERR_INTERNAL, "internal")

typedef enum {
#define ED__E(name, str) name,
	ED_ERROR_MAP(ED__E)
#undef ED__E
	ED_ERR__COUNT
} ed_err;

const char *ed_err_code(ed_err e);

/* ---------------------------------------------------------------- server */

typedef struct ed_server ed_server;
typedef struct ed_conn ed_conn;
typedef struct ed_req ed_req;

/* A request in flight.  Created by the loop thread when a line parses;
 * freed by ed_req_finish() after its final event is queued. */
struct ed_req {
	ed_server *srv;
	ed_conn *conn;		/* holds a reference until the request is freed */
	json_t *msg;		/* the request object (owned) */
	json_t *id;		/* borrowed from msg */
	const struct ed_op *op;
	unsigned char *input;	/* "text"/"data", parts joined (owned), or NULL */
	size_t input_len;
	atomic_int cancelled;	/* set when the client leaves or at shutdown */
	uv_work_t work;
	void (*work_fn)(ed_req *);	/* what runs on the worker */
	/* Set by the work function, read by the loop thread after it: */
	json_t *result;		/* owned; sent as the "done" event */
	ed_err err;
	char errmsg[256];
	int failed;
	/* Set on the loop thread by an op that claimed something there (ask
	 * --keep: its session); run there, before the final event is sent. */
	void (*on_finish)(ed_req *);
};

typedef struct ed_op {
	const char *name;
	/* Runs on the loop thread; must be quick.  NULL for worker ops. */
	void (*on_loop)(ed_req *req);
	/* Runs on a worker thread; sets req->result or calls ed_req_fail(). */
	void (*on_worker)(ed_req *req);
} ed_op;

/* Looks an op up by name; NULL when unknown. */
const ed_op *ed_op_find(const char *name);

/* Marks the request failed; the error becomes its final event. Thread-safe
 * for the request's own worker. */
void ed_req_fail(ed_req *req, ed_err err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Sends an intermediate event {"id":…,"event":name,…fields}.  Steals
 * fields.  Callable from the loop thread or the request's worker. */
void ed_req_emit(ed_req *req, const char *event, json_t *fields);
/* Loop thread only: sends the final event (done with result, or error) and
 * frees the request. */
void ed_req_finish(ed_req *req);
int ed_req_is_cancelled(const ed_req *req);
/* A boolean argument of the request, def when absent; -1 after failing the
 * request (invalid_argument) when it is not a boolean. */
int ed_req_arg_bool(ed_req *req, const char *key, int def);
/* The server's settings, for a worker (read-only after start). */
const ed_settings *ed_req_settings(const ed_req *req);
/* Loop thread only, from an op's on_loop: runs fn on a worker thread, then
 * finishes the request.  fn plays the role of on_worker. */
void ed_req_defer(ed_req *req, void (*fn)(ed_req *req));

/* ops.c: gives the ops the server they report on. */
void ed_ops_init(ed_server *srv);

/* ops_model.c: the model, loaded once before the socket opens and
 * read-only after.  settings->model: a path, "none", or NULL for
 * <data_dir>/models/ + the default model's file name. */
int ed_model_load(const ed_settings *s, char *err, size_t errlen);
void ed_model_unload(void);
json_t *ed_model_brief(void);	/* for status: new reference, or null */
/* 1 when a model is loaded; else fails req with no_model and returns 0. */
int ed_model_need(ed_req *req);
/* The loaded model (borrowed, read-only), or NULL. */
const struct eng_model *ed_model(void);
extern const ed_op ed_ops_model[];	/* ends with a NULL name */

/* store.c: the memstore, opened at start (recovery runs then) under
 * <data_dir>/store.  One lock guards it, served in the order asked: lock,
 * use, unlock. */
struct ms_store;
int ed_store_open(const ed_settings *s, char *err, size_t errlen);
void ed_store_close(void);
struct ms_store *ed_store_lock(void);
void ed_store_unlock(void);
/* Threads waiting for the lock (tests). */
int ed_store_waiters(void);
/* A question on its way to a first token (on 1), or there (on 0): the
 * caller pairs them.  ed_store_yield: a job about to hold the lock long
 * (a stretch of an adoption) first waits, up to max_s seconds, until no
 * question is; returns 0 if none was, else 1 (waited, none left) or
 * 2 (gave up after max_s). */
void ed_store_urgent(int on);
int ed_store_yield(double max_s);
/* A store write: fn(ms, arg) under the lock.  While it fails with
 * MS_EBUSY (the LMDB map must grow, which waits for every read
 * transaction to end: a question's, within seconds), it is tried again
 * every 50 ms, the lock let go between, for up to ED_STORE_BUSY_S.  On
 * failure err (may be NULL) gets the store's message. */
#define ED_STORE_BUSY_S 120
int ed_store_write(int (*fn)(struct ms_store *, void *), void *arg,
    char *err, size_t errlen);
/* ms_trim under the lock: engramd's mappings of the store's pages go
 * (the page cache keeps them); a failure is logged. */
void ed_store_trim(void);

/* Further op tables, each ending with a NULL name: sessions, ingest jobs
 * and the store (ops_session.c); generation (ops_generate.c); questions
 * (ops_ask.c). */
extern const ed_op ed_ops_session[];
extern const ed_op ed_ops_generate[];
extern const ed_op ed_ops_ask[];

/* ops_generate.c: the engine's lock (one forward pass at a time) and what
 * generate and ask share. */
struct eng_fwd;
/* Waits in line for the engine, telling r its place ("queued" events);
 * -1 if r is cancelled first. */
int ed_engine_acquire(ed_req *r);
/* For jobs: waits until the engine is free and no request waits for it;
 * -1 if *cancel becomes nonzero first. */
int ed_engine_acquire_bg(const atomic_int *cancel);
void ed_engine_release(void);
/* 1 while the engine is held or waited for. */
int ed_engine_busy(void);
typedef struct ed_gen_args {
	eng_sampler_params sp;
	eng_gen_params gp;
	int chat;
} ed_gen_args;
int ed_gen_args_parse(ed_req *r, ed_gen_args *a, double default_temp,
    uint32_t min_tokens);
void ed_gen_emit_token(ed_req *r, int32_t id, const char *text, size_t len);
const char *ed_gen_stop_name(eng_stop_reason s);

/* prefill.c: prefill jobs' work, and the engine as sessions use it. */
typedef struct ed_prefill {
	int64_t session_id;
	const ed_settings *set;		/* borrowed */
	atomic_int cancel;
	_Atomic uint64_t done, total;	/* context positions */
	_Atomic uint64_t computed;	/* by this run */
	_Atomic uint64_t reused;	/* adopted from another session */
	int reuse;			/* may adopt (ms_session_adopt) */
	double seconds;			/* worker's */
	int rc;				/* 0, ENG_ECANCELED, or failed */
	char error[1024];
} ed_prefill;
/* Runs on a worker until the context is prefilled, cancel is set, or an
 * error (p->rc, p->error). */
void ed_prefill_run(ed_prefill *p);
/* An eng_fwd with the daemon's threads and sparse-attention settings. */
int ed_fwd_open(const ed_settings *s, struct eng_fwd **out, char *err,
		size_t errlen);
/* The sparse settings of a question on the session cache kv: its scan
 * and shortlist stop where kv would decode more than its budget
 * (ed_skv_scan_max).  ed_fwd_fit gives them to f. */
void ed_sparse_fit(const ed_settings *s, const struct eng_kv *kv,
		   eng_sparse_params *sp);
void ed_fwd_fit(struct eng_fwd *f, const ed_settings *s,
		const struct eng_kv *kv);
/* Context positions [a, b) of session sid into out: pre[0..n_pre) (its
 * preamble), then its stream.  0 or an MS_E* code. */
int ed_context_read(int64_t sid, const int32_t *pre, size_t n_pre,
		    uint64_t a, uint64_t b, int32_t *out);

/* ops_ask.c: a session's context is its preamble (BOS and the opening of
 * a user turn in the model's chat template), then its token stream; a
 * question closes that turn.  Both malloc'd arrays, freed by the caller. */
int ed_session_preamble(const struct eng_model *m, int32_t **ids, size_t *n);
int ed_session_question(const struct eng_model *m, const char *q, size_t len,
			int new_turn, int32_t **ids, size_t *n);
/* The close of a model turn (kept answers end with it). */
int ed_session_turn_end(const struct eng_model *m, int32_t **ids, size_t *n);
/* ops_session.c: an audit record (store locked by the caller). */
struct ms_store;
void ed_audit(struct ms_store *ms, const char *action, const char *session,
	      json_t *settings);
/* jobs.c: seconds on the monotonic clock, for durations. */
double ed_now_s(void);
/* warm.c: at start, on the thread pool, reads the session last asked
 * into skv's slot (warm_start); logs what it did. */
void ed_warm_start(uv_loop_t *loop, const ed_settings *s);
/* Returns once the warm is not reading session id (at once if it is
 * not): a question on it then finds in the slot what the warm read. */
void ed_warm_wait(int64_t id);
/* idle.c: idle_trim seconds after the last work that read or wrote much
 * of the store, with the engine free, gives back the store's pages
 * (ed_store_trim) and the heap's free pages (malloc_trim), on the thread
 * pool, once per idle stretch; logs what went.  Nothing if idle_trim is
 * 0.  ed_idle_touch (any thread): such work has just ended (the engine
 * let go, a fork, a delete, a gc). */
void ed_idle_start(uv_loop_t *loop, const ed_settings *s);
void ed_idle_touch(void);

/* Counters that `status` reports. */
typedef struct ed_stats {
	uint64_t connections_total;
	uint64_t requests_total;
	uint64_t errors_total;
	int connections;
	int inflight;
} ed_stats;

int ed_server_open(ed_server **out, ed_settings *s, uv_loop_t *loop);
/* Starts listening; the socket path is created with mode 0600. */
int ed_server_listen(ed_server *srv);
/* Graceful stop: no new connections or requests; in-flight work is
 * cancelled, then connections are flushed and closed.  Idempotent. */
void ed_server_stop(ed_server *srv, const char *why);
void ed_server_close(ed_server *srv);
/* Registers a hook that runs on the loop thread when stopping begins (main
 * closes its signal handles there, so the loop can end). */
void ed_server_on_stop(ed_server *srv, void (*cb)(void *), void *arg);
const ed_settings *ed_server_settings(const ed_server *srv);
void ed_server_stats(const ed_server *srv, ed_stats *st);
double ed_server_uptime(const ed_server *srv);
int ed_server_stopping(const ed_server *srv);

/* jobs.c: ingest jobs.  A job runs on the thread pool (uv_queue_work) and
 * outlives the request that started it; its row in the catalog's jobs
 * table follows its state.  Requests may follow a job: they get `progress`
 * events about every 250 ms and, when it ends, its summary as their final
 * event.  At shutdown running jobs are cancelled.  Loop thread only. */
typedef struct ed_job_args {
	int64_t session_id;
	const char *session;		/* name; copied */
	const char *const *roots;	/* absolute paths; copied */
	size_t n_roots;
} ed_job_args;
/* Starts an ingest job for r's server; *id receives its id.  On failure
 * returns -1 with *err and msg set (busy: the session has a running job,
 * or workers / 2 jobs (at least 1) are running). */
int ed_job_start(ed_req *r, const ed_job_args *a, int64_t *id, ed_err *err,
		 char *msg, size_t msglen);
/* r follows job id until it ends (r is then finished with the summary or
 * the job's error).  A follower whose client leaves is finished as
 * cancelled; the job goes on.  Returns 0, or -1 when the job is not
 * running (r untouched). */
int ed_job_follow(int64_t id, ed_req *r);
/* A job as JSON (new reference): state, progress, summary and, when full,
 * its whole skipped/failed report; NULL when no such job exists. */
json_t *ed_job_describe(int64_t id, int full);
/* The newest jobs (at most limit), as a JSON array (new reference). */
json_t *ed_jobs_list(size_t limit);
/* Asks job id to stop.  0: asked; 1: it had already ended; -1: no such
 * job. */
int ed_job_cancel(int64_t id);
/* Once per process, before the first job or session op: marks jobs a
 * previous engramd left running as interrupted and cuts their sessions'
 * unmapped tokens.  Later calls do nothing. */
void ed_jobs_recover(void);
/* The running job of a session, or 0. */
int64_t ed_job_of_session(int64_t session_id);
/* Whether an `ask --keep` that will write the session is in flight (loop
 * thread): session rm and rename, and jobs, wait for it. */
int ed_ask_keeping(int64_t session_id);
/* 1 and why in msg when the session (named session) has a running job or
 * an `ask --keep` claim, which refuse rm, rename and new jobs (loop
 * thread); else 0. */
int ed_session_busy(int64_t session_id, const char *session, char *msg,
    size_t msglen);
/* Starts a prefill job of session session_id (named session); as
 * ed_job_start.  reuse: an empty session may take over a stored prefix
 * (ed_prefill.reuse). */
int ed_prefill_start(ed_req *r, int64_t session_id, const char *session,
		     int reuse, int64_t *id, ed_err *err, char *msg,
		     size_t msglen);
/* Running jobs with their progress (for status); new reference. */
json_t *ed_jobs_running(void);
/* A file path as a JSON string (new reference): as is when it is UTF-8,
 * else with '?' for each non-ASCII byte.  Any thread. */
json_t *ed_json_path(const char *path);

#endif
