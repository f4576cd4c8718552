#!/bin/sh
# The manual pages are valid mdoc (mandoc -Tlint, warnings count).
# Skipped (77) without mandoc.
command -v mandoc >/dev/null 2>&1 || { echo "mandoc not installed"; exit 77; }
cd "${top_srcdir:-.}" || exit 1
status=0
for f in man/*.[0-9]; do
    out=$(mandoc -Tlint -W warning "$f" 2>&1) || status=1
    [ -n "$out" ] && { echo "$out"; status=1; }
done
[ $status -eq 0 ] && echo "man: $(ls man/*.[0-9] | wc -l) pages clean"
exit $status
