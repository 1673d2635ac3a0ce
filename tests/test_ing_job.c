/* test_ing_job.c - the driver: incremental runs (an unchanged tree does no
 * work; an edit keeps the stream's prefix and the result equals a fresh
 * run token for token), manifests through their encoding, cancellation
 * from another thread, progress counters, tokenizer failures. */
#include "config.h"
#include <pthread.h>
#include "test_ing_util.h"
#include "ing_internal.h"	/* ing__manifest_add, to build inputs */

struct ids { int32_t *v; size_t n, cap; };

static int collect_ids(void *arg, const int32_t *ids, size_t n, const ing_span *sp)
{
	struct ids *s = arg;
	(void)sp;
	if (s->n + n > s->cap) {
		s->cap = (s->n + n) * 2;
		s->v = realloc(s->v, s->cap * sizeof(int32_t));
	}
	memcpy(s->v + s->n, ids, n * sizeof(int32_t));
	s->n += n;
	return 0;
}

struct run {
	ing_manifest man;
	ing_diff diff;
	ing_progress prog;
	struct ids ids;		/* new tokens of this run */
	int calls;
};

static int do_run(const char *d, const ing_manifest *prev, uint64_t tok_id,
		  struct run *out)
{
	struct tu_tok t = { 0 };
	const char *roots[] = { d };
	ing_job_config c = { .roots = roots, .n_roots = 1, .tokenize = tu_tokenize,
			     .tokenize_arg = &t, .tokenizer_id = tok_id,
			     .emit = collect_ids, .emit_arg = &out->ids,
			     .prev = prev, .token_base = 1 };
	ing_settings_init(&c.settings);
	ing_job *j;
	ck_assert_int_eq(ing_job_open(&c, &j), 0);
	int rc = ing_job_run(j);
	if (rc == 0) {
		const ing_diff *df = ing_job_diff(j);
		out->diff = *df;
		/* Copy the change list: the job owns it. */
		out->diff.v = calloc(df->n + 1, sizeof(ing_change));
		for (size_t i = 0; i < df->n; i++) {
			out->diff.v[i].path = strdup(df->v[i].path);
			out->diff.v[i].kind = df->v[i].kind;
		}
		ing_job_take_manifest(j, &out->man);
		const ing_srcmap *m = ing_job_srcmap(j);
		if (m->n) {
			ck_assert_uint_eq(m->v[0].token_start, df->prefix_tokens);
			ck_assert_uint_eq(m->v[m->n - 1].token_end, out->man.token_end);
		}
	}
	ing_job_progress(j, &out->prog);
	ck_assert_int_eq(out->prog.running, 0);
	out->calls = t.calls;
	ing_job_close(j);
	tu_tok_free(&t);
	return rc;
}

static void run_free(struct run *r)
{
	ing_manifest_free(&r->man);
	ing_diff_free(&r->diff);
	free(r->ids.v);
	memset(r, 0, sizeof(*r));
}

/* The previous stream's prefix + this run's tokens == a fresh run. */
static void check_same_as_fresh(const char *d, const struct run *old,
				const struct run *inc)
{
	struct run fresh = { 0 };
	ck_assert_int_eq(do_run(d, NULL, 42, &fresh), 0);
	uint64_t keep = inc->diff.prefix_tokens - 1;	/* token_base is 1 */
	ck_assert_uint_le(keep, old->ids.n);
	ck_assert_uint_eq(keep + inc->ids.n, fresh.ids.n);
	ck_assert_int_eq(memcmp(old->ids.v, fresh.ids.v, keep * sizeof(int32_t)), 0);
	ck_assert_int_eq(memcmp(inc->ids.v, fresh.ids.v + keep,
				inc->ids.n * sizeof(int32_t)), 0);
	ck_assert_uint_eq(fresh.man.n, inc->man.n);
	for (size_t i = 0; i < fresh.man.n; i++) {
		ck_assert_str_eq(fresh.man.v[i].path, inc->man.v[i].path);
		ck_assert_uint_eq(fresh.man.v[i].token_start, inc->man.v[i].token_start);
		ck_assert_uint_eq(fresh.man.v[i].token_end, inc->man.v[i].token_end);
		ck_assert_uint_eq(fresh.man.v[i].hash, inc->man.v[i].hash);
		ck_assert_uint_eq(fresh.man.v[i].doc_index, inc->man.v[i].doc_index);
	}
	run_free(&fresh);
}

