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
 * --one-context puts every depth's needle (each a different one) in one
 * context, prefilled once, and asks for each on a clone of it.
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

/* --one-context: every needle in one context, each asked for in turn
 * (the others are distractors, as in RULER's multi-key test).  Needles
 * and questions differ by a vault's name (passkey) or a city and an odd
 * thing to do there (fact: no prior the model could answer from; not
 * San Francisco's, which the model has read in training and names for
 * any city once it is in the context). */
static const char *const vaults[] = { "Alpha", "Bravo", "Charlie", "Delta",
    "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliett", "Kilo", "Lima",
    "Mike", "November", "Oscar", "Papa", "Quebec", "Romeo", "Sierra",
    "Tango", "Uniform", "Victor", "Whiskey", "Yankee" };

static const struct place {
	const char *city, *what, *words[2];
} places[] = {
	{ "Quito", "climb the clock tower with a jar of honey",
	  { "clock tower", "honey" } },
	{ "Paris", "feed the pigeons with a blue spoon",
	  { "pigeons", "blue spoon" } },
	{ "Tokyo", "fly a red kite over the old harbour",
	  { "kite", "harbour" } },
	{ "Cairo", "play chess with a retired pilot", { "chess", "pilot" } },
	{ "Oslo", "paint a wooden boat yellow", { "wooden boat", "yellow" } },
	{ "Lima", "count the lanterns on the bridge",
	  { "lanterns", "bridge" } },
	{ "Dublin", "sing to the ducks in the canal", { "ducks", "canal" } },
	{ "Nairobi", "buy a copper kettle at the night market",
	  { "copper kettle", "night market" } },
	{ "Lisbon", "ride the tram with a basket of figs",
	  { "tram", "figs" } },
	{ "Seoul", "fold paper cranes by the river",
	  { "paper cranes", "river" } },
	{ "Toronto", "bake a cherry pie for the neighbours",
	  { "cherry pie", "neighbours" } },
	{ "Mumbai", "read poetry on a rooftop with a mango",
	  { "poetry", "mango" } },
	{ "Berlin", "repair old clocks in a courtyard",
	  { "clocks", "courtyard" } },
	{ "Sydney", "teach a parrot to whistle", { "parrot", "whistle" } },
	{ "Mexico City", "plant sunflowers in a school garden",
	  { "sunflowers", "school garden" } },
	{ "Istanbul", "row a green boat to the lighthouse",
	  { "green boat", "lighthouse" } },
	{ "Montreal", "knit a scarf while listening to jazz",
	  { "scarf", "jazz" } },
	{ "Vienna", "race snails on a marble table", { "snails", "marble" } },
	{ "Hanoi", "draw maps of imaginary islands",
	  { "maps", "imaginary islands" } },
	{ "Buenos Aires", "juggle oranges for the street dogs",
	  { "oranges", "street dogs" } },
	{ "Reykjavik", "collect black pebbles on the beach",
	  { "black pebbles", "beach" } },
	{ "Madrid", "whittle a flute from a willow branch",
	  { "flute", "willow" } },
	{ "Athens", "race paper boats in the fountain",
	  { "paper boats", "fountain" } },
	{ "Havana", "polish brass trumpets at the harbour",
	  { "brass trumpets", "harbour" } },
};
#define MAX_ONE (sizeof vaults / sizeof *vaults)

/* One needle and what asks for it: the texts, the passkey's key, and
 * the words a right answer holds (fact). */
struct probe {
	char needle[256], question[128], primer[96], key[8];
	const char *words[3];
};

