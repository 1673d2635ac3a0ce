/* test_ms_session.c - memstore's prefill-facing session calls:
 * ms_session_commit (blocks and tail in one LMDB transaction, the pop of a
 * partial last block, the `first` rule, all or nothing), ms_session_truncate
 * and ms_session_fork (shared blocks, copied catalog data, independence of
 * the two sessions, recovery of a fork cut in half), ms_session_adopt
 * (a session started from another's prefix and checkpoint) and
 * ms_session_rewind (back to a checkpoint). */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ms_internal.h"
#include "ms_synth.h"

#define L 3
#define H 1
#define D 64
#define B 16
#define TL 5		/* local layers in a tail */
#define NMAX 256	/* tokens of a synthetic document */

static char dir[256];
static const uint8_t FP[16] = "session-test-fp!";

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ms_session_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static ms_store *open_store(void)
{
	ms_store *ms;
	char err[256];
	int rc = ms_open(dir, NULL, &ms, err, sizeof(err));
	ck_assert_msg(rc == 0, "ms_open: %s", err);
	return ms;
}

static const ms_geom G = { L, H, D, B, MS_MODE_Q8 };

static int64_t create(ms_store *ms, const char *name)
{
	int64_t id;
	ck_assert_int_eq(ms_session_create(ms, name, FP, &G, &id), 0);
	return id;
}

static void expect_check(ms_store *ms)
{
	uint64_t problems = 99;
	int rc = ms_check(ms, 1, &problems);
	ck_assert_msg(rc == 0, "check: %s (%llu)", ms_errmsg(ms),
		      (unsigned long long)problems);
	ck_assert_uint_eq(problems, 0);
}

/* A synthetic document: NMAX tokens and their K/V, [L][NMAX][D]. */
struct doc {
	uint32_t tok[NMAX];
	float k[L * NMAX * D], v[L * NMAX * D];
};

static struct doc *doc_new(uint32_t seed)
{
	struct doc *d = malloc(sizeof(*d));
	ck_assert_ptr_nonnull(d);
	for (uint32_t i = 0; i < NMAX; i++)
		d->tok[i] = seed * 100000u + i;
	ms_synth_kv(seed, L * H, NMAX, D, d->k, d->v);
	return d;
}

/* K/V of tokens [first, first + n) cut out as [L][n][D]. */
static float kbuf[L * NMAX * D], vbuf[L * NMAX * D];

static void slice(const struct doc *d, uint64_t first, uint64_t n)
{
	for (uint32_t l = 0; l < L; l++) {
		memcpy(kbuf + (size_t)l * n * D, d->k + ((size_t)l * NMAX + first) * D,
		       (size_t)n * D * sizeof(float));
		memcpy(vbuf + (size_t)l * n * D, d->v + ((size_t)l * NMAX + first) * D,
		       (size_t)n * D * sizeof(float));
	}
}

/* A tail of TL layers (F16) ending at position end. */
struct tail {
	ms_tail t;
	uint32_t tok[NMAX];
	float k[TL * NMAX * D], v[TL * NMAX * D];
};

static void tail_make(struct tail *tl, const struct doc *d, uint64_t end,
		      uint32_t n, uint64_t seed)
{
	ck_assert_uint_le(n, end);
	memcpy(tl->tok, d->tok + end - n, n * sizeof(uint32_t));
	ms_synth_kv(seed, TL, n, D, tl->k, tl->v);
	ms_tail t = { { TL, 1, D, 0, MS_MODE_F16 }, end - n, tl->tok, n,
		      tl->k, tl->v, 0 };
	tl->t = t;
}

static int commit(ms_store *ms, int64_t id, const struct doc *d,
		  uint64_t first, uint64_t n, const struct tail *tl,
		  uint64_t *nb)
{
	slice(d, first, n);
	return ms_session_commit(ms, id, first, d->tok + first, n, kbuf, vbuf,
				 tl ? &tl->t : NULL, nb);
}

/* The stored tail equals tl exactly (F16: the values rounded to f16). */
static void tail_expect(ms_store *ms, int64_t id, const struct tail *tl)
{
	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ms_block b;
	ck_assert_int_eq(ms_tail_get(t, id, &b), 0);
	ck_assert_uint_eq(b.position, tl->t.position);
	ck_assert_uint_eq(b.n_tokens, tl->t.n_tokens);
	ck_assert_uint_eq(b.geom.n_layers, TL);
	ck_assert_uint_eq(b.geom.head_dim, D);
	ck_assert_int_eq(b.geom.mode, MS_MODE_F16);
	ck_assert_mem_eq(b.fingerprint, FP, 16);
	uint32_t *tok = malloc(b.n_tokens * sizeof(uint32_t));
	float *dk = malloc((size_t)b.n_tokens * D * 4);
	float *dv = malloc((size_t)b.n_tokens * D * 4);
	ms_block_tokens(&b, tok);
	ck_assert_mem_eq(tok, tl->tok, b.n_tokens * sizeof(uint32_t));
	size_t n = (size_t)b.n_tokens * D;
	for (uint32_t l = 0; l < TL; l++) {
		ck_assert_int_eq(ms_block_decode(&b, l, 0, dk, dv), 0);
		for (size_t i = 0; i < n; i++) {
			ck_assert(dk[i] == ms_f16_to_f32(ms_f16_from_f32(tl->k[l * n + i])));
			ck_assert(dv[i] == ms_f16_to_f32(ms_f16_from_f32(tl->v[l * n + i])));
		}
	}
	ms_read_end(t);
	free(tok);
	free(dk);
	free(dv);
}

static int has_tail(ms_store *ms, int64_t id)
{
	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ms_block b;
	int rc = ms_tail_get(t, id, &b);
	ms_read_end(t);
	ck_assert(rc == 0 || rc == MS_ENOTFOUND);
	return rc == 0;
}

