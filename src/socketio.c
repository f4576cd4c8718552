/* The Socket.IO v5 layer. See socketio.h, sockeye.h and protocol.md §H-§J. */
#include "socketio.h"

#include <fnmatch.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <uthash.h>

#include "base64.h"
#include "buf.h"
#include "handshake.h"
#include "outpacket.h"
#include "recovery.h"
#include "adapter.h"
#include "rooms.h"
#include "server.h"
#include "sio.h"

struct handler {
    UT_hash_handle hh;
    sio_event_fn fn;
    void *ud;
    char name[];
};

struct middleware {
    struct middleware *next;
    sio_middleware_fn fn;
    void *ud;
};

/* Handlers of a namespace; pattern children use their parent's. */
struct nsp_handlers {
    struct middleware *mw_head, *mw_tail;
    sio_connection_fn on_connection;
    void *on_connection_ud;
    sio_disconnect_fn on_disconnecting;
    void *on_disconnecting_ud;
    sio_disconnect_fn on_disconnect;
    void *on_disconnect_ud;
    struct handler *events; /* by name */
    sio_event_fn any;
    void *any_ud;
};

struct sio_namespace {
    UT_hash_handle hh; /* in io->namespaces: static ones and pattern children */
    struct socketio *io;
    char *name;
    struct nsp_handlers own;
    struct nsp_handlers *h;       /* &own, or the parent's */
    struct sio_namespace *parent; /* pattern parent of a child */
    struct sio_namespace *next_pattern;
    bool is_pattern;
    bool cleanup;            /* pattern: remove empty children */
    size_t size;             /* connected sockets (pattern: of all children) */
    struct adapter *adapter; /* rooms and broadcasts; NULL for a pattern parent */
    int64_t next_ack_id;
};

struct pending_ack;

/* What an idle socket usually does without: allocated on first use, so
 * that a socket with no auth payload, no data, no acks pending, no
 * recovery and no rejection carries one pointer for all of it. */
struct socket_extra {
    cJSON *auth; /* NULL: none, or an empty object */
    cJSON *data; /* sio_socket_data(), created on first use */
    struct pending_ack *acks;
    char *reject_message;
    cJSON *reject_data;
    char pid[21]; /* private id for connection state recovery */
};

struct sio_socket {
    struct rooms_socket rs; /* rs.id points to id */
    char id[21];
    bool connected;
    bool recovered;
    bool in_middleware;
    bool disconnecting;
    struct client *client;
    struct sio_namespace *nsp;
    struct sio_socket *next_in_client;
    void *user;
    struct socket_extra *x; /* NULL until needed */
};

/* A binary packet waiting for its attachments. */
struct binary_in {
    struct sio_packet packet; /* packet.nsp points to nsp */
    struct sio_attachments att;
    char nsp[];
};

/* One per Engine.IO session. The handshake capture follows the struct in
 * the same allocation (see client_handshake). */
struct client {
    struct sio_session *session;
    struct sio_socket *sockets;
    struct event *connect_timer; /* until the first namespace is joined */
    struct binary_in *binary;    /* NULL unless attachments are awaited */
};

_Static_assert(sizeof(struct client) % HANDSHAKE_ALIGN == 0, "handshake after client misaligned");

static struct sio_handshake *client_handshake(const struct client *c)
{
    return (struct sio_handshake *)(uintptr_t)(c + 1);
}

static struct socket_extra *socket_extra(struct sio_socket *sock)
{
    if (!sock->x)
        sock->x = calloc(1, sizeof(*sock->x));
    return sock->x;
}

static struct socketio *socket_io(const struct sio_socket *sock)
{
    return sock->nsp->io;
}

struct pending_ack {
    struct pending_ack *next;
    int64_t id;
    struct sio_socket *sock;
    sio_ack_fn fn;
    void *ud;
    struct event *timer;     /* per-socket timeout, or NULL */
    struct bcast_ack *bcast; /* when part of a broadcast with ack */
};

/* A broadcast waiting for acks from every target. */
struct bcast_ack {
    unsigned refs;
    unsigned expected;
    unsigned received;
    bool done;
    cJSON *responses;
    struct event *timer;
    struct sio_namespace *nsp;
    sio_broadcast_ack_fn fn;
    void *ud;
};

struct socketio {
    struct sio_server *srv;
    struct sio_namespace *namespaces;
    struct sio_namespace *patterns, *patterns_tail;
    size_t n_sockets;
    struct recovery *recovery; /* connection state recovery, when enabled */
    struct event *recovery_timer;
    struct buf scratch; /* encode()'s text, reused: no allocation per packet */
};

/* The scratch buffer is given back after a packet larger than this, so one
 * big message does not pin its size. */
#define SCRATCH_KEEP_MAX 4096

/* One packet encoded once: the text packet and its binary attachments. */
struct encoded {
    struct outpacket *main;
    struct outpacket **att;
    size_t n_att;
};

static void socket_free(struct sio_socket *sock);
static int broadcast(struct sio_namespace *nsp, const struct sio_target *t, const char *event,
                     cJSON *args, struct bcast_ack *ack);

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
static void socket_disconnect(struct sio_socket *sock, const char *reason, bool notify_client);

