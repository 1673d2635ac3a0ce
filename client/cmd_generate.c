/* cmd_generate.c - engramctl commands that make text: generate. */
#include "config.h"
#include <stdio.h>
#include "ectl.h"

const ectl_command ectl_cmds_generate[] = {
	{ NULL, NULL, NULL, NULL, NULL },
};
