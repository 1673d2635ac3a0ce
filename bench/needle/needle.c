/* needle.c - recall of engram's attention at a given context length: a
 * haystack (repeated filler, or real text read from files), one needle at
 * each of D depths, then the question, framed as `engramctl ask` frames
 * it (one user turn: the context, "\n\n" and the question, the model's
 * turn), and the start of the answer, as the standard tests have it
 * (--no-primer leaves it out).  Two tests (--test):
 *   passkey  "The pass key is NNNNN. Remember it. NNNNN is the pass key.",
 *            "What is the pass key?" (Landmark Attention, InfLLM); right
 *            when the answer holds the five digits;
 *   fact     "The best thing to do in San Francisco is eat a sandwich and
 *            sit in Dolores Park on a sunny day.", "What is the best thing
 *            to do in San Francisco?" (Kamradt's needle in a haystack);
 *            right when the answer names the sandwich and Dolores Park.
 * --intro opens the context with the passkey test's task line.  Greedy
 * answer of up to 16 tokens.  Dense and
 * block-sparse attention (eng_sparse_params, the engine's defaults) run
 * on the same sequences; each answer says what share of the question's
 * last-token attention fell on the needle.  See bench/needle/README.md.
 *
 * The prefix before the needle is shared between depths: it is computed
 * once and the cache cloned at each depth (eng_kv_mem_clone).
 */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "engine.h"
#include "../bench_flags.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *msg, int rc)
{
	if (rc)
		fprintf(stderr, "needle: %s (%s)\n", msg, eng_strerror(rc));
	else
		fprintf(stderr, "needle: %s\n", msg);
	exit(1);
}

#define BIG BENCH_BIG

static uint32_t num(const char *flag, const char *v, unsigned long max)
{
	return (uint32_t)bench_num("needle", flag, v, max);
}

/* Appends files under path (regular files, sorted by name, recursing)
 * to *buf while it is shorter than want bytes. */
static void slurp(const char *path, char **buf, size_t *len, size_t want)
{
	struct stat st;
	if (*len >= want || stat(path, &st) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		struct dirent **ents;
		int n = scandir(path, &ents, NULL, alphasort);
		for (int i = 0; i < n; i++) {
			char sub[4096];
			if (ents[i]->d_name[0] != '.') {
				snprintf(sub, sizeof sub, "%s/%s", path,
				    ents[i]->d_name);
				slurp(sub, buf, len, want);
			}
			free(ents[i]);
		}
		free(ents);
		return;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (16 << 20))
		return;
	FILE *f = fopen(path, "rb");
	if (!f)
		return;
	*buf = realloc(*buf, *len + st.st_size + 2);
	size_t got = fread(*buf + *len, 1, st.st_size, f);
	fclose(f);
	/* Text files only: a NUL byte means binary. */
	if (memchr(*buf + *len, 0, got))
		return;
	*len += got;
	(*buf)[(*len)++] = '\n';
}

struct run {
	eng_fwd *f;
	eng_kv *kv;		/* the shared prefix */
	uint32_t pos;		/* its length */
	int ok;
	double secs;
	int seen;		/* answers whose last question token attended
				 * the needle */
	float weight;		/* of this depth: the needle's share of that
				 * token's attention (global layers), or -1 */
	char top[512];		/* -vv: its heaviest blocks */
};

/* --variants: other settings for the question and its answer, asked of
 * the same sparse context (the branch is prefilled once per depth). */
#define MAX_VARIANTS 8
struct variant {
	uint32_t question_top_k, reach, squeeze, scan_all, shortlist, codes;
	int ok, hit;
	float weight;
	char out[256];		/* this depth's answer */
};
static struct variant variants[MAX_VARIANTS];
static int n_variants;

