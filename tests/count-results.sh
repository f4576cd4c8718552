#!/usr/bin/env bash
# Prints "<passed> <failed>" for the automake test logs of a build directory,
# counting test cases inside each program where its runner reports them
# (cmocka, node --test); a program with no such report counts as one test.
build=${1:-_build}
passed=0 failed=0
while IFS= read -r trs; do
    log=${trs%.trs}.log
    result=$(sed -n 's/^:test-result: //p' "$trs" | head -1)
    [ "$result" = SKIP ] && continue
    p="" f=""
    if grep -q '^\[==========\] .* test(s) run\.' "$log" 2>/dev/null; then
        p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$log" | awk '{s+=$1} END {print s+0}')
        f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    elif grep -q '^# pass [0-9]' "$log" 2>/dev/null; then
        p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
        f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    fi
    if [ -z "$p" ]; then
        case "$result" in PASS | XFAIL) p=1 f=0 ;; *) p=0 f=1 ;; esac
    elif [ "$result" != PASS ] && [ "$f" -eq 0 ]; then
        f=1   # the program failed outside its counted cases (crash, sanitizer)
    fi
    passed=$((passed + p)) failed=$((failed + f))
done < <(find "$build/tests" -name '*.trs' 2>/dev/null)
echo "$passed $failed"