/* The session holds tokens [0, n) of d, chained block by block. */
static void chain_expect(ms_store *ms, int64_t id, const struct doc *d,
			 uint64_t n)
{
	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ms_session_info h;
	ck_assert_int_eq(ms_session_head(t, id, &h), 0);
	ck_assert_uint_eq(h.n_tokens, n);
	ck_assert_uint_eq(h.n_blocks, (n + B - 1) / B);
	ms_key prev = { { 0 } };
	for (uint64_t i = 0; i < h.n_blocks; i++) {
		ms_block b;
		ck_assert_int_eq(ms_session_block(t, id, i, &b), 0);
		ck_assert_uint_eq(b.position, i * B);
		ck_assert_uint_eq(b.n_tokens, n - i * B < B ? n - i * B : B);
		ck_assert_mem_eq(b.parent.b, prev.b, 16);
		uint32_t tok[B];
		ms_block_tokens(&b, tok);
		ck_assert_mem_eq(tok, d->tok + i * B, b.n_tokens * sizeof(uint32_t));
		prev = b.key;
	}
	ck_assert_mem_eq(h.head.b, prev.b, 16);
	ck_assert_int_eq(ms_session_block(t, id, h.n_blocks, &(ms_block){ 0 }),
			 MS_ENOTFOUND);
	ms_read_end(t);
	ms_session_info row;
	char name[129];
	/* The catalog's advisory count follows (ms_check compares it too). */
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(ms->db, "SELECT name, n_tokens FROM "
					    "sessions WHERE id = ?", -1, &st,
					    NULL), 0);
	sqlite3_bind_int64(st, 1, id);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	snprintf(name, sizeof(name), "%s", sqlite3_column_text(st, 0));
	ck_assert_uint_eq((uint64_t)sqlite3_column_int64(st, 1), n);
	sqlite3_finalize(st);
	ck_assert_int_eq(ms_session_get(ms, name, &row), 0);
	ck_assert_uint_eq(row.n_tokens, n);
}

/* Everything a failed call must leave as it was. */
struct snap {
	ms_stats st;
	ms_session_info h;
	uint8_t *tail;
	size_t tail_len;
};

static void snap_take(ms_store *ms, int64_t id, struct snap *s)
{
	memset(s, 0, sizeof(*s));
	ck_assert_int_eq(ms_stats_get(ms, &s->st), 0);
	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_session_head(t, id, &s->h), 0);
	ms_block b;
	if (ms_tail_get(t, id, &b) == 0) {
		s->tail = malloc(b.len);
		memcpy(s->tail, b.rec, b.len);
		s->tail_len = b.len;
	}
	ms_read_end(t);
}

static void snap_same(ms_store *ms, int64_t id, struct snap *s)
{
	struct snap now;
	snap_take(ms, id, &now);
	ck_assert_uint_eq(now.st.sessions, s->st.sessions);
	ck_assert_uint_eq(now.st.blocks, s->st.blocks);
	ck_assert_uint_eq(now.st.shared_blocks, s->st.shared_blocks);
	ck_assert_uint_eq(now.st.block_refs, s->st.block_refs);
	ck_assert_uint_eq(now.st.tokens_stored, s->st.tokens_stored);
	ck_assert_uint_eq(now.st.block_bytes, s->st.block_bytes);
	ck_assert_uint_eq(now.st.tails, s->st.tails);
	ck_assert_uint_eq(now.st.tail_bytes, s->st.tail_bytes);
	ck_assert_uint_eq(now.h.n_tokens, s->h.n_tokens);
	ck_assert_uint_eq(now.h.n_blocks, s->h.n_blocks);
	ck_assert_mem_eq(now.h.head.b, s->h.head.b, 16);
	ck_assert_uint_eq(now.tail_len, s->tail_len);
	if (s->tail_len)
		ck_assert_mem_eq(now.tail, s->tail, s->tail_len);
	free(now.tail);
	free(s->tail);
	s->tail = NULL;
}

static ms_key block_key(ms_store *ms, int64_t id, uint64_t index)
{
	ms_txn *t;
	ms_block b;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_session_block(t, id, index, &b), 0);
	ms_key k = b.key;
	ms_read_end(t);
	return k;
}

static int block_exists(ms_store *ms, const ms_key *k)
{
	ms_txn *t;
	ms_block b;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	int rc = ms_block_get(t, k, &b);
	ms_read_end(t);
	ck_assert(rc == 0 || rc == MS_ENOTFOUND);
	return rc == 0;
}

/* ---- commit --------------------------------------------------------- */

START_TEST(test_commit_steps)
{
	ms_store *ms = open_store();
	struct doc *d = doc_new(1);
	int64_t s = create(ms, "s");
	uint64_t nb;
	/* 40 tokens: 16 + 16 + 8. */
	ck_assert_int_eq(commit(ms, s, d, 0, 40, NULL, &nb), 0);
	ck_assert_uint_eq(nb, 3);
	chain_expect(ms, s, d, 40);
	expect_check(ms);
	ms_key partial = block_key(ms, s, 2);

	/* The partial block at 32 is popped and re-sent with 30 more. */
	ck_assert_int_eq(commit(ms, s, d, 32, 8 + 30, NULL, &nb), 0);
	ck_assert_uint_eq(nb, 3);	/* [32,48) [48,64) [64,70) */
	chain_expect(ms, s, d, 70);
	ck_assert(!block_exists(ms, &partial));	/* its only reference went */
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 5);
	ck_assert_uint_eq(st.block_refs, 5);
	ck_assert_uint_eq(st.tokens_stored, 70);
	expect_check(ms);

	/* Completes the partial block exactly: 64 + 16 = 80, all full. */
	ck_assert_int_eq(commit(ms, s, d, 64, 16, NULL, &nb), 0);
	ck_assert_uint_eq(nb, 1);
	chain_expect(ms, s, d, 80);
	expect_check(ms);
	/* Last block full: first == n_tokens, nothing popped. */
	ms_key full = block_key(ms, s, 4);
	ck_assert_int_eq(commit(ms, s, d, 80, 20, NULL, &nb), 0);
	ck_assert_uint_eq(nb, 2);
	chain_expect(ms, s, d, 100);
	ck_assert(block_exists(ms, &full));
	ck_assert_mem_eq(block_key(ms, s, 4).b, full.b, 16);
	expect_check(ms);

	/* The same content committed in other steps (and all at once by
	 * append_n) gives the same keys: every block shared. */
	int64_t r = create(ms, "r"), a = create(ms, "a");
	ck_assert_int_eq(commit(ms, r, d, 0, 50, NULL, NULL), 0);
	ck_assert_int_eq(commit(ms, r, d, 48, 2 + 50, NULL, NULL), 0);
	slice(d, 0, 100);
	ck_assert_int_eq(ms_session_append_n(ms, a, d->tok, 100, kbuf, vbuf,
					     NULL), 0);
	chain_expect(ms, r, d, 100);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 7);
	ck_assert_uint_eq(st.shared_blocks, 7);
	ck_assert_uint_eq(st.block_refs, 21);
	for (uint64_t i = 0; i < 7; i++) {
		ck_assert_mem_eq(block_key(ms, r, i).b, block_key(ms, s, i).b, 16);
		ck_assert_mem_eq(block_key(ms, a, i).b, block_key(ms, s, i).b, 16);
	}
	expect_check(ms);

	/* Popping a partial block another session shares only drops this
	 * session's reference. */
	int64_t p = create(ms, "p"), q = create(ms, "q");
	ck_assert_int_eq(commit(ms, p, d, 0, 40, NULL, NULL), 0);
	ck_assert_int_eq(commit(ms, q, d, 0, 40, NULL, NULL), 0);
	partial = block_key(ms, p, 2);
	ck_assert_int_eq(commit(ms, p, d, 32, 8 + 8, NULL, NULL), 0);
	ck_assert(block_exists(ms, &partial));
	chain_expect(ms, q, d, 40);
	chain_expect(ms, p, d, 48);
	expect_check(ms);
	ck_assert_int_eq(ms_session_delete(ms, "q"), 0);
	ck_assert(!block_exists(ms, &partial));
	expect_check(ms);

	/* Survives a reopen without repairs. */
	ms_close(ms);
	ms = open_store();
	ms_recovery rec;
	ms_recovery_get(ms, &rec);
	ck_assert_uint_eq(rec.counts_repaired + rec.heads_created +
			  rec.orphans_removed + rec.deletes_finished, 0);
	chain_expect(ms, s, d, 100);
	expect_check(ms);
	ms_close(ms);
	free(d);
}
END_TEST

