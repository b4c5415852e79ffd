#!/usr/bin/env bash
# Run a command and check its exit status and output: the expectation side of the preload tests.
#
# usage: check.sh [checks...] -- COMMAND [ARGS...]
#   --status N       the exit status the command must end with (default 0)
#   --expect ERE     some line of the output must match (grep -E)
#   --reject ERE     no line may match
#   --count N ERE    exactly N lines must match
#   --file PATH      check PATH's contents too (a --report or --json file), after the run
#   --file-expect PATH ERE   some line of PATH (alone) must match
#   --needs PROG     skip (exit 77) unless PROG is installed
# The output checked is the command's stdout and stderr together, then each --file. On a failure
# the script prints what it expected and the output, and exits 1.
set -u
status=0
expects=() rejects=() counts=() files=() file_expects=()
while [ $# -gt 0 ]; do
    case "$1" in
    --status) status=$2; shift 2 ;;
    --expect) expects+=("$2"); shift 2 ;;
    --reject) rejects+=("$2"); shift 2 ;;
    --count) counts+=("$2" "$3"); shift 3 ;;
    --file) files+=("$2"); shift 2 ;;
    --file-expect) file_expects+=("$2" "$3"); shift 3 ;;
    --needs)
        if ! command -v "$2" >/dev/null 2>&1; then
            echo "SKIPPED: $2 is not installed"
            exit 77
        fi
        shift 2 ;;
    --) shift; break ;;
    *) echo "check.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "check.sh: no command" >&2; exit 2; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" >"$out" 2>&1
rc=$?
for f in "${files[@]+"${files[@]}"}"; do
    if [ -f "$f" ]; then cat "$f" >>"$out"; else echo "check.sh: no file $f" >>"$out"; fi
done

fail=0
complain() { echo "FAILED: $*"; fail=1; }
[ "$rc" -eq "$status" ] || complain "exit status $rc, expected $status"
for re in "${expects[@]+"${expects[@]}"}"; do
    grep -Eq -- "$re" "$out" || complain "no line matches '$re'"
done
for re in "${rejects[@]+"${rejects[@]}"}"; do
    if grep -Eq -- "$re" "$out"; then complain "a line matches '$re': $(grep -E -m1 -- "$re" "$out")"; fi
done
i=0
while [ $i -lt ${#counts[@]} ]; do
    n=${counts[$i]} re=${counts[$((i + 1))]}
    got=$(grep -Ec -- "$re" "$out")
    [ "$got" -eq "$n" ] || complain "$got lines match '$re', expected $n"
    i=$((i + 2))
done
i=0
while [ $i -lt ${#file_expects[@]} ]; do
    f=${file_expects[$i]} re=${file_expects[$((i + 1))]}
    grep -Eq -- "$re" "$f" 2>/dev/null || complain "no line of $f matches '$re'"
    i=$((i + 2))
done
if [ $fail -ne 0 ]; then
    echo "---- command: $*"
    echo "---- output:"
    cat "$out"
    exit 1
fi
echo "ok: $*"
exit 0
