/* test_skv.c - a session's KV in memstore (daemon/skv.c) against the
 * engine's in-memory cache, on the default model (ENGRAM_TEST_MODEL):
 * a context prefilled in saved chunks and reopened (a restart) gives the
 * same logits, bit for bit, as the same steps on an in-memory cache (and
 * what an overlay leaves for the next open is what LMDB gives); a
 * prefill stopped midway and resumed writes the same block records as one
 * never stopped; sparse attention over the stored session selecting every
 * block equals dense; a lossy (q8) session answers the same before and
 * after a restart.
 *
 * skv.c is compiled in with the daemon's store lock and log replaced by
 * the stubs below. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "engramd.h"
#include "fixture_model.h"
#include "memstore.h"
#include "skv.h"

/* ---- stubs for the daemon's store and log ---- */
static ms_store *g_ms;
ms_store *ed_store_lock(void) { return g_ms; }
void ed_store_unlock(void) {}
/* One thread here: no reader can hold the map's growth back. */
int ed_store_write(int (*fn)(ms_store *, void *), void *arg, char *err,
    size_t errlen)
{
	int rc = fn(g_ms, arg);
	if (rc && err)
		snprintf(err, errlen, "%s", ms_errmsg(g_ms));
	return rc;
}
void ed_log(int level, const char *fmt, ...)
{
	va_list ap;
	(void)level;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

#define N_CTX 1100		/* 3 chunks of 512, not a block multiple */
#define N_Q 23			/* a "question" after it */

static eng_model *M;
static float *ref_cache;	/* the in-memory cache's answer, computed once */
static float *reference_compute(void);
static int32_t *toks;		/* N_CTX + N_Q ids */
static uint32_t n_vocab;

static void model_setup(void)
{
	const char *path = getenv("ENGRAM_TEST_MODEL");
	const char *src = getenv("ENGRAM_SRCDIR");
	char err[256], file[4096];
	size_t n = 0;
	int32_t *ids = NULL;

	ck_assert_msg(path && access(path, R_OK) == 0,
	    "ENGRAM_TEST_MODEL must name the default model (scripts/test sets it)");
	ck_assert_int_eq(eng_model_open(path, &M, err, sizeof err), 0);
	/* Real text: this repository's docs. */
	snprintf(file, sizeof file, "%s/docs/FRAMING.md", src ? src : ".");
	FILE *f = fopen(file, "r");
	ck_assert_msg(f != NULL, "cannot read %s", file);
	char *text = malloc(1 << 20);
	size_t len = fread(text, 1, (1 << 20) - 1, f);
	fclose(f);
	ck_assert_int_eq(eng_tokenize(eng_model_vocab(M), text, len,
	    ENG_TOK_ADD_SPECIAL, &ids, &n), 0);
	free(text);
	ck_assert_uint_ge(n, N_CTX + N_Q);
	toks = ids;
	n_vocab = eng_model_hparams(M)->n_vocab;
}

static void model_teardown(void)
{
	free(ref_cache);
	free(toks);
	eng_model_close(M);
}

static char *store_dir(void)
{
	char *d = strdup("/tmp/test_skv.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(d));
	return d;
}

static void rm_rf(const char *d)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
	ck_assert_int_eq(system(cmd), 0);
}

static int64_t session_new(const char *dir, ms_mode mode)
{
	const eng_hparams *hp = eng_model_hparams(M);
	const char *hex = eng_model_info_get(M)->fingerprint;
	uint8_t fp[16];
	uint32_t glob = eng_hparams_n_global(hp);
	int64_t id;
	char err[256];

	for (int i = 0; i < 16; i++)
		sscanf(hex + 2 * i, "%2hhx", &fp[i]);
	ms_geom g = { .n_layers = glob, .n_kv_heads = hp->n_head_kv,
	    .head_dim = hp->head_dim_k, .block_tokens = 64, .mode = mode };
	ck_assert_int_eq(ms_open(dir, NULL, &g_ms, err, sizeof err), 0);
	ck_assert_int_eq(ms_session_create(g_ms, "s", fp, &g, &id), 0);
	return id;
}

/* The store closed as engramd closes it: what skv kept for the next
 * open (ed_skv_forget) goes first, so that an open after a reopen reads
 * LMDB, as after a restart. */
static void store_close(void)
{
	ed_skv_forget();
	ms_close(g_ms);
}

static eng_fwd *fwd_new(uint32_t top_k)
{
	eng_fwd_params p;
	eng_fwd *f;
	char err[256];

	eng_fwd_params_init(&p);
	p.n_threads = 2;
	p.sparse.top_k = top_k;
	p.sparse.sink = 64;
	p.sparse.local = 256;
	p.sparse.reach = 1;	/* packed tight: shifted ranges exercised */
	ck_assert_int_eq(eng_fwd_open(M, &p, &f, err, sizeof err), 0);
	return f;
}

/* Steps of 512 positions from 0 (as prefill makes them), saving after
 * each when save is set; stops once `stop` positions are done. */
static void prefill(eng_fwd *f, eng_kv *kv, uint32_t stop, int save)
{
	char err[256];
	uint32_t pos = eng_kv_length(kv);

	while (pos < stop) {
		uint32_t end = (pos / 512 + 1) * 512;
		if (end > stop)
			end = stop;
		ck_assert_int_eq(eng_fwd_eval(f, kv, toks + pos, end - pos, 0,
		    NULL, NULL), 0);
		/* the end of each run is kept as a checkpoint */
		if (save)
			ck_assert_msg(ed_skv_save(kv, toks, 0, end == stop, err,
			    sizeof err) == 0, "save: %s", err);
		pos = end;
	}
}

/* Every global layer's key codes and summaries through the store's
 * codes and summary ops: one per summarized block, and the codes and
 * summary row of the keys its views give (eng_kv_code_block and
 * eng_kv_summarize_block of them): made by skv for blocks it prefilled,
 * by memstore for blocks loaded at open, the same bits.  Returns the
 * blocks of the last global layer; *in_place and *rows_in_place (may be
 * NULL) the codes and the summary rows read in place from the map. */
static uint32_t expect_codes_at(eng_kv *kv, uint32_t *in_place,
    uint32_t *rows_in_place)
{
	uint32_t hd = kv->head_dim_k, B = kv->block_tokens, seen = 0, nb = 0;
	size_t row = ENG_KV_CODE_ROW(hd);
	float *kf = malloc((size_t)B * hd * sizeof *kf);
	uint8_t *want = malloc(B * row);
	uint16_t *want_r = malloc(ENG_KV_SUM_ROW(hd) * 2);

	ck_assert_ptr_nonnull(kv->ops->codes);
	for (uint32_t il = 0; il < kv->n_layer; il++) {
		eng_kv_runs su, cd;
		if (kv->ops->summary(kv, il, 0, &su))
			continue;	/* a window layer */
		ck_assert_int_eq(kv->ops->codes(kv, il, 0, &cd), 0);
		nb = cd.n;
		ck_assert_uint_eq(nb, su.n);
		ck_assert_uint_le(cd.n_lo, nb);
		ck_assert_uint_le(su.n_lo, nb);
		if (in_place)
			*in_place = cd.n_lo;
		if (rows_in_place)
			*rows_in_place = su.n_lo;
		for (uint32_t b = 0; b < nb; b++) {
			for (uint32_t t = 0; t < B;) {
				eng_kv_span sp;
				ck_assert_int_eq(kv->ops->view(kv, il, 0,
				    b * B + t, B - t, &sp), 0);
				for (uint32_t i = 0; i < sp.n; i++, t++)
					for (uint32_t c = 0; c < hd; c++)
						kf[(size_t)t * hd + c] =
						    ms_f16_to_f32(((const
						    uint16_t *)((const char *)
						    sp.k + i * sp.k_stride))[c]);
			}
			eng_kv_code_block(want, kf, B, hd);
			ck_assert_msg(memcmp(eng_kv_run_at(&cd, b), want,
			    B * row) == 0, "layer %u block %u: codes differ",
			    il, b);
			eng_kv_summarize_block(want_r, kf, B, hd);
			ck_assert_msg(memcmp(eng_kv_sum_at(&su, b), want_r,
			    ENG_KV_SUM_ROW(hd) * 2) == 0, "layer %u block %u: "
			    "summaries differ", il, b);
		}
		seen++;
	}
	ck_assert_uint_gt(seen, 0);
	ck_assert_int_ne(kv->ops->codes(kv, kv->n_layer, 0, &(eng_kv_runs){
	    0 }), 0);
	free(kf);
	free(want);
	free(want_r);
	return nb;
}

static uint32_t expect_codes(eng_kv *kv)
{
	return expect_codes_at(kv, NULL, NULL);
}

/* Logits of the question's last token (copied). */
static float *question(eng_fwd *f, eng_kv *kv)
{
	const float *l;
	float *out = malloc(n_vocab * sizeof(float));
	ck_assert_int_eq(eng_fwd_eval(f, kv, toks + N_CTX, N_Q, 0, &l, NULL),
	    0);
	memcpy(out, l, n_vocab * sizeof(float));
	return out;
}

static eng_kv *skv_open(int64_t id, eng_fwd *f)
{
	eng_kv *kv;
	char err[256] = "";
	int rc = ed_skv_open(id, M, eng_fwd_n_batch(f), &kv, err, sizeof err);
	ck_assert_msg(rc == 0, "ed_skv_open: %s (%d)", err, rc);
	return kv;
}


/* The question's logits on an in-memory cache (computed once). */
static float *reference(void)
{
	float *copy = malloc(n_vocab * sizeof(float));
	if (!ref_cache) {
		ref_cache = reference_compute();
	}
	memcpy(copy, ref_cache, n_vocab * sizeof(float));
	return copy;
}

static float *reference_compute(void)
{
	eng_fwd *f = fwd_new(0);
	eng_kv *kv;
	ck_assert_int_eq(eng_kv_mem_open(M, 4096, eng_fwd_n_batch(f),
	    ENG_TYPE_F16, &kv), 0);
	prefill(f, kv, N_CTX, 0);
	float *l = question(f, kv);
	eng_kv_close(kv);
	eng_fwd_close(f);
	return l;
}

/* Stored, closed, reopened: the question's logits equal the in-memory
 * cache's bit for bit (f16 blocks: the same values, the same order). */
START_TEST(restart_equals_memory)
{
	char *dir = store_dir();
	int64_t id = session_new(dir, MS_MODE_F16);
	float *ref = reference(), *got;
	eng_fwd *f = fwd_new(0);
	eng_kv *kv = skv_open(id, f);

	ck_assert_uint_eq(eng_kv_length(kv), 0);
	prefill(f, kv, N_CTX, 1);
	ck_assert_uint_eq(ed_skv_stored(kv), N_CTX);
	eng_kv_close(kv);
	store_close();
	char err[256];
	ck_assert_int_eq(ms_open(dir, NULL, &g_ms, err, sizeof err), 0);
	kv = skv_open(id, f);
	ck_assert_uint_eq(eng_kv_length(kv), N_CTX);
	got = question(f, kv);
	ck_assert_msg(memcmp(got, ref, n_vocab * sizeof(float)) == 0,
	    "logits after a restart differ from the in-memory cache");
	free(got);
	/* An overlay question left nothing behind. */
	eng_kv_close(kv);
	kv = skv_open(id, f);
	ck_assert_uint_eq(eng_kv_length(kv), N_CTX);
	got = question(f, kv);
	ck_assert(memcmp(got, ref, n_vocab * sizeof(float)) == 0);
	free(got);
	eng_kv_close(kv);
	eng_fwd_close(f);
	store_close();
	free(ref);
	rm_rf(dir);
	free(dir);
}
END_TEST

/* Every block record of a store, in chain order, concatenated. */
static size_t chain_bytes(int64_t id, uint8_t **out)
{
	ms_txn *txn;
	ms_session_info si;
	size_t len = 0;
	uint8_t *buf = NULL;

	ck_assert_int_eq(ms_read_begin(g_ms, &txn), 0);
	ck_assert_int_eq(ms_session_head(txn, id, &si), 0);
	for (uint64_t b = 0; b < si.n_blocks; b++) {
		ms_block blk;
		ck_assert_int_eq(ms_session_block(txn, id, b, &blk), 0);
		buf = realloc(buf, len + blk.len);
		memcpy(buf + len, blk.rec, blk.len);
		len += blk.len;
	}
	ms_read_end(txn);
	*out = buf;
	return len;
}

/* Stopped after the second chunk (nothing of the third saved), reopened,
 * resumed: the same bytes as an uninterrupted prefill in another store. */
START_TEST(resume_same_blocks)
{
	char *da = store_dir(), *db = store_dir(), err[256];
	uint8_t *ba, *bb;
	size_t la, lb;
	eng_fwd *f = fwd_new(0);
	int64_t ida = session_new(da, MS_MODE_F16);
	eng_kv *kv = skv_open(ida, f);

	prefill(f, kv, N_CTX, 1);
	eng_kv_close(kv);
	la = chain_bytes(ida, &ba);
	store_close();

	int64_t idb = session_new(db, MS_MODE_F16);
	kv = skv_open(idb, f);
	prefill(f, kv, 1024, 1);
	/* Part of a third chunk computed but never saved (a kill). */
	ck_assert_int_eq(eng_fwd_eval(f, kv, toks + 1024, 50, 0, NULL, NULL),
	    0);
	eng_kv_close(kv);
	store_close();
	ck_assert_int_eq(ms_open(db, NULL, &g_ms, err, sizeof err), 0);
	kv = skv_open(idb, f);
	ck_assert_uint_eq(eng_kv_length(kv), 1024);
	prefill(f, kv, N_CTX, 1);
	eng_kv_close(kv);
	lb = chain_bytes(idb, &bb);
	ck_assert_uint_eq(la, lb);
	ck_assert_msg(memcmp(ba, bb, la) == 0, "resumed blocks differ");
	uint64_t problems = 0;
	ck_assert_int_eq(ms_check(g_ms, 1, &problems), 0);
	store_close();
	eng_fwd_close(f);
	free(ba);
	free(bb);
	rm_rf(da);
	rm_rf(db);
	free(da);
	free(db);
}
END_TEST

/* The tail record of session id (copied). */
static size_t tail_bytes(int64_t id, uint8_t **out)
{
	ms_txn *txn;
	ms_block t;

	ck_assert_int_eq(ms_read_begin(g_ms, &txn), 0);
	ck_assert_int_eq(ms_tail_get(txn, id, &t), 0);
	*out = malloc(t.len);
	memcpy(*out, t.rec, t.len);
	ms_read_end(txn);
	return t.len;
}

/* Session ida (empty) prefilled to 1024 positions with a checkpoint
 * there; a new session "c" takes them over and computes the rest to
 * N_CTX.  Returns c's id, its cache open in *kv. */
static int64_t adopt_and_finish(eng_fwd *f, int64_t ida, eng_kv **kv)
{
	ms_session_info si;
	uint64_t got = 0;
	int64_t idc;

	*kv = skv_open(ida, f);
	prefill(f, *kv, 1024, 1);
	eng_kv_close(*kv);
	ck_assert_int_eq(ms_session_get(g_ms, "s", &si), 0);
	ck_assert_int_eq(ms_session_create(g_ms, "c", si.fingerprint,
	    &si.geom, &idc), 0);
	ck_assert_int_eq(ms_session_adopt(g_ms, idc, (const uint32_t *)toks,
	    N_CTX, &got), 0);
	ck_assert_uint_eq(got, 1024);
	*kv = skv_open(idc, f);
	ck_assert_uint_eq(eng_kv_length(*kv), 1024);
	prefill(f, *kv, N_CTX, 1);
	return idc;
}

/* A session that takes over another's first 1024 positions (its
 * checkpoint) and computes the rest writes the same block records and
 * tail as one prefilled from scratch in another store, and answers the
 * in-memory cache's logits. */
START_TEST(adopt_same_blocks)
{
	char *da = store_dir(), *db = store_dir();
	uint8_t *ba, *bb, *ta, *tb;
	size_t la, lb, lta, ltb;
	eng_fwd *f = fwd_new(0);
	int64_t ida = session_new(da, MS_MODE_F16), idc;
	eng_kv *kv;

	idc = adopt_and_finish(f, ida, &kv);
	eng_kv_close(kv);
	la = chain_bytes(idc, &ba);
	lta = tail_bytes(idc, &ta);
	kv = skv_open(idc, f);
	float *lc = question(f, kv), *want = reference();
	eng_kv_close(kv);
	ck_assert_msg(memcmp(lc, want, n_vocab * sizeof(float)) == 0,
	    "adopted session's logits differ");
	uint64_t problems = 0;
	ck_assert_int_eq(ms_check(g_ms, 1, &problems), 0);
	store_close();

	int64_t idb = session_new(db, MS_MODE_F16);
	kv = skv_open(idb, f);
	prefill(f, kv, N_CTX, 1);
	eng_kv_close(kv);
	lb = chain_bytes(idb, &bb);
	ltb = tail_bytes(idb, &tb);
	ck_assert_uint_eq(la, lb);
	ck_assert_msg(memcmp(ba, bb, la) == 0, "adopted session's blocks "
	    "differ");
	ck_assert_uint_eq(lta, ltb);
	ck_assert_msg(memcmp(ta, tb, lta) == 0, "adopted session's tail "
	    "differs");
	store_close();
	eng_fwd_close(f);
	free(lc);
	free(want);
	free(ba);
	free(bb);
	free(ta);
	free(tb);
	rm_rf(da);
	rm_rf(db);
	free(da);
	free(db);
}
END_TEST

/* A model without window layers (the llama fixture): its checkpoints
 * only mark a prefix, and a session adopting one computes the rest to the
 * same blocks and logits as a session prefilled from scratch. */
START_TEST(adopt_without_window)
{
	char *da = store_dir(), *db = store_dir();
	eng_model *keep_m = M;
	int32_t *keep_t = toks;
	uint32_t keep_nv = n_vocab;
	struct fx_model fx;
	uint8_t *ba, *bb;
	size_t la, lb;
	int64_t idc;

	fx_open(&fx, &fx_llama);
	M = fx.model;
	n_vocab = FX_N_VOCAB;
	toks = malloc((N_CTX + N_Q) * sizeof *toks);
	for (int i = 0; i < N_CTX + N_Q; i++)
		toks[i] = 3 + (int32_t)(fx_rnd() % (FX_N_VOCAB - 3));
	eng_fwd *f = fwd_new(0);
	int64_t ida = session_new(da, MS_MODE_F16);
	eng_kv *kv;
	idc = adopt_and_finish(f, ida, &kv);
	float *lc = question(f, kv);
	eng_kv_close(kv);
	la = chain_bytes(idc, &ba);
	uint64_t problems = 0;
	ck_assert_int_eq(ms_check(g_ms, 1, &problems), 0);
	ck_assert_uint_eq(problems, 0);
	store_close();

	int64_t idb = session_new(db, MS_MODE_F16);
	kv = skv_open(idb, f);
	prefill(f, kv, N_CTX, 1);
	float *lb_ = question(f, kv);
	eng_kv_close(kv);
	lb = chain_bytes(idb, &bb);
	ck_assert_uint_eq(la, lb);
	ck_assert_msg(memcmp(ba, bb, la) == 0, "adopted blocks differ");
	ck_assert_msg(memcmp(lc, lb_, n_vocab * sizeof(float)) == 0,
	    "adopted session's logits differ");
	store_close();
	eng_fwd_close(f);
	free(lc);
	free(lb_);
	free(ba);
	free(bb);
	free(toks);
	fx_close(&fx);
	M = keep_m;
	toks = keep_t;
	n_vocab = keep_nv;
	rm_rf(da);
	rm_rf(db);
	free(da);
	free(db);
}
END_TEST

/* Sparse attention over the stored session: selecting every candidate
 * block equals dense; a small top_k changes the logits but stays close
 * (the question attends mostly near itself here). */
START_TEST(sparse_over_store)
{
	char *dir = store_dir();
	int64_t id = session_new(dir, MS_MODE_F16);
	float *ref = reference(), *got;
	eng_fwd *f = fwd_new(0);
	eng_kv *kv = skv_open(id, f);

	prefill(f, kv, N_CTX, 1);
	ck_assert_uint_eq(expect_codes(kv), N_CTX / 64);
	eng_kv_close(kv);
	eng_fwd_close(f);
	/* Candidates at 1100: blocks 1 .. (1100-256)/64 = 13: 12 of them. */
	f = fwd_new(12);
	kv = skv_open(id, f);
	ck_assert_uint_eq(expect_codes(kv), N_CTX / 64);
	/* codes read when first asked for, with a block in pend: 64 more
	 * positions past the stored length (any ids), then the codes */
	{
		eng_kv *more = skv_open(id, f);
		ck_assert_int_eq(eng_fwd_eval(f, more, toks, 64, 0, NULL,
		    NULL), 0);
		ck_assert_uint_eq(expect_codes(more), (N_CTX + 64) / 64);
		eng_kv_close(more);
	}
	/* prefetch hints of any shape change nothing (the forward pass
	 * sends the plan's own below) */
	for (uint32_t l = 0; l <= kv->n_layer; l++) {
		kv->ops->prefetch(kv, l, 0, 0, 1);
		kv->ops->prefetch(kv, l, 0, 0, 0);
		kv->ops->prefetch(kv, l, 0, 63, 2);
		kv->ops->prefetch(kv, l, 0, 1000, 100000);
		kv->ops->prefetch(kv, l, 0, 0xfffffff0u, 0xff);
	}
	got = question(f, kv);
	ck_assert_msg(memcmp(got, ref, n_vocab * sizeof(float)) == 0,
	    "sparse with every block differs from dense");
	free(got);
	eng_kv_close(kv);
	eng_fwd_close(f);
	f = fwd_new(4);
	eng_fwd_record(f, 1);
	kv = skv_open(id, f);
	got = question(f, kv);
	double maxd = 0;
	for (uint32_t i = 0; i < n_vocab; i++) {
		ck_assert(isfinite(got[i]));
		if (fabs(got[i] - ref[i]) > maxd)
			maxd = fabs(got[i] - ref[i]);
	}
	fprintf(stderr, "sparse top_k 4 vs dense: max |logit diff| %.3f\n",
	    maxd);
	ck_assert(maxd > 0);
	eng_attn_block blk[64];
	uint32_t nb;
	uint64_t nk;
	ck_assert_int_eq(eng_fwd_attended(f, blk, 64, &nb, &nk), 0);
	/* sink 64 + 4 blocks + local from floor((1100-256)/64)*64 = 832. */
	ck_assert_uint_eq(nk, 64 + 4 * 64 + (N_CTX + N_Q - 832));
	free(got);
	eng_kv_close(kv);
	eng_fwd_close(f);
	store_close();
	free(ref);
	rm_rf(dir);
	free(dir);
}
END_TEST

/* q8 blocks: what the session answers before and after a restart is the
 * same (both read the stored blocks back), and close to f16. */
START_TEST(q8_restart_same)
{
	char *dir = store_dir(), err[256];
	int64_t id = session_new(dir, MS_MODE_Q8);
	float *ref = reference(), *a, *b;
	eng_fwd *f = fwd_new(0);
	eng_kv *kv = skv_open(id, f);

	prefill(f, kv, N_CTX, 1);
	a = question(f, kv);
	eng_kv_close(kv);
	store_close();
	ck_assert_int_eq(ms_open(dir, NULL, &g_ms, err, sizeof err), 0);
	kv = skv_open(id, f);
	b = question(f, kv);
	ck_assert_msg(memcmp(a, b, n_vocab * sizeof(float)) == 0,
	    "q8 session answers differently after a restart");
	double maxd = 0;
	for (uint32_t i = 0; i < n_vocab; i++)
		if (fabs(a[i] - ref[i]) > maxd)
			maxd = fabs(a[i] - ref[i]);
	fprintf(stderr, "q8 vs f16: max |logit diff| %.3f\n", maxd);
	ck_assert(maxd < 2.0);
	free(a);
	free(b);
	eng_kv_close(kv);
	eng_fwd_close(f);
	store_close();
	free(ref);
	rm_rf(dir);
	free(dir);
}
END_TEST

/* Every global layer's summary rows (kv's summary op), one after
 * another, in a malloc'd buffer of *len bytes. */
static uint8_t *summaries_copy(eng_kv *kv, size_t *len)
{
	size_t row = ENG_KV_SUM_ROW(kv->head_dim_k) * 2;
	uint8_t *buf = NULL;

	*len = 0;
	for (uint32_t il = 0; il < kv->n_layer; il++) {
		eng_kv_runs su;
		if (kv->ops->summary(kv, il, 0, &su))
			continue;
		buf = realloc(buf, *len + su.n * row);
		for (uint32_t b = 0; b < su.n; b++, *len += row)
			memcpy(buf + *len, eng_kv_sum_at(&su, b), row);
	}
	ck_assert_uint_gt(*len, 0);
	return buf;
}

/* An overlay closed unsaved leaves its stored blocks' summaries and
 * codes to the next open of the session, the same as a load from LMDB;
 * once the stored KV changes, even to as many tokens, the next open
 * reads LMDB again (the last block's key differs). */
START_TEST(kept_until_changed)
{
	char *dir = store_dir();
	int64_t id = session_new(dir, MS_MODE_F16);
	eng_fwd *f = fwd_new(0);
	eng_kv *kv = skv_open(id, f);
	uint8_t *a, *b, *c;
	size_t na, nb, nc;

	prefill(f, kv, N_CTX, 1);
	eng_kv_close(kv);		/* saved: leaves nothing */
	kv = skv_open(id, f);
	a = summaries_copy(kv, &na);
	expect_codes(kv);		/* read from LMDB */
	free(question(f, kv));
	eng_kv_close(kv);
	kv = skv_open(id, f);		/* takes what that one left */
	b = summaries_copy(kv, &nb);
	ck_assert(na == nb && !memcmp(a, b, na));
	expect_codes(kv);
	eng_kv_close(kv);
	free(b);

	/* The tokens after 512 changed: the same length, other KV. */
	int32_t *was = toks, *alt = malloc((N_CTX + N_Q) * sizeof *alt);
	memcpy(alt, toks, (N_CTX + N_Q) * sizeof *alt);
	for (uint32_t i = 600; i < N_CTX; i++)
		alt[i] = toks[N_CTX - 1 - (i - 600)];
	uint64_t back = 0;
	ck_assert_int_eq(ms_session_rewind(g_ms, id, 600, &back), 0);
	kv = skv_open(id, f);
	ck_assert_uint_lt(eng_kv_length(kv), 600);
	ck_assert_uint_eq(eng_kv_length(kv), back);
	toks = alt;
	prefill(f, kv, N_CTX, 1);
	toks = was;
	eng_kv_close(kv);
	kv = skv_open(id, f);
	b = summaries_copy(kv, &nb);
	expect_codes(kv);
	eng_kv_close(kv);
	ed_skv_forget();
	kv = skv_open(id, f);		/* from LMDB for sure */
	c = summaries_copy(kv, &nc);
	eng_kv_close(kv);
	ck_assert(nb == nc && !memcmp(b, c, nb));
	ck_assert(na == nb && memcmp(a, b, na));	/* they did change */
	free(a);
	free(b);
	free(c);
	free(alt);
	eng_fwd_close(f);
	store_close();
	rm_rf(dir);
	free(dir);
}
END_TEST

/* With a summary pack (written when a prefill ends) the stored blocks'
 * codes and summary rows are read in place, the pend blocks' made: the
 * same bits either way; in place again for an open that takes the kept
 * slot, and after a save ended the read transaction.  Without a pack
 * they are copied. */
START_TEST(codes_in_place)
{
	char *dir = store_dir();
	int64_t id = session_new(dir, MS_MODE_F16);
	eng_fwd *f = fwd_new(0);
	eng_kv *kv = skv_open(id, f);
	uint32_t lo = 99, ro = 99, nblk = N_CTX / 64;

	prefill(f, kv, N_CTX, 1);
	eng_kv_close(kv);
	kv = skv_open(id, f);
	ck_assert_uint_eq(expect_codes_at(kv, &lo, &ro), nblk);
	ck_assert_uint_eq(lo, 0);		/* no pack: copied */
	ck_assert_uint_eq(ro, 0);
	eng_kv_close(kv);
	ed_skv_forget();
	ck_assert_int_eq(ms_summary_pack(g_ms, id), 0);
	kv = skv_open(id, f);
	ck_assert_uint_eq(expect_codes_at(kv, &lo, &ro), nblk);
	ck_assert_uint_eq(lo, nblk);
	ck_assert_uint_eq(ro, nblk);
	/* a block more in pend: its codes made, the stored ones in place */
	ck_assert_int_eq(eng_fwd_eval(f, kv, toks, 64, 0, NULL, NULL), 0);
	ck_assert_uint_eq(expect_codes_at(kv, &lo, &ro), nblk + 1);
	ck_assert_uint_eq(lo, nblk);
	ck_assert_uint_eq(ro, nblk);
	eng_kv_close(kv);			/* unsaved: kept */
	kv = skv_open(id, f);
	ck_assert_uint_eq(expect_codes_at(kv, &lo, &ro), nblk);
	ck_assert_uint_eq(lo, nblk);
	ck_assert_uint_eq(ro, nblk);
	/* saved (as --keep saves a turn): the transaction ends, the codes
	 * are found in place again */
	prefill(f, kv, N_CTX + 128, 1);
	ck_assert_uint_eq(expect_codes_at(kv, &lo, &ro), nblk + 2);
	ck_assert_uint_eq(lo, nblk);
	ck_assert_uint_eq(ro, nblk);
	eng_kv_close(kv);
	/* the pack again, of the longer session */
	ck_assert_int_eq(ms_summary_pack(g_ms, id), 0);
	kv = skv_open(id, f);
	ck_assert_uint_eq(expect_codes_at(kv, &lo, &ro), nblk + 2);
	ck_assert_uint_eq(lo, nblk + 2);
	ck_assert_uint_eq(ro, nblk + 2);
	eng_kv_close(kv);
	eng_fwd_close(f);
	store_close();
	rm_rf(dir);
	free(dir);
}
END_TEST

/* The stored session cut under an open cache whose summaries were read
 * in place (nothing in the daemon does this while a question holds the
 * session): once a save has ended the read transaction, the summary op
 * finds the pack gone and fails with ENG_EIO rather than read rows of
 * another layout or session. */
START_TEST(pack_gone_under_cache)
{
	char *dir = store_dir();
	int64_t id = session_new(dir, MS_MODE_F16);
	eng_fwd *f = fwd_new(0);
	eng_kv *kv = skv_open(id, f);
	uint32_t ro = 0, nblk = N_CTX / 64;
	eng_kv_runs su;
	int rc = ENG_EINVAL;

	prefill(f, kv, N_CTX, 1);
	eng_kv_close(kv);
	ed_skv_forget();
	ck_assert_int_eq(ms_summary_pack(g_ms, id), 0);
	kv = skv_open(id, f);
	ck_assert_uint_eq(expect_codes_at(kv, NULL, &ro), nblk);
	ck_assert_uint_eq(ro, nblk);
	prefill(f, kv, N_CTX + 128, 1);		/* the save ends the txn */
	ck_assert_int_eq(ms_session_truncate(g_ms, id, 64), 0);
	for (uint32_t il = 0; il < kv->n_layer && rc == ENG_EINVAL; il++)
		rc = kv->ops->summary(kv, il, 0, &su);
	ck_assert_int_eq(rc, ENG_EIO);
	eng_kv_close(kv);
	ed_skv_forget();
	eng_fwd_close(f);
	store_close();
	rm_rf(dir);
	free(dir);
}
END_TEST

/* Bad input: a session of another geometry, a save without ids. */
START_TEST(bad_input)
{
	char *dir = store_dir(), err[256] = "";
	const char *hex = eng_model_info_get(M)->fingerprint;
	uint8_t fp[16];
	int64_t id;
	eng_kv *kv;
	eng_fwd *f = fwd_new(0);

	session_new(dir, MS_MODE_F16);
	for (int i = 0; i < 16; i++)
		sscanf(hex + 2 * i, "%2hhx", &fp[i]);
	ms_geom g = { .n_layers = 2, .n_kv_heads = 1, .head_dim = 256,
	    .block_tokens = 64, .mode = MS_MODE_F16 };
	ck_assert_int_eq(ms_session_create(g_ms, "other", fp, &g, &id), 0);
	ck_assert_int_eq(ed_skv_open(id, M, 512, &kv, err, sizeof err),
	    MS_EMISMATCH);
	ck_assert_ptr_null(kv);
	ck_assert_msg(strstr(err, "model") != NULL, "message: %s", err);
	ck_assert_int_ne(ed_skv_open(99999, M, 512, &kv, err, sizeof err), 0);
	ms_session_info si;
	ck_assert_int_eq(ms_session_get(g_ms, "s", &si), 0);
	kv = skv_open(si.id, f);
	ck_assert_int_eq(eng_fwd_eval(f, kv, toks, 100, 0, NULL, NULL), 0);
	ck_assert_int_eq(ed_skv_save(kv, NULL, 0, 0, err, sizeof err),
	    MS_EINVAL);
	ck_assert_int_eq(ed_skv_save(kv, toks + 1, 1, 0, err, sizeof err),
	    MS_EINVAL);
	eng_kv_close(kv);
	eng_fwd_close(f);
	store_close();
	rm_rf(dir);
	free(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("skv");
	TCase *tc = tcase_create("model");
	tcase_add_unchecked_fixture(tc, model_setup, model_teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, restart_equals_memory);
	tcase_add_test(tc, resume_same_blocks);
	tcase_add_test(tc, adopt_same_blocks);
	tcase_add_test(tc, adopt_without_window);
	tcase_add_test(tc, sparse_over_store);
	tcase_add_test(tc, q8_restart_same);
	tcase_add_test(tc, kept_until_changed);
	tcase_add_test(tc, codes_in_place);
	tcase_add_test(tc, pack_gone_under_cache);
	tcase_add_test(tc, bad_input);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
