/* ignore.c - .gitignore / .engramignore patterns (gitignore(5)) and the
 * wildmatch-style glob they use.  Matching is O(pattern * path) per
 * pattern: '*' backtracks only to the latest star, at both the character
 * and the folder level ("**"), which is exact for globs because every
 * other item consumes exactly one character (or one folder). */
#include "config.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "ing_internal.h"

struct pat {
	char *glob;		/* owned; escapes kept for the matcher */
	int neg;		/* "!pattern": re-include */
	int dir_only;		/* "pattern/": folders only */
	int anchored;		/* had a '/' before its end: match the path
				 * below the ignore file's folder, else the
				 * basename at any depth */
};

struct ing_ignore {
	char *base;		/* owned; "" or "dir/sub" */
	size_t base_len;
	struct pat *v;
	size_t n;
};

/* ---- glob ---- */

static int class_match(const char *name, size_t n, unsigned char c)
{
#define CLS(s, f) if (n == sizeof(s) - 1 && !memcmp(name, s, n)) return f(c) != 0;
	CLS("alpha", isalpha) CLS("digit", isdigit) CLS("alnum", isalnum)
	CLS("space", isspace) CLS("upper", isupper) CLS("lower", islower)
	CLS("punct", ispunct) CLS("xdigit", isxdigit) CLS("blank", isblank)
	CLS("cntrl", iscntrl) CLS("graph", isgraph) CLS("print", isprint)
#undef CLS
	return 0;
}

/* Matches one pattern item at p[*i] (not '*') against byte c; advances *i
 * past the item.  Returns 1 on a match, 0 otherwise, -1 if the item is
 * malformed (an unterminated bracket: matched as a literal '['). */
static int item_match(const char *p, size_t pl, size_t *i, unsigned char c)
{
	size_t k = *i;

	if (p[k] == '?') {
		*i = k + 1;
		return c != '/';
	}
	if (p[k] == '\\' && k + 1 < pl) {
		*i = k + 2;
		return (unsigned char)p[k + 1] == c;
	}
	if (p[k] != '[') {
		*i = k + 1;
		return (unsigned char)p[k] == c;
	}
	/* A bracket expression. */
	size_t j = k + 1;
	int neg = 0, ok = 0;
	if (j < pl && (p[j] == '!' || p[j] == '^')) {
		neg = 1;
		j++;
	}
	int first = 1;
	while (j < pl && (p[j] != ']' || first)) {
		first = 0;
		unsigned char lo;
		if (p[j] == '[' && j + 1 < pl && p[j + 1] == ':') {
			const char *end = NULL;
			for (size_t t = j + 2; t + 1 < pl; t++)
				if (p[t] == ':' && p[t + 1] == ']') {
					end = p + t;
					break;
				}
			if (end) {
				ok |= class_match(p + j + 2, (size_t)(end - (p + j + 2)), c);
				j = (size_t)(end - p) + 2;
				continue;
			}
		}
		if (p[j] == '\\' && j + 1 < pl)
			j++;
		lo = (unsigned char)p[j++];
		if (j + 1 < pl && p[j] == '-' && p[j + 1] != ']') {
			unsigned char hi;
			j++;
			if (p[j] == '\\' && j + 1 < pl)
				j++;
			hi = (unsigned char)p[j++];
			ok |= c >= lo && c <= hi;
		} else {
			ok |= c == lo;
		}
	}
	if (j >= pl) {		/* unterminated: a literal '[' */
		*i = k + 1;
		return c == '[';
	}
	*i = j + 1;
	return c != '/' && (ok ^ neg);
}

/* One folder-name segment: '*' matches any run of bytes. */
static int seg_match(const char *p, size_t pl, const char *s, size_t sl)
{
	size_t i = 0, j = 0, star_i = 0, star_j = 0;
	int star = 0;

	while (j < sl) {
		if (i < pl && p[i] == '*') {
			while (i < pl && p[i] == '*')
				i++;
			star = 1;
			star_i = i;
			star_j = j;
			continue;
		}
		size_t ni = i;
		if (i < pl && item_match(p, pl, &ni, (unsigned char)s[j]) == 1) {
			i = ni;
			j++;
			continue;
		}
		if (!star)
			return 0;
		i = star_i;
		j = ++star_j;
	}
	while (i < pl && p[i] == '*')
		i++;
	return i == pl;
}

struct seg { const char *p; size_t n; };

enum { IT_GLOB, IT_ANY1, IT_STAR };

static size_t split(const char *s, struct seg *v, size_t max)
{
	size_t n = 0;
	const char *q = s;
	for (;;) {
		const char *e = strchr(q, '/');
		size_t len = e ? (size_t)(e - q) : strlen(q);
		if (n < max) {
			v[n].p = q;
			v[n].n = len;
		}
		n++;
		if (!e)
			break;
		q = e + 1;
	}
	return n;
}