/* A NUL-terminated copy of a slice of a packet (which is not terminated). */
static char *dup_slice(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* --- ids and encoding --------------------------------------------------- */

static int random_id(char out[21])
{
    uint8_t rnd[15];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return -1;
    out[base64url_encode(rnd, sizeof(rnd), out)] = '\0';
    return 0;
}

static void encoded_release(struct encoded *e)
{
    outpacket_unref(e->main);
    for (size_t i = 0; i < e->n_att; i++)
        outpacket_unref(e->att[i]);
    free(e->att);
    memset(e, 0, sizeof(*e));
}

/* Encodes a packet once. data may be NULL; it is modified (binary nodes move
 * out) but stays owned by the caller. The text is built in io's scratch
 * buffer and copied once, into the outgoing packet. */
static int encode(struct socketio *io, enum sio_packet_type type, const char *nsp, int64_t id,
                  cJSON *data, bool is_volatile, struct encoded *out)
{
    memset(out, 0, sizeof(*out));
    struct buf *b = &io->scratch;
    buf_reset(b);
    struct sio_attachments a;
    sio_attachments_init(&a);
    int rc = sio_packet_encode(b, type, nsp, strlen(nsp), id, data, &a);
    if (rc == 0) {
        out->main = outpacket_new(EIO_MESSAGE, false, b->data, b->len);
        if (!out->main)
            rc = -1;
    }
    if (rc == 0 && a.n) {
        out->att = calloc(a.n, sizeof(*out->att));
        if (!out->att)
            rc = -1;
        for (size_t i = 0; rc == 0 && i < a.n; i++) {
            size_t len;
            const uint8_t *bytes = sio_binary_data(a.items[i], &len);
            out->att[i] = outpacket_new(EIO_MESSAGE, true, bytes, len);
            if (!out->att[i])
                rc = -1;
            out->n_att = i + 1;
        }
    }
    if (rc == 0 && out->main)
        out->main->is_volatile = is_volatile;
    if (b->cap > SCRATCH_KEEP_MAX)
        buf_cleanup(b);
    sio_attachments_cleanup(&a);
    if (rc != 0) {
        encoded_release(out);
        return -1;
    }
    return 0;
}

/* Queues an encoded packet on one connection. Returns an engine_send_result. */
static int send_encoded(struct sio_session *s, const struct encoded *e)
{
    int rc = engine_send(s, e->main);
    if (rc != ENGINE_SENT)
        return rc;
    for (size_t i = 0; i < e->n_att; i++) {
        rc = engine_send(s, e->att[i]);
        if (rc == ENGINE_CLOSED)
            return rc;
    }
    return ENGINE_SENT;
}

/* [event, ...args]: takes args. NULL on allocation failure. */
static cJSON *event_array(const char *event, cJSON *args)
{
    cJSON *arr = args ? args : cJSON_CreateArray();
    cJSON *name = cJSON_CreateString(event);
    if (!arr || !name || !cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        cJSON_Delete(name);
        return NULL;
    }
    if (!cJSON_InsertItemInArray(arr, 0, name)) {
        cJSON_AddItemToArray(arr, name);
    }
    return arr;
}

/* Sends a packet to one socket. Takes data. */
static int socket_send(struct sio_socket *sock, enum sio_packet_type type, int64_t id, cJSON *data,
                       bool is_volatile)
{
    if (!sock->connected && type != SIO_CONNECT && type != SIO_CONNECT_ERROR) {
        cJSON_Delete(data);
        return -1;
    }
    struct encoded e;
    int rc = encode(socket_io(sock), type, sock->nsp->name, id, data, is_volatile, &e);
    cJSON_Delete(data);
    if (rc < 0)
        return -1;
    rc = send_encoded(sock->client->session, &e);
    encoded_release(&e);
    return rc == ENGINE_CLOSED ? -1 : rc == ENGINE_DROPPED ? 1 : 0;
}

/* --- namespaces --------------------------------------------------------- */

static struct sio_namespace *nsp_new(struct socketio *io, const char *name, bool is_pattern)
{
    struct sio_namespace *nsp = calloc(1, sizeof(*nsp));
    if (!nsp)
        return NULL;
    nsp->io = io;
    nsp->name = strdup(name);
    nsp->h = &nsp->own;
    nsp->is_pattern = is_pattern;
    if (!is_pattern)
        nsp->adapter = adapter_memory_new();
    if (!nsp->name || (!is_pattern && !nsp->adapter)) {
        free(nsp->name);
        adapter_free(nsp->adapter);
        free(nsp);
        return NULL;
    }
    return nsp;
}

static void handlers_cleanup(struct nsp_handlers *h)
{
    struct handler *ev, *tmp;
    HASH_ITER(hh, h->events, ev, tmp)
    {
        HASH_DEL(h->events, ev);
        free(ev);
    }
    while (h->mw_head) {
        struct middleware *m = h->mw_head;
        h->mw_head = m->next;
        free(m);
    }
}

static void nsp_free(struct sio_namespace *nsp)
{
    handlers_cleanup(&nsp->own);
    adapter_free(nsp->adapter);
    free(nsp->name);
    free(nsp);
}

/* "chat" -> "/chat". NULL for an invalid name. */
static char *nsp_canonical(const char *name)
{
    if (!name || strchr(name, ','))
        return NULL;
    size_t n = strlen(name);
    char *out = malloc(n + 2);
    if (!out)
        return NULL;
    if (name[0] == '/') {
        memcpy(out, name, n + 1);
    } else {
        out[0] = '/';
        memcpy(out + 1, name, n + 1);
    }
    return out;
}

struct sio_namespace *sio_of(struct sio_server *srv, const char *name)
{
    struct socketio *io = srv->io;
    char *canon = nsp_canonical(name);
    if (!canon)
        return NULL;
    struct sio_namespace *nsp;
    HASH_FIND_STR(io->namespaces, canon, nsp);
    if (!nsp) {
        nsp = nsp_new(io, canon, false);
        if (nsp)
            HASH_ADD_KEYPTR(hh, io->namespaces, nsp->name, strlen(nsp->name), nsp);
    }
    free(canon);
    return nsp;
}

struct sio_namespace *sio_of_pattern(struct sio_server *srv, const char *pattern, bool cleanup)
{
    struct socketio *io = srv->io;
    char *canon = nsp_canonical(pattern);
    if (!canon)
        return NULL;
    struct sio_namespace *nsp = nsp_new(io, canon, true);
    free(canon);
    if (!nsp)
        return NULL;
    nsp->cleanup = cleanup;
    if (io->patterns_tail)
        io->patterns_tail->next_pattern = nsp;
    else
        io->patterns = nsp;
    io->patterns_tail = nsp;
    return nsp;
}

/* The namespace a CONNECT names: a static one, an existing child, or a new
 * child of the first matching pattern. NULL when none matches. */
static struct sio_namespace *nsp_resolve(struct socketio *io, const char *name, size_t len)
{
    struct sio_namespace *nsp;
    HASH_FIND(hh, io->namespaces, name, len, nsp);
    if (nsp)
        return nsp;
    char *z = dup_slice(name, len);
    if (!z)
        return NULL;
    for (struct sio_namespace *p = io->patterns; p; p = p->next_pattern) {
        if (fnmatch(p->name, z, 0) == 0) {
            nsp = nsp_new(io, z, false);
            if (nsp) {
                nsp->parent = p;
                nsp->h = &p->own;
                HASH_ADD_KEYPTR(hh, io->namespaces, nsp->name, strlen(nsp->name), nsp);
            }
            break;
        }
    }
    free(z);
    return nsp;
}

/* A pattern child with no sockets left goes away (when its parent says so). */
static void nsp_maybe_cleanup(struct sio_namespace *nsp)
{
    if (!nsp->parent || !nsp->parent->cleanup || nsp->size > 0)
        return;
    HASH_DEL(nsp->io->namespaces, nsp);
    nsp_free(nsp);
}

const char *sio_namespace_name(const struct sio_namespace *nsp)
{
    return nsp->name;
}

size_t sio_namespace_size(const struct sio_namespace *nsp)
{
    return nsp->size;
}

void sio_use(struct sio_namespace *nsp, sio_middleware_fn fn, void *ud)
{
    struct middleware *m = calloc(1, sizeof(*m));
    if (!m)
        return;
    m->fn = fn;
    m->ud = ud;
    if (nsp->own.mw_tail)
        nsp->own.mw_tail->next = m;
    else
        nsp->own.mw_head = m;
    nsp->own.mw_tail = m;
}

void sio_on_connection(struct sio_namespace *nsp, sio_connection_fn fn, void *ud)
{
    nsp->own.on_connection = fn;
    nsp->own.on_connection_ud = ud;
}

void sio_on_disconnect(struct sio_namespace *nsp, sio_disconnect_fn fn, void *ud)
{
    nsp->own.on_disconnect = fn;
    nsp->own.on_disconnect_ud = ud;
}

void sio_on_disconnecting(struct sio_namespace *nsp, sio_disconnect_fn fn, void *ud)
{
    nsp->own.on_disconnecting = fn;
    nsp->own.on_disconnecting_ud = ud;
}

void sio_on(struct sio_namespace *nsp, const char *event, sio_event_fn fn, void *ud)
{
    struct handler *h;
    HASH_FIND_STR(nsp->own.events, event, h);
    if (h) {
        h->fn = fn;
        h->ud = ud;
        return;
    }
    size_t n = strlen(event);
    h = calloc(1, sizeof(*h) + n + 1);
    if (!h)
        return;
    memcpy(h->name, event, n + 1);
    h->fn = fn;
    h->ud = ud;
    HASH_ADD(hh, nsp->own.events, name[0], n, h);
}

void sio_on_any(struct sio_namespace *nsp, sio_event_fn fn, void *ud)
{
    nsp->own.any = fn;
    nsp->own.any_ud = ud;
}

/* --- acks --------------------------------------------------------------- */

static void bcast_unref(struct bcast_ack *b)
{
    if (--b->refs > 0)
        return;
    if (b->timer)
        event_free(b->timer);
    cJSON_Delete(b->responses);
    free(b);
}

static void bcast_finish(struct bcast_ack *b, bool timed_out)
{
    if (b->done)
        return;
    b->done = true;
    if (b->timer)
        event_del(b->timer);
    cJSON *responses = b->responses;
    b->responses = NULL;
    b->fn(b->nsp, responses, timed_out, b->ud);
    cJSON_Delete(responses);
}

static void bcast_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct bcast_ack *b = arg;
    b->refs++;
    bcast_finish(b, true);
    bcast_unref(b);
}