static int has_change(const ing_diff *d, const char *suffix, int kind)
{
	size_t sl = strlen(suffix);
	for (size_t i = 0; i < d->n; i++) {
		size_t pl = strlen(d->v[i].path);
		if (pl >= sl && !strcmp(d->v[i].path + pl - sl, suffix) &&
		    (int)d->v[i].kind == kind)
			return 1;
	}
	return 0;
}

static void make_tree(const char *d)
{
	tu_writes(d, "a.c", "int a = 1;\nint b = 2;\n");
	tu_writes(d, "b.py", "print('b')\n");
	tu_writes(d, "c.md", "# c\n\ntext of c\n");
	tu_writes(d, "d.txt", "d d d\n");
	tu_writes(d, "e.bin", "\x01\x02\x03\x04\x05\x06\x07 bin");
	tu_mtime(d, "a.c", 1000);
	tu_mtime(d, "b.py", 2000);
	tu_mtime(d, "c.md", 3000);
	tu_mtime(d, "d.txt", 4000);
	tu_mtime(d, "e.bin", 5000);
}

/* Through the encoding, as the daemon would store it. */
static void roundtrip(ing_manifest *m)
{
	void *buf;
	size_t len;
	ing_manifest back;
	ing_manifest_init(&back);
	ck_assert_int_eq(ing_manifest_encode(m, &buf, &len), 0);
	ck_assert_int_eq(ing_manifest_decode(buf, len, &back), 0);
	ck_assert_uint_eq(back.n, m->n);
	ck_assert_uint_eq(back.token_end, m->token_end);
	ck_assert_uint_eq(back.n_docs, m->n_docs);
	for (size_t i = 0; i < m->n; i++) {
		ck_assert_str_eq(back.v[i].path, m->v[i].path);
		ck_assert_uint_eq(back.v[i].hash, m->v[i].hash);
		ck_assert_int_eq(back.v[i].status, m->v[i].status);
		ck_assert_int_eq(back.v[i].mtime_ns, m->v[i].mtime_ns);
	}
	free(buf);
	ing_manifest_free(m);
	*m = back;
}

START_TEST(test_incremental)
{
	char *d = tu_tmpdir();
	struct run r1 = { 0 }, r2 = { 0 }, r3 = { 0 }, r4 = { 0 }, r5 = { 0 };
	make_tree(d);
	ck_assert_int_eq(do_run(d, NULL, 42, &r1), 0);
	ck_assert_uint_eq(r1.man.n, 5);
	ck_assert_uint_eq(r1.man.n_docs, 4);
	ck_assert_int_eq(r1.man.v[4].status, ING_EBINARY);
	/* The binary is in the manifest but not "added": not a document. */
	ck_assert_uint_eq(r1.diff.n_added, 4);
	ck_assert_uint_eq(r1.prog.files_done, 4);
	ck_assert_uint_eq(r1.prog.files_skipped, 1);
	ck_assert_uint_eq(r1.prog.tokens, r1.ids.n);
	ck_assert_uint_eq(r1.man.token_end, 1 + r1.ids.n);
	roundtrip(&r1.man);

	/* Unchanged: nothing read, nothing tokenized. */
	ck_assert_int_eq(do_run(d, &r1.man, 42, &r2), 0);
	ck_assert_int_eq(r2.diff.unchanged, 1);
	ck_assert_uint_eq(r2.prog.bytes_read, 0);
	ck_assert_int_eq(r2.calls, 0);
	ck_assert_uint_eq(r2.ids.n, 0);
	ck_assert_uint_eq(r2.prog.files_kept, 4);
	ck_assert_uint_eq(r2.diff.prefix_tokens, r1.man.token_end);
	ck_assert_uint_eq(r2.man.token_end, r1.man.token_end);

	/* Edit c.md: a.c and b.py stay; c.md is modified; d.txt moves. */
	tu_writes(d, "c.md", "# c\n\nnew text of c\n");
	tu_mtime(d, "c.md", 6000);
	ck_assert_int_eq(do_run(d, &r2.man, 42, &r3), 0);
	ck_assert_int_eq(r3.diff.unchanged, 0);
	ck_assert_uint_eq(r3.diff.prefix_docs, 2);
	ck_assert_uint_eq(r3.diff.prefix_tokens, r1.man.v[1].token_end);
	ck_assert(has_change(&r3.diff, "/c.md", ING_CHANGE_MODIFIED));
	ck_assert(has_change(&r3.diff, "/d.txt", ING_CHANGE_MOVED));
	ck_assert_uint_eq(r3.diff.n, 2);
	ck_assert_uint_eq(r3.prog.files_kept, 2);
	check_same_as_fresh(d, &r1, &r3);

	/* Add a file with an old time (lands first) and remove one. */
	tu_writes(d, "0.txt", "zero\n");
	tu_mtime(d, "0.txt", 10);
	char *p = tu_path(d, "b.py");
	unlink(p);
	free(p);
	ck_assert_int_eq(do_run(d, &r3.man, 42, &r4), 0);
	ck_assert_uint_eq(r4.diff.prefix_docs, 0);
	ck_assert(has_change(&r4.diff, "/0.txt", ING_CHANGE_ADDED));
	ck_assert(has_change(&r4.diff, "/b.py", ING_CHANGE_REMOVED));
	ck_assert_uint_eq(r4.diff.n_added, 1);
	ck_assert_uint_eq(r4.diff.n_removed, 1);
	ing_diff_free(&r4.diff);

	/* A different tokenizer: nothing can be kept. */
	ck_assert_int_eq(do_run(d, &r3.man, 43, &r5), 0);
	ck_assert_uint_eq(r5.diff.prefix_entries, 0);
	ck_assert_uint_eq(r5.prog.files_kept, 0);

	run_free(&r1);
	run_free(&r2);
	run_free(&r3);
	run_free(&r4);
	run_free(&r5);
	tu_rmtree(d);
	free(d);
}
END_TEST

