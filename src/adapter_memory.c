/* The in-memory adapter: one node's rooms, over the rooms.c index. */
#include <stdlib.h>

#include "adapter.h"

struct memory_adapter {
    struct adapter base; /* first: the adapter handle */
    struct rooms *rooms;
};

static struct rooms *rooms_of(const struct adapter *a)
{
    return ((const struct memory_adapter *)a)->rooms;
}

static void mem_free(struct adapter *a)
{
    rooms_free(rooms_of(a));
    free(a);
}

static int mem_add_socket(struct adapter *a, struct rooms_socket *rs)
{
    return rooms_add_socket(rooms_of(a), rs);
}

static void mem_remove_socket(struct adapter *a, struct rooms_socket *rs)
{
    rooms_remove_socket(rooms_of(a), rs);
}

static int mem_join(struct adapter *a, struct rooms_socket *rs, const char *room)
{
    return rooms_join(rooms_of(a), rs, room);
}

static int mem_leave(struct adapter *a, struct rooms_socket *rs, const char *room)
{
    return rooms_leave(rooms_of(a), rs, room);
}

static bool mem_has(const struct adapter *a, const struct rooms_socket *rs, const char *room)
{
    return rooms_has(rooms_of(a), rs, room);
}

static size_t mem_room_size(const struct adapter *a, const char *room)
{
    return rooms_size(rooms_of(a), room);
}

static size_t mem_socket_count(const struct adapter *a)
{
    return rooms_socket_count(rooms_of(a));
}

static size_t mem_broadcast(struct adapter *a, const struct adapter_packet *p,
                            const struct adapter_opts *o, rooms_visit_fn deliver, void *arg)
{
    return rooms_select(rooms_of(a), o->rooms, o->n_rooms, o->except, o->n_except, deliver, arg);
}

static const struct adapter_ops memory_ops = {
    .name = "memory",
    .free = mem_free,
    .add_socket = mem_add_socket,
    .remove_socket = mem_remove_socket,
    .join = mem_join,
    .leave = mem_leave,
    .has = mem_has,
    .room_size = mem_room_size,
    .socket_count = mem_socket_count,
    .broadcast = mem_broadcast,
};

struct adapter *adapter_memory_new(void)
{
    struct memory_adapter *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->base.ops = &memory_ops;
    m->rooms = rooms_new();
    if (!m->rooms) {
        free(m);
        return NULL;
    }
    return &m->base;
}

struct rooms *adapter_memory_rooms(struct adapter *a)
{
    return a->ops == &memory_ops ? rooms_of(a) : NULL;
}
