/* Unit tests for src/recovery. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recovery.h"

#define MAX_MS 1000

static struct recovery *store(size_t max_packets)
{
    struct recovery_config cfg = {.max_disconnection_ms = MAX_MS, .max_packets = max_packets};
    struct recovery *r = recovery_new(&cfg);
    assert_non_null(r);
    return r;
}

static struct outpacket *text_packet(const char *s)
{
    struct outpacket *p = outpacket_new(EIO_MESSAGE, false, s, strlen(s));
    assert_non_null(p);
    return p;
}

static bool packet_is(const struct outpacket *p, const char *s)
{
    return p->data_len == strlen(s) && memcmp(outpacket_data(p), s, p->data_len) == 0;
}

/* Records a text packet with a fresh offset (written to offset) and drops
 * the caller's reference, so the store holds the only one. */
static void record(struct recovery *r, uint64_t now, const char *nsp, const char *body,
                   const char *const *rooms, size_t n_rooms, const char *const *except,
                   size_t n_except, char offset[RECOVERY_OFFSET_MAX + 1])
{
    struct outpacket *p = text_packet(body);
    recovery_next_offset(r, offset);
    assert_int_equal(
        recovery_record(r, now, nsp, offset, rooms, n_rooms, except, n_except, p, NULL, 0), 0);
    assert_int_equal(p->refs, 2);
    outpacket_unref(p);
}

static const char *const sock_rooms[] = {"SID1", "a"};

static void save(struct recovery *r, uint64_t now, const char *nsp, const char *pid)
{
    assert_int_equal(recovery_save(r, now, nsp, "SID1", pid, sock_rooms, 2, NULL), 0);
}

static void test_restore_happy_path(void **state)
{
    struct recovery *r = store(0);
    static const char *const a[] = {"a"}, *const b[] = {"b"}, *const ba[] = {"b", "a"};
    static const char *const sid[] = {"SID1"};
    char off0[RECOVERY_OFFSET_MAX + 1], off[RECOVERY_OFFSET_MAX + 1];
    record(r, 10, "/", "before", NULL, 0, NULL, 0, off0);
    record(r, 11, "/", "all", NULL, 0, NULL, 0, off);
    record(r, 12, "/", "room a", a, 1, NULL, 0, off);
    record(r, 13, "/", "room b", b, 1, NULL, 0, off);
    record(r, 14, "/", "all except a", NULL, 0, a, 1, off);
    record(r, 15, "/", "b or a", ba, 2, NULL, 0, off);
    record(r, 16, "/other", "other nsp", NULL, 0, NULL, 0, off);
    record(r, 17, "/", "all except self", NULL, 0, sid, 1, off);
    record(r, 18, "/", "all except b", NULL, 0, b, 1, off);
    record(r, 19, "/", "a except b", a, 1, b, 1, off);

    cJSON *data = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "user", "ann");
    assert_int_equal(recovery_save(r, 20, "/", "SID1", "PID1", sock_rooms, 2, data), 0);
    cJSON_AddStringToObject(data, "later", "not saved");
    assert_int_equal(recovery_sessions(r), 1);

    struct recovery_session s;
    assert_int_equal(recovery_restore(r, 30, "/", "PID1", off0, &s), 1);
    assert_string_equal(s.nsp, "/");
    assert_string_equal(s.sid, "SID1");
    assert_string_equal(s.pid, "PID1");
    assert_int_equal(s.n_rooms, 2);
    assert_string_equal(s.rooms[0], "SID1");
    assert_string_equal(s.rooms[1], "a");
    assert_non_null(s.data);
    assert_ptr_not_equal(s.data, data);
    assert_string_equal(cJSON_GetObjectItem(s.data, "user")->valuestring, "ann");
    assert_null(cJSON_GetObjectItem(s.data, "later"));
    static const char *const want[] = {"all", "room a", "b or a", "all except b", "a except b"};
    assert_int_equal(s.n_packets, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_true(packet_is(s.packets[i], want[i]));
        assert_int_equal(s.packets[i]->refs, 2);
    }
    assert_int_equal(recovery_sessions(r), 0);
    assert_int_equal(recovery_packets(r), 10);
    recovery_session_cleanup(&s);
    assert_null(s.packets);
    assert_int_equal(s.n_packets, 0);
    cJSON_Delete(data);
    recovery_free(r);
}

