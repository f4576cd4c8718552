#!/bin/sh
# Runs the Socket.IO end-to-end tests (tests/e2e/sio*.test.mjs, written for
# examples/echo_server) against the sockeye daemon serving examples/echo.conf,
# through tests/e2e/daemon-echo.sh, which takes echo_server's flags.
#
#   tests/e2e/daemon-suite.sh [FILE.test.mjs...]     (default: every sio*.test.mjs)
#
# The daemon is $SOCKEYE, else $top_builddir/sockeye (see daemon-echo.sh);
# from a build directory: top_builddir=$PWD ../tests/e2e/daemon-suite.sh
# Extra node --test flags can be given in NODE_TEST_FLAGS (e.g.
# "--test-reporter=tap"). Exits non-zero when a test fails.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
node=${NODE:-node}

if [ "$#" -eq 0 ]; then
    set -- "$here"/sio*.test.mjs
fi

SOCKEYE_SIO_ECHO="$here/daemon-echo.sh"
export SOCKEYE_SIO_ECHO
# shellcheck disable=SC2086 # NODE_TEST_FLAGS is a list of flags
exec "$node" --test ${NODE_TEST_FLAGS:-} "$@"
