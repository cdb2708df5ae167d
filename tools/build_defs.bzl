"""weft's Bazel macros: common copts and the weft_test rule.

load("//tools:build_defs.bzl", "WEFT_COPTS", "weft_test")
"""

# .bazelrc sets these too; repeating them here keeps weft's own targets
# warning-clean when built without it (e.g. from another workspace).
WEFT_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-D_GNU_SOURCE",
]

weft_tsan_note = """Criterion 2.4.1 aborts under ThreadSanitizer (issue #274): its fork
sandbox maps an arena where TSan's shadow memory lives. weft_test(tsan = True)
therefore also builds the same sources against tests/plain_test.h as
<name>_plain, tagged "tsan", and `--config=tsan` runs only tests tagged "tsan".
The Criterion build is tagged "notsan"."""

_SHIM = "//tests:plain_test.h"
_CHECK = "//tests:check.h"

def weft_test(name, srcs, deps = [], tsan = False, **kw):
    """A Criterion cc_test; with tsan = True also <name>_plain for TSan.

    Args:
      name: test name; the Criterion build.
      srcs: test sources. Files that should also build as a plain program
        include "plain_test.h" instead of <criterion/criterion.h>.
      deps: cc_library deps, shared by both builds.
      tsan: also define <name>_plain: the same srcs with -DWEFT_PLAIN_TEST=1,
        not linked with Criterion, tagged "tsan" (see weft_tsan_note).
      **kw: passed to both cc_tests; copts, linkopts and tags are extended,
        size defaults to "medium".
    """
    copts = WEFT_COPTS + kw.pop("copts", [])
    linkopts = kw.pop("linkopts", [])
    tags = kw.pop("tags", [])
    size = kw.pop("size", "medium")
    srcs = srcs + [_SHIM, _CHECK]

    native.cc_test(
        name = name,
        srcs = srcs,
        deps = deps,
        copts = copts,
        linkopts = linkopts + ["-lcriterion"],
        tags = tags + ["notsan"],
        size = size,
        **kw
    )
    if tsan:
        native.cc_test(
            name = name + "_plain",
            srcs = srcs,
            deps = deps,
            copts = copts + ["-DWEFT_PLAIN_TEST=1"],
            linkopts = linkopts + ["-pthread"],
            tags = tags + ["tsan"],
            size = size,
            **kw
        )