static void test_restore_attachments_and_no_data(void **state)
{
    struct recovery *r = store(0);
    char off0[RECOVERY_OFFSET_MAX + 1], off1[RECOVERY_OFFSET_MAX + 1];
    record(r, 1, "/", "first", NULL, 0, NULL, 0, off0);
    struct outpacket *main = text_packet("51-[\"bin\",{\"_placeholder\":true,\"num\":0}]");
    struct outpacket *att[2] = {outpacket_new(EIO_MESSAGE, true, "\x01\x02", 2),
                                outpacket_new(EIO_MESSAGE, true, "\x03", 1)};
    assert_non_null(att[0]);
    assert_non_null(att[1]);
    recovery_next_offset(r, off1);
    assert_int_equal(recovery_record(r, 2, "/", off1, NULL, 0, NULL, 0, main, att, 2), 0);
    record(r, 3, "/", "last", NULL, 0, NULL, 0, off1);
    assert_int_equal(recovery_save(r, 4, "/", "S", "P", NULL, 0, NULL), 0);

    struct recovery_session s;
    assert_int_equal(recovery_restore(r, 5, "/", "P", off0, &s), 1);
    assert_null(s.data);
    assert_int_equal(s.n_rooms, 0);
    assert_int_equal(s.n_packets, 4);
    assert_ptr_equal(s.packets[0], main);
    assert_ptr_equal(s.packets[1], att[0]);
    assert_ptr_equal(s.packets[2], att[1]);
    assert_true(packet_is(s.packets[3], "last"));
    assert_int_equal(main->refs, 3);
    assert_int_equal(att[1]->refs, 3);
    recovery_session_cleanup(&s);
    assert_int_equal(main->refs, 2);
    recovery_free(r);
    assert_int_equal(main->refs, 1);
    assert_int_equal(att[0]->refs, 1);
    assert_int_equal(att[1]->refs, 1);
    outpacket_unref(main);
    outpacket_unref(att[0]);
    outpacket_unref(att[1]);
}

static void test_restore_from_last_offset_is_empty(void **state)
{
    struct recovery *r = store(0);
    char off[RECOVERY_OFFSET_MAX + 1];
    record(r, 1, "/", "only", NULL, 0, NULL, 0, off);
    save(r, 2, "/", "P");
    struct recovery_session s;
    assert_int_equal(recovery_restore(r, 3, "/", "P", off, &s), 1);
    assert_int_equal(s.n_packets, 0);
    assert_string_equal(s.sid, "SID1");
    recovery_session_cleanup(&s);
    recovery_free(r);
}

static void test_offset_not_buffered(void **state)
{
    struct recovery *r = store(0);
    char off[RECOVERY_OFFSET_MAX + 1];
    record(r, 1, "/", "x", NULL, 0, NULL, 0, off);
    save(r, 2, "/", "P");
    struct recovery_session s;
    assert_int_equal(recovery_restore(r, 3, "/", "P", "nope", &s), 0);
    assert_null(s.packets);
    assert_null(s.sid);
    /* The session is dropped: the right offset no longer helps. */
    assert_int_equal(recovery_sessions(r), 0);
    assert_int_equal(recovery_restore(r, 3, "/", "P", off, &s), 0);
    recovery_free(r);
}

