/* The native socket lane of the HTTP proxy: client and upstream sockets in C.
 *
 * Why. On this machine a Python proxy on uvloop spends ~2.5 us a request in
 * event-loop callbacks, transports and httptools' per-header callbacks before
 * any of portway's own logic runs (benchmarks/http.sh, the `bare` target). This
 * module owns the sockets instead, and calls Python only where portway decides
 * something: once per request head, once per response head, once at the end.
 *
 * Contract. `Lane` is one per event loop: an epoll set whose fd the loop
 * watches (`loop.add_reader(lane.fileno(), lane.run)`). `Lane.serve(fd,
 * factory, limits)` accepts on a listening socket; each connection gets a
 * `Transport` (the asyncio transport subset `http.proxy.HttpProxy` uses) and
 * the protocol `factory()` returns, driven like asyncio drives one:
 * connection_made, data_received, eof_received, pause/resume_writing,
 * connection_lost (always from `Lane.run`, never inside a transport call).
 *
 * Two fast paths, each taken only where its result is the same as the
 * Python path's:
 *  - a request head of the plain shape (HTTP/1.1, origin-form target, no
 *    body, no field the proxy reads besides Host, Connection and Origin: see
 *    `parse_head`) on a connection that has never gone through
 *    data_received is parsed here and given as `protocol.lane_request(...)`.
 *    Anything else, and everything after it on that connection, goes to
 *    data_received, whose parser refuses what is malformed;
 *  - `Transport.forward(pool, address, port, data, head_only)` runs one try
 *    of a bodiless request on a pooled upstream socket owned here: the
 *    response head is parsed here and given as `protocol.lane_head(status,
 *    lines, has_length)` (which returns the client's head and framing, or
 *    None after deciding to retry), the body is relayed and re-framed here,
 *    and `protocol.lane_complete(nbytes)` or `protocol.lane_failed(cause)`
 *    ends the try.
 * Flow control: client output above HIGH_WATER pauses the upstream's reading
 * and calls pause_writing; below LOW_WATER both resume. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define HIGH_WATER (64 * 1024)
#define LOW_WATER (16 * 1024)
#define HOLD_LIMIT (64 * 1024)
#define MAX_RESPONSE_HEAD (64 * 1024)

enum { K_LISTENER = 1, K_CLIENT, K_UPSTREAM, K_WAKE, K_TIMER };
enum { F_CONNECT = 0, F_RESET = 1, F_PROTOCOL = 2 };
enum { U_CONNECTING, U_SENDING, U_HEAD, U_BODY, U_IDLE };
enum { M_NONE, M_LENGTH, M_CHUNKED, M_CLOSE };
enum { C_SIZE, C_BWS, C_EXT, C_SIZE_LF, C_DATA, C_DATA_CR, C_DATA_LF, C_TRAILER, C_TRAILER_LF, C_DONE };

typedef struct { int kind; int fd; } Handle;

typedef struct Lane Lane;
typedef struct Transport Transport;

typedef struct Buf { char *p; size_t len, off, cap; } Buf;

typedef struct Upstream {
    Handle h;
    Lane *lane;
    long pool;
    Transport *client;      /* bound client, NULL while idle */
    struct Upstream *next, *prev; /* the pool's idle list */
    double idle_since;
    int state;
    Buf out;                 /* request bytes not yet sent */
    Buf in;                  /* response head so far */
    int head_only;
    int mode;
    long long remaining;
    int cstate;
    int reusable;            /* the upstream keeps the connection open */
    int client_chunked;
    long long bytes_out;
    unsigned events;
    int dead;                /* closed: freed at the end of Lane.run */
    int digits;              /* chunk-size digits read */
    unsigned epoch;          /* bumped when a try ends on this socket */
    struct Upstream *grave;
} Upstream;

typedef struct Pool { Upstream *head, *tail; long total, nidle; } Pool;

typedef struct Listener {
    Handle h;
    PyObject *factory;
    PyObject *sock;          /* keeps the socket object (and its fd) alive */
    long max_line, max_headers, max_header_bytes;
    int paused;
    struct Listener *next;
} Listener;

struct Lane {
    PyObject_HEAD
    int ep;
    Handle wake;
    Handle timer;            /* re-arms listeners paused by EMFILE and kin */
    Listener *listeners;
    Pool *pools;
    long npools;
    PyObject *on_closed;     /* on_closed(pool): an upstream socket of `pool` closed */
    PyObject *deferred;      /* transports with work for the end of run() */
    Upstream *graveyard;     /* closed upstreams, freed at the end of run() */
    unsigned long long fast_requests, slow_connections, upstream_connects, upstream_reused,
        accepted;
    long max_idle;           /* idle sockets kept per pool */
};

struct Transport {
    PyObject_HEAD
    Handle h;
    Lane *lane;
    Listener *listener;
    PyObject *protocol;
    PyObject *peer, *local;
    Buf in;                  /* held client bytes (fast mode) */
    Buf out;                 /* client output not yet written */
    Upstream *up;
    unsigned events;
    int reading;             /* the protocol has not paused reading */
    int fast;                /* the connection may still take the fast head path */
    int busy;                /* a fast request is in flight */
    int closing, closed, lost, eof, eof_told, shut_wr, write_paused, pending_parse, deferred;
    int forwarding;          /* inside forward(): failures wait for run() */
    size_t scanned;          /* held bytes already searched for a head's end */
    int failed;              /* 1 + the cause of a failure found inside forward() */
    int gen;                 /* bumped whenever the current try ends */
};

static PyTypeObject LaneType, TransportType;
static PyObject *s_connection_made, *s_data_received, *s_eof_received, *s_connection_lost,
    *s_pause_writing, *s_resume_writing, *s_lane_request, *s_lane_head, *s_lane_interim,
    *s_lane_complete, *s_lane_failed, *s_peername, *s_sockname, *empty_bytes, *methods[8];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- buffers */