START_TEST(test_commit_first_rule)
{
	ms_store *ms = open_store();
	struct doc *d = doc_new(2);
	static struct tail tl;
	int64_t s = create(ms, "s");
	ck_assert_int_eq(commit(ms, s, d, 1, 10, NULL, NULL), MS_ESTATE);
	ck_assert_int_eq(commit(ms, s, d, 0, 40, NULL, NULL), 0);
	tail_make(&tl, d, 40, 20, 5);
	ck_assert_int_eq(commit(ms, s, d, 32, 8, &tl, NULL), 0);
	struct snap sn;
	snap_take(ms, s, &sn);
	ck_assert_uint_eq(sn.st.tails, 1);
	/* 40 tokens, the last block partial: only 32 is accepted. */
	uint64_t bad[] = { 40, 0, 16, 48, 33, 31 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t nb = 77;
		ck_assert_int_eq(commit(ms, s, d, bad[i], 8, &tl, &nb), MS_ESTATE);
		ck_assert_uint_eq(nb, 77);
		ck_assert_ptr_nonnull(strstr(ms_errmsg(ms), "first must be 32"));
	}
	snap_same(ms, s, &sn);
	/* A tail-only commit needs first == n_tokens (40), not 32. */
	snap_take(ms, s, &sn);
	ck_assert_int_eq(ms_session_commit(ms, s, 32, NULL, 0, NULL, NULL, &tl.t,
					   NULL), MS_ESTATE);
	ck_assert_ptr_nonnull(strstr(ms_errmsg(ms), "first must be 40"));
	snap_same(ms, s, &sn);
	/* Bad arguments change nothing either. */
	snap_take(ms, s, &sn);
	ck_assert_int_eq(ms_session_commit(ms, s, 40, NULL, 0, NULL, NULL, NULL,
					   NULL), MS_EINVAL);
	ck_assert_int_eq(ms_session_commit(ms, s, 32, d->tok, 8, NULL, vbuf, NULL,
					   NULL), MS_EINVAL);
	ck_assert_int_eq(ms_session_commit(ms, s, 32, d->tok,
					   MS_APPEND_MAX_TOKENS + 1, kbuf, vbuf,
					   NULL, NULL), MS_EINVAL);
	ck_assert_int_eq(ms_session_commit(NULL, s, 32, d->tok, 8, kbuf, vbuf,
					   NULL, NULL), MS_EINVAL);
	ms_tail bt = tl.t;
	bt.geom.head_dim = 3;		/* odd */
	ck_assert_int_eq(ms_session_commit(ms, s, 32, d->tok + 32, 8, kbuf, vbuf,
					   &bt, NULL), MS_EINVAL);
	bt = tl.t;
	bt.n_tokens = 0;
	ck_assert_int_eq(ms_session_commit(ms, s, 32, d->tok + 32, 8, kbuf, vbuf,
					   &bt, NULL), MS_EINVAL);
	bt = tl.t;
	bt.k = NULL;
	ck_assert_int_eq(ms_session_commit(ms, s, 32, d->tok + 32, 8, kbuf, vbuf,
					   &bt, NULL), MS_EINVAL);
	ck_assert_int_eq(commit(ms, 999999, d, 0, 8, NULL, NULL), MS_ENOTFOUND);
	snap_same(ms, s, &sn);
	expect_check(ms);
	ms_close(ms);
	free(d);
}
END_TEST

START_TEST(test_commit_tail)
{
	ms_store *ms = open_store();
	struct doc *d = doc_new(3);
	static struct tail t1, t2, t3;
	int64_t s = create(ms, "s");
	tail_make(&t1, d, 50, 50, 11);
	ck_assert_int_eq(commit(ms, s, d, 0, 50, &t1, NULL), 0);
	tail_expect(ms, s, &t1);
	expect_check(ms);
	/* NULL tail: blocks advance, the tail record is left alone. */
	ck_assert_int_eq(commit(ms, s, d, 48, 2 + 30, NULL, NULL), 0);
	chain_expect(ms, s, d, 80);
	tail_expect(ms, s, &t1);
	/* A new tail replaces the old one, of another length. */
	tail_make(&t2, d, 100, 37, 12);
	ck_assert_int_eq(commit(ms, s, d, 80, 20, &t2, NULL), 0);
	tail_expect(ms, s, &t2);
	chain_expect(ms, s, d, 100);
	/* Tail only: n_tokens 0, first == n_tokens; nothing popped although
	 * the last block is partial. */
	tail_make(&t3, d, 100, 100, 13);
	uint64_t nb = 9;
	ck_assert_int_eq(ms_session_commit(ms, s, 100, NULL, 0, NULL, NULL, &t3.t,
					   &nb), 0);
	ck_assert_uint_eq(nb, 0);
	tail_expect(ms, s, &t3);
	chain_expect(ms, s, d, 100);
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.tails, 1);
	expect_check(ms);
	ms_close(ms);
	ms = open_store();
	tail_expect(ms, s, &t3);
	expect_check(ms);
	ms_close(ms);
	free(d);
}
END_TEST

