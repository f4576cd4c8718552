/* Unit tests for src/config: loading sockeye.conf, validation errors with
 * file:line, --set overrides, path resolution, conf_room_for.
 * TEST_CONF_DIR is tests/unit/conf (absolute). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* Not "config.h": the build's DEFAULT_INCLUDES put autoconf's config.h
 * first. */
#include "config.h"

#ifndef TEST_CONF_DIR
#error "TEST_CONF_DIR must name tests/unit/conf"
#endif

#define CONF(name) TEST_CONF_DIR "/" name

static struct sockeye_conf *load_ok(const char *file, const char *const *ov, size_t n)
{
    char err[512] = "";
    struct sockeye_conf *c = NULL;
    int rc = conf_load(file, ov, n, &c, err, sizeof(err));
    if (rc != 0)
        fail_msg("conf_load(%s): %s", file, err);
    assert_non_null(c);
    return c;
}

static void expect_error(const char *file, const char *const *ov, size_t n, const char *want)
{
    char err[512] = "";
    struct sockeye_conf *c = (struct sockeye_conf *)1;
    int rc = conf_load(file, ov, n, &c, err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_null(c);
    assert_string_equal(err, want);
}

static char *real(const char *path)
{
    char *r = realpath(path, NULL);
    assert_non_null(r);
    return r;
}

static const struct conf_action *rule_action(const struct conf_namespace *ns, size_t rule,
                                             size_t action)
{
    assert_true(rule < ns->n_rules);
    assert_true(action < ns->rules[rule].n_actions);
    return &ns->rules[rule].actions[action];
}

/* --- the example file --------------------------------------------------- */

static void test_full_example(void **state)
{
    struct sockeye_conf *c = load_ok(CONF("full.conf"), NULL, 0);
    assert_string_equal(c->file, CONF("full.conf"));

    assert_int_equal(c->n_listeners, 2);
    assert_string_equal(c->listeners[0].address, "127.0.0.1");
    assert_int_equal(c->listeners[0].port, 3000);
    assert_null(c->listeners[0].tls_cert);
    assert_null(c->listeners[0].tls_key);
    assert_string_equal(c->listeners[1].address, "::");
    assert_int_equal(c->listeners[1].port, 3443);
    assert_null(c->listeners[1].tls_cert);

    const struct sio_config *s = &c->server;
    assert_int_equal(s->log_level, SIO_LOG_INFO);
    assert_false(s->log_json);
    assert_int_equal(c->shutdown_grace, 10000);
    assert_string_equal(s->path, "/socket.io/");
    assert_true(s->polling);
    assert_true(s->websocket);
    assert_true(s->allow_upgrades);
    assert_int_equal(s->ping_interval_ms, 25000);
    assert_int_equal(s->ping_timeout_ms, 20000);
    assert_int_equal(s->upgrade_timeout_ms, 10000);
    assert_int_equal(s->connect_timeout_ms, 45000);
    assert_int_equal(s->max_payload, 1000000);
    assert_int_equal(s->max_attachments, 10);
    assert_false(s->per_message_deflate);
    assert_true(s->http_compression);
    assert_string_equal(s->cookie, "io");
    assert_string_equal(s->cors_origin, "*");
    assert_false(s->cors_credentials);
    assert_int_equal(s->output_soft_limit, 1048576);
    assert_int_equal(s->output_hard_limit, 8388608);
    assert_int_equal(s->recovery_max_disconnection_ms, 0); /* enabled = false */
    assert_true(s->recovery_skip_middlewares);
    assert_int_equal(s->max_http_header_bytes, 16384);
    assert_int_equal(s->http_header_timeout_ms, 10000);
    assert_int_equal(s->http_idle_timeout_ms, 60000);
    assert_int_equal(s->max_connections, 0);

    char *pub = real(CONF("public"));
    assert_string_equal(c->static_root, pub);
    assert_string_equal(c->client_bundle, pub);
    free(pub);

    assert_int_equal(c->n_namespaces, 1);
    const struct conf_namespace *ns = &c->namespaces[0];
    assert_string_equal(ns->name, "/");
    assert_null(ns->pattern);
    assert_true(ns->cleanup);
    assert_false(ns->unmatched_disconnect);
    assert_int_equal(ns->other_rooms, JOIN_CLIENT);

    assert_int_equal(ns->n_rooms, 2);
    assert_string_equal(ns->rooms[0].name, "lobby");
    assert_null(ns->rooms[0].pattern);
    assert_int_equal(ns->rooms[0].join, JOIN_CLIENT);
    assert_int_equal(ns->rooms[0].max_members, 0);
    assert_true(ns->rooms[0].presence);
    assert_string_equal(ns->rooms[0].presence_event, "presence");
    assert_int_equal(ns->rooms[0].history, 20);
    assert_null(ns->rooms[1].name);
    assert_string_equal(ns->rooms[1].pattern, "game-*");
    assert_int_equal(ns->rooms[1].join, JOIN_RULES);
    assert_int_equal(ns->rooms[1].max_members, 8);
    assert_false(ns->rooms[1].presence);
    assert_string_equal(ns->rooms[1].presence_event, "presence");
    assert_int_equal(ns->rooms[1].history, 0);

    assert_int_equal(ns->n_rules, 7);
    static const char *const on[] = {"connect",  "message", "join",      "msg",
                                     "add user", "ask",     "disconnect"};
    static const int line[] = {38, 39, 40, 41, 42, 50, 55};
    static const size_t n_actions[] = {1, 1, 2, 1, 4, 1, 1};
    static const size_t n_conds[] = {0, 0, 1, 0, 1, 0, 1};
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(ns->rules[i].on, on[i]);
        assert_int_equal(ns->rules[i].line, line[i]);
        assert_int_equal(ns->rules[i].n_actions, n_actions[i]);
        assert_int_equal(ns->rules[i].n_conds, n_conds[i]);
    }

    const struct conf_action *a = rule_action(ns, 0, 0); /* connect */
    assert_int_equal(a->kind, ACT_EMIT);
    assert_int_equal(a->line, 38);
    assert_string_equal(a->event, "auth");
    assert_int_equal(a->to, TO_SENDER);
    assert_non_null(a->args);
    assert_null(a->room);
    assert_false(a->is_volatile);
    assert_int_equal(a->ack_timeout, 0);
    assert_int_equal(a->n_then, 0);
    assert_int_equal(a->n_on_timeout, 0);

    a = rule_action(ns, 1, 0); /* message: args is one template */
    assert_string_equal(a->event, "message-back");
    assert_non_null(a->args);

    assert_int_equal(ns->rules[2].conds[0].kind, COND_MIN_ARGS); /* join */
    assert_int_equal(ns->rules[2].conds[0].n, 1);
    a = rule_action(ns, 2, 0);
    assert_int_equal(a->kind, ACT_JOIN);
    assert_non_null(a->room);
    a = rule_action(ns, 2, 1);
    assert_int_equal(a->kind, ACT_ACK);
    assert_non_null(a->args);

    a = rule_action(ns, 3, 0); /* msg */
    assert_int_equal(a->to, TO_ROOM_OTHERS);
    assert_non_null(a->room);

    assert_int_equal(ns->rules[4].conds[0].kind, COND_DATA_UNSET); /* add user */
    assert_string_equal(ns->rules[4].conds[0].field, "username");
    a = rule_action(ns, 4, 0);
    assert_int_equal(a->kind, ACT_SET);
    assert_int_equal(a->line, 44);
    assert_string_equal(a->field, "username");
    assert_non_null(a->value);
    assert_int_equal(rule_action(ns, 4, 1)->kind, ACT_JOIN);
    assert_string_equal(rule_action(ns, 4, 2)->event, "login");
    assert_int_equal(rule_action(ns, 4, 3)->to, TO_OTHERS);
    assert_int_equal(rule_action(ns, 4, 3)->line, 47);

    a = rule_action(ns, 5, 0); /* ask */
    assert_int_equal(a->ack_timeout, 2000);
    assert_int_equal(a->n_then, 1);
    assert_string_equal(a->then[0].event, "answered");
    assert_int_equal(a->then[0].kind, ACT_EMIT);
    assert_int_equal(a->n_on_timeout, 1);
    assert_string_equal(a->on_timeout[0].event, "asked-timeout");
    assert_null(a->on_timeout[0].args);

    assert_int_equal(ns->rules[6].conds[0].kind, COND_DATA_SET); /* disconnect */
    assert_string_equal(rule_action(ns, 6, 0)->event, "user left");
    conf_free(c);
}