/* touch without change: read again (time differs) but the hash matches. */
START_TEST(test_touch_only)
{
	char *d = tu_tmpdir();
	struct run r1 = { 0 }, r2 = { 0 };
	make_tree(d);
	ck_assert_int_eq(do_run(d, NULL, 42, &r1), 0);
	tu_mtime(d, "d.txt", 4500);	/* same place in the order */
	ck_assert_int_eq(do_run(d, &r1.man, 42, &r2), 0);
	ck_assert_uint_gt(r2.prog.bytes_read, 0);
	ck_assert_int_eq(r2.calls, 0);
	ck_assert_uint_eq(r2.diff.n, 0);
	ck_assert_uint_eq(r2.diff.prefix_tokens, r1.man.token_end);
	run_free(&r1);
	run_free(&r2);
	tu_rmtree(d);
	free(d);
}
END_TEST

START_TEST(test_manifest_bad_input)
{
	ing_manifest m;
	ing_manifest_init(&m);
	ck_assert_int_eq(ing_manifest_decode("EGIM", 4, &m), ING_EFORMAT);
	ing_manifest_entry e = { .path = "x/y", .hash = 5, .token_start = 1, .token_end = 9 };
	ing_manifest src;
	ing_manifest_init(&src);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ing__manifest_add(&src, &e), 0);
	void *buf;
	size_t len;
	ck_assert_int_eq(ing_manifest_encode(&src, &buf, &len), 0);
	for (size_t cut = 0; cut < len; cut++)
		ck_assert_int_eq(ing_manifest_decode(buf, cut, &m), ING_EFORMAT);
	for (size_t i = 0; i < len; i++) {
		((unsigned char *)buf)[i] ^= 0x40;
		ck_assert_int_eq(ing_manifest_decode(buf, len, &m), ING_EFORMAT);
		((unsigned char *)buf)[i] ^= 0x40;
	}
	ck_assert_int_eq(ing_manifest_decode(buf, len, &m), 0);
	ck_assert_uint_eq(m.n, 3);
	free(buf);
	ing_manifest_free(&m);
	ing_manifest_free(&src);
}
END_TEST

/* ---- cancellation from another thread ---- */

struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int in_tokenizer, released;
	ing_job *job;
	int rc;
};

static int gated_tokenize(void *arg, const char *text, size_t len, int32_t *ids,
			  size_t cap, size_t *n)
{
	struct gate *g = arg;
	pthread_mutex_lock(&g->mu);
	g->in_tokenizer = 1;
	pthread_cond_broadcast(&g->cv);
	while (!g->released)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	(void)text;
	*n = len < cap ? len : cap;
	for (size_t i = 0; i < *n; i++)
		ids[i] = 1;
	return 0;
}

static void *runner(void *arg)
{
	struct gate *g = arg;
	g->rc = ing_job_run(g->job);
	return NULL;
}