START_TEST(test_commit_all_or_nothing)
{
	ms_store *ms = open_store();
	struct doc *d = doc_new(4);
	static struct tail tl, tbad;
	int64_t s = create(ms, "s");
	tail_make(&tl, d, 40, 16, 21);
	ck_assert_int_eq(commit(ms, s, d, 0, 40, &tl, NULL), 0);
	ms_key partial = block_key(ms, s, 2);
	struct snap sn;

	/* A NaN in the K of the 3rd new block (layer 1): the pop of the
	 * partial block, the blocks before the bad one and the tail all
	 * roll back. */
	snap_take(ms, s, &sn);
	slice(d, 32, 60);
	kbuf[((size_t)1 * 60 + 40) * D + 5] = NAN;
	tail_make(&tbad, d, 92, 20, 22);
	ck_assert_int_eq(ms_session_commit(ms, s, 32, d->tok + 32, 60, kbuf, vbuf,
					   &tbad.t, NULL), MS_ERANGE);
	snap_same(ms, s, &sn);
	ck_assert(block_exists(ms, &partial));
	chain_expect(ms, s, d, 40);
	tail_expect(ms, s, &tl);

	/* Good blocks, a tail out of the f16 range: nothing either. */
	snap_take(ms, s, &sn);
	tbad.v[7] = 1e6f;
	ck_assert_int_eq(commit(ms, s, d, 32, 60, &tbad, NULL), MS_ERANGE);
	snap_same(ms, s, &sn);
	tbad.v[7] = INFINITY;
	ck_assert_int_eq(ms_session_commit(ms, s, 40, NULL, 0, NULL, NULL,
					   &tbad.t, NULL), MS_ERANGE);
	tail_expect(ms, s, &tl);
	expect_check(ms);

	/* And then the same commit, fixed, goes through. */
	tail_make(&tbad, d, 92, 20, 22);
	ck_assert_int_eq(commit(ms, s, d, 32, 60, &tbad, NULL), 0);
	chain_expect(ms, s, d, 92);
	tail_expect(ms, s, &tbad);
	expect_check(ms);
	ms_close(ms);
	free(d);
}
END_TEST

/* ---- truncate ------------------------------------------------------- */

START_TEST(test_truncate)
{
	ms_store *ms = open_store();
	struct doc *d = doc_new(5);
	static struct tail tl;
	int64_t s = create(ms, "s"), o = create(ms, "o");
	tail_make(&tl, d, 100, 30, 31);
	ck_assert_int_eq(commit(ms, s, d, 0, 100, &tl, NULL), 0);	/* 6 + 4 */
	ck_assert_int_eq(commit(ms, o, d, 0, 48, NULL, NULL), 0);	/* shares 3 */
	struct snap sn;

	/* At or beyond the end: nothing changes, the tail stays. */
	snap_take(ms, s, &sn);
	ck_assert_int_eq(ms_session_truncate(ms, s, 100), 0);
	ck_assert_int_eq(ms_session_truncate(ms, s, 1000), 0);
	ck_assert_int_eq(ms_session_truncate(ms, s, UINT64_MAX), 0);
	snap_same(ms, s, &sn);
	tail_expect(ms, s, &tl);

	/* Inside the partial last block: it goes, and the tail. */
	ck_assert_int_eq(ms_session_truncate(ms, s, 99), 0);
	chain_expect(ms, s, d, 96);
	ck_assert(!has_tail(ms, s));
	expect_check(ms);

	/* In the middle of block 4 [64, 80): 4 blocks stay. */
	ms_key k4 = block_key(ms, s, 4), k5 = block_key(ms, s, 5);
	ck_assert_int_eq(ms_session_truncate(ms, s, 70), 0);
	chain_expect(ms, s, d, 64);
	ck_assert(!block_exists(ms, &k4));
	ck_assert(!block_exists(ms, &k5));
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 4);
	ck_assert_uint_eq(st.tails, 0);
	expect_check(ms);

	/* At a boundary: block 2 [32, 48) goes; o still holds it. */
	ms_key k2 = block_key(ms, s, 2);
	ck_assert_int_eq(ms_session_truncate(ms, s, 32), 0);
	chain_expect(ms, s, d, 32);
	ck_assert(block_exists(ms, &k2));
	chain_expect(ms, o, d, 48);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 3);
	ck_assert_uint_eq(st.shared_blocks, 2);
	expect_check(ms);

	/* To nothing, then prefill again from 0 (a different document). */
	ck_assert_int_eq(ms_session_truncate(ms, s, 5), 0);
	chain_expect(ms, s, d, 0);
	ck_assert_int_eq(ms_session_truncate(ms, s, 0), 0);
	struct doc *e = doc_new(6);
	ck_assert_int_eq(commit(ms, s, e, 0, 20, NULL, NULL), 0);
	chain_expect(ms, s, e, 20);
	ck_assert_int_eq(ms_session_truncate(ms, 424242, 0), MS_ENOTFOUND);
	ck_assert_int_eq(ms_session_truncate(NULL, s, 0), MS_EINVAL);
	expect_check(ms);
	ms_close(ms);
	free(d);
	free(e);
}
END_TEST

/* ---- fork ----------------------------------------------------------- */

/* Summaries as bytes, for comparing two sessions'. */
struct sums {
	size_t n;
	uint8_t *data;
	size_t len;
};

static int sum_collect(void *arg, const ms_summary *s)
{
	struct sums *c = arg;
	size_t sz = 40 + (size_t)s->n_layers * s->n_kv_heads * 3 * s->head_dim * 2;
	c->data = realloc(c->data, c->len + sz + 16);
	memcpy(c->data + c->len, s->key.b, 16);
	memcpy(c->data + c->len + 16, s->data, sz - 40);
	c->len += sz - 40 + 16;
	c->n++;
	return 0;
}

static void sums_get(ms_store *ms, int64_t id, struct sums *c)
{
	memset(c, 0, sizeof(*c));
	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_summary_scan(t, id, 0, 1, sum_collect, c), 0);
	ms_read_end(t);
}

/* A session with everything: blocks, tail, stream, spans, manifest. */
static void fill(ms_store *ms, int64_t id, const struct doc *d,
		 struct tail *tl)
{
	tail_make(tl, d, 90, 40, 41);
	ck_assert_int_eq(commit(ms, id, d, 0, 90, tl, NULL), 0);
	int32_t ids[90];
	for (int i = 0; i < 90; i++)
		ids[i] = (int32_t)d->tok[i];
	ck_assert_int_eq(ms_stream_append(ms, id, ids, 90), 0);
	ms_document doc = { .size = 10, .mtime = 1 };
	snprintf(doc.path, sizeof(doc.path), "/docs/a.txt");
	snprintf(doc.content_hash, sizeof(doc.content_hash), "abcdef");
	snprintf(doc.kind, sizeof(doc.kind), "text");
	ck_assert_int_eq(ms_document_add(ms, &doc), 0);
	ms_span sp[2] = {
		{ id, 0, 50, doc.id, 1, 10, 0 },
		{ id, 50, 90, doc.id, 11, 20, 2 },
	};
	ck_assert_int_eq(ms_span_append(ms, sp, 2), 0);
	ck_assert_int_eq(ms_manifest_put(ms, id, "manifest!", 9), 0);
}

