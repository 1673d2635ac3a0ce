/* manifest.c - manifests (what a run put in the stream), their binary
 * encoding, and the diff that finds the unchanged prefix of the stream.
 *
 * Encoding, little-endian: "EGIM" u32 version(1) u64 tokenizer_id
 * u64 settings_id u32 framing_version u64 token_base u64 token_end
 * u32 n_docs u64 n; n entries of { u32 path_len, path bytes, u64 hash,
 * u64 size, i64 mtime_ns, u64 ino, u64 token_start, u64 token_end,
 * i32 status, u32 doc_index }; then u64 XXH3-64 of everything before. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "ing_internal.h"

#define MAGIC "EGIM"
#define MAN_VERSION 1
#define ENTRY_FIXED (4 + 8 * 6 + 4 + 4)
#define MAX_PATH_LEN (1u << 16)

void ing_manifest_init(ing_manifest *m)
{
	memset(m, 0, sizeof(*m));
	m->framing_version = ING_FRAMING_VERSION;
}

void ing_manifest_free(ing_manifest *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].path);
	free(m->v);
	ing_manifest_init(m);
}

int ing__manifest_add(ing_manifest *m, const ing_manifest_entry *e)
{
	if (m->n == m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 64;
		ing_manifest_entry *nv = realloc(m->v, nc * sizeof(*nv));
		if (!nv)
			return ING_ENOMEM;
		m->v = nv;
		m->cap = nc;
	}
	m->v[m->n] = *e;
	if (!(m->v[m->n].path = strdup(e->path ? e->path : "")))
		return ING_ENOMEM;
	m->n++;
	return 0;
}

int ing__status_is_content(int status)
{
	switch (status) {
	case 0: case ING_EBINARY: case ING_EFORMAT: case ING_ENOTEXT:
	case ING_EBOMB: case ING_EENCRYPTED: case ING_ETOOBIG:
		return 1;
	}
	return 0;
}

int ing__entry_same(const ing_manifest_entry *a, const ing_manifest_entry *b)
{
	if (strcmp(a->path, b->path) || a->status != b->status)
		return 0;
	if (a->status == 0)
		return a->hash == b->hash;
	if (a->hash && b->hash)
		return a->hash == b->hash;
	return a->size == b->size && a->mtime_ns == b->mtime_ns;
}

/* ---- encoding ---- */

static void put32(unsigned char **p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		*(*p)++ = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char **p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		*(*p)++ = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char **p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)(*p)[i] << (8 * i);
	*p += 4;
	return v;
}

static uint64_t get64(const unsigned char **p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)(*p)[i] << (8 * i);
	*p += 8;
	return v;
}

#define HEAD_LEN (4 + 4 + 8 + 8 + 4 + 8 + 8 + 4 + 8)

int ing_manifest_encode(const ing_manifest *m, void **buf, size_t *len)
{
	size_t total = HEAD_LEN + 8;
	unsigned char *b, *p;

	if (!m || !buf || !len)
		return ING_EINVAL;
	for (size_t i = 0; i < m->n; i++) {
		size_t pl = strlen(m->v[i].path);
		if (pl > MAX_PATH_LEN)
			return ING_ERANGE;
		total += ENTRY_FIXED + pl;
	}
	if (!(b = malloc(total)))
		return ING_ENOMEM;
	p = b;
	memcpy(p, MAGIC, 4);
	p += 4;
	put32(&p, MAN_VERSION);
	put64(&p, m->tokenizer_id);
	put64(&p, m->settings_id);
	put32(&p, m->framing_version);
	put64(&p, m->token_base);
	put64(&p, m->token_end);
	put32(&p, m->n_docs);
	put64(&p, m->n);
	for (size_t i = 0; i < m->n; i++) {
		const ing_manifest_entry *e = &m->v[i];
		size_t pl = strlen(e->path);
		put32(&p, (uint32_t)pl);
		memcpy(p, e->path, pl);
		p += pl;
		put64(&p, e->hash);
		put64(&p, e->size);
		put64(&p, (uint64_t)e->mtime_ns);
		put64(&p, e->ino);
		put64(&p, e->token_start);
		put64(&p, e->token_end);
		put32(&p, (uint32_t)e->status);
		put32(&p, e->doc_index);
	}
	put64(&p, XXH3_64bits(b, (size_t)(p - b)));
	*buf = b;
	*len = total;
	return 0;
}

int ing_manifest_decode(const void *buf, size_t len, ing_manifest *out)
{
	const unsigned char *p = buf, *end;
	ing_manifest m;
	uint64_t n;
	int rc = ING_EFORMAT;

	if (!out || (!buf && len))
		return ING_EINVAL;
	if (len < HEAD_LEN + 8 || memcmp(p, MAGIC, 4))
		return ING_EFORMAT;
	end = p + len - 8;
	{
		const unsigned char *q = end;
		if (get64(&q) != XXH3_64bits(buf, len - 8))
			return ING_EFORMAT;
	}
	ing_manifest_init(&m);
	p += 4;
	if (get32(&p) != MAN_VERSION)
		return ING_EFORMAT;
	m.tokenizer_id = get64(&p);
	m.settings_id = get64(&p);
	m.framing_version = get32(&p);
	m.token_base = get64(&p);
	m.token_end = get64(&p);
	m.n_docs = get32(&p);
	n = get64(&p);
	/* Each entry takes at least ENTRY_FIXED bytes: bound n by the input
	 * before trusting it. */
	if (n > (size_t)(end - p) / ENTRY_FIXED)
		return ING_EFORMAT;
	for (uint64_t i = 0; i < n; i++) {
		ing_manifest_entry e;
		if ((size_t)(end - p) < ENTRY_FIXED)
			goto fail;
		uint32_t pl = get32(&p);
		if (pl > MAX_PATH_LEN || (size_t)(end - p) < pl + ENTRY_FIXED - 4 ||
		    memchr(p, '\0', pl))
			goto fail;
		char *path = strndup((const char *)p, pl);
		if (!path) {
			rc = ING_ENOMEM;
			goto fail;
		}
		p += pl;
		e.path = path;
		e.hash = get64(&p);
		e.size = get64(&p);
		e.mtime_ns = (int64_t)get64(&p);
		e.ino = get64(&p);
		e.token_start = get64(&p);
		e.token_end = get64(&p);
		e.status = (int32_t)get32(&p);
		e.doc_index = get32(&p);
		rc = ing__manifest_add(&m, &e);
		free(path);
		if (rc < 0)
			goto fail;
		rc = ING_EFORMAT;
		if (e.token_end < e.token_start)
			goto fail;
	}
	if (p != end)
		goto fail;
	ing_manifest_free(out);
	*out = m;
	return 0;
fail:
	ing_manifest_free(&m);
	return rc;
}

