/* recovery: see recovery.h for the contract. */

/* A peer's reconnect or a broadcast storm must fail one operation when memory
 * runs out, not exit the process. Must precede uthash.h. */
#define HASH_NONFATAL_OOM 1

#include "recovery.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <uthash.h>
#include <utlist.h>

#define DEFAULT_MAX_PACKETS 100000
#define PREFIX_LEN          6

/* One allocation per buffered packet. After out[n_out] (main, then its
 * attachments) come the NUL-terminated names: offset, nsp, the n_rooms
 * rooms, then the n_except except rooms. Keeping the names inline costs a
 * strlen walk at restore, which is rare, and saves an allocation per name on
 * every broadcast, which is not. */
struct recorded {
    UT_hash_handle hh; /* keyed by the offset */
    struct recorded *next;
    uint64_t at_ms;
    uint32_t n_rooms, n_except, n_out;
    struct outpacket *out[];
};

/* One allocation per saved session; names after the struct: pid (the hash
 * key), nsp, sid, then the n_rooms rooms. */
struct saved {
    UT_hash_handle hh; /* keyed by the pid */
    /* Oldest first, so expiry stops at the first live session instead of
     * walking the table. */
    struct saved *prev, *next;
    uint64_t at_ms;
    cJSON *data;
    size_t n_rooms;
    char names[];
};

struct recovery {
    uint64_t max_ms;
    size_t max_packets;
    struct recorded *by_offset;
    struct recorded *oldest, *newest;
    struct saved *by_pid;
    struct saved *saved; /* utlist list, oldest first */
    uint64_t counter;
    char prefix[PREFIX_LEN];
};

/* URL-safe and JSON-safe without escaping. */
static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";

struct recovery *recovery_new(const struct recovery_config *cfg)
{
    struct recovery *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->max_ms = cfg->max_disconnection_ms;
    r->max_packets = cfg->max_packets ? cfg->max_packets : DEFAULT_MAX_PACKETS;
    /* The prefix keeps an offset from a previous process (or another server
     * of a cluster) from matching one of ours after a restart. */
    unsigned char rnd[PREFIX_LEN];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < PREFIX_LEN; i++)
        r->prefix[i] = alphabet[rnd[i] & 63];
    return r;
}

static bool is_expired(const struct recovery *r, uint64_t at_ms, uint64_t now_ms)
{
    /* Written so that a huge max_ms cannot overflow, and a clock that goes
     * backwards expires nothing. */
    return now_ms > at_ms && now_ms - at_ms > r->max_ms;
}

static const char *next_name(const char *name)
{
    return name + strlen(name) + 1;
}

static const char *recorded_offset(const struct recorded *p)
{
    return (const char *)(p->out + p->n_out);
}

static void drop_oldest_packet(struct recovery *r)
{
    struct recorded *p = r->oldest;
    HASH_DELETE(hh, r->by_offset, p);
    r->oldest = p->next;
    if (!r->oldest)
        r->newest = NULL;
    for (uint32_t i = 0; i < p->n_out; i++)
        outpacket_unref(p->out[i]);
    free(p);
}

static void drop_session(struct recovery *r, struct saved *s)
{
    HASH_DELETE(hh, r->by_pid, s);
    DL_DELETE(r->saved, s);
    cJSON_Delete(s->data);
    free(s);
}

/* Both run on every record/save too: their cost is proportional to what
 * they drop, and memory then stays bounded even if recovery_expire is called
 * rarely. */
static void expire_packets(struct recovery *r, uint64_t now_ms)
{
    while (r->oldest && is_expired(r, r->oldest->at_ms, now_ms))
        drop_oldest_packet(r);
}

static void expire_sessions(struct recovery *r, uint64_t now_ms)
{
    while (r->saved && is_expired(r, r->saved->at_ms, now_ms))
        drop_session(r, r->saved);
}

void recovery_free(struct recovery *r)
{
    if (!r)
        return;
    while (r->oldest)
        drop_oldest_packet(r);
    while (r->saved)
        drop_session(r, r->saved);
    free(r);
}

void recovery_next_offset(struct recovery *r, char out[RECOVERY_OFFSET_MAX + 1])
{
    /* prefix + the counter in base 64, most significant digit first: at most
     * 6 + 11 characters, and distinct counters give distinct strings. */
    char digits[11];
    size_t n = 0;
    uint64_t v = r->counter++;
    do {
        digits[n++] = alphabet[v & 63];
        v >>= 6;
    } while (v);
    memcpy(out, r->prefix, PREFIX_LEN);
    for (size_t i = 0; i < n; i++)
        out[PREFIX_LEN + i] = digits[n - 1 - i];
    out[PREFIX_LEN + n] = '\0';
}

