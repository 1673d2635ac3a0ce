/* walk.c - roots -> candidate regular files, with ignore files, skipped
 * folders, symlink rules, loop and duplicate detection.  Invariants: only
 * folders and ignore files are ever opened here (O_NONBLOCK, O_NOFOLLOW),
 * so a FIFO or device can never block the walk; every entry not returned
 * is reported once; the order depends only on names (byte order). */
#include "config.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ing_internal.h"

#define IGNORE_FILE_MAX (1u << 20)	/* bytes read of one ignore file */

struct devino { uint64_t dev, ino; };

/* An open-addressing set of (dev, ino), for duplicates. */
struct diset {
	struct devino *v;	/* 0,0 marks an empty slot */
	size_t n, cap;
};

struct walker {
	const ing_settings *s;
	ing_file_list *out;
	ing_report_fn report;
	void *report_arg;
	const volatile int *cancel;
	char **roots_real;	/* canonical roots, for the escape check */
	size_t n_roots;
	ing_ignore **ig;	/* stack: one per folder level on the path */
	size_t n_ig, cap_ig;
	struct devino *anc;	/* folders on the current path (loops) */
	size_t n_anc, cap_anc;
	struct diset dirs, files;
};

static uint64_t di_hash(struct devino k)
{
	uint64_t h = k.dev * 0x9E3779B97F4A7C15ull ^ k.ino * 0xC2B2AE3D27D4EB4Full;
	return h ^ (h >> 29);
}

/* Adds k; returns 1 if it was new, 0 if present, ING_ENOMEM. */
static int diset_add(struct diset *s, struct devino k)
{
	if (k.dev == 0 && k.ino == 0)
		k.ino = 1;	/* keep the empty marker free */
	if ((s->n + 1) * 2 > s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		struct devino *nv = calloc(nc, sizeof(*nv));
		if (!nv)
			return ING_ENOMEM;
		for (size_t i = 0; i < s->cap; i++) {
			struct devino e = s->v[i];
			if (e.dev == 0 && e.ino == 0)
				continue;
			size_t j = di_hash(e) & (nc - 1);
			while (nv[j].dev || nv[j].ino)
				j = (j + 1) & (nc - 1);
			nv[j] = e;
		}
		free(s->v);
		s->v = nv;
		s->cap = nc;
	}
	size_t j = di_hash(k) & (s->cap - 1);
	while (s->v[j].dev || s->v[j].ino) {
		if (s->v[j].dev == k.dev && s->v[j].ino == k.ino)
			return 0;
		j = (j + 1) & (s->cap - 1);
	}
	s->v[j] = k;
	s->n++;
	return 1;
}

static void report(struct walker *w, enum ing_severity sev, const char *path,
		   int code, const char *fmt, const char *detail)
{
	char msg[512];
	if (!w->report)
		return;
	snprintf(msg, sizeof(msg), fmt, detail ? detail : "");
	w->report(w->report_arg, sev, path, code, msg);
}

static int errno_code(int e)
{
	switch (e) {
	case EACCES: case EPERM: return ING_EACCES;
	case ENOENT: case ENOTDIR: return ING_ENOENT;
	case ELOOP: return ING_ELOOP;
	case ENAMETOOLONG: return ING_ENAMETOOLONG;
	case ENOMEM: return ING_ENOMEM;
	}
	return ING_EIO;
}

static char *join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);
	if (!p)
		return NULL;
	memcpy(p, a, la);
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	if (la == 0)
		memmove(p, p + 1, lb + 1);
	return p;
}

static int list_add(ing_file_list *l, const char *path, const char *fspath,
		    const struct stat *st)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		ing_file *nv = realloc(l->v, nc * sizeof(*nv));
		if (!nv)
			return ING_ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	ing_file *f = &l->v[l->n];
	memset(f, 0, sizeof(*f));
	f->path = strdup(path);
	f->fspath = strdup(fspath);
	if (!f->path || !f->fspath) {
		free(f->path);
		free(f->fspath);
		return ING_ENOMEM;
	}
	f->size = (uint64_t)st->st_size;
	f->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	f->dev = (uint64_t)st->st_dev;
	f->ino = (uint64_t)st->st_ino;
	l->n++;
	return 0;
}

void ing_file_list_free(ing_file_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].path);
		free(l->v[i].fspath);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* Reads a small ignore file into b (appending); missing files are fine. */
