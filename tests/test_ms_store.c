/* test_ms_store.c - memstore blocks in LMDB: append/read/decode, prefix
 * sharing and refcounts, delete, pop, tails, summaries, prefix match,
 * stats, check, gc, compaction, map growth and the disk budget, corrupt
 * blocks, recovery from each crash state of the write order, and trimming
 * the map's pages. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ms_internal.h"
#include "ms_synth.h"

#define L 3
#define H 1
#define D 256
#define B 64

static char dir[256];
static const uint8_t FP[16] = "gemma3-270m-test";

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ms_store_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static ms_store *open_store(const ms_settings *s)
{
	ms_store *ms;
	char err[256];
	int rc = ms_open(dir, s, &ms, err, sizeof(err));
	ck_assert_msg(rc == 0, "ms_open: %s", err);
	return ms;
}

static ms_geom geom(ms_mode m)
{
	ms_geom g = { L, H, D, B, m };
	return g;
}

/* Tokens of "document" doc: token i of it. */
static void tokens(uint32_t doc, uint64_t start, uint32_t n, uint32_t *out)
{
	for (uint32_t i = 0; i < n; i++)
		out[i] = (uint32_t)(doc * 100000u + start + i);
}

/* Appends block idx of a document (K/V synthesized from (doc, idx)). */
static int append(ms_store *ms, int64_t id, uint32_t doc, uint64_t idx,
		  uint32_t n, ms_key *key)
{
	static float k[L * H * B * D], v[L * H * B * D];
	uint32_t tok[B];
	tokens(doc, idx * B, n, tok);
	ms_synth_kv(doc * 1000 + idx, L * H, n, D, k, v);
	return ms_session_append(ms, id, tok, n, k, v, key);
}

/* A new session name of mode m holding blocks 0..n-1 of document doc. */
static int64_t session_of(ms_store *ms, const char *name, ms_mode m,
			  uint32_t doc, int n)
{
	ms_geom g = geom(m);
	int64_t id;
	ck_assert_int_eq(ms_session_create(ms, name, FP, &g, &id), 0);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(append(ms, id, doc, (uint64_t)i, B, NULL), 0);
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

START_TEST(test_append_read)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q8);
	int64_t id;
	ck_assert_int_eq(ms_session_create(ms, "s1", FP, &g, &id), 0);
	ms_key keys[3];
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(append(ms, id, 1, i, B, &keys[i]), 0);
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, "s1", &info), 0);
	ck_assert_uint_eq(info.n_tokens, 3 * B);
	ck_assert_uint_eq(info.n_blocks, 3);
	ck_assert_mem_eq(info.head.b, keys[2].b, 16);

	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ms_block b;
	ck_assert_int_eq(ms_session_block(t, id, 1, &b), 0);
	ck_assert_mem_eq(b.key.b, keys[1].b, 16);
	ck_assert_mem_eq(b.parent.b, keys[0].b, 16);
	ck_assert_uint_eq(b.position, B);
	ck_assert_uint_eq(b.n_tokens, B);
	ck_assert_mem_eq(b.fingerprint, FP, 16);
	uint32_t tok[B], want[B];
	ms_block_tokens(&b, tok);
	tokens(1, B, B, want);
	ck_assert_mem_eq(tok, want, sizeof(tok));
	/* Decoded layer 2 is close to what was appended. */
	static float k[L * B * D], v[L * B * D], dk[B * D], dv[B * D];
	ms_synth_kv(1000 + 1, L, B, D, k, v);
	ck_assert_int_eq(ms_block_decode(&b, 2, 0, dk, dv), 0);
	double err = 0, mag = 0;
	for (int i = 0; i < B * D; i++) {
		err += fabs(dv[i] - v[2 * B * D + i]);
		mag += fabs(v[2 * B * D + i]);
	}
	ck_assert_double_lt(err / mag, 0.02);
	ck_assert_int_eq(ms_session_block(t, id, 3, &b), MS_ENOTFOUND);
	ck_assert_int_eq(ms_block_get(t, &keys[2], &b), 0);
	ms_session_info h;
	ck_assert_int_eq(ms_session_head(t, id, &h), 0);
	ck_assert_uint_eq(h.n_blocks, 3);
	ms_read_end(t);
	expect_check(ms);
	ms_close(ms);

	/* Everything survives a reopen. */
	ms = open_store(NULL);
	ms_recovery rec;
	ms_recovery_get(ms, &rec);
	ck_assert_uint_eq(rec.counts_repaired + rec.heads_created +
			  rec.orphans_removed + rec.deletes_finished, 0);
	ck_assert_int_eq(ms_session_get(ms, "s1", &info), 0);
	ck_assert_uint_eq(info.n_tokens, 3 * B);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

/* One transaction of many blocks gives the same blocks as one call per
 * block: the keys match (so they are shared) and so do the bytes. */
START_TEST(test_append_n)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q8);
	int64_t a, b;
	ck_assert_int_eq(ms_session_create(ms, "many", FP, &g, &a), 0);
	ck_assert_int_eq(ms_session_create(ms, "one", FP, &g, &b), 0);
	enum { N = 5 * B + 10 };
	float *k = malloc((size_t)L * N * D * 4), *v = malloc((size_t)L * N * D * 4);
	float *bk = malloc((size_t)L * B * D * 4), *bv = malloc((size_t)L * B * D * 4);
	uint32_t tok[N];
	tokens(11, 0, N, tok);
	ms_synth_kv(99, L, N, D, k, v);
	uint64_t nb;
	ck_assert_int_eq(ms_session_append_n(ms, a, tok, N, k, v, &nb), 0);
	ck_assert_uint_eq(nb, 6);
	for (uint32_t off = 0; off < N; off += B) {
		uint32_t n = N - off < B ? N - off : B;
		for (uint32_t l = 0; l < L; l++) {
			memcpy(bk + (size_t)l * n * D, k + ((size_t)l * N + off) * D,
			       (size_t)n * D * 4);
			memcpy(bv + (size_t)l * n * D, v + ((size_t)l * N + off) * D,
			       (size_t)n * D * 4);
		}
		ck_assert_int_eq(ms_session_append(ms, b, tok + off, n, bk, bv,
						   NULL), 0);
	}
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 6);
	ck_assert_uint_eq(st.shared_blocks, 6);
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, "many", &info), 0);
	ck_assert_uint_eq(info.n_tokens, N);
	/* The last block is partial: append_n refuses to extend it. */
	ck_assert_int_eq(ms_session_append_n(ms, a, tok, B, k, v, NULL), MS_ESTATE);
	ck_assert_int_eq(ms_session_append_n(ms, a, tok, 0, k, v, NULL), MS_EINVAL);
	ck_assert_int_eq(ms_session_append_n(ms, a, tok, MS_APPEND_MAX_TOKENS + 1,
					     k, v, NULL), MS_EINVAL);
	/* All or nothing: a bad value in the 4th block writes no block. */
	int64_t c;
	ck_assert_int_eq(ms_session_create(ms, "bad", FP, &g, &c), 0);
	k[(size_t)2 * N * D + 3 * B * D + 7] = NAN;	/* layer 2, block 3 */
	ck_assert_int_eq(ms_session_append_n(ms, c, tok, N, k, v, NULL), MS_ERANGE);
	ck_assert_int_eq(ms_session_get(ms, "bad", &info), 0);
	ck_assert_uint_eq(info.n_tokens, 0);
	expect_check(ms);
	free(k);
	free(v);
	free(bk);
	free(bv);
	ms_close(ms);
}
END_TEST