/* Unlinks ack from its socket and frees it. */
static void ack_remove(struct pending_ack *ack)
{
    struct pending_ack **pp = &ack->sock->x->acks;
    while (*pp && *pp != ack)
        pp = &(*pp)->next;
    if (*pp)
        *pp = ack->next;
    if (ack->timer)
        event_free(ack->timer);
    if (ack->bcast)
        bcast_unref(ack->bcast);
    free(ack);
}

/* Delivers an ack's answer (args NULL: timed out / disconnected). Takes args. */
static void ack_deliver(struct pending_ack *ack, cJSON *args)
{
    struct sio_socket *sock = ack->sock;
    if (ack->bcast) {
        struct bcast_ack *b = ack->bcast;
        b->refs++; /* ack_remove drops the ack's reference: b must outlive it */
        if (args && !b->done) {
            /* As the reference collects them: each client's first argument. */
            cJSON *first = cJSON_DetachItemFromArray(args, 0);
            cJSON_AddItemToArray(b->responses, first ? first : cJSON_CreateNull());
        }
        b->received++;
        ack_remove(ack);
        if (!b->done && b->received >= b->expected)
            bcast_finish(b, false);
        bcast_unref(b);
    } else {
        sio_ack_fn fn = ack->fn;
        void *ud = ack->ud;
        ack_remove(ack);
        fn(sock, args, args == NULL, ud);
    }
    cJSON_Delete(args);
}

static void ack_timeout(evutil_socket_t fd, short what, void *arg)
{
    ack_deliver(arg, NULL);
}

