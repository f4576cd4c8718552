#include "log.h"

#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void logger_init(struct logger *lg, enum log_level level, bool json, FILE *out)
{
    lg->level = level;
    lg->json = json;
    lg->out = out ? out : stderr;
}

int log_level_parse(const char *name)
{
    for (int i = 0; i <= LOG_OFF; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

const char *log_level_name(enum log_level level)
{
    return level <= LOG_OFF ? level_names[level] : "?";
}

/* JSON string escaping for the message text of JSON lines. */
static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void log_write(const struct logger *lg, enum log_level level, unsigned long long conn_id,
               const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));

    FILE *f = lg->out;
    flockfile(f);
    if (lg->json) {
        fprintf(f, "{\"time\":\"%s\",\"level\":\"%s\"", ts, log_level_name(level));
        if (conn_id)
            fprintf(f, ",\"conn\":%llu", conn_id);
        fputs(",\"msg\":", f);
        put_json_string(f, msg);
        fputs("}\n", f);
    } else if (conn_id) {
        fprintf(f, "%s %-5s [%llu] %s\n", ts, log_level_name(level), conn_id, msg);
    } else {
        fprintf(f, "%s %-5s %s\n", ts, log_level_name(level), msg);
    }
    funlockfile(f);
    fflush(f);
}

char *log_sanitize(const void *data, size_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = data;
    size_t o = 0;
    if (outlen == 0)
        return out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        size_t need = (c >= 0x20 && c < 0x7f && c != '\\') ? 1 : 4;
        if (o + need + 3 >= outlen) {
            if (o + 3 < outlen)
                memcpy(out + o, "...", 3), o += 3;
            break;
        }
        if (need == 1) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}
