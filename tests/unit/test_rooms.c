/* Unit tests for src/rooms. Build with -DROOMS_TESTING (epoch test hooks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rooms.h"

#ifndef ROOMS_TESTING
#error "build test_rooms with -DROOMS_TESTING"
#endif
void rooms_testing_set_epoch(struct rooms *r, uint32_t epoch);
uint32_t rooms_testing_epoch(const struct rooms *r);

#define N_SOCK 8

struct fixture {
    struct rooms *r;
    char ids[N_SOCK][8];
    struct rooms_socket s[N_SOCK];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || !(f->r = rooms_new()))
        return -1;
    for (int i = 0; i < N_SOCK; i++) {
        snprintf(f->ids[i], sizeof(f->ids[i]), "s%d", i);
        rooms_socket_init(&f->s[i], f->ids[i]);
        if (rooms_add_socket(f->r, &f->s[i]) != 0)
            return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < N_SOCK; i++)
        rooms_remove_socket(f->r, &f->s[i]);
    rooms_free(f->r);
    free(f);
    return 0;
}

/* Records visited sockets as indexes into the fixture, in order. */
struct visits {
    const struct fixture *f;
    int idx[N_SOCK * 4];
    size_t n;
};

static void record(struct rooms_socket *rs, void *arg)
{
    struct visits *v = arg;
    assert_true(v->n < sizeof(v->idx) / sizeof(v->idx[0]));
    v->idx[v->n++] = (int)(rs - v->f->s);
}

/* Selects, checks the return value against the visits and the visits
 * against want (a -1-terminated list of socket indexes, in order). */
static void expect_select(struct fixture *f, const char *const *in, size_t n_in,
                          const char *const *except, size_t n_except, const int *want)
{
    struct visits v = {.f = f};
    size_t n = rooms_select(f->r, in, n_in, except, n_except, record, &v);
    assert_int_equal(n, v.n);
    size_t n_want = 0;
    while (want[n_want] >= 0)
        n_want++;
    assert_int_equal(v.n, n_want);
    for (size_t i = 0; i < n_want; i++)
        assert_int_equal(v.idx[i], want[i]);
}

static void test_join_leave_has_size(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;

    assert_int_equal(rooms_join(r, &f->s[0], "a"), 1);
    assert_int_equal(rooms_join(r, &f->s[0], "a"), 0);
    assert_int_equal(rooms_join(r, &f->s[1], "a"), 1);
    assert_int_equal(rooms_join(r, &f->s[1], "b"), 1);
    assert_true(rooms_has(r, &f->s[0], "a"));
    assert_false(rooms_has(r, &f->s[0], "b"));
    assert_false(rooms_has(r, &f->s[2], "a"));
    assert_int_equal(rooms_size(r, "a"), 2);
    assert_int_equal(rooms_size(r, "b"), 1);
    assert_int_equal(f->s[0].n_rooms, 1);
    assert_int_equal(f->s[1].n_rooms, 2);

    assert_int_equal(rooms_leave(r, &f->s[0], "a"), 1);
    assert_int_equal(rooms_leave(r, &f->s[0], "a"), 0);
    assert_int_equal(rooms_leave(r, &f->s[0], "nope"), 0);
    assert_int_equal(rooms_leave(r, &f->s[2], "b"), 0);
    assert_false(rooms_has(r, &f->s[0], "a"));
    assert_int_equal(rooms_size(r, "a"), 1);
    assert_int_equal(f->s[0].n_rooms, 0);
}

static void test_own_id_room(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;

    assert_true(rooms_has(r, &f->s[3], "s3"));
    assert_false(rooms_has(r, &f->s[3], "s4"));
    assert_int_equal(rooms_size(r, "s3"), 1);
    assert_int_equal(rooms_join(r, &f->s[3], "s3"), 0);
    assert_int_equal(rooms_leave(r, &f->s[3], "s3"), 0);
    assert_true(rooms_has(r, &f->s[3], "s3"));
    assert_int_equal(f->s[3].n_rooms, 0);
    assert_int_equal(rooms_count(r), 0);
    assert_int_equal(rooms_size(r, "unknown"), 0);
}