/* Probe i of test t; one: of a context with several (--one-context). */
static void probe_make(const struct test *t, int one, uint32_t i,
    struct probe *p)
{
	snprintf(p->key, sizeof p->key, "%05d", 10000 + rand() % 90000);
	memset(p->words, 0, sizeof p->words);
	if (!one) {
		snprintf(p->needle, sizeof p->needle, t->needle, p->key,
		    p->key);
		snprintf(p->question, sizeof p->question, "%s", t->question);
		snprintf(p->primer, sizeof p->primer, "%s", t->primer);
		memcpy(p->words, t->words, sizeof p->words);
	} else if (!t->words[0]) {
		const char *n = vaults[i];
		snprintf(p->needle, sizeof p->needle, "\nThe pass key of the %s "
		    "vault is %s. Remember it. %s is the pass key of the %s "
		    "vault.\n", n, p->key, p->key, n);
		snprintf(p->question, sizeof p->question, "What is the pass key "
		    "of the %s vault?", n);
		snprintf(p->primer, sizeof p->primer, "The pass key of the %s "
		    "vault is", n);
	} else {
		const struct place *pl = &places[i];
		snprintf(p->needle, sizeof p->needle, "\nThe best thing to do in "
		    "%s is %s.\n", pl->city, pl->what);
		snprintf(p->question, sizeof p->question, "What is the best "
		    "thing to do in %s?", pl->city);
		snprintf(p->primer, sizeof p->primer, "The best thing to do in "
		    "%s is", pl->city);
		p->words[0] = pl->words[0];
		p->words[1] = pl->words[1];
	}
}

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
static int right(const struct probe *p, const char *out)
{
	if (!p->words[0])
		return strstr(out, p->key) != NULL;
	for (int i = 0; p->words[i]; i++)
		if (!holds(out, p->words[i]))
			return 0;
	return 1;
}

/* The question of p as ask frames it after a context ("\n\n", the
 * question, the model's turn), and the answer's start (primer). */
static int32_t *question(const eng_vocab *v, const struct probe *p,
    int primer, size_t *n)
{
	char buf[512];
	snprintf(buf, sizeof buf, "\n\n%s<end_of_turn>\n<start_of_turn>model\n",
	    p->question);
	int32_t *q = tok(v, buf, ENG_TOK_PARSE_SPECIAL, n);
	if (primer) {
		size_t n_p;
		int32_t *pt = tok(v, p->primer, 0, &n_p);
		int32_t *nq = realloc(q, (*n + n_p) * sizeof *q);
		if (!nq)
			die("out of memory", 0);
		q = nq;
		memcpy(q + *n, pt, n_p * sizeof *q);
		*n += n_p;
		free(pt);
	}
	return q;
}

/* Asks the question q (n_q tokens) of kv and reads the greedy answer;
 * the weight of the needle [p0, p0+n_n) in the question's attention goes
 * to *weight (-1: not attended). */
static int ask(eng_fwd *f, eng_kv *kv, const eng_vocab *v, const int32_t *q,
    uint32_t n_q, uint32_t p0, uint32_t n_n, const struct probe *pr,
    char *out, size_t outlen, float *weight, char *top, size_t toplen)
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
	return right(pr, out);
}

/* Greedy answer to seq (the branch after the prefix: what is left of
 * the context, then the question's n_q tokens) on a clone; the needle is
 * n_n tokens at p0.  With sp (the sparse run), each --variants setting
 * asks the same context. */
static int answer(struct run *r, const eng_vocab *v, const int32_t *seq,
    uint32_t n, uint32_t n_q, uint32_t p0, uint32_t n_n,
    const struct probe *pr, char *out, size_t outlen,
    const eng_sparse_params *sp)
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
		va->hit = ask(r->f, vk, v, seq + n - n_q, n_q, p0, n_n, pr,
		    va->out, sizeof va->out, &va->weight, top, sizeof top);
		va->ok += va->hit;
		eng_kv_close(vk);
		eng_fwd_set_sparse(r->f, sp);
	}
	hit = ask(r->f, kv, v, seq + n - n_q, n_q, p0, n_n, pr, out, outlen,
	    &r->weight, r->top, sizeof r->top);
	r->seen += r->weight >= 0;
	eng_kv_close(kv);
	return hit;
}

/* DIR/depth-NN.txt: what a right answer holds on the first line (the
 * key, or the fact's words joined by '|'), then every token id of
 * the depth's sequence (BOS and the turn's opening, the haystack before
 * the needle, the branch), one per line: for another engine to run the
 * same test (bench/needle/llama_dense.py). */
