/* rooms: see rooms.h for the contract. */

/* A peer can make us join rooms, so running out of memory in uthash must
 * fail the one operation, not exit the process. Must precede uthash.h. */
#define HASH_NONFATAL_OOM 1

#include "rooms.h"

#include <stdlib.h>
#include <string.h>

#include <utlist.h>

struct room {
    UT_hash_handle hh;
    /* utlist doubly-linked list: head->prev is the tail, so both append and
     * unlink are O(1) without a tail pointer. */
    struct room_membership *members;
    size_t size;
    char name[];
};

/* One allocation per (socket, room) pair, threaded on two lists: the room's
 * members (walked by selections) and the socket's rooms (walked by
 * join/leave/has, which is short because a socket joins few rooms). The
 * socket's list is singly linked to keep the node at 40 bytes: unlinking
 * already has to walk it to find the node. */
struct room_membership {
    struct room *room;
    struct rooms_socket *socket;
    struct room_membership *prev, *next;
    struct room_membership *next_of_socket;
};

struct rooms {
    struct rooms_socket *sockets;
    struct room *rooms;
    /* Current selection epoch; 0 is never a live epoch, so a mark of 0
     * (fresh socket) never matches. */
    uint32_t epoch;
};

void rooms_socket_init(struct rooms_socket *rs, const char *id)
{
    memset(rs, 0, sizeof(*rs));
    rs->id = id;
}

struct rooms *rooms_new(void)
{
    return calloc(1, sizeof(struct rooms));
}

static struct room *find_room(const struct rooms *r, const char *name)
{
    struct room *head = r->rooms, *room;
    HASH_FIND(hh, head, name, strlen(name), room);
    return room;
}

struct rooms_socket *rooms_find_socket(const struct rooms *r, const char *id)
{
    struct rooms_socket *head = r->sockets, *rs;
    HASH_FIND(hh, head, id, strlen(id), rs);
    return rs;
}

/* Returns the link pointing at rs's membership of room, or at the list's
 * terminating NULL when there is none (so join can append there). */
static struct room_membership **find_link(const struct rooms_socket *rs, const struct room *room)
{
    struct room_membership *const *link = &rs->memberships;
    while (*link && (*link)->room != room)
        link = &(*link)->next_of_socket;
    return (struct room_membership **)link;
}

static void drop_membership(struct rooms *r, struct room_membership **link)
{
    struct room_membership *m = *link;
    struct room *room = m->room;

    *link = m->next_of_socket;
    m->socket->n_rooms--;
    DL_DELETE(room->members, m);
    free(m);
    if (--room->size == 0) {
        HASH_DEL(r->rooms, room);
        free(room);
    }
}

int rooms_add_socket(struct rooms *r, struct rooms_socket *rs)
{
    if (rooms_find_socket(r, rs->id))
        return -1;
    /* A socket removed and added back may carry a mark from before an epoch
     * wrap-around reset, which could match a future epoch. */
    rs->mark = 0;
    HASH_ADD_KEYPTR(hh, r->sockets, rs->id, strlen(rs->id), rs);
    return rs->hh.tbl ? 0 : -1;
}

void rooms_remove_socket(struct rooms *r, struct rooms_socket *rs)
{
    rooms_leave_all(r, rs);
    if (rooms_find_socket(r, rs->id) == rs)
        HASH_DEL(r->sockets, rs);
}

void rooms_free(struct rooms *r)
{
    if (!r)
        return;
    /* The contract asks for every socket to be removed first; if one was
     * not, drop its memberships anyway rather than leak them. */
    while (r->rooms)
        rooms_leave_all(r, r->rooms->members->socket);
    HASH_CLEAR(hh, r->sockets);
    free(r);
}

size_t rooms_socket_count(const struct rooms *r)
{
    return HASH_COUNT(r->sockets);
}

static struct room *new_room(struct rooms *r, const char *name)
{
    size_t len = strlen(name);
    struct room *room = malloc(sizeof(*room) + len + 1);
    if (!room)
        return NULL;
    room->members = NULL;
    room->size = 0;
    memcpy(room->name, name, len + 1);
    HASH_ADD_KEYPTR(hh, r->rooms, room->name, len, room);
    if (!room->hh.tbl) {
        free(room);
        return NULL;
    }
    return room;
}

int rooms_join(struct rooms *r, struct rooms_socket *rs, const char *room_name)
{
    if (strcmp(room_name, rs->id) == 0)
        return 0;
    struct room *room = find_room(r, room_name);
    struct room_membership **link = find_link(rs, room);
    if (room && *link)
        return 0;

    struct room_membership *m = malloc(sizeof(*m));
    if (!m)
        return -1;
    if (!room && !(room = new_room(r, room_name))) {
        free(m);
        return -1;
    }
    m->room = room;
    m->socket = rs;
    m->next_of_socket = NULL;
    *link = m;
    DL_APPEND(room->members, m);
    room->size++;
    rs->n_rooms++;
    return 1;
}

