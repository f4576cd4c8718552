/* config: the sockeye.conf file (libconfig syntax), loaded into one
 * immutable struct sockeye_conf. Every key is documented in
 * man/sockeye.conf.5.
 *
 * Loading validates everything: unknown keys, wrong types, bad values, bad
 * patterns and templates, missing TLS files are errors reported as
 * "FILE:LINE: message" naming the key, and nothing is returned. Relative
 * paths in the file are taken relative to the file's directory.
 *
 * --set overrides (PATH=VALUE, e.g. "engine.ping_interval=300") are applied
 * to the parsed file before validation: an existing scalar setting takes the
 * new value (converted to its type); a missing one is created with the type
 * the schema expects. Only scalar settings can be overridden.
 */
#ifndef SOCKEYE_CONFIG_H
#define SOCKEYE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sockeye.h"
#include "template.h"

struct conf_listener {
    char *address;  /* default "0.0.0.0" */
    uint16_t port;  /* default 3000 */
    char *tls_cert; /* absolute path or NULL */
    char *tls_key;
};

/* Who may put a socket into a room. */
enum conf_join_policy {
    JOIN_CLIENT, /* any join action, also with a room name taken from client input */
    JOIN_RULES,  /* only join actions whose room name does not depend on client input */
};

struct conf_room {
    char *name;    /* exact name, or NULL when pattern is set */
    char *pattern; /* fnmatch(3) glob */
    enum conf_join_policy join;
    unsigned max_members; /* 0 = unlimited */
    bool presence;        /* emit presence notices to the room on join/leave */
    char *presence_event; /* default "presence" */
    unsigned history;     /* replay the last N room events to a joiner (0 = off) */
};

enum conf_target {
    TO_SENDER,      /* the socket that sent the event */
    TO_ROOM,        /* every member of `room` */
    TO_ROOM_OTHERS, /* every member of `room` except the sender */
    TO_NAMESPACE,   /* every socket of the namespace */
    TO_OTHERS,      /* every socket of the namespace except the sender */
};

enum conf_action_kind {
    ACT_JOIN,       /* join `room` */
    ACT_LEAVE,      /* leave `room` */
    ACT_EMIT,       /* emit `event` with `args` to `to` (+ `room`) */
    ACT_ACK,        /* answer the event's ack with `args` */
    ACT_SET,        /* data[field] = value */
    ACT_UNSET,      /* delete data[field] */
    ACT_DISCONNECT, /* disconnect the socket from the namespace */
    ACT_DROP,       /* stop: no further actions or rules for this event */
};

struct conf_action {
    enum conf_action_kind kind;
    int line;
    struct tmpl *room;        /* JOIN, LEAVE, EMIT to a room */
    char *event;              /* EMIT: the name as written */
    struct tmpl *event_tmpl;  /* EMIT: set when the name has expressions ("{{args.0}}");
                                 evaluated per event; empty or reserved names are not sent */
    enum conf_target to;      /* EMIT */
    struct tmpl *args;        /* EMIT, ACK: a list template, or one template
                                 that evaluates to the whole argument array */
    bool is_volatile;         /* EMIT */
    unsigned ack_timeout;     /* EMIT to the sender expecting an ack (0 = none) */
    struct conf_action *then; /* run when the ack arrives (`ack` is set) */
    size_t n_then;
    struct conf_action *on_timeout; /* run when it does not */
    size_t n_on_timeout;
    char *field;        /* SET, UNSET */
    struct tmpl *value; /* SET */
};

enum conf_cond_kind {
    COND_IN_ROOM, /* the socket is in `room` */
    COND_NOT_IN_ROOM,
    COND_DATA_SET, /* data[field] exists */
    COND_DATA_UNSET,
    COND_MIN_ARGS, /* at least n arguments */
};

struct conf_cond {
    enum conf_cond_kind kind;
    struct tmpl *room;
    char *field;
    unsigned n;
};

struct conf_rule {
    char *on; /* event name, or "connect" / "disconnect" */
    int line;
    struct conf_cond *conds; /* all must hold */
    size_t n_conds;
    struct conf_action *actions;
    size_t n_actions;
};

struct conf_namespace {
    char *name;                        /* exact ("/chat"), or NULL when pattern is set */
    char *pattern;                     /* glob over namespace names */
    bool cleanup;                      /* pattern children removed when empty (default true) */
    bool unmatched_disconnect;         /* unmatched events: disconnect (default: drop) */
    enum conf_join_policy other_rooms; /* rooms not listed (default JOIN_CLIENT) */
    struct conf_room *rooms;
    size_t n_rooms;
    struct conf_rule *rules;
    size_t n_rules;
};

struct sockeye_conf {
    char *file;               /* as given */
    struct sio_config server; /* strings point into this struct's own copies */
    struct conf_listener *listeners;
    size_t n_listeners;
    unsigned shutdown_grace; /* ms, default 10000 */
    char *static_root;       /* absolute, NULL = no static files */
    char *client_bundle;     /* absolute directory of socket.io-client's dist, or NULL */
    struct conf_namespace *namespaces;
    size_t n_namespaces;
    void *priv; /* owned strings etc. */
};

/* Loads and validates file with the overrides (each "PATH=VALUE").
 * Returns 0 and *out, or -1 with "file:line: message" (or "file: message"
 * when no line applies) in err. */
int conf_load(const char *file, const char *const *overrides, size_t n_overrides,
              struct sockeye_conf **out, char *err, size_t errlen);

void conf_free(struct sockeye_conf *c);

/* The room settings that apply to a room name (exact names first, then
 * patterns in order); NULL when none matches. */
const struct conf_room *conf_room_for(const struct conf_namespace *ns, const char *room);

#endif
