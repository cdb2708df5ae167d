"""weft_archive: every library of weft in one static archive (docs/install.md).

load("//tools:package.bzl", "weft_archive")

The install step ships libweft.a and libweft.so; both come from this rule over
//:weft, so what goes in is whatever //:weft links: a new package (actors/,
...) is one line in //:weft's deps.
"""

load("@bazel_tools//tools/cpp:toolchain_utils.bzl", "find_cpp_toolchain")

def _weft_archive_impl(ctx):
    cc_toolchain = find_cpp_toolchain(ctx)
    objects = []
    flags = []

    # Every linker input of this workspace in the deps' closure: their
    # objects go in the archive, their linkopts (-luv, -lpthread...) are the
    # link flags a program needs next to it.
    for dep in ctx.attr.deps:
        for li in dep[CcInfo].linking_context.linker_inputs.to_list():
            if li.owner.workspace_name != "":
                fail("%s: %s is outside this workspace; weft ships only its own code" %
                     (ctx.label, li.owner))
            for f in li.user_link_flags:
                if f not in flags:
                    flags.append(f)
            for lib in li.libraries:
                # PIC objects, so that the same archive also makes the .so
                # and links into PIE programs (Debian's default).
                if lib.pic_objects:
                    objects.extend(lib.pic_objects)
                elif lib.objects:
                    fail("%s: %s has no PIC objects" % (ctx.label, li.owner))

    # One library reaches the closure along several paths (//core directly
    # and through //core:ext): each object once.
    objects = depset(objects).to_list()
    if not objects:
        fail("%s: no objects found in deps" % ctx.label)

    archive = ctx.actions.declare_file(ctx.attr.out)

    # `q` (append) rather than `r`: two packages may have objects of the same
    # base name (core/metrics.o, loops/metrics.o) and `r` would keep one.
    args = ctx.actions.args()
    args.add("qcs")
    args.add(archive)
    args.add_all(objects)
    ctx.actions.run(
        executable = cc_toolchain.ar_executable,
        arguments = [args],
        inputs = depset(objects, transitive = [cc_toolchain.all_files]),
        outputs = [archive],
        mnemonic = "WeftArchive",
        progress_message = "Archiving %s" % archive.short_path,
    )

    flags_file = ctx.actions.declare_file(ctx.attr.out + ".linkflags")
    ctx.actions.write(flags_file, "\n".join(flags) + "\n")

    feature_configuration = cc_common.configure_features(
        ctx = ctx,
        cc_toolchain = cc_toolchain,
        requested_features = ctx.features,
        unsupported_features = ctx.disabled_features,
    )
    library = cc_common.create_library_to_link(
        actions = ctx.actions,
        feature_configuration = feature_configuration,
        cc_toolchain = cc_toolchain,
        static_library = archive,
        pic_static_library = archive,
        alwayslink = True,
    )
    linker_input = cc_common.create_linker_input(
        owner = ctx.label,
        libraries = depset([library]),
        user_link_flags = depset(flags),
    )
    return [
        DefaultInfo(
            files = depset([archive, flags_file]),
            runfiles = ctx.runfiles(files = [archive]),
        ),
        OutputGroupInfo(
            archive = depset([archive]),
            linkflags = depset([flags_file]),
        ),
        CcInfo(linking_context = cc_common.create_linking_context(
            linker_inputs = depset([linker_input]),
        )),
    ]

weft_archive = rule(
    implementation = _weft_archive_impl,
    doc = """One static archive of the PIC objects of every cc_library in deps'
closure (this workspace only), and the linkopts they carry.

Outputs `out` and `out`.linkflags (one flag a line). Its CcInfo links the
archive whole (alwayslink), so a cc_binary(linkshared = True) over it is the
shared library with every object in it.""",
    attrs = {
        "deps": attr.label_list(providers = [CcInfo], mandatory = True),
        "out": attr.string(mandatory = True),
        "_cc_toolchain": attr.label(
            default = Label("@bazel_tools//tools/cpp:current_cc_toolchain"),
        ),
    },
    fragments = ["cpp"],
    toolchains = ["@bazel_tools//tools/cpp:toolchain_type"],
    incompatible_use_toolchain_transition = True,
)