static int buf_add(Buf *b, const char *p, size_t n) {
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->len + n > b->cap) {
        if (b->off) {
            memmove(b->p, b->p + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            size_t cap = b->cap ? b->cap : 1024;
            while (cap < b->len + n) cap *= 2;
            char *q = realloc(b->p, cap);
            if (!q) return -1;
            b->p = q;
            b->cap = cap;
        }
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}
static size_t buf_size(Buf *b) { return b->len - b->off; }
static void buf_free(Buf *b) { free(b->p); b->p = NULL; b->len = b->off = b->cap = 0; }
static void buf_shrink(Buf *b) { if (b->off == b->len) buf_free(b); }

/* ---------------------------------------------------------------- epoll */
#define REGISTERED (1u << 26) /* a bit epoll does not use: the fd is in the set */
static void set_events(Lane *lane, Handle *h, unsigned *have, unsigned want) {
    if ((*have & ~REGISTERED) == want && (*have & REGISTERED)) return;
    struct epoll_event ev = {.events = want, .data.ptr = h};
    epoll_ctl(lane->ep, (*have & REGISTERED) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, h->fd, &ev);
    *have = want | REGISTERED;
}

static void kick(Lane *lane) {
    uint64_t one = 1;
    ssize_t r = write(lane->wake.fd, &one, sizeof one);
    (void)r;
}

static void defer(Transport *t) {
    if (t->deferred) return;
    if (PyList_Append(t->lane->deferred, (PyObject *)t) == 0) t->deferred = 1;
    kick(t->lane);
}

static void report(PyObject *where) {
    if (PyErr_Occurred()) PyErr_WriteUnraisable(where);
}

static PyObject *call0(PyObject *obj, PyObject *name) {
    return PyObject_CallMethodNoArgs(obj, name);
}

/* ---------------------------------------------------------------- upstreams */
static void upstream_unidle(Lane *lane, Upstream *u) {
    Pool *p = &lane->pools[u->pool];
    if (u->prev) u->prev->next = u->next; else p->head = u->next;
    if (u->next) u->next->prev = u->prev; else p->tail = u->prev;
    u->next = u->prev = NULL;
    p->nidle--;
}

static void upstream_close(Upstream *u) {
    Lane *lane = u->lane;
    if (u->dead) return;
    if (u->state == U_IDLE) upstream_unidle(lane, u);
    if (u->client && u->client->up == u) u->client->up = NULL;
    if (u->dead) return;
    u->dead = 1;
    u->client = NULL;
    epoll_ctl(lane->ep, EPOLL_CTL_DEL, u->h.fd, NULL);
    close(u->h.fd);
    buf_free(&u->out);
    buf_free(&u->in);
    long pool = u->pool;
    lane->pools[pool].total--;
    u->grave = lane->graveyard;
    lane->graveyard = u;
    kick(lane);
    PyObject *r = PyObject_CallFunction(lane->on_closed, "l", pool);
    if (!r) report(lane->on_closed);
    Py_XDECREF(r);
}

static int ensure_pool(Lane *lane, long pool) {
    if (pool < 0) return -1;
    if (pool < lane->npools) return 0;
    long n = lane->npools ? lane->npools : 16;
    while (n <= pool) n *= 2;
    Pool *p = realloc(lane->pools, sizeof(Pool) * (size_t)n);
    if (!p) return -1;
    memset(p + lane->npools, 0, sizeof(Pool) * (size_t)(n - lane->npools));
    lane->pools = p;
    lane->npools = n;
    return 0;
}

/* ---------------------------------------------------------------- client output */
static void transport_close_now(Transport *t);
static void upstream_resume(Upstream *u);
static void upstream_want(Upstream *u);

static void flush_client(Transport *t) {
    if (t->closed) return;
    while (buf_size(&t->out)) {
        ssize_t w = send(t->h.fd, t->out.p + t->out.off, buf_size(&t->out), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            t->out.off = t->out.len = 0;
            transport_close_now(t); /* the peer is gone: the reader sees it as a reset */
            return;
        }
        t->out.off += (size_t)w;
    }
    buf_shrink(&t->out);
    size_t left = buf_size(&t->out);
    int read = t->reading && !t->eof && !(t->busy && buf_size(&t->in) >= HOLD_LIMIT);
    unsigned want = (read ? EPOLLIN | EPOLLRDHUP : 0) | (left ? EPOLLOUT : 0);
    set_events(t->lane, &t->h, &t->events, want);
    if (t->write_paused && left <= LOW_WATER) {
        t->write_paused = 0;
        if (t->up) upstream_resume(t->up);
        PyObject *r = call0(t->protocol, s_resume_writing);
        if (!r) report(t->protocol);
        Py_XDECREF(r);
    }
    if (!left && t->closing) transport_close_now(t);
    else if (!left && t->shut_wr == 1) {
        shutdown(t->h.fd, SHUT_WR);
        t->shut_wr = 2;
    } else if (left > HIGH_WATER && !t->write_paused) {
        t->write_paused = 1;
        if (t->up) upstream_want(t->up);
        PyObject *r = call0(t->protocol, s_pause_writing);
        if (!r) report(t->protocol);
        Py_XDECREF(r);
    }
}

/* Queue bytes for the client without writing yet: a response head waits for its
 * first body bytes, and a read's pieces go out together (`flush_client`). */
static void client_queue(Transport *t, const char *p, size_t n) {
    if (t->closed || t->closing || t->shut_wr || !n) return;
    buf_add(&t->out, p, n);
}

static void client_write(Transport *t, const char *p, size_t n) {
    if (t->closed || t->closing || t->shut_wr || !n) return;
    if (!buf_size(&t->out)) {
        while (n) {
            ssize_t w = send(t->h.fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) break;
                transport_close_now(t);
                return;
            }
            p += w;
            n -= (size_t)w;
        }
        if (!n) return;
    }
    buf_add(&t->out, p, n);
    flush_client(t);
}

/* Close the socket now; connection_lost follows from run(). */
static void transport_close_now(Transport *t) {
    if (t->closed) return;
    t->closed = 1;
    if (t->up) {
        Upstream *u = t->up;
        t->up = NULL;
        u->client = NULL;
        upstream_close(u);
    }
    epoll_ctl(t->lane->ep, EPOLL_CTL_DEL, t->h.fd, NULL);
    close(t->h.fd);
    t->events = 0;
    buf_free(&t->in);
    buf_free(&t->out);
    defer(t);
}

/* ---------------------------------------------------------------- request heads */
static const unsigned char TCHAR[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,
    ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1,
    ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,
    ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
};

static int name_is(const char *p, size_t n, const char *lower) {
    size_t m = strlen(lower);
    if (n != m) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (c != lower[i]) return 0;
    }
    return 1;
}

/* The end of a head (past its blank line), NULL while incomplete, `BARE_LF` for a
 * head with a line ended by LF alone (never the fast path's). */
static const char BARE_LF_MARK;
#define BARE_LF (&BARE_LF_MARK)
static const char *find_end(const char *p, size_t n, size_t from) {
    const char *end = p + n;
    /* bytes before `from` were scanned by an earlier call: start 3 back, where a blank
     * line could have begun, so a head read one byte at a time costs linear time */
    const char *q = p + (from > 3 ? from - 3 : 0);
    if (q > p && q[-1] == '\n') q--;
    for (; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++) {
        if (q == p || q[-1] != '\r') return BARE_LF;
        if (q + 2 < end && q[1] == '\r' && q[2] == '\n') return q + 3;
        if (q + 2 >= end) return NULL;
    }
    return NULL;
}

enum { H_INCOMPLETE = 0, H_FAST = 1, H_SLOW = -1 };

