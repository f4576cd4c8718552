/* bevwrite: writing a socket bufferevent's output now, in the caller's loop
 * pass, instead of arming its write event. Used by the HTTP connections,
 * which keep EV_WRITE disabled while the kernel takes everything (one writev
 * per pass, no epoll_ctl), see http.c. */
#ifndef SOCKEYE_BEVWRITE_H
#define SOCKEYE_BEVWRITE_H

#include <event2/bufferevent.h>

/* Writes bev's queued output to its socket. Returns 0 when all of it went
 * to the kernel, 1 when the rest waits for the write event (enabled by this
 * call), -1 on a write error (errno set) or when the write event could not be
 * enabled. Only for socket bufferevents with EV_WRITE disabled. */
int bev_write_now(struct bufferevent *bev);

#endif