/* id holds what fill put. */
static void fill_expect(ms_store *ms, int64_t id, const struct doc *d,
			const struct tail *tl, const struct sums *want)
{
	chain_expect(ms, id, d, 90);
	tail_expect(ms, id, tl);
	struct sums s;
	sums_get(ms, id, &s);
	ck_assert_uint_eq(s.n, want->n);
	ck_assert_uint_eq(s.len, want->len);
	ck_assert_mem_eq(s.data, want->data, s.len);
	free(s.data);
	uint64_t n;
	ck_assert_int_eq(ms_stream_length(ms, id, &n), 0);
	ck_assert_uint_eq(n, 90);
	int32_t ids[90];
	size_t got;
	ck_assert_int_eq(ms_stream_read(ms, id, 0, 90, ids, &got), 0);
	ck_assert_uint_eq(got, 90);
	for (int i = 0; i < 90; i++)
		ck_assert_int_eq(ids[i], (int32_t)d->tok[i]);
	uint64_t ns, nd;
	ck_assert_int_eq(ms_span_count(ms, id, &ns, &nd), 0);
	ck_assert_uint_eq(ns, 2);
	ck_assert_uint_eq(nd, 1);
	ms_span sp;
	ck_assert_int_eq(ms_span_lookup(ms, id, 60, &sp), 0);
	ck_assert_int_eq(sp.session_id, id);
	ck_assert_uint_eq(sp.tok_start, 50);
	ck_assert_int_eq(sp.page, 2);
	void *m;
	size_t ml;
	ck_assert_int_eq(ms_manifest_get(ms, id, &m, &ml), 0);
	ck_assert_uint_eq(ml, 9);
	ck_assert_mem_eq(m, "manifest!", 9);
	ms_free(m);
}

START_TEST(test_fork_delete_original)
{
	ms_store *ms = open_store();
	struct doc *d = doc_new(7);
	static struct tail tl;
	int64_t a = create(ms, "a");
	fill(ms, a, d, &tl);
	struct sums want;
	sums_get(ms, a, &want);
	ck_assert_uint_eq(want.n, 6);
	ms_stats before, st;
	ck_assert_int_eq(ms_stats_get(ms, &before), 0);

	int64_t b = 0;
	ck_assert_int_eq(ms_session_fork(ms, "a", "b", &b), 0);
	ck_assert_int_gt(b, a);
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, "b", &info), 0);
	ck_assert_int_eq(info.id, b);
	ck_assert_uint_eq(info.n_tokens, 90);
	ck_assert_mem_eq(info.fingerprint, FP, 16);
	ck_assert_uint_eq(info.geom.block_tokens, B);
	ck_assert_int_eq(info.geom.mode, MS_MODE_Q8);
	/* Shared by reference: no new block, every one referenced twice. */
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, before.blocks);
	ck_assert_uint_eq(st.block_bytes, before.block_bytes);
	ck_assert_uint_eq(st.shared_blocks, 6);
	ck_assert_uint_eq(st.block_refs, 12);
	ck_assert_uint_eq(st.tails, 2);
	for (uint64_t i = 0; i < 6; i++)
		ck_assert_mem_eq(block_key(ms, a, i).b, block_key(ms, b, i).b, 16);
	fill_expect(ms, b, d, &tl, &want);
	expect_check(ms);

	ck_assert_int_eq(ms_session_delete(ms, "a"), 0);
	fill_expect(ms, b, d, &tl, &want);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, before.blocks);
	ck_assert_uint_eq(st.shared_blocks, 0);
	ck_assert_uint_eq(st.tails, 1);
	expect_check(ms);
	uint64_t freed = 9;
	ck_assert_int_eq(ms_gc(ms, &freed), 0);
	ck_assert_uint_eq(freed, 0);
	/* The fork goes on: its partial block is popped and re-sent. */
	ck_assert_int_eq(commit(ms, b, d, 80, 10 + 40, NULL, NULL), 0);
	chain_expect(ms, b, d, 130);
	expect_check(ms);
	ms_close(ms);
	ms = open_store();
	ms_recovery rec;
	ms_recovery_get(ms, &rec);
	ck_assert_uint_eq(rec.counts_repaired + rec.heads_created +
			  rec.orphans_removed + rec.deletes_finished, 0);
	chain_expect(ms, b, d, 130);
	expect_check(ms);
	ms_close(ms);
	free(want.data);
	free(d);
}
END_TEST