START_TEST(test_bad_arguments)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_F16);
	int64_t id;
	ck_assert_int_eq(ms_session_create(ms, "../x", FP, &g, &id), MS_ENAME);
	g.block_tokens = 0;
	ck_assert_int_eq(ms_session_create(ms, "x", FP, &g, &id), MS_EINVAL);
	g.block_tokens = 5000;
	ck_assert_int_eq(ms_session_create(ms, "x", FP, &g, &id), MS_EINVAL);
	g = geom(MS_MODE_F16);
	ck_assert_int_eq(ms_session_create(ms, "x", FP, &g, &id), 0);
	ck_assert_int_eq(ms_session_create(ms, "x", FP, &g, NULL), MS_EEXIST);
	/* More tokens than B. */
	static float k[L * H * 2 * B * D], v[L * H * 2 * B * D];
	uint32_t tok[2 * B] = { 0 };
	ck_assert_int_eq(ms_session_append(ms, id, tok, B + 1, k, v, NULL),
			 MS_EINVAL);
	ck_assert_int_eq(ms_session_append(ms, id, tok, 0, k, v, NULL), MS_EINVAL);
	ck_assert_int_eq(ms_session_append(ms, 999, tok, 4, k, v, NULL),
			 MS_ENOTFOUND);
	k[5] = NAN;
	ck_assert_int_eq(ms_session_append(ms, id, tok, 4, k, v, NULL), MS_ERANGE);
	k[5] = 0;
	/* A partial block must be popped before appending again. */
	ck_assert_int_eq(ms_session_append(ms, id, tok, 4, k, v, NULL), 0);
	ck_assert_int_eq(ms_session_append(ms, id, tok, 4, k, v, NULL), MS_ESTATE);
	ck_assert_int_eq(ms_session_pop(ms, id), 0);
	ck_assert_int_eq(ms_session_pop(ms, id), MS_ENOTFOUND);
	ck_assert_int_eq(ms_session_get(ms, "nope", &(ms_session_info){ 0 }),
			 MS_ENOTFOUND);
	expect_check(ms);
	ms_close(ms);
	ms_store *bad;
	ck_assert_int_eq(ms_open("", NULL, &bad, NULL, 0), MS_EINVAL);
	ck_assert_ptr_null(bad);
	ck_assert_int_eq(ms_open("/proc/nonexistent/x", NULL, &bad, NULL, 0),
			 MS_EIO);
}
END_TEST