static struct pending_ack *ack_add(struct sio_socket *sock, int64_t id, unsigned timeout_ms)
{
    struct socket_extra *x = socket_extra(sock);
    struct pending_ack *ack = x ? calloc(1, sizeof(*ack)) : NULL;
    if (!ack)
        return NULL;
    ack->id = id;
    ack->sock = sock;
    if (timeout_ms) {
        ack->timer = evtimer_new(socket_io(sock)->srv->base, ack_timeout, ack);
        if (!ack->timer) {
            free(ack);
            return NULL;
        }
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(ack->timer, &tv);
    }
    ack->next = x->acks;
    x->acks = ack;
    return ack;
}

/* --- sockets ------------------------------------------------------------ */

/* Takes auth (may be NULL) on success. */
static struct sio_socket *socket_new(struct client *c, struct sio_namespace *nsp, cJSON *auth)
{
    struct sio_socket *sock = calloc(1, sizeof(*sock));
    if (!sock)
        return NULL;
    if (random_id(sock->id) < 0 || (auth && !socket_extra(sock))) {
        free(sock);
        return NULL;
    }
    rooms_socket_init(&sock->rs, sock->id);
    sock->client = c;
    sock->nsp = nsp;
    if (auth)
        sock->x->auth = auth;
    return sock;
}

static void socket_free(struct sio_socket *sock)
{
    if (sock->x) {
        while (sock->x->acks)
            ack_deliver(sock->x->acks, NULL);
        cJSON_Delete(sock->x->data);
        cJSON_Delete(sock->x->auth);
        cJSON_Delete(sock->x->reject_data);
        free(sock->x->reject_message);
        free(sock->x);
    }
    free(sock);
}

static struct sio_socket *client_socket(const struct client *c, const char *nsp, size_t len)
{
    for (struct sio_socket *s = c->sockets; s; s = s->next_in_client)
        if (strlen(s->nsp->name) == len && memcmp(s->nsp->name, nsp, len) == 0)
            return s;
    return NULL;
}

static void client_unlink_socket(struct client *c, struct sio_socket *sock)
{
    struct sio_socket **pp = &c->sockets;
    while (*pp && *pp != sock)
        pp = &(*pp)->next_in_client;
    if (*pp)
        *pp = sock->next_in_client;
}

/* Reasons after which a socket's state is kept for recovery (§J.56). */
static bool recoverable(const char *reason)
{
    static const char *const reasons[] = {"transport error", "transport close", "forced close",
                                          "ping timeout", "server shutting down"};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (strcmp(reason, reasons[i]) == 0)
            return true;
    return false;
}

struct room_list {
    const char **names;
    size_t n, cap;
};

static void collect_room(const char *room, void *arg)
{
    struct room_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        const char **names = realloc(l->names, cap * sizeof(*names));
        if (!names)
            return;
        l->names = names;
        l->cap = cap;
    }
    l->names[l->n++] = room;
}

static void save_session(struct sio_socket *sock)
{
    struct room_list l = {0};
    collect_room(sock->id, &l);
    rooms_each_of_socket(&sock->rs, collect_room, &l);
    struct socket_extra *x = sock->x;
    if (recovery_save(socket_io(sock)->recovery, mono_ms(), sock->nsp->name, sock->id,
                      x ? x->pid : "", l.names, l.n, x ? x->data : NULL) < 0)
        LOG(&socket_io(sock)->srv->log, LOG_WARN, engine_session_log_id(sock->client->session),
            "recovery: could not save socket %s", sock->id);
    free(l.names);
}

/* Removes a connected socket from its namespace and frees it. notify_client:
 * send a DISCONNECT packet (server-side disconnect). */
static void socket_disconnect(struct sio_socket *sock, const char *reason, bool notify_client)
{
    if (!sock->connected || sock->disconnecting)
        return;
    sock->disconnecting = true; /* handlers below may call back into us */
    struct sio_namespace *nsp = sock->nsp;
    struct client *c = sock->client;
    if (notify_client)
        socket_send(sock, SIO_DISCONNECT, SIO_NO_ACK, NULL, false);
    if (nsp->h->on_disconnecting)
        nsp->h->on_disconnecting(sock, reason, nsp->h->on_disconnecting_ud);
    if (nsp->io->recovery && recoverable(reason))
        save_session(sock);
    sock->connected = false;
    nsp->adapter->ops->remove_socket(nsp->adapter, &sock->rs);
    client_unlink_socket(c, sock);
    nsp->size--;
    if (nsp->parent)
        nsp->parent->size--;
    nsp->io->n_sockets--;
    if (nsp->h->on_disconnect)
        nsp->h->on_disconnect(sock, reason, nsp->h->on_disconnect_ud);
    socket_free(sock);
    nsp_maybe_cleanup(nsp);
}

/* --- CONNECT ------------------------------------------------------------ */

static void send_connect_error(struct socketio *io, struct client *c, const char *nsp,
                               const char *message, cJSON *data)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "message", message);
        if (data)
            cJSON_AddItemToObject(o, "data", data);
    } else {
        cJSON_Delete(data);
    }
    struct encoded e;
    if (o && encode(io, SIO_CONNECT_ERROR, nsp, SIO_NO_ACK, o, false, &e) == 0) {
        send_encoded(c->session, &e);
        encoded_release(&e);
    }
    cJSON_Delete(o);
}

static void stop_connect_timer(struct client *c)
{
    if (c->connect_timer) {
        event_free(c->connect_timer);
        c->connect_timer = NULL;
    }
}

/* Tries connection state recovery for a CONNECT carrying {pid, offset}:
 * on success the socket takes the saved id, pid and data, and *session holds
 * the rooms and missed packets. */
