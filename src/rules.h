/* rules: the config-driven behaviour of the daemon (sockeye.conf's
 * namespaces, rooms and event rules) run on a server through the public API.
 *
 * rules_new() registers handlers on every configured namespace; events then
 * run the matching rules' actions (join/leave, emit, ack, set/unset data,
 * disconnect, drop). Rooms get their policies here: who may join, member
 * limits, presence notices and bounded history.
 *
 * Reload: rules_reload() swaps in a new configuration; events from then on
 * use it, open connections stay. Acks still pending keep the configuration
 * they were sent under alive until they complete. Event-loop thread only.
 */
#ifndef SOCKEYE_RULES_H
#define SOCKEYE_RULES_H

#include "config.h"
#include "log.h"
#include "sockeye.h"

struct rules;

/* Takes ownership of conf (also on failure). NULL on allocation failure. */
struct rules *rules_new(struct sio_server *srv, struct sockeye_conf *conf,
                        const struct logger *log);

/* Replaces the configuration (takes ownership of conf). New namespaces are
 * registered; namespaces no longer configured refuse new connections with
 * "Invalid namespace". Returns 0, or -1 on allocation failure (the old
 * configuration then stays; conf is freed). */
int rules_reload(struct rules *r, struct sockeye_conf *conf);

/* The configuration in force. */
const struct sockeye_conf *rules_conf(const struct rules *r);

/* Frees the rules (the server must be freed first: handlers refer to r). */
void rules_free(struct rules *r);

#endif