START_TEST(test_sharing_and_delete)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q4);
	int64_t a, b, c;
	ck_assert_int_eq(ms_session_create(ms, "a", FP, &g, &a), 0);
	ck_assert_int_eq(ms_session_create(ms, "b", FP, &g, &b), 0);
	ck_assert_int_eq(ms_session_create(ms, "c", FP, &g, &c), 0);
	/* a and b share 4 blocks, then diverge; c is unrelated. */
	ms_key ka[6], kb[6];
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(append(ms, a, 1, i, B, &ka[i]), 0);
		ck_assert_int_eq(append(ms, b, 1, i, B, &kb[i]), 0);
		ck_assert_mem_eq(ka[i].b, kb[i].b, 16);
	}
	ck_assert_int_eq(append(ms, a, 1, 4, B, &ka[4]), 0);
	ck_assert_int_eq(append(ms, b, 2, 4, B, &kb[4]), 0);
	ck_assert_int_ne(memcmp(ka[4].b, kb[4].b, 16), 0);
	/* Same tokens after a different prefix: a different block. */
	ck_assert_int_eq(append(ms, c, 2, 4, B, NULL), 0);
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.sessions, 3);
	ck_assert_uint_eq(st.blocks, 7);
	ck_assert_uint_eq(st.shared_blocks, 4);
	ck_assert_uint_eq(st.block_refs, 11);
	ck_assert_uint_eq(st.tokens_stored, 7 * B);
	ck_assert_uint_gt(st.bytes_on_disk, 0);
	ck_assert_uint_ge(st.map_size, st.map_used);
	ck_assert_double_eq_tol(st.bytes_per_token,
				(double)ms_block_record_size(&g, B) / B, 1e-9);
	expect_check(ms);

	/* Prefix match finds 5 blocks of a, and a trailing partial miss. */
	ms_txn *t;
	uint32_t tok[5 * B + 10];
	tokens(1, 0, 5 * B + 10, tok);
	uint64_t nb, nt;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_prefix_match(t, FP, tok, 5 * B + 10, B, &nb, &nt), 0);
	ck_assert_uint_eq(nb, 5);
	ck_assert_uint_eq(nt, 5 * B);
	tok[2 * B + 3]++;
	ck_assert_int_eq(ms_prefix_match(t, FP, tok, 5 * B, B, &nb, &nt), 0);
	ck_assert_uint_eq(nb, 2);
	uint8_t fp2[16] = { 1 };
	ck_assert_int_eq(ms_prefix_match(t, fp2, tok, 5 * B, B, &nb, &nt), 0);
	ck_assert_uint_eq(nb, 0);
	ms_read_end(t);

	ck_assert_int_eq(ms_session_delete(ms, "a"), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 6);	/* a's own block 4 is gone */
	ck_assert_uint_eq(st.shared_blocks, 0);
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ms_block blk;
	ck_assert_int_eq(ms_block_get(t, &ka[4], &blk), MS_ENOTFOUND);
	ck_assert_int_eq(ms_block_get(t, &ka[0], &blk), 0);
	ck_assert_int_eq(ms_session_block(t, a, 0, &blk), MS_ENOTFOUND);
	ms_read_end(t);
	expect_check(ms);
	ck_assert_int_eq(ms_session_delete(ms, "b"), 0);
	ck_assert_int_eq(ms_session_delete(ms, "b"), MS_ENOTFOUND);
	ck_assert_int_eq(ms_session_delete(ms, "c"), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 0);
	ck_assert_uint_eq(st.sessions, 0);
	expect_check(ms);
	/* Compaction shrinks the file and keeps the store usable. */
	uint64_t before = st.bytes_on_disk;
	ck_assert_int_eq(ms_compact(ms), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_lt(st.bytes_on_disk, before);
	ck_assert_int_eq(ms_session_create(ms, "d", FP, &g, &a), 0);
	ck_assert_int_eq(append(ms, a, 1, 0, B, NULL), 0);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

START_TEST(test_rename_keeps_blocks)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_F16);
	int64_t id;
	ck_assert_int_eq(ms_session_create(ms, "old", FP, &g, &id), 0);
	ck_assert_int_eq(append(ms, id, 3, 0, B, NULL), 0);
	ck_assert_int_eq(ms_session_rename(ms, "old", "new.name"), 0);
	ck_assert_int_eq(ms_session_rename(ms, "old", "x"), MS_ENOTFOUND);
	ck_assert_int_eq(ms_session_rename(ms, "new.name", ".x"), MS_ENAME);
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, "new.name", &info), 0);
	ck_assert_int_eq(info.id, id);
	ck_assert_uint_eq(info.n_tokens, B);
	ck_assert_int_eq(ms_session_create(ms, "other", FP, &g, NULL), 0);
	ck_assert_int_eq(ms_session_rename(ms, "other", "new.name"), MS_EEXIST);
	ms_session_info *list;
	size_t n;
	ck_assert_int_eq(ms_session_list(ms, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(list[0].name, "new.name");
	ck_assert_uint_eq(list[0].n_tokens, B);
	ck_assert_str_eq(list[1].name, "other");
	ck_assert_int_eq(list[1].geom.head_dim, D);
	ms_free(list);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

struct sumscan {
	uint64_t n;
	const float *k;	/* block 0's keys, [L][B][D] */
	int bounds_ok;
};

/* Whether every key of ks ([l][B][D] floats) lies in the bin its code
 * in s names: [mn + u (mx - mn)/4, mn + (u+1)(mx - mn)/4], mn and mx the
 * summary's (eng_kv_code_block's rule). */
static int codes_bin(const ms_summary *s, const float *ks)
{
	const size_t row = 2 * ((D + 7) / 8), plane = row / 2;
	if (!s->codes)
		return 0;
	for (uint32_t l = 0; l < L; l++)
		for (uint32_t c = 0; c < D; c++) {
			float mn, mx;
			ms_summary_channel(s, l, 0, c, &mn, &mx, NULL);
			double step = (mx - mn) / 4.0;
			for (uint32_t i = 0; i < s->n_tokens; i++) {
				const uint8_t *r = s->codes +
					((size_t)l * s->n_tokens + i) * row;
				int u = (r[c / 8] >> (c % 8) & 1) * 2 +
					(r[plane + c / 8] >> (c % 8) & 1);
				double x = ks[((size_t)l * B + i) * D + c];
				if (x < mn + u * step - 1e-2 * step ||
				    x > mn + (u + 1) * step + 1e-2 * step)
					return 0;
			}
		}
	return 1;
}

static int on_summary(void *arg, const ms_summary *s)
{
	struct sumscan *sc = arg;
	if (s->index != sc->n || s->n_tokens != B || s->head_dim != D)
		return 7;
	sc->bounds_ok &= s->codes != NULL;
	for (uint32_t l = 0; l < L; l++) {
		/* the bulk reader gives what the per-channel one does */
		float vmn[D], vmx[D], vmean[D];
		ms_summary_vectors(s, l, 0, vmn, vmx, vmean);
		for (uint32_t c = 0; c < D; c++) {
			float mn, mx, mean;
			ms_summary_channel(s, l, 0, c, &mn, &mx, &mean);
			sc->bounds_ok &= !memcmp(&mn, &vmn[c], 4) &&
					 !memcmp(&mx, &vmx[c], 4) &&
					 !memcmp(&mean, &vmean[c], 4);
		}
	}
	if (s->index == 0) {
		for (uint32_t l = 0; l < L; l++)
			for (uint32_t c = 0; c < D; c++) {
				float mn, mx, mean;
				ms_summary_channel(s, l, 0, c, &mn, &mx, &mean);
				double sum = 0;
				for (int i = 0; i < B; i++) {
					float x = sc->k[((size_t)l * B + i) * D + c];
					sc->bounds_ok &= x >= mn && x <= mx;
					sum += x;
				}
				sc->bounds_ok &= fabs(sum / B - mean) <=
						 fabs(mean) * 1e-3 + 1e-3;
			}
		sc->bounds_ok &= codes_bin(s, sc->k);
	}
	sc->n++;
	return 0;
}

/* Summaries as a scan hands them out, copied. */
struct sumlist {
	uint64_t n;
	uint64_t index[16], position[16];
	uint8_t data[16][L * 3 * D * 2];
	uint8_t codes[16][L * B * 2 * (D / 8)];
	int has_codes[16];
};

static int on_sumlist(void *arg, const ms_summary *s)
{
	struct sumlist *sl = arg;
	if (sl->n >= 16 || s->n_layers != L || s->n_kv_heads != 1)
		return 9;
	sl->index[sl->n] = s->index;
	sl->position[sl->n] = s->position;
	memcpy(sl->data[sl->n], s->data, sizeof(sl->data[0]));
	sl->has_codes[sl->n] = s->codes != NULL;
	if (s->codes)
		memcpy(sl->codes[sl->n], s->codes, (size_t)L * s->n_tokens *
		       2 * (D / 8));
	sl->n++;
	return 0;
}

static void scan_list(ms_store *ms, int64_t id, uint64_t first,
		      struct sumlist *sl)
{
	ms_txn *t;
	sl->n = 0;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_summary_scan(t, id, first, 1, on_sumlist, sl), 0);
	ms_read_end(t);
}

/* The pack's codes and min/max/mean in place (ms_summary_pack_codes,
 * _vectors): n and nv records' worth, each the scan's of that block (sl,
 * a scan of the session). */
static void expect_pack_codes(ms_store *ms, int64_t id, uint64_t n,
			      uint64_t nv, const struct sumlist *sl)
{
	ms_txn *t;
	const uint8_t *c = (const uint8_t *)"x";
	size_t stride = 9;
	uint64_t np = 99;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_summary_pack_codes(t, id, &c, &stride, &np), 0);
	ck_assert_uint_eq(np, n);
	ck_assert(n ? c != NULL && stride == sizeof(sl->codes[0]) :
		  c == NULL && stride == 0);
	for (uint64_t i = 0; i < n; i++) {
		ck_assert(sl->has_codes[i]);
		ck_assert_msg(!memcmp(c + i * stride, sl->codes[i], stride),
			      "block %llu: codes differ",
			      (unsigned long long)i);
	}
	ck_assert_int_eq(ms_summary_pack_codes(t, id, NULL, &stride, &np),
			 MS_EINVAL);
	ck_assert_int_eq(ms_summary_pack_codes(NULL, id, &c, &stride, &np),
			 MS_EINVAL);
	/* min/max/mean in place likewise (ms_summary_pack_vectors), for
	 * the records' geometry only */
	const uint8_t *d = (const uint8_t *)"x";
	ck_assert_int_eq(ms_summary_pack_vectors(t, id, L, 1, D, &d, &stride,
						 &np), 0);
	ck_assert_uint_eq(np, nv);
	ck_assert(nv ? d != NULL && stride >= sizeof(sl->data[0]) :
		  d == NULL && stride == 0);
	for (uint64_t i = 0; i < nv; i++)
		ck_assert_msg(!memcmp(d + i * stride, sl->data[i],
				      sizeof(sl->data[0])),
			      "block %llu: min/max/mean differ",
			      (unsigned long long)i);
	ck_assert_int_eq(ms_summary_pack_vectors(t, id, L, 1, D + 8, &d,
						 &stride, &np), 0);
	ck_assert(np == 0 && d == NULL);
	ck_assert_int_eq(ms_summary_pack_vectors(t, id, L + 1, 1, D, &d,
						 &stride, &np), 0);
	ck_assert(np == 0 && d == NULL);
	ck_assert_int_eq(ms_summary_pack_vectors(t, id, L, 1, D, NULL,
						 &stride, &np), MS_EINVAL);
	ms_read_end(t);
}

