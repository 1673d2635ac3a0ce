/* fuzz_ing_eml.c - libFuzzer target: the EML extractor on arbitrary bytes.
 * Any input must give text or an ING_E* code: no crash, no leak, no hang,
 * no allocation unbounded by the settings.
 *
 * Build (from the repository root, after configure in build-ing/ so that
 * config.h exists):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Ibuild-ing -Iingest \
 *     $(pkg-config --cflags libxml-2.0 libarchive poppler-glib libxxhash) \
 *     tests/fuzz/fuzz_ing_eml.c $(find ingest -name '*.c') -o fuzz_ing_eml \
 *     $(pkg-config --libs libxml-2.0 libarchive poppler-glib libxxhash)
 * Run:  ./fuzz_ing_eml -max_total_time=30 -close_fd_mask=2 CORPUS_DIR
 */
#include "config.h"
#include <stddef.h>
#include <stdint.h>
#include "ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ing_settings s;
	ing_doc d;

	ing_settings_init(&s);
	/* Small caps so that the fuzzer reaches the limits quickly. */
	s.max_text_bytes = 1u << 20;
	s.max_zip_entry_bytes = 1u << 20;
	s.max_zip_entries = 64;
	if (ing_extract_kind(data, size, ING_KIND_EML, &s, &d) == 0)
		ing_doc_free(&d);
	return 0;
}