static void test_every_key(void **state)
{
    struct sockeye_conf *c = load_ok(CONF("every-key.conf"), NULL, 0);
    assert_int_equal(c->n_listeners, 2);
    assert_string_equal(c->listeners[0].address, "::1");
    assert_int_equal(c->listeners[0].port, 0);
    assert_string_equal(c->listeners[1].address, "localhost");
    assert_int_equal(c->listeners[1].port, 65535);
    const struct sio_config *s = &c->server;
    assert_int_equal(s->log_level, SIO_LOG_DEBUG);
    assert_true(s->log_json);
    assert_int_equal(c->shutdown_grace, 0);
    assert_string_equal(s->path, "/rt/");
    assert_false(s->polling);
    assert_true(s->websocket);
    assert_false(s->allow_upgrades);
    assert_int_equal(s->ping_interval_ms, 1000);
    assert_int_equal(s->ping_timeout_ms, 2000);
    assert_int_equal(s->upgrade_timeout_ms, 3000);
    assert_int_equal(s->connect_timeout_ms, 4000);
    assert_true(s->max_payload == (size_t)5000000000ULL);
    assert_int_equal(s->max_attachments, 3);
    assert_true(s->per_message_deflate);
    assert_false(s->http_compression);
    assert_string_equal(s->cookie, "sid");
    assert_string_equal(s->cors_origin, "https://a.example, http://b.example:8080");
    assert_true(s->cors_credentials);
    assert_int_equal(s->output_soft_limit, 1000);
    assert_int_equal(s->output_hard_limit, 0);
    assert_int_equal(s->recovery_max_disconnection_ms, 5000);
    assert_false(s->recovery_skip_middlewares);
    assert_int_equal(s->max_http_header_bytes, 2048);
    assert_int_equal(s->http_header_timeout_ms, 500);
    assert_int_equal(s->http_idle_timeout_ms, 600);
    assert_int_equal(s->max_connections, 7);
    char *pub = real(CONF("public"));
    assert_string_equal(c->static_root, pub);
    assert_string_equal(c->client_bundle, pub);
    free(pub);

    assert_int_equal(c->n_namespaces, 2);
    const struct conf_namespace *ns = &c->namespaces[0];
    assert_string_equal(ns->name, "/chat");
    assert_true(ns->unmatched_disconnect);
    assert_int_equal(ns->other_rooms, JOIN_RULES);
    assert_int_equal(ns->n_rooms, 0);
    assert_int_equal(ns->n_rules, 0);

    ns = &c->namespaces[1];
    assert_null(ns->name);
    assert_string_equal(ns->pattern, "/team-[0-9]*");
    assert_false(ns->cleanup);
    assert_string_equal(ns->rooms[1].name, "g-1");
    assert_int_equal(ns->rooms[1].join, JOIN_RULES);
    assert_int_equal(ns->rooms[1].max_members, 3);
    assert_true(ns->rooms[1].presence);
    assert_string_equal(ns->rooms[1].presence_event, "who");
    assert_int_equal(ns->rooms[1].history, 10000);

    const struct conf_rule *r = &ns->rules[0];
    assert_int_equal(r->n_conds, 5);
    static const enum conf_cond_kind kinds[] = {COND_IN_ROOM, COND_NOT_IN_ROOM, COND_DATA_SET,
                                                COND_DATA_UNSET, COND_MIN_ARGS};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(r->conds[i].kind, kinds[i]);
    assert_non_null(r->conds[0].room);
    assert_non_null(r->conds[1].room);
    assert_string_equal(r->conds[2].field, "x");
    assert_string_equal(r->conds[3].field, "y");
    assert_int_equal(r->conds[4].n, 2);

    assert_int_equal(r->n_actions, 7);
    static const enum conf_action_kind acts[] = {ACT_LEAVE, ACT_EMIT,       ACT_EMIT, ACT_UNSET,
                                                 ACT_SET,   ACT_DISCONNECT, ACT_DROP};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(r->actions[i].kind, acts[i]);
    assert_non_null(r->actions[0].room);
    assert_int_equal(r->actions[1].to, TO_ROOM);
    assert_true(r->actions[1].is_volatile);
    assert_non_null(r->actions[1].room);
    assert_int_equal(r->actions[2].to, TO_NAMESPACE);
    assert_non_null(r->actions[2].args);
    assert_string_equal(r->actions[3].field, "x");
    assert_string_equal(r->actions[4].field, "z");
    assert_non_null(r->actions[4].value);
    conf_free(c);
}

