/* The config-driven behaviour of the daemon. See rules.h. */
#include "rules.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <uthash.h>

#include "sio.h"
#include "template.h"

/* A configuration generation: kept alive by pending acks after a reload. */
struct gen {
    unsigned refs;
    struct sockeye_conf *conf;
};

/* One configured namespace (exact name or pattern) registered on the server.
 * Bindings live as long as the rules: the server's handlers point to them. */
struct binding {
    struct binding *next;
    struct rules *r;
    char *key; /* "=/chat" for a name, "~/team-*" for a pattern */
    const struct gen *cached_gen;
    const struct conf_namespace *cached_ns;
};

/* The last events emitted to a room with history. */
struct history_entry {
    char *event;
    cJSON *args;
};

struct history {
    UT_hash_handle hh;
    unsigned cap, head, count;
    struct history_entry *ring;
    char key[]; /* namespace name, '\x1f', room name */
};

struct rules {
    struct sio_server *srv;
    const struct logger *log;
    struct gen *gen;
    struct binding *bindings;
    struct history *histories;
};

/* Everything an action can use. */
struct exec {
    struct rules *r;
    struct gen *gen;
    const struct conf_namespace *ns;
    struct sio_socket *sock;
    struct tmpl_ctx ctx;
    int64_t ack_id;
};

enum flow { FLOW_NEXT, FLOW_STOP, FLOW_GONE /* the socket was disconnected */ };

static void gen_unref(struct gen *g)
{
    if (g && --g->refs == 0) {
        conf_free(g->conf);
        free(g);
    }
}

static struct gen *gen_new(struct sockeye_conf *conf)
{
    struct gen *g = calloc(1, sizeof(*g));
    if (!g) {
        conf_free(conf);
        return NULL;
    }
    g->refs = 1;
    g->conf = conf;
    return g;
}

static char *ns_key(const struct conf_namespace *ns)
{
    const char *id = ns->name ? ns->name : ns->pattern;
    size_t n = strlen(id);
    char *key = malloc(n + 2);
    if (key) {
        key[0] = ns->name ? '=' : '~';
        memcpy(key + 1, id, n + 1);
    }
    return key;
}

/* The configuration of a binding's namespace in the generation in force,
 * or NULL when it is no longer configured. */
static const struct conf_namespace *current_ns(struct binding *b)
{
    const struct gen *g = b->r->gen;
    if (b->cached_gen == g)
        return b->cached_ns;
    b->cached_gen = g;
    b->cached_ns = NULL;
    for (size_t i = 0; i < g->conf->n_namespaces; i++) {
        const struct conf_namespace *ns = &g->conf->namespaces[i];
        const char *id = ns->name ? ns->name : ns->pattern;
        if (b->key[0] == (ns->name ? '=' : '~') && strcmp(b->key + 1, id) == 0) {
            b->cached_ns = ns;
            break;
        }
    }
    return b->cached_ns;
}

/* --- history ------------------------------------------------------------ */

static char *history_key(struct sio_socket *sock, const char *room, size_t *len)
{
    const char *nsp = sio_namespace_name(sio_socket_namespace(sock));
    size_t a = strlen(nsp), b = strlen(room);
    char *key = malloc(a + b + 2);
    if (key) {
        memcpy(key, nsp, a);
        key[a] = '\x1f';
        memcpy(key + a + 1, room, b + 1);
        *len = a + b + 1;
    }
    return key;
}

static struct history *history_find(struct rules *r, struct sio_socket *sock, const char *room)
{
    size_t len;
    char *key = history_key(sock, room, &len);
    if (!key)
        return NULL;
    struct history *h;
    HASH_FIND(hh, r->histories, key, len, h);
    free(key);
    return h;
}

static void history_free(struct history *h)
{
    for (unsigned i = 0; i < h->count; i++) {
        struct history_entry *e = &h->ring[(h->head + i) % h->cap];
        free(e->event);
        cJSON_Delete(e->args);
    }
    free(h->ring);
    free(h);
}

static void history_drop(struct rules *r, struct sio_socket *sock, const char *room)
{
    struct history *h = history_find(r, sock, room);
    if (h) {
        HASH_DEL(r->histories, h);
        history_free(h);
    }
}

