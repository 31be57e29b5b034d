/* Upstream sockets: the pools of idle ones, one try of a request on one, and the
 * response relayed from it to the client (Transport.forward and Transport.cancel). */
#include "lane.h"

/* ---------------------------------------------------------------- upstreams */
void lane_upstream_unidle(Lane *lane, Upstream *u) {
    Pool *p = &lane->pools[u->pool];
    if (u->prev) u->prev->next = u->next; else p->head = u->next;
    if (u->next) u->next->prev = u->prev; else p->tail = u->prev;
    u->next = u->prev = NULL;
    p->nidle--;
}

void lane_upstream_close(Upstream *u) {
    Lane *lane = u->lane;
    if (u->dead) return;
    if (u->state == U_IDLE) lane_upstream_unidle(lane, u);
    if (u->client && u->client->up == u) u->client->up = NULL;
    u->dead = 1;
    u->client = NULL;
    epoll_ctl(lane->ep, EPOLL_CTL_DEL, u->h.fd, NULL);
    close(u->h.fd);
    lane_buf_free(&u->out);
    lane_buf_free(&u->in);
    long pool = u->pool;
    lane->pools[pool].total--;
    u->grave = lane->graveyard;
    lane->graveyard = u;
    lane_kick(lane);
    PyObject *r = PyObject_CallFunction(lane->on_closed, "l", pool);
    if (!r) lane_report(lane->on_closed);
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

/* ---------------------------------------------------------------- upstream relay */
void lane_try_failed(Transport *t, int cause) {
    t->gen++;
    PyObject *n = PyLong_FromLong(cause);
    PyObject *r = n ? PyObject_CallMethodOneArg(t->protocol, s_lane_failed, n) : NULL;
    Py_XDECREF(n);
    if (!r) lane_report(t->protocol);
    Py_XDECREF(r);
}

void lane_upstream_fail(Upstream *u, int cause) {
    Transport *t = u->client;
    u->client = NULL;
    if (t) t->up = NULL;
    lane_upstream_close(u);
    if (!t || t->closed) return;
    if (t->forwarding) { /* inside forward(): told from run(), once the caller has bound the try */
        t->failed = cause + 1;
        lane_defer(t);
        return;
    }
    lane_try_failed(t, cause);
}

void lane_upstream_want(Upstream *u) {
    if (u->dead) return;
    unsigned want = 0;
    if (u->state == U_CONNECTING || buf_size(&u->out)) want |= EPOLLOUT;
    if (u->state != U_CONNECTING && !(u->client && u->client->write_paused))
        want |= EPOLLIN | EPOLLRDHUP;
    lane_set_events(u->lane, &u->h, &u->events, want);
}

/* Write request bytes: straight from `p` when nothing waits before them, the rest
 * kept for EPOLLOUT (`upstream_send`). */
static void upstream_send(Upstream *u);
static void upstream_write(Upstream *u, const char *p, size_t n) {
    while (n && !buf_size(&u->out)) {
        ssize_t w = send(u->h.fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            lane_upstream_fail(u, F_RESET);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
    if (n) lane_buf_add(&u->out, p, n);
    upstream_send(u);
}

static void upstream_send(Upstream *u) {
    while (buf_size(&u->out)) {
        ssize_t w = send(u->h.fd, u->out.p + u->out.off, buf_size(&u->out), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            lane_upstream_fail(u, F_RESET);
            return;
        }
        u->out.off += (size_t)w;
    }
    lane_buf_clear(&u->out);
    if (!buf_size(&u->out) && u->state == U_SENDING) u->state = U_HEAD;
    lane_upstream_want(u);
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
        u->idle_since = lane_now();
        lane_buf_clear(&u->in); /* kept (small) for the socket's next response */
        u->prev = p->tail;
        u->next = NULL;
        if (p->tail) p->tail->next = u; else p->head = u;
        p->tail = u;
        lane_set_events(u->lane, &u->h, &u->events, EPOLLIN | EPOLLRDHUP);
    } else {
        lane_upstream_close(u);
    }
    if (t && !t->closed) {
        t->gen++;
        PyObject *nbytes = PyLong_FromLongLong(n);
        PyObject *r = nbytes ? PyObject_CallMethodOneArg(t->protocol, s_lane_complete, nbytes) : NULL;
        Py_XDECREF(nbytes);
        if (!r) lane_report(t->protocol);
        Py_XDECREF(r);
    }
}

void lane_emit(Upstream *u, const char *p, size_t n) {
    Transport *t = u->client;
    if (!n || !t) return;
    u->bytes_out += (long long)n;
    if (u->client_chunked) {
        char size[24];
        int k = snprintf(size, sizeof size, "%zx\r\n", n);
        lane_client_queue(t, size, (size_t)k);
        lane_client_queue(t, p, n);
        lane_client_queue(t, "\r\n", 2);
    } else {
        lane_client_queue(t, p, n);
    }
}

static void finish_body(Upstream *u, size_t extra) {
    Transport *t = u->client;
    if (extra) u->reusable = 0; /* bytes past the response: never reuse */
    if (t && u->client_chunked) lane_client_queue(t, "0\r\n\r\n", 5);
    if (t) lane_flush_client(t);
    if (!u->dead) upstream_done(u);
}

static void upstream_bytes(Upstream *u, const char *p, size_t n) {
    unsigned epoch = u->epoch;
    while (n && u->client && !u->dead && u->epoch == epoch) {
        if (u->state == U_HEAD || u->state == U_SENDING) {
            size_t before = u->in.len;
            lane_buf_add(&u->in, p, n);
            const char *end = lane_find_end(u->in.p, u->in.len, before);
            if (end == BARE_LF) { lane_upstream_fail(u, F_PROTOCOL); return; }
            if (!end) {
                if (u->in.len > MAX_RESPONSE_HEAD) lane_upstream_fail(u, F_PROTOCOL);
                return;
            }
            size_t used = (size_t)(end - u->in.p);
            size_t from_p = used - before;
            int r = lane_response_head(u, used);
            if (r == -1) { lane_upstream_fail(u, F_PROTOCOL); return; }
            if (r == -2 || u->dead) return; /* the protocol took over (a retry, a close) */
            u->in.off = u->in.len = 0;
            p += from_p;
            n -= from_p;
            if (r == 1) continue; /* an interim response: the next head follows */
            if (u->mode == M_NONE) { finish_body(u, n); return; }
            continue;
        }
        if (u->state == U_BODY) {
            int complete;
            long used = lane_body(u, p, n, &complete);
            if (u->dead) return;
            if (used < 0) { /* a broken body after the head went out: the client is cut */
                lane_upstream_fail(u, F_PROTOCOL);
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

void lane_upstream_event(Upstream *u, unsigned ev) {
    static char chunk[READ_CHUNK];
    if (u->state == U_IDLE) { /* an idle socket that speaks is closing or broken */
        lane_upstream_close(u);
        return;
    }
    if (u->state == U_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(u->h.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (ev & (EPOLLERR | EPOLLHUP))) { lane_upstream_fail(u, F_CONNECT); return; }
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
            lane_upstream_fail(u, F_RESET);
            return;
        }
        if (r == 0) {
            if (u->state == U_BODY && u->mode == M_CLOSE) { u->reusable = 0; finish_body(u, 0); return; }
            lane_upstream_fail(u, F_RESET);
            return;
        }
        Transport *t = u->client;
        upstream_bytes(u, chunk, (size_t)r);
        if (t && !t->closed && t->up == u && buf_size(&t->out)) lane_flush_client(t);
        if (u->dead || u->epoch != epoch || !u->client) return;
        if ((size_t)r < sizeof chunk) return;
    }
}


/* ---------------------------------------------------------------- Transport.forward, .cancel */
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
PyObject *lane_tr_forward(Transport *t, PyObject *args) {
    long pool;
    const char *addr;
    int port, head_only;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "lsiy*p", &pool, &addr, &port, &data, &head_only)) return NULL;
    Lane *lane = t->lane;
    if (t->closed || ensure_pool(lane, pool) < 0) { PyBuffer_Release(&data); return PyLong_FromLong(-1); }
    if (t->up) { Upstream *old = t->up; t->up = NULL; old->client = NULL; lane_upstream_close(old); }
    Pool *p = &lane->pools[pool];
    Upstream *u = p->head;
    long result = 1;
    if (u) {
        lane_upstream_unidle(lane, u);
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
    u->in.off = u->in.len = 0;
    if (u->state == U_IDLE) u->state = U_SENDING;
    t->forwarding = 1;
    if (u->state == U_SENDING) {
        upstream_write(u, data.buf, (size_t)data.len);
    } else { /* connecting: written once connected */
        lane_buf_add(&u->out, data.buf, (size_t)data.len);
        lane_upstream_want(u);
    }
    t->forwarding = 0;
    PyBuffer_Release(&data);
    return PyLong_FromLong(result);
}

/* Drop the current try's upstream socket (a timeout, a retry, the client gone). */
PyObject *lane_tr_cancel(Transport *t, PyObject *unused) {
    Upstream *u = t->up;
    if (u) {
        t->up = NULL;
        u->client = NULL;
        t->gen++;
        lane_upstream_close(u);
    }
    Py_RETURN_NONE;
}
