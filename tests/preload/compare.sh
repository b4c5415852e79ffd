#!/usr/bin/env bash
# A real program under `klock run` must behave exactly as it does natively: the same stdout
# (compared byte for byte), nothing on stderr from either run (no report, no crash), status 0.
#
# usage: compare.sh KLOCK INPUT_BYTES PROGRAM [ARGS...]
#   The input (base64 of random bytes, INPUT_BYTES of it) is made once and passed as the last
#   argument. Skips (exit 77) if PROGRAM is not installed.
set -u
klock=$1 bytes=$2
shift 2
if ! command -v "$1" >/dev/null 2>&1; then
    echo "SKIPPED: $1 is not installed"
    exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
head -c "$bytes" /dev/urandom | base64 >"$dir/input"
"$@" "$dir/input" >"$dir/native.out" 2>"$dir/native.err"
native=$?
"$klock" run -- "$@" "$dir/input" >"$dir/klock.out" 2>"$dir/klock.err"
under=$?
fail=0
[ $native -eq 0 ] || { echo "FAILED: native run exited $native"; fail=1; }
[ $under -eq 0 ] || { echo "FAILED: klock run exited $under"; fail=1; }
cmp -s "$dir/native.out" "$dir/klock.out" || { echo "FAILED: output differs from the native run's"; fail=1; }
[ ! -s "$dir/klock.err" ] || { echo "FAILED: stderr under klock run:"; head -50 "$dir/klock.err"; fail=1; }
[ ! -s "$dir/native.err" ] || { echo "FAILED: stderr of the native run:"; head -20 "$dir/native.err"; fail=1; }
[ $fail -eq 0 ] && echo "ok: $* ($(wc -c <"$dir/native.out") bytes of output, identical)"
exit $fail