static void dump_seq(const char *dir, uint32_t di, const struct probe *p,
    const int32_t *pre, size_t n_pre, const int32_t *h, size_t at,
    const int32_t *br, size_t nb)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/depth-%02u.txt", dir, di);
	FILE *f = fopen(path, "w");
	if (!f)
		die("cannot write the --dump file", 0);
	if (!p->words[0])
		fprintf(f, "%s\n", p->key);
	for (int i = 0; p->words[i]; i++)
		fprintf(f, "%s%s", p->words[i], p->words[i + 1] ? "|" : "\n");
	for (size_t i = 0; i < n_pre; i++)
		fprintf(f, "%d\n", pre[i]);
	for (size_t i = 0; i < at; i++)
		fprintf(f, "%d\n", h[i]);
	for (size_t i = 0; i < nb; i++)
		fprintf(f, "%d\n", br[i]);
	if (fclose(f))
		die("cannot write the --dump file", 0);
}

/* What a run of needle shares across depths: the runs (dense, sparse),
 * the framing, the haystack, the flags that shape the output. */
struct bench {
	const eng_vocab *v;
	struct run runs[2];
	int use[2];
	int verbose, primer;
	const eng_sparse_params *sp;
	const int32_t *pre;
	size_t n_pre;
	const char *dump;
};

/* One depth: the probe asked of run k (seq, n, n_q, p0, n_n as answer()
 * takes them), timed, its answer in out. */
static int depth_run(struct bench *b, int k, const int32_t *seq, uint32_t n,
    uint32_t n_q, uint32_t p0, uint32_t n_n, const struct probe *pr,
    char *out, size_t outlen)
{
	struct run *r = &b->runs[k];
	double t0 = now_s();
	int hit = answer(r, b->v, seq, n, n_q, p0, n_n, pr, out, outlen,
	    k ? b->sp : NULL);
	for (char *c = out; *c; c++)
		if (*c == '\n' || *c == '\t')
			*c = ' ';
	r->ok += hit;
	r->secs += now_s() - t0;
	return hit;
}

/* The rest of a depth's line (after "depth F% (token N):"): each run's
 * verdict and needle share, the variants', the misses' answers. */
static void depth_print(const struct bench *b, const int hit[2],
    char out[2][256])
{
	char name[64];

	for (int k = 0; k < 2; k++) {
		const struct run *r = &b->runs[k];
		if (!b->use[k])
			continue;
		printf("  %s %s", k ? "sparse" : "dense", hit[k] ? "ok" : "MISS");
		if (r->weight >= 0)
			printf(" (needle %.3f)", r->weight);
		else
			printf(" (needle not attended)");
		if (b->verbose || !hit[k])
			printf(" [%s]", out[k]);
	}
	for (int i = 0; b->use[1] && i < n_variants; i++)
		printf("  %s %s (%.3f)", variant_name(&variants[i], name,
		    sizeof name), variants[i].hit ? "ok" : "MISS",
		    variants[i].weight);
	for (int i = 0; b->use[1] && i < n_variants; i++)
		if (!variants[i].hit) {
			for (char *c = variants[i].out; *c; c++)
				if (*c == '\n' || *c == '\t')
					*c = ' ';
			printf("\n    %s missed: [%s]", variant_name(
			    &variants[i], name, sizeof name), variants[i].out);
		}
	printf("\n");
	for (int k = 0; k < 2 && b->verbose > 1; k++)
		if (b->use[k])
			printf("    %s attended %s\n", k ? "sparse" : "dense",
			    b->runs[k].top);
	fflush(stdout);
}

/* The prefix of every run grown to want tokens (from the haystack h,
 * which follows the framing's n_pre tokens). */
static void grow(struct bench *b, const int32_t *h, uint32_t want)
{
	for (int k = 0; k < 2; k++) {
		struct run *r = &b->runs[k];
		int rc;
		if (!b->use[k] || want <= r->pos)
			continue;
		double t0 = now_s();
		if ((rc = eng_fwd_eval(r->f, r->kv, h + (r->pos - b->n_pre),
		    want - r->pos, 0, NULL, NULL)))
			die("prefix", rc);
		r->pos = want;
		r->secs += now_s() - t0;
	}
}

/* One needle per context: at each depth the shared prefix grows to the
 * needle, and a clone gets the needle, the rest of the haystack, and
 * the question (body: the haystack's share of the length). */