static const char *const METHOD_NAMES[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
#define NMETHODS 7

/* The index of a common method (case-sensitive, as RFC 9110 says), -1 for any other. */
static int known_method(const char *m, size_t n) {
    for (int i = 0; i < NMETHODS; i++)
        if (strlen(METHOD_NAMES[i]) == n && memcmp(METHOD_NAMES[i], m, n) == 0) return i;
    return -1;
}

typedef struct {
    const char *method; size_t method_len;
    const char *path; size_t path_len;
    const char *query; size_t query_len;
    const char *host; size_t host_len;
    const char *origin; size_t origin_len;
    int keep_alive;
    size_t used;
    PyObject *headers;
} Head;

/* The plain request shape, or H_SLOW for anything else (the Python parser then
 * answers it, refusing what is malformed), or H_INCOMPLETE. `h->headers` gets
 * the forwarded fields as (name, value) tuples, as RequestCore keeps them. */
static int parse_head(Listener *l, const char *p, size_t n, size_t from, Head *h) {
    const char *end = find_end(p, n, from);
    if (end == BARE_LF) return H_SLOW;
    if (!end) return (long)n > l->max_header_bytes + l->max_line ? H_SLOW : H_INCOMPLETE;
    h->used = (size_t)(end - p);
    const char *q = p, *lim = end - 2; /* lim: the final CRLF */
    const char *m = q;
    while (q < lim && TCHAR[(unsigned char)*q]) q++;
    if (q == m || q >= lim || *q != ' ') return H_SLOW;
    h->method = m; h->method_len = (size_t)(q - m);
    if (known_method(m, h->method_len) < 0) return H_SLOW; /* llhttp's list decides the rest */
    q++;
    if (*q != '/') return H_SLOW;
    const char *t = q, *qm = NULL;
    while (q < lim && (unsigned char)*q > 0x20 && (unsigned char)*q < 0x7f && *q != '#') {
        if (*q == '?' && !qm) qm = q;
        q++;
    }
    if ((long)(q - p) > l->max_line) return H_SLOW;
    if (q + 11 > lim + 2 || memcmp(q, " HTTP/1.1\r\n", 11) != 0) return H_SLOW;
    if (qm) {
        h->path = t; h->path_len = (size_t)(qm - t);
        h->query = qm + 1; h->query_len = (size_t)(q - qm - 1);
    } else {
        h->path = t; h->path_len = (size_t)(q - t);
        h->query = NULL; h->query_len = 0;
    }
    q += 11;
    h->host = NULL; h->host_len = 0; h->origin = NULL; h->origin_len = 0; h->keep_alive = 1;
    long count = 0, bytes = 0;
    int hosts = 0, lengths = 0;
    PyObject *list = PyList_New(0);
    if (!list) return H_SLOW;
    while (q < lim) {
        const char *name = q;
        while (q < lim && TCHAR[(unsigned char)*q]) q++;
        if (q == name || q >= lim || *q != ':') goto slow;
        size_t nlen = (size_t)(q - name);
        q++;
        while (q < lim && (*q == ' ' || *q == '\t')) q++;
        const char *v = q;
        while (q < lim && *q != '\r') {
            unsigned char c = (unsigned char)*q;
            if (!(c == '\t' || (c >= 0x20 && c < 0x7f))) goto slow;
            q++;
        }
        if (q >= lim || q[1] != '\n') goto slow;
        const char *ve = q;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        size_t vlen = (size_t)(ve - v);
        q += 2;
        count++;
        bytes += (long)(nlen + vlen + 4);
        if (count > l->max_headers || bytes > l->max_header_bytes) goto slow;
        if (name_is(name, nlen, "host")) {
            hosts++;
            if (!vlen) goto slow; /* RequestCore refuses it */
            h->host = v; h->host_len = vlen;
            continue;
        }
        if (name_is(name, nlen, "close")) goto slow; /* a Connection token could name it */
        if (name_is(name, nlen, "connection")) {
            if (name_is(v, vlen, "close")) h->keep_alive = 0;
            else if (!name_is(v, vlen, "keep-alive")) goto slow;
            continue;
        }
        if (name_is(name, nlen, "content-length")) {
            if (vlen != 1 || *v != '0' || lengths++) goto slow; /* one `0` only */
        } else if (name_is(name, nlen, "origin")) {
            h->origin = v; h->origin_len = vlen;
        } else if (name_is(name, nlen, "transfer-encoding") || name_is(name, nlen, "upgrade") ||
                   name_is(name, nlen, "keep-alive") || name_is(name, nlen, "te") ||
                   name_is(name, nlen, "trailer") || name_is(name, nlen, "x-forwarded-for") ||
                   name_is(name, nlen, "x-forwarded-proto") ||
                   name_is(name, nlen, "x-forwarded-host") || name_is(name, nlen, "forwarded") ||
                   name_is(name, nlen, "expect") || name_is(name, nlen, "x-request-id") ||
                   name_is(name, nlen, "traceparent") ||
                   (nlen >= 6 && name_is(name, 6, "proxy-"))) {
            goto slow;
        }
        PyObject *pair = Py_BuildValue("(y#y#)", name, (Py_ssize_t)nlen, v, (Py_ssize_t)vlen);
        if (!pair || PyList_Append(list, pair) < 0) { Py_XDECREF(pair); goto slow; }
        Py_DECREF(pair);
    }
    if (hosts != 1) goto slow;
    h->headers = list;
    return H_FAST;
slow:
    Py_DECREF(list);
    PyErr_Clear();
    return H_SLOW;
}

static PyObject *method_bytes(const char *m, size_t n) {
    int i = known_method(m, n);
    if (i < 0) return PyBytes_FromStringAndSize(m, (Py_ssize_t)n);
    Py_INCREF(methods[i]);
    return methods[i];
}

static void go_slow(Transport *t);
static int client_eof(Transport *t);

/* Held client bytes, on a connection not busy: fast heads while they come. */
static void client_parse(Transport *t) {
    while (!t->closed && t->fast && !t->busy && !t->closing && buf_size(&t->in)) {
        Head h;
        int r = parse_head(t->listener, t->in.p + t->in.off, buf_size(&t->in), t->scanned, &h);
        if (r == H_INCOMPLETE) {
            t->scanned = buf_size(&t->in);
            return;
        }
        t->scanned = 0;
        if (r == H_SLOW) { go_slow(t); return; }
        PyObject *method = method_bytes(h.method, h.method_len);
        PyObject *path = PyBytes_FromStringAndSize(h.path, (Py_ssize_t)h.path_len);
        PyObject *query = h.query_len ? PyBytes_FromStringAndSize(h.query, (Py_ssize_t)h.query_len)
                                      : (Py_INCREF(empty_bytes), empty_bytes);
        PyObject *host = PyBytes_FromStringAndSize(h.host, (Py_ssize_t)h.host_len);
        PyObject *origin = h.origin_len ? PyBytes_FromStringAndSize(h.origin, (Py_ssize_t)h.origin_len)
                                        : (Py_INCREF(empty_bytes), empty_bytes);
        t->in.off += h.used;
        buf_shrink(&t->in);
        t->busy = 1;
        t->lane->fast_requests++;
        PyObject *r2 = NULL;
        if (method && path && query && host && origin)
            r2 = PyObject_CallMethodObjArgs(t->protocol, s_lane_request, method, path, query, host,
                                            h.headers, origin, h.keep_alive ? Py_True : Py_False,
                                            NULL);
        Py_XDECREF(method); Py_XDECREF(path); Py_XDECREF(query); Py_XDECREF(host);
        Py_XDECREF(origin); Py_DECREF(h.headers);
        if (!r2) { report(t->protocol); transport_close_now(t); return; }
        Py_DECREF(r2);
    }
}

/* The client sent EOF: tell the protocol once the heads read before it were taken (a
 * fast request in flight, pipelined heads held), as its own parser would have read
 * them all before the EOF. Returns 1 when the connection is closing. */
static int client_eof(Transport *t) {
    if (t->eof_told || t->closed) return 0;
    if (t->fast && t->busy) return 0; /* again from request_done */
    if (t->fast && buf_size(&t->in)) go_slow(t); /* a partial head: its parser says so */
    if (t->closed) return 1;
    t->eof_told = 1;
    PyObject *res = call0(t->protocol, s_eof_received);
    if (!res) report(t->protocol);
    int keep = res && PyObject_IsTrue(res) == 1;
    PyErr_Clear();
    Py_XDECREF(res);
    if (!keep && !t->closed) {
        t->closing = 1;
        flush_client(t);
        return 1;
    }
    return 0;
}

/* From here on the protocol's own parser reads everything this connection sends. */
static void go_slow(Transport *t) {
    t->fast = 0;
    t->lane->slow_connections++;
    size_t n = buf_size(&t->in);
    if (!n) return;
    PyObject *data = PyBytes_FromStringAndSize(t->in.p + t->in.off, (Py_ssize_t)n);
    buf_free(&t->in);
    if (!data) { report(t->protocol); return; }
    PyObject *r = PyObject_CallMethodOneArg(t->protocol, s_data_received, data);
    Py_DECREF(data);
    if (!r) report(t->protocol);
    Py_XDECREF(r);
}

static void client_readable(Transport *t, unsigned ev) {
    static char chunk[READ_CHUNK];
    if ((ev & EPOLLERR) || ((ev & EPOLLHUP) && (!t->reading || t->eof))) {
        transport_close_now(t); /* reset, or gone while we were not reading: nothing to deliver */
        return;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        for (int rounds = 0; rounds < 4 && !t->closed && !t->eof; rounds++) {
            if (!t->reading) break;
            if (t->fast && t->busy && buf_size(&t->in) >= HOLD_LIMIT) break;
            ssize_t r = recv(t->h.fd, chunk, sizeof chunk, 0);
            if (r < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) break;
                transport_close_now(t);
                return;
            }
            if (r == 0) {
                t->eof = 1;
                break;
            }
            if (t->fast) {
                buf_add(&t->in, chunk, (size_t)r);
                client_parse(t);
            } else {
                PyObject *data = PyBytes_FromStringAndSize(chunk, r);
                PyObject *res = data ? PyObject_CallMethodOneArg(t->protocol, s_data_received, data) : NULL;
                Py_XDECREF(data);
                if (!res) report(t->protocol);
                Py_XDECREF(res);
            }
            if ((size_t)r < sizeof chunk) break;
        }
        if (t->eof && !t->closed && client_eof(t)) return;
    }
    if (!t->closed && (ev & EPOLLOUT)) flush_client(t);
    else if (!t->closed) flush_client(t); /* re-arm interest after reading */
}

