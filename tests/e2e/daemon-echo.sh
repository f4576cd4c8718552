#!/bin/sh
# Runs the sockeye daemon with examples/echo.conf under the command line of
# examples/echo_server, so that the Socket.IO end-to-end tests can drive the
# daemon instead of the C example:
#
#   SOCKEYE_SIO_ECHO="tests/e2e/daemon-echo.sh" node --test tests/e2e/sio.test.mjs
#
# echo_server flags and what they become:
#   --port N               --port N
#   --ping-interval MS     --set engine.ping_interval=MS
#   --ping-timeout MS      --set engine.ping_timeout=MS
#   --upgrade-timeout MS   --set engine.upgrade_timeout=MS
#   --connect-timeout MS   --set engine.connect_timeout=MS
#   --header-timeout MS    --set http.header_timeout=MS
#   --max-payload BYTES    --set engine.max_payload=BYTES
#   --recovery MS          --set engine.recovery.enabled=true
#                          --set engine.recovery.max_disconnection=MS
# Values are checked by sockeye itself (a bad one is a --set error).
#
# The binary is $SOCKEYE, else $top_builddir/sockeye, else sockeye at the
# top of the source tree; the config is $SOCKEYE_ECHO_CONF, else
# examples/echo.conf of the source tree. The script execs sockeye, so the
# caller's signals (SIGTERM: drain and exit) reach the daemon itself.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=$(cd "$here/../.." && pwd)
sockeye=${SOCKEYE:-${top_builddir:-$top_srcdir}/sockeye}
conf=${SOCKEYE_ECHO_CONF:-$top_srcdir/examples/echo.conf}

usage() {
    echo "usage: daemon-echo.sh [--port N] [--ping-interval MS] [--ping-timeout MS]" >&2
    echo "       [--upgrade-timeout MS] [--connect-timeout MS] [--header-timeout MS]" >&2
    echo "       [--max-payload BYTES] [--recovery MS]" >&2
    exit 2
}

if [ ! -x "$sockeye" ]; then
    echo "daemon-echo.sh: $sockeye not found: build it (make), or set SOCKEYE or top_builddir" >&2
    exit 127
fi

# The translated arguments are collected in "$@" itself (POSIX sh has no
# arrays): each flag/value pair is consumed from the front and its
# translation appended at the end, once around the list.
n=$#
while [ "$n" -gt 0 ]; do
    flag=$1
    if [ "$n" -lt 2 ]; then
        echo "daemon-echo.sh: $flag needs a value" >&2
        usage
    fi
    val=$2
    shift 2
    n=$((n - 2))
    case $flag in
    --port) set -- "$@" --port "$val" ;;
    --ping-interval) set -- "$@" --set "engine.ping_interval=$val" ;;
    --ping-timeout) set -- "$@" --set "engine.ping_timeout=$val" ;;
    --upgrade-timeout) set -- "$@" --set "engine.upgrade_timeout=$val" ;;
    --connect-timeout) set -- "$@" --set "engine.connect_timeout=$val" ;;
    --header-timeout) set -- "$@" --set "http.header_timeout=$val" ;;
    --max-payload) set -- "$@" --set "engine.max_payload=$val" ;;
    --recovery)
        set -- "$@" --set engine.recovery.enabled=true --set "engine.recovery.max_disconnection=$val"
        ;;
    *)
        echo "daemon-echo.sh: unknown option $flag" >&2
        usage
        ;;
    esac
done

exec "$sockeye" -c "$conf" "$@"