/* Remembers an event emitted to a room with history (takes args). */
static void history_add(struct rules *r, struct sio_socket *sock, const char *room, unsigned cap,
                        const char *event, cJSON *args)
{
    struct history *h = history_find(r, sock, room);
    if (!h) {
        size_t len;
        char *key = history_key(sock, room, &len);
        h = key ? calloc(1, sizeof(*h) + len + 1) : NULL;
        if (h)
            h->ring = calloc(cap, sizeof(*h->ring));
        if (!h || !h->ring) {
            free(key);
            if (h)
                free(h);
            cJSON_Delete(args);
            return;
        }
        memcpy(h->key, key, len + 1);
        free(key);
        h->cap = cap;
        HASH_ADD(hh, r->histories, key[0], len, h);
    }
    char *ev = strdup(event);
    if (!ev) {
        cJSON_Delete(args);
        return;
    }
    if (h->count == h->cap) {
        /* Full: the oldest entry makes room. */
        struct history_entry *old = &h->ring[h->head];
        free(old->event);
        cJSON_Delete(old->args);
        h->head = (h->head + 1) % h->cap;
        h->count--;
    }
    struct history_entry *e = &h->ring[(h->head + h->count) % h->cap];
    e->event = ev;
    e->args = args;
    h->count++;
}

static void history_replay(struct rules *r, struct sio_socket *sock, const char *room)
{
    struct history *h = history_find(r, sock, room);
    for (unsigned i = 0; h && i < h->count; i++) {
        const struct history_entry *e = &h->ring[(h->head + i) % h->cap];
        sio_emit(sock, e->event, sio_json_copy(e->args));
    }
}

/* --- rooms -------------------------------------------------------------- */

static void presence_notice(struct sio_socket *sock, const struct conf_room *rc, const char *room,
                            const char *what, size_t size)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *args = cJSON_CreateArray();
    if (!o || !args) {
        cJSON_Delete(o);
        cJSON_Delete(args);
        return;
    }
    cJSON_AddStringToObject(o, "room", room);
    cJSON_AddStringToObject(o, "id", sio_socket_id(sock));
    cJSON_AddStringToObject(o, "event", what);
    cJSON_AddNumberToObject(o, "size", (double)size);
    cJSON_AddItemToArray(args, o);
    const char *rooms[] = {room};
    struct sio_target t = {.rooms = rooms, .n_rooms = 1, .except_socket = sock};
    sio_broadcast(sio_socket_namespace(sock), &t,
                  rc->presence_event ? rc->presence_event : "presence", args);
}

static enum flow do_join(struct exec *x, const struct conf_action *a)
{
    char *room = tmpl_eval_string(a->room, &x->ctx);
    if (!room)
        return FLOW_STOP;
    enum flow flow = FLOW_NEXT;
    const struct conf_room *rc = conf_room_for(x->ns, room);
    enum conf_join_policy policy = rc ? rc->join : x->ns->other_rooms;
    struct sio_namespace *nsp = sio_socket_namespace(x->sock);
    if (sio_in_room(x->sock, room)) {
        /* nothing to do */
    } else if (policy == JOIN_RULES && tmpl_uses_client_input(a->room)) {
        LOG(x->r->log, LOG_DEBUG, 0, "%s: join of '%s' refused: room joined by rules only",
            sio_socket_id(x->sock), room);
        flow = FLOW_STOP;
    } else if (rc && rc->max_members && sio_room_size(nsp, room) >= rc->max_members) {
        LOG(x->r->log, LOG_DEBUG, 0, "%s: join of '%s' refused: room full", sio_socket_id(x->sock),
            room);
        flow = FLOW_STOP;
    } else if (sio_join(x->sock, room) == 0) {
        if (rc && rc->presence)
            presence_notice(x->sock, rc, room, "join", sio_room_size(nsp, room));
        if (rc && rc->history)
            history_replay(x->r, x->sock, room);
    } else {
        LOG(x->r->log, LOG_DEBUG, 0, "%s: join of '%s' refused: too many rooms",
            sio_socket_id(x->sock), room);
        flow = FLOW_STOP;
    }
    free(room);
    return flow;
}