int rooms_leave(struct rooms *r, struct rooms_socket *rs, const char *room_name)
{
    struct room *room = find_room(r, room_name);
    if (!room)
        return 0;
    struct room_membership **link = find_link(rs, room);
    if (!*link)
        return 0;
    drop_membership(r, link);
    return 1;
}

void rooms_leave_all(struct rooms *r, struct rooms_socket *rs)
{
    while (rs->memberships)
        drop_membership(r, &rs->memberships);
}

bool rooms_has(const struct rooms *r, const struct rooms_socket *rs, const char *room_name)
{
    if (strcmp(room_name, rs->id) == 0)
        return true;
    struct room *room = find_room(r, room_name);
    return room && *find_link(rs, room);
}

size_t rooms_size(const struct rooms *r, const char *room_name)
{
    const struct room *room = find_room(r, room_name);
    return (room ? room->size : 0) + (rooms_find_socket(r, room_name) ? 1 : 0);
}

size_t rooms_count(const struct rooms *r)
{
    return HASH_COUNT(r->rooms);
}

void rooms_each_of_socket(const struct rooms_socket *rs, void (*fn)(const char *room, void *arg),
                          void *arg)
{
    for (const struct room_membership *m = rs->memberships; m; m = m->next_of_socket)
        fn(m->room->name, arg);
}

void rooms_each_room(const struct rooms *r, void (*fn)(const char *room, size_t members, void *arg),
                     void *arg)
{
    for (const struct room *room = r->rooms; room; room = room->hh.next)
        fn(room->name, room->size, arg);
}

/* Only reached after 2^32 - 1 selections: clearing every mark makes the
 * restarted epochs safe to reuse. Members of rooms are cleared too, in case
 * a socket joined rooms without being added to the index. */
static uint32_t next_epoch(struct rooms *r)
{
    if (++r->epoch != 0)
        return r->epoch;
    for (struct rooms_socket *rs = r->sockets; rs; rs = rs->hh.next)
        rs->mark = 0;
    for (struct room *room = r->rooms; room; room = room->hh.next)
        for (struct room_membership *m = room->members; m; m = m->next)
            m->socket->mark = 0;
    return r->epoch = 1;
}

/* epoch 0 means the caller proved no socket can come up twice, so the marks
 * are neither read nor written. */
static inline bool claim(struct rooms_socket *rs, uint32_t epoch)
{
    if (epoch == 0)
        return true;
    if (rs->mark == epoch)
        return false;
    rs->mark = epoch;
    return true;
}

/* Claiming the excluded sockets up front turns "except" into "already
 * visited", so one mark serves both. */
static void exclude_room(struct rooms *r, const char *name, uint32_t epoch)
{
    struct rooms_socket *own = rooms_find_socket(r, name);
    if (own)
        own->mark = epoch;
    struct room *room = find_room(r, name);
    if (!room)
        return;
    for (struct room_membership *m = room->members; m; m = m->next)
        m->socket->mark = epoch;
}

/* The socket with that id first, then the stored room of that name. */
static size_t visit_room(struct rooms *r, const char *name, uint32_t epoch, rooms_visit_fn fn,
                         void *arg)
{
    size_t n = 0;
    struct rooms_socket *own = rooms_find_socket(r, name);
    if (own && claim(own, epoch)) {
        fn(own, arg);
        n++;
    }
    struct room *room = find_room(r, name);
    if (!room)
        return n;
    for (struct room_membership *m = room->members; m; m = m->next) {
        if (claim(m->socket, epoch)) {
            fn(m->socket, arg);
            n++;
        }
    }
    return n;
}

size_t rooms_select(struct rooms *r, const char *const *in, size_t n_in, const char *const *except,
                    size_t n_except, rooms_visit_fn fn, void *arg)
{
    /* A single room never yields a socket twice (a socket is never a stored
     * member of its own id's room), so only several rooms or an except list
     * need the marks. */
    uint32_t epoch = (n_in > 1 || n_except > 0) ? next_epoch(r) : 0;
    size_t n = 0;

    for (size_t i = 0; i < n_except; i++)
        exclude_room(r, except[i], epoch);
    if (n_in == 0) {
        for (struct rooms_socket *rs = r->sockets; rs; rs = rs->hh.next) {
            if (epoch == 0 || rs->mark != epoch) {
                fn(rs, arg);
                n++;
            }
        }
        return n;
    }
    for (size_t i = 0; i < n_in; i++)
        n += visit_room(r, in[i], epoch, fn, arg);
    return n;
}

#ifdef ROOMS_TESTING
/* Test hooks, declared by the unit test only. */
void rooms_testing_set_epoch(struct rooms *r, uint32_t epoch);
uint32_t rooms_testing_epoch(const struct rooms *r);

void rooms_testing_set_epoch(struct rooms *r, uint32_t epoch)
{
    r->epoch = epoch;
}

uint32_t rooms_testing_epoch(const struct rooms *r)
{
    return r->epoch;
}
#endif
