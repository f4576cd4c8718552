/* eio_echo: an Engine.IO-only server (path /engine.io/, CORS "*") that echoes
 * every message back unchanged: text as text, binary as binary. A minimal
 * example of the Engine.IO level of the C API, used by the end-to-end tests.
 *
 *   eio_echo [--port N] [--ping-interval MS] [--ping-timeout MS]
 *            [--max-payload BYTES] [--upgrade-timeout MS] [--header-timeout MS]
 *            [--max-output BYTES] [--tls-cert FILE --tls-key FILE]
 *            [--per-message-deflate 0|1] [--cookie NAME] [--deny-origin ORIGIN]
 *            [--cors ORIGINS] [--cors-credentials 0|1]
 */
#include <sockeye.h>

#include "example_main.h"

static void on_message(struct sio_session *s, const void *data, size_t len, bool binary, void *ud)
{
    sio_session_send(s, data, len, binary);
}

static void setup(struct sio_server *srv)
{
    struct sio_engine_handlers h = {.message = on_message};
    sio_server_set_engine_handlers(srv, &h, NULL);
}

int main(int argc, char **argv)
{
    struct sio_config cfg;
    sio_config_init(&cfg);
    cfg.path = "/engine.io/";
    cfg.cors_origin = "*";
    struct example_options opt = {0};
    if (example_parse("eio_echo", argc, argv, &cfg, &opt) < 0)
        return 2;
    return example_run("eio_echo", &cfg, &opt, setup);
}