static bool try_restore(struct client *c, struct sio_namespace *nsp, const cJSON *auth,
                        struct sio_socket *sock, struct recovery_session *session)
{
    struct recovery *rec = nsp->io->recovery;
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(auth, "pid");
    const cJSON *offset = cJSON_GetObjectItemCaseSensitive(auth, "offset");
    if (!rec || !cJSON_IsString(pid) || !cJSON_IsString(offset))
        return false;
    if (recovery_restore(rec, mono_ms(), nsp->name, pid->valuestring, offset->valuestring,
                         session) != 1)
        return false;
    if (strlen(session->sid) >= sizeof(sock->id) || strlen(session->pid) >= sizeof(sock->x->pid) ||
        nsp->adapter->ops->room_size(nsp->adapter, session->sid) > 0 || !socket_extra(sock)) {
        recovery_session_cleanup(session);
        return false;
    }
    strcpy(sock->id, session->sid);
    strcpy(sock->x->pid, session->pid);
    sock->x->data = session->data;
    session->data = NULL;
    sock->recovered = true;
    return true;
}

/* Middlewares decide; false when the socket was refused (CONNECT_ERROR sent). */
static bool run_middlewares(struct client *c, struct sio_namespace *nsp, struct sio_socket *sock)
{
    bool ok = true;
    sock->in_middleware = true;
    for (struct middleware *m = nsp->h->mw_head; m && ok; m = m->next)
        ok = m->fn(sock, m->ud);
    sock->in_middleware = false;
    if (ok && engine_session_is_open(c->session))
        return true;
    struct socket_extra *x = sock->x;
    cJSON *data = x ? x->reject_data : NULL;
    if (x)
        x->reject_data = NULL;
    if (engine_session_is_open(c->session))
        send_connect_error(nsp->io, c, nsp->name,
                           x && x->reject_message ? x->reject_message : "Forbidden", data);
    else
        cJSON_Delete(data);
    return false;
}

static void on_connect(struct socketio *io, struct client *c, const struct sio_packet *p)
{
    if (client_socket(c, p->nsp, p->nsp_len)) {
        /* A second CONNECT to a joined namespace (protocol.md §I.43). */
        engine_session_close_reason(c->session, "parse error");
        return;
    }
    struct sio_namespace *nsp = nsp_resolve(io, p->nsp, p->nsp_len);
    if (!nsp) {
        char *name = dup_slice(p->nsp, p->nsp_len);
        if (name)
            send_connect_error(io, c, name, "Invalid namespace", NULL);
        free(name);
        return;
    }
    /* No payload and an empty object read the same (sio_socket_auth): only
     * a non-empty one is kept. */
    cJSON *auth = NULL;
    bool has_auth = p->json && p->json->child;
    if (has_auth && !(auth = sio_json_duplicate(p->json))) {
        engine_session_close_reason(c->session, "transport error");
        return;
    }
    struct sio_socket *sock = socket_new(c, nsp, auth);
    if (!sock) {
        cJSON_Delete(auth);
        engine_session_close_reason(c->session, "transport error");
        return;
    }
    struct recovery_session session = {0};
    bool restored = try_restore(c, nsp, auth, sock, &session);
    if (io->recovery && !restored && (!socket_extra(sock) || random_id(sock->x->pid) < 0)) {
        socket_free(sock);
        engine_session_close_reason(c->session, "transport error");
        return;
    }
    engine_session_ref(c->session);
    bool skip = restored && io->srv->cfg.recovery_skip_middlewares;
    if ((!skip && !run_middlewares(c, nsp, sock)) ||
        nsp->adapter->ops->add_socket(nsp->adapter, &sock->rs) < 0) {
        recovery_session_cleanup(&session);
        socket_free(sock);
        engine_session_unref(c->session);
        nsp_maybe_cleanup(nsp);
        return;
    }
    sock->connected = true;
    sock->next_in_client = c->sockets;
    c->sockets = sock;
    nsp->size++;
    if (nsp->parent)
        nsp->parent->size++;
    io->n_sockets++;
    stop_connect_timer(c);

    if (restored) {
        for (size_t i = 0; i < session.n_rooms; i++)
            nsp->adapter->ops->join(nsp->adapter, &sock->rs, session.rooms[i]);
        /* Missed packets go first, as the reference sends them (§J.55). */
        for (size_t i = 0; i < session.n_packets; i++)
            engine_send(c->session, session.packets[i]);
        recovery_session_cleanup(&session);
    }
    cJSON *reply = cJSON_CreateObject();
    if (reply) {
        cJSON_AddStringToObject(reply, "sid", sock->id);
        if (io->recovery)
            cJSON_AddStringToObject(reply, "pid", sock->x->pid);
    }
    socket_send(sock, SIO_CONNECT, SIO_NO_ACK, reply, false);
    if (nsp->h->on_connection && sock->connected)
        nsp->h->on_connection(sock, nsp->h->on_connection_ud);
    engine_session_unref(c->session);
}

/* --- incoming packets --------------------------------------------------- */

static void on_event(struct sio_socket *sock, struct sio_packet *p)
{
    cJSON *args = p->json;
    p->json = NULL;
    cJSON *name = cJSON_DetachItemFromArray(args, 0);
    char numbuf[32];
    const char *event;
    if (cJSON_IsString(name)) {
        event = name->valuestring;
    } else {
        snprintf(numbuf, sizeof(numbuf), "%.17g", name->valuedouble);
        event = numbuf;
    }
    struct nsp_handlers *h = sock->nsp->h;
    struct handler *hd;
    HASH_FIND_STR(h->events, event, hd);
    if (hd)
        hd->fn(sock, event, args, p->id, hd->ud);
    else if (h->any)
        h->any(sock, event, args, p->id, h->any_ud);
    cJSON_Delete(name);
    cJSON_Delete(args);
}

static void on_ack(struct sio_socket *sock, struct sio_packet *p)
{
    for (struct pending_ack *a = sock->x ? sock->x->acks : NULL; a; a = a->next) {
        if (a->id == p->id) {
            cJSON *args = p->json;
            p->json = NULL;
            ack_deliver(a, args);
            return;
        }
    }
    /* An ack nobody waits for (answered twice, or after a timeout): ignored. */
}