static int read_ignore_file(struct walker *w, const char *dir, const char *name,
			    const char *disp_dir, ing__buf *b)
{
	char *p = join(dir, name);
	struct stat st;
	int fd, rc = 0;
	char chunk[4096];

	if (!p)
		return ING_ENOMEM;
	fd = open(p, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	for (;;) {
		ssize_t k = read(fd, chunk, sizeof(chunk));
		if (k <= 0)
			break;
		if ((rc = ing__buf_add(b, chunk, (size_t)k)) < 0)
			break;
	}
	close(fd);
	if (rc == ING_ETOOBIG) {
		char *dp = join(disp_dir, name);
		report(w, ING_NOTE, dp ? dp : name, ING_ETOOBIG,
		       "ignore file over 1 MiB: only its start is used%s", NULL);
		free(dp);
		rc = 0;
	}
	if (rc == 0)
		rc = ing__buf_addc(b, '\n');
	return rc == ING_ETOOBIG ? 0 : rc;
}

static int push_ignore(struct walker *w, const char *fsdir, const char *rel,
		       const char *disp)
{
	ing__buf b;
	ing_ignore *ig = NULL;
	int rc;

	if (w->n_ig == w->cap_ig) {
		size_t nc = w->cap_ig ? w->cap_ig * 2 : 16;
		ing_ignore **nv = realloc(w->ig, nc * sizeof(*nv));
		if (!nv)
			return ING_ENOMEM;
		w->ig = nv;
		w->cap_ig = nc;
	}
	ing__buf_init(&b, IGNORE_FILE_MAX);
	if (w->s->use_ignore_files) {
		/* .engramignore comes last: its patterns win over git's. */
		rc = read_ignore_file(w, fsdir, ".gitignore", disp, &b);
		if (rc == 0)
			rc = read_ignore_file(w, fsdir, ".engramignore", disp, &b);
		if (rc < 0) {
			ing__buf_free(&b);
			return rc;
		}
	}
	b.limit = SIZE_MAX / 2;
	rc = b.len ? ing_ignore_parse(b.p, b.len, rel, &ig) : 0;
	ing__buf_free(&b);
	if (rc < 0)
		return rc;
	w->ig[w->n_ig++] = ig;	/* NULL when the folder has none */
	return 0;
}

static void pop_ignore(struct walker *w)
{
	ing_ignore_free(w->ig[--w->n_ig]);
}

/* 1 ignored, 0 kept: the deepest ignore file with a matching pattern
 * decides, as in git. */
static int is_ignored(struct walker *w, const char *rel, int is_dir)
{
	for (size_t i = w->n_ig; i-- > 0;) {
		int r = ing_ignore_match(w->ig[i], rel, is_dir);
		if (r)
			return r > 0;
	}
	return 0;
}

static int is_build_dir(const char *name)
{
	for (size_t i = 0; ing_build_dirs[i]; i++)
		if (!strcmp(name, ing_build_dirs[i]))
			return 1;
	return 0;
}

static int under_roots(struct walker *w, const char *real)
{
	for (size_t i = 0; i < w->n_roots; i++) {
		size_t n = strlen(w->roots_real[i]);
		if (!strncmp(real, w->roots_real[i], n) &&
		    (real[n] == '/' || real[n] == '\0' ||
		     (n == 1 && w->roots_real[i][0] == '/')))
			return 1;
	}
	return 0;
}

static const char *special_name(mode_t m)
{
	if (S_ISFIFO(m)) return "FIFO";
	if (S_ISSOCK(m)) return "socket";
	if (S_ISCHR(m)) return "character device";
	if (S_ISBLK(m)) return "block device";
	if (S_ISLNK(m)) return "symbolic link (not followed)";
	return "special file";
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk_dir(struct walker *w, const char *fsdir, const char *rel,
		    const char *disp, uint32_t depth);

/* Handles one entry: reports it, adds it, or descends into it. */
static int walk_entry(struct walker *w, const char *fspath, const char *rel,
		      const char *disp, const char *name, uint32_t depth,
		      int is_root)
{
	struct stat st;
	char *real = NULL;
	const char *openpath = fspath;
	int rc = 0;

	if (strlen(fspath) >= PATH_MAX) {
		report(w, ING_FAILED, disp, ING_ENAMETOOLONG, "path too long%s", NULL);
		return 0;
	}
	if (lstat(fspath, &st) < 0) {
		int e = errno;
		report(w, ING_FAILED, disp, errno_code(e), "cannot stat: %s", strerror(e));
		return 0;
	}
	if (S_ISLNK(st.st_mode)) {
		if (!w->s->follow_symlinks) {
			report(w, ING_SKIPPED, disp, ING_ESPECIAL, "%s", special_name(st.st_mode));
			return 0;
		}
		real = realpath(fspath, NULL);
		if (!real) {
			int e = errno;
			int code = e == ENOENT ? ING_ENOENT : errno_code(e);
			report(w, ING_SKIPPED, disp, code,
			       e == ENOENT ? "dangling symbolic link%s" :
			       "symbolic link cannot be resolved: %s",
			       e == ENOENT ? NULL : strerror(e));
			return 0;
		}
		if (!under_roots(w, real)) {
			report(w, ING_SKIPPED, disp, ING_EESCAPE,
			       "symbolic link leads outside the roots, to %s", real);
			free(real);
			return 0;
		}
		if (stat(real, &st) < 0) {
			int e = errno;
			report(w, ING_FAILED, disp, errno_code(e), "cannot stat link target: %s", strerror(e));
			free(real);
			return 0;
		}
		openpath = real;
	}
	int is_dir = S_ISDIR(st.st_mode);
	if (!is_root && is_dir && w->s->skip_vcs_build_dirs && is_build_dir(name)) {
		report(w, ING_SKIPPED, disp, ING_EBUILDDIR,
		       "version-control or build-output folder%s", NULL);
		goto done;
	}
	if (!is_root && is_ignored(w, rel, is_dir)) {
		report(w, ING_SKIPPED, disp, ING_EIGNORED,
		       "matches a .gitignore or .engramignore pattern%s", NULL);
		goto done;
	}
	struct devino k = { (uint64_t)st.st_dev, (uint64_t)st.st_ino };
	if (is_dir) {
		if (depth >= w->s->max_depth) {
			report(w, ING_SKIPPED, disp, ING_EDEPTH,
			       "folder deeper than the depth limit%s", NULL);
			goto done;
		}
		for (size_t i = 0; i < w->n_anc; i++)
			if (w->anc[i].dev == k.dev && w->anc[i].ino == k.ino) {
				report(w, ING_SKIPPED, disp, ING_ELOOP,
				       "symbolic link loop: leads back to a parent folder%s", NULL);
				goto done;
			}
		if ((rc = diset_add(&w->dirs, k)) < 0)
			goto done;
		if (rc == 0) {
			report(w, ING_SKIPPED, disp, ING_EDUPLICATE,
			       "folder already walked through another path%s", NULL);
			goto done;
		}
		if (w->n_anc == w->cap_anc) {
			size_t nc = w->cap_anc ? w->cap_anc * 2 : 64;
			struct devino *nv = realloc(w->anc, nc * sizeof(*nv));
			if (!nv) {
				rc = ING_ENOMEM;
				goto done;
			}
			w->anc = nv;
			w->cap_anc = nc;
		}
		w->anc[w->n_anc++] = k;
		rc = walk_dir(w, openpath, rel, disp, depth + 1);
		w->n_anc--;
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		report(w, ING_SKIPPED, disp, ING_ESPECIAL, "%s, not opened", special_name(st.st_mode));
		goto done;
	}
	if ((uint64_t)st.st_size > w->s->max_file_bytes) {
		char sz[64];
		snprintf(sz, sizeof(sz), "%llu", (unsigned long long)st.st_size);
		report(w, ING_SKIPPED, disp, ING_ETOOBIG, "%s bytes, over the size limit", sz);
		goto done;
	}
	if ((rc = diset_add(&w->files, k)) < 0)
		goto done;
	if (rc == 0) {
		report(w, ING_SKIPPED, disp, ING_EDUPLICATE,
		       "same file already found through another path (link)%s", NULL);
		goto done;
	}
	rc = list_add(w->out, disp, openpath, &st);
done:
	free(real);
	return rc < 0 ? rc : 0;
}

static int walk_dir(struct walker *w, const char *fsdir, const char *rel,
		    const char *disp, uint32_t depth)
{
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	d = opendir(fsdir);
	if (!d) {
		int e = errno;
		report(w, ING_FAILED, disp, errno_code(e), "cannot open folder: %s", strerror(e));
		return 0;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 32;
			char **nv = realloc(names, nc * sizeof(*nv));
			if (!nv) {
				rc = ING_ENOMEM;
				break;
			}
			names = nv;
			cap = nc;
		}
		if (!(names[n] = strdup(de->d_name))) {
			rc = ING_ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (rc == 0) {
		if (n > 1)	/* names is NULL in an empty folder */
			qsort(names, n, sizeof(*names), cmp_str);
		rc = push_ignore(w, fsdir, rel, disp);
	}
	if (rc == 0) {
		for (size_t i = 0; i < n && rc == 0; i++) {
			if (w->cancel && *w->cancel) {
				rc = ING_ECANCELED;
				break;
			}
			char *cfs = join(fsdir, names[i]);
			char *crel = join(rel, names[i]);
			char *cdisp = join(disp, names[i]);
			if (!cfs || !crel || !cdisp)
				rc = ING_ENOMEM;
			else
				rc = walk_entry(w, cfs, crel, cdisp, names[i], depth, 0);
			free(cfs);
			free(crel);
			free(cdisp);
		}
		pop_ignore(w);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int ing_walk(const char *const *roots, size_t n_roots, const ing_settings *s,
	     ing_file_list *out, ing_report_fn report_fn, void *report_arg,
	     const volatile int *cancel)
{
	struct walker w;
	ing_settings defaults;
	size_t found = 0;
	int rc = 0;

	if (!roots || !n_roots || !out)
		return ING_EINVAL;
	if (!s) {
		ing_settings_init(&defaults);
		s = &defaults;
	}
	memset(&w, 0, sizeof(w));
	w.s = s;
	w.out = out;
	w.report = report_fn;
	w.report_arg = report_arg;
	w.cancel = cancel;
	w.roots_real = calloc(n_roots, sizeof(char *));
	if (!w.roots_real)
		return ING_ENOMEM;
	for (size_t i = 0; i < n_roots; i++) {
		if (!roots[i]) {
			rc = ING_EINVAL;
			goto done;
		}
		w.roots_real[i] = realpath(roots[i], NULL);
		if (w.roots_real[i])
			w.n_roots = i + 1;
	}
	/* Compact: keep only the roots that exist, in order. */
	{
		size_t k = 0;
		for (size_t i = 0; i < n_roots; i++)
			if (w.roots_real[i])
				w.roots_real[k++] = w.roots_real[i];
		w.n_roots = k;
	}
	for (size_t i = 0; i < n_roots && rc == 0; i++) {
		char *real = realpath(roots[i], NULL);
		if (!real) {
			int e = errno;
			report(&w, ING_FAILED, roots[i], errno_code(e),
			       "cannot open root: %s", strerror(e));
			continue;
		}
		found++;
		/* Display paths start with the root's own name; a name already
		 * used by an earlier root gets "@2", "@3"... so that paths stay
		 * unique in the stream. */
		const char *bn = strrchr(real, '/');
		bn = (bn && bn[1]) ? bn + 1 : real;
		char shown[NAME_MAX + 16];
		unsigned same = 1;
		for (size_t k = 0; k < i; k++) {
			char *o = roots[k] ? realpath(roots[k], NULL) : NULL;
			const char *ob = o ? strrchr(o, '/') : NULL;
			ob = (ob && ob[1]) ? ob + 1 : o;
			same += ob && !strcmp(ob, bn);
			free(o);
		}
		if (same > 1)
			snprintf(shown, sizeof(shown), "%.*s@%u", NAME_MAX, bn, same);
		else
			snprintf(shown, sizeof(shown), "%.*s", NAME_MAX, bn);
		bn = shown;
		struct stat st;
		if (stat(real, &st) == 0 && S_ISDIR(st.st_mode))
			rc = walk_entry(&w, real, "", bn, bn, 0, 1);
		else
			rc = walk_entry(&w, real, bn, bn, bn, 0, 1);
		free(real);
	}
	if (rc == 0 && !found)
		rc = ING_ENOENT;
done:
	for (size_t i = 0; i < n_roots; i++)
		if (i < w.n_roots)
			free(w.roots_real[i]);
	free(w.roots_real);
	while (w.n_ig)
		pop_ignore(&w);
	free(w.ig);
	free(w.anc);
	free(w.dirs.v);
	free(w.files.v);
	return rc;
}