/* --- defaults ----------------------------------------------------------- */

static void test_defaults(void **state)
{
    struct sockeye_conf *c = load_ok(CONF("empty.conf"), NULL, 0);
    struct sio_config d;
    sio_config_init(&d);
    const struct sio_config *s = &c->server;
    assert_string_equal(s->path, d.path);
    assert_true(s->path != d.path); /* the conf's own copy */
    assert_int_equal(s->ping_interval_ms, d.ping_interval_ms);
    assert_int_equal(s->ping_timeout_ms, d.ping_timeout_ms);
    assert_int_equal(s->upgrade_timeout_ms, d.upgrade_timeout_ms);
    assert_int_equal(s->connect_timeout_ms, d.connect_timeout_ms);
    assert_int_equal(s->max_payload, d.max_payload);
    assert_int_equal(s->polling, d.polling);
    assert_int_equal(s->websocket, d.websocket);
    assert_int_equal(s->allow_upgrades, d.allow_upgrades);
    assert_null(s->cors_origin);
    assert_int_equal(s->cors_credentials, d.cors_credentials);
    assert_null(s->cookie);
    assert_int_equal(s->per_message_deflate, d.per_message_deflate);
    assert_int_equal(s->http_compression, d.http_compression);
    assert_int_equal(s->output_soft_limit, d.output_soft_limit);
    assert_int_equal(s->output_hard_limit, d.output_hard_limit);
    assert_int_equal(s->max_http_header_bytes, d.max_http_header_bytes);
    assert_int_equal(s->http_header_timeout_ms, d.http_header_timeout_ms);
    assert_int_equal(s->http_idle_timeout_ms, d.http_idle_timeout_ms);
    assert_int_equal(s->max_connections, d.max_connections);
    assert_int_equal(s->log_level, d.log_level);
    assert_int_equal(s->log_json, d.log_json);
    assert_int_equal(s->max_attachments, d.max_attachments);
    assert_int_equal(s->recovery_max_disconnection_ms, d.recovery_max_disconnection_ms);
    assert_int_equal(s->recovery_skip_middlewares, d.recovery_skip_middlewares);

    assert_int_equal(c->n_listeners, 1);
    assert_string_equal(c->listeners[0].address, "0.0.0.0");
    assert_int_equal(c->listeners[0].port, 3000);
    assert_null(c->listeners[0].tls_cert);
    assert_int_equal(c->shutdown_grace, 10000);
    assert_null(c->static_root);
    assert_null(c->client_bundle);
    assert_int_equal(c->n_namespaces, 0);
    assert_null(c->namespaces);
    conf_free(c);

    c = load_ok(CONF("defaults.conf"), NULL, 0);
    assert_int_equal(c->n_listeners, 1);
    assert_string_equal(c->listeners[0].address, "0.0.0.0");
    assert_int_equal(c->listeners[0].port, 3000);
    /* recovery present, enabled: max_disconnection defaults to 120000 */
    assert_int_equal(c->server.recovery_max_disconnection_ms, 120000);
    const struct conf_namespace *ns = &c->namespaces[0];
    assert_string_equal(ns->name, "/");
    assert_true(ns->cleanup);
    assert_false(ns->unmatched_disconnect);
    assert_int_equal(ns->other_rooms, JOIN_CLIENT);
    assert_string_equal(ns->rooms[0].name, "r");
    assert_int_equal(ns->rooms[0].join, JOIN_CLIENT);
    assert_int_equal(ns->rooms[0].max_members, 0);
    assert_false(ns->rooms[0].presence);
    assert_string_equal(ns->rooms[0].presence_event, "presence");
    assert_int_equal(ns->rooms[0].history, 0);
    const struct conf_action *a = rule_action(ns, 0, 0);
    assert_int_equal(a->kind, ACT_EMIT);
    assert_int_equal(a->to, TO_SENDER);
    assert_null(a->args);
    assert_null(a->room);
    assert_int_equal(ns->rules[0].n_conds, 0);
    assert_null(ns->rules[0].conds);
    assert_true(ns[1].cleanup); /* a pattern without cleanup */
    conf_free(c);
}

