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
 *    `lane_parse_head`) on a connection that has never gone through
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
 * and calls pause_writing; below LOW_WATER both resume.
 *
 * Files (one extension module, `gateway.http.native_lane`): lane.h, what they
 * share; buffer.c, buffers and epoll; heads.c, HTTP/1.1 framing; transport.c,
 * the client connection; relay.c, upstream sockets and the response relay;
 * lane.c, the Lane type and the module. */
#include "lane.h"

PyObject *s_connection_made, *s_data_received, *s_eof_received, *s_connection_lost,
    *s_pause_writing, *s_resume_writing, *s_lane_request, *s_lane_head, *s_lane_interim,
    *s_lane_complete, *s_lane_failed, *s_peername, *s_sockname, *empty_bytes;

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
        if (!t) { close(fd); lane_report(l->factory); return; }
        memset(((char *)t) + sizeof(PyObject), 0, sizeof(Transport) - sizeof(PyObject));
        t->h.kind = K_CLIENT;
        t->h.fd = fd;
        Py_INCREF(lane);
        t->lane = lane;
        t->listener = l;
        t->reading = 1;
        t->fast = 1;
        t->peer = lane_sockaddr_tuple(&ss); /* `local` is made when asked (HttpProxy never does) */
        lane->accepted++;
        t->protocol = PyObject_CallNoArgs(l->factory);
        if (!t->protocol) { lane_report(l->factory); Py_DECREF(t); continue; }
        lane_set_events(lane, &t->h, &t->events, EPOLLIN | EPOLLRDHUP);
        /* the lane's reference: dropped after connection_lost */
        PyObject *r = PyObject_CallMethodOneArg(t->protocol, s_connection_made, (PyObject *)t);
        if (!r) { lane_report(t->protocol); lane_transport_close_now(t); }
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
                if (!r) lane_report(t->protocol);
                Py_XDECREF(r);
                Py_CLEAR(t->protocol); /* it holds the transport: no cycle left behind */
                Py_DECREF(t); /* the lane's reference */
                continue;
            }
            if (t->failed && !t->closed) {
                int cause = t->failed - 1;
                t->failed = 0;
                lane_try_failed(t, cause);
            }
            if (t->pending_parse && !t->closed) {
                t->pending_parse = 0;
                if (t->fast) lane_client_parse(t);
                if (!t->closed && t->eof) lane_client_eof(t);
                if (!t->closed) lane_flush_client(t);
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
            lane_client_readable(t, ev);
            Py_DECREF(t);
            break;
        }
        case K_UPSTREAM: {
            Upstream *u = (Upstream *)h;
            if (u->dead) break;
            Transport *t = u->client;
            Py_XINCREF(t);
            lane_upstream_event(u, ev);
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
    double cutoff = lane_now() - older;
    for (long i = 0; i < lane->npools; i++) {
        while (lane->pools[i].head && lane->pools[i].head->idle_since <= cutoff)
            lane_upstream_close(lane->pools[i].head);
    }
    Py_RETURN_NONE;
}

PyObject *lane_idle(Lane *lane, PyObject *arg) {
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
        lane_upstream_close(lane->pools[pool].head);
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
            lane_upstream_unidle(lane, u);
            close(u->h.fd);
            lane_buf_free(&u->out);
            lane_buf_free(&u->in);
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
    "Client and upstream sockets of the HTTP proxy in C (see gateway/http/native/lane.c).", -1, NULL,
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
    lane_heads_init();
    Py_INCREF(&LaneType);
    PyModule_AddObject(m, "Lane", (PyObject *)&LaneType);
    Py_INCREF(&TransportType);
    PyModule_AddObject(m, "Transport", (PyObject *)&TransportType);
    return m;
}
