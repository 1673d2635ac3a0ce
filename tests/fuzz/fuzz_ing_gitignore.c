/* fuzz_ing_gitignore.c - libFuzzer target: ignore-file parsing and glob
 * matching.  Input: ignore-file text, a NUL byte, then paths one per line.
 * Every pattern of the text is also used as a raw glob against every path.
 * Must never crash and must stay O(pattern * path) per match.
 *
 * Build (from the repository root, after configure in build-ing/):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Ibuild-ing -Iingest \
 *     $(pkg-config --cflags libxml-2.0 libarchive poppler-glib libxxhash) \
 *     tests/fuzz/fuzz_ing_gitignore.c $(find ingest -name '*.c') -o fuzz_ing_gitignore \
 *     $(pkg-config --libs libxml-2.0 libarchive poppler-glib libxxhash)
 * Run:  ./fuzz_ing_gitignore -max_total_time=30 -max_len=4096
 */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	const char *nul = memchr(p, '\0', size);
	size_t tl = nul ? (size_t)(nul - p) : size;
	char *paths = NULL;
	ing_ignore *ig = NULL;

	if (ing_ignore_parse(p, tl, "base", &ig) != 0)
		return 0;
	if (nul) {
		paths = malloc(size - tl);
		memcpy(paths, nul + 1, size - tl - 1);
		paths[size - tl - 1] = '\0';
	} else {
		paths = strdup("base/a/b.c");
	}
	char *text = strndup(p, tl);
	for (char *save = NULL, *path = strtok_r(paths, "\n", &save); path;
	     path = strtok_r(NULL, "\n", &save)) {
		ing_ignore_match(ig, path, 0);
		ing_ignore_match(ig, path, 1);
		char *save2 = NULL, *copy = strdup(text);
		for (char *pat = strtok_r(copy, "\n", &save2); pat;
		     pat = strtok_r(NULL, "\n", &save2))
			ing_glob_match(pat, path);
		free(copy);
	}
	free(text);
	free(paths);
	ing_ignore_free(ig);
	return 0;
}