static void expect_same(const struct sumlist *a, const struct sumlist *b,
			uint64_t n)
{
	ck_assert_uint_eq(b->n, n);
	for (uint64_t i = 0; i < n; i++) {
		ck_assert_uint_eq(a->index[i], b->index[i]);
		ck_assert_uint_eq(a->position[i], b->position[i]);
		ck_assert(!memcmp(a->data[i], b->data[i], sizeof(a->data[0])));
		ck_assert_int_eq(a->has_codes[i], 1);
		ck_assert_int_eq(b->has_codes[i], 1);
		ck_assert(!memcmp(a->codes[i], b->codes[i], sizeof(a->codes[0])));
	}
}

/* A pack gives the scan the summaries it gave without one, from any
 * first block; blocks appended later come after it; truncating drops it,
 * as deleting does; fsck and gc know it. */
START_TEST(test_summary_pack)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q8);
	int64_t id;
	ms_stats st;
	static struct sumlist want, got;
	ck_assert_int_eq(ms_session_create(ms, "s", FP, &g, &id), 0);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(append(ms, id, 4, i, B, NULL), 0);
	scan_list(ms, id, 0, &want);
	ck_assert_uint_eq(want.n, 6);
	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_session_block_willneed(t, id, 5), 0);
	ck_assert_int_ne(ms_session_block_willneed(t, id, 6), 0);
	ck_assert_int_ne(ms_session_block_willneed(t, id + 1000, 0), 0);
	ms_read_end(t);
	expect_pack_codes(ms, id, 0, 0, &want);		/* no pack yet */
	ck_assert_int_eq(ms_summary_pack(ms, id), 0);
	expect_pack_codes(ms, id, 6, 6, &want);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.packs, 1);
	scan_list(ms, id, 0, &got);
	expect_same(&want, &got, 6);
	scan_list(ms, id, 4, &got);
	ck_assert_uint_eq(got.n, 2);
	ck_assert_uint_eq(got.index[0], 4);
	ck_assert(!memcmp(got.data[0], want.data[4], sizeof(got.data[0])));
	expect_check(ms);

	/* two more blocks: six from the pack, two from "summaries" */
	for (int i = 6; i < 8; i++)
		ck_assert_int_eq(append(ms, id, 4, i, B, NULL), 0);
	scan_list(ms, id, 0, &got);
	ck_assert_uint_eq(got.n, 8);
	got.n = 6;
	expect_same(&want, &got, 6);
	ck_assert_uint_eq(got.index[6], 6);
	ck_assert_uint_eq(got.index[7], 7);
	scan_list(ms, id, 0, &want);	/* the new truth, pack included */

	/* truncate to 7 blocks: records after the pack's only, it stays */
	ck_assert_int_eq(ms_session_truncate(ms, id, 7 * B), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.packs, 1);
	expect_pack_codes(ms, id, 6, 6, &want);
	scan_list(ms, id, 0, &got);
	ck_assert_uint_eq(got.n, 7);
	expect_same(&want, &got, 7);
	expect_check(ms);

	/* truncate to 3 blocks: the pack goes, the scan stays right */
	ck_assert_int_eq(ms_session_truncate(ms, id, 3 * B), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.packs, 0);
	expect_pack_codes(ms, id, 0, 0, &want);
	scan_list(ms, id, 0, &got);
	expect_same(&want, &got, 3);
	ck_assert_int_eq(ms_summary_pack(ms, id), 0);
	ck_assert_int_eq(ms_session_delete(ms, "s"), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.packs, 0);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

/* Rewrites the session's summaries 0..n-1 as records written before
 * codes were (version 1, no codes), as an older engramd left them. */
struct old_arg {
	int64_t id;
	uint64_t n;
};

static int make_old_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct old_arg *a = arg;
	static uint8_t buf[65536];
	for (uint64_t i = 0; i < a->n; i++) {
		struct ms__sidx sk;
		struct ms__sum_hdr h;
		ms__sidx(&sk, a->id, i);
		MDB_val k = { 16, sk.b }, v;
		ck_assert_int_eq(mdb_get(txn, ms->db_sums, &k, &v), 0);
		memcpy(&h, v.mv_data, sizeof(h));
		ms_geom g = { h.n_layers, h.n_kv_heads, h.head_dim, 0, 0 };
		size_t old = ms__summary_size(&g, 0);
		ck_assert_uint_eq(v.mv_size, ms__summary_size(&g, h.n_tokens));
		ck_assert_uint_lt(old, v.mv_size);
		ck_assert_uint_le(old, sizeof(buf));
		memcpy(buf, v.mv_data, old);
		h.version = MS_FORMAT_VERSION;
		memcpy(buf, &h, sizeof(h));
		MDB_val nv = { old, buf };
		ck_assert_int_eq(mdb_put(txn, ms->db_sums, &k, &nv, 0), 0);
	}
	return 0;
}

/* Session id's summary record of block i through a raw LMDB write:
 * copied into a buffer (*n bytes), changed by the caller, put back. */
static uint8_t sum_buf[65536];

static uint8_t *sum_get(ms_store *ms, MDB_txn *txn, int64_t id, uint64_t i,
			size_t *n)
{
	struct ms__sidx sk;
	ms__sidx(&sk, id, i);
	MDB_val k = { 16, sk.b }, v;
	ck_assert_int_eq(mdb_get(txn, ms->db_sums, &k, &v), 0);
	ck_assert_uint_le(v.mv_size, sizeof(sum_buf));
	memcpy(sum_buf, v.mv_data, v.mv_size);
	*n = v.mv_size;
	return sum_buf;
}

static void sum_put(ms_store *ms, MDB_txn *txn, int64_t id, uint64_t i,
		    size_t n)
{
	struct ms__sidx sk;
	ms__sidx(&sk, id, i);
	MDB_val k = { 16, sk.b }, nv = { n, sum_buf };
	ck_assert_int_eq(mdb_put(txn, ms->db_sums, &k, &nv, 0), 0);
}

/* Changes a byte of the mean and one of the codes of block 2's record. */
static int poke_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	size_t n;
	uint8_t *buf = sum_get(ms, txn, *(int64_t *)arg, 2, &n);
	buf[sizeof(struct ms__sum_hdr) + 2 * 2 * D] ^= 0x40;
	buf[n - 1] ^= 0x01;
	sum_put(ms, txn, *(int64_t *)arg, 2, n);
	return 0;
}

struct codescan {
	uint64_t n, with;
	int bins_ok;
	ms_txn *t;
	int64_t id;
};

static int on_codes(void *arg, const ms_summary *s)
{
	struct codescan *cs = arg;
	static float kf[L * B * D];
	ms_block b;
	cs->n++;
	if (!s->codes)
		return 0;
	cs->with++;
	/* the codes of the keys as stored (q8: decoded) */
	if (ms_session_block(cs->t, cs->id, s->index, &b))
		return 5;
	for (uint32_t l = 0; l < L; l++)
		if (ms_block_decode(&b, l, 0, kf + (size_t)l * B * D, NULL))
			return 6;
	cs->bins_ok &= codes_bin(s, kf);
	return 0;
}

/* The session's 6 summaries, `with` of them with codes, every code
 * naming its key's bin; asked without codes, none has any. */
