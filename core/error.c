/* core/error.c - messages and names for weft's codes; libuv's for the rest.
 * libuv's uv_strerror/uv_err_name allocate (and leak) a string for codes
 * they do not know, so the _r forms fill a per-thread buffer instead. */
#include <weft/error.h>

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
        return uv_err_name_r(code, unknown_name, sizeof(unknown_name));
    }
}
