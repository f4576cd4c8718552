/* template: JSON value templates of the config file's event rules.
 *
 * A template is compiled once from a libconfig setting and evaluated per
 * event into a cJSON value:
 *  - a string that is exactly one "{{expr}}" yields the value of expr itself
 *    (any JSON type, binary nodes included, deep-copied);
 *  - any other string is interpolated: each "{{expr}}" is replaced by the
 *    value's text (strings as they are, other values as compact JSON; a
 *    missing value as ""); "{{" can be written as "\{{" (backslash escapes a
 *    brace pair);
 *  - numbers, booleans: themselves;
 *  - a group becomes an object (keys as written), a list or array an array,
 *    each member a template in turn.
 *
 * Expressions (whitespace inside the braces is ignored):
 *   args            the event's arguments (an array)
 *   args.N          the N-th argument (0-based)
 *   args.N.k1.k2    a path into it (object keys; numbers index arrays)
 *   rest, rest.N    the arguments after the first (an array): with an event
 *                   name taken from args.0, "{{rest}}" forwards the others
 *   ack, ack.N...   the arguments of a client's ack (in `then` actions)
 *   auth, auth.k    the CONNECT payload
 *   data, data.k    the socket's data object
 *   query.k         a handshake query parameter; header.name a handshake header
 *   id  nsp  event  the socket id, namespace name, event name (strings)
 *   address         the client's address
 *   nsp_size        sockets in the namespace (number)
 *   room_size(R)    members of room R; R is 'literal' (single quotes) or a
 *                   path expression such as args.0
 * A path that does not exist evaluates to "no value": JSON null when it is
 * the whole value, "" inside a string.
 */
#ifndef SOCKEYE_TEMPLATE_H
#define SOCKEYE_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>
#include <libconfig.h>

struct sio_socket;
struct tmpl;

/* What an evaluation may read. Every pointer may be NULL (its expressions
 * then have no value). */
struct tmpl_ctx {
    struct sio_socket *sock; /* id, nsp, auth, data, query, header, address, sizes */
    const char *event;
    const cJSON *args;
    const cJSON *ack;
};

/* Compiles the template held by setting s. Returns NULL and writes a reason
 * (without file/line: the caller adds config_setting_source_file/line) into
 * err for an invalid expression, e.g. "unknown expression 'foo'",
 * "unterminated '{{'". */
struct tmpl *tmpl_compile(const config_setting_t *s, char *err, size_t errlen);

/* Compiles a template from a string (same rules as a string setting). */
struct tmpl *tmpl_compile_string(const char *text, char *err, size_t errlen);

void tmpl_free(struct tmpl *t);

/* Evaluates t. Returns a new value owned by the caller, or NULL only on
 * allocation failure. */
cJSON *tmpl_eval(const struct tmpl *t, const struct tmpl_ctx *ctx);

/* Evaluates t into a string (interpolation rules; a non-string whole value
 * becomes its compact JSON). Returns a malloc'd string, NULL on allocation
 * failure. */
char *tmpl_eval_string(const struct tmpl *t, const struct tmpl_ctx *ctx);

/* True when the value can depend on what the client sent (args, ack, auth,
 * query, header): room joins from such templates obey the rooms' `join`
 * policy. */
bool tmpl_uses_client_input(const struct tmpl *t);

/* True when the template is a constant (no expressions at all). */
bool tmpl_is_constant(const struct tmpl *t);

#endif