static void expect_codes(ms_store *ms, int64_t id, uint64_t with)
{
	for (int want = 0; want < 2; want++) {
		struct codescan cs = { .bins_ok = 1, .id = id };
		ck_assert_int_eq(ms_read_begin(ms, &cs.t), 0);
		ck_assert_int_eq(ms_summary_scan(cs.t, id, 0, want, on_codes,
						 &cs), 0);
		ms_read_end(cs.t);
		ck_assert_uint_eq(cs.n, 6);
		ck_assert_uint_eq(cs.with, want ? with : 0);
		ck_assert(cs.bins_ok);
	}
}

/* Summaries stored before codes (version 1) are still read, without
 * codes; ms_summary_codes gives them codes made from their blocks (and
 * leaves records that have them alone), the pack follows once written
 * again, and the store checks clean throughout. */
START_TEST(test_summary_codes_added)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q8);
	int64_t id;
	uint64_t n = 99;
	ck_assert_int_eq(ms_session_create(ms, "s", FP, &g, &id), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(append(ms, id, 4, i, B, NULL), 0);
	ck_assert_int_eq(append(ms, id, 4, 5, B / 2, NULL), 0);
	ck_assert_int_eq(ms_summary_codes(ms, id, &n), 0);
	ck_assert_uint_eq(n, 0);
	expect_codes(ms, id, 6);

	struct old_arg oa = { id, 4 };
	ck_assert_int_eq(ms__write(ms, make_old_w, &oa), 0);
	ck_assert_int_eq(ms_summary_pack(ms, id), 0);
	expect_codes(ms, id, 2);
	static struct sumlist sl;
	scan_list(ms, id, 0, &sl);
	expect_pack_codes(ms, id, 0, 4, &sl);	/* a pack of records before codes */
	expect_check(ms);

	ck_assert_int_eq(ms_summary_codes(ms, id, &n), 0);
	ck_assert_uint_eq(n, 4);
	expect_codes(ms, id, 6);
	ck_assert_int_eq(ms_summary_pack(ms, id), 0);
	expect_codes(ms, id, 6);
	scan_list(ms, id, 0, &sl);
	expect_pack_codes(ms, id, 5, 5, &sl);	/* the half block not packed */
	/* the scan reads the pack: a byte of block 2's record changed
	 * behind its back (mean and codes) is not seen */
	static struct sumlist before, after;
	scan_list(ms, id, 0, &before);
	ck_assert_int_eq(ms__write(ms, poke_w, &id), 0);
	scan_list(ms, id, 0, &after);
	expect_same(&before, &after, 6);
	ck_assert_int_eq(ms_summary_codes(ms, id, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(ms_summary_codes(NULL, id, &n), MS_EINVAL);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

/* Block 1's record made a later version's (3), as a newer engram would
 * write it. */
static int newer_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct ms__sum_hdr h;
	size_t n;
	uint8_t *buf = sum_get(ms, txn, *(int64_t *)arg, 1, &n);
	memcpy(&h, buf, sizeof(h));
	h.version = MS__SUM_CODES + 1;
	memcpy(buf, &h, sizeof(h));
	sum_put(ms, txn, *(int64_t *)arg, 1, n);
	return 0;
}

static int on_count(void *arg, const ms_summary *s)
{
	(void)s;
	(*(uint64_t *)arg)++;
	return 0;
}

/* A summary of a later version is refused as such (MS_EVERSION, saying
 * so) by a scan and by ms_summary_codes, which leaves it as it is: never
 * taken for corrupt, nor rewritten as an older record. */
START_TEST(test_summary_newer)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q8);
	int64_t id;
	uint64_t n = 0, seen = 0;
	ck_assert_int_eq(ms_session_create(ms, "s", FP, &g, &id), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(append(ms, id, 4, i, B, NULL), 0);
	ck_assert_int_eq(ms__write(ms, newer_w, &id), 0);
	ms_txn *t;
	for (int round = 0; round < 2; round++) {
		ck_assert_int_eq(ms_read_begin(ms, &t), 0);
		ck_assert_int_eq(ms_summary_scan(t, id, 0, 0, on_count, &seen),
				 MS_EVERSION);
		ms_read_end(t);
		ck_assert_msg(strstr(ms_errmsg(ms), "version 3, written by a newer engram"),
			      "%s", ms_errmsg(ms));
		ck_assert_int_eq(ms_summary_codes(ms, id, &n), MS_EVERSION);
	}
	ck_assert_uint_eq(seen, 2);	/* block 0, each round */
	ms_close(ms);
}
END_TEST

START_TEST(test_summaries_and_tail)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q8);
	int64_t id, other;
	ck_assert_int_eq(ms_session_create(ms, "s", FP, &g, &id), 0);
	ck_assert_int_eq(ms_session_create(ms, "t", FP, &g, &other), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(append(ms, id, 4, i, B, NULL), 0);
	ck_assert_int_eq(append(ms, other, 5, 0, B, NULL), 0);
	static float k[L * B * D], v[L * B * D];
	ms_synth_kv(4000, L, B, D, k, v);
	struct sumscan sc = { 0, k, 1 };
	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_summary_scan(t, id, 0, 1, on_summary, &sc), 0);
	ck_assert_uint_eq(sc.n, 5);	/* only this session's, in order */
	ck_assert(sc.bounds_ok);
	sc.n = 3;
	ck_assert_int_eq(ms_summary_scan(t, id, 3, 1, on_summary, &sc), 0);
	ck_assert_uint_eq(sc.n, 5);
	ck_assert_int_eq(ms_tail_get(t, id, &(ms_block){ 0 }), MS_ENOTFOUND);
	ms_read_end(t);

	/* Tail: 15 local layers, last 100 positions, overwritten. */
	ms_geom tg = { 15, 1, D, 0, MS_MODE_F16 };
	size_t n = 15 * 100 * D;
	float *tk = malloc(n * 4), *tv = malloc(n * 4);
	uint32_t tok[100];
	tokens(4, 220, 100, tok);
	ms_synth_kv(77, 15, 100, D, tk, tv);
	ck_assert_int_eq(ms_tail_put(ms, id, &tg, 220, tok, 100, tk, tv), 0);
	ck_assert_int_eq(ms_tail_put(ms, id, &tg, 220, tok, 100, tk, tv), 0);
	ck_assert_int_eq(ms_tail_put(ms, 12345, &tg, 0, tok, 100, tk, tv),
			 MS_ENOTFOUND);
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ms_block b;
	ck_assert_int_eq(ms_tail_get(t, id, &b), 0);
	ck_assert_uint_eq(b.n_tokens, 100);
	ck_assert_uint_eq(b.position, 220);
	ck_assert_uint_eq(b.geom.n_layers, 15);
	float *dk = malloc(100 * D * 4);
	ck_assert_int_eq(ms_block_decode(&b, 14, 0, dk, NULL), 0);
	for (int i = 0; i < 100 * D; i++)
		ck_assert_float_eq_tol(dk[i], tk[14 * 100 * D + i],
				       fabsf(tk[14 * 100 * D + i]) * 1e-3f + 1e-6f);
	ms_read_end(t);
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.tails, 1);
	expect_check(ms);
	ck_assert_int_eq(ms_session_delete(ms, "s"), 0);
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.tails, 0);
	expect_check(ms);
	free(tk);
	free(tv);
	free(dk);
	ms_close(ms);
}
END_TEST