/* ---------------------------------------------------------------- upstream relay */
static void try_failed(Transport *t, int cause) {
    t->gen++;
    PyObject *r = PyObject_CallMethod(t->protocol, "lane_failed", "i", cause);
    if (!r) report(t->protocol);
    Py_XDECREF(r);
}

static void upstream_fail(Upstream *u, int cause) {
    Transport *t = u->client;
    u->client = NULL;
    if (t) t->up = NULL;
    upstream_close(u);
    if (!t || t->closed) return;
    if (t->forwarding) { /* inside forward(): told from run(), once the caller has bound the try */
        t->failed = cause + 1;
        defer(t);
        return;
    }
    try_failed(t, cause);
}

static void upstream_want(Upstream *u) {
    if (u->dead) return;
    unsigned want = 0;
    if (u->state == U_CONNECTING || buf_size(&u->out)) want |= EPOLLOUT;
    if (u->state != U_CONNECTING && !(u->client && u->client->write_paused))
        want |= EPOLLIN | EPOLLRDHUP;
    set_events(u->lane, &u->h, &u->events, want);
}
static void upstream_resume(Upstream *u) { upstream_want(u); }

static void upstream_send(Upstream *u) {
    while (buf_size(&u->out)) {
        ssize_t w = send(u->h.fd, u->out.p + u->out.off, buf_size(&u->out), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            upstream_fail(u, F_RESET);
            return;
        }
        u->out.off += (size_t)w;
    }
    buf_shrink(&u->out);
    if (!buf_size(&u->out) && u->state == U_SENDING) u->state = U_HEAD;
    upstream_want(u);
}

/* The try is over and the client has its response: pool or close the socket. */
static void upstream_done(Upstream *u) {
    Transport *t = u->client;
    long long n = u->bytes_out;
    u->client = NULL;
    u->epoch++;
    if (t) t->up = NULL;
    if (u->reusable && u->mode != M_CLOSE && u->lane->pools[u->pool].nidle < u->lane->max_idle) {
        Pool *p = &u->lane->pools[u->pool];
        p->nidle++;
        u->state = U_IDLE;
        u->idle_since = now_s();
        buf_free(&u->in);
        u->prev = p->tail;
        u->next = NULL;
        if (p->tail) p->tail->next = u; else p->head = u;
        p->tail = u;
        set_events(u->lane, &u->h, &u->events, EPOLLIN | EPOLLRDHUP);
    } else {
        upstream_close(u);
    }
    if (t && !t->closed) {
        t->gen++;
        PyObject *r = PyObject_CallMethod(t->protocol, "lane_complete", "L", n);
        if (!r) report(t->protocol);
        Py_XDECREF(r);
    }
}

static void emit(Upstream *u, const char *p, size_t n) {
    Transport *t = u->client;
    if (!n || !t) return;
    u->bytes_out += (long long)n;
    if (u->client_chunked) {
        char size[24];
        int k = snprintf(size, sizeof size, "%zx\r\n", n);
        client_queue(t, size, (size_t)k);
        client_queue(t, p, n);
        client_queue(t, "\r\n", 2);
    } else {
        client_queue(t, p, n);
    }
}

/* Body bytes of the response; returns how many were used, -1 on a framing error. */
static long body(Upstream *u, const char *p, size_t n, int *complete) {
    size_t i = 0;
    *complete = 0;
    if (u->mode == M_NONE) { *complete = 1; return 0; }
    if (u->mode == M_CLOSE) { emit(u, p, n); return (long)n; }
    if (u->mode == M_LENGTH) {
        size_t k = (long long)n < u->remaining ? n : (size_t)u->remaining;
        emit(u, p, k);
        u->remaining -= (long long)k;
        if (!u->remaining) *complete = 1;
        return (long)k;
    }
    while (i < n && !u->dead) {
        char c = p[i];
        switch (u->cstate) {
        case C_SIZE: {
            int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
            if (d >= 0) {
                if (u->remaining > (1LL << 40)) return -1;
                u->remaining = u->remaining * 16 + d;
                u->digits++;
                i++;
                break;
            }
            if (!u->digits) return -1;
            u->digits = 0;
            if (c == ';') { u->cstate = C_EXT; i++; break; }
            if (c == ' ' || c == '\t') { u->cstate = C_BWS; i++; break; }
            if (c == '\r') { u->cstate = C_SIZE_LF; i++; break; }
            return -1;
        }
        case C_BWS: /* whitespace after the size only before an extension (RFC 9112 7.1.1) */
            if (c == ';') u->cstate = C_EXT;
            else if (c != ' ' && c != '\t') return -1;
            i++;
            break;
        case C_EXT:
            if (c == '\r') u->cstate = C_SIZE_LF;
            else if ((unsigned char)c < 0x20 && c != '\t') return -1;
            i++;
            break;
        case C_SIZE_LF:
            if (c != '\n') return -1;
            i++;
            u->cstate = u->remaining ? C_DATA : C_TRAILER;
            break;
        case C_DATA: {
            size_t k = n - i < (size_t)u->remaining ? n - i : (size_t)u->remaining;
            emit(u, p + i, k);
            i += k;
            u->remaining -= (long long)k;
            if (!u->remaining) u->cstate = C_DATA_CR;
            break;
        }
        case C_DATA_CR:
            if (c != '\r') return -1;
            u->cstate = C_DATA_LF; i++;
            break;
        case C_DATA_LF:
            if (c != '\n') return -1;
            u->cstate = C_SIZE; i++;
            break;
        case C_TRAILER: /* trailer fields are dropped, as the Python relay drops them */
            if (c == '\r') { u->cstate = C_TRAILER_LF; i++; break; }
            u->cstate = C_DONE; /* inside a trailer line: skip to its end */
            /* fallthrough */
        case C_DONE:
            while (i < n && p[i] != '\n') i++;
            if (i < n) { i++; u->cstate = C_TRAILER; }
            break;
        case C_TRAILER_LF:
            if (c != '\n') return -1;
            i++;
            *complete = 1;
            return (long)i;
        }
    }
    return (long)i;
}

static void finish_body(Upstream *u, size_t extra) {
    Transport *t = u->client;
    if (extra) u->reusable = 0; /* bytes past the response: never reuse */
    if (t && u->client_chunked) client_queue(t, "0\r\n\r\n", 5);
    if (t) flush_client(t);
    if (!u->dead) upstream_done(u);
}