int ing_glob_match(const char *pattern, const char *path)
{
	size_t np, ns, m = 0;
	struct seg *ps = NULL, *ss = NULL;
	int *kind = NULL, ok = 0;

	if (!pattern || !path)
		return 0;
	np = split(pattern, NULL, 0);
	ns = split(path, NULL, 0);
	ps = malloc(sizeof(*ps) * (np + 1));
	kind = malloc(sizeof(*kind) * (np + 1));
	ss = malloc(sizeof(*ss) * ns);
	if (!ps || !kind || !ss)
		goto done;
	{
		struct seg *tmp = malloc(sizeof(*tmp) * np);
		if (!tmp)
			goto done;
		split(pattern, tmp, np);
		/* "**" as a whole segment spans folders; a trailing "**" segment
		 * needs at least one (it matches what is inside, not the
		 * folder itself). */
		for (size_t i = 0; i < np; i++) {
			int dbl = tmp[i].n == 2 && !memcmp(tmp[i].p, "**", 2);
			if (dbl && i == np - 1 && np > 1) {
				kind[m] = IT_ANY1;
				ps[m++] = tmp[i];
				kind[m] = IT_STAR;
				ps[m++] = tmp[i];
			} else {
				kind[m] = dbl ? IT_STAR : IT_GLOB;
				ps[m++] = tmp[i];
			}
		}
		free(tmp);
	}
	split(path, ss, ns);
	{
		size_t i = 0, j = 0, star_i = 0, star_j = 0;
		int star = 0;
		while (j < ns) {
			if (i < m && kind[i] == IT_STAR) {
				while (i < m && kind[i] == IT_STAR)
					i++;
				star = 1;
				star_i = i;
				star_j = j;
				continue;
			}
			if (i < m && (kind[i] == IT_ANY1 ||
				      seg_match(ps[i].p, ps[i].n, ss[j].p, ss[j].n))) {
				i++;
				j++;
				continue;
			}
			if (!star)
				goto done;
			i = star_i;
			j = ++star_j;
		}
		while (i < m && kind[i] == IT_STAR)
			i++;
		ok = i == m;
	}
done:
	free(ps);
	free(ss);
	free(kind);
	return ok;
}

/* ---- ignore files ---- */

void ing_ignore_free(ing_ignore *ig)
{
	if (!ig)
		return;
	for (size_t i = 0; i < ig->n; i++)
		free(ig->v[i].glob);
	free(ig->v);
	free(ig->base);
	free(ig);
}

/* Turns one line into a pattern; returns 0 and leaves p->glob NULL for
 * lines that hold none. */
static int parse_line(const char *s, size_t n, struct pat *p)
{
	memset(p, 0, sizeof(*p));
	if (n && s[n - 1] == '\r')
		n--;
	if (n == 0 || s[0] == '#')
		return 0;
	/* Trailing spaces go, unless escaped with a backslash. */
	while (n && s[n - 1] == ' ') {
		size_t bs = 0;
		for (size_t k = n - 1; k > 0 && s[k - 1] == '\\'; k--)
			bs++;
		if (bs % 2)
			break;
		n--;
	}
	if (n && s[0] == '!') {
		p->neg = 1;
		s++;
		n--;
	}
	if (n && s[n - 1] == '/') {
		p->dir_only = 1;
		n--;
	}
	if (n == 0)
		return 0;
	if (memchr(s, '/', n))
		p->anchored = 1;
	if (s[0] == '/') {
		s++;
		n--;
	}
	if (n == 0 || memchr(s, '\0', n))
		return 0;
	p->glob = strndup(s, n);
	return p->glob ? 0 : ING_ENOMEM;
}

int ing_ignore_parse(const char *text, size_t len, const char *base,
		     ing_ignore **out)
{
	ing_ignore *ig;
	size_t cap = 0;
	int rc = ING_ENOMEM;

	if (!out || (!text && len))
		return ING_EINVAL;
	*out = NULL;
	ig = calloc(1, sizeof(*ig));
	if (!ig)
		return ING_ENOMEM;
	ig->base = strdup(base ? base : "");
	if (!ig->base)
		goto fail;
	ig->base_len = strlen(ig->base);
	for (size_t i = 0; i < len;) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
		struct pat p;
		if ((rc = parse_line(text + i, n, &p)) < 0)
			goto fail;
		if (p.glob) {
			if (ig->n == cap) {
				size_t nc = cap ? cap * 2 : 16;
				struct pat *nv = realloc(ig->v, nc * sizeof(*nv));
				if (!nv) {
					free(p.glob);
					rc = ING_ENOMEM;
					goto fail;
				}
				ig->v = nv;
				cap = nc;
			}
			ig->v[ig->n++] = p;
		}
		i += n + 1;
	}
	*out = ig;
	return 0;
fail:
	ing_ignore_free(ig);
	return rc;
}

int ing_ignore_match(const ing_ignore *ig, const char *relpath, int is_dir)
{
	const char *sub = relpath, *bn;

	if (!ig || !relpath)
		return 0;
	if (ig->base_len) {
		if (strncmp(relpath, ig->base, ig->base_len) ||
		    relpath[ig->base_len] != '/')
			return 0;
		sub = relpath + ig->base_len + 1;
	}
	bn = strrchr(sub, '/');
	bn = bn ? bn + 1 : sub;
	for (size_t i = ig->n; i-- > 0;) {
		const struct pat *p = &ig->v[i];
		if (p->dir_only && !is_dir)
			continue;
		if (ing_glob_match(p->glob, p->anchored ? sub : bn))
			return p->neg ? -1 : 1;
	}
	return 0;
}