static void test_room_freed_when_emptied(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;

    assert_int_equal(rooms_count(r), 0);
    rooms_join(r, &f->s[0], "a");
    rooms_join(r, &f->s[1], "a");
    rooms_join(r, &f->s[1], "b");
    assert_int_equal(rooms_count(r), 2);
    rooms_leave(r, &f->s[0], "a");
    assert_int_equal(rooms_count(r), 2);
    rooms_leave(r, &f->s[1], "a");
    assert_int_equal(rooms_count(r), 1);
    assert_int_equal(rooms_size(r, "a"), 0);
    rooms_leave(r, &f->s[1], "b");
    assert_int_equal(rooms_count(r), 0);
    /* A freed room can be created again. */
    assert_int_equal(rooms_join(r, &f->s[2], "a"), 1);
    assert_int_equal(rooms_size(r, "a"), 1);
}

static void test_leave_all(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;

    rooms_join(r, &f->s[0], "a");
    rooms_join(r, &f->s[0], "b");
    rooms_join(r, &f->s[0], "c");
    rooms_join(r, &f->s[1], "b");
    rooms_leave_all(r, &f->s[0]);
    assert_int_equal(f->s[0].n_rooms, 0);
    assert_false(rooms_has(r, &f->s[0], "a"));
    assert_false(rooms_has(r, &f->s[0], "b"));
    assert_true(rooms_has(r, &f->s[0], "s0"));
    assert_int_equal(rooms_count(r), 1);
    assert_int_equal(rooms_size(r, "b"), 1);
    assert_true(rooms_has(r, &f->s[1], "b"));
    rooms_leave_all(r, &f->s[0]);
    assert_int_equal(rooms_count(r), 1);
}

static void test_remove_socket(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;

    rooms_join(r, &f->s[2], "a");
    rooms_join(r, &f->s[2], "b");
    rooms_join(r, &f->s[3], "b");
    assert_int_equal(rooms_socket_count(r), N_SOCK);
    rooms_remove_socket(r, &f->s[2]);
    assert_int_equal(rooms_socket_count(r), N_SOCK - 1);
    assert_null(rooms_find_socket(r, "s2"));
    assert_int_equal(rooms_size(r, "s2"), 0);
    assert_int_equal(f->s[2].n_rooms, 0);
    assert_int_equal(rooms_count(r), 1);
    assert_int_equal(rooms_size(r, "b"), 1);

    rooms_remove_socket(r, &f->s[2]);
    assert_int_equal(rooms_socket_count(r), N_SOCK - 1);
    assert_ptr_equal(rooms_find_socket(r, "s3"), &f->s[3]);

    /* Another socket with the same id is not removed by the stale one. */
    struct rooms_socket twin;
    rooms_socket_init(&twin, "s2");
    assert_int_equal(rooms_add_socket(r, &twin), 0);
    rooms_remove_socket(r, &f->s[2]);
    assert_ptr_equal(rooms_find_socket(r, "s2"), &twin);
    rooms_remove_socket(r, &twin);
    assert_null(rooms_find_socket(r, "s2"));

    /* Re-adding puts it back at the end of the insertion order. */
    assert_int_equal(rooms_add_socket(r, &f->s[2]), 0);
    assert_int_equal(rooms_socket_count(r), N_SOCK);
    const int all[] = {0, 1, 3, 4, 5, 6, 7, 2, -1};
    expect_select(f, NULL, 0, NULL, 0, all);
}

static void test_duplicate_id_rejected(void **state)
{
    struct fixture *f = *state;
    struct rooms_socket dup;
    rooms_socket_init(&dup, "s5");
    assert_int_equal(rooms_add_socket(f->r, &dup), -1);
    assert_int_equal(rooms_add_socket(f->r, &f->s[5]), -1);
    assert_int_equal(rooms_socket_count(f->r), N_SOCK);
    assert_ptr_equal(rooms_find_socket(f->r, "s5"), &f->s[5]);
    assert_null(rooms_find_socket(f->r, "s55"));
    rooms_remove_socket(f->r, &dup);
    assert_ptr_equal(rooms_find_socket(f->r, "s5"), &f->s[5]);
}