/* *total += the bytes of n NUL-terminated names; false on overflow. */
static bool add_names(size_t *total, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (__builtin_add_overflow(*total, strlen(names[i]) + 1, total))
            return false;
    return true;
}

static char *put_names(char *dst, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]) + 1;
        memcpy(dst, names[i], len);
        dst += len;
    }
    return dst;
}

int recovery_record(struct recovery *r, uint64_t now_ms, const char *nsp, const char *offset,
                    const char *const *rooms, size_t n_rooms, const char *const *except,
                    size_t n_except, struct outpacket *main, struct outpacket *const *att,
                    size_t n_att)
{
    expire_packets(r, now_ms);
    if (n_rooms > UINT32_MAX || n_except > UINT32_MAX || n_att >= UINT32_MAX ||
        n_att + 1 > (SIZE_MAX - sizeof(struct recorded)) / sizeof(struct outpacket *))
        return -1;
    size_t size = sizeof(struct recorded) + (n_att + 1) * sizeof(struct outpacket *);
    const char *const heads[] = {offset, nsp};
    if (!add_names(&size, heads, 2) || !add_names(&size, rooms, n_rooms) ||
        !add_names(&size, except, n_except))
        return -1;
    struct recorded *p = malloc(size);
    if (!p)
        return -1;
    p->next = NULL;
    p->at_ms = now_ms;
    p->n_rooms = (uint32_t)n_rooms;
    p->n_except = (uint32_t)n_except;
    p->n_out = (uint32_t)(n_att + 1);
    char *names = (char *)(p->out + p->n_out);
    char *end = put_names(names, heads, 2);
    end = put_names(end, rooms, n_rooms);
    put_names(end, except, n_except);

    HASH_ADD_KEYPTR(hh, r->by_offset, names, strlen(names), p);
    if (!p->hh.tbl) {
        free(p);
        return -1;
    }
    p->out[0] = outpacket_ref(main);
    for (size_t i = 0; i < n_att; i++)
        p->out[i + 1] = outpacket_ref(att[i]);
    if (r->newest)
        r->newest->next = p;
    else
        r->oldest = p;
    r->newest = p;
    while (HASH_COUNT(r->by_offset) > r->max_packets)
        drop_oldest_packet(r);
    return 0;
}

int recovery_save(struct recovery *r, uint64_t now_ms, const char *nsp, const char *sid,
                  const char *pid, const char *const *rooms, size_t n_rooms, const cJSON *data)
{
    expire_sessions(r, now_ms);
    size_t size = sizeof(struct saved);
    const char *const heads[] = {pid, nsp, sid};
    if (!add_names(&size, heads, 3) || !add_names(&size, rooms, n_rooms))
        return -1;
    struct saved *s = malloc(size);
    if (!s)
        return -1;
    s->at_ms = now_ms;
    s->n_rooms = n_rooms;
    s->data = NULL;
    if (data && !(s->data = cJSON_Duplicate(data, true))) {
        free(s);
        return -1;
    }
    put_names(put_names(s->names, heads, 3), rooms, n_rooms);

    /* Added before the old entry is removed (uthash tolerates the duplicate
     * key meanwhile) so that a failed add leaves the old session intact. */
    struct saved *old;
    HASH_FIND(hh, r->by_pid, pid, strlen(pid), old);
    HASH_ADD_KEYPTR(hh, r->by_pid, s->names, strlen(s->names), s);
    if (!s->hh.tbl) {
        cJSON_Delete(s->data);
        free(s);
        return -1;
    }
    if (old)
        drop_session(r, old);
    DL_APPEND(r->saved, s);
    return 0;
}

/* The session's rooms as a set, so matching costs O(rooms of the packet)
 * per missed packet whatever the number of rooms of the session. The keys
 * point into the saved session's names. */
struct room_key {
    UT_hash_handle hh;
};

static int room_set_build(const struct saved *s, struct room_key **set, struct room_key **keys)
{
    *set = NULL;
    *keys = NULL;
    if (!s->n_rooms)
        return 0;
    *keys = calloc(s->n_rooms, sizeof(struct room_key));
    if (!*keys)
        return -1;
    const char *name = next_name(next_name(next_name(s->names)));
    for (size_t i = 0; i < s->n_rooms; i++, name = next_name(name)) {
        struct room_key *k = &(*keys)[i];
        HASH_ADD_KEYPTR(hh, *set, name, strlen(name), k);
        if (!k->hh.tbl)
            return -1;
    }
    return 0;
}