static void run_depths(struct bench *b, const int32_t *h, size_t body,
    const struct probe *pr, const double *frac, uint32_t depths)
{
	for (uint32_t di = 0; di < depths; di++) {
		char out[2][256] = { "", "" };
		int hit[2] = { 0, 0 };
		size_t n_n, n_q;
		int32_t *nd = tok(b->v, pr[di].needle, 0, &n_n);
		int32_t *q = question(b->v, &pr[di], b->primer, &n_q);
		uint32_t at = (uint32_t)((double)body * frac[di]);
		/* branch: haystack [at, body), needle first, question last */
		size_t nb = n_n + (body - at) + n_q;
		int32_t *br = malloc(nb * sizeof *br);
		if (!br)
			die("out of memory", 0);
		memcpy(br, nd, n_n * sizeof *br);
		memcpy(br + n_n, h + at, (body - at) * sizeof *br);
		memcpy(br + n_n + (body - at), q, n_q * sizeof *br);
		if (b->dump)
			dump_seq(b->dump, di, &pr[di], b->pre, b->n_pre, h, at,
			    br, nb);
		printf("depth %5.1f%% (token %u):", 100.0 * frac[di],
		    (unsigned)(b->n_pre + at));
		grow(b, h, (uint32_t)(b->n_pre + at));
		for (int k = 0; k < 2; k++)
			if (b->use[k])
				hit[k] = depth_run(b, k, br, (uint32_t)nb,
				    (uint32_t)n_q, b->runs[k].pos,
				    (uint32_t)n_n, &pr[di], out[k],
				    sizeof out[k]);
		depth_print(b, hit, out);
		free(br);
		free(q);
		free(nd);
	}
}

/* --one-context: every needle in one context (the haystack's first body
 * tokens, needle di before its token body * frac[di]), prefilled once;
 * then each question on a clone of it. */
static void run_one(struct bench *b, const int32_t *h, size_t body,
    const struct probe *pr, const double *frac, uint32_t depths)
{
	int32_t **nd = calloc(depths, sizeof *nd);
	size_t *n_n = calloc(depths, sizeof *n_n), len = 0, from = 0;
	uint32_t *p0 = calloc(depths, sizeof *p0);
	int32_t *ctx = NULL;

	for (uint32_t di = 0; nd && n_n && p0 && di < depths; di++)
		nd[di] = tok(b->v, pr[di].needle, 0, &n_n[di]), len += n_n[di];
	if (!nd || !n_n || !p0 || !(ctx = malloc((body + len) *
	    sizeof *ctx)))
		die("out of memory", 0);
	len = 0;
	for (uint32_t di = 0; di < depths; di++) {
		size_t at = (size_t)((double)body * frac[di]);
		memcpy(ctx + len, h + from, (at - from) * sizeof *ctx);
		len += at - from;
		from = at;
		p0[di] = (uint32_t)(b->n_pre + len);
		memcpy(ctx + len, nd[di], n_n[di] * sizeof *ctx);
		len += n_n[di];
	}
	memcpy(ctx + len, h + from, (body - from) * sizeof *ctx);
	len += body - from;
	grow(b, ctx, (uint32_t)(b->n_pre + len));
	for (int k = 0; k < 2; k++)
		if (b->use[k])
			printf("# %s: the context (%zu tokens, %u needles) "
			    "prefilled in %.0f s\n", k ? "sparse" : "dense",
			    b->n_pre + len, depths, b->runs[k].secs);
	fflush(stdout);
	for (uint32_t di = 0; di < depths; di++) {
		char out[2][256] = { "", "" };
		int hit[2] = { 0, 0 };
		size_t n_q;
		int32_t *q = question(b->v, &pr[di], b->primer, &n_q);
		if (b->dump)
			dump_seq(b->dump, di, &pr[di], b->pre, b->n_pre, ctx, len,
			    q, n_q);
		printf("depth %5.1f%% (token %u):", 100.0 * frac[di], p0[di]);
		for (int k = 0; k < 2; k++)
			if (b->use[k])
				hit[k] = depth_run(b, k, q, (uint32_t)n_q,
				    (uint32_t)n_q, p0[di], (uint32_t)n_n[di],
				    &pr[di], out[k], sizeof out[k]);
		depth_print(b, hit, out);
		free(q);
	}
	for (uint32_t di = 0; di < depths; di++)
		free(nd[di]);
	free(nd);
	free(n_n);
	free(p0);
	free(ctx);
}