static void test_offset_from_other_store(void **state)
{
    struct recovery *r1 = store(0), *r2 = store(0);
    char off1[RECOVERY_OFFSET_MAX + 1], off2[RECOVERY_OFFSET_MAX + 1];
    record(r1, 1, "/", "x", NULL, 0, NULL, 0, off1);
    recovery_next_offset(r2, off2);
    /* Both counters are at 0: only the random prefix tells them apart. */
    assert_string_not_equal(off1, off2);
    record(r2, 1, "/", "y", NULL, 0, NULL, 0, off2);
    save(r2, 2, "/", "P");
    struct recovery_session s;
    assert_int_equal(recovery_restore(r2, 3, "/", "P", off1, &s), 0);
    recovery_free(r1);
    recovery_free(r2);
}

static void test_offset_of_other_nsp(void **state)
{
    struct recovery *r = store(0);
    char off[RECOVERY_OFFSET_MAX + 1], tmp[RECOVERY_OFFSET_MAX + 1];
    record(r, 1, "/admin", "x", NULL, 0, NULL, 0, off);
    record(r, 2, "/", "y", NULL, 0, NULL, 0, tmp);
    save(r, 3, "/", "P");
    struct recovery_session s;
    assert_int_equal(recovery_restore(r, 4, "/", "P", off, &s), 0);
    assert_int_equal(recovery_sessions(r), 0);
    recovery_free(r);
}

static void test_session_expiry_boundary(void **state)
{
    struct recovery *r = store(0);
    char off[RECOVERY_OFFSET_MAX + 1];
    record(r, 100, "/", "x", NULL, 0, NULL, 0, off);
    save(r, 100, "/", "P1");
    save(r, 100, "/", "P2");
    struct recovery_session s;
    /* Exactly max_disconnection_ms later still counts. */
    assert_int_equal(recovery_restore(r, 100 + MAX_MS, "/", "P1", off, &s), 1);
    recovery_session_cleanup(&s);
    assert_int_equal(recovery_restore(r, 100 + MAX_MS + 1, "/", "P2", off, &s), 0);
    assert_int_equal(recovery_sessions(r), 0);
    recovery_free(r);
}

static void test_restore_removes_session(void **state)
{
    struct recovery *r = store(0);
    char off[RECOVERY_OFFSET_MAX + 1];
    record(r, 1, "/", "x", NULL, 0, NULL, 0, off);
    save(r, 2, "/", "P");
    struct recovery_session s;
    assert_int_equal(recovery_restore(r, 3, "/", "P", off, &s), 1);
    recovery_session_cleanup(&s);
    assert_int_equal(recovery_restore(r, 3, "/", "P", off, &s), 0);
    recovery_free(r);
}

static void test_unknown_pid(void **state)
{
    struct recovery *r = store(0);
    char off[RECOVERY_OFFSET_MAX + 1];
    record(r, 1, "/", "x", NULL, 0, NULL, 0, off);
    save(r, 2, "/", "P");
    struct recovery_session s;
    assert_int_equal(recovery_restore(r, 3, "/", "Q", off, &s), 0);
    assert_null(s.pid);
    assert_int_equal(recovery_sessions(r), 1);
    assert_int_equal(recovery_restore(r, 3, "/", "P", off, &s), 1);
    recovery_session_cleanup(&s);
    recovery_free(r);
}

static void test_nsp_mismatch(void **state)
{
    struct recovery *r = store(0);
    char off[RECOVERY_OFFSET_MAX + 1];
    record(r, 1, "/", "x", NULL, 0, NULL, 0, off);
    save(r, 2, "/", "P");
    struct recovery_session s;
    assert_int_equal(recovery_restore(r, 3, "/admin", "P", off, &s), 0);
    assert_int_equal(recovery_sessions(r), 0);
    recovery_free(r);
}