START_TEST(test_fork_delete_fork)
{
	ms_store *ms = open_store();
	struct doc *d = doc_new(8);
	static struct tail tl, tb;
	int64_t a = create(ms, "a");
	fill(ms, a, d, &tl);
	struct sums want;
	sums_get(ms, a, &want);
	ms_stats before, st;
	ck_assert_int_eq(ms_stats_get(ms, &before), 0);

	int64_t b;
	ck_assert_int_eq(ms_session_fork(ms, "a", "b", &b), 0);
	/* The fork diverges: new blocks, a new tail, a truncate, another
	 * stream; none of it reaches a. */
	tail_make(&tb, d, 150, 20, 42);
	ck_assert_int_eq(commit(ms, b, d, 80, 10 + 60, &tb, NULL), 0);
	chain_expect(ms, b, d, 150);
	tail_expect(ms, b, &tb);
	ck_assert_int_eq(ms_session_truncate(ms, b, 40), 0);
	chain_expect(ms, b, d, 32);
	ck_assert_int_eq(commit(ms, b, d, 32, 100, NULL, NULL), 0);
	int32_t x = 5;
	ck_assert_int_eq(ms_stream_append(ms, b, &x, 1), 0);
	ck_assert_int_eq(ms_manifest_put(ms, b, "other", 5), 0);
	ck_assert_int_eq(ms_span_truncate(ms, b, 10), 0);
	fill_expect(ms, a, d, &tl, &want);
	expect_check(ms);

	ck_assert_int_eq(ms_session_delete(ms, "b"), 0);
	fill_expect(ms, a, d, &tl, &want);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.sessions, before.sessions);
	ck_assert_uint_eq(st.blocks, before.blocks);
	ck_assert_uint_eq(st.block_refs, before.block_refs);
	ck_assert_uint_eq(st.block_bytes, before.block_bytes);
	ck_assert_uint_eq(st.shared_blocks, 0);
	ck_assert_uint_eq(st.tails, 1);
	uint64_t freed = 9;
	ck_assert_int_eq(ms_gc(ms, &freed), 0);
	ck_assert_uint_eq(freed, 0);
	expect_check(ms);
	/* Forks of forks, and of an empty session. */
	int64_t c, e, f;
	ck_assert_int_eq(ms_session_fork(ms, "a", "c", &c), 0);
	ck_assert_int_eq(ms_session_fork(ms, "c", "c2", NULL), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.block_refs, 3 * before.block_refs);
	e = create(ms, "empty");
	ck_assert_int_eq(ms_session_fork(ms, "empty", "empty2", &f), 0);
	chain_expect(ms, f, d, 0);
	ck_assert(!has_tail(ms, f));
	ck_assert_int_ne(e, f);
	expect_check(ms);
	ck_assert_int_eq(ms_session_delete(ms, "a"), 0);
	ck_assert_int_eq(ms_session_delete(ms, "c"), 0);
	ck_assert_int_eq(ms_session_get(ms, "c2", &(ms_session_info){ 0 }), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, before.blocks);
	ck_assert_uint_eq(st.block_refs, before.block_refs);
	ck_assert_int_eq(ms_session_delete(ms, "c2"), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 0);
	ck_assert_uint_eq(st.tails, 0);
	expect_check(ms);
	ms_close(ms);
	free(want.data);
	free(d);
}
END_TEST

START_TEST(test_fork_errors)
{
	ms_store *ms = open_store();
	struct doc *d = doc_new(9);
	int64_t a = create(ms, "a");
	create(ms, "taken");
	ck_assert_int_eq(commit(ms, a, d, 0, 20, NULL, NULL), 0);
	ms_stats before, st;
	ck_assert_int_eq(ms_stats_get(ms, &before), 0);
	int64_t id = 1234;
	ck_assert_int_eq(ms_session_fork(ms, "a", "taken", &id), MS_EEXIST);
	ck_assert_int_eq(ms_session_fork(ms, "a", "a", &id), MS_EEXIST);
	ck_assert_int_eq(ms_session_fork(ms, "missing", "new", &id), MS_ENOTFOUND);
	ck_assert_int_eq(ms_session_fork(ms, "a", ".hidden", &id), MS_ENAME);
	ck_assert_int_eq(ms_session_fork(ms, "a", "../x", &id), MS_ENAME);
	ck_assert_int_eq(ms_session_fork(ms, "a", "", &id), MS_ENAME);
	ck_assert_int_eq(ms_session_fork(ms, "a", NULL, &id), MS_ENAME);
	ck_assert_int_eq(ms_session_fork(ms, "a/b", "new", &id), MS_ENAME);
	ck_assert_int_eq(ms_session_fork(NULL, "a", "new", &id), MS_EINVAL);
	ck_assert_int_eq(id, 1234);
	ms_session_info *list;
	size_t n;
	ck_assert_int_eq(ms_session_list(ms, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ms_free(list);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.sessions, before.sessions);
	ck_assert_uint_eq(st.block_refs, before.block_refs);
	/* No session of a catalog-only fork leaked either. */
	ck_assert_int_eq(ms_session_get(ms, "new", &(ms_session_info){ 0 }),
			 MS_ENOTFOUND);
	expect_check(ms);
	ms_close(ms);
	free(d);
}
END_TEST

/* A crash between the fork's SQLite and LMDB transactions leaves a row
 * (with stream, spans, manifest) and no head: recovery makes it an empty
 * session, consistent with the store. */
/* ---- adopt ---------------------------------------------------------- */

static int64_t create_g(ms_store *ms, const char *name, const ms_geom *g)
{
	int64_t id;
	ck_assert_int_eq(ms_session_create(ms, name, FP, g, &id), 0);
	return id;
}

/* One stretch: the positions taken. */
static uint64_t adopt1(ms_store *ms, int64_t id, const uint32_t *tok,
		       uint64_t n)
{
	uint64_t got = 12345;
	int rc = ms_session_adopt(ms, id, tok, n, &got);
	ck_assert_msg(rc == 0, "adopt: %s", ms_errmsg(ms));
	return got;
}

/* Stretch after stretch, as engramd does: the positions taken in all. */
static uint64_t adopt(ms_store *ms, int64_t id, const uint32_t *tok,
		      uint64_t n)
{
	uint64_t got, all = 0;
	while ((got = adopt1(ms, id, tok, n)))
		all += got;
	return all;
}

static void sums_same(ms_store *ms, int64_t id, const struct sums *want,
		      size_t n)
{
	struct sums s;
	sums_get(ms, id, &s);
	ck_assert_uint_eq(s.n, n);
	ck_assert_uint_le(s.len, want->len);
	ck_assert_mem_eq(s.data, want->data, s.len);
	free(s.data);
}

/* A session starts from another's stored prefix and its checkpoint, with
 * the same blocks, tail and summaries (copied while the source lives,
 * made again from f16 blocks after); a prefix without a checkpoint at its
 * end is not adopted; checkpoints go with their blocks. */
START_TEST(test_adopt)
{
	static const ms_geom G16 = { L, H, D, B, MS_MODE_F16 };
	ms_store *ms = open_store();
	struct doc *d = doc_new(9);
	static struct tail t64, t90, tx;
	/* as engramd gives them: values that f16 holds exactly */
	for (size_t i = 0; i < (size_t)L * NMAX * D; i++) {
		d->k[i] = ms_f16_to_f32(ms_f16_from_f32(d->k[i]));
		d->v[i] = ms_f16_to_f32(ms_f16_from_f32(d->v[i]));
	}
	int64_t a = create_g(ms, "a", &G16);
	ms_stats st;

	tail_make(&t64, d, 64, 40, 64);
	tail_make(&t90, d, 90, 40, 90);
	t64.t.checkpoint = t90.t.checkpoint = 1;
	/* a checkpoint must end where the session does */
	tail_make(&tx, d, 60, 40, 60);
	tx.t.checkpoint = 1;
	ck_assert_int_eq(commit(ms, a, d, 0, 64, &tx, NULL), MS_EINVAL);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks + st.checkpoints + st.tails, 0);
	ck_assert_int_eq(commit(ms, a, d, 0, 64, &t64, NULL), 0);
	ck_assert_int_eq(commit(ms, a, d, 64, 26, &t90, NULL), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.checkpoints, 2);
	struct sums want;
	sums_get(ms, a, &want);
	ck_assert_uint_eq(want.n, 6);

	/* the whole context, one checkpoint's stretch per call: to 64 (its
	 * tail then the checkpoint at 64, the session whole), then to 90 */
	int64_t b = create_g(ms, "b", &G16);
	ck_assert_uint_eq(adopt1(ms, b, d->tok, 90), 64);
	chain_expect(ms, b, d, 64);
	tail_expect(ms, b, &t64);
	expect_check(ms);
	ck_assert_uint_eq(adopt1(ms, b, d->tok, 90), 26);
	chain_expect(ms, b, d, 90);
	tail_expect(ms, b, &t90);
	sums_same(ms, b, &want, 6);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 6);
	ck_assert_uint_eq(st.block_refs, 12);
	expect_check(ms);
	/* nothing more: a partial last block ends the session's blocks, and
	 * a session as long as its context has nothing to take */
	ck_assert_uint_eq(adopt1(ms, b, d->tok, 90), 0);
	ck_assert_uint_eq(adopt1(ms, b, d->tok, 200), 0);
	chain_expect(ms, b, d, 90);
	ck_assert_int_eq(ms_session_adopt(ms, 999, d->tok, 90, NULL),
			 MS_ENOTFOUND);
	ck_assert_int_eq(ms_session_adopt(ms, b, NULL, 90, NULL), MS_EINVAL);

	/* longer, shorter or different after 64: the checkpoint at 64 */
	uint32_t tok[NMAX];
	memcpy(tok, d->tok, sizeof(tok));
	int64_t c = create_g(ms, "c", &G16);
	ck_assert_uint_eq(adopt(ms, c, tok, 80), 64);
	chain_expect(ms, c, d, 64);
	tail_expect(ms, c, &t64);
	int64_t c2 = create_g(ms, "c2", &G16);
	tok[70]++;
	ck_assert_uint_eq(adopt(ms, c2, tok, 90), 64);
	/* a's partial last block is no prefix of a longer context */
	int64_t c3 = create_g(ms, "c3", &G16);
	ck_assert_uint_eq(adopt(ms, c3, d->tok, 200), 64);
	/* nothing before the first checkpoint, or a changed first token */
	int64_t e0 = create_g(ms, "e0", &G16);
	ck_assert_uint_eq(adopt(ms, e0, d->tok, 63), 0);
	tok[0]++;
	ck_assert_uint_eq(adopt(ms, e0, tok, 90), 0);
	ck_assert_int_eq(ms_session_adopt(ms, e0, d->tok, 0, NULL), 0);
	chain_expect(ms, e0, d, 0);
	ck_assert(!has_tail(ms, e0));
	expect_check(ms);

	/* a session that holds its first 64 positions (whichever way)
	 * takes the rest; one whose blocks are not a prefix of the context
	 * is refused and left as it was */
	int64_t g = create_g(ms, "g", &G16);
	ck_assert_int_eq(commit(ms, g, d, 0, 64, NULL, NULL), 0);
	ck_assert_uint_eq(adopt(ms, g, d->tok, 90), 26);
	chain_expect(ms, g, d, 90);
	tail_expect(ms, g, &t90);
	int64_t g2 = create_g(ms, "g2", &G16);
	ck_assert_int_eq(commit(ms, g2, d, 0, 64, NULL, NULL), 0);
	memcpy(tok, d->tok, sizeof(tok));
	tok[10]++;
	ck_assert_int_eq(ms_session_adopt(ms, g2, tok, 90, NULL),
			 MS_EMISMATCH);
	chain_expect(ms, g2, d, 64);
	expect_check(ms);

	/* the source gone: summaries made again from the f16 blocks */
	ck_assert_int_eq(ms_session_delete(ms, "a"), 0);
	int64_t e = create_g(ms, "e", &G16);
	ck_assert_uint_eq(adopt(ms, e, d->tok, 90), 90);
	sums_same(ms, e, &want, 6);
	tail_expect(ms, e, &t90);
	expect_check(ms);

	/* every session gone: blocks and checkpoints with them */
	const char *names[] = { "b", "c", "c2", "c3", "e0", "e", "g", "g2" };
	for (size_t i = 0; i < 8; i++)
		ck_assert_int_eq(ms_session_delete(ms, names[i]), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 0);
	ck_assert_uint_eq(st.checkpoints, 0);
	int64_t f = create_g(ms, "f", &G16);
	ck_assert_uint_eq(adopt(ms, f, d->tok, 90), 0);
	expect_check(ms);
	free(want.data);
	free(d);
	ms_close(ms);
}
END_TEST