/* --- one test per error class -------------------------------------------- */

static void test_err_unknown_key_top(void **state)
{
    expect_error(CONF("bad/unknown-top.conf"), NULL, 0,
                 CONF("bad/unknown-top.conf") ":2: unknown key 'pingInterval' at top level");
}

static void test_err_unknown_key_engine(void **state)
{
    expect_error(CONF("bad/unknown-engine.conf"), NULL, 0,
                 CONF("bad/unknown-engine.conf") ":3: unknown key 'pingInterval' in engine");
}

static void test_err_unknown_key_action(void **state)
{
    expect_error(CONF("bad/unknown-action.conf"), NULL, 0,
                 CONF("bad/unknown-action.conf") ":5: unknown key 'too' in "
                                                 "namespaces.[0].rules.[0].actions.[0]");
}

static void test_err_wrong_type(void **state)
{
    expect_error(CONF("bad/wrong-type.conf"), NULL, 0,
                 CONF("bad/wrong-type.conf") ":2: engine.ping_interval: expected an integer");
}

static void test_err_bad_enum(void **state)
{
    expect_error(CONF("bad/bad-enum.conf"), NULL, 0,
                 CONF("bad/bad-enum.conf") ":2: log.level: 'verbose' is not one of debug, info, "
                                           "warn, error, off");
}

static void test_err_bad_pattern(void **state)
{
    expect_error(CONF("bad/bad-pattern.conf"), NULL, 0,
                 CONF("bad/bad-pattern.conf") ":4: namespaces.[0].rooms.[0].pattern: invalid "
                                              "pattern: unbalanced '['");
}

static void test_err_bad_template(void **state)
{
    expect_error(CONF("bad/bad-template.conf"), NULL, 0,
                 CONF("bad/bad-template.conf") ":6: namespaces.[0].rules.[0].actions.[0].args.[0]: "
                                               "unknown expression 'nope'");
}

static void test_err_missing_cert(void **state)
{
    expect_error(CONF("bad/missing-cert.conf"), NULL, 0,
                 CONF("bad/missing-cert.conf") ":4: listeners.[1].tls.cert: cannot read 'x.pem': "
                                               "No such file or directory");
}

static void test_err_two_verbs(void **state)
{
    expect_error(CONF("bad/two-verbs.conf"), NULL, 0,
                 CONF("bad/two-verbs.conf") ":5: namespaces.[0].rules.[0].actions.[1]: more than "
                                            "one verb ('join' and 'leave'); each action has "
                                            "exactly one");
}

static void test_err_room_missing(void **state)
{
    expect_error(CONF("bad/room-missing.conf"), NULL, 0,
                 CONF("bad/room-missing.conf") ":4: namespaces.[0].rules.[0].actions.[0]: to = "
                                               "\"room\" requires room");
}

static void test_err_wide_int(void **state)
{
    expect_error(CONF("bad/wide-int.conf"), NULL, 0,
                 CONF("bad/wide-int.conf") ":2: engine.max_payload: 5000000000 does not fit in "
                                           "32 bits: write it as 5000000000L");
}

static void test_err_syntax(void **state)
{
    char err[512];
    struct sockeye_conf *c;
    assert_int_equal(conf_load(CONF("bad/syntax.conf"), NULL, 0, &c, err, sizeof(err)), -1);
    assert_null(c);
    /* the text is libconfig's; the location is ours to check */
    const char *want = CONF("bad/syntax.conf") ":3: ";
    assert_memory_equal(err, want, strlen(want));
}

static void test_err_static_root(void **state)
{
    expect_error(CONF("bad/static-root.conf"), NULL, 0,
                 CONF("bad/static-root.conf") ":2: http.static_root: 'nonexistent' must be an "
                                              "existing directory: No such file or directory");
}

static void test_err_then_without_ack(void **state)
{
    expect_error(CONF("bad/then-without-ack.conf"), NULL, 0,
                 CONF("bad/then-without-ack.conf") ":5: namespaces.[0].rules.[0].actions.[0]."
                                                   "then: only allowed with ack_timeout");
}

/* An included file: its settings, and its own name in errors. */
static void test_include(void **state)
{
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir("/"), 0);
    struct sockeye_conf *c = load_ok(CONF("include.conf"), NULL, 0);
    assert_int_equal(c->shutdown_grace, 1);
    assert_int_equal(c->server.ping_interval_ms, 1234);
    conf_free(c);
    expect_error(CONF("bad/include.conf"), NULL, 0,
                 CONF("bad/include-part.conf") ":2: shutdown_grace: 5000000000 does not fit in 32 "
                                               "bits: write it as 5000000000L");
    assert_int_equal(chdir(cwd), 0);
}

static void test_err_missing_file(void **state)
{
    expect_error(CONF("no-such.conf"), NULL, 0,
                 CONF("no-such.conf") ": cannot read: No such file or directory");
}