static void test_save_replaces_same_pid(void **state)
{
    struct recovery *r = store(0);
    char off[RECOVERY_OFFSET_MAX + 1];
    static const char *const rooms[] = {"SID2", "b"};
    record(r, 1, "/", "x", NULL, 0, NULL, 0, off);
    save(r, 2, "/", "P");
    assert_int_equal(recovery_save(r, 3, "/", "SID2", "P", rooms, 2, NULL), 0);
    assert_int_equal(recovery_sessions(r), 1);
    struct recovery_session s;
    assert_int_equal(recovery_restore(r, 4, "/", "P", off, &s), 1);
    assert_string_equal(s.sid, "SID2");
    assert_string_equal(s.rooms[1], "b");
    recovery_session_cleanup(&s);
    assert_int_equal(recovery_sessions(r), 0);
    recovery_free(r);
}

static void test_max_packets_eviction(void **state)
{
    struct recovery *r = store(3);
    char off[5][RECOVERY_OFFSET_MAX + 1];
    struct outpacket *first = text_packet("p0");
    recovery_next_offset(r, off[0]);
    assert_int_equal(recovery_record(r, 1, "/", off[0], NULL, 0, NULL, 0, first, NULL, 0), 0);
    static const char *const bodies[] = {"p0", "p1", "p2", "p3", "p4"};
    for (size_t i = 1; i < 5; i++)
        record(r, 1 + i, "/", bodies[i], NULL, 0, NULL, 0, off[i]);
    assert_int_equal(recovery_packets(r), 3);
    assert_int_equal(first->refs, 1);

    save(r, 10, "/", "P0");
    save(r, 10, "/", "P1");
    save(r, 10, "/", "P2");
    struct recovery_session s;
    assert_int_equal(recovery_restore(r, 11, "/", "P0", off[0], &s), 0);
    assert_int_equal(recovery_restore(r, 11, "/", "P1", off[1], &s), 0);
    assert_int_equal(recovery_restore(r, 11, "/", "P2", off[2], &s), 1);
    assert_int_equal(s.n_packets, 2);
    assert_true(packet_is(s.packets[0], "p3"));
    assert_true(packet_is(s.packets[1], "p4"));
    recovery_session_cleanup(&s);
    outpacket_unref(first);
    recovery_free(r);
}

static void test_default_max_packets(void **state)
{
    struct recovery *r = store(0);
    char off[RECOVERY_OFFSET_MAX + 1];
    struct outpacket *p = text_packet("x");
    for (size_t i = 0; i < 100001; i++) {
        recovery_next_offset(r, off);
        assert_int_equal(recovery_record(r, 1, "/", off, NULL, 0, NULL, 0, p, NULL, 0), 0);
    }
    assert_int_equal(recovery_packets(r), 100000);
    assert_int_equal(p->refs, 100001);
    recovery_free(r);
    assert_int_equal(p->refs, 1);
    outpacket_unref(p);
}

static void test_expire_counts(void **state)
{
    struct recovery *r = store(0);
    char off[RECOVERY_OFFSET_MAX + 1];
    struct outpacket *p = text_packet("old");
    recovery_next_offset(r, off);
    assert_int_equal(recovery_record(r, 100, "/", off, NULL, 0, NULL, 0, p, NULL, 0), 0);
    record(r, 600, "/", "newer", NULL, 0, NULL, 0, off);
    save(r, 200, "/", "P1");
    save(r, 700, "/", "P2");
    assert_int_equal(recovery_packets(r), 2);
    assert_int_equal(recovery_sessions(r), 2);

    recovery_expire(r, 100 + MAX_MS);
    assert_int_equal(recovery_packets(r), 2);
    assert_int_equal(recovery_sessions(r), 2);
    recovery_expire(r, 101 + MAX_MS);
    assert_int_equal(recovery_packets(r), 1);
    assert_int_equal(p->refs, 1);
    assert_int_equal(recovery_sessions(r), 2);
    recovery_expire(r, 201 + MAX_MS);
    assert_int_equal(recovery_sessions(r), 1);
    recovery_expire(r, 701 + MAX_MS);
    assert_int_equal(recovery_packets(r), 0);
    assert_int_equal(recovery_sessions(r), 0);
    /* A clock that goes backwards expires nothing. */
    save(r, 5000, "/", "P3");
    recovery_expire(r, 10);
    assert_int_equal(recovery_sessions(r), 1);
    outpacket_unref(p);
    recovery_free(r);
}