/* Rewound to the last checkpoint at or below a limit: the blocks up to
 * it and the checkpoint as the tail; without one, emptied; at or past
 * the end, unchanged. */
START_TEST(test_rewind)
{
	static const ms_geom G16 = { L, H, D, B, MS_MODE_F16 };
	ms_store *ms = open_store();
	struct doc *d = doc_new(11);
	static struct tail t32, t64, t90;
	int64_t a = create_g(ms, "a", &G16), b;
	uint64_t n = 0;

	tail_make(&t32, d, 32, 30, 32);
	tail_make(&t64, d, 64, 40, 64);
	tail_make(&t90, d, 90, 40, 90);
	t32.t.checkpoint = t64.t.checkpoint = t90.t.checkpoint = 1;
	ck_assert_int_eq(commit(ms, a, d, 0, 32, &t32, NULL), 0);
	ck_assert_int_eq(commit(ms, a, d, 32, 32, &t64, NULL), 0);
	ck_assert_int_eq(commit(ms, a, d, 64, 26, &t90, NULL), 0);
	ck_assert_int_eq(ms_session_fork(ms, "a", "b", &b), 0);
	ck_assert_int_eq(ms_session_rewind(ms, a, 90, &n), 0);
	ck_assert_uint_eq(n, 90);
	tail_expect(ms, a, &t90);
	ck_assert_int_eq(ms_session_rewind(ms, a, 80, &n), 0);
	ck_assert_uint_eq(n, 64);
	chain_expect(ms, a, d, 64);
	tail_expect(ms, a, &t64);
	/* 63: the checkpoint at 64 is past it */
	ck_assert_int_eq(ms_session_rewind(ms, a, 63, &n), 0);
	ck_assert_uint_eq(n, 32);
	chain_expect(ms, a, d, 32);
	tail_expect(ms, a, &t32);
	ck_assert_int_eq(ms_session_rewind(ms, a, 31, &n), 0);
	ck_assert_uint_eq(n, 0);
	chain_expect(ms, a, d, 0);
	ck_assert(!has_tail(ms, a));
	/* the fork kept everything; its later checkpoints too */
	chain_expect(ms, b, d, 90);
	ck_assert_int_eq(ms_session_rewind(ms, b, 70, &n), 0);
	ck_assert_uint_eq(n, 64);
	tail_expect(ms, b, &t64);
	ck_assert_int_eq(ms_session_rewind(ms, 999, 10, NULL), MS_ENOTFOUND);
	ck_assert_int_eq(ms_session_rewind(NULL, b, 10, NULL), MS_EINVAL);
	expect_check(ms);
	free(d);
	ms_close(ms);
}
END_TEST

