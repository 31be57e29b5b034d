/* The native socket lane's private header: the structs, states and limits its files
 * share, and the functions one file calls in another (the theory of operation is at
 * the top of lane.c). Only PyInit_native_lane leaves the shared object: everything
 * declared here is hidden. */
#ifndef PORTWAY_NATIVE_LANE_H
#define PORTWAY_NATIVE_LANE_H

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
#define BUF_KEEP (16 * 1024) /* an upstream buffer up to this size stays between requests */

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

enum { H_INCOMPLETE = 0, H_FAST = 1, H_SLOW = -1 };

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

#define REGISTERED (1u << 26) /* a bit epoll does not use: the fd is in the set */

#pragma GCC visibility push(hidden)

extern PyTypeObject TransportType;
extern PyObject *s_connection_made, *s_data_received, *s_eof_received, *s_connection_lost,
    *s_pause_writing, *s_resume_writing, *s_lane_request, *s_lane_head, *s_lane_interim,
    *s_lane_complete, *s_lane_failed, *s_peername, *s_sockname, *empty_bytes;

static inline size_t buf_size(Buf *b) { return b->len - b->off; }

static inline PyObject *call0(PyObject *obj, PyObject *name) {
    return PyObject_CallMethodNoArgs(obj, name);
}

/* buffer.c: buffers, epoll interest, the wake-up eventfd, the run() work list */
double lane_now(void);
int lane_buf_add(Buf *b, const char *p, size_t n);
void lane_buf_free(Buf *b);
void lane_buf_shrink(Buf *b);
void lane_buf_clear(Buf *b);
void lane_set_events(Lane *lane, Handle *h, unsigned *have, unsigned want);
void lane_kick(Lane *lane);
void lane_defer(Transport *t);
void lane_report(PyObject *where);

/* heads.c: HTTP/1.1 framing (request heads, response heads, response bodies) */
extern const char lane_bare_lf_mark;
#define BARE_LF (&lane_bare_lf_mark)
void lane_heads_init(void);
const char *lane_find_end(const char *p, size_t n, size_t from);
int lane_parse_head(Listener *l, const char *p, size_t n, size_t from, Head *h);
PyObject *lane_method_bytes(const char *m, size_t n);
long lane_body(Upstream *u, const char *p, size_t n, int *complete);
int lane_response_head(Upstream *u, size_t end);

/* transport.c: the client connection */
void lane_flush_client(Transport *t);
void lane_client_queue(Transport *t, const char *p, size_t n);
void lane_transport_close_now(Transport *t);
void lane_client_parse(Transport *t);
int lane_client_eof(Transport *t);
void lane_client_readable(Transport *t, unsigned ev);
PyObject *lane_sockaddr_tuple(struct sockaddr_storage *ss);

/* relay.c: upstream sockets, their pools, and the response relay */
void lane_upstream_unidle(Lane *lane, Upstream *u);
void lane_upstream_close(Upstream *u);
void lane_try_failed(Transport *t, int cause);
void lane_upstream_fail(Upstream *u, int cause);
void lane_upstream_want(Upstream *u);
void lane_emit(Upstream *u, const char *p, size_t n);
void lane_upstream_event(Upstream *u, unsigned ev);
PyObject *lane_tr_forward(Transport *t, PyObject *args);
PyObject *lane_tr_cancel(Transport *t, PyObject *unused);

/* lane.c */
PyObject *lane_idle(Lane *lane, PyObject *arg);

#pragma GCC visibility pop

#endif
