/* recovery: the store behind Socket.IO connection state recovery
 * (protocol.md §J) for one server.
 *
 * Two things are kept, both for at most max_disconnection_ms:
 *  - the packets sent with an offset (non-volatile events without ack), each
 *    with its targeting (rooms / except rooms) and the time it was recorded;
 *  - the sessions of sockets that disconnected for a recoverable reason:
 *    namespace, socket id, private id (pid), rooms, data, time.
 * A reconnecting client presents (pid, offset); recovery_restore() hands back
 * the saved session and the packets after that offset that its rooms would
 * have received, or nothing when the session expired or the offset is no
 * longer buffered.
 *
 * Time is passed in by the caller (ms, any monotonic origin), so the module
 * has no clock and is unit-testable. Single-threaded.
 */
#ifndef SOCKEYE_RECOVERY_H
#define SOCKEYE_RECOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "outpacket.h"

struct recovery;

struct recovery_config {
    uint64_t max_disconnection_ms; /* > 0 */
    size_t max_packets;            /* buffered packets kept at most (oldest dropped first);
                                      0 = 100000 */
};

/* NULL on allocation failure. */
struct recovery *recovery_new(const struct recovery_config *cfg);
/* Frees everything (saved sessions, buffered packets: their outpackets are
 * unreferenced). NULL is a no-op. */
void recovery_free(struct recovery *r);

/* A new offset string for a packet about to be recorded: unique within this
 * store, at most RECOVERY_OFFSET_MAX chars + NUL, URL/JSON-safe. */
#define RECOVERY_OFFSET_MAX 24
void recovery_next_offset(struct recovery *r, char out[RECOVERY_OFFSET_MAX + 1]);

/* Records a packet sent in namespace nsp with that offset (copied) and
 * targeting (room names copied; rooms empty = whole namespace). The packet
 * is the encoded EVENT to replay: `main` (and `att` binary attachments) are
 * referenced (outpacket_ref), not copied. Returns 0 or -1 (allocation). */
int recovery_record(struct recovery *r, uint64_t now_ms, const char *nsp, const char *offset,
                    const char *const *rooms, size_t n_rooms, const char *const *except,
                    size_t n_except, struct outpacket *main, struct outpacket *const *att,
                    size_t n_att);

/* Saves a disconnected socket's session. rooms: the rooms it was in
 * (including its own id); data: copied (may be NULL). A later save with the
 * same pid replaces the earlier one. Returns 0 or -1. */
int recovery_save(struct recovery *r, uint64_t now_ms, const char *nsp, const char *sid,
                  const char *pid, const char *const *rooms, size_t n_rooms, const cJSON *data);

/* A restored session. */
struct recovery_session {
    char *nsp, *sid, *pid;
    char **rooms;
    size_t n_rooms;
    cJSON *data;                /* may be NULL */
    struct outpacket **packets; /* missed packets in order; each entry one
                                   outpacket (main, then its attachments) */
    size_t n_packets;
};

/* Looks up pid's session in namespace nsp: when it exists, has not expired
 * and `offset` is still buffered, removes it from the store, fills *out
 * (caller owns it: recovery_session_cleanup) with the packets recorded after
 * `offset` whose targeting includes the session's rooms (rooms empty or any
 * room shared, and no except room shared), and returns 1. Returns 0 when it
 * cannot be restored (the session, if any, is dropped), -1 on allocation
 * failure. */
int recovery_restore(struct recovery *r, uint64_t now_ms, const char *nsp, const char *pid,
                     const char *offset, struct recovery_session *out);

void recovery_session_cleanup(struct recovery_session *s);

/* Drops expired sessions and packets older than max_disconnection_ms. Call
 * periodically (e.g. every max_disconnection_ms / 2). */
void recovery_expire(struct recovery *r, uint64_t now_ms);

/* Counts, for tests and stats. */
size_t recovery_sessions(const struct recovery *r);
size_t recovery_packets(const struct recovery *r);

#endif
