/* model.c - a model's description: hyperparameters of the architectures we
 * run (gemma3, llama, qwen2) read from GGUF metadata, its tokenizer, and the
 * facts `engramctl model` shows (name, parameter count, tensor types,
 * fingerprint).  Key names follow llama.cpp's src/llama-arch.cpp.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "eng_internal.h"

struct eng_model {
	eng_gguf      *gguf;	/* owned */
	eng_vocab     *vocab;	/* owned; borrows gguf */
	eng_hparams    hp;
	eng_model_info info;
	char           arch[32];	/* general.architecture */
	char          *name;	/* general.name, owned */
	struct eng__packs *packs;	/* owned (freed by packs->free); NULL
					 * until eng_model_pack packs one */
};

static const struct {
	const char *name;
	eng_arch    arch;
} archs[] = {
	{ "gemma3", ENG_ARCH_GEMMA3 },
	{ "llama",  ENG_ARCH_LLAMA },
	{ "qwen2",  ENG_ARCH_QWEN2 },
};

/* ------------------------------------------------------------------------
 * Hyperparameters
 * ------------------------------------------------------------------------ */

/* Read "{arch}.{suffix}" as u32 into *out.  A missing key is an error when
 * required, else *out keeps its default. */
static int hp_u32(const eng_model *m, const char *suffix, uint32_t *out,
    int required, char *err, size_t errlen)
{
	char key[128];
	int rc;

	snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
	rc = eng_gguf_get_u32(m->gguf, key, out);
	if (rc == ENG_ENOKEY && !required)
		return 0;
	if (rc == ENG_ENOKEY)
		return eng__err(err, errlen, rc,
		    "architecture '%s': required key '%s' missing", m->arch,
		    key);
	if (rc)
		return eng__err(err, errlen, rc,
		    "key '%s': not an unsigned 32-bit integer (%s)", key,
		    eng_errname(rc));
	return 0;
}

static int hp_f32(const eng_model *m, const char *suffix, float *out,
    int required, char *err, size_t errlen)
{
	char key[128];
	int rc;

	snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
	rc = eng_gguf_get_f32(m->gguf, key, out);
	if (rc == ENG_ENOKEY && !required)
		return 0;
	if (rc == ENG_ENOKEY)
		return eng__err(err, errlen, rc,
		    "architecture '%s': required key '%s' missing", m->arch,
		    key);
	if (rc)
		return eng__err(err, errlen, rc, "key '%s': not a float (%s)",
		    key, eng_errname(rc));
	return 0;
}

static int read_rope_scaling(eng_model *m, char *err, size_t errlen)
{
	eng_hparams *hp = &m->hp;
	const char *s;
	size_t len;
	char key[128];
	int rc;

	hp->rope_scaling = ENG_ROPE_SCALING_NONE;
	hp->rope_scale_factor = 1.0f;
	snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch);
	rc = eng_gguf_get_str(m->gguf, key, &s, &len);
	if (rc == 0) {
		if (len == 4 && !memcmp(s, "none", 4))
			hp->rope_scaling = ENG_ROPE_SCALING_NONE;
		else if (len == 6 && !memcmp(s, "linear", 6))
			hp->rope_scaling = ENG_ROPE_SCALING_LINEAR;
		else if (len == 4 && !memcmp(s, "yarn", 4))
			hp->rope_scaling = ENG_ROPE_SCALING_YARN;
		else if (len == 6 && !memcmp(s, "llama3", 6))
			hp->rope_scaling = ENG_ROPE_SCALING_LLAMA3;
		else
			return eng__err(err, errlen, ENG_EUNSUP,
			    "key '%s': unsupported rope scaling '%.*s'", key,
			    (int)(len > 32 ? 32 : len), s);
	} else if (rc != ENG_ENOKEY) {
		return eng__err(err, errlen, rc, "key '%s': not a string",
		    key);
	}
	if ((rc = hp_f32(m, "rope.scaling.factor", &hp->rope_scale_factor, 0,
	    err, errlen)))
		return rc;
	if ((rc = hp_u32(m, "rope.scaling.original_context_length",
	    &hp->rope_orig_ctx, 0, err, errlen)))
		return rc;
	/* Llama 3.1 GGUFs carry the llama3 scaling as precomputed per-dim
	 * factors in a tensor instead of metadata. */
	hp->has_rope_freqs = eng_gguf_tensor_find(m->gguf,
	    "rope_freqs.weight") != NULL;
	if (hp->has_rope_freqs && hp->rope_scaling == ENG_ROPE_SCALING_NONE)
		hp->rope_scaling = ENG_ROPE_SCALING_LLAMA3;
	if (!(hp->rope_scale_factor > 0.0f))
		return eng__err(err, errlen, ENG_ERANGE,
		    "%s.rope.scaling.factor must be positive", m->arch);
	return 0;
}

