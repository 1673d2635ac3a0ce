/* ms_bench.c - memstore put/get throughput, bytes per token and
 * reconstruction error for each mode (F16, Q8, Q4) and block size B, on
 * synthetic Gemma 3 270M K/V (3 global layers, 1 KV head, head_dim 256).
 * Usage and how to read the table: bench/memstore/README.md. */
#include "config.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "ms_internal.h"	/* ms__block_encode: encode cost alone */
#include "ms_synth.h"

#define L 3
#define H 1
#define D 256

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *mode_name(ms_mode m)
{
	return m == MS_MODE_F16 ? "f16" : m == MS_MODE_Q8 ? "q8" : "q4";
}

struct err {
	double max_abs, sum_abs, sum_ref;
	size_t n;
};

static void err_add(struct err *e, const float *got, const float *ref,
		    size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - ref[i]);
		e->max_abs = d > e->max_abs ? d : e->max_abs;
		e->sum_abs += d;
		e->sum_ref += fabs(ref[i]);
	}
	e->n += n;
}

struct result {
	double enc_tps, commit_ms, put_tps, putn_tps, get_tps, view_tps;
	double rec_bpt, disk_bpt, sum_bpt;
	struct err ek, ev;
};

static int run(const char *base, ms_mode mode, uint32_t bt, uint32_t n_tok,
	       struct result *res)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/ms_bench_%s_%u", base, mode_name(mode), bt);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		return -1;
	ms_store *ms;
	char err[256];
	int rc = ms_open(dir, NULL, &ms, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ms_open: %s\n", err);
		return rc;
	}
	ms_geom g = { L, H, D, bt, mode };
	uint8_t fp[16] = "bench-gemma3-270";
	int64_t id;
	if ((rc = ms_session_create(ms, "bench", fp, &g, &id)))
		goto out;
	size_t per = (size_t)L * H * bt * D;
	float *k = malloc(per * 4), *v = malloc(per * 4);
	float *dk = malloc((size_t)bt * D * 4), *dv = malloc((size_t)bt * D * 4);
	uint32_t *tok = malloc(bt * 4);
	uint32_t n_blocks = n_tok / bt;
	/* Generate outside the timed region: synthesis is slower than the
	 * store.  Keep one block's data per block index via the seed. */
	double t_put = 0;
	for (uint32_t b = 0; b < n_blocks; b++) {
		ms_synth_kv(b, L * H, bt, D, k, v);
		for (uint32_t i = 0; i < bt; i++)
			tok[i] = b * bt + i;
		double t0 = now();
		if ((rc = ms_session_append(ms, id, tok, bt, k, v, NULL)))
			goto out2;
		t_put += now() - t0;
	}
	res->put_tps = n_blocks * bt / t_put;
	res->commit_ms = t_put / n_blocks * 1e3;
	/* Batched: 1024 tokens per transaction into a second session (new
	 * tokens, so nothing is shared). */
	{
		enum { CH = 1024 };
		size_t big = (size_t)L * H * CH * D;
		float *bk = malloc(big * 4), *bv = malloc(big * 4);
		uint32_t *btok = malloc(CH * 4);
		int64_t id2;
		double tn = 0;
		if ((rc = ms_session_create(ms, "batched", fp, &g, &id2)))
			goto out2;
		for (uint32_t off = 0; off + CH <= n_tok; off += CH) {
			ms_synth_kv(off + 7, L * H, CH, D, bk, bv);
			for (uint32_t i = 0; i < CH; i++)
				btok[i] = 0x40000000u + off + i;
			double t0 = now();
			if ((rc = ms_session_append_n(ms, id2, btok, CH, bk, bv, NULL)))
				break;
			tn += now() - t0;
		}
		free(bk);
		free(bv);
		free(btok);
		if (rc)
			goto out2;
		res->putn_tps = (n_tok / CH) * CH / tn;
	}
	/* Encode alone (quantize + checksum, no LMDB, no fsync). */
	{
		size_t len = ms_block_record_size(&g, bt);
		uint8_t *rec = malloc(len);
		uint32_t reps = n_blocks < 64 ? n_blocks : 64;
		ms_synth_kv(1, L * H, bt, D, k, v);
		double te = now();
		for (uint32_t b = 0; b < reps; b++)
			ms__block_encode(rec, &g, fp, NULL, 0, tok, bt, k, v);
		res->enc_tps = reps * bt / (now() - te);
		free(rec);
	}
	/* Get: verify (checksum) + decode every layer of every block. */
	ms_txn *t;
	memset(&res->ek, 0, sizeof(res->ek));
	memset(&res->ev, 0, sizeof(res->ev));
	if ((rc = ms_read_begin(ms, &t)))
		goto out2;
	double t0 = now();
	for (uint32_t b = 0; b < n_blocks; b++) {
		ms_block blk;
		if ((rc = ms_session_block(t, id, b, &blk)))
			break;
		for (uint32_t l = 0; l < L; l++)
			ms_block_decode(&blk, l, 0, dk, dv);
	}
	res->get_tps = n_blocks * bt / (now() - t0);
	t0 = now();
	for (uint32_t b = 0; b < n_blocks; b++) {
		ms_block blk;
		if ((rc = ms_session_block(t, id, b, &blk)))
			break;
	}
	res->view_tps = n_blocks * bt / (now() - t0);
	/* Reconstruction error on the first 64 blocks (regenerated). */
	for (uint32_t b = 0; b < n_blocks && b < 64; b++) {
		ms_block blk;
		ms_synth_kv(b, L * H, bt, D, k, v);
		if ((rc = ms_session_block(t, id, b, &blk)))
			break;
		for (uint32_t l = 0; l < L; l++) {
			ms_block_decode(&blk, l, 0, dk, dv);
			err_add(&res->ek, dk, k + (size_t)l * bt * D, (size_t)bt * D);
			err_add(&res->ev, dv, v + (size_t)l * bt * D, (size_t)bt * D);
		}
	}
	ms_read_end(t);
	if (rc)
		goto out2;
	ms_stats st;
	if ((rc = ms_stats_get(ms, &st)))
		goto out2;
	res->rec_bpt = st.bytes_per_token;
	res->disk_bpt = (double)st.bytes_on_disk / st.tokens_stored;
	res->sum_bpt = (double)(40 + L * H * 3 * D * 2) / bt;
