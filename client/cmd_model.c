/* cmd_model.c - engramctl commands about the model: model, tokenize,
 * detokenize. */
#include "config.h"
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ectl.h"
#include "text.h"

static int cmd_model(ectl_ctx *x, int argc, char **argv)
{
	json_t *done = NULL;
	int rc = ectl_no_args(argc, argv, "model");
	if (rc)
		return rc;
	rc = ectl_request(x, json_pack("{s:s}", "op", "model"), &done);
	if (rc == 0 && !x->json) {
		json_t *hp = json_object_get(done, "hparams"), *t;
		size_t i;
		printf("name           %s\n", ectl_jstr(done, "name"));
		printf("architecture   %s\n", ectl_jstr(done, "arch"));
		printf("parameters     %lld (%.1fM)\n", ectl_jint(done, "parameters"),
		       ectl_jint(done, "parameters") / 1e6);
		printf("quant types   ");
		json_array_foreach(json_object_get(done, "types"), i, t)
			printf(" %s x%lld", ectl_jstr(t, "type"), ectl_jint(t, "tensors"));
		printf("\n");
		printf("context length %lld (trained)\n", ectl_jint(done, "context_length"));
		printf("vocab size     %lld\n", ectl_jint(done, "vocab_size"));
		printf("layers         %lld, embedding %lld, heads %lld (kv %lld) x %lld, ffn %lld\n",
		       ectl_jint(hp, "layers"), ectl_jint(hp, "embedding"), ectl_jint(hp, "heads"),
		       ectl_jint(hp, "kv_heads"), ectl_jint(hp, "head_dim"), ectl_jint(hp, "ffn"));
		printf("fingerprint    %s\n", ectl_jstr(done, "fingerprint"));
		printf("file           %s (%lld bytes)\n", ectl_jstr(done, "path"), ectl_jint(done, "file_size"));
	}
	json_decref(done);
	return rc;
}

/* Prints a piece readably: control characters escaped, bytes in hex. */
static void print_piece(json_t *p)
{
	if (json_is_object(p)) {
		printf("<bytes %s>", ectl_jstr(p, "bytes"));
		return;
	}
	const unsigned char *s = (const unsigned char *)json_string_value(p);
	size_t n = json_string_length(p);
	putchar('"');
	for (size_t i = 0; s && i < n; i++) {
		if (s[i] == '\n') printf("\\n");
		else if (s[i] == '\t') printf("\\t");
		else if (s[i] == '\r') printf("\\r");
		else if (s[i] == '"' || s[i] == '\\') printf("\\%c", s[i]);
		else if (s[i] < 0x20 || s[i] == 0x7f) printf("\\x%02x", s[i]);
		else putchar(s[i]);
	}
	putchar('"');
}

struct tok_out {
	ectl_ctx *x;
	int pieces;
	size_t printed;
};

static int tokens_event(void *arg, json_t *ev)
{
	struct tok_out *t = arg;
	const char *name = json_string_value(json_object_get(ev, "event"));
	if (t->x->json || !name || strcmp(name, "tokens"))
		return ectl_print_event(t->x, ev);
	json_t *ids = json_object_get(ev, "ids"), *pieces = json_object_get(ev, "pieces");
	for (size_t i = 0; i < json_array_size(ids); i++) {
		long long id = json_integer_value(json_array_get(ids, i));
		if (t->pieces) {
			printf("%lld\t", id);
			print_piece(json_array_get(pieces, i));
			putchar('\n');
		} else {
			printf(t->printed++ ? " %lld" : "%lld", id);
		}
	}
	return 0;
}

static int cmd_tokenize(ectl_ctx *x, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pieces", no_argument, NULL, 'p' },
		{ "no-bos", no_argument, NULL, 'n' },
		{ "special", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	int c, pieces = 0, no_bos = 0, special = 0;
	optind = 0;	/* glibc: 0 starts a fresh scan of this argv */
	while ((c = getopt_long(argc, argv, "+pns", opts, NULL)) != -1) {
		if (c == 'p') pieces = 1;
		else if (c == 'n') no_bos = 1;
		else if (c == 's') special = 1;
		else return ECTL_EXIT_USAGE;
	}
	if (argc - optind != 1) {
		fprintf(stderr, "engramctl tokenize: give one TEXT, or - for standard input\n");
		return ECTL_EXIT_USAGE;
	}
	char *in;
	size_t len;
	int rc = ectl_read_input(argv[optind], &in, &len);
	if (rc)
		return rc;
	if ((rc = ectl_connect(&x->conn, x->socket)) < 0) {
		free(in);
		return -rc;
	}
	struct tok_out t = { x, pieces, 0 };
	json_t *req = json_pack("{s:s,s:b,s:b,s:b}", "op", "tokenize", "add_special", !no_bos,
				"parse_special", special, "pieces", pieces);
	rc = ectl_call_input(&x->conn, req, in, len, tokens_event, &t);
	ectl_close(&x->conn);
	free(in);
	if (rc == 0 && !x->json && !pieces)
		putchar('\n');
	return rc;
}

static int cmd_detokenize(ectl_ctx *x, int argc, char **argv)
{
	json_t *ids = json_array(), *done = NULL;
	int special = 0, i = 1;
	if (i < argc && !strcmp(argv[i], "--special")) {
		special = 1;
		i++;
	}
	if (i >= argc) {
		fprintf(stderr, "engramctl detokenize: give token ids\n");
		json_decref(ids);
		return ECTL_EXIT_USAGE;
	}
	for (; i < argc; i++) {
		char *end;
		errno = 0;
		long long v = strtoll(argv[i], &end, 10);
		if (errno || end == argv[i] || *end || v < 0 || v > INT32_MAX) {
			fprintf(stderr, "engramctl detokenize: '%s' is not a token id\n", argv[i]);
			json_decref(ids);
			return ECTL_EXIT_USAGE;
		}
		json_array_append_new(ids, json_integer(v));
	}
	int rc = ectl_request(x, json_pack("{s:s,s:o,s:b}", "op", "detokenize", "ids", ids,
				   "special", special), &done);
	if (rc == 0 && !x->json) {
		json_t *text = json_object_get(done, "text");
		if (text) {
			fwrite(json_string_value(text), 1, json_string_length(text), stdout);
		} else {
			/* Not UTF-8 on its own: write the bytes as they are. */
			const char *b = ectl_jstr(done, "data");
			unsigned char *raw = malloc(strlen(b) + 4);
			long n = ed_b64_decode(b, strlen(b), raw);
			if (n > 0)
				fwrite(raw, 1, n, stdout);
			free(raw);
		}
		putchar('\n');
	}
	json_decref(done);
	return rc;
}

const ectl_command ectl_cmds_model[] = {
	{ "model", "", "describe the model engramd serves",
	  "Shows the model's name, architecture, parameter count, quant types with\n"
	  "their tensor counts, trained context length, vocab size and fingerprint.",
	  cmd_model },
	{ "tokenize", "[--pieces] [--no-bos] [--special] TEXT|-", "print the token ids of a text",
	  "Prints the model's token ids for TEXT, or for all of standard input with\n"
	  "'-' (any size, any bytes), as llama.cpp would.\n"
	  "  --pieces   one id and its piece per line\n"
	  "  --no-bos   do not add the model's BOS token\n"
	  "  --special  match control tokens such as <start_of_turn> in the text",
	  cmd_tokenize },
	{ "detokenize", "[--special] ID...", "print the text of token ids",
	  "Prints the text the token ids stand for.\n"
	  "  --special  render control tokens such as <bos> too", cmd_detokenize },
	{ NULL, NULL, NULL, NULL, NULL },
};