/* Smaller value errors, through --set on the example (no file each). */
static void test_err_values(void **state)
{
    /* line: the error is about a key of the file that conflicts with the
     * override, and is reported there */
    static const struct {
        const char *set, *want;
        int line;
    } cases[] = {
        {"engine.ping_interval=0", "engine.ping_interval: must be at least 1", 0},
        {"listeners.[0].port=65536", "listeners.[0].port: must be between 0 and 65535", 0},
        {"listeners.[0].port=-1", "listeners.[0].port: must not be negative", 0},
        {"listeners.[0].address=example.com",
         "listeners.[0].address: expected a numeric IPv4 or IPv6 address or \"localhost\"", 0},
        {"engine.path=socket.io", "engine.path: must start with '/'", 0},
        {"engine.cookie=a;b", "engine.cookie: is not a valid cookie name", 0},
        {"namespaces.[0].name=chat", "namespaces.[0].name: a namespace must start with '/'", 0},
        {"namespaces.[0].pattern=/x-*",
         "namespaces.[0].pattern: only one of name and pattern may be set", 0},
        {"namespaces.[0].cleanup=false", "namespaces.[0].cleanup: only allowed with pattern", 0},
        {"namespaces.[0].rooms.[1].name=x",
         "namespaces.[0].rooms.[1].name: only one of name and pattern may be set", 0},
        {"namespaces.[0].rooms.[1].pattern=",
         "namespaces.[0].rooms.[1].pattern: invalid "
         "pattern: must not be empty",
         0},
        {"namespaces.[0].rooms.[1].pattern=lobby", NULL, 0},
        {"namespaces.[0].rooms.[0].history=10001",
         "namespaces.[0].rooms.[0].history: must be between 0 and 10000", 0},
        {"namespaces.[0].rules.[0].on=", "namespaces.[0].rules.[0].on: must not be empty", 0},
        {"namespaces.[0].rules.[0].on=connect_error",
         "namespaces.[0].rules.[0].on: is a reserved event name", 0},
        {"namespaces.[0].rules.[1].actions.[0].emit=disconnect",
         "namespaces.[0].rules.[1].actions.[0].emit: is a reserved event name", 0},
        {"namespaces.[0].rules.[1].actions.[0].to=everyone",
         "namespaces.[0].rules.[1].actions.[0].to: 'everyone' is not one of sender, room, "
         "room_others, namespace, others",
         0},
        {"namespaces.[0].rules.[3].actions.[0].ack_timeout=5",
         "namespaces.[0].rules.[3].actions.[0].ack_timeout: only allowed with to = \"sender\"", 0},
        {"namespaces.[0].rules.[5].actions.[0].ack_timeout=0",
         "namespaces.[0].rules.[5].actions.[0].ack_timeout: must be at least 1", 0},
        {"namespaces.[0].rules.[2].actions.[0].volatile=true",
         "namespaces.[0].rules.[2].actions.[0].volatile: only allowed with emit", 0},
        {"namespaces.[0].rules.[2].actions.[1].args=x",
         "namespaces.[0].rules.[2].actions.[1].args: only allowed with emit", 0},
        {"namespaces.[0].rules.[2].on=connect",
         "namespaces.[0].rules.[2].actions.[1].ack: there is no ack to answer in a \"connect\" "
         "rule",
         40},
        {"namespaces.[0].rules.[2].on=disconnect",
         "namespaces.[0].rules.[2].actions.[0].join: not possible in a \"disconnect\" rule", 40},
        {"namespaces.[0].rules.[0].on=disconnect",
         "namespaces.[0].rules.[0].actions.[0]: cannot emit to the sender in a \"disconnect\" "
         "rule",
         38},
        {"namespaces.[0].rules.[4].actions.[0].set=a.b",
         "namespaces.[0].rules.[4].actions.[0].set: a data field name cannot contain '.'", 0},
        {"namespaces.[0].rules.[4].if.data_unset=",
         "namespaces.[0].rules.[4].if.data_unset: must not be empty", 0},
        {"engine.output.soft_limit=9000000",
         "engine.output.soft_limit: soft_limit (9000000) must not exceed hard_limit (8388608)", 0},
        {"http.client_bundle=full.conf",
         "http.client_bundle: 'full.conf' must be an existing directory: Not a directory", 0},
        {"http.max_header_bytes=100", "http.max_header_bytes: must be between 1024 and 67108864",
         0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *ov[] = {cases[i].set};
        char err[512] = "";
        struct sockeye_conf *c = NULL;
        int rc = conf_load(CONF("full.conf"), ov, 1, &c, err, sizeof(err));
        if (!cases[i].want) {
            /* a room pattern equal to an existing room's name is allowed */
            if (rc != 0)
                fail_msg("--set %s: %s", cases[i].set, err);
            conf_free(c);
            continue;
        }
        char want[512];
        if (cases[i].line)
            snprintf(want, sizeof(want), "%s:%d: %s", CONF("full.conf"), cases[i].line,
                     cases[i].want);
        else
            snprintf(want, sizeof(want), "--set %s: %s", cases[i].set, cases[i].want);
        if (rc != -1 || strcmp(err, want) != 0)
            fail_msg("case %zu: got rc %d '%s', want '%s'", i, rc, err, want);
        assert_null(c);
    }
}

/* Errors found in files (locations, not --set). */
static void test_err_file_structure(void **state)
{
    char dir[] = "/tmp/test_config.XXXXXX";
    assert_non_null(mkdtemp(dir));
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"listeners = ();\n", ":1: listeners: must list at least one listener"},
        {"listeners = ( 5 );\n", ":1: listeners.[0]: expected a group"},
        {"listeners = ( { port = 1; },\n { address = \"0.0.0.0\"; port = 1; } );\n",
         ":2: listeners.[1]: 0.0.0.0 port 1 is already used by listeners.[0]"},
        {"engine = { transports = [ ]; };\n", ":1: engine.transports: must list at least one "
                                              "transport"},
        {"engine = { transports = [ \"polling\", \"xhr\" ]; };\n",
         ":1: engine.transports.[1]: 'xhr' is not one of polling, websocket"},
        {"engine = { transports = [ 1 ]; };\n", ":1: engine.transports: expected an array of "
                                                "strings"},
        {"engine = { cors = { credentials = true; }; };\n",
         ":1: engine.cors: missing key 'origins'"},
        {"engine = { cors = { origins = [ \"*\", \"https://a\" ]; }; };\n",
         ":1: engine.cors.origins.[0]: \"*\" must be the only origin"},
        {"engine = { recovery = { enabled = 1; }; };\n",
         ":1: engine.recovery.enabled: expected a boolean"},
        {"engine = { path = 5; };\n", ":1: engine.path: expected a string"},
        {"engine = 5;\n", ":1: engine: expected a group"},
        {"namespaces = ( { rules = ( { actions = (); } ); } );\n",
         ":1: namespaces.[0].rules.[0]: missing key 'on'"},
        {"namespaces = ( { rules = ( { on = \"x\"; } ); } );\n",
         ":1: namespaces.[0].rules.[0]: missing key 'actions'"},
        {"namespaces = ( { rules = ( { on = \"x\"; actions = ( { to = \"room\"; } ); } ); } );\n",
         ":1: namespaces.[0].rules.[0].actions.[0]: no verb: expected one of join, leave, emit, "
         "ack, set, unset, disconnect, drop"},
        {"namespaces = ( { rules = ( { on = \"x\"; actions = ( { set = \"f\"; } ); } ); } );\n",
         ":1: namespaces.[0].rules.[0].actions.[0]: set requires value"},
        {"namespaces = ( { rules = ( { on = \"x\"; actions = ( { drop = false; } ); } ); } );\n",
         ":1: namespaces.[0].rules.[0].actions.[0].drop: must be true (leave the action out "
         "instead)"},
        {"namespaces = ( { rules = ( { on = \"x\"; if = { in_rooms = \"a\"; };\n"
         " actions = (); } ); } );\n",
         ":1: unknown key 'in_rooms' in namespaces.[0].rules.[0].if"},
        {"namespaces = ( { rules = ( { on = \"x\"; actions = (\n"
         " { emit = \"y\"; args = { a = 1; }; } ); } ); } );\n",
         ":2: namespaces.[0].rules.[0].actions.[0].args: expected a string, an array or a "
         "list"},
        {"namespaces = ( { rules = ( { on = \"x\"; actions = (\n"
         " { set = \"f\"; value = { k = [ \"{{nope}}\" ]; }; } ); } ); } );\n",
         ":2: namespaces.[0].rules.[0].actions.[0].value.k.[0]: unknown expression 'nope'"},
        {"namespaces = ( { rules = ( { on = \"x\"; actions = (\n"
         " { join = \"{{args.0\"; } ); } ); } );\n",
         ":2: namespaces.[0].rules.[0].actions.[0].join: unterminated '{{'"},
        {"namespaces = ( { rules = ( { on = \"x\"; actions = ( { emit = \"y\"; ack_timeout = 5;\n"
         " timeout = ( { ack = ( ); } ); } ); } ); } );\n",
         ":2: namespaces.[0].rules.[0].actions.[0].timeout.[0].ack: there is no ack to answer in "
         "timeout actions"},
        {"engine = { max_attachments = 0; };\n", ":1: engine.max_attachments: must be at least 1"},
        {"namespaces = ( { rooms = ( { max_members = 2; } ); } );\n",
         ":1: namespaces.[0].rooms.[0]: missing key 'name' or 'pattern'"},
        {"namespaces = ( { rooms = ( { name = \"a\"; },\n { name = \"a\"; } ); } );\n",
         ":2: namespaces.[0].rooms.[1]: room 'a' is already configured (rooms.[0])"},
        {"namespaces = ( { },\n { name = \"/\"; } );\n",
         ":2: namespaces.[1]: namespace '/' is already configured (namespaces.[0])"},
        {"namespaces = ( { pattern = \"/a-[[:alpha:]\"; } );\n",
         ":1: namespaces.[0].pattern: invalid pattern: unbalanced '['"},
        {"namespaces = ( { pattern = \"/a\\\\\"; } );\n",
         ":1: namespaces.[0].pattern: invalid pattern: ends with a lone '\\'"},
        {"shutdown_grace = -1; # shutdown_grace = 5000000000\n",
         ":1: shutdown_grace: must not be negative"},
        {"shutdown_grace = 4294967296L;\n", ":1: shutdown_grace: must be at least 0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char file[64];
        snprintf(file, sizeof(file), "%s/c%zu.conf", dir, i);
        FILE *fp = fopen(file, "w");
        assert_non_null(fp);
        fputs(cases[i].text, fp);
        fclose(fp);
        char err[512] = "", want[512];
        struct sockeye_conf *c = NULL;
        int rc = conf_load(file, NULL, 0, &c, err, sizeof(err));
        snprintf(want, sizeof(want), "%s%s", file, cases[i].want);
        if (rc != -1 || strcmp(err, want) != 0)
            fail_msg("case %zu: got rc %d '%s', want '%s'", i, rc, err, want);
        unlink(file);
    }
    rmdir(dir);
}