static void test_select_all_in_insertion_order(void **state)
{
    struct fixture *f = *state;
    const int all[] = {0, 1, 2, 3, 4, 5, 6, 7, -1};
    rooms_join(f->r, &f->s[4], "x");
    expect_select(f, NULL, 0, NULL, 0, all);
}

static void test_select_union_dedupes(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;
    rooms_join(r, &f->s[5], "a");
    rooms_join(r, &f->s[1], "a");
    rooms_join(r, &f->s[3], "a");
    rooms_join(r, &f->s[3], "b");
    rooms_join(r, &f->s[1], "b");
    rooms_join(r, &f->s[6], "b");

    const char *a[] = {"a"};
    const int want_a[] = {5, 1, 3, -1};
    expect_select(f, a, 1, NULL, 0, want_a);

    const char *ab[] = {"a", "b"};
    const int want_ab[] = {5, 1, 3, 6, -1};
    expect_select(f, ab, 2, NULL, 0, want_ab);

    const char *ba[] = {"b", "a", "b"};
    const int want_ba[] = {3, 1, 6, 5, -1};
    expect_select(f, ba, 3, NULL, 0, want_ba);
}

static void test_select_except_rooms(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;
    rooms_join(r, &f->s[0], "a");
    rooms_join(r, &f->s[1], "a");
    rooms_join(r, &f->s[2], "a");
    rooms_join(r, &f->s[1], "x");
    rooms_join(r, &f->s[7], "x");
    rooms_join(r, &f->s[4], "y");

    const char *a[] = {"a"};
    const char *x[] = {"x"};
    const char *xy[] = {"x", "y"};
    const int a_minus_x[] = {0, 2, -1};
    expect_select(f, a, 1, x, 1, a_minus_x);
    const int all_minus_xy[] = {0, 2, 3, 5, 6, -1};
    expect_select(f, NULL, 0, xy, 2, all_minus_xy);
    const char *unknown[] = {"zzz"};
    const int a_all[] = {0, 1, 2, -1};
    expect_select(f, a, 1, unknown, 1, a_all);
    const int none[] = {-1};
    expect_select(f, a, 1, a, 1, none);
}

static void test_select_except_self(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;
    rooms_join(r, &f->s[1], "chat");
    rooms_join(r, &f->s[2], "chat");
    rooms_join(r, &f->s[6], "chat");

    const char *self[] = {"s2"};
    const char *chat[] = {"chat"};
    const int chat_but_self[] = {1, 6, -1};
    expect_select(f, chat, 1, self, 1, chat_but_self);
    const int all_but_self[] = {0, 1, 3, 4, 5, 6, 7, -1};
    expect_select(f, NULL, 0, self, 1, all_but_self);
    /* The except list applies again on the next selection. */
    expect_select(f, NULL, 0, self, 1, all_but_self);
}

static void test_select_socket_id_room(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;

    const char *one[] = {"s4"};
    const int want_one[] = {4, -1};
    expect_select(f, one, 1, NULL, 0, want_one);

    rooms_join(r, &f->s[1], "g");
    const char *mixed[] = {"s4", "g", "s1", "s4"};
    const int want_mixed[] = {4, 1, -1};
    expect_select(f, mixed, 4, NULL, 0, want_mixed);

    /* Joining a room named like another socket's id: both are targeted. */
    assert_int_equal(rooms_join(r, &f->s[6], "s4"), 1);
    assert_int_equal(rooms_size(r, "s4"), 2);
    assert_true(rooms_has(r, &f->s[6], "s4"));
    const int want_both[] = {4, 6, -1};
    expect_select(f, one, 1, NULL, 0, want_both);
    const char *not_six[] = {"s6"};
    expect_select(f, one, 1, not_six, 1, want_one);
}

static void test_select_unknown_rooms(void **state)
{
    struct fixture *f = *state;
    const char *unknown[] = {"nope", "s99", ""};
    const int none[] = {-1};
    expect_select(f, unknown, 3, NULL, 0, none);
    expect_select(f, unknown, 1, unknown, 3, none);
    const int all[] = {0, 1, 2, 3, 4, 5, 6, 7, -1};
    expect_select(f, NULL, 0, unknown, 3, all);
}

