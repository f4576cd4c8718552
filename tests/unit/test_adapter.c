/* Unit tests for the adapter interface with the in-memory adapter:
 * membership and broadcast targeting as the Socket.IO layer uses them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "adapter.h"

#define N 6

struct fixture {
    struct adapter *a;
    struct rooms_socket rs[N];
    char ids[N][8];
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    f.a = adapter_memory_new();
    assert_non_null(f.a);
    for (int i = 0; i < N; i++) {
        snprintf(f.ids[i], sizeof(f.ids[i]), "s%d", i);
        rooms_socket_init(&f.rs[i], f.ids[i]);
        assert_int_equal(f.a->ops->add_socket(f.a, &f.rs[i]), 0);
    }
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < N; i++)
        f->a->ops->remove_socket(f->a, &f->rs[i]);
    adapter_free(f->a);
    return 0;
}

struct seen {
    unsigned mask;
    unsigned calls;
    struct fixture *f;
};

static void collect(struct rooms_socket *rs, void *arg)
{
    struct seen *s = arg;
    s->mask |= 1u << (rs - s->f->rs);
    s->calls++;
}

/* Broadcasts with the given rooms/except and returns the bit mask of the
 * sockets reached (each reached once). */
static unsigned targets(struct fixture *f, const char *const *rooms, size_t n_rooms,
                        const char *const *except, size_t n_except)
{
    struct seen s = {0, 0, f};
    struct adapter_opts o = {rooms, n_rooms, except, n_except, false};
    struct adapter_packet p = {NULL, NULL, 0};
    size_t n = f->a->ops->broadcast(f->a, &p, &o, collect, &s);
    assert_int_equal(n, s.calls);
    assert_int_equal(__builtin_popcount(s.mask), s.calls);
    return s.mask;
}

static void test_membership(void **state)
{
    struct fixture *f = *state;
    struct adapter *a = f->a;
    assert_string_equal(a->ops->name, "memory");
    assert_int_equal(a->ops->socket_count(a), N);
    assert_int_equal(a->ops->join(a, &f->rs[0], "r"), 1);
    assert_int_equal(a->ops->join(a, &f->rs[0], "r"), 0);
    assert_true(a->ops->has(a, &f->rs[0], "r"));
    assert_true(a->ops->has(a, &f->rs[0], "s0")); /* its own id */
    assert_false(a->ops->has(a, &f->rs[1], "r"));
    assert_int_equal(a->ops->room_size(a, "r"), 1);
    assert_int_equal(a->ops->leave(a, &f->rs[0], "r"), 1);
    assert_int_equal(a->ops->leave(a, &f->rs[0], "r"), 0);
    assert_int_equal(a->ops->room_size(a, "r"), 0);
    assert_int_equal(a->ops->add_socket(a, &f->rs[0]), -1); /* duplicate id */
    assert_non_null(adapter_memory_rooms(a));
}

static void test_broadcast_targeting(void **state)
{
    struct fixture *f = *state;
    struct adapter *a = f->a;
    /* room A: 0 1 2; room B: 2 3; room C: 5 */
    for (int i = 0; i <= 2; i++)
        a->ops->join(a, &f->rs[i], "A");
    a->ops->join(a, &f->rs[2], "B");
    a->ops->join(a, &f->rs[3], "B");
    a->ops->join(a, &f->rs[5], "C");
    const char *all_but[] = {"s4"};
    const char *ab[] = {"A", "B"};
    const char *b[] = {"B"};
    const char *c_and_s1[] = {"C", "s1"};
    const char *unknown[] = {"nobody"};
    assert_int_equal(targets(f, NULL, 0, NULL, 0), 0x3f);     /* whole namespace */
    assert_int_equal(targets(f, NULL, 0, all_but, 1), 0x2f);  /* except one socket */
    assert_int_equal(targets(f, ab, 2, NULL, 0), 0x0f);       /* union, 2 once */
    assert_int_equal(targets(f, ab, 2, b, 1), 0x03);          /* minus B */
    assert_int_equal(targets(f, c_and_s1, 2, NULL, 0), 0x22); /* a socket id as a room */
    assert_int_equal(targets(f, unknown, 1, NULL, 0), 0);
    assert_int_equal(targets(f, NULL, 0, ab, 2), 0x30); /* everyone not in A or B */
    /* leaving updates targeting at once */
    a->ops->leave(a, &f->rs[2], "B");
    assert_int_equal(targets(f, b, 1, NULL, 0), 0x08);
    a->ops->remove_socket(a, &f->rs[3]);
    assert_int_equal(targets(f, b, 1, NULL, 0), 0);
    assert_int_equal(a->ops->add_socket(a, &f->rs[3]), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_membership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broadcast_targeting, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