/* --- --set ---------------------------------------------------------------- */

static void test_set_existing_int(void **state)
{
    const char *ov[] = {"engine.ping_interval=300", "listeners.[1].port=4000"};
    struct sockeye_conf *c = load_ok(CONF("full.conf"), ov, 2);
    assert_int_equal(c->server.ping_interval_ms, 300);
    assert_int_equal(c->listeners[1].port, 4000);
    assert_int_equal(c->listeners[0].port, 3000);
    conf_free(c);
}

static void test_set_missing_key(void **state)
{
    /* engine.recovery exists in full.conf but not in empty.conf: the
     * groups along the path are created, the leaf gets the schema's type */
    const char *ov[] = {"engine.recovery.enabled=true", "engine.recovery.max_disconnection=9000",
                        "engine.max_payload=6000000000", "http.max_connections=5",
                        "engine.cors.origins.[0]=x"};
    struct sockeye_conf *c = load_ok(CONF("empty.conf"), ov, 4);
    assert_int_equal(c->server.recovery_max_disconnection_ms, 9000);
    assert_true(c->server.max_payload == (size_t)6000000000ULL);
    assert_int_equal(c->server.max_connections, 5);
    conf_free(c);
    /* a list cannot be created by --set */
    expect_error(CONF("empty.conf"), &ov[4], 1,
                 "--set engine.cors.origins.[0]=x: engine.cors.origins is a list; only scalar "
                 "settings can be overridden");
    /* an error in a group --set created points at the override */
    const char *cors[] = {"engine.cors.credentials=true"};
    expect_error(CONF("empty.conf"), cors, 1,
                 "--set engine.cors.credentials=true: engine.cors: missing key 'origins'");
}