/* A response head in u->in [0, end): parse, ask the protocol, relay what follows. */
static int response_head(Upstream *u, size_t end) {
    const char *p = u->in.p, *lim = p + end - 2;
    if (end < 16 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return -1;
    int http10 = p[7] == '0';
    if (p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
        return -1;
    int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (p[12] != ' ' && p[12] != '\r') return -1;
    const char *q = memchr(p, '\n', end);
    if (!q || q[-1] != '\r') return -1;
    q++;
    PyObject *lines = PyList_New(0);
    if (!lines) return -1;
    int chunked = 0, keep = !http10, conn_close = 0, has_length = 0;
    long long length = -1;
    PyObject *named = NULL; /* names a Connection header lists */
    while (q < lim) {
        const char *name = q;
        while (q < lim && TCHAR[(unsigned char)*q]) q++;
        if (q == name || *q != ':') goto bad;
        size_t nlen = (size_t)(q - name);
        q++;
        while (q < lim && (*q == ' ' || *q == '\t')) q++;
        const char *v = q;
        while (q < lim && *q != '\r') {
            unsigned char c = (unsigned char)*q;
            if (c < 0x20 && c != '\t') goto bad;
            if (c == 0x7f) goto bad;
            q++;
        }
        if (q[1] != '\n') goto bad;
        const char *ve = q;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        size_t vlen = (size_t)(ve - v);
        q += 2;
        if (name_is(name, nlen, "content-length")) {
            long long x = 0;
            if (!vlen || vlen > 15) goto bad;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9') goto bad;
                x = x * 10 + (v[i] - '0');
            }
            if (length >= 0) goto bad; /* repeated: llhttp refuses it too */
            length = x;
            has_length = 1;
        } else if (name_is(name, nlen, "transfer-encoding")) {
            if (!name_is(v, vlen, "chunked")) goto bad;
            chunked = 1;
            continue;
        } else if (name_is(name, nlen, "connection")) {
            const char *s = v, *e = v + vlen;
            while (s < e) {
                while (s < e && (*s == ' ' || *s == '\t' || *s == ',')) s++;
                const char *w = s;
                while (s < e && *s != ',' && *s != ' ' && *s != '\t') s++;
                if (s == w) continue;
                if (name_is(w, (size_t)(s - w), "close")) conn_close = 1;
                else if (name_is(w, (size_t)(s - w), "keep-alive")) keep = 1;
                else {
                    if (!named) named = PyList_New(0);
                    PyObject *tok = PyBytes_FromStringAndSize(w, s - w);
                    if (named && tok) PyList_Append(named, tok);
                    Py_XDECREF(tok);
                }
            }
            continue;
        } else if (name_is(name, nlen, "keep-alive") || name_is(name, nlen, "te") ||
                   name_is(name, nlen, "trailer") || name_is(name, nlen, "upgrade") ||
                   name_is(name, nlen, "proxy-connection") ||
                   name_is(name, nlen, "proxy-authenticate") ||
                   name_is(name, nlen, "proxy-authorization")) {
            continue;
        }
        PyObject *line = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(nlen + vlen + 4));
        if (!line) goto bad;
        char *d = PyBytes_AS_STRING(line);
        memcpy(d, name, nlen);
        memcpy(d + nlen, ": ", 2);
        memcpy(d + nlen + 2, v, vlen);
        memcpy(d + nlen + 2 + vlen, "\r\n", 2);
        PyList_Append(lines, line);
        Py_DECREF(line);
    }
    if (named) { /* drop what the Connection header named */
        Py_ssize_t n = PyList_GET_SIZE(lines);
        PyObject *kept = PyList_New(0);
        for (Py_ssize_t i = 0; kept && i < n; i++) {
            PyObject *line = PyList_GET_ITEM(lines, i);
            const char *s = PyBytes_AS_STRING(line);
            const char *c = strchr(s, ':');
            int drop = 0;
            for (Py_ssize_t j = 0; c && j < PyList_GET_SIZE(named); j++) {
                PyObject *tok = PyList_GET_ITEM(named, j);
                size_t tl = (size_t)PyBytes_GET_SIZE(tok);
                if ((size_t)(c - s) == tl) {
                    int same = 1;
                    for (size_t k = 0; k < tl; k++) {
                        char a = s[k], b = PyBytes_AS_STRING(tok)[k];
                        if (a >= 'A' && a <= 'Z') a = (char)(a + 32);
                        if (b >= 'A' && b <= 'Z') b = (char)(b + 32);
                        if (a != b) { same = 0; break; }
                    }
                    if (same && !name_is(s, tl, "content-length")) drop = 1;
                }
            }
            if (!drop) PyList_Append(kept, line);
        }
        Py_DECREF(named);
        named = NULL;
        if (!kept) goto bad;
        Py_DECREF(lines);
        lines = kept;
    }
    if (chunked && has_length) goto bad; /* both: refused, as the Python path refuses it */
    /* reused after a HEAD too (the Python path cannot: llhttp would read a body there);
     * bytes an upstream sends while the socket idles close it (upstream_event) */
    u->reusable = keep && !conn_close;
    if (status < 200) {
        if (status == 101) { Py_DECREF(lines); return -1; } /* never asked for */
        if (status != 100 && u->client) {
            PyObject *r = PyObject_CallMethod(u->client->protocol, "lane_interim", "iO", status, lines);
            if (!r) report(u->client->protocol);
            Py_XDECREF(r);
        }
        Py_DECREF(lines);
        return 1; /* read the next head */
    }
    Transport *t = u->client;
    int gen = t->gen;
    PyObject *r = PyObject_CallMethod(t->protocol, "lane_head", "iOO", status, lines,
                                      has_length ? Py_True : Py_False);
    Py_DECREF(lines);
    if (!r) { /* the protocol failed on it: the try fails as malformed, not left hanging */
        report(t->protocol);
        if (t->up == u && !u->dead) upstream_fail(u, F_PROTOCOL);
        return -2;
    }
    if (r == Py_None || t->gen != gen || t->up != u || t->closed) { Py_DECREF(r); return -2; }
    PyObject *head;
    int client_chunked;
    if (!PyArg_ParseTuple(r, "Sp", &head, &client_chunked)) {
        Py_DECREF(r);
        report(t->protocol);
        return -2;
    }
    Py_INCREF(head);
    Py_DECREF(r);
    u->client_chunked = client_chunked;
    u->bytes_out = 0; /* the protocol counted the head */
    if (u->head_only || status == 204 || status == 304) u->mode = M_NONE;
    else if (chunked) { u->mode = M_CHUNKED; u->cstate = C_SIZE; u->remaining = 0; }
    else if (has_length) { u->mode = M_LENGTH; u->remaining = length; }
    else { u->mode = M_CLOSE; u->reusable = 0; }
    if (u->mode == M_LENGTH && !length) u->mode = M_NONE;
    u->state = U_BODY;
    client_queue(t, PyBytes_AS_STRING(head), (size_t)PyBytes_GET_SIZE(head));
    Py_DECREF(head);
    return 0;
bad:
    Py_XDECREF(named);
    Py_DECREF(lines);
    return -1;
}

static void upstream_bytes(Upstream *u, const char *p, size_t n) {
    unsigned epoch = u->epoch;
    while (n && u->client && !u->dead && u->epoch == epoch) {
        if (u->state == U_HEAD || u->state == U_SENDING) {
            size_t before = u->in.len;
            buf_add(&u->in, p, n);
            const char *end = find_end(u->in.p, u->in.len, before);
            if (end == BARE_LF) { upstream_fail(u, F_PROTOCOL); return; }
            if (!end) {
                if (u->in.len > MAX_RESPONSE_HEAD) upstream_fail(u, F_PROTOCOL);
                return;
            }
            size_t used = (size_t)(end - u->in.p);
            size_t from_p = used - before;
            int r = response_head(u, used);
            if (r == -1) { upstream_fail(u, F_PROTOCOL); return; }
            if (r == -2 || u->dead) return; /* the protocol took over (a retry, a close) */
            u->in.len = 0;
            p += from_p;
            n -= from_p;
            if (r == 1) continue; /* an interim response: the next head follows */
            if (u->mode == M_NONE) { finish_body(u, n); return; }
            continue;
        }
        if (u->state == U_BODY) {
            int complete;
            long used = body(u, p, n, &complete);
            if (u->dead) return;
            if (used < 0) { /* a broken body after the head went out: the client is cut */
                upstream_fail(u, F_PROTOCOL);
                return;
            }
            if (complete) { finish_body(u, n - (size_t)used); return; }
            p += used;
            n -= (size_t)used;
            if (!used) return;
            continue;
        }
        return;
    }
}