/* The control: each question with no haystack and no needle (with
 * --one-context every one, else the first).  A model that answers it
 * right anyway (it has read the needle in training) makes the test
 * void.  The key of a passkey's control is 00000. */
static void control(struct bench *b, const struct probe *pr, uint32_t n)
{
	int k = b->use[0] ? 0 : 1, right_n = 0;
	char out[256] = "";

	for (uint32_t i = 0; b->use[k] && i < n; i++) {
		struct probe c = pr[i];
		size_t n_q;
		int32_t *q = question(b->v, &c, b->primer, &n_q);
		if (n == 1)
			snprintf(c.key, sizeof c.key, "00000");
		right_n += answer(&b->runs[k], b->v, q, (uint32_t)n_q,
		    (uint32_t)n_q, 0, 0, &c, out, sizeof out, NULL);
		free(q);
	}
	for (char *c = out; *c; c++)
		if (*c == '\n')
			*c = ' ';
	if (!b->use[k])
		return;
	if (n == 1)
		printf("# control, no needle: %s [%s]%s\n", right_n ? "RIGHT" :
		    "wrong", out, right_n ? " (the test is void)" : "");
	else
		printf("# control, no needle: %d of %u questions answered "
		    "right%s\n", right_n, n, right_n ? " (those depths are "
		    "void)" : "");
	b->runs[k].seen = 0;
}