/* A session drops the checkpoints it wrote, not another's. */
START_TEST(test_checkpoint_drop)
{
	static const ms_geom G16 = { L, H, D, B, MS_MODE_F16 };
	ms_store *ms = open_store();
	struct doc *d = doc_new(12);
	static struct tail t32, t64;
	int64_t a = create_g(ms, "a", &G16), b;
	ms_stats st;
	int dropped = -1;

	tail_make(&t32, d, 32, 30, 32);
	tail_make(&t64, d, 64, 40, 64);
	t32.t.checkpoint = t64.t.checkpoint = 1;
	ck_assert_int_eq(commit(ms, a, d, 0, 32, &t32, NULL), 0);
	ck_assert_int_eq(commit(ms, a, d, 32, 32, &t64, NULL), 0);
	ck_assert_int_eq(ms_session_fork(ms, "a", "b", &b), 0);
	ck_assert_int_eq(ms_checkpoint_drop(ms, b, 32, &dropped), 0);
	ck_assert_int_eq(dropped, 0);		/* a wrote it */
	ck_assert_int_eq(ms_checkpoint_drop(ms, a, 40, &dropped), 0);
	ck_assert_int_eq(dropped, 0);		/* not a block's end */
	ck_assert_int_eq(ms_checkpoint_drop(ms, a, 96, &dropped), 0);
	ck_assert_int_eq(dropped, 0);		/* past the end */
	ck_assert_int_eq(ms_checkpoint_drop(ms, a, 32, &dropped), 0);
	ck_assert_int_eq(dropped, 1);
	ck_assert_int_eq(ms_checkpoint_drop(ms, a, 32, &dropped), 0);
	ck_assert_int_eq(dropped, 0);		/* gone already */
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.checkpoints, 1);
	/* the rest of the session is untouched: it still rewinds to 64 */
	uint64_t n = 0;
	ck_assert_int_eq(ms_session_rewind(ms, a, 63, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(ms_session_rewind(ms, b, 70, &n), 0);
	ck_assert_uint_eq(n, 64);
	tail_expect(ms, b, &t64);
	ck_assert_int_eq(ms_checkpoint_drop(ms, 999, 32, NULL), MS_ENOTFOUND);
	expect_check(ms);
	free(d);
	ms_close(ms);
}
END_TEST

/* A checkpoint whose block is gone: fsck names it, gc frees it. */
START_TEST(test_adopt_orphan_checkpoint)
{
	ms_store *ms = open_store();
	MDB_txn *txn;
	uint8_t key[16] = "no-such-block!!";
	uint8_t rec[200] = { 0 };
	struct ms__ckpt_hdr ch = { MS__CKPT_MAGIC, MS_FORMAT_VERSION, 1 };
	memcpy(rec, &ch, sizeof(ch));
	ck_assert_int_eq(mdb_txn_begin(ms->env, NULL, 0, &txn), 0);
	MDB_val k = { 16, key }, v = { sizeof(rec), rec };
	ck_assert_int_eq(mdb_put(txn, ms->db_ckpts, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	uint64_t problems = 0, freed = 0;
	ck_assert_int_eq(ms_check(ms, 0, &problems), MS_ECHECK);
	ck_assert_uint_eq(problems, 1);
	ck_assert_ptr_nonnull(strstr(ms_errmsg(ms), "checkpoint"));
	ck_assert_int_eq(ms_gc(ms, &freed), 0);
	ck_assert_uint_eq(freed, 1);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

START_TEST(test_fork_crash_between)
{
	ms_store *ms = open_store();
	struct doc *d = doc_new(10);
	static struct tail tl;
	int64_t a = create(ms, "a");
	fill(ms, a, d, &tl);
	ms_stats before;
	ck_assert_int_eq(ms_stats_get(ms, &before), 0);
	int64_t b;
	ck_assert_int_eq(ms_session_fork(ms, "a", "b", &b), 0);
	/* Undo the LMDB half: the state a kill before its commit leaves. */
	ck_assert_int_eq(ms__session_drop_w(ms, b), 0);
	ms_close(ms);
	ms = open_store();
	ms_recovery rec;
	ms_recovery_get(ms, &rec);
	ck_assert_uint_eq(rec.heads_created, 1);
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, "b", &info), 0);
	ck_assert_uint_eq(info.n_tokens, 0);
	ck_assert(!has_tail(ms, b));
	uint64_t n;
	ck_assert_int_eq(ms_stream_length(ms, b, &n), 0);
	ck_assert_uint_eq(n, 90);
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, before.blocks);
	ck_assert_uint_eq(st.block_refs, before.block_refs);
	expect_check(ms);
	/* It can be prefilled again: the blocks are shared with a. */
	ck_assert_int_eq(commit(ms, b, d, 0, 90, NULL, NULL), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, before.blocks);
	ck_assert_uint_eq(st.shared_blocks, 6);
	expect_check(ms);
	ms_close(ms);
	free(d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ms_session");
	TCase *tc = tcase_create("session");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_commit_steps);
	tcase_add_test(tc, test_commit_first_rule);
	tcase_add_test(tc, test_commit_tail);
	tcase_add_test(tc, test_commit_all_or_nothing);
	tcase_add_test(tc, test_truncate);
	tcase_add_test(tc, test_fork_delete_original);
	tcase_add_test(tc, test_fork_delete_fork);
	tcase_add_test(tc, test_fork_errors);
	tcase_add_test(tc, test_fork_crash_between);
	tcase_add_test(tc, test_adopt);
	tcase_add_test(tc, test_adopt_orphan_checkpoint);
	tcase_add_test(tc, test_rewind);
	tcase_add_test(tc, test_checkpoint_drop);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
