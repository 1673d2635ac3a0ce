/* ops_generate.c - the protocol's ops for text generation. */
#include "config.h"
#include "engramd.h"

const ed_op ed_ops_generate[] = {
	{ NULL, NULL, NULL },
};