/* Dispatches a complete packet (attachments, if any, reconstructed). */
static void dispatch(struct socketio *io, struct client *c, struct sio_packet *p)
{
    if (p->type == SIO_CONNECT) {
        on_connect(io, c, p);
        return;
    }
    struct sio_socket *sock = client_socket(c, p->nsp, p->nsp_len);
    if (!sock || p->type == SIO_CONNECT_ERROR) {
        /* Only CONNECT is allowed before joining a namespace (§I.43). */
        engine_session_close_reason(c->session, "parse error");
        return;
    }
    switch (p->type) {
    case SIO_DISCONNECT:
        socket_disconnect(sock, "client namespace disconnect", false);
        break;
    case SIO_EVENT:
    case SIO_BINARY_EVENT:
        on_event(sock, p);
        break;
    case SIO_ACK:
    case SIO_BINARY_ACK:
        on_ack(sock, p);
        break;
    default:
        break;
    }
}

static void clear_pending(struct client *c)
{
    struct binary_in *b = c->binary;
    if (!b)
        return;
    c->binary = NULL;
    sio_packet_cleanup(&b->packet);
    sio_attachments_cleanup(&b->att);
    free(b);
}

/* Keeps p (and its namespace, which points into the message) until its
 * attachments are in. Takes p's JSON, also on failure. */
static int await_attachments(struct client *c, struct sio_packet *p)
{
    struct binary_in *b = malloc(sizeof(*b) + p->nsp_len + 1);
    if (!b) {
        sio_packet_cleanup(p);
        return -1;
    }
    memcpy(b->nsp, p->nsp, p->nsp_len);
    b->nsp[p->nsp_len] = '\0';
    b->packet = *p;
    b->packet.nsp = b->nsp;
    sio_attachments_init(&b->att);
    c->binary = b;
    return 0;
}

void socketio_on_message(struct socketio *io, struct sio_session *s, const uint8_t *data,
                         size_t len, bool binary)
{
    struct client *c = engine_session_get_data(s);
    if (!c)
        return;
    engine_session_ref(s);
    struct binary_in *b = c->binary;
    if (binary) {
        if (!b || sio_attachments_add(&b->att, data, len) < 0) {
            engine_session_close_reason(s, "parse error");
        } else if (b->att.n == b->packet.attachments) {
            if (sio_binary_reconstruct(b->packet.json, &b->att) < 0) {
                engine_session_close_reason(s, "parse error");
            } else {
                struct sio_packet p = b->packet;
                b->packet.json = NULL;
                dispatch(io, c, &p);
                sio_packet_cleanup(&p);
            }
            /* c->binary is still b: dispatch cannot start another one */
            clear_pending(c);
        }
    } else if (b) {
        /* Text while attachments are pending (protocol.md §H.41). */
        engine_session_close_reason(s, "parse error");
    } else {
        struct sio_limits lim = {io->srv->cfg.max_attachments};
        struct sio_packet p;
        if (sio_packet_decode((const char *)data, len, &lim, &p) != SIO_OK) {
            LOG(&io->srv->log, LOG_DEBUG, engine_session_log_id(s), "invalid Socket.IO packet");
            engine_session_close_reason(s, "parse error");
        } else if ((p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK) && p.attachments > 0) {
            if (await_attachments(c, &p) < 0)
                engine_session_close_reason(s, "transport error");
        } else {
            dispatch(io, c, &p);
            sio_packet_cleanup(&p);
        }
    }
    engine_session_unref(s);
}

/* --- clients ------------------------------------------------------------ */

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    stop_connect_timer(c);
    if (!c->sockets)
        engine_session_close_reason(c->session, "transport close");
}

void socketio_on_open(struct socketio *io, struct sio_session *s, struct http_request *req)
{
    /* One allocation for the client and its handshake: both live exactly as
     * long as the session. */
    size_t hs_size = handshake_size(req);
    struct client *c =
        hs_size && hs_size <= SIZE_MAX - sizeof(*c) ? calloc(1, sizeof(*c) + hs_size) : NULL;
    if (!c) {
        engine_session_close_reason(s, "transport error");
        return;
    }
    handshake_init(client_handshake(c), req);
    c->session = s;
    unsigned ms = io->srv->cfg.connect_timeout_ms;
    if (ms) {
        c->connect_timer = evtimer_new(io->srv->base, on_connect_timeout, c);
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        if (c->connect_timer)
            evtimer_add(c->connect_timer, &tv);
    }
    engine_session_set_data(s, c);
}

void socketio_on_close(struct socketio *io, struct sio_session *s, const char *reason)
{
    struct client *c = engine_session_get_data(s);
    if (!c)
        return;
    while (c->sockets)
        socket_disconnect(c->sockets, reason, false);
    engine_session_set_data(s, NULL);
    stop_connect_timer(c);
    clear_pending(c);
    free(c);
}

static void expire_recovery(evutil_socket_t fd, short what, void *arg)
{
    struct socketio *io = arg;
    recovery_expire(io->recovery, mono_ms());
}

struct socketio *socketio_new(struct sio_server *srv)
{
    struct socketio *io = calloc(1, sizeof(*io));
    if (!io)
        return NULL;
    io->srv = srv;
    buf_init(&io->scratch);
    struct sio_namespace *root = nsp_new(io, "/", false);
    if (!root) {
        free(io);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, io->namespaces, root->name, 1, root);
    unsigned keep = srv->cfg.recovery_max_disconnection_ms;
    if (keep) {
        struct recovery_config rc = {.max_disconnection_ms = keep, .max_packets = 0};
        io->recovery = recovery_new(&rc);
        io->recovery_timer = event_new(srv->base, -1, EV_PERSIST, expire_recovery, io);
        if (!io->recovery || !io->recovery_timer) {
            socketio_free(io);
            return NULL;
        }
        unsigned every = keep / 2 ? keep / 2 : 1;
        struct timeval tv = {every / 1000, (every % 1000) * 1000};
        event_add(io->recovery_timer, &tv);
    }
    return io;
}

