/* rooms: the in-memory index of one namespace's sockets and rooms, and
 * broadcast targeting over it.
 *
 * Each socket embeds a struct rooms_socket. Every socket is implicitly in a
 * room named by its own id: that room is not stored, it is resolved through
 * the id index, so it costs nothing per socket.
 *
 * Targeting (rooms_select): rooms empty -> every socket of the namespace;
 * else the union of the rooms' members; minus every member of an `except`
 * room; each socket visited at most once, without allocating (an epoch mark
 * in each rooms_socket). Visit order: for "all sockets", insertion order;
 * for rooms, room by room in the order given. Callbacks must not join, leave,
 * add or remove sockets during a selection.
 *
 * Single-threaded. Room names are arbitrary byte strings without NUL.
 */
#ifndef SOCKEYE_ROOMS_H
#define SOCKEYE_ROOMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

struct rooms;
struct room_membership;

/* Embedded in each socket; initialise with rooms_socket_init. */
struct rooms_socket {
    UT_hash_handle hh;                   /* private: id index, also the insertion order */
    const char *id;                      /* NUL-terminated, owned by the socket, stable */
    struct room_membership *memberships; /* private */
    unsigned n_rooms;                    /* rooms joined (not counting its own id) */
    uint32_t mark;                       /* private: selection epoch */
};

void rooms_socket_init(struct rooms_socket *rs, const char *id);

/* NULL on allocation failure. */
struct rooms *rooms_new(void);
/* Frees the index (not the sockets; they must have been removed). */
void rooms_free(struct rooms *r);

/* Adds a socket to the namespace index. Returns 0, or -1 if a socket with
 * that id is already there or on allocation failure (the index grows). */
int rooms_add_socket(struct rooms *r, struct rooms_socket *rs);
/* Leaves every room and removes the socket from the index. Idempotent. */
void rooms_remove_socket(struct rooms *r, struct rooms_socket *rs);

size_t rooms_socket_count(const struct rooms *r);
struct rooms_socket *rooms_find_socket(const struct rooms *r, const char *id);

/* Joins room (copied). Returns 1 when joined now, 0 when already a member
 * (also for the socket's own id), -1 on allocation failure. */
int rooms_join(struct rooms *r, struct rooms_socket *rs, const char *room);
/* Returns 1 when left now, 0 when not a member. The own-id room cannot be
 * left (returns 0). An emptied room is freed. */
int rooms_leave(struct rooms *r, struct rooms_socket *rs, const char *room);
void rooms_leave_all(struct rooms *r, struct rooms_socket *rs);
bool rooms_has(const struct rooms *r, const struct rooms_socket *rs, const char *room);

/* Members of room (1 for a socket id, 0 for an unknown room). */
size_t rooms_size(const struct rooms *r, const char *room);

/* Number of rooms with members (socket-id rooms not counted). */
size_t rooms_count(const struct rooms *r);

/* Calls fn for each room the socket joined (not its own id). */
void rooms_each_of_socket(const struct rooms_socket *rs, void (*fn)(const char *room, void *arg),
                          void *arg);
/* Calls fn for each room with members. */
void rooms_each_room(const struct rooms *r, void (*fn)(const char *room, size_t members, void *arg),
                     void *arg);

typedef void (*rooms_visit_fn)(struct rooms_socket *rs, void *arg);

/* Visits the targeted sockets (see above). Returns the number visited. */
size_t rooms_select(struct rooms *r, const char *const *in, size_t n_in, const char *const *except,
                    size_t n_except, rooms_visit_fn fn, void *arg);

#endif
