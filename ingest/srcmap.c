/* srcmap.c - the source map: contiguous, ascending token spans, each
 * naming a document, page and line range; lookup by binary search. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "ingest.h"

void ing_srcmap_init(ing_srcmap *m)
{
	memset(m, 0, sizeof(*m));
}

void ing_srcmap_free(ing_srcmap *m)
{
	if (!m)
		return;
	free(m->v);
	memset(m, 0, sizeof(*m));
}

int ing_srcmap_append(ing_srcmap *m, const ing_span *sp)
{
	if (!m || !sp || sp->token_end < sp->token_start)
		return ING_EINVAL;
	if (sp->token_end == sp->token_start)
		return 0;
	if (m->n && m->v[m->n - 1].token_end != sp->token_start)
		return ING_EINVAL;
	if (m->n == m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 256;
		ing_span *nv = realloc(m->v, nc * sizeof(*nv));
		if (!nv)
			return ING_ENOMEM;
		m->v = nv;
		m->cap = nc;
	}
	m->v[m->n++] = *sp;
	return 0;
}

int ing_srcmap_lookup(const ing_srcmap *m, uint64_t pos, size_t *index)
{
	size_t lo = 0, hi;

	if (!m || !index)
		return ING_EINVAL;
	if (!m->n || pos < m->v[0].token_start || pos >= m->v[m->n - 1].token_end)
		return ING_ERANGE;
	/* First span whose end is past pos: spans are contiguous, so it
	 * holds pos. */
	hi = m->n - 1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->v[mid].token_end <= pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	*index = lo;
	return 0;
}

void ing_srcmap_truncate(ing_srcmap *m, uint64_t pos)
{
	if (!m)
		return;
	while (m->n && m->v[m->n - 1].token_start >= pos)
		m->n--;
	if (m->n && m->v[m->n - 1].token_end > pos)
		m->v[m->n - 1].token_end = pos;
}