void socketio_free(struct socketio *io)
{
    if (!io)
        return;
    struct sio_namespace *nsp, *tmp;
    HASH_ITER(hh, io->namespaces, nsp, tmp)
    {
        HASH_DEL(io->namespaces, nsp);
        nsp_free(nsp);
    }
    while (io->patterns) {
        nsp = io->patterns;
        io->patterns = nsp->next_pattern;
        nsp_free(nsp);
    }
    if (io->recovery_timer)
        event_free(io->recovery_timer);
    recovery_free(io->recovery);
    buf_cleanup(&io->scratch);
    free(io);
}

size_t socketio_sockets(const struct socketio *io)
{
    return io->n_sockets;
}

/* --- public: emitting --------------------------------------------------- */

static int emit(struct sio_socket *sock, const char *event, cJSON *args, bool is_volatile,
                int64_t id)
{
    if (!sock->connected) {
        cJSON_Delete(args);
        return -1;
    }
    if (socket_io(sock)->recovery && !is_volatile && id == SIO_NO_ACK) {
        /* Sent through the socket's own room so that the packet gets an
         * offset and is kept for recovery, as the reference does. */
        const char *rooms[] = {sock->id};
        struct sio_target t = {.rooms = rooms, .n_rooms = 1};
        return broadcast(sock->nsp, &t, event, args, NULL) > 0 ? 0 : -1;
    }
    cJSON *data = event_array(event, args);
    if (!data)
        return -1;
    return socket_send(sock, SIO_EVENT, id, data, is_volatile);
}

int sio_emit(struct sio_socket *sock, const char *event, struct cJSON *args)
{
    return emit(sock, event, args, false, SIO_NO_ACK);
}

int sio_emit_volatile(struct sio_socket *sock, const char *event, struct cJSON *args)
{
    return emit(sock, event, args, true, SIO_NO_ACK);
}

int sio_emit_with_ack(struct sio_socket *sock, const char *event, struct cJSON *args,
                      unsigned timeout_ms, sio_ack_fn fn, void *ud)
{
    if (!sock->connected) {
        cJSON_Delete(args);
        return -1;
    }
    int64_t id = sock->nsp->next_ack_id++;
    struct pending_ack *ack = ack_add(sock, id, timeout_ms);
    if (!ack) {
        cJSON_Delete(args);
        return -1;
    }
    ack->fn = fn;
    ack->ud = ud;
    int rc = emit(sock, event, args, false, id);
    if (rc < 0)
        ack_remove(ack);
    return rc;
}

int sio_ack(struct sio_socket *sock, int64_t ack_id, struct cJSON *args)
{
    if (ack_id < 0) {
        cJSON_Delete(args);
        return -1;
    }
    cJSON *data = args ? args : cJSON_CreateArray();
    if (!data)
        return -1;
    return socket_send(sock, SIO_ACK, ack_id, data, false) < 0 ? -1 : 0;
}

/* Keeps a sent packet for recovery with its targeting (a broadcast from a
 * socket excludes that socket's own room). */
static void record_packet(struct recovery *rec, struct sio_namespace *nsp, const char *offset,
                          const struct sio_target *t, const struct encoded *e)
{
    size_t n_except = t ? t->n_except : 0;
    const char **except = calloc(n_except + 1, sizeof(*except));
    if (!except)
        return;
    for (size_t i = 0; i < n_except; i++)
        except[i] = t->except[i];
    if (t && t->except_socket)
        except[n_except++] = t->except_socket->id;
    if (recovery_record(rec, mono_ms(), nsp->name, offset, t ? t->rooms : NULL, t ? t->n_rooms : 0,
                        except, n_except, e->main, e->att, e->n_att) < 0)
        LOG(&nsp->io->srv->log, LOG_WARN, 0, "recovery: could not record packet %s", offset);
    free(except);
}

struct bcast_ctx {
    const struct encoded *e;
    struct sio_socket *except_socket;
    struct bcast_ack *ack;
    int64_t ack_id;
    int count;
};

static void bcast_visit(struct rooms_socket *rs, void *arg)
{
    struct bcast_ctx *ctx = arg;
    struct sio_socket *sock = (struct sio_socket *)rs;
    if (sock == ctx->except_socket)
        return;
    if (ctx->ack) {
        struct pending_ack *a = ack_add(sock, ctx->ack_id, 0);
        if (!a)
            return;
        a->bcast = ctx->ack;
        ctx->ack->refs++;
        ctx->ack->expected++;
    }
    if (send_encoded(sock->client->session, ctx->e) == ENGINE_SENT)
        ctx->count++;
}