static void room_set_free(struct room_key **set, struct room_key *keys)
{
    HASH_CLEAR(hh, *set);
    free(keys);
}

static bool room_set_has(struct room_key *set, const char *name)
{
    struct room_key *k;
    HASH_FIND(hh, set, name, strlen(name), k);
    return k != NULL;
}

/* rooms empty or any room shared, and no except room shared. */
static bool targets(const struct recorded *p, struct room_key *set, const char *rooms)
{
    const char *name = rooms;
    bool included = p->n_rooms == 0;
    for (uint32_t i = 0; i < p->n_rooms; i++, name = next_name(name))
        if (!included && room_set_has(set, name))
            included = true;
    if (!included)
        return false;
    for (uint32_t i = 0; i < p->n_except; i++, name = next_name(name))
        if (room_set_has(set, name))
            return false;
    return true;
}

static int collect_packets(struct recovery_session *out, const struct recorded *from,
                           const char *nsp, struct room_key *set)
{
    size_t cap = 0;
    for (const struct recorded *p = from->next; p; p = p->next) {
        const char *p_nsp = next_name(recorded_offset(p));
        if (strcmp(p_nsp, nsp) != 0 || !targets(p, set, next_name(p_nsp)))
            continue;
        if (out->n_packets + p->n_out > cap) {
            size_t ncap = cap ? cap * 2 : 16;
            while (ncap < out->n_packets + p->n_out)
                ncap *= 2;
            struct outpacket **np = realloc(out->packets, ncap * sizeof(*np));
            if (!np)
                return -1;
            out->packets = np;
            cap = ncap;
        }
        for (uint32_t i = 0; i < p->n_out; i++)
            out->packets[out->n_packets++] = outpacket_ref(p->out[i]);
    }
    return 0;
}

static int copy_session(struct recovery_session *out, const struct saved *s)
{
    const char *nsp = next_name(s->names);
    const char *sid = next_name(nsp);
    out->pid = strdup(s->names);
    out->nsp = strdup(nsp);
    out->sid = strdup(sid);
    if (!out->pid || !out->nsp || !out->sid)
        return -1;
    if (!s->n_rooms)
        return 0;
    out->rooms = calloc(s->n_rooms, sizeof(char *));
    if (!out->rooms)
        return -1;
    const char *name = next_name(sid);
    for (; out->n_rooms < s->n_rooms; out->n_rooms++, name = next_name(name))
        if (!(out->rooms[out->n_rooms] = strdup(name)))
            return -1;
    return 0;
}

int recovery_restore(struct recovery *r, uint64_t now_ms, const char *nsp, const char *pid,
                     const char *offset, struct recovery_session *out)
{
    memset(out, 0, sizeof(*out));
    expire_packets(r, now_ms);
    struct saved *s;
    HASH_FIND(hh, r->by_pid, pid, strlen(pid), s);
    if (!s)
        return 0;
    struct recorded *from;
    HASH_FIND(hh, r->by_offset, offset, strlen(offset), from);
    /* Like the reference's per-namespace buffer, the offset must be one of
     * this namespace's packets. */
    if (strcmp(next_name(s->names), nsp) != 0 || is_expired(r, s->at_ms, now_ms) || !from ||
        strcmp(next_name(recorded_offset(from)), nsp) != 0) {
        drop_session(r, s);
        return 0;
    }
    struct room_key *set, *keys;
    int rc = room_set_build(s, &set, &keys);
    if (rc == 0)
        rc = collect_packets(out, from, nsp, set);
    room_set_free(&set, keys);
    if (rc == 0)
        rc = copy_session(out, s);
    if (rc < 0) {
        /* The session stays saved: the caller may retry. */
        recovery_session_cleanup(out);
        return -1;
    }
    out->data = s->data;
    s->data = NULL;
    drop_session(r, s);
    return 1;
}

void recovery_session_cleanup(struct recovery_session *s)
{
    if (!s)
        return;
    free(s->nsp);
    free(s->sid);
    free(s->pid);
    for (size_t i = 0; i < s->n_rooms; i++)
        free(s->rooms[i]);
    free(s->rooms);
    cJSON_Delete(s->data);
    for (size_t i = 0; i < s->n_packets; i++)
        outpacket_unref(s->packets[i]);
    free(s->packets);
    memset(s, 0, sizeof(*s));
}

void recovery_expire(struct recovery *r, uint64_t now_ms)
{
    expire_packets(r, now_ms);
    expire_sessions(r, now_ms);
}

size_t recovery_sessions(const struct recovery *r)
{
    return HASH_COUNT(r->by_pid);
}

size_t recovery_packets(const struct recovery *r)
{
    return HASH_COUNT(r->by_offset);
}
