/* Shared command-line handling and event loop of the example servers. */
#ifndef SOCKEYE_EXAMPLE_MAIN_H
#define SOCKEYE_EXAMPLE_MAIN_H

#include <sockeye.h>

struct example_options {
    unsigned port;
    const char *tls_cert, *tls_key;
    const char *deny_origin; /* refuse handshakes from this Origin (403, code 4) */
};

/* Parses the common flags into cfg/opt:
 *   --port N --ping-interval MS --ping-timeout MS --upgrade-timeout MS
 *   --connect-timeout MS --header-timeout MS --max-payload BYTES
 *   --max-output BYTES --recovery MS --tls-cert FILE --tls-key FILE
 *   --per-message-deflate 0|1 --cookie NAME --deny-origin ORIGIN
 *   --cors ORIGINS ("*" or a comma-separated list) --cors-credentials 0|1
 * Prints a message naming prog and returns -1 on a bad or unknown flag. */
int example_parse(const char *prog, int argc, char **argv, struct sio_config *cfg,
                  struct example_options *opt);

/* Creates the server on 127.0.0.1, lets setup() register handlers, runs the
 * loop until SIGINT/SIGTERM, frees everything. Returns the exit status. */
int example_run(const char *prog, const struct sio_config *cfg, const struct example_options *opt,
                void (*setup)(struct sio_server *srv));

#endif