START_TEST(test_cancel_from_thread)
{
	char *d = tu_tmpdir();
	make_tree(d);
	struct gate g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL, 0 };
	const char *roots[] = { d };
	ing_job_config c = { .roots = roots, .n_roots = 1,
			     .tokenize = gated_tokenize, .tokenize_arg = &g };
	ing_settings_init(&c.settings);
	ck_assert_int_eq(ing_job_open(&c, &g.job), 0);
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, runner, &g), 0);
	pthread_mutex_lock(&g.mu);
	while (!g.in_tokenizer)
		pthread_cond_wait(&g.cv, &g.mu);
	/* The job is inside its first file: progress is readable here. */
	ing_progress p;
	ing_job_progress(g.job, &p);
	ck_assert_int_eq(p.running, 1);
	ck_assert_uint_eq(p.files_seen, 5);
	ck_assert_uint_gt(p.bytes_read, 0);
	ing_job_cancel(g.job);
	g.released = 1;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	pthread_join(th, NULL);
	ck_assert_int_eq(g.rc, ING_ECANCELED);
	ing_job_progress(g.job, &p);
	ck_assert_int_eq(p.running, 0);
	ck_assert_uint_eq(p.files_done, 0);
	ing_job_close(g.job);
	tu_rmtree(d);
	free(d);
}
END_TEST

static int stop_emit(void *arg, const int32_t *ids, size_t n, const ing_span *sp)
{
	(void)arg; (void)ids; (void)n; (void)sp;
	return 1;
}

START_TEST(test_failures)
{
	char *d = tu_tmpdir();
	make_tree(d);
	const char *roots[] = { d };
	struct tu_tok t = { .fail_after = 3 };
	ing_job_config c = { .roots = roots, .n_roots = 1, .tokenize = tu_tokenize,
			     .tokenize_arg = &t };
	ing_settings_init(&c.settings);
	ing_job *j;
	ck_assert_int_eq(ing_job_open(&c, &j), 0);
	ck_assert_int_eq(ing_job_run(j), ING_ETOKENIZE);
	ck_assert_int_eq(ing_job_run(j), ING_EINVAL);	/* once per job */
	ing_job_close(j);
	tu_tok_free(&t);
	/* The sink asks to stop. */
	struct tu_tok t2 = { 0 };
	c.tokenize_arg = &t2;
	c.emit = stop_emit;
	ck_assert_int_eq(ing_job_open(&c, &j), 0);
	ck_assert_int_eq(ing_job_run(j), ING_ECANCELED);
	ing_job_close(j);
	tu_tok_free(&t2);
	/* Bad configurations. */
	c.tokenize = NULL;
	ck_assert_int_eq(ing_job_open(&c, &j), ING_EINVAL);
	c.tokenize = tu_tokenize;
	c.settings.chunk_lines = 0;
	ck_assert_int_eq(ing_job_open(&c, &j), ING_EINVAL);
	tu_rmtree(d);
	free(d);
}
END_TEST

/* Empty folders and roots that hold nothing: walked, no document, no
 * error (each once sorted a NULL list: a crash under UBSan, so in the
 * daemon any tree with an empty folder). */
START_TEST(test_empty_trees)
{
	char *d = tu_tmpdir(), *sub = tu_path(d, "empty"), *gone;
	struct run r = { 0 };

	ck_assert_int_eq(do_run(d, NULL, 42, &r), 0);	/* an empty root */
	ck_assert_uint_eq(r.man.n, 0);
	ck_assert_uint_eq(r.ids.n, 0);
	run_free(&r);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	ck_assert_int_eq(do_run(d, NULL, 42, &r), 0);	/* only an empty folder */
	ck_assert_uint_eq(r.man.n, 0);
	run_free(&r);
	tu_writes(d, "a.txt", "hello there\n");
	ck_assert_int_eq(do_run(d, NULL, 42, &r), 0);	/* and a file */
	ck_assert_uint_eq(r.man.n, 1);
	ck_assert_uint_eq(r.diff.n_added, 1);
	ck_assert_uint_gt(r.ids.n, 0);
	run_free(&r);
	gone = tu_path(d, "no/such/root");
	ck_assert_int_eq(do_run(gone, NULL, 42, &r), 0);	/* reported */
	ck_assert_uint_eq(r.man.n, 0);
	ck_assert_uint_eq(r.ids.n, 0);
	run_free(&r);
	free(gone);
	free(sub);
	tu_rmtree(d);
	free(d);
}
END_TEST

TU_MAIN("ing_job", test_incremental, test_touch_only, test_manifest_bad_input,
	test_cancel_from_thread, test_failures, test_empty_trees)