static void parse_variants(const char *s)
{
	static const char usage[] = "--variants takes "
	    "K:R[:s][:x][:l[N]|:c[N]][,...] (question_top_k, reach, squeezed, "
	    "every candidate scanned, a shortlist of scan_max or N positions "
	    "scanned, ranked by summaries or by key codes), at most 8";

	while (*s) {
		unsigned long q, r;
		char *end;
		if (n_variants == MAX_VARIANTS)
			die(usage, 0);
		q = strtoul(s, &end, 10);
		if (end == s || *end != ':')
			die(usage, 0);
		s = end + 1;
		r = strtoul(s, &end, 10);
		if (end == s || q > BIG || r > BIG)
			die(usage, 0);
		int sq = 0, sx = 0, sc = 0;
		unsigned long sl = 0;
		for (; *end == ':'; end += 2)
			if (end[1] == 's')
				sq = 1;
			else if (end[1] == 'x')
				sx = 1;
			else if (end[1] == 'l' || end[1] == 'c') {
				/* :l scans scan_max positions, :lN N */
				sc = end[1] == 'c';
				char *ne;
				sl = strtoul(end + 2, &ne, 10);
				if (ne > end + 2 && (!sl || sl >= UINT32_MAX))
					die(usage, 0);
				sl = ne > end + 2 ? sl : UINT32_MAX;
				end = ne - 2;
			} else
				break;
		if (*end && *end != ',')
			die(usage, 0);
		variants[n_variants++] = (struct variant){ (uint32_t)q,
		    (uint32_t)r, (uint32_t)sq, (uint32_t)sx, (uint32_t)sl,
		    (uint32_t)sc, 0, 0, 0, "" };
		s = *end ? end + 1 : end;
	}
}

/* "qK/rR" and its flags, as --variants spells them (:lN as lN, :cN as
 * cN). */
static const char *variant_name(const struct variant *va, char *buf,
    size_t len)
{
	char sl[16] = "";

	if (va->shortlist == UINT32_MAX)
		snprintf(sl, sizeof sl, "%c", va->codes ? 'c' : 'l');
	else if (va->shortlist)
		snprintf(sl, sizeof sl, "%c%u", va->codes ? 'c' : 'l',
		    va->shortlist);
	snprintf(buf, len, "q%u/r%u%s%s%s", va->question_top_k, va->reach,
	    va->squeeze ? "s" : "", va->scan_all ? "x" : "", sl);
	return buf;
}

/* The share of the last step's attention (its last token, global layers)
 * on blocks overlapping positions [p0, p0+n), or -1 if none was attended. */
static float needle_weight(const eng_fwd *f, uint32_t p0, uint32_t n,
    char *top, size_t toplen)
{
	static eng_attn_block blk[1 << 15];
	uint32_t nb;
	uint64_t nk;
	float w = -1;
	size_t len;

	top[0] = 0;
	if (eng_fwd_attended(f, blk, 1 << 15, &nb, &nk))
		return -1;
	len = (size_t)snprintf(top, toplen, "%llu keys;",
	    (unsigned long long)nk);
	for (uint32_t i = 0; i < nb && i < 12 && len < toplen; i++)
		len += (size_t)snprintf(top + len, toplen - len, " %u:%.3f",
		    blk[i].pos0, blk[i].weight);
	for (uint32_t i = 0; i < nb; i++)
		if (blk[i].pos0 < p0 + n && blk[i].pos0 + blk[i].n > p0)
			w = (w < 0 ? 0 : w) + blk[i].weight;
	return w;
}

static int32_t *tok(const eng_vocab *v, const char *s, int flags, size_t *n)
{
	int32_t *ids = NULL;
	int rc = eng_tokenize(v, s, strlen(s), flags, &ids, n);
	if (rc)
		die("tokenize", rc);
	return ids;
}

/* The tests (--test): the needle (with %s for a passkey's key), the
 * question, the answer's start, and the words a right answer holds (the
 * key; every one of the facts). */
struct test {
	const char *name, *needle, *question, *primer;
	const char *words[3];
};

static const struct test tests[] = {
	{ "passkey", "\nThe pass key is %s. Remember it. %s is the pass "
	  "key.\n", "What is the pass key?", "The pass key is", { NULL } },
	{ "fact", "\nThe best thing to do in San Francisco is eat a sandwich "
	  "and sit in Dolores Park on a sunny day.\n", "What is the best "
	  "thing to do in San Francisco?", "The best thing to do in San "
	  "Francisco is", { "sandwich", "dolores park", NULL } },
};

/* Case-insensitive strstr, for the fact's words. */
static int holds(const char *s, const char *w)
{
	size_t n = strlen(w);
	for (; *s; s++)
		if (!strncasecmp(s, w, n))
			return 1;
	return 0;
}

/* Right when the answer holds the key (passkey) or every word (fact). */
static int right(const struct test *t, const char *out, const char *key)
{
	if (!t->words[0])
		return strstr(out, key) != NULL;
	for (int i = 0; t->words[i]; i++)
		if (!holds(out, t->words[i]))
			return 0;
	return 1;
}

/* Asks the question q (n_q tokens) of kv and reads the greedy answer;
 * the weight of the needle [p0, p0+n_n) in the question's attention goes
 * to *weight (-1: not attended). */