START_TEST(test_map_growth_and_budget)
{
	ms_settings s;
	ms_settings_init(&s);
	s.map_size_initial = 1 << 20;
	s.disk_budget = 8 << 20;
	ms_store *ms = open_store(&s);
	ms_geom g = geom(MS_MODE_F16);	/* 197 KB a block */
	int64_t id;
	ck_assert_int_eq(ms_session_create(ms, "grow", FP, &g, &id), 0);
	int i, rc = 0;
	for (i = 0; i < 100 && rc == 0; i++)
		rc = append(ms, id, 6, i, B, NULL);
	/* The map grew past 1 MiB, then the budget stopped it cleanly. */
	ck_assert_int_eq(rc, MS_EFULL);
	ck_assert_int_gt(i, 10);
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.map_size, 8 << 20);
	ck_assert_uint_eq(st.blocks, (uint64_t)(i - 1));
	expect_check(ms);
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, "grow", &info), 0);
	ck_assert_uint_eq(info.n_blocks, (uint64_t)(i - 1));
	/* Deleting frees space for new blocks (LMDB reuses free pages). */
	ck_assert_int_eq(ms_session_delete(ms, "grow"), 0);
	ck_assert_int_eq(ms_session_create(ms, "again", FP, &g, &id), 0);
	ck_assert_int_eq(append(ms, id, 6, 0, B, NULL), 0);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

START_TEST(test_growth_blocked_by_reader)
{
	ms_settings s;
	ms_settings_init(&s);
	s.map_size_initial = 1 << 20;
	ms_store *ms = open_store(&s);
	ms_geom g = geom(MS_MODE_F16);
	int64_t id;
	ck_assert_int_eq(ms_session_create(ms, "r", FP, &g, &id), 0);
	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	int rc = 0, i;
	for (i = 0; i < 20 && rc == 0; i++)
		rc = append(ms, id, 7, i, B, NULL);
	ck_assert_int_eq(rc, MS_EBUSY);
	ms_read_end(t);
	ck_assert_int_eq(append(ms, id, 7, i - 1, B, NULL), 0);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

/* Flips a byte of a stored block through a raw LMDB write. */
static void corrupt_block(ms_store *ms, const ms_key *key, size_t at)
{
	MDB_txn *txn;
	ck_assert_int_eq(mdb_txn_begin(ms->env, NULL, 0, &txn), 0);
	MDB_val k = { 16, (void *)key->b }, v;
	ck_assert_int_eq(mdb_get(txn, ms->db_blocks, &k, &v), 0);
	uint8_t *copy = malloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[at % v.mv_size] ^= 1;
	MDB_val nv = { v.mv_size, copy };
	ck_assert_int_eq(mdb_put(txn, ms->db_blocks, &k, &nv, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	free(copy);
}

START_TEST(test_corrupt_block)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q8);
	int64_t id;
	ms_key key;
	ck_assert_int_eq(ms_session_create(ms, "c", FP, &g, &id), 0);
	ck_assert_int_eq(append(ms, id, 8, 0, B, NULL), 0);
	ck_assert_int_eq(append(ms, id, 8, 1, B, &key), 0);
	corrupt_block(ms, &key, 5000);
	ms_txn *t;
	ms_block b = { 0 };
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_session_block(t, id, 1, &b), MS_ECORRUPT);
	ck_assert_ptr_null(b.rec);	/* nothing handed out */
	ck_assert_int_eq(ms_session_block(t, id, 0, &b), 0);
	ms_read_end(t);
	uint64_t problems;
	ck_assert_int_eq(ms_check(ms, 1, &problems), MS_ECHECK);
	ck_assert_uint_eq(problems, 1);
	ck_assert_int_eq(ms_check(ms, 0, &problems), 0);	/* shallow */
	ms_close(ms);
}
END_TEST

/* Crash states of ONE TRUTH, made by hand, repaired by ms_open. */
START_TEST(test_recovery)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q8);
	int64_t a, b, c, d;
	ck_assert_int_eq(ms_session_create(ms, "a", FP, &g, &a), 0);
	ck_assert_int_eq(ms_session_create(ms, "b", FP, &g, &b), 0);
	ck_assert_int_eq(ms_session_create(ms, "c", FP, &g, &c), 0);
	ck_assert_int_eq(ms_session_create(ms, "d", FP, &g, &d), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(append(ms, a, 1, i, B, NULL), 0);
		ck_assert_int_eq(append(ms, b, 1, i, B, NULL), 0);
		ck_assert_int_eq(append(ms, c, 2, i, B, NULL), 0);
	}
	/* a: crashed after the LMDB commit, before the catalog update.
	 * b: crashed in the middle of a delete.  c: its row vanished
	 * (orphan head).  d: crashed between row insert and head put. */
	ck_assert_int_eq(sqlite3_exec(ms->db,
		"UPDATE sessions SET n_tokens = 5 WHERE name = 'a';"
		"UPDATE sessions SET state = 'deleting' WHERE name = 'b';"
		"DELETE FROM sessions WHERE name = 'c';", NULL, NULL, NULL), 0);
	MDB_txn *txn;
	uint8_t kd[8];
	ms__sid(kd, d);
	MDB_val k = { 8, kd };
	ck_assert_int_eq(mdb_txn_begin(ms->env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_del(txn, ms->db_heads, &k, NULL), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	uint64_t problems;
	ck_assert_int_eq(ms_check(ms, 0, &problems), MS_ECHECK);
	ck_assert_uint_ge(problems, 3);
	ms_close(ms);

	ms = open_store(NULL);
	ms_recovery rec;
	ms_recovery_get(ms, &rec);
	ck_assert_uint_eq(rec.deletes_finished, 1);
	ck_assert_uint_eq(rec.orphans_removed, 1);
	ck_assert_uint_eq(rec.heads_created, 1);
	ck_assert_uint_ge(rec.counts_repaired, 1);
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, "a", &info), 0);
	ck_assert_uint_eq(info.n_tokens, 3 * B);
	ck_assert_int_eq(ms_session_get(ms, "b", &info), MS_ENOTFOUND);
	ck_assert_int_eq(ms_session_get(ms, "d", &info), 0);
	ck_assert_uint_eq(info.n_tokens, 0);
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.sessions, 2);
	ck_assert_uint_eq(st.blocks, 3);	/* a's; b's shared ones unref'd */
	expect_check(ms);
	/* d is usable. */
	ck_assert_int_eq(append(ms, d, 9, 0, B, NULL), 0);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