out2:
	free(k);
	free(v);
	free(dk);
	free(dv);
	free(tok);
out:
	ms_close(ms);
	if (system(cmd))
		return -1;
	return rc;
}

int main(int argc, char **argv)
{
	uint32_t n_tok = 16384;
	const char *base = "/tmp";
	int opt;
	while ((opt = getopt(argc, argv, "n:d:")) != -1) {
		if (opt == 'n')
			n_tok = (uint32_t)strtoul(optarg, NULL, 10);
		else if (opt == 'd')
			base = optarg;
		else {
			fprintf(stderr, "usage: ms_bench [-n tokens] [-d dir]\n");
			return 2;
		}
	}
	if (n_tok < 256 || n_tok > (1u << 22)) {
		fprintf(stderr, "ms_bench: -n between 256 and 4194304\n");
		return 2;
	}
	static const ms_mode modes[] = { MS_MODE_F16, MS_MODE_Q8, MS_MODE_Q4 };
	static const uint32_t bs[] = { 16, 32, 64, 128, 256 };
	printf("# memstore bench: Gemma 3 270M geometry (%d global layers, %d KV "
	       "head, head_dim %d), %u tokens per run\n\n", L, H, D, n_tok);
	printf("| mode | B | record B/tok | on disk B/tok | summary B/tok | "
	       "encode tok/s | put tok/s (ms/commit) | put_n tok/s | get+decode tok/s | view tok/s | "
	       "K max/mean abs err, rel | V max/mean abs err, rel |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (size_t m = 0; m < 3; m++)
		for (size_t b = 0; b < 5; b++) {
			struct result r;
			int rc = run(base, modes[m], bs[b], n_tok, &r);
			if (rc) {
				fprintf(stderr, "run %s B=%u: %s\n",
					mode_name(modes[m]), bs[b], ms_strerror(rc));
				return 1;
			}
			printf("| %s | %u | %.1f | %.1f | %.1f | %.0f | %.0f (%.2f) | %.0f | %.0f | %.0f | "
			       "%.4f / %.5f, %.2e | %.4f / %.5f, %.2e |\n",
			       mode_name(modes[m]), bs[b], r.rec_bpt, r.disk_bpt,
			       r.sum_bpt, r.enc_tps, r.put_tps, r.commit_ms, r.putn_tps, r.get_tps, r.view_tps,
			       r.ek.max_abs, r.ek.sum_abs / r.ek.n,
			       r.ek.sum_abs / r.ek.sum_ref, r.ev.max_abs,
			       r.ev.sum_abs / r.ev.n, r.ev.sum_abs / r.ev.sum_ref);
			fflush(stdout);
		}
	printf("\nf16 reference: %d bytes/token of K+V for the %d global layers "
	       "(%d for all 18 layers).\n", L * H * D * 2 * 2, L, 18 * D * 2 * 2);
	return 0;
}