static void test_set_string_and_bool(void **state)
{
    const char *ov[] = {"engine.cookie=sid=x",
                        "log.level=debug",
                        "engine.allow_upgrades=FALSE",
                        "namespaces.[0].rules.[0].on=hello",
                        "engine.transports.[0]=websocket",
                        "namespaces.[0].rules.[1].actions.[0].args={{args.0}}"};
    /* the value may contain '=': only the first one splits; here it makes
     * the cookie name invalid */
    expect_error(CONF("full.conf"), ov, 1,
                 "--set engine.cookie=sid=x: engine.cookie: is not a valid cookie name");
    struct sockeye_conf *c = load_ok(CONF("full.conf"), ov + 1, 3);
    assert_int_equal(c->server.log_level, SIO_LOG_DEBUG);
    assert_false(c->server.allow_upgrades);
    assert_string_equal(c->namespaces[0].rules[0].on, "hello");
    /* transports = [ "websocket", "websocket" ] */
    conf_free(c);
    /* a conflict with a key of the file is reported where that key is */
    expect_error(CONF("full.conf"), ov + 4, 1,
                 CONF("full.conf") ":13: engine.transports.[1]: 'websocket' is listed twice");
    const char *to[] = {"namespaces.[0].rules.[3].actions.[0].to=others"};
    expect_error(CONF("full.conf"), to, 1,
                 CONF("full.conf") ":41: namespaces.[0].rules.[3].actions.[0].room: only allowed "
                                   "with to = \"room\" or \"room_others\"");
    c = load_ok(CONF("full.conf"), ov + 5, 1);
    assert_non_null(c->namespaces[0].rules[1].actions[0].args);
    conf_free(c);
}

