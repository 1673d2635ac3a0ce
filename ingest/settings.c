/* settings.c - defaults for ing_settings, in one place, and the list of
 * folders skipped by name.  Why each default is what it is, is said here. */
#include "config.h"
#include <string.h>
#include <xxhash.h>
#include "ing_internal.h"

void ing_settings_init(ing_settings *s)
{
	memset(s, 0, sizeof(*s));
	/* Bigger source files are generated or data; 64 MiB of text is
	 * already ~16M tokens, more than a 1M-token session can hold. */
	s->max_file_bytes = 64u << 20;
	/* Extraction may expand (HTML entities, DOCX): cap the result. */
	s->max_text_bytes = 128u << 20;
	/* A DOCX's document.xml is rarely over a few MiB; 64 MiB stops zip
	 * bombs long before memory is at risk. */
	s->max_zip_entry_bytes = 64u << 20;
	s->max_zip_entries = 10000;
	/* Deep enough for any real tree, shallow enough to stop runaways. */
	s->max_depth = 512;
	/* One line per tokenizer call makes every span exactly one line. */
	s->chunk_lines = 1;
	/* Long lines (minified code) are cut so one call stays small. */
	s->chunk_max_bytes = 4096;
	s->follow_symlinks = 1;
	s->use_ignore_files = 1;
	s->skip_vcs_build_dirs = 1;
	/* Like git's index: same size, mtime and inode means same bytes. */
	s->trust_mtime = 1;
}

const char *const ing_build_dirs[] = {
	".git", ".hg", ".svn", ".bzr", "CVS", "_darcs", ".jj",
	"node_modules", "bower_components", "target", "build", "dist",
	"__pycache__", ".venv", "venv", ".tox", ".nox", ".mypy_cache",
	".pytest_cache", ".ruff_cache", ".gradle", ".next", ".nuxt",
	".terraform", ".eggs", "CMakeFiles", "autom4te.cache", ".deps",
	".libs", ".idea", ".vs",
	NULL
};

uint64_t ing__settings_id(const ing_settings *s)
{
	/* Only what changes the text or its cutting into chunks. */
	uint64_t v[5] = { s->max_text_bytes, s->max_zip_entry_bytes,
			  s->chunk_lines, s->chunk_max_bytes,
			  ING_FRAMING_VERSION };
	return XXH3_64bits(v, sizeof(v));
}