START_TEST(test_gc_orphans)
{
	ms_store *ms = open_store(NULL);
	int64_t a = session_of(ms, "a", MS_MODE_Q4, 1, 3);
	/* Drop the head behind the store's back: chain, summaries and blocks
	 * become unreachable. */
	MDB_txn *txn;
	uint8_t kb[8];
	ms__sid(kb, a);
	MDB_val k = { 8, kb };
	ck_assert_int_eq(mdb_txn_begin(ms->env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_del(txn, ms->db_heads, &k, NULL), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	uint64_t freed;
	ck_assert_int_eq(ms_gc(ms, &freed), 0);
	ck_assert_uint_eq(freed, 3 + 3);	/* chain + summaries */
	/* The refcounts still name the removed chain: gc frees blocks only
	 * when refcount 0; ms_check reports the rest. */
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 3);
	uint64_t problems;
	ck_assert_int_eq(ms_check(ms, 0, &problems), MS_ECHECK);
	ms_close(ms);
}
END_TEST

START_TEST(test_format_version)
{
	ms_store *ms = open_store(NULL);
	MDB_txn *txn;
	uint32_t ver = MS_FORMAT_VERSION + 1;
	MDB_val k = { 6, (void *)"format" }, v = { 4, &ver };
	ck_assert_int_eq(mdb_txn_begin(ms->env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_put(txn, ms->db_meta, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	ms_close(ms);
	char err[256];
	ck_assert_int_eq(ms_open(dir, NULL, &ms, err, sizeof(err)), MS_EVERSION);
	ck_assert_ptr_nonnull(strstr(err, "format"));
}
END_TEST

/* A data file cut short (a partial copy or restore) is refused at open
 * with a message, not read through the map past its end (SIGBUS); put
 * back whole, it opens and holds the same blocks. */
START_TEST(test_truncated_file)
{
	ms_store *ms = open_store(NULL);
	session_of(ms, "s", MS_MODE_Q8, 13, 40);
	ms_close(ms);
	char path[512], save[512], err[256];
	snprintf(path, sizeof(path), "%s/kv/data.mdb", dir);
	snprintf(save, sizeof(save), "%s/kv/data.whole", dir);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_gt(st.st_size, 65536);
	ck_assert_int_eq(link(path, save), 0);
	/* a copy of the first pages only: the meta pages are whole */
	char cmd[2200];
	snprintf(cmd, sizeof(cmd), "head -c 16384 '%s' > '%s.cut' && mv '%s.cut' '%s'",
		 save, path, path, path);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(ms_open(dir, NULL, &ms, err, sizeof(err)), MS_ECORRUPT);
	ck_assert_msg(strstr(err, "cut short"), "%s", err);
	ck_assert_int_eq(rename(save, path), 0);
	ms = open_store(NULL);
	uint64_t problems = 9;
	ck_assert_int_eq(ms_check(ms, 1, &problems), 0);
	ck_assert_uint_eq(problems, 0);
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, "s", &info), 0);
	ck_assert_uint_eq(info.n_tokens, 40 * B);
	ms_close(ms);
}
END_TEST

/* A block damaged on disk (a byte of its record flipped) is found by the
 * deep check, refused when read, and written again when a session
 * computes the same block: the other session sharing it reads it sound. */
START_TEST(test_damaged_block_rewritten)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q8);
	int64_t s, t, u;
	ms_key keys[3];
	ck_assert_int_eq(ms_session_create(ms, "s", FP, &g, &s), 0);
	ck_assert_int_eq(ms_session_create(ms, "t", FP, &g, &t), 0);
	ck_assert_int_eq(ms_session_create(ms, "u", FP, &g, &u), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(append(ms, s, 14, i, B, &keys[i]), 0);
		ck_assert_int_eq(append(ms, t, 14, i, B, NULL), 0);
	}
	expect_check(ms);
	/* flip a byte of block 1's values */
	MDB_txn *txn;
	MDB_val k = { 16, keys[1].b }, v;
	ck_assert_int_eq(mdb_txn_begin(ms->env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_get(txn, ms->db_blocks, &k, &v), 0);
	static uint8_t rec[1 << 20];
	ck_assert_uint_le(v.mv_size, sizeof(rec));
	memcpy(rec, v.mv_data, v.mv_size);
	rec[v.mv_size - 3] ^= 0x40;
	v.mv_data = rec;
	ck_assert_int_eq(mdb_put(txn, ms->db_blocks, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	uint64_t problems = 0;
	ck_assert_int_eq(ms_check(ms, 1, &problems), MS_ECHECK);
	ck_assert_uint_eq(problems, 1);
	ck_assert_int_eq(ms_check(ms, 0, &problems), 0);	/* shape only */
	ms_txn *rt;
	ms_block b;
	ck_assert_int_eq(ms_read_begin(ms, &rt), 0);
	ck_assert_int_eq(ms_session_block(rt, t, 1, &b), MS_ECORRUPT);
	ms_read_end(rt);
	/* u computes the same blocks: block 1 is written again */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(append(ms, u, 14, i, B, NULL), 0);
	expect_check(ms);
	ck_assert_int_eq(ms_read_begin(ms, &rt), 0);
	ck_assert_int_eq(ms_session_block(rt, t, 1, &b), 0);
	ck_assert_int_eq(ms_session_block(rt, s, 1, &b), 0);
	ck_assert_mem_eq(b.key.b, keys[1].b, 16);
	ms_read_end(rt);
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_eq(st.blocks, 3);
	ck_assert_uint_eq(st.block_refs, 9);
	ms_close(ms);
}
END_TEST

/* Fault injection on the catalog: with SQLite refusing writes, creating a
 * session fails cleanly, and appends still commit (the catalog count is
 * advisory) and are reconciled at the next open. */
START_TEST(test_catalog_write_fault)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q8);
	int64_t id;
	ck_assert_int_eq(ms_session_create(ms, "s", FP, &g, &id), 0);
	ck_assert_int_eq(sqlite3_exec(ms->db, "PRAGMA query_only = ON", NULL,
				      NULL, NULL), 0);
	ck_assert_int_eq(ms_session_create(ms, "t", FP, &g, NULL), MS_ESQLITE);
	ck_assert_ptr_nonnull(strstr(ms_errmsg(ms), "readonly"));
	ck_assert_int_eq(append(ms, id, 12, 0, B, NULL), 0);
	ck_assert_int_eq(append(ms, id, 12, 1, B, NULL), 0);
	ck_assert_int_eq(ms_session_delete(ms, "s"), MS_ESQLITE);
	uint64_t problems;
	ck_assert_int_eq(ms_check(ms, 0, &problems), MS_ECHECK);	/* count */
	ms_close(ms);
	ms = open_store(NULL);
	ms_recovery rec;
	ms_recovery_get(ms, &rec);
	ck_assert_uint_eq(rec.counts_repaired, 1);
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, "s", &info), 0);
	ck_assert_uint_eq(info.n_tokens, 2 * B);
	ck_assert_int_eq(ms_session_get(ms, "t", &info), MS_ENOTFOUND);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

/* A read transaction is a snapshot: writes after it began are invisible
 * to it, and its zero-copy views stay valid and unchanged meanwhile. */
/* This process's resident pages of mapped files (/proc/self/status), in
 * kB; -1 where there is no such line. */
static long rss_file_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "RssFile: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* ms_trim gives back the pages reads mapped in, and a view taken before
 * it reads the same bytes after it. */
