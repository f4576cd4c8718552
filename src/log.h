/* log: leveled logging to a stream, plain text or JSON lines.
 *
 * A struct sio_logger belongs to a server; nothing here is process-wide. The
 * LOG macro tests the level before evaluating its arguments. Lines about a
 * connection carry its id; bytes from a peer go through log_sanitize() first.
 */
#ifndef SOCKEYE_LOG_H
#define SOCKEYE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };

struct logger {
    enum log_level level;
    bool json;
    FILE *out; /* stderr unless set */
};

void logger_init(struct logger *lg, enum log_level level, bool json, FILE *out);

/* Parses "debug", "info", "warn", "error", "off". Returns -1 if unknown. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level level);

/* conn_id 0: not about a connection. */
void log_write(const struct logger *lg, enum log_level level, unsigned long long conn_id,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define LOG(lg, lvl, id, ...)                                                                      \
    do {                                                                                           \
        if ((lg) && (lvl) >= (lg)->level)                                                          \
            log_write((lg), (lvl), (id), __VA_ARGS__);                                             \
    } while (0)

/* Writes a printable, truncated copy of peer bytes into out (at most
 * outlen - 1 chars + NUL): non-printable bytes become \xNN, and "..." marks a
 * truncation. Returns out. */
char *log_sanitize(const void *data, size_t len, char *out, size_t outlen);

#endif