static int read_hparams(eng_model *m, char *err, size_t errlen)
{
	eng_hparams *hp = &m->hp;
	int rc;

	if ((rc = hp_u32(m, "context_length", &hp->n_ctx_train, 1, err,
	    errlen)) ||
	    (rc = hp_u32(m, "embedding_length", &hp->n_embd, 1, err,
	    errlen)) ||
	    (rc = hp_u32(m, "block_count", &hp->n_layer, 1, err, errlen)) ||
	    (rc = hp_u32(m, "feed_forward_length", &hp->n_ff, 1, err,
	    errlen)) ||
	    (rc = hp_u32(m, "attention.head_count", &hp->n_head, 1, err,
	    errlen)) ||
	    (rc = hp_f32(m, "attention.layer_norm_rms_epsilon", &hp->rms_eps,
	    1, err, errlen)))
		return rc;
	if (hp->n_head == 0 || hp->n_embd == 0 || hp->n_layer == 0 ||
	    hp->n_ff == 0 || hp->n_ctx_train == 0)
		return eng__err(err, errlen, ENG_ERANGE,
		    "architecture '%s': zero layer count, width, heads, FFN "
		    "or context length", m->arch);
	hp->n_head_kv = hp->n_head;
	hp->head_dim_k = hp->n_embd / hp->n_head;
	if ((rc = hp_u32(m, "attention.head_count_kv", &hp->n_head_kv, 0, err,
	    errlen)) ||
	    (rc = hp_u32(m, "attention.key_length", &hp->head_dim_k, 0, err,
	    errlen)))
		return rc;
	hp->head_dim_v = hp->head_dim_k;
	hp->n_rot = hp->head_dim_k;
	hp->rope_base = 10000.0f;
	if ((rc = hp_u32(m, "attention.value_length", &hp->head_dim_v, 0, err,
	    errlen)) ||
	    (rc = hp_u32(m, "rope.dimension_count", &hp->n_rot, 0, err,
	    errlen)) ||
	    (rc = hp_f32(m, "rope.freq_base", &hp->rope_base, 0, err,
	    errlen)))
		return rc;
	if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv ||
	    hp->head_dim_k == 0 || hp->head_dim_v == 0 ||
	    hp->n_rot > hp->head_dim_k || hp->n_rot % 2)
		return eng__err(err, errlen, ENG_ERANGE,
		    "architecture '%s': inconsistent heads (%u query, %u kv, "
		    "key dim %u, value dim %u, rope dims %u)", m->arch,
		    hp->n_head, hp->n_head_kv, hp->head_dim_k, hp->head_dim_v,
		    hp->n_rot);
	if (!(hp->rms_eps > 0.0f) || !(hp->rope_base > 0.0f))
		return eng__err(err, errlen, ENG_ERANGE,
		    "architecture '%s': rms epsilon and rope base must be "
		    "positive", m->arch);
	hp->rope_base_local = hp->rope_base;
	if (hp->arch == ENG_ARCH_GEMMA3) {
		/* llama.cpp's loader fixes these for Gemma 3; they are not in
		 * the file (src/llama-model.cpp, LLM_ARCH_GEMMA3). */
		hp->swa_pattern = 6;
		hp->rope_base_local = 10000.0f;
		if ((rc = hp_u32(m, "attention.sliding_window",
		    &hp->sliding_window, 1, err, errlen)))
			return rc;
		if (hp->sliding_window == 0)
			return eng__err(err, errlen, ENG_ERANGE,
			    "gemma3.attention.sliding_window is 0");
	}
	return read_rope_scaling(m, err, errlen);
}

/* ------------------------------------------------------------------------
 * Info and fingerprint
 * ------------------------------------------------------------------------ */

static void fill_info(eng_model *m)
{
	eng_model_info *in = &m->info;
	uint32_t per_type[64] = { 0 };
	size_t i, n;
	const void *bytes;
	XXH3_state_t st;
	XXH128_canonical_t c;

	in->name = m->name;
	in->arch = m->arch;
	in->n_ctx_train = m->hp.n_ctx_train;
	in->n_vocab = m->hp.n_vocab;
	for (i = 0; i < eng_gguf_tensor_count(m->gguf); i++) {
		const eng_gguf_tensor *t = eng_gguf_tensor_at(m->gguf, i);
		in->n_params += t->n_elements;
		per_type[t->type]++;	/* ids < 64: checked by the reader */
	}
	for (i = 0; i < 64 && in->n_types < 16; i++)
		if (per_type[i]) {
			in->types[in->n_types].type = (eng_type)i;
			in->types[in->n_types].n_tensors = per_type[i];
			in->n_types++;
		}

	/* Streaming so that the hash never needs more than the map. */
	bytes = eng_gguf_bytes(m->gguf, &n);
	in->file_size = n;
	XXH3_128bits_reset(&st);
	XXH3_128bits_update(&st, bytes, n);
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&st));
	for (i = 0; i < 16; i++)
		snprintf(in->fingerprint + 2 * i, 3, "%02x", c.digest[i]);
}

