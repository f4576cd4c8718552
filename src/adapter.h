/* adapter: where a namespace's room membership lives and how a broadcast
 * reaches its targets.
 *
 * The Socket.IO layer talks to rooms and broadcasts only through this
 * interface, so that broadcasting code does not assume a single node. The
 * in-memory adapter (adapter_memory_new, over rooms.c) serves one process; a
 * cluster adapter wraps the same local index and also forwards broadcasts to
 * the other nodes (the packet is given both encoded and as its parts so it
 * can be re-encoded for another wire format).
 *
 * Sockets are the local ones, each embedding a struct rooms_socket.
 * Event-loop thread only.
 */
#ifndef SOCKEYE_ADAPTER_H
#define SOCKEYE_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>

#include "outpacket.h"
#include "rooms.h"

struct adapter;

/* Who a broadcast is for: the union of rooms (none = the whole namespace)
 * minus every member of an except room. */
struct adapter_opts {
    const char *const *rooms;
    size_t n_rooms;
    const char *const *except;
    size_t n_except;
    bool is_volatile;
};

/* A packet encoded once: the Engine.IO message and its binary attachments. */
struct adapter_packet {
    struct outpacket *main;
    struct outpacket *const *att;
    size_t n_att;
};

struct adapter_ops {
    const char *name;
    void (*free)(struct adapter *a);
    /* Returns 0, or -1 (duplicate id or allocation failure). */
    int (*add_socket)(struct adapter *a, struct rooms_socket *rs);
    /* Leaves every room too. Idempotent. */
    void (*remove_socket)(struct adapter *a, struct rooms_socket *rs);
    /* 1 joined now, 0 already in, -1 allocation failure. */
    int (*join)(struct adapter *a, struct rooms_socket *rs, const char *room);
    /* 1 left now, 0 was not in. */
    int (*leave)(struct adapter *a, struct rooms_socket *rs, const char *room);
    bool (*has)(const struct adapter *a, const struct rooms_socket *rs, const char *room);
    /* Members on this node. */
    size_t (*room_size)(const struct adapter *a, const char *room);
    size_t (*socket_count)(const struct adapter *a);
    /* Hands p to deliver() once for each local target and returns how many
     * there were; a cluster adapter also forwards p to the other nodes.
     * deliver must not change membership. */
    size_t (*broadcast)(struct adapter *a, const struct adapter_packet *p,
                        const struct adapter_opts *o, rooms_visit_fn deliver, void *arg);
};

struct adapter {
    const struct adapter_ops *ops;
};

/* The in-memory adapter of one namespace. NULL on allocation failure. */
struct adapter *adapter_memory_new(void);

/* The local index behind an in-memory adapter (for adapters that wrap it). */
struct rooms *adapter_memory_rooms(struct adapter *a);

static inline void adapter_free(struct adapter *a)
{
    if (a)
        a->ops->free(a);
}

#endif