static int ask(eng_fwd *f, eng_kv *kv, const eng_vocab *v, const int32_t *q,
    uint32_t n_q, uint32_t p0, uint32_t n_n, const struct test *test,
    const char *key, char *out, size_t outlen, float *weight, char *top,
    size_t toplen)
{
	const float *l;
	uint32_t nv = eng_fwd_n_vocab(f);
	size_t len = 0;
	int rc;

	eng_fwd_record(f, 1);
	if ((rc = eng_fwd_eval(f, kv, q, n_q, 0, &l, NULL)))
		die("eval", rc);
	eng_fwd_record(f, 0);
	*weight = needle_weight(f, p0, n_n, top, toplen);
	out[0] = 0;
	for (int i = 0; i < 16; i++) {
		int32_t best = 0;
		for (uint32_t t = 1; t < nv; t++)
			if (l[t] > l[best])
				best = t;
		if (best == eng_vocab_eos(v) || best == eng_vocab_eot(v))
			break;
		size_t k = 0;
		if (eng_token_to_piece(v, best, 0, out + len, outlen - len - 1,
		    &k) == 0 && k < outlen - len - 1)
			len += k;
		out[len] = 0;
		if ((rc = eng_fwd_eval(f, kv, &best, 1, 0, &l, NULL)))
			die("eval", rc);
	}
	return right(test, out, key);
}

/* Greedy answer to seq (the branch after the prefix) on a clone; with
 * sp (the sparse run), each --variants setting asks the same context. */
static int answer(struct run *r, const eng_vocab *v, const int32_t *seq,
    uint32_t n, uint32_t n_q, uint32_t n_n, const struct test *test,
    const char *key, char *out, size_t outlen, const eng_sparse_params *sp)
{
	eng_kv *kv;
	int rc, hit;

	if ((rc = eng_kv_mem_clone(r->kv, &kv)))
		die("clone", rc);
	/* The context, then the question as a step of its own: a session is
	 * prefilled before anyone asks, so ask's first step holds the
	 * question alone (it picks the blocks: by its last query's best
	 * keys, or by summaries past scan_max). */
	if (n > n_q && (rc = eng_fwd_eval(r->f, kv, seq, n - n_q, 0, NULL,
	    NULL)))
		die("eval", rc);
	for (int i = 0; sp && i < n_variants; i++) {
		struct variant *va = &variants[i];
		eng_sparse_params vp = *sp;
		eng_kv *vk;
		char top[512];
		vp.question_top_k = va->question_top_k;
		vp.reach = va->reach;
		vp.squeeze = va->squeeze;
		if (va->scan_all)
			vp.scan_max = UINT32_MAX;
		if (va->shortlist)
			vp.shortlist = va->shortlist == UINT32_MAX ?
			    vp.scan_max : va->shortlist;
		vp.codes = va->codes;
		if ((rc = eng_kv_mem_clone(kv, &vk)))
			die("clone", rc);
		eng_fwd_set_sparse(r->f, &vp);
		va->hit = ask(r->f, vk, v, seq + n - n_q, n_q, r->pos, n_n,
		    test, key, va->out, sizeof va->out, &va->weight, top,
		    sizeof top);
		va->ok += va->hit;
		eng_kv_close(vk);
		eng_fwd_set_sparse(r->f, sp);
	}
	/* seq starts with the needle, at position r->pos */
	hit = ask(r->f, kv, v, seq + n - n_q, n_q, r->pos, n_n, test, key,
	    out, outlen, &r->weight, r->top, sizeof r->top);
	r->seen += r->weight >= 0;
	eng_kv_close(kv);
	return hit;
}

/* DIR/depth-NN.txt: what a right answer holds on the first line (the
 * key, or the fact's words joined by '|'), then every token id of
 * the depth's sequence (BOS and the turn's opening, the haystack before
 * the needle, the branch), one per line: for another engine to run the
 * same test (bench/needle/llama_dense.py). */
static void dump_seq(const char *dir, uint32_t di, const struct test *t,
    const char *key, const int32_t *pre, size_t n_pre, const int32_t *h,
    size_t at, const int32_t *br, size_t nb)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/depth-%02u.txt", dir, di);
	FILE *f = fopen(path, "w");
	if (!f)
		die("cannot write the --dump file", 0);
	if (!t->words[0])
		fprintf(f, "%s\n", key);
	for (int i = 0; t->words[i]; i++)
		fprintf(f, "%s%s", t->words[i], t->words[i + 1] ? "|" : "\n");
	for (size_t i = 0; i < n_pre; i++)
		fprintf(f, "%d\n", pre[i]);
	for (size_t i = 0; i < at; i++)
		fprintf(f, "%d\n", h[i]);
	for (size_t i = 0; i < nb; i++)
		fprintf(f, "%d\n", br[i]);
	if (fclose(f))
		die("cannot write the --dump file", 0);
}