int main(int argc, char **argv)
{
	const char *model = NULL, *hay = "filler", *dump = NULL;
	uint32_t length = 8192, depths = 20, threads = 2, rope_offset = 0;
	eng_sparse_params sp;
	int dense = 1, sparse = 1, verbose = 0, primer = 1, intro = 0, one = 0;
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
		else if (!strcmp(a, "--one-context")) one = 1;
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
			    "[--no-primer] [--one-context] "
			    "[--depth-min F] [--depth-max F] [--dump DIR] "
			    "[--rope-offset P] "
			    "[--variants K:R[:s][:x][:l[N]|:c[N]][,...]] "
			    "[-v|-vv]\n");
			return 2;
		}
	}
	if (!model || length < 256 || depths < 1)
		die("--model, --length >= 256 and --depths >= 1 are needed", 0);
	if (one && depths > MAX_ONE)
		die("--one-context takes at most 24 --depths", 0);

	eng_model *m;
	int rc;
	if ((rc = eng_model_open(model, &m, err, sizeof err)))
		die(err, rc);
	/* the output head packed, as engramd's default pack=1 */
	if ((rc = eng_model_pack(m, ENG_PACK_HEAD, (int)threads, NULL)))
		die("packing the model", rc);
	const eng_vocab *v = eng_model_vocab(m);

	/* The framing of a session (ops_ask.c); --intro: the passkey test's
	 * task line opens the context. */
	struct bench b = { .v = v, .use = { dense, sparse }, .verbose = verbose,
	    .primer = primer, .sp = &sp, .dump = dump };
	size_t n_pre, n_h;
	char buf[512];
	snprintf(buf, sizeof buf, "<start_of_turn>user\n%s", intro ? "There is "
	    "an important info hidden inside a lot of irrelevant text. Find it "
	    "and memorize them. I will quiz you about the important information "
	    "there.\n" : "");
	int32_t *pre = tok(v, buf, ENG_TOK_ADD_SPECIAL | ENG_TOK_PARSE_SPECIAL,
	    &n_pre);
	b.pre = pre;
	b.n_pre = n_pre;

	char *text = NULL;
	size_t tlen = 0;
	if (!strcmp(hay, "filler")) {
		static const char f[] = "The grass is green. The sky is blue. "
		    "The sun is yellow. Here we go. There and back again. ";
		size_t want = (size_t)length * 6;
		text = malloc(want + sizeof f);
		while (text && tlen < want) {
			memcpy(text + tlen, f, sizeof f - 1);
			tlen += sizeof f - 1;
		}
	} else {
		slurp(hay, &text, &tlen, (size_t)length * 8);
	}
	int32_t *h = NULL;
	if (!text)
		die("--haystack: no text file there", 0);
	if ((rc = eng_tokenize(v, text, tlen, 0, &h, &n_h)))
		die("haystack", rc);
	free(text);

	for (int k = 0; k < 2; k++) {
		eng_fwd_params p;
		eng_fwd_params_init(&p);
		p.n_threads = (int)threads;
		p.attn_mode = ENG_ATTN_F32;
		p.rope_offset = rope_offset;
		if (k == 1)
			p.sparse = sp;
		if (b.use[k] && (rc = eng_fwd_open(m, &p, &b.runs[k].f, err,
		    sizeof err)))
			die(err, rc);
	}

	/* The probes, their depths (evenly from depth_min to depth_max; one
	 * depth: midway), and the haystack's share of the length: what the
	 * framing, the longest question and the needles leave. */
	srand(12345);
	struct probe *pr = calloc(depths, sizeof *pr);
	double *frac = calloc(depths, sizeof *frac);
	size_t n_q_max = 0, n_n_all = 0, n_n_max = 0;
	if (!pr || !frac)
		die("out of memory", 0);
	for (uint32_t di = 0; di < depths; di++) {
		size_t nq, nn;
		probe_make(t, one, di, &pr[di]);
		free(question(v, &pr[di], primer, &nq));
		free(tok(v, pr[di].needle, 0, &nn));
		n_q_max = nq > n_q_max ? nq : n_q_max;
		n_n_max = nn > n_n_max ? nn : n_n_max;
		n_n_all += nn;
		frac[di] = depths > 1 ? depth_min + (depth_max - depth_min) *
		    di / (depths - 1) : (depth_min + depth_max) / 2;
	}
	size_t used = n_pre + n_q_max + (one ? n_n_all : n_n_max);
	if (used >= length)
		die("--length is too short for the framing and the needles", 0);
	size_t body = length - used;
	if (body > n_h)
		die("haystack too short for this length", 0);

	printf("# length %u, haystack %s, %u depths from %.1f%% to %.1f%%%s, "
	    "sparse top_k %u sink %u local %u prefill_local %u prefill_top_k %u "
	    "question_top_k %u dense_max %u reach %u%s scan_max %u\n", length,
	    hay, depths, 100 * depth_min, 100 * depth_max, one ? ", every "
	    "needle in one context" : "", sp.top_k, sp.sink, sp.local,
	    sp.prefill_local, sp.prefill_top_k ? sp.prefill_top_k : sp.top_k,
	    sp.question_top_k ? sp.question_top_k : sp.top_k, sp.dense_max,
	    sp.reach, sp.reach ? "" : " (trained context)", sp.scan_max);
	printf("# test %s%s, answer primed with \"%s\": %s\n", t->name,
	    intro ? " with the task line" : "", pr[0].primer, primer ? "yes" :
	    "no");
	if (rope_offset)
		printf("# RoPE positions offset by %u\n", rope_offset);
	for (int k = 0; k < 2; k++) {
		if (!b.use[k])
			continue;
		if ((rc = eng_kv_mem_open(m, length + 64, 512, ENG_TYPE_F16,
		    &b.runs[k].kv)) || (rc = eng_kv_mem_summaries(b.runs[k].kv,
		    64)) || (rc = eng_fwd_eval(b.runs[k].f, b.runs[k].kv, pre,
		    (uint32_t)n_pre, 0, NULL, NULL)))
			die("prefix", rc);
		b.runs[k].pos = (uint32_t)n_pre;
	}
	control(&b, pr, one ? depths : 1);
	if (one)
		run_one(&b, h, body, pr, frac, depths);
	else
		run_depths(&b, h, body, pr, frac, depths);

	for (int k = 0; k < 2; k++)
		if (b.use[k])
			printf("%s: %d/%u = %.1f%% in %.0f s; the question "
			    "attended the needle at %d depths\n", k ? "sparse" :
			    "dense", b.runs[k].ok, depths, 100.0 * b.runs[k].ok /
			    depths, b.runs[k].secs, b.runs[k].seen);
	for (int i = 0; b.use[1] && i < n_variants; i++)
		printf("sparse, %s: %d/%u = %.1f%%\n", variant_name(&variants[i],
		    name, sizeof name), variants[i].ok, depths,
		    100.0 * variants[i].ok / depths);
	for (int k = 0; k < 2; k++) {
		eng_kv_close(b.runs[k].kv);
		eng_fwd_close(b.runs[k].f);
	}
	free(pr);
	free(frac);
	free(h);
	free(pre);
	eng_model_close(m);
	return 0;
}
