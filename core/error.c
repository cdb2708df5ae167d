/* core/error.c - messages and names for weft's codes; libuv's for the rest.
 * libuv's uv_strerror/uv_err_name return static strings for the codes they
 * know but allocate (and leak) one for codes they do not, so unknown codes
 * go through the _r forms into a per-thread buffer (overwritten by the next
 * unknown code on the same thread) and known ones return libuv's static
 * strings. */
#include <string.h>
#include <weft/error.h>

/* Does libuv know the code? Its _r forms say "Unknown system error N". */
static int uv_knows(int code)
{
    char tmp[48];
    uv_err_name_r(code, tmp, sizeof(tmp));
    return strncmp(tmp, "Unknown", 7) != 0;
}

static __thread char unknown_msg[64], unknown_name[32];

const char *weft_strerror(int code)
{
    switch (code) {
#define WEFT__ERR_MSG(name, value, msg) \
    case WEFT_##name:                   \
        return msg;
        WEFT_ERRNO_MAP(WEFT__ERR_MSG)
#undef WEFT__ERR_MSG
    case 0:
        return "success";
    default:
        if (uv_knows(code))
            return uv_strerror(code);
        return uv_strerror_r(code, unknown_msg, sizeof(unknown_msg));
    }
}

const char *weft_err_name(int code)
{
    switch (code) {
#define WEFT__ERR_NAME(name, value, msg) \
    case WEFT_##name:                    \
        return "WEFT_" #name;
        WEFT_ERRNO_MAP(WEFT__ERR_NAME)
#undef WEFT__ERR_NAME
    case 0:
        return "OK";
    default:
        if (uv_knows(code))
            return uv_err_name(code);
        return uv_err_name_r(code, unknown_name, sizeof(unknown_name));
    }
}