static void test_select_empty_namespace(void **state)
{
    struct rooms *r = rooms_new();
    assert_non_null(r);
    struct visits v = {0};
    const char *a[] = {"a"};
    assert_int_equal(rooms_select(r, NULL, 0, NULL, 0, record, &v), 0);
    assert_int_equal(rooms_select(r, a, 1, a, 1, record, &v), 0);
    assert_int_equal(v.n, 0);
    assert_int_equal(rooms_count(r), 0);
    assert_int_equal(rooms_socket_count(r), 0);
    rooms_free(r);
    rooms_free(NULL);
}

static void count_visit(struct rooms_socket *rs, void *arg)
{
    (*(size_t *)arg)++;
}

#define BIG 10000

static void test_select_big_room(void **state)
{
    struct rooms *r = rooms_new();
    assert_non_null(r);
    char(*ids)[12] = calloc(BIG, sizeof(*ids));
    struct rooms_socket *s = calloc(BIG, sizeof(*s));
    assert_non_null(ids);
    assert_non_null(s);
    for (int i = 0; i < BIG; i++) {
        snprintf(ids[i], sizeof(ids[i]), "id%d", i);
        rooms_socket_init(&s[i], ids[i]);
        assert_int_equal(rooms_add_socket(r, &s[i]), 0);
        assert_int_equal(rooms_join(r, &s[i], "big"), 1);
        if (i % 2)
            assert_int_equal(rooms_join(r, &s[i], "odd"), 1);
    }
    assert_int_equal(rooms_size(r, "big"), BIG);

    const char *big[] = {"big"};
    const char *both[] = {"odd", "big"};
    const char *odd[] = {"odd"};
    const char *self[] = {"id7"};
    size_t seen = 0;
    assert_int_equal(rooms_select(r, big, 1, NULL, 0, count_visit, &seen), BIG);
    assert_int_equal(seen, BIG);
    seen = 0;
    assert_int_equal(rooms_select(r, both, 2, NULL, 0, count_visit, &seen), BIG);
    assert_int_equal(seen, BIG);
    assert_int_equal(rooms_select(r, big, 1, odd, 1, count_visit, &seen), BIG / 2);
    assert_int_equal(rooms_select(r, NULL, 0, self, 1, count_visit, &seen), BIG - 1);
    assert_int_equal(rooms_select(r, both, 2, big, 1, count_visit, &seen), 0);

    for (int i = 0; i < BIG; i++)
        rooms_remove_socket(r, &s[i]);
    assert_int_equal(rooms_count(r), 0);
    assert_int_equal(rooms_socket_count(r), 0);
    rooms_free(r);
    free(s);
    free(ids);
}

static void test_many_selections(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;
    rooms_join(r, &f->s[0], "a");
    rooms_join(r, &f->s[1], "a");
    rooms_join(r, &f->s[1], "b");
    rooms_join(r, &f->s[2], "b");
    const char *ab[] = {"a", "b"};
    const char *b[] = {"b"};
    const int want_ab[] = {0, 1, 2, -1};
    const int want_a_not_b[] = {0, -1};
    for (int i = 0; i < 1000; i++) {
        expect_select(f, ab, 2, NULL, 0, want_ab);
        expect_select(f, ab, 2, b, 1, want_a_not_b);
    }
}