static void test_record_and_restore_drop_expired_packets(void **state)
{
    struct recovery *r = store(0);
    char off[RECOVERY_OFFSET_MAX + 1], tmp[RECOVERY_OFFSET_MAX + 1];
    record(r, 100, "/", "old", NULL, 0, NULL, 0, off);
    record(r, 100 + MAX_MS + 1, "/", "new", NULL, 0, NULL, 0, tmp);
    assert_int_equal(recovery_packets(r), 1);
    save(r, 100 + MAX_MS + 2, "/", "P");
    struct recovery_session s;
    assert_int_equal(recovery_restore(r, 100 + MAX_MS + 3, "/", "P", off, &s), 0);

    record(r, 5000, "/", "x", NULL, 0, NULL, 0, off);
    save(r, 5000 + MAX_MS, "/", "P");
    /* The session is young, but the packet at its offset is too old. */
    assert_int_equal(recovery_restore(r, 5001 + MAX_MS, "/", "P", off, &s), 0);
    assert_int_equal(recovery_packets(r), 0);
    recovery_free(r);
}

static void test_free_releases_everything(void **state)
{
    struct recovery *r = store(0);
    static const char *const rooms[] = {"a", "b"};
    char off[RECOVERY_OFFSET_MAX + 1];
    struct outpacket *p = text_packet("x");
    recovery_next_offset(r, off);
    assert_int_equal(recovery_record(r, 1, "/", off, rooms, 2, rooms, 1, p, &p, 1), 0);
    assert_int_equal(p->refs, 3);
    cJSON *data = cJSON_CreateString("d");
    assert_int_equal(recovery_save(r, 1, "/", "S", "P", rooms, 2, data), 0);
    cJSON_Delete(data);
    recovery_free(r);
    assert_int_equal(p->refs, 1);
    outpacket_unref(p);
    recovery_free(NULL);
    recovery_session_cleanup(NULL);
}

static int cmp_offsets(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_offsets_unique(void **state)
{
    enum { N = 100000 };
    struct recovery *r = store(0);
    char(*offs)[RECOVERY_OFFSET_MAX + 1] = calloc(N, sizeof(*offs));
    assert_non_null(offs);
    for (size_t i = 0; i < N; i++) {
        recovery_next_offset(r, offs[i]);
        size_t len = strlen(offs[i]);
        assert_in_range(len, 1, RECOVERY_OFFSET_MAX);
        assert_int_equal(strspn(offs[i], "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "abcdefghijklmnopqrstuvwxyz-_"),
                         len);
    }
    qsort(offs, N, sizeof(*offs), cmp_offsets);
    for (size_t i = 1; i < N; i++)
        assert_string_not_equal(offs[i - 1], offs[i]);
    free(offs);
    recovery_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restore_happy_path),
        cmocka_unit_test(test_restore_attachments_and_no_data),
        cmocka_unit_test(test_restore_from_last_offset_is_empty),
        cmocka_unit_test(test_offset_not_buffered),
        cmocka_unit_test(test_offset_from_other_store),
        cmocka_unit_test(test_offset_of_other_nsp),
        cmocka_unit_test(test_session_expiry_boundary),
        cmocka_unit_test(test_restore_removes_session),
        cmocka_unit_test(test_unknown_pid),
        cmocka_unit_test(test_nsp_mismatch),
        cmocka_unit_test(test_save_replaces_same_pid),
        cmocka_unit_test(test_max_packets_eviction),
        cmocka_unit_test(test_default_max_packets),
        cmocka_unit_test(test_expire_counts),
        cmocka_unit_test(test_record_and_restore_drop_expired_packets),
        cmocka_unit_test(test_free_releases_everything),
        cmocka_unit_test(test_offsets_unique),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