/* Presence notice and history clean-up for a socket leaving a room. */
static void left_room(struct rules *r, const struct conf_namespace *ns, struct sio_socket *sock,
                      const char *room, size_t size_after)
{
    const struct conf_room *rc = conf_room_for(ns, room);
    if (!rc)
        return;
    if (rc->presence)
        presence_notice(sock, rc, room, "leave", size_after);
    /* Histories of pattern rooms go with the room, so that rooms made up
     * by clients cannot accumulate memory. */
    if (rc->history && rc->pattern && size_after == 0)
        history_drop(r, sock, room);
}

static enum flow do_leave(struct exec *x, const struct conf_action *a)
{
    char *room = tmpl_eval_string(a->room, &x->ctx);
    if (!room)
        return FLOW_STOP;
    if (sio_in_room(x->sock, room)) {
        sio_leave(x->sock, room);
        left_room(x->r, x->ns, x->sock, room, sio_room_size(sio_socket_namespace(x->sock), room));
    }
    free(room);
    return FLOW_NEXT;
}

/* --- emit, ack, data ---------------------------------------------------- */

/* The argument array of an emit or ack: a list template gives the array; a
 * single template giving an array is the whole argument list; any other
 * value is the one argument. */
static cJSON *eval_args(const struct tmpl *t, const struct tmpl_ctx *ctx)
{
    if (!t)
        return cJSON_CreateArray();
    cJSON *v = tmpl_eval(t, ctx);
    if (!v || cJSON_IsArray(v))
        return v;
    cJSON *arr = cJSON_CreateArray();
    if (!arr) {
        cJSON_Delete(v);
        return NULL;
    }
    cJSON_AddItemToArray(arr, v);
    return arr;
}

struct pending_ack {
    struct rules *r;
    struct gen *gen;
    const struct conf_namespace *ns;
    const struct conf_action *action;
    char *event;
};

static enum flow run_actions(struct exec *x, const struct conf_action *acts, size_t n);

static void on_rule_ack(struct sio_socket *sock, cJSON *args, bool timed_out, void *ud)
{
    struct pending_ack *p = ud;
    if (sio_socket_connected(sock)) {
        struct exec x = {.r = p->r,
                         .gen = p->gen,
                         .ns = p->ns,
                         .sock = sock,
                         .ctx = {.sock = sock, .event = p->event, .args = NULL, .ack = args},
                         .ack_id = -1};
        if (timed_out)
            run_actions(&x, p->action->on_timeout, p->action->n_on_timeout);
        else
            run_actions(&x, p->action->then, p->action->n_then);
    }
    gen_unref(p->gen);
    free(p->event);
    free(p);
}

/* Emits `event` as action a says. */
static enum flow emit_named(struct exec *x, const struct conf_action *a, const char *event)
{
    cJSON *args = eval_args(a->args, &x->ctx);
    if (!args)
        return FLOW_STOP;
    if (a->to == TO_SENDER) {
        if (!a->ack_timeout) {
            if (a->is_volatile)
                sio_emit_volatile(x->sock, event, args);
            else
                sio_emit(x->sock, event, args);
            return FLOW_NEXT;
        }
        struct pending_ack *p = calloc(1, sizeof(*p));
        char *trigger = strdup(x->ctx.event ? x->ctx.event : "");
        if (!p || !trigger) {
            free(p);
            free(trigger);
            cJSON_Delete(args);
            return FLOW_STOP;
        }
        *p = (struct pending_ack){x->r, x->gen, x->ns, a, trigger};
        x->gen->refs++;
        if (sio_emit_with_ack(x->sock, event, args, a->ack_timeout, on_rule_ack, p) < 0) {
            /* The callback has not run and will not: undo. */
            gen_unref(p->gen);
            free(p->event);
            free(p);
        }
        return FLOW_NEXT;
    }
    char *room = NULL;
    const char *rooms[1];
    struct sio_target t = {.is_volatile = a->is_volatile};
    if (a->to == TO_ROOM || a->to == TO_ROOM_OTHERS) {
        room = tmpl_eval_string(a->room, &x->ctx);
        if (!room) {
            cJSON_Delete(args);
            return FLOW_STOP;
        }
        rooms[0] = room;
        t.rooms = rooms;
        t.n_rooms = 1;
        const struct conf_room *rc = conf_room_for(x->ns, room);
        if (rc && rc->history && !a->is_volatile)
            history_add(x->r, x->sock, room, rc->history, event, sio_json_copy(args));
    }
    if (a->to == TO_ROOM_OTHERS || a->to == TO_OTHERS)
        t.except_socket = x->sock;
    sio_broadcast(sio_socket_namespace(x->sock), &t, event, args);
    free(room);
    return FLOW_NEXT;
}