START_TEST(test_trim)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_F16);
	int64_t id;
	ck_assert_int_eq(ms_trim(NULL), MS_EINVAL);
	ck_assert_int_eq(ms_session_create(ms, "big", FP, &g, &id), 0);
	for (int i = 0; i < 64; i++)	/* 64 x 192 KB of f16 K and V */
		ck_assert_int_eq(append(ms, id, 7, i, B, NULL), 0);
	ms_stats st;
	ck_assert_int_eq(ms_stats_get(ms, &st), 0);
	ck_assert_uint_gt(st.block_bytes, 8u << 20);

	ms_txn *t;
	ms_block b;
	static float k0[B * D], v0[B * D], k1[B * D], v1[B * D];
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_session_block(t, id, 5, &b), 0);
	ck_assert_int_eq(ms_block_decode(&b, 1, 0, k0, v0), 0);
	expect_check(ms);	/* reads every block through the map */
	long before = rss_file_kb();
	ck_assert_int_eq(ms_trim(ms), 0);
	long after = rss_file_kb();
	if (before >= 0)	/* Linux: the blocks' pages left the RSS */
		ck_assert_msg(before - after >= (long)(st.block_bytes / 2048),
			      "RssFile %ld kB -> %ld kB, blocks %llu bytes",
			      before, after, (unsigned long long)st.block_bytes);
	ck_assert_int_eq(ms_block_decode(&b, 1, 0, k1, v1), 0);
	ck_assert_mem_eq(k0, k1, sizeof(k0));
	ck_assert_mem_eq(v0, v1, sizeof(v0));
	ms_read_end(t);
	/* and the store goes on as before */
	ck_assert_int_eq(append(ms, id, 7, 64, B, NULL), 0);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

/* The passes over a session's summaries at a prefill's end (codes, pack)
 * give back what they map as they go: with the file in the page cache,
 * each record's first touch maps the 64 KB around it (the kernel's
 * fault-around; a large folio whole, up to 2 MB, on Linux 6.18), 1.2 GB over a 1M-token session's 18K summaries before
 * they trimmed.  N records map N x 64 KB untrimmed (37 MB here); at most
 * 256 records' worth stays mapped.  The pack copies the same bytes. */
START_TEST(test_scan_trim)
{
	enum { N = 600 };
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_Q8);
	int64_t id;
	uint64_t added = 9;
	ck_assert_int_eq(ms_session_create(ms, "long", FP, &g, &id), 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(append(ms, id, 11, i, B, NULL), 0);
	static struct sumlist sl;	/* the last 16, read before the pack */
	scan_list(ms, id, N - 16, &sl);
	ck_assert_uint_eq(sl.n, 16);

	ck_assert_int_eq(ms_trim(ms), 0);
	long base = rss_file_kb();
	ck_assert_int_eq(ms_summary_codes(ms, id, &added), 0);
	ck_assert_uint_eq(added, 0);
	long codes = rss_file_kb();
	ck_assert_int_eq(ms_summary_pack(ms, id), 0);
	long pack = rss_file_kb();
	if (base >= 0) {	/* Linux */
		ck_assert_msg(codes - base < 16384 && pack - base < 16384,
			      "RssFile %ld kB, after codes %ld, after pack %ld",
			      base, codes, pack);
	}

	ms_txn *t;
	const uint8_t *c, *d;
	size_t cs, ds;
	uint64_t nc, nd;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_summary_pack_codes(t, id, &c, &cs, &nc), 0);
	ck_assert_int_eq(ms_summary_pack_vectors(t, id, L, H, D, &d, &ds,
						 &nd), 0);
	ck_assert_uint_eq(nc, N);
	ck_assert_uint_eq(nd, N);
	ck_assert_uint_eq(cs, sizeof(sl.codes[0]));
	ck_assert_uint_ge(ds, sizeof(sl.data[0]));	/* with the head */
	for (int j = 0; j < 16; j++) {
		ck_assert_uint_eq(sl.index[j], N - 16 + j);
		ck_assert_mem_eq(c + (N - 16 + j) * cs, sl.codes[j], cs);
		ck_assert_mem_eq(d + (N - 16 + j) * ds, sl.data[j],
				 sizeof(sl.data[0]));
	}
	ms_read_end(t);
	expect_check(ms);

	/* deleting it touches every record's first page too */
	ck_assert_int_eq(ms_trim(ms), 0);
	base = rss_file_kb();
	ck_assert_int_eq(ms_session_delete(ms, "long"), 0);
	long gone = rss_file_kb();
	if (base >= 0)
		ck_assert_msg(gone - base < 16384, "RssFile %ld kB, after the "
			      "delete %ld", base, gone);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

START_TEST(test_snapshot_isolation)
{
	ms_store *ms = open_store(NULL);
	ms_geom g = geom(MS_MODE_F16);
	int64_t id;
	ck_assert_int_eq(ms_session_create(ms, "snap", FP, &g, &id), 0);
	ck_assert_int_eq(append(ms, id, 13, 0, B, NULL), 0);
	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ms_block b;
	ck_assert_int_eq(ms_session_block(t, id, 0, &b), 0);
	uint8_t *copy = malloc(b.len);
	memcpy(copy, b.rec, b.len);
	/* The writer is not blocked by the open reader. */
	for (int i = 1; i < 4; i++)
		ck_assert_int_eq(append(ms, id, 13, i, B, NULL), 0);
	ck_assert_int_eq(ms_session_pop(ms, id), 0);
	ck_assert_int_eq(ms_session_pop(ms, id), 0);
	ck_assert_int_eq(ms_session_pop(ms, id), 0);
	ck_assert_int_eq(ms_session_pop(ms, id), 0);	/* block 0 freed */
	ck_assert_mem_eq(b.rec, copy, b.len);
	ms_session_info h;
	ck_assert_int_eq(ms_session_head(t, id, &h), 0);
	ck_assert_uint_eq(h.n_blocks, 1);
	ck_assert_int_eq(ms_session_block(t, id, 1, &b), MS_ENOTFOUND);
	ms_read_end(t);
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ck_assert_int_eq(ms_session_head(t, id, &h), 0);
	ck_assert_uint_eq(h.n_blocks, 0);
	ck_assert_int_eq(ms_session_block(t, id, 0, &b), MS_ENOTFOUND);
	ms_read_end(t);
	free(copy);
	expect_check(ms);
	ms_close(ms);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ms_store");
	TCase *tc = tcase_create("store");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_append_read);
	tcase_add_test(tc, test_append_n);
	tcase_add_test(tc, test_bad_arguments);
	tcase_add_test(tc, test_sharing_and_delete);
	tcase_add_test(tc, test_rename_keeps_blocks);
	tcase_add_test(tc, test_summaries_and_tail);
	tcase_add_test(tc, test_summary_codes_added);
	tcase_add_test(tc, test_summary_newer);
	tcase_add_test(tc, test_summary_pack);
	tcase_add_test(tc, test_map_growth_and_budget);
	tcase_add_test(tc, test_growth_blocked_by_reader);
	tcase_add_test(tc, test_corrupt_block);
	tcase_add_test(tc, test_recovery);
	tcase_add_test(tc, test_gc_orphans);
	tcase_add_test(tc, test_format_version);
	tcase_add_test(tc, test_truncated_file);
	tcase_add_test(tc, test_damaged_block_rewritten);
	tcase_add_test(tc, test_catalog_write_fault);
	tcase_add_test(tc, test_snapshot_isolation);
	tcase_add_test(tc, test_trim);
	tcase_add_test(tc, test_scan_trim);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
