/* errors.c - text and names for the ingest module's error codes
 * (ING_ERRNO_MAP in ingest.h). */
#include "config.h"
#include <string.h>
#include "ingest.h"

const char *ing_strerror(int err)
{
	switch (err) {
#define ING__STR(code, name, msg) case code: return msg;
	ING_ERRNO_MAP(ING__STR)
#undef ING__STR
	}
	if (err < 0 && err > -1000)
		return strerror(-err);
	return "unknown error";
}

const char *ing_errname(int err)
{
	switch (err) {
#define ING__NAME(code, name, msg) case code: return #name;
	ING_ERRNO_MAP(ING__NAME)
#undef ING__NAME
	}
	return "ING_UNKNOWN";
}