static enum flow do_emit(struct exec *x, const struct conf_action *a)
{
    if (!a->event_tmpl)
        return emit_named(x, a, a->event);
    char *name = tmpl_eval_string(a->event_tmpl, &x->ctx);
    enum flow f = FLOW_NEXT;
    if (name && *name && !sio_event_name_reserved(name, strlen(name)))
        f = emit_named(x, a, name);
    else
        LOG(x->r->log, LOG_DEBUG, 0, "%s: emit skipped: event name '%s' not allowed",
            sio_socket_id(x->sock), name ? name : "");
    free(name);
    return f;
}

static enum flow do_set(struct exec *x, const struct conf_action *a)
{
    cJSON *data = sio_socket_data(x->sock);
    cJSON *v = tmpl_eval(a->value, &x->ctx);
    if (!data || !v) {
        cJSON_Delete(v);
        return FLOW_STOP;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(data, a->field);
    cJSON_AddItemToObject(data, a->field, v);
    return FLOW_NEXT;
}

static enum flow run_actions(struct exec *x, const struct conf_action *acts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct conf_action *a = &acts[i];
        enum flow f = FLOW_NEXT;
        switch (a->kind) {
        case ACT_JOIN:
            f = do_join(x, a);
            break;
        case ACT_LEAVE:
            f = do_leave(x, a);
            break;
        case ACT_EMIT:
            f = do_emit(x, a);
            break;
        case ACT_ACK:
            if (x->ack_id >= 0) {
                cJSON *args = eval_args(a->args, &x->ctx);
                if (args)
                    sio_ack(x->sock, x->ack_id, args);
                x->ack_id = -1; /* at most once */
            }
            break;
        case ACT_SET:
            f = do_set(x, a);
            break;
        case ACT_UNSET:
            cJSON_DeleteItemFromObjectCaseSensitive(sio_socket_data(x->sock), a->field);
            break;
        case ACT_DISCONNECT:
            sio_disconnect(x->sock, false);
            return FLOW_GONE;
        case ACT_DROP:
            return FLOW_STOP;
        }
        if (f != FLOW_NEXT)
            return f;
    }
    return FLOW_NEXT;
}

/* --- rules -------------------------------------------------------------- */

