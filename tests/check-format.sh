#!/bin/sh
# Every C file is formatted by .clang-format. Skipped (77) without clang-format.
command -v clang-format >/dev/null 2>&1 || { echo "clang-format not installed"; exit 77; }
cd "${top_srcdir:-.}" || exit 1
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find protocol src tests examples -name '*.[ch]')
[ -n "$files" ] || { echo "no C files"; exit 1; }
status=0
for f in $files; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f (run clang-format -i $f)"; status=1
    fi
done
[ $status -eq 0 ] && echo "format: $(echo "$files" | wc -w) files clean"
exit $status
