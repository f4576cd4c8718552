#!/bin/sh
# protocol/ is pure: no libevent, no sockets, no logging, no clocks or RNG.
# Fails (exit 1) naming every offending line.
dir="${top_srcdir:-.}/protocol"
bad=$(grep -nE '#[[:space:]]*include[[:space:]]*[<"](event2/|event\.h|sys/socket\.h|netinet/|arpa/inet\.h|netdb\.h|sys/un\.h|syslog\.h|sys/time\.h|time\.h|openssl/rand\.h)' \
    "$dir"/*.c "$dir"/*.h 2>/dev/null)
log=$(grep -nE '(\b(f|v|vf)?printf|\bv?syslog|\bperror|\bputs|\bfputs)[[:space:]]*\(|\bstd(err|out)\b|\b(time|clock_gettime|gettimeofday|rand|random|RAND_bytes)[[:space:]]*\(' \
    "$dir"/*.c "$dir"/*.h 2>/dev/null)
glob=$(grep -nE '^(static[[:space:]]+)?[a-z_][a-z0-9_ ]*[[:space:]*]+[a-z_][a-z0-9_]*(\[[^]]*\])?[[:space:]]*(=[^=]|;)' "$dir"/*.c 2>/dev/null |
    grep -vE ':[[:space:]]*(static[[:space:]]+)?const[[:space:]]|^[^:]*:[0-9]+:[[:space:]]*(return|typedef|struct[[:space:]]+[a-z_]+[[:space:]]*\{)' )
status=0
if [ -n "$bad" ]; then
    echo "protocol/ includes a forbidden header:"; echo "$bad"; status=1
fi
if [ -n "$log" ]; then
    echo "protocol/ logs, prints or reads a clock/RNG:"; echo "$log"; status=1
fi
if [ -n "$glob" ]; then
    echo "protocol/ has mutable file-scope state:"; echo "$glob"; status=1
fi
[ $status -eq 0 ] && echo "layering: protocol/ is pure"
exit $status
