#include "bevwrite.h"

#include <errno.h>

#include <event2/buffer.h>
#include <event2/event.h>

int bev_write_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0)
        return 0;
    /* The bufferevent freezes the front of its output so that nobody else
     * drains it; this write stands in for its own. */
    evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, bufferevent_getfd(bev));
    int err = errno;
    evbuffer_freeze(out, 1);
    if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
        errno = err;
        return -1;
    }
    if (evbuffer_get_length(out) == 0)
        return 0;
    return bufferevent_enable(bev, EV_WRITE) < 0 ? -1 : 1;
}
