/* extract.c - choosing an extractor for a file (by magic number, then by
 * name) and the type names shown in frame headers. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "ing_internal.h"

static const char *name_ext(const char *name)
{
	const char *base = strrchr(name, '/');
	base = base ? base + 1 : name;
	const char *dot = strrchr(base, '.');
	return (dot && dot != base) ? dot + 1 : "";
}

static const char *name_base(const char *name)
{
	const char *base = strrchr(name, '/');
	return base ? base + 1 : name;
}

enum ing_kind ing_kind_guess(const char *name, const void *data, size_t len)
{
	const char *ext = name ? name_ext(name) : "";

	if (len >= 5 && memcmp(data, "%PDF-", 5) == 0)
		return ING_KIND_PDF;
	if (!strcasecmp(ext, "pdf"))
		return ING_KIND_PDF;
	if (!strcasecmp(ext, "docx"))
		return ING_KIND_DOCX;
	if (!strcasecmp(ext, "html") || !strcasecmp(ext, "htm") ||
	    !strcasecmp(ext, "xhtml"))
		return ING_KIND_HTML;
	if (!strcasecmp(ext, "eml"))
		return ING_KIND_EML;
	if (!strcasecmp(ext, "md") || !strcasecmp(ext, "markdown") ||
	    !strcasecmp(ext, "mdown"))
		return ING_KIND_MARKDOWN;
	return ING_KIND_TEXT;
}

static const struct { const char *ext, *type; } ext_types[] = {
	{ "c", "C" }, { "h", "C" }, { "cc", "C++" }, { "cpp", "C++" },
	{ "cxx", "C++" }, { "hpp", "C++" }, { "hh", "C++" }, { "hxx", "C++" },
	{ "m", "Objective-C" }, { "py", "Python" }, { "pyi", "Python" },
	{ "js", "JavaScript" }, { "mjs", "JavaScript" }, { "cjs", "JavaScript" },
	{ "jsx", "JavaScript" }, { "ts", "TypeScript" }, { "tsx", "TypeScript" },
	{ "go", "Go" }, { "rs", "Rust" }, { "java", "Java" }, { "kt", "Kotlin" },
	{ "scala", "Scala" }, { "rb", "Ruby" }, { "php", "PHP" }, { "cs", "C#" },
	{ "swift", "Swift" }, { "sh", "Shell" }, { "bash", "Shell" },
	{ "zsh", "Shell" }, { "pl", "Perl" }, { "pm", "Perl" }, { "lua", "Lua" },
	{ "r", "R" }, { "hs", "Haskell" }, { "ml", "OCaml" }, { "el", "Emacs Lisp" },
	{ "clj", "Clojure" }, { "ex", "Elixir" }, { "exs", "Elixir" },
	{ "erl", "Erlang" }, { "zig", "Zig" }, { "sql", "SQL" }, { "css", "CSS" },
	{ "scss", "SCSS" }, { "json", "JSON" }, { "yaml", "YAML" }, { "yml", "YAML" },
	{ "toml", "TOML" }, { "xml", "XML" }, { "ini", "INI" }, { "cfg", "config" },
	{ "conf", "config" }, { "mk", "Make" }, { "am", "Automake" },
	{ "ac", "Autoconf" }, { "m4", "M4" }, { "cmake", "CMake" },
	{ "tex", "TeX" }, { "rst", "reStructuredText" }, { "csv", "CSV" },
	{ "tsv", "TSV" }, { "txt", "text" }, { "proto", "Protocol Buffers" },
	{ "s", "Assembly" }, { "asm", "Assembly" }, { "diff", "diff" },
	{ "patch", "diff" },
};

static const struct { const char *name, *type; } base_types[] = {
	{ "Makefile", "Make" }, { "GNUmakefile", "Make" },
	{ "CMakeLists.txt", "CMake" }, { "Dockerfile", "Dockerfile" },
	{ "configure.ac", "Autoconf" },
};

const char *ing_type_name(const char *name, enum ing_kind kind)
{
	switch (kind) {
	case ING_KIND_PDF: return "PDF";
	case ING_KIND_DOCX: return "DOCX";
	case ING_KIND_HTML: return "HTML";
	case ING_KIND_EML: return "e-mail";
	case ING_KIND_MARKDOWN: return "Markdown";
	case ING_KIND_TEXT: break;
	}
	if (!name)
		return "text";
	const char *base = name_base(name), *ext = name_ext(name);
	for (size_t i = 0; i < sizeof(base_types) / sizeof(base_types[0]); i++)
		if (!strcmp(base, base_types[i].name))
			return base_types[i].type;
	for (size_t i = 0; i < sizeof(ext_types) / sizeof(ext_types[0]); i++)
		if (!strcasecmp(ext, ext_types[i].ext))
			return ext_types[i].type;
	return "text";
}

int ing_extract_kind(const void *data, size_t len, enum ing_kind kind,
		     const ing_settings *s, ing_doc *doc)
{
	ing_settings defaults;
	int rc;

	if (!doc)
		return ING_EINVAL;
	memset(doc, 0, sizeof(*doc));
	if (!data && len)
		return ING_EINVAL;
	if (!data)
		data = "";
	if (!s) {
		ing_settings_init(&defaults);
		s = &defaults;
	}
	doc->kind = kind;
	doc->encoding = "UTF-8";
	switch (kind) {
	case ING_KIND_TEXT:
	case ING_KIND_MARKDOWN:
		rc = ing__extract_text(data, len, s, doc);
		break;
	case ING_KIND_HTML:
		rc = ing__extract_html(data, len, s, doc);
		break;
	case ING_KIND_PDF:
		rc = ing__extract_pdf(data, len, s, doc);
		break;
	case ING_KIND_DOCX:
		rc = ing__extract_docx(data, len, s, doc);
		break;
	case ING_KIND_EML:
		rc = ing__extract_eml(data, len, s, doc);
		break;
	default:
		rc = ING_EINVAL;
	}
	if (rc < 0) {
		ing_doc_free(doc);
		return rc;
	}
	doc->kind = kind;
	doc->type = ing_type_name(NULL, kind);
	return 0;
}

int ing_extract(const void *data, size_t len, const char *name,
		const ing_settings *s, ing_doc *doc)
{
	if (!doc)
		return ING_EINVAL;
	enum ing_kind kind = ing_kind_guess(name, data ? data : "", data ? len : 0);
	int rc = ing_extract_kind(data, len, kind, s, doc);
	if (rc == 0)
		doc->type = ing_type_name(name, kind);
	return rc;
}

void ing_doc_free(ing_doc *doc)
{
	if (!doc)
		return;
	free(doc->text);
	free(doc->page_off);
	memset(doc, 0, sizeof(*doc));
}