/* ------------------------------------------------------------------------
 * Open / close
 * ------------------------------------------------------------------------ */

int eng_model_open_gguf(eng_gguf *g, eng_model **out, char *err,
    size_t errlen)
{
	eng_model *m = NULL;
	const char *s;
	size_t len, i;
	int rc;

	if (!g || !out) {
		eng_gguf_close(g);
		return eng__err(err, errlen, ENG_EINVAL, "invalid argument");
	}
	*out = NULL;
	if (!(m = calloc(1, sizeof *m))) {
		eng_gguf_close(g);
		return ENG_ENOMEM;
	}
	m->gguf = g;
	rc = eng_gguf_get_str(g, "general.architecture", &s, &len);
	if (rc) {
		rc = eng__err(err, errlen, rc == ENG_ENOKEY ? ENG_ENOKEY :
		    ENG_EFORMAT, "required key 'general.architecture' %s",
		    rc == ENG_ENOKEY ? "missing" : "is not a string");
		goto fail;
	}
	for (i = 0; i < sizeof archs / sizeof archs[0]; i++)
		if (strlen(archs[i].name) == len &&
		    !memcmp(archs[i].name, s, len))
			break;
	if (i == sizeof archs / sizeof archs[0]) {
		rc = eng__err(err, errlen, ENG_EUNSUP,
		    "unsupported architecture '%.*s' (supported: gemma3, "
		    "llama, qwen2)", (int)(len > 64 ? 64 : len), s);
		goto fail;
	}
	m->hp.arch = archs[i].arch;
	snprintf(m->arch, sizeof m->arch, "%s", archs[i].name);
	if (eng_gguf_get_str(g, "general.name", &s, &len) != 0) {
		s = "";
		len = 0;
	}
	if (!(m->name = malloc(len + 1))) {
		rc = ENG_ENOMEM;
		goto fail;
	}
	memcpy(m->name, s, len);
	m->name[len] = 0;
	if ((rc = read_hparams(m, err, errlen)))
		goto fail;
	if ((rc = eng_vocab_open(g, &m->vocab, err, errlen)))
		goto fail;
	m->hp.n_vocab = eng_vocab_size(m->vocab);
	fill_info(m);
	*out = m;
	return 0;
fail:
	eng_model_close(m);
	return rc;
}

int eng_model_open(const char *path, eng_model **out, char *err,
    size_t errlen)
{
	eng_gguf *g;
	int rc;

	if (!path || !out)
		return eng__err(err, errlen, ENG_EINVAL, "invalid argument");
	*out = NULL;
	if ((rc = eng_gguf_open(path, &g, err, errlen)))
		return rc;
	return eng_model_open_gguf(g, out, err, errlen);
}

/* ------------------------------------------------------------------------
 * Packed matrices: pack.c makes them (eng_model_pack); the model keeps
 * the table and hands it to its free function at close.
 * ------------------------------------------------------------------------ */

struct eng__packs **eng__model_packs(eng_model *m)
{
	return &m->packs;
}

const struct eng_qpack *eng__model_pack_of(const eng_model *m,
    const void *data)
{
	for (size_t i = 0; m && m->packs && i < m->packs->n; i++)
		if (m->packs->v[i].data == data)
			return m->packs->v[i].pack;
	return NULL;
}

void eng_model_close(eng_model *m)
{
	if (!m)
		return;
	if (m->packs)
		m->packs->free(m->packs);
	eng_vocab_close(m->vocab);
	eng_gguf_close(m->gguf);
	free(m->name);
	free(m);
}

const eng_hparams *eng_model_hparams(const eng_model *m)
{
	return &m->hp;
}

int eng_hparams_layer_global(const eng_hparams *hp, uint32_t il)
{
	return !hp->swa_pattern || !hp->sliding_window ||
	    (il + 1) % hp->swa_pattern == 0;
}

uint32_t eng_hparams_n_global(const eng_hparams *hp)
{
	uint32_t n = 0;
	for (uint32_t il = 0; il < hp->n_layer; il++)
		n += (uint32_t)eng_hparams_layer_global(hp, il);
	return n;
}

const eng_model_info *eng_model_info_get(const eng_model *m)
{
	return &m->info;
}

const eng_gguf *eng_model_gguf(const eng_model *m)
{
	return m->gguf;
}

const eng_vocab *eng_model_vocab(const eng_model *m)
{
	return m->vocab;
}