static bool conditions_hold(struct exec *x, const struct conf_rule *rule)
{
    for (size_t i = 0; i < rule->n_conds; i++) {
        const struct conf_cond *c = &rule->conds[i];
        bool ok = true;
        switch (c->kind) {
        case COND_IN_ROOM:
        case COND_NOT_IN_ROOM: {
            char *room = tmpl_eval_string(c->room, &x->ctx);
            bool in = room && sio_in_room(x->sock, room);
            free(room);
            ok = c->kind == COND_IN_ROOM ? in : !in;
            break;
        }
        case COND_DATA_SET:
        case COND_DATA_UNSET: {
            bool set = cJSON_GetObjectItemCaseSensitive(sio_socket_data(x->sock), c->field) != NULL;
            ok = c->kind == COND_DATA_SET ? set : !set;
            break;
        }
        case COND_MIN_ARGS:
            ok = (unsigned)cJSON_GetArraySize(x->ctx.args) >= c->n;
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* Runs every rule for `event`, in order. Returns false when no rule is
 * about this event. */
static bool run_event(struct binding *b, struct sio_socket *sock, const char *event,
                      const cJSON *args, int64_t ack_id)
{
    const struct conf_namespace *ns = current_ns(b);
    if (!ns)
        return true;
    struct rules *r = b->r;
    struct exec x = {.r = r,
                     .gen = r->gen,
                     .ns = ns,
                     .sock = sock,
                     .ctx = {.sock = sock, .event = event, .args = args, .ack = NULL},
                     .ack_id = ack_id};
    bool matched = false;
    for (size_t i = 0; i < ns->n_rules; i++) {
        const struct conf_rule *rule = &ns->rules[i];
        if (strcmp(rule->on, event) != 0)
            continue;
        matched = true;
        if (!conditions_hold(&x, rule))
            continue;
        if (run_actions(&x, rule->actions, rule->n_actions) != FLOW_NEXT)
            break;
    }
    return matched;
}

static void on_event(struct sio_socket *sock, const char *event, cJSON *args, int64_t ack_id,
                     void *ud)
{
    struct binding *b = ud;
    if (run_event(b, sock, event, args, ack_id))
        return;
    const struct conf_namespace *ns = current_ns(b);
    LOG(b->r->log, LOG_DEBUG, 0, "%s: no rule for event '%s'", sio_socket_id(sock), event);
    if (ns && ns->unmatched_disconnect)
        sio_disconnect(sock, false);
}

static void on_connection(struct sio_socket *sock, void *ud)
{
    static const cJSON none = {.type = cJSON_Array};
    run_event(ud, sock, "connect", &none, -1);
}

struct leaving {
    struct binding *b;
    struct sio_socket *sock;
};

static void leaving_room(const char *room, void *arg)
{
    struct leaving *l = arg;
    const struct conf_namespace *ns = current_ns(l->b);
    size_t size = sio_room_size(sio_socket_namespace(l->sock), room);
    if (ns)
        left_room(l->b->r, ns, l->sock, room, size ? size - 1 : 0);
}

static void on_disconnecting(struct sio_socket *sock, const char *reason, void *ud)
{
    struct leaving l = {ud, sock};
    sio_socket_each_room(sock, leaving_room, &l);
}

static void on_disconnect(struct sio_socket *sock, const char *reason, void *ud)
{
    static const cJSON none = {.type = cJSON_Array};
    run_event(ud, sock, "disconnect", &none, -1);
}

/* Refuses connections to a namespace that a reload removed. */
static bool still_configured(struct sio_socket *sock, void *ud)
{
    if (current_ns(ud))
        return true;
    sio_reject(sock, "Invalid namespace", NULL);
    return false;
}

/* Registers the namespaces of the generation in force that have no binding
 * yet. */
static int bind_namespaces(struct rules *r)
{
    const struct sockeye_conf *conf = r->gen->conf;
    for (size_t i = 0; i < conf->n_namespaces; i++) {
        const struct conf_namespace *ns = &conf->namespaces[i];
        char *key = ns_key(ns);
        if (!key)
            return -1;
        struct binding *b = r->bindings;
        while (b && strcmp(b->key, key) != 0)
            b = b->next;
        if (b) {
            free(key);
            continue;
        }
        struct sio_namespace *nsp =
            ns->name ? sio_of(r->srv, ns->name) : sio_of_pattern(r->srv, ns->pattern, ns->cleanup);
        b = nsp ? calloc(1, sizeof(*b)) : NULL;
        if (!b) {
            free(key);
            return -1;
        }
        b->r = r;
        b->key = key;
        b->next = r->bindings;
        r->bindings = b;
        sio_use(nsp, still_configured, b);
        sio_on_connection(nsp, on_connection, b);
        sio_on_disconnecting(nsp, on_disconnecting, b);
        sio_on_disconnect(nsp, on_disconnect, b);
        sio_on_any(nsp, on_event, b);
    }
    return 0;
}

struct rules *rules_new(struct sio_server *srv, struct sockeye_conf *conf, const struct logger *log)
{
    struct rules *r = calloc(1, sizeof(*r));
    if (!r) {
        conf_free(conf);
        return NULL;
    }
    r->srv = srv;
    r->log = log;
    r->gen = gen_new(conf);
    if (!r->gen || bind_namespaces(r) < 0) {
        rules_free(r);
        return NULL;
    }
    return r;
}

int rules_reload(struct rules *r, struct sockeye_conf *conf)
{
    struct gen *g = gen_new(conf);
    if (!g)
        return -1;
    struct gen *old = r->gen;
    r->gen = g;
    if (bind_namespaces(r) < 0) {
        r->gen = old;
        gen_unref(g);
        return -1;
    }
    gen_unref(old);
    return 0;
}

const struct sockeye_conf *rules_conf(const struct rules *r)
{
    return r->gen->conf;
}

void rules_free(struct rules *r)
{
    if (!r)
        return;
    while (r->bindings) {
        struct binding *b = r->bindings;
        r->bindings = b->next;
        free(b->key);
        free(b);
    }
    struct history *h, *tmp;
    HASH_ITER(hh, r->histories, h, tmp)
    {
        HASH_DEL(r->histories, h);
        history_free(h);
    }
    gen_unref(r->gen);
    free(r);
}