int main(int argc, char **argv)
{
	const char *model = NULL, *hay = "filler", *dump = NULL;
	uint32_t length = 8192, depths = 20, threads = 2, rope_offset = 0;
	eng_sparse_params sp;
	int dense = 1, sparse = 1, verbose = 0, primer = 1, intro = 0;
	const struct test *t = &tests[0];
	double depth_min = 0.0, depth_max = 1.0;
	char err[256], name[64];

	eng_sparse_params_init(&sp);

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(a, "--model")) model = v, i++;
		else if (!strcmp(a, "--length")) length = num(a, v, BIG), i++;
		else if (!strcmp(a, "--depths")) depths = num(a, v, BIG), i++;
		else if (!strcmp(a, "--haystack")) hay = v, i++;
		else if (!strcmp(a, "--threads")) threads = num(a, v, BIG), i++;
		else if (!strcmp(a, "--top-k")) sp.top_k = num(a, v, BIG), i++;
		else if (!strcmp(a, "--sink")) sp.sink = num(a, v, BIG), i++;
		else if (!strcmp(a, "--local")) sp.local = num(a, v, BIG), i++;
		else if (!strcmp(a, "--prefill-local"))
			sp.prefill_local = num(a, v, BIG), i++;
		else if (!strcmp(a, "--prefill-top-k"))
			sp.prefill_top_k = num(a, v, BIG), i++;
		else if (!strcmp(a, "--question-top-k"))
			sp.question_top_k = num(a, v, BIG), i++;
		else if (!strcmp(a, "--dense-max"))
			sp.dense_max = num(a, v, BIG), i++;
		else if (!strcmp(a, "--sparse-only")) dense = 0;
		else if (!strcmp(a, "--true-positions")) sp.reach = UINT32_MAX;
		else if (!strcmp(a, "--reach")) sp.reach = num(a, v, BIG), i++;
		else if (!strcmp(a, "--scan-max"))
			sp.scan_max = num(a, v, UINT32_MAX), i++;
		else if (!strcmp(a, "--depth-max")) depth_max = atof(v), i++;
		else if (!strcmp(a, "--depth-min")) depth_min = atof(v), i++;
		else if (!strcmp(a, "--dense-only")) sparse = 0;
		else if (!strcmp(a, "--no-primer")) primer = 0;
		else if (!strcmp(a, "--intro")) intro = 1;
		else if (!strcmp(a, "--test")) {
			t = NULL;
			for (size_t j = 0; j < sizeof tests / sizeof *tests; j++)
				if (!strcmp(v, tests[j].name))
					t = &tests[j];
			if (!t)
				die("--test takes passkey or fact", 0);
			i++;
		}
		else if (!strcmp(a, "--dump")) dump = v, i++;
		else if (!strcmp(a, "--variants")) parse_variants(v), i++;
		else if (!strcmp(a, "--rope-offset"))
			rope_offset = num(a, v, BIG), i++;
		else if (!strcmp(a, "-v")) verbose = 1;
		else if (!strcmp(a, "-vv")) verbose = 2;
		else {
			fprintf(stderr, "usage: needle --model GGUF [--length N] "
			    "[--depths D] [--haystack filler|PATH] [--threads T] "
			    "[--top-k K] [--sink S] [--local W] "
			    "[--prefill-local P] [--prefill-top-k K] "
			    "[--question-top-k K] "
			    "[--dense-max M] "
			    "[--sparse-only|--dense-only] [--reach R|--true-positions] "
			    "[--scan-max P] [--test passkey|fact] [--intro] "
			    "[--no-primer] "
			    "[--depth-min F] [--depth-max F] [--dump DIR] "
			    "[--rope-offset P] "
			    "[--variants K:R[:s][:x][:l[N]|:c[N]][,...]] "
			    "[-v|-vv]\n");
			return 2;
		}
	}
	if (!model || length < 256 || depths < 1)
		die("--model, --length >= 256 and --depths >= 1 are needed", 0);

	eng_model *m;
	int rc;
	if ((rc = eng_model_open(model, &m, err, sizeof err)))
		die(err, rc);
	const eng_vocab *v = eng_model_vocab(m);

	/* The framing of a session and of a question (ops_ask.c); --intro:
	 * the passkey test's task line opens the context. */
	size_t n_pre, n_q, n_h;
	char buf[512];
	snprintf(buf, sizeof buf, "<start_of_turn>user\n%s", intro ? "There is "
	    "an important info hidden inside a lot of irrelevant text. Find it "
	    "and memorize them. I will quiz you about the important information "
	    "there.\n" : "");
	int32_t *pre = tok(v, buf, ENG_TOK_ADD_SPECIAL | ENG_TOK_PARSE_SPECIAL,
	    &n_pre);
	/* The standard tests start the answer ("The pass key is"): without
	 * it the default model, dense, answers with code for passkeys deep
	 * in a code haystack. */
	snprintf(buf, sizeof buf, "\n\n%s<end_of_turn>\n<start_of_turn>model\n",
	    t->question);
	int32_t *q = tok(v, buf, ENG_TOK_PARSE_SPECIAL, &n_q);
	if (primer) {
		size_t n_p;
		int32_t *p = tok(v, t->primer, 0, &n_p);
		int32_t *nq = realloc(q, (n_q + n_p) * sizeof *q);
		if (!nq)
			die("out of memory", 0);
		q = nq;
		memcpy(q + n_q, p, n_p * sizeof *q);
		n_q += n_p;
		free(p);
	}

	char *text = NULL;
	size_t tlen = 0;
	if (!strcmp(hay, "filler")) {
		static const char f[] = "The grass is green. The sky is blue. "
		    "The sun is yellow. Here we go. There and back again. ";
		size_t want = (size_t)length * 6;
		text = malloc(want + sizeof f);
		while (tlen < want) {
			memcpy(text + tlen, f, sizeof f - 1);
			tlen += sizeof f - 1;
		}
	} else {
		slurp(hay, &text, &tlen, (size_t)length * 8);
	}
	int32_t *h = NULL;
	if (!text || (rc = eng_tokenize(v, text, tlen, 0, &h, &n_h)))
		die("haystack", rc);
	free(text);

	struct run runs[2] = { { 0 }, { 0 } };
	int use[2] = { dense, sparse };
	for (int k = 0; k < 2; k++) {
		eng_fwd_params p;
		eng_fwd_params_init(&p);
		p.n_threads = (int)threads;
		p.attn_mode = ENG_ATTN_F32;
		p.rope_offset = rope_offset;
		if (k == 1)
			p.sparse = sp;
		if (use[k] && (rc = eng_fwd_open(m, &p, &runs[k].f, err,
		    sizeof err)))
			die(err, rc);
	}

	srand(12345);
	printf("# length %u, haystack %s, %u depths from %.1f%% to %.1f%%, "
	    "sparse top_k %u sink %u local %u prefill_local %u prefill_top_k %u "
	    "question_top_k %u dense_max %u reach %u%s scan_max %u\n", length,
	    hay, depths, 100 * depth_min, 100 * depth_max,
	    sp.top_k, sp.sink, sp.local, sp.prefill_local, sp.prefill_top_k ?
	    sp.prefill_top_k : sp.top_k, sp.question_top_k ?
	    sp.question_top_k : sp.top_k, sp.dense_max, sp.reach,
	    sp.reach ? "" : " (trained context)", sp.scan_max);
	printf("# test %s%s, answer primed with \"%s\": %s\n", t->name,
	    intro ? " with the task line" : "", t->primer, primer ? "yes" :
	    "no");
	if (rope_offset)
		printf("# RoPE positions offset by %u\n", rope_offset);
	for (int k = 0; k < 2; k++) {
		if (!use[k])
			continue;
		if ((rc = eng_kv_mem_open(m, length + 64, 512, ENG_TYPE_F16,
		    &runs[k].kv)) || (rc = eng_kv_mem_summaries(runs[k].kv,
		    64)) || (rc = eng_fwd_eval(runs[k].f, runs[k].kv, pre,
		    (uint32_t)n_pre, 0, NULL, NULL)))
			die("prefix", rc);
		runs[k].pos = (uint32_t)n_pre;
	}
	/* The control: the question with no haystack and no needle.  A
	 * model that answers it right anyway (it has read the needle in
	 * training) makes the test void. */
	for (int k = 0; k < 2; k++) {
		char out[256];
		if (!use[k])
			continue;
		int hit = answer(&runs[k], v, q, (uint32_t)n_q, (uint32_t)n_q, 0,
		    t, "00000", out, sizeof out, NULL);
		for (char *c = out; *c; c++)
			if (*c == '\n')
				*c = ' ';
		printf("# control, no needle: %s [%s]%s\n", hit ? "RIGHT" :
		    "wrong", out, hit ? " (the test is void)" : "");
		runs[k].seen = 0;
		break;
	}
	for (uint32_t di = 0; di < depths; di++) {
		char needle[256], key[8], out[256];
		size_t n_n;
		snprintf(key, sizeof key, "%05d", 10000 + rand() % 90000);
		snprintf(needle, sizeof needle, t->needle, key, key);
		int32_t *nd = tok(v, needle, 0, &n_n);
		size_t body = length - n_pre - n_q - n_n;
		if (body > n_h)
			die("haystack too short for this length", 0);
		/* evenly from depth_min to depth_max; one depth: midway */
		double frac = depths > 1 ? depth_min + (depth_max - depth_min) *
		    di / (depths - 1) : (depth_min + depth_max) / 2;
		uint32_t at = (uint32_t)((double)body * frac);
		/* branch: haystack [at, body), needle first, question last */
		size_t nb = n_n + (body - at) + n_q;
		int32_t *br = malloc(nb * sizeof *br);
		memcpy(br, nd, n_n * sizeof *br);
		memcpy(br + n_n, h + at, (body - at) * sizeof *br);
		memcpy(br + n_n + (body - at), q, n_q * sizeof *br);
		if (dump)
			dump_seq(dump, di, t, key, pre, n_pre, h, at, br, nb);
		printf("depth %5.1f%% (token %u):", 100.0 * frac,
		    (unsigned)(n_pre + at));
		for (int k = 0; k < 2; k++) {
			struct run *r = &runs[k];
			if (!use[k])
				continue;
			double t0 = now_s();
			uint32_t want = (uint32_t)(n_pre + at);
			if (want > r->pos && (rc = eng_fwd_eval(r->f, r->kv,
			    h + (r->pos - n_pre), want - r->pos, 0, NULL,
			    NULL)))
				die("prefix", rc);
			r->pos = want;
			int hit = answer(r, v, br, (uint32_t)nb,
			    (uint32_t)n_q, (uint32_t)n_n, t, key, out,
			    sizeof out, k ? &sp : NULL);
			r->ok += hit;
			r->secs += now_s() - t0;
			printf("  %s %s", k ? "sparse" : "dense", hit ? "ok" :
			    "MISS");
			if (r->weight >= 0)
				printf(" (needle %.3f)", r->weight);
			else
				printf(" (needle not attended)");
			if (verbose || !hit) {
				for (char *c = out; *c; c++)
					if (*c == '\n')
						*c = ' ';
				printf(" [%s]", out);
			}
		}
		for (int i = 0; use[1] && i < n_variants; i++)
			printf("  %s %s (%.3f)", variant_name(&variants[i], name,
			    sizeof name), variants[i].hit ? "ok" : "MISS",
			    variants[i].weight);
		for (int i = 0; use[1] && i < n_variants; i++)
			if (!variants[i].hit) {
				for (char *c = variants[i].out; *c; c++)
					if (*c == '\n' || *c == '\t')
						*c = ' ';
				printf("\n    %s missed: [%s]", variant_name(
				    &variants[i], name, sizeof name),
				    variants[i].out);
			}
		printf("\n");
		for (int k = 0; k < 2 && verbose > 1; k++)
			if (use[k])
				printf("    %s attended %s\n", k ? "sparse" :
				    "dense", runs[k].top);
		fflush(stdout);
		free(br);
		free(nd);
	}
	for (int k = 0; k < 2; k++)
		if (use[k])
			printf("%s: %d/%u = %.1f%% in %.0f s; the question "
			    "attended the needle at %d depths\n", k ? "sparse" :
			    "dense", runs[k].ok, depths, 100.0 * runs[k].ok /
			    depths, runs[k].secs, runs[k].seen);
	for (int i = 0; use[1] && i < n_variants; i++)
		printf("sparse, %s: %d/%u = %.1f%%\n", variant_name(&variants[i],
		    name, sizeof name), variants[i].ok, depths,
		    100.0 * variants[i].ok / depths);
	for (int k = 0; k < 2; k++) {
		eng_kv_close(runs[k].kv);
		eng_fwd_close(runs[k].f);
	}
	free(h);
	free(pre);
	free(q);
	eng_model_close(m);
	return 0;
}