/* ---- diff ---- */

void ing_diff_free(ing_diff *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].path);
	free(d->v);
	memset(d, 0, sizeof(*d));
}

static int diff_add(ing_diff *d, size_t *cap, const char *path,
		    enum ing_change_kind kind)
{
	if (d->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 32;
		ing_change *nv = realloc(d->v, nc * sizeof(*nv));
		if (!nv)
			return ING_ENOMEM;
		d->v = nv;
		*cap = nc;
	}
	if (!(d->v[d->n].path = strdup(path)))
		return ING_ENOMEM;
	d->v[d->n++].kind = kind;
	switch (kind) {
	case ING_CHANGE_ADDED: d->n_added++; break;
	case ING_CHANGE_REMOVED: d->n_removed++; break;
	case ING_CHANGE_MODIFIED: d->n_modified++; break;
	case ING_CHANGE_MOVED: d->n_moved++; break;
	}
	return 0;
}

struct ref { const ing_manifest_entry *e; size_t pos; };

static int cmp_ref(const void *a, const void *b)
{
	return strcmp(((const struct ref *)a)->e->path,
		      ((const struct ref *)b)->e->path);
}

static struct ref *sorted_refs(const ing_manifest *m)
{
	struct ref *r = malloc((m->n + 1) * sizeof(*r));
	if (!r)
		return NULL;
	for (size_t i = 0; i < m->n; i++) {
		r[i].e = &m->v[i];
		r[i].pos = i;
	}
	qsort(r, m->n, sizeof(*r), cmp_ref);
	return r;
}

int ing_manifest_diff(const ing_manifest *old, const ing_manifest *cur,
		      ing_diff *out)
{
	ing_manifest empty;
	struct ref *ro = NULL, *rc_ = NULL;
	size_t cap = 0, i = 0, j = 0;
	int rc = ING_ENOMEM;

	if (!cur || !out)
		return ING_EINVAL;
	memset(out, 0, sizeof(*out));
	if (!old) {
		ing_manifest_init(&empty);
		empty.token_base = cur->token_base;
		old = &empty;
	}
	int compatible = old->tokenizer_id == cur->tokenizer_id &&
			 old->settings_id == cur->settings_id &&
			 old->framing_version == cur->framing_version &&
			 old->token_base == cur->token_base;
	out->prefix_tokens = cur->token_base;
	if (compatible) {
		size_t k = 0;
		while (k < old->n && k < cur->n &&
		       ing__entry_same(&old->v[k], &cur->v[k]) &&
		       old->v[k].token_start == cur->v[k].token_start &&
		       old->v[k].token_end == cur->v[k].token_end) {
			if (old->v[k].status == 0) {
				out->prefix_docs++;
				out->prefix_tokens = old->v[k].token_end;
			}
			k++;
		}
		out->prefix_entries = k;
	}
	if (!(ro = sorted_refs(old)) || !(rc_ = sorted_refs(cur)))
		goto fail;
	while (i < old->n || j < cur->n) {
		int c = i >= old->n ? 1 : j >= cur->n ? -1 :
			strcmp(ro[i].e->path, rc_[j].e->path);
		int r = 0;
		/* A skipped file (binary, too big...) is in the manifest, so
		 * that the next run can tell it is unchanged, but it is not a
		 * document: it is neither added nor removed. */
		int od = c <= 0 && ro[i].e->status == 0;
		int cd = c >= 0 && rc_[j].e->status == 0;
		if (c < 0) {
			r = od ? diff_add(out, &cap, ro[i].e->path, ING_CHANGE_REMOVED) : 0;
			i++;
		} else if (c > 0) {
			r = cd ? diff_add(out, &cap, rc_[j].e->path, ING_CHANGE_ADDED) : 0;
			j++;
		} else if (!od || !cd) {
			if (od != cd)
				r = diff_add(out, &cap, rc_[j].e->path,
					     cd ? ING_CHANGE_ADDED : ING_CHANGE_REMOVED);
			i++;
			j++;
		} else {
			if (!ing__entry_same(ro[i].e, rc_[j].e))
				r = diff_add(out, &cap, rc_[j].e->path, ING_CHANGE_MODIFIED);
			else if (rc_[j].pos >= out->prefix_entries && rc_[j].e->status == 0)
				r = diff_add(out, &cap, rc_[j].e->path, ING_CHANGE_MOVED);
			i++;
			j++;
		}
		if (r < 0)
			goto fail;
	}
	out->unchanged = compatible && out->n == 0 &&
			 out->prefix_entries == cur->n && old->n == cur->n;
	free(ro);
	free(rc_);
	return 0;
fail:
	free(ro);
	free(rc_);
	ing_diff_free(out);
	return rc;
}
