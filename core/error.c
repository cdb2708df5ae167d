/* core/error.c - messages and names for weft's codes; libuv's for the rest. */
#include <weft/error.h>

const char *weft_strerror(int code)
{
    switch (code) {
#define WEFT__ERR_MSG(name, value, msg)                                                            \
    case WEFT_##name:                                                                              \
        return msg;
        WEFT_ERRNO_MAP(WEFT__ERR_MSG)
#undef WEFT__ERR_MSG
    case 0:
        return "success";
    default:
        return uv_strerror(code);
    }
}

const char *weft_err_name(int code)
{
    switch (code) {
#define WEFT__ERR_NAME(name, value, msg)                                                           \
    case WEFT_##name:                                                                              \
        return "WEFT_" #name;
        WEFT_ERRNO_MAP(WEFT__ERR_NAME)
#undef WEFT__ERR_NAME
    case 0:
        return "OK";
    default:
        return uv_err_name(code);
    }
}
