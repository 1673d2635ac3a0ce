/* pack.c - a model's matrices packed once for decode (eng_model_pack):
 * each in the interleaved layout of its integer kernels (eng_qpack,
 * matmul.c), in a table the model owns (eng__packs, model.c), found by
 * the forward pass through the tensor's data pointer when it opens.
 *
 * Invariants:
 *  - The table is written only here, before any eng_fwd opens on the
 *    model (engine.h), and read-only afterwards.
 *  - A packed tensor's pages of the mapped file are released at once: the
 *    pack serves every product with it (a head tied to the embeddings is
 *    still read a row per token through the map).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "eng_internal.h"
#include "kernels.h"

static void packs_free(struct eng__packs *p)
{
	for (size_t i = 0; i < p->n; i++)
		eng_qpack_free(p->v[i].pack);
	free(p->v);
	free(p);
}

/* The 2-D tensor t as a matrix, if the kernels take its type. */
static int tensor_mat(const eng_gguf_tensor *t, eng_qmat *w)
{
	size_t rb;

	memset(w, 0, sizeof *w);
	if (t->n_dims != 2 || t->ne[0] > INT64_MAX || t->ne[1] > INT64_MAX ||
	    eng_row_bytes(t->type, (int64_t)t->ne[0], &rb) ||
	    t->ne[1] > t->n_bytes / (rb ? rb : 1))
		return 0;
	w->type = t->type;
	w->n_cols = (int64_t)t->ne[0];
	w->n_rows = (int64_t)t->ne[1];
	w->row_stride = rb;
	w->data = t->data;
	return 1;
}

/* Packs t (if its type and the CPU allow) into the model's table and
 * releases its pages.  With narrow set, only where the pack is at most
 * ~1/8 larger than the file's matrix (q8_0; q5_0 at its 5 bits): packs
 * that widen 4- or 6-bit quants to bytes were measured no faster, being
 * read at every step. */
static int pack_tensor(eng_model *m, const eng_gguf_tensor *t,
    eng_pool *pool, int narrow)
{
	struct eng__packs **pp = eng__model_packs(m);
	eng_qpack *p;
	eng_qmat w;
	void *nv;
	int rc;

	if (!tensor_mat(t, &w) || eng__model_pack_of(m, t->data))
		return 0;
	if (narrow) {
		const eng_gemm *g = eng_gemm_get_whole(w.type, eng_simd_active());
		if (!g || eng_gemm_pack_bytes(g, w.n_cols) / ENG_GEMM_ROWS * 8 >
		    w.row_stride * 9)
			return 0;
	}
	if (!*pp) {
		if (!(*pp = calloc(1, sizeof **pp)))
			return ENG_ENOMEM;
		(*pp)->free = packs_free;
	}
	rc = eng_qpack_make(&w, pool, &p);
	if (rc == ENG_EUNSUP || rc == ENG_EINVAL)
		return 0;	/* left as it is */
	if (rc)
		return rc;
	if (!(nv = realloc((*pp)->v, ((*pp)->n + 1) * sizeof *(*pp)->v))) {
		eng_qpack_free(p);
		return ENG_ENOMEM;
	}
	(*pp)->v = nv;
	(*pp)->v[(*pp)->n].data = t->data;
	(*pp)->v[(*pp)->n++].pack = p;
	eng_gguf_release(eng_model_gguf(m), t->data,
	    (size_t)w.n_rows * w.row_stride);
	return 0;
}

int eng_model_pack(eng_model *m, unsigned what, int n_threads,
    size_t *bytes)
{
	const eng_gguf *g;
	const eng_gguf_tensor *t;
	struct eng__packs *p;
	eng_pool *pool = NULL;
	int rc = 0;

	if (bytes)
		*bytes = 0;
	if (!m || n_threads < 0 || (what & ~(ENG_PACK_HEAD | ENG_PACK_LAYERS)))
		return ENG_EINVAL;
	if (eng_simd_active() < ENG_SIMD_AVX512)
		return 0;	/* no interleaved kernels here */
	if (n_threads != 1 && (rc = eng_pool_open(&pool, n_threads)))
		return rc;
	g = eng_model_gguf(m);
	if (what & ENG_PACK_HEAD) {
		t = eng_gguf_tensor_find(g, "output.weight");
		if (!t)
			t = eng_gguf_tensor_find(g, "token_embd.weight");
		if (t)
			rc = pack_tensor(m, t, pool, 0);
	}
	for (size_t i = 0; !rc && (what & ENG_PACK_LAYERS) &&
	    i < eng_gguf_tensor_count(g); i++) {
		t = eng_gguf_tensor_at(g, i);
		if (!strncmp(t->name, "blk.", 4))
			rc = pack_tensor(m, t, pool, 1);
	}
	eng_pool_close(pool);
	p = *eng__model_packs(m);
	for (size_t i = 0; bytes && p && i < p->n; i++)
		*bytes += eng_qpack_bytes(p->v[i].pack);
	return rc;
}