static void upstream_event(Upstream *u, unsigned ev) {
    static char chunk[READ_CHUNK];
    if (u->state == U_IDLE) { /* an idle socket that speaks is closing or broken */
        upstream_close(u);
        return;
    }
    if (u->state == U_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(u->h.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (ev & (EPOLLERR | EPOLLHUP))) { upstream_fail(u, F_CONNECT); return; }
        u->state = U_SENDING;
        upstream_send(u);
        return;
    }
    if ((ev & EPOLLOUT) && buf_size(&u->out)) {
        upstream_send(u);
        if (u->dead) return;
    }
    if (!(ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
    unsigned epoch = u->epoch;
    for (int rounds = 0; rounds < 4; rounds++) {
        if (u->client && u->client->write_paused && !(ev & (EPOLLHUP | EPOLLERR))) return;
        ssize_t r = recv(u->h.fd, chunk, sizeof chunk, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            upstream_fail(u, F_RESET);
            return;
        }
        if (r == 0) {
            if (u->state == U_BODY && u->mode == M_CLOSE) { u->reusable = 0; finish_body(u, 0); return; }
            upstream_fail(u, F_RESET);
            return;
        }
        Transport *t = u->client;
        upstream_bytes(u, chunk, (size_t)r);
        if (t && !t->closed && t->up == u && buf_size(&t->out)) flush_client(t);
        if (u->dead || u->epoch != epoch || !u->client) return;
        if ((size_t)r < sizeof chunk) return;
    }
}

/* ---------------------------------------------------------------- Transport methods */
static PyObject *tr_write(Transport *t, PyObject *data) {
    Py_buffer b;
    if (PyObject_GetBuffer(data, &b, PyBUF_SIMPLE) < 0) return NULL;
    client_write(t, b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

static PyObject *tr_writelines(Transport *t, PyObject *seq) {
    PyObject *it = PyObject_GetIter(seq), *item;
    if (!it) return NULL;
    while ((item = PyIter_Next(it))) {
        PyObject *r = tr_write(t, item);
        Py_DECREF(item);
        if (!r) { Py_DECREF(it); return NULL; }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *tr_close(Transport *t, PyObject *unused) {
    if (t->closed || t->closing) Py_RETURN_NONE;
    t->closing = 1;
    t->reading = 0; /* as asyncio's close: nothing more is read */
    if (!buf_size(&t->out)) transport_close_now(t);
    Py_RETURN_NONE;
}

static PyObject *tr_abort(Transport *t, PyObject *unused) {
    if (!t->closed) {
        t->out.off = t->out.len = 0; /* what was not written is dropped, as asyncio's abort does */
        transport_close_now(t);
    }
    Py_RETURN_NONE;
}

static PyObject *tr_is_closing(Transport *t, PyObject *unused) {
    return PyBool_FromLong(t->closed || t->closing);
}

static PyObject *tr_pause_reading(Transport *t, PyObject *unused) {
    t->reading = 0;
    if (!t->closed) flush_client(t);
    Py_RETURN_NONE;
}

static PyObject *tr_resume_reading(Transport *t, PyObject *unused) {
    if (!t->reading) {
        t->reading = 1;
        if (!t->closed) flush_client(t);
    }
    Py_RETURN_NONE;
}

static PyObject *tr_is_reading(Transport *t, PyObject *unused) {
    return PyBool_FromLong(t->reading && !t->closed);
}

static PyObject *tr_can_write_eof(Transport *t, PyObject *unused) { Py_RETURN_TRUE; }

static PyObject *tr_write_eof(Transport *t, PyObject *unused) {
    if (t->closed || t->shut_wr) Py_RETURN_NONE;
    t->shut_wr = 1;
    if (!buf_size(&t->out)) {
        shutdown(t->h.fd, SHUT_WR);
        t->shut_wr = 2;
    }
    Py_RETURN_NONE;
}

static PyObject *tr_get_write_buffer_size(Transport *t, PyObject *unused) {
    return PyLong_FromSize_t(buf_size(&t->out));
}

static PyObject *sockaddr_tuple(struct sockaddr_storage *ss);

static PyObject *tr_get_extra_info(Transport *t, PyObject *args) {
    PyObject *name, *dflt = Py_None;
    if (!PyArg_ParseTuple(args, "O|O", &name, &dflt)) return NULL;
    if (PyUnicode_Check(name)) {
        if (PyUnicode_Compare(name, s_peername) == 0 && t->peer) { Py_INCREF(t->peer); return t->peer; }
        if (PyUnicode_Compare(name, s_sockname) == 0) {
            if (!t->local && !t->closed) {
                struct sockaddr_storage ls;
                socklen_t llen = sizeof ls;
                if (getsockname(t->h.fd, (struct sockaddr *)&ls, &llen) == 0) t->local = sockaddr_tuple(&ls);
            }
            if (t->local) { Py_INCREF(t->local); return t->local; }
        }
    }
    Py_INCREF(dflt);
    return dflt;
}

/* Let held bytes be read again (the protocol finished its request). */
static PyObject *tr_request_done(Transport *t, PyObject *unused) {
    if (t->busy) {
        t->busy = 0;
        if (!t->closed && (buf_size(&t->in) || t->eof)) {
            t->pending_parse = 1;
            defer(t);
        } else if (!t->closed) {
            flush_client(t);
        }
    }
    Py_RETURN_NONE;
}

static int parse_address(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof *a6;
        return 0;
    }
    return -1;
}

/* forward(pool, address, port, data, head_only) -> 1 reused idle socket, 0 connecting,
 * -1 address not an IP literal (the caller uses its own path). */
static PyObject *tr_forward(Transport *t, PyObject *args) {
    long pool;
    const char *addr;
    int port, head_only;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "lsiy*p", &pool, &addr, &port, &data, &head_only)) return NULL;
    Lane *lane = t->lane;
    if (t->closed || ensure_pool(lane, pool) < 0) { PyBuffer_Release(&data); return PyLong_FromLong(-1); }
    if (t->up) { Upstream *old = t->up; t->up = NULL; old->client = NULL; upstream_close(old); }
    Pool *p = &lane->pools[pool];
    Upstream *u = p->head;
    long result = 1;
    if (u) {
        upstream_unidle(lane, u);
        lane->upstream_reused++;
    } else {
        struct sockaddr_storage ss;
        socklen_t len;
        if (parse_address(addr, port, &ss, &len) < 0) { PyBuffer_Release(&data); return PyLong_FromLong(-1); }
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) { PyBuffer_Release(&data); return PyErr_SetFromErrno(PyExc_OSError); }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        u = calloc(1, sizeof *u);
        if (!u) { close(fd); PyBuffer_Release(&data); return PyErr_NoMemory(); }
        u->h.kind = K_UPSTREAM;
        u->h.fd = fd;
        u->lane = lane;
        u->pool = pool;
        p->total++;
        lane->upstream_connects++;
        result = 0;
        int r = connect(fd, (struct sockaddr *)&ss, len);
        u->state = (r == 0) ? U_SENDING : U_CONNECTING;
        if (r < 0 && errno != EINPROGRESS) u->state = U_CONNECTING; /* reported by the first event */
    }
    u->client = t;
    t->up = u;
    u->head_only = head_only;
    u->mode = M_NONE;
    u->reusable = 0;
    u->bytes_out = 0;
    u->in.len = 0;
    if (u->state == U_IDLE) u->state = U_SENDING;
    buf_add(&u->out, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    t->forwarding = 1;
    if (u->state == U_SENDING) upstream_send(u);
    else upstream_want(u);
    t->forwarding = 0;
    return PyLong_FromLong(result);
}

/* Drop the current try's upstream socket (a timeout, a retry, the client gone). */
static PyObject *tr_cancel(Transport *t, PyObject *unused) {
    Upstream *u = t->up;
    if (u) {
        t->up = NULL;
        u->client = NULL;
        t->gen++;
        upstream_close(u);
    }
    Py_RETURN_NONE;
}

static PyObject *lane_idle(Lane *lane, PyObject *arg);
static PyObject *tr_idle(Transport *t, PyObject *arg) { return lane_idle(t->lane, arg); }

static PyObject *tr_connecting(Transport *t, void *unused) {
    return PyBool_FromLong(t->up && t->up->state == U_CONNECTING);
}
static PyObject *tr_fast(Transport *t, void *unused) { return PyBool_FromLong(t->fast); }
static PyObject *tr_state(Transport *t, void *unused) {
    return Py_BuildValue("{sisIsisisisisisn}", "reading", t->reading, "events", t->events, "busy",
                         t->busy, "eof", t->eof, "closing", t->closing, "closed", t->closed,
                         "write_paused", t->write_paused, "held", (Py_ssize_t)buf_size(&t->in));
}

static PyMethodDef transport_methods[] = {
    {"write", (PyCFunction)tr_write, METH_O, NULL},
    {"writelines", (PyCFunction)tr_writelines, METH_O, NULL},
    {"close", (PyCFunction)tr_close, METH_NOARGS, NULL},
    {"abort", (PyCFunction)tr_abort, METH_NOARGS, NULL},
    {"is_closing", (PyCFunction)tr_is_closing, METH_NOARGS, NULL},
    {"pause_reading", (PyCFunction)tr_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", (PyCFunction)tr_resume_reading, METH_NOARGS, NULL},
    {"is_reading", (PyCFunction)tr_is_reading, METH_NOARGS, NULL},
    {"can_write_eof", (PyCFunction)tr_can_write_eof, METH_NOARGS, NULL},
    {"write_eof", (PyCFunction)tr_write_eof, METH_NOARGS, NULL},
    {"get_write_buffer_size", (PyCFunction)tr_get_write_buffer_size, METH_NOARGS, NULL},
    {"get_extra_info", (PyCFunction)tr_get_extra_info, METH_VARARGS, NULL},
    {"request_done", (PyCFunction)tr_request_done, METH_NOARGS, NULL},
    {"forward", (PyCFunction)tr_forward, METH_VARARGS, NULL},
    {"cancel", (PyCFunction)tr_cancel, METH_NOARGS, NULL},
    {"idle", (PyCFunction)tr_idle, METH_O, "Idle pooled sockets of a pool."},
    {NULL},
};

static PyGetSetDef transport_getset[] = {
    {"connecting", (getter)tr_connecting, NULL, NULL, NULL},
    {"fast", (getter)tr_fast, NULL, NULL, NULL},
    {"state", (getter)tr_state, NULL, "Flags for tests and debugging.", NULL},
    {NULL},
};

static void tr_dealloc(Transport *t) {
    if (!t->closed && t->h.fd >= 0) {
        if (t->up) { Upstream *u = t->up; t->up = NULL; u->client = NULL; upstream_close(u); }
        close(t->h.fd);
    }
    buf_free(&t->in);
    buf_free(&t->out);
    Py_XDECREF(t->protocol);
    Py_XDECREF(t->peer);
    Py_XDECREF(t->local);
    Py_XDECREF((PyObject *)t->lane);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyTypeObject TransportType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gateway.http.native_lane.Transport",
    .tp_basicsize = sizeof(Transport),
    .tp_dealloc = (destructor)tr_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A client connection owned by a Lane: the asyncio transport subset HttpProxy uses.",
    .tp_methods = transport_methods,
    .tp_getset = transport_getset,
};

/* ---------------------------------------------------------------- Lane */
static PyObject *sockaddr_tuple(struct sockaddr_storage *ss) {
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        return Py_BuildValue("(si)", host, ntohs(a->sin_port));
    }
    if (ss->ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        return Py_BuildValue("(siII)", host, ntohs(a->sin6_port), ntohl(a->sin6_flowinfo), a->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static void accept_all(Lane *lane, Listener *l) {
    if (!l->factory) return; /* unserved earlier in this batch */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(l->h.fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* no fd to take it with: stop watching for a second instead of spinning */
                epoll_ctl(lane->ep, EPOLL_CTL_DEL, l->h.fd, NULL);
                l->paused = 1;
                struct itimerspec its = {.it_value = {.tv_sec = 1}};
                timerfd_settime(lane->timer.fd, 0, &its, NULL);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        Transport *t = PyObject_New(Transport, &TransportType);
        if (!t) { close(fd); report(l->factory); return; }
        memset(((char *)t) + sizeof(PyObject), 0, sizeof(Transport) - sizeof(PyObject));
        t->h.kind = K_CLIENT;
        t->h.fd = fd;
        Py_INCREF(lane);
        t->lane = lane;
        t->listener = l;
        t->reading = 1;
        t->fast = 1;
        t->peer = sockaddr_tuple(&ss); /* `local` is made when asked (HttpProxy never does) */
        lane->accepted++;
        t->protocol = PyObject_CallNoArgs(l->factory);
        if (!t->protocol) { report(l->factory); Py_DECREF(t); continue; }
        set_events(lane, &t->h, &t->events, EPOLLIN | EPOLLRDHUP);
        /* the lane's reference: dropped after connection_lost */
        PyObject *r = PyObject_CallMethodOneArg(t->protocol, s_connection_made, (PyObject *)t);
        if (!r) { report(t->protocol); transport_close_now(t); }
        Py_XDECREF(r);
    }
}

static void run_deferred(Lane *lane) {
    while (PyList_GET_SIZE(lane->deferred)) {
        PyObject *list = lane->deferred;
        lane->deferred = PyList_New(0);
        Py_ssize_t n = PyList_GET_SIZE(list);
        for (Py_ssize_t i = 0; i < n; i++) {
            Transport *t = (Transport *)PyList_GET_ITEM(list, i);
            t->deferred = 0;
            if (t->closed && !t->lost) {
                t->lost = 1;
                PyObject *r = PyObject_CallMethodOneArg(t->protocol, s_connection_lost, Py_None);
                if (!r) report(t->protocol);
                Py_XDECREF(r);
                Py_CLEAR(t->protocol); /* it holds the transport: no cycle left behind */
                Py_DECREF(t); /* the lane's reference */
                continue;
            }
            if (t->failed && !t->closed) {
                int cause = t->failed - 1;
                t->failed = 0;
                try_failed(t, cause);
            }
            if (t->pending_parse && !t->closed) {
                t->pending_parse = 0;
                if (t->fast) client_parse(t);
                if (!t->closed && t->eof) client_eof(t);
                if (!t->closed) flush_client(t);
            }
        }
        Py_DECREF(list);
    }
}

static PyObject *lane_run(Lane *lane, PyObject *unused) {
    struct epoll_event evs[256];
    int n = epoll_wait(lane->ep, evs, 256, 0);
    for (int i = 0; i < n; i++) {
        Handle *h = evs[i].data.ptr;
        unsigned ev = evs[i].events;
        switch (h->kind) {
        case K_TIMER: {
            uint64_t v;
            ssize_t r = read(h->fd, &v, sizeof v);
            (void)r;
            for (Listener *l = lane->listeners; l; l = l->next) {
                if (!l->paused) continue;
                l->paused = 0;
                struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &l->h};
                epoll_ctl(lane->ep, EPOLL_CTL_ADD, l->h.fd, &lev);
            }
            break;
        }
        case K_WAKE: {
            uint64_t v;
            ssize_t r = read(h->fd, &v, sizeof v);
            (void)r;
            break;
        }
        case K_LISTENER:
            accept_all(lane, (Listener *)h);
            break;
        case K_CLIENT: {
            Transport *t = (Transport *)((char *)h - offsetof(Transport, h));
            if (t->closed) break;
            Py_INCREF(t);
            client_readable(t, ev);
            Py_DECREF(t);
            break;
        }
        case K_UPSTREAM: {
            Upstream *u = (Upstream *)h;
            if (u->dead) break;
            Transport *t = u->client;
            Py_XINCREF(t);
            upstream_event(u, ev);
            Py_XDECREF(t);
            break;
        }
        }
    }
    run_deferred(lane);
    while (lane->graveyard) {
        Upstream *u = lane->graveyard;
        lane->graveyard = u->grave;
        free(u);
    }
    Py_RETURN_NONE;
}

static PyObject *lane_serve(Lane *lane, PyObject *args, PyObject *kw) {
    static char *names[] = {"sock", "factory", "max_line", "max_headers", "max_header_bytes", NULL};
    PyObject *sock, *factory;
    long max_line = 8192, max_headers = 100, max_header_bytes = 65536;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|lll", names, &sock, &factory, &max_line,
                                     &max_headers, &max_header_bytes))
        return NULL;
    PyObject *fdo = PyObject_CallMethod(sock, "fileno", NULL);
    if (!fdo) return NULL;
    int fd = (int)PyLong_AsLong(fdo);
    Py_DECREF(fdo);
    Listener *l = calloc(1, sizeof *l);
    if (!l) return PyErr_NoMemory();
    l->h.kind = K_LISTENER;
    l->h.fd = fd;
    Py_INCREF(factory);
    l->factory = factory;
    Py_INCREF(sock);
    l->sock = sock;
    l->max_line = max_line;
    l->max_headers = max_headers;
    l->max_header_bytes = max_header_bytes;
    l->next = lane->listeners;
    lane->listeners = l;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->h};
    if (epoll_ctl(lane->ep, EPOLL_CTL_ADD, fd, &ev) < 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* unserve(sock): stop accepting on it (its connections stay). */
static PyObject *lane_unserve(Lane *lane, PyObject *sock) {
    Listener **pp = &lane->listeners;
    while (*pp) {
        Listener *l = *pp;
        if (l->sock == sock) {
            epoll_ctl(lane->ep, EPOLL_CTL_DEL, l->h.fd, NULL);
            *pp = l->next;
            /* connections keep a pointer to their listener's limits: leaked on purpose
             * (a few words per unserve, which happens at drain and shutdown) */
            Py_CLEAR(l->factory);
            Py_CLEAR(l->sock);
            continue;
        }
        pp = &l->next;
    }
    Py_RETURN_NONE;
}

/* evict_idle(older_than_s): close pooled upstream sockets idle longer than that. */
static PyObject *lane_evict_idle(Lane *lane, PyObject *arg) {
    double older = PyFloat_AsDouble(arg);
    if (older == -1.0 && PyErr_Occurred()) return NULL;
    double cutoff = now_s() - older;
    for (long i = 0; i < lane->npools; i++) {
        while (lane->pools[i].head && lane->pools[i].head->idle_since <= cutoff)
            upstream_close(lane->pools[i].head);
    }
    Py_RETURN_NONE;
}

/* close_pool(pool): close its idle sockets (its endpoint left the table). */
static PyObject *lane_close_pool(Lane *lane, PyObject *arg) {
    long pool = PyLong_AsLong(arg);
    if (pool == -1 && PyErr_Occurred()) return NULL;
    if (pool >= 0 && pool < lane->npools)
        while (lane->pools[pool].head) upstream_close(lane->pools[pool].head);
    Py_RETURN_NONE;
}

static PyObject *lane_idle(Lane *lane, PyObject *arg) {
    long pool = PyLong_AsLong(arg);
    if (pool == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(pool >= 0 && pool < lane->npools ? lane->pools[pool].nidle : 0);
}

/* close_one_idle(pool): close its longest-idle socket, freeing a slot for the event
 * loop's path at the breaker's limit; returns whether there was one. */
static PyObject *lane_close_one_idle(Lane *lane, PyObject *arg) {
    long pool = PyLong_AsLong(arg);
    if (pool == -1 && PyErr_Occurred()) return NULL;
    if (pool >= 0 && pool < lane->npools && lane->pools[pool].head) {
        upstream_close(lane->pools[pool].head);
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyObject *lane_fileno(Lane *lane, PyObject *unused) { return PyLong_FromLong(lane->ep); }

static PyObject *lane_stats(Lane *lane, PyObject *unused) {
    return Py_BuildValue("{sKsKsKsKsK}", "fast_requests", lane->fast_requests, "slow_connections",
                         lane->slow_connections, "upstream_connects", lane->upstream_connects,
                         "upstream_reused", lane->upstream_reused, "accepted", lane->accepted);
}

static PyObject *lane_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *names[] = {"on_closed", "max_idle", NULL};
    PyObject *on_closed;
    long max_idle = 128;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|l", names, &on_closed, &max_idle)) return NULL;
    Lane *lane = (Lane *)type->tp_alloc(type, 0);
    if (!lane) return NULL;
    lane->max_idle = max_idle;
    lane->ep = epoll_create1(EPOLL_CLOEXEC);
    lane->wake.kind = K_WAKE;
    lane->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    lane->timer.kind = K_TIMER;
    lane->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (lane->timer.fd >= 0) {
        struct epoll_event tev = {.events = EPOLLIN, .data.ptr = &lane->timer};
        epoll_ctl(lane->ep, EPOLL_CTL_ADD, lane->timer.fd, &tev);
    }
    if (lane->ep < 0 || lane->wake.fd < 0) { Py_DECREF(lane); return PyErr_SetFromErrno(PyExc_OSError); }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lane->wake};
    epoll_ctl(lane->ep, EPOLL_CTL_ADD, lane->wake.fd, &ev);
    Py_INCREF(on_closed);
    lane->on_closed = on_closed;
    lane->deferred = PyList_New(0);
    return (PyObject *)lane;
}

static void lane_dealloc(Lane *lane) {
    for (long i = 0; i < lane->npools; i++)
        while (lane->pools[i].head) {
            Upstream *u = lane->pools[i].head;
            upstream_unidle(lane, u);
            close(u->h.fd);
            buf_free(&u->out);
            buf_free(&u->in);
            free(u);
        }
    while (lane->graveyard) {
        Upstream *u = lane->graveyard;
        lane->graveyard = u->grave;
        free(u);
    }
    free(lane->pools);
    if (lane->ep >= 0) close(lane->ep);
    if (lane->wake.fd >= 0) close(lane->wake.fd);
    if (lane->timer.fd >= 0) close(lane->timer.fd);
    Py_XDECREF(lane->on_closed);
    Py_XDECREF(lane->deferred);
    Py_TYPE(lane)->tp_free((PyObject *)lane);
}

static PyMethodDef lane_methods[] = {
    {"run", (PyCFunction)lane_run, METH_NOARGS, "Handle the ready sockets (never blocks)."},
    {"serve", (PyCFunction)(void (*)(void))lane_serve, METH_VARARGS | METH_KEYWORDS,
     "serve(sock, factory, max_line=, max_headers=, max_header_bytes=): accept on sock."},
    {"unserve", (PyCFunction)lane_unserve, METH_O, "Stop accepting on sock."},
    {"evict_idle", (PyCFunction)lane_evict_idle, METH_O, NULL},
    {"close_pool", (PyCFunction)lane_close_pool, METH_O, NULL},
    {"idle", (PyCFunction)lane_idle, METH_O, "Idle pooled sockets of a pool."},
    {"close_one_idle", (PyCFunction)lane_close_one_idle, METH_O, NULL},
    {"fileno", (PyCFunction)lane_fileno, METH_NOARGS, NULL},
    {"stats", (PyCFunction)lane_stats, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gateway.http.native_lane.Lane",
    .tp_basicsize = sizeof(Lane),
    .tp_dealloc = (destructor)lane_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The native socket lane of one event loop (see the module's C source).",
    .tp_methods = lane_methods,
    .tp_new = lane_new,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gateway.http.native_lane",
    "Client and upstream sockets of the HTTP proxy in C (see native_lane.c).", -1, NULL,
};

PyMODINIT_FUNC PyInit_native_lane(void) {
    if (PyType_Ready(&LaneType) < 0 || PyType_Ready(&TransportType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
#define INTERN(var, s) if (!(var = PyUnicode_InternFromString(s))) return NULL
    INTERN(s_connection_made, "connection_made");
    INTERN(s_data_received, "data_received");
    INTERN(s_eof_received, "eof_received");
    INTERN(s_connection_lost, "connection_lost");
    INTERN(s_pause_writing, "pause_writing");
    INTERN(s_resume_writing, "resume_writing");
    INTERN(s_lane_request, "lane_request");
    INTERN(s_lane_head, "lane_head");
    INTERN(s_lane_interim, "lane_interim");
    INTERN(s_lane_complete, "lane_complete");
    INTERN(s_lane_failed, "lane_failed");
    INTERN(s_peername, "peername");
    INTERN(s_sockname, "sockname");
    empty_bytes = PyBytes_FromStringAndSize("", 0);
    for (int i = 0; i < NMETHODS; i++) methods[i] = PyBytes_FromString(METHOD_NAMES[i]);
    Py_INCREF(&LaneType);
    PyModule_AddObject(m, "Lane", (PyObject *)&LaneType);
    Py_INCREF(&TransportType);
    PyModule_AddObject(m, "Transport", (PyObject *)&TransportType);
    PyModule_AddIntConstant(m, "CONNECT_FAILURE", F_CONNECT);
    PyModule_AddIntConstant(m, "RESET", F_RESET);
    PyModule_AddIntConstant(m, "PROTOCOL_ERROR", F_PROTOCOL);
    return m;
}
