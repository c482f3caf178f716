# shellcheck shell=sh
# ld-cas setup hook: converts a build's outputs where they lie, in the fixup phase, so
# their programs name their libraries by content (uri:blake3:...) and start through ld-cas
# (docs/nix.md). POSIX sh, so plain builders with /bin/sh can source it too.
#
# With stdenv: put the package that ships this hook in nativeBuildInputs, as with
# autoPatchelfHook; `ldCasFixupOutput` is added to fixupOutputHooks. In a build with
# several outputs it converts them all together when it runs for the last one (every
# output has been stripped and fixed by then), so a program in one output and a library
# in another get one conversion, and no reference cycle.
#
# Without stdenv (a plain builder): set ELFPATCH (the elfpatch binary) and LD_CAS (the
# ld-cas the programs will name as their interpreter: a stable path), source this file
# and call `ldCasFixupOutput "$out"` (or several outputs at once: "$out" "$lib").
#
# Optional variables: ldCasKeepSonames (space-separated globs left as plain names, such as
# 'libGL.so*'), ldCasAllowMissing (convert even when a dependency is not found), dontLdCas
# (skip).

ldCasFixupOutput() {
    if [ -n "${dontLdCas-}" ]; then
        return 0
    fi
    _ldCasElfpatch="${ELFPATCH:-elfpatch}"
    _ldCasInterp="${LD_CAS-}"
    if [ -z "$_ldCasInterp" ]; then
        # The ld-cas installed with elfpatch: $out/libexec/ld-cas beside $out/bin/elfpatch.
        _ldCasBin="$(command -v "$_ldCasElfpatch")" || {
            echo "ldCasFixupOutput: elfpatch not found (set ELFPATCH)" >&2
            return 1
        }
        _ldCasInterp="$(dirname "$(dirname "$_ldCasBin")")/libexec/ld-cas"
    fi
    if [ "$#" -eq 0 ]; then
        if [ -n "${outputs-}" ] && [ -n "${prefix-}" ]; then
            # stdenv calls the hook once per output with $prefix set: convert them all
            # together on the last call.
            _ldCasLast=""
            for _ldCasName in $outputs; do _ldCasLast="$_ldCasName"; done
            eval "_ldCasLastDir=\${$_ldCasLast-}"
            if [ "$_ldCasLastDir" != "$prefix" ]; then
                return 0
            fi
            for _ldCasName in $outputs; do
                eval "_ldCasDir=\${$_ldCasName-}"
                if [ -d "$_ldCasDir" ]; then
                    set -- "$@" "$_ldCasDir"
                fi
            done
        else
            set -- "${prefix:-${out-}}"
        fi
    fi
    if [ "$#" -eq 0 ] || [ -z "$1" ]; then
        return 0
    fi
    for _ldCasPattern in ${ldCasKeepSonames-}; do
        set -- --keep-soname "$_ldCasPattern" "$@"
    done
    if [ -n "${ldCasAllowMissing-}" ]; then
        set -- --allow-missing "$@"
    fi
    echo "ldCasFixupOutput: converting with $_ldCasElfpatch convert --in-place --interp $_ldCasInterp $*" >&2
    "$_ldCasElfpatch" convert --in-place --interp "$_ldCasInterp" "$@" >/dev/null
}

# The linker's flags for linking against converted libraries of the store paths DEP...:
# their DT_NEEDED entries are URIs, which GNU ld finds (to check the symbols a library
# leaves undefined) in the index of the library's own table, given as -rpath-link.
ldCasLinkFlags() {
    for _ldCasDep in "$@"; do
        if [ -d "$_ldCasDep/nix-support/ld-cas/index" ]; then
            printf ' -Wl,-rpath-link,%s' "$_ldCasDep/nix-support/ld-cas/index"
        fi
    done
}

# stdenv: each dependency's index goes into the ld wrapper's flags.
_ldCasAddLinkFlags() {
    if [ -d "$1/nix-support/ld-cas/index" ]; then
        NIX_LDFLAGS="${NIX_LDFLAGS-} -rpath-link $1/nix-support/ld-cas/index"
        export NIX_LDFLAGS
    fi
}

if [ -n "${BASH_VERSION-}" ]; then
    # stdenv's hook arrays (bash).
    eval 'fixupOutputHooks+=(ldCasFixupOutput)'
    if command -v addEnvHooks >/dev/null 2>&1; then
        addEnvHooks "${targetOffset-0}" _ldCasAddLinkFlags
    fi
fi