static int broadcast(struct sio_namespace *nsp, const struct sio_target *t, const char *event,
                     cJSON *args, struct bcast_ack *ack)
{
    cJSON *data = event_array(event, args);
    if (!data || nsp->is_pattern) {
        cJSON_Delete(data);
        return -1;
    }
    int64_t id = ack ? nsp->next_ack_id++ : SIO_NO_ACK;
    bool is_volatile = t && t->is_volatile;
    struct recovery *rec = nsp->io->recovery;
    char offset[RECOVERY_OFFSET_MAX + 1];
    if (rec && !ack && !is_volatile) {
        recovery_next_offset(rec, offset);
        cJSON_AddItemToArray(data, cJSON_CreateString(offset));
    }
    struct encoded e;
    int rc = encode(nsp->io, SIO_EVENT, nsp->name, id, data, is_volatile, &e);
    cJSON_Delete(data);
    if (rc < 0)
        return -1;
    if (rec && !ack && !is_volatile)
        record_packet(rec, nsp, offset, t, &e);
    if (t && t->no_compress) {
        e.main->no_compress = true;
        for (size_t i = 0; i < e.n_att; i++)
            e.att[i]->no_compress = true;
    }
    struct bcast_ctx ctx = {&e, t ? t->except_socket : NULL, ack, id, 0};
    static const char *const none[1] = {NULL};
    struct adapter_opts opts = {.rooms = t && t->rooms ? t->rooms : none,
                                .n_rooms = t ? t->n_rooms : 0,
                                .except = t && t->except ? t->except : none,
                                .n_except = t ? t->n_except : 0,
                                .is_volatile = is_volatile};
    struct adapter_packet pk = {e.main, e.att, e.n_att};
    nsp->adapter->ops->broadcast(nsp->adapter, &pk, &opts, bcast_visit, &ctx);
    encoded_release(&e);
    return ctx.count;
}

int sio_broadcast(struct sio_namespace *nsp, const struct sio_target *t, const char *event,
                  struct cJSON *args)
{
    return broadcast(nsp, t, event, args, NULL);
}

int sio_broadcast_with_ack(struct sio_namespace *nsp, const struct sio_target *t, const char *event,
                           struct cJSON *args, unsigned timeout_ms, sio_broadcast_ack_fn fn,
                           void *ud)
{
    struct bcast_ack *b = calloc(1, sizeof(*b));
    if (!b || !(b->responses = cJSON_CreateArray())) {
        free(b);
        cJSON_Delete(args);
        return -1;
    }
    b->refs = 1;
    b->nsp = nsp;
    b->fn = fn;
    b->ud = ud;
    int n = broadcast(nsp, t, event, args, b);
    if (n >= 0 && b->received >= b->expected) {
        bcast_finish(b, false); /* nobody to wait for */
    } else if (n >= 0 && timeout_ms) {
        b->timer = evtimer_new(nsp->io->srv->base, bcast_timeout, b);
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        if (b->timer)
            evtimer_add(b->timer, &tv);
    }
    bcast_unref(b);
    return n;
}

/* --- public: rooms and sockets ------------------------------------------ */

int sio_join(struct sio_socket *sock, const char *room)
{
    if (!sock->connected)
        return -1;
    struct adapter *a = sock->nsp->adapter;
    /* A bound on what one client can make the server remember. */
    unsigned max = sock->nsp->io->srv->cfg.max_rooms_per_socket;
    if (max && sock->rs.n_rooms >= max && !a->ops->has(a, &sock->rs, room))
        return -1;
    return a->ops->join(a, &sock->rs, room) < 0 ? -1 : 0;
}

int sio_leave(struct sio_socket *sock, const char *room)
{
    if (sock->connected)
        sock->nsp->adapter->ops->leave(sock->nsp->adapter, &sock->rs, room);
    return 0;
}

bool sio_in_room(const struct sio_socket *sock, const char *room)
{
    return sock->connected && sock->nsp->adapter->ops->has(sock->nsp->adapter, &sock->rs, room);
}

void sio_socket_each_room(const struct sio_socket *sock, void (*fn)(const char *room, void *ud),
                          void *ud)
{
    if (sock->connected)
        rooms_each_of_socket(&sock->rs, fn, ud);
}

size_t sio_room_size(const struct sio_namespace *nsp, const char *room)
{
    return nsp->adapter ? nsp->adapter->ops->room_size(nsp->adapter, room) : 0;
}

void sio_disconnect(struct sio_socket *sock, bool close_connection)
{
    struct sio_session *s = sock->client->session;
    socket_disconnect(sock, "server namespace disconnect", true);
    if (close_connection)
        engine_session_close(s);
}

void sio_reject(struct sio_socket *sock, const char *message, struct cJSON *data)
{
    if (!sock->in_middleware) {
        cJSON_Delete(data);
        return;
    }
    struct socket_extra *x = socket_extra(sock);
    if (!x) {
        cJSON_Delete(data);
        return;
    }
    free(x->reject_message);
    cJSON_Delete(x->reject_data);
    x->reject_message = strdup(message ? message : "Forbidden");
    x->reject_data = data;
}

const char *sio_socket_id(const struct sio_socket *sock)
{
    return sock->id;
}

struct sio_namespace *sio_socket_namespace(const struct sio_socket *sock)
{
    return sock->nsp;
}

struct sio_server *sio_socket_server(const struct sio_socket *sock)
{
    return socket_io(sock)->srv;
}

bool sio_socket_connected(const struct sio_socket *sock)
{
    return sock->connected;
}

bool sio_socket_recovered(const struct sio_socket *sock)
{
    return sock->recovered;
}

const struct cJSON *sio_socket_auth(const struct sio_socket *sock)
{
    /* Shared by every socket without an auth payload: never written. */
    static const cJSON empty_object = {.type = cJSON_Object};
    return sock->x && sock->x->auth ? sock->x->auth : &empty_object;
}

const struct sio_handshake *sio_socket_handshake(const struct sio_socket *sock)
{
    return client_handshake(sock->client);
}

struct cJSON *sio_socket_data(struct sio_socket *sock)
{
    struct socket_extra *x = socket_extra(sock);
    if (!x)
        return NULL;
    if (!x->data)
        x->data = cJSON_CreateObject();
    return x->data;
}

void sio_socket_set_user(struct sio_socket *sock, void *user)
{
    sock->user = user;
}

void *sio_socket_get_user(const struct sio_socket *sock)
{
    return sock->user;
}

struct cJSON *sio_binary(const void *data, size_t len)
{
    return sio_binary_new(data, len);
}

struct cJSON *sio_json_copy(const struct cJSON *item)
{
    return sio_json_duplicate(item);
}
