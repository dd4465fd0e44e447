#!/usr/bin/env bash
# `make test`: runs `make STAGE` for each stage in order, stops at the first that fails,
# then prints how long each took (the CI budget is spent here) and a closing count.
#
#     scripts/stages.sh test-rust lint test-python
set -uo pipefail
make_cmd=${MAKE:-make}
lines=()
passed=0
failed=0
start_all=$SECONDS
for stage in "$@"; do
    start=$SECONDS
    if $make_cmd --no-print-directory "$stage"; then
        result=ok
        passed=$((passed + 1))
    else
        result=FAILED
        failed=$((failed + 1))
    fi
    lines+=("$(printf '  %-16s %5ds  %s' "$stage" $((SECONDS - start)) "$result")")
    [[ $result == ok ]] || break
done
echo
echo "make test: time per stage"
printf '%s\n' "${lines[@]}"
printf '  %-16s %5ds\n' total $((SECONDS - start_all))
ran=$((passed + failed))
[[ $ran -lt $# ]] && echo "  not run: ${*:$((ran + 1))}"
echo "stages: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
