/* errors.c - text for the memstore module's error codes (MS_ERRNO_MAP). */
#include "config.h"
#include <string.h>
#include "memstore.h"

const char *ms_strerror(int err)
{
	switch (err) {
#define MS__STR(code, name, msg) case code: return msg;
	MS_ERRNO_MAP(MS__STR)
#undef MS__STR
	}
	if (err < 0 && err > -1000)
		return strerror(-err);
	return "unknown error";
}

const char *ms_errname(int err)
{
	switch (err) {
#define MS__NAME(code, name, msg) case code: return #name;
	MS_ERRNO_MAP(MS__NAME)
#undef MS__NAME
	}
	return "MS_EUNKNOWN";
}