static void test_epoch_wraparound(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;
    rooms_join(r, &f->s[0], "a");
    rooms_join(r, &f->s[1], "a");
    rooms_join(r, &f->s[1], "b");
    rooms_join(r, &f->s[2], "b");
    rooms_join(r, &f->s[3], "c");
    rooms_join(r, &f->s[4], "c");
    const char *ab[] = {"a", "b"};
    const char *abc[] = {"a", "b", "c"};
    const char *b[] = {"b"};
    const int want_ab[] = {0, 1, 2, -1};
    const int want_abc[] = {0, 1, 2, 3, 4, -1};
    const int want_a_not_b[] = {0, -1};

    /* A socket that joined without being added to the index. */
    struct rooms_socket loose;
    rooms_socket_init(&loose, "loose");
    rooms_join(r, &loose, "d");

    /* s3, s6 and loose keep mark 1, the first epoch after a wrap; s4 keeps
     * mark 0. */
    assert_int_equal(rooms_testing_epoch(r), 0);
    const char *first[] = {"a", "s3", "s6", "d"};
    struct visits v = {.f = f};
    assert_int_equal(rooms_select(r, first, 4, NULL, 0, record, &v), 5);
    assert_int_equal(f->s[3].mark, 1);
    assert_int_equal(f->s[4].mark, 0);
    assert_int_equal(f->s[6].mark, 1);
    assert_int_equal(loose.mark, 1);

    rooms_testing_set_epoch(r, UINT32_MAX - 1);
    expect_select(f, ab, 2, NULL, 0, want_ab);
    assert_int_equal(rooms_testing_epoch(r), UINT32_MAX);
    const char *abc6d[] = {"a", "b", "c", "s6", "d"};
    size_t seen = 0;
    assert_int_equal(rooms_select(r, abc6d, 5, NULL, 0, count_visit, &seen), 7);
    assert_int_equal(seen, 7);
    assert_int_equal(rooms_testing_epoch(r), 1);
    rooms_leave_all(r, &loose);
    for (int i = 0; i < 3; i++) {
        expect_select(f, abc, 3, NULL, 0, want_abc);
        expect_select(f, ab, 2, b, 1, want_a_not_b);
    }

    /* A socket removed before a wrap and added back after it. */
    rooms_remove_socket(r, &f->s[5]);
    f->s[5].mark = rooms_testing_epoch(r) + 1;
    assert_int_equal(rooms_add_socket(r, &f->s[5]), 0);
    rooms_join(r, &f->s[5], "c");
    const int want_abc5[] = {0, 1, 2, 3, 4, 5, -1};
    expect_select(f, abc, 3, NULL, 0, want_abc5);
}

struct names {
    char buf[64];
    size_t total;
};

static void name_of_socket(const char *room, void *arg)
{
    struct names *n = arg;
    strcat(n->buf, room);
    strcat(n->buf, ",");
}

static void name_of_room(const char *room, size_t members, void *arg)
{
    struct names *n = arg;
    strcat(n->buf, room);
    strcat(n->buf, ",");
    n->total += members;
}

static void test_each(void **state)
{
    struct fixture *f = *state;
    struct rooms *r = f->r;
    rooms_join(r, &f->s[0], "red");
    rooms_join(r, &f->s[0], "green");
    rooms_join(r, &f->s[0], "blue");
    rooms_join(r, &f->s[1], "green");
    rooms_leave(r, &f->s[0], "green");

    struct names n = {0};
    rooms_each_of_socket(&f->s[0], name_of_socket, &n);
    assert_string_equal(n.buf, "red,blue,");
    memset(&n, 0, sizeof(n));
    rooms_each_of_socket(&f->s[2], name_of_socket, &n);
    assert_string_equal(n.buf, "");

    memset(&n, 0, sizeof(n));
    rooms_each_room(r, name_of_room, &n);
    assert_string_equal(n.buf, "red,green,blue,");
    assert_int_equal(n.total, 3);
}

static void test_free_with_sockets_left(void **state)
{
    /* Contract violation, but it must not leak (checked by ASan). */
    struct rooms *r = rooms_new();
    assert_non_null(r);
    struct rooms_socket a, b;
    rooms_socket_init(&a, "a");
    rooms_socket_init(&b, "b");
    assert_int_equal(rooms_add_socket(r, &a), 0);
    assert_int_equal(rooms_add_socket(r, &b), 0);
    assert_int_equal(rooms_join(r, &a, "x"), 1);
    assert_int_equal(rooms_join(r, &b, "x"), 1);
    assert_int_equal(rooms_join(r, &b, "y"), 1);
    rooms_free(r);
    assert_null(a.memberships);
    assert_int_equal(b.n_rooms, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_join_leave_has_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_id_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_freed_when_emptied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leave_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_id_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_all_in_insertion_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_union_dedupes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_except_rooms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_except_self, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_socket_id_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_unknown_rooms, setup, teardown),
        cmocka_unit_test(test_select_empty_namespace),
        cmocka_unit_test(test_select_big_room),
        cmocka_unit_test_setup_teardown(test_many_selections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch_wraparound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each, setup, teardown),
        cmocka_unit_test(test_free_with_sockets_left),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
