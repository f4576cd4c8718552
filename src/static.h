/* static: serving files from a directory over src/http.
 *
 * Two uses in the daemon: the app's files from the configured static root
 * (any regular file under it), and the socket.io client bundle from the
 * socket.io-client package's dist folder (only the names on an allow-list).
 *
 * Path rules (a request is matched against them in this order):
 *  1. The path is percent-decoded. A malformed escape, a NUL (%00), a
 *     backslash (raw or %5C), or any segment beginning with '.' ("." and
 *     "..", raw or encoded, and hidden files such as .git or .env) is
 *     REFUSED with 403. Empty segments ("a//b") are ignored.
 *  2. With an allow-list, the decoded path must be exactly one of its names
 *     (no directories); anything else is "not ours" (returns false).
 *  3. An empty path or one ending in '/' means that directory's index.html.
 *  4. The file's realpath must lie under the root's realpath (both resolved
 *     on every request, so a root that is a symlink switched at deploy time
 *     is followed). A symlink inside the root that resolves inside it is
 *     served; one that escapes it is REFUSED with 403. Non-regular files
 *     (FIFOs, devices, sockets) and files that cannot be opened for a reason
 *     other than absence are refused with 403 too. The resolved name is
 *     opened with O_NOFOLLOW; only someone who can already write inside the
 *     root could swap a directory for a symlink between check and open.
 *  5. A directory requested without the trailing slash is redirected (301,
 *     relative Location "./name/" plus the query) so that the index's relative links work.
 *  6. Methods other than GET and HEAD get 405 with "Allow: GET, HEAD".
 *  7. Files larger than STATIC_MAX_FILE get 500 (a configuration problem,
 *     not the client's).
 * Refusals are always 403 (never 404), so that a refusal can be told apart
 * from a missing file in tests and logs; a refusal reveals nothing about
 * files outside the root, since the check does not depend on them.
 *
 * Responses: 200 with Content-Type by extension (text types carry
 * "charset=utf-8"; unknown: application/octet-stream),
 * X-Content-Type-Options: nosniff, a weak ETag from inode, size and mtime,
 * Last-Modified, and Cache-Control (see STATIC_CACHE_APP). Text-like types
 * are sent with HTTP_RESP_COMPRESS (gzip/deflate by the http layer when the client
 * accepts it and the file is at least http_config.compress_min bytes).
 * If-None-Match (weak comparison, "*" too) or, when it is absent,
 * If-Modified-Since (IMF-fixdate only; other date forms are ignored) answer
 * 304 without a body. HEAD gets the headers of the uncompressed GET.
 *
 * The file is read into memory for each request (no mmap: a file truncated
 * while mapped would kill the process with SIGBUS), on the event loop
 * thread; static files are expected to be small.
 *
 * Thread rules: an object is used on one thread (the http server's).
 */
#ifndef SOCKEYE_STATIC_H
#define SOCKEYE_STATIC_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"

/* Larger files are not served (500). */
#define STATIC_MAX_FILE ((size_t)64 * 1024 * 1024)

/* Cache-Control of the two uses: app files (no allow-list) are revalidated
 * on every use (the ETag makes that a 304); a tree served through an
 * allow-list (the bundle) changes only when it is reinstalled, so caches may
 * keep it for an hour without asking. */
#define STATIC_CACHE_APP    "no-cache"
#define STATIC_CACHE_BUNDLE "public, max-age=3600"

/* The file names of the socket.io client bundle, for the allow-list. */
#define STATIC_BUNDLE_FILES                                                                        \
    "socket.io.js", "socket.io.js.map", "socket.io.min.js", "socket.io.min.js.map",                \
        "socket.io.esm.min.js", "socket.io.esm.min.js.map"

struct static_files;

/* root_dir: the directory to serve (must exist and be a directory now; it is
 * resolved again on every request). allow: n_allow plain file names (no '/',
 * not beginning with '.'), or NULL for any file under the root; the list
 * also picks Cache-Control: STATIC_CACHE_BUNDLE with one, STATIC_CACHE_APP
 * without. All strings are copied. Returns NULL with a one-line reason in err
 * ("/srv/app: No such file or directory") when the root is unusable, an
 * allow-list name is invalid, or allocation fails. */
struct static_files *static_files_new(const char *root_dir, const char *const *allow,
                                      size_t n_allow, char *err, size_t errlen);

/* NULL is a no-op. */
void static_files_free(struct static_files *sf);

/* Serves path (the URL path after the mount prefix, not percent-decoded;
 * leading slashes are ignored; need not be NUL-terminated) for req.
 * Returns true when req was answered (200, 301, 304, 403, 405, 500; req is
 * freed then and must not be touched), false when there is no such file
 * (or, with an allow-list, the name is not on it): req is untouched and the
 * caller answers it (404) or passes it on. Call from on_request. */
bool static_files_serve(struct static_files *sf, struct http_request *req, const char *path,
                        size_t len);

/* The Content-Type for a file name by its extension (case-insensitive), and
 * whether that type is worth compressing (compressible may be NULL). Returns
 * a static string. */
const char *static_content_type(const char *name, bool *compressible);

#endif