static void test_set_bad_value(void **state)
{
    static const struct {
        const char *set, *want;
    } cases[] = {
        {"engine.ping_interval=abc", "expected an integer"},
        {"engine.ping_interval=", "expected an integer"},
        {"engine.ping_interval=12x", "expected an integer"},
        {"engine.ping_interval=99999999999999999999", "expected an integer"},
        {"log.json=yes", "expected a boolean (true or false)"},
        {"engine.pingInterval=5", "unknown key 'pingInterval' in engine"},
        {"pingInterval=5", "unknown key 'pingInterval' at top level"},
        {"engine.ping_interval", "expected PATH=VALUE"},
        {"=5", "expected PATH=VALUE"},
        {"engine..ping_interval=5", "bad path"},
        {"listeners.[9].port=1", "listeners.[9] does not exist"},
        {"listeners.port=1", "listeners is a list: address its elements as listeners.[N]"},
        {"engine.[0]=1", "engine is a group, not a list"},
        {"engine.ping_interval.x=1", "engine.ping_interval is not a group"},
        {"namespaces.[0].rules.[0].actions.[0].args.[5]=1",
         "namespaces.[0].rules.[0].actions.[0].args.[5] does not exist"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *ov[] = {cases[i].set};
        char want[512];
        snprintf(want, sizeof(want), "--set %s: %s", cases[i].set, cases[i].want);
        expect_error(CONF("full.conf"), ov, 1, want);
    }
}

static void test_set_not_scalar(void **state)
{
    static const struct {
        const char *set, *want;
    } cases[] = {
        {"listeners=5", "listeners is a list; only scalar settings can be overridden"},
        {"engine.transports=polling",
         "engine.transports is a list; only scalar settings can be overridden"},
        {"engine=5", "engine is a group; only scalar settings can be overridden"},
        {"namespaces.[0]=x", "namespaces.[0] is a group; only scalar settings can be overridden"},
        {"namespaces.[0].rules.[0].actions.[0].args=x",
         "namespaces.[0].rules.[0].actions.[0].args is a list; only scalar settings can be "
         "overridden"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *ov[] = {cases[i].set};
        char want[512];
        snprintf(want, sizeof(want), "--set %s: %s", cases[i].set, cases[i].want);
        expect_error(CONF("full.conf"), ov, 1, want);
    }
}

/* A file value of the wrong type is replaced by one of the schema's type,
 * and later overrides win. */
static void test_set_retypes_and_order(void **state)
{
    const char *ov[] = {"engine.ping_interval=1", "engine.ping_interval=2"};
    struct sockeye_conf *c = load_ok(CONF("bad/wrong-type.conf"), ov, 2);
    assert_int_equal(c->server.ping_interval_ms, 2);
    conf_free(c);
    /* a 32-bit int in the file becomes a 64-bit one */
    const char *big[] = {"engine.max_payload=5000000000"};
    c = load_ok(CONF("full.conf"), big, 1);
    assert_true(c->server.max_payload == (size_t)5000000000ULL);
    conf_free(c);
}

/* --- paths ---------------------------------------------------------------- */

static void test_relative_paths(void **state)
{
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    /* from the parent directory: the file name is relative, and the paths in
     * it are taken relative to the file, not to the working directory */
    assert_int_equal(chdir(TEST_CONF_DIR "/.."), 0);
    struct sockeye_conf *c = load_ok("conf/full.conf", NULL, 0);
    assert_int_equal(chdir(cwd), 0);
    char *pub = real(CONF("public"));
    assert_string_equal(c->static_root, pub);
    assert_string_equal(c->client_bundle, pub);
    assert_string_equal(c->file, "conf/full.conf");
    conf_free(c);

    /* from the directory itself: no slash in the name */
    assert_int_equal(chdir(TEST_CONF_DIR), 0);
    c = load_ok("full.conf", NULL, 0);
    assert_int_equal(chdir(cwd), 0);
    assert_string_equal(c->static_root, pub);
    conf_free(c);

    /* absolute paths stay as they are (resolved) */
    const char *ov[] = {"http.static_root=" TEST_CONF_DIR "/./public"};
    c = load_ok(CONF("full.conf"), ov, 1);
    assert_string_equal(c->static_root, pub);
    conf_free(c);
    free(pub);
}

static void test_tls_listener(void **state)
{
    char dir[] = "/tmp/test_config_tls.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-subj /CN=localhost -days 1 -keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1",
             dir, dir);
    if (system(cmd) != 0) {
        rmdir(dir);
        skip(); /* no openssl CLI */
    }
    char file[128], sub[128];
    snprintf(file, sizeof(file), "%s/tls.conf", dir);
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fputs("listeners = (\n"
          "  { port = 3000; },\n"
          "  { address = \"::\"; port = 3443;\n"
          "    tls = { cert = \"cert.pem\"; key = \"sub/../key.pem\"; }; }\n"
          ");\n",
          fp);
    fclose(fp);

    struct sockeye_conf *c = load_ok(file, NULL, 0);
    char want[160];
    char *rdir = real(dir);
    snprintf(want, sizeof(want), "%s/cert.pem", rdir);
    assert_string_equal(c->listeners[1].tls_cert, want);
    snprintf(want, sizeof(want), "%s/key.pem", rdir);
    assert_string_equal(c->listeners[1].tls_key, want);
    assert_null(c->listeners[0].tls_cert);
    conf_free(c);

    /* a key without its certificate */
    const char *ov[] = {"listeners.[0].tls.key=key.pem"};
    char msg[256];
    snprintf(msg, sizeof(msg), "--set %s: listeners.[0].tls: missing key 'cert'", ov[0]);
    expect_error(file, ov, 1, msg);
    /* a directory is not a certificate */
    const char *ov2[] = {"listeners.[1].tls.cert=sub"};
    snprintf(msg, sizeof(msg),
             "--set %s: listeners.[1].tls.cert: cannot read 'sub': Is a "
             "directory",
             ov2[0]);
    expect_error(file, ov2, 1, msg);

    snprintf(want, sizeof(want), "%s/cert.pem", dir);
    unlink(want);
    snprintf(msg, sizeof(msg),
             "%s:4: listeners.[1].tls.cert: cannot read 'cert.pem': No such "
             "file or directory",
             file);
    expect_error(file, NULL, 0, msg);
    snprintf(want, sizeof(want), "%s/key.pem", dir);
    unlink(want);
    unlink(file);
    rmdir(sub);
    rmdir(dir);
    free(rdir);
}

/* --- conf_room_for -------------------------------------------------------- */

static void test_room_for(void **state)
{
    struct sockeye_conf *c = load_ok(CONF("every-key.conf"), NULL, 0);
    const struct conf_namespace *ns = &c->namespaces[1];
    /* rooms: { pattern "g-?" }, { name "g-1" }: the exact name wins although
     * the pattern comes first */
    assert_ptr_equal(conf_room_for(ns, "g-1"), &ns->rooms[1]);
    assert_ptr_equal(conf_room_for(ns, "g-2"), &ns->rooms[0]);
    assert_null(conf_room_for(ns, "g-10"));
    assert_null(conf_room_for(ns, "lobby"));
    assert_null(conf_room_for(&c->namespaces[0], "g-1"));
    conf_free(c);

    c = load_ok(CONF("full.conf"), NULL, 0);
    ns = &c->namespaces[0];
    assert_ptr_equal(conf_room_for(ns, "lobby"), &ns->rooms[0]);
    assert_ptr_equal(conf_room_for(ns, "game-7"), &ns->rooms[1]);
    assert_null(conf_room_for(ns, "game"));
    conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_example),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_err_unknown_key_top),
        cmocka_unit_test(test_err_unknown_key_engine),
        cmocka_unit_test(test_err_unknown_key_action),
        cmocka_unit_test(test_err_wrong_type),
        cmocka_unit_test(test_err_bad_enum),
        cmocka_unit_test(test_err_bad_pattern),
        cmocka_unit_test(test_err_bad_template),
        cmocka_unit_test(test_err_missing_cert),
        cmocka_unit_test(test_err_two_verbs),
        cmocka_unit_test(test_err_room_missing),
        cmocka_unit_test(test_err_wide_int),
        cmocka_unit_test(test_err_syntax),
        cmocka_unit_test(test_err_static_root),
        cmocka_unit_test(test_err_then_without_ack),
        cmocka_unit_test(test_err_missing_file),
        cmocka_unit_test(test_include),
        cmocka_unit_test(test_err_values),
        cmocka_unit_test(test_err_file_structure),
        cmocka_unit_test(test_set_existing_int),
        cmocka_unit_test(test_set_missing_key),
        cmocka_unit_test(test_set_string_and_bool),
        cmocka_unit_test(test_set_bad_value),
        cmocka_unit_test(test_set_not_scalar),
        cmocka_unit_test(test_set_retypes_and_order),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_tls_listener),
        cmocka_unit_test(test_room_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
