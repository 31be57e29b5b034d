/* The client connection: its output, its fast request heads, and the Transport type
 * (the asyncio transport subset HttpProxy uses). */
#include "lane.h"

static void go_slow(Transport *t);

/* ---------------------------------------------------------------- client output */
void lane_flush_client(Transport *t) {
    if (t->closed) return;
    while (buf_size(&t->out)) {
        ssize_t w = send(t->h.fd, t->out.p + t->out.off, buf_size(&t->out), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            t->out.off = t->out.len = 0;
            lane_transport_close_now(t); /* the peer is gone: the reader sees it as a reset */
            return;
        }
        t->out.off += (size_t)w;
    }
    lane_buf_shrink(&t->out);
    size_t left = buf_size(&t->out);
    int read = t->reading && !t->eof && !(t->busy && buf_size(&t->in) >= HOLD_LIMIT);
    unsigned want = (read ? EPOLLIN | EPOLLRDHUP : 0) | (left ? EPOLLOUT : 0);
    lane_set_events(t->lane, &t->h, &t->events, want);
    if (t->write_paused && left <= LOW_WATER) {
        t->write_paused = 0;
        if (t->up) lane_upstream_want(t->up);
        PyObject *r = call0(t->protocol, s_resume_writing);
        if (!r) lane_report(t->protocol);
        Py_XDECREF(r);
    }
    if (!left && t->closing) lane_transport_close_now(t);
    else if (!left && t->shut_wr == 1) {
        shutdown(t->h.fd, SHUT_WR);
        t->shut_wr = 2;
    } else if (left > HIGH_WATER && !t->write_paused) {
        t->write_paused = 1;
        if (t->up) lane_upstream_want(t->up);
        PyObject *r = call0(t->protocol, s_pause_writing);
        if (!r) lane_report(t->protocol);
        Py_XDECREF(r);
    }
}

/* Queue bytes for the client without writing yet: a response head waits for its
 * first body bytes, and a read's pieces go out together (`lane_flush_client`). */
void lane_client_queue(Transport *t, const char *p, size_t n) {
    if (t->closed || t->closing || t->shut_wr || !n) return;
    lane_buf_add(&t->out, p, n);
}

static void client_write(Transport *t, const char *p, size_t n) {
    if (t->closed || t->closing || t->shut_wr || !n) return;
    if (!buf_size(&t->out)) {
        while (n) {
            ssize_t w = send(t->h.fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) break;
                lane_transport_close_now(t);
                return;
            }
            p += w;
            n -= (size_t)w;
        }
        if (!n) return;
    }
    lane_buf_add(&t->out, p, n);
    lane_flush_client(t);
}

/* Close the socket now; connection_lost follows from run(). */
void lane_transport_close_now(Transport *t) {
    if (t->closed) return;
    t->closed = 1;
    if (t->up) {
        Upstream *u = t->up;
        t->up = NULL;
        u->client = NULL;
        lane_upstream_close(u);
    }
    epoll_ctl(t->lane->ep, EPOLL_CTL_DEL, t->h.fd, NULL);
    close(t->h.fd);
    t->events = 0;
    lane_buf_free(&t->in);
    lane_buf_free(&t->out);
    lane_defer(t);
}


/* ---------------------------------------------------------------- client input */
/* Held client bytes, on a connection not busy: fast heads while they come. */
void lane_client_parse(Transport *t) {
    while (!t->closed && t->fast && !t->busy && !t->closing && buf_size(&t->in)) {
        Head h;
        int r = lane_parse_head(t->listener, t->in.p + t->in.off, buf_size(&t->in), t->scanned, &h);
        if (r == H_INCOMPLETE) {
            t->scanned = buf_size(&t->in);
            return;
        }
        t->scanned = 0;
        if (r == H_SLOW) { go_slow(t); return; }
        PyObject *method = lane_method_bytes(h.method, h.method_len);
        PyObject *path = PyBytes_FromStringAndSize(h.path, (Py_ssize_t)h.path_len);
        PyObject *query = h.query_len ? PyBytes_FromStringAndSize(h.query, (Py_ssize_t)h.query_len)
                                      : (Py_INCREF(empty_bytes), empty_bytes);
        PyObject *host = PyBytes_FromStringAndSize(h.host, (Py_ssize_t)h.host_len);
        PyObject *origin = h.origin_len ? PyBytes_FromStringAndSize(h.origin, (Py_ssize_t)h.origin_len)
                                        : (Py_INCREF(empty_bytes), empty_bytes);
        t->in.off += h.used;
        lane_buf_shrink(&t->in);
        t->busy = 1;
        t->lane->fast_requests++;
        PyObject *r2 = NULL;
        if (method && path && query && host && origin)
            r2 = PyObject_CallMethodObjArgs(t->protocol, s_lane_request, method, path, query, host,
                                            h.headers, origin, h.keep_alive ? Py_True : Py_False,
                                            NULL);
        Py_XDECREF(method); Py_XDECREF(path); Py_XDECREF(query); Py_XDECREF(host);
        Py_XDECREF(origin); Py_DECREF(h.headers);
        if (!r2) { lane_report(t->protocol); lane_transport_close_now(t); return; }
        Py_DECREF(r2);
    }
}

/* The client sent EOF: tell the protocol once the heads read before it were taken (a
 * fast request in flight, pipelined heads held), as its own parser would have read
 * them all before the EOF. Returns 1 when the connection is closing. */
int lane_client_eof(Transport *t) {
    if (t->eof_told || t->closed) return 0;
    if (t->fast && t->busy) return 0; /* again from request_done */
    if (t->fast && buf_size(&t->in)) go_slow(t); /* a partial head: its parser says so */
    if (t->closed) return 1;
    t->eof_told = 1;
    PyObject *res = call0(t->protocol, s_eof_received);
    if (!res) lane_report(t->protocol);
    int keep = res && PyObject_IsTrue(res) == 1;
    PyErr_Clear();
    Py_XDECREF(res);
    if (!keep && !t->closed) {
        t->closing = 1;
        lane_flush_client(t);
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
    lane_buf_free(&t->in);
    if (!data) { lane_report(t->protocol); return; }
    PyObject *r = PyObject_CallMethodOneArg(t->protocol, s_data_received, data);
    Py_DECREF(data);
    if (!r) lane_report(t->protocol);
    Py_XDECREF(r);
}

void lane_client_readable(Transport *t, unsigned ev) {
    static char chunk[READ_CHUNK];
    if ((ev & EPOLLERR) || ((ev & EPOLLHUP) && (!t->reading || t->eof))) {
        lane_transport_close_now(t); /* reset, or gone while we were not reading: nothing to deliver */
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
                lane_transport_close_now(t);
                return;
            }
            if (r == 0) {
                t->eof = 1;
                break;
            }
            if (t->fast) {
                lane_buf_add(&t->in, chunk, (size_t)r);
                lane_client_parse(t);
            } else {
                PyObject *data = PyBytes_FromStringAndSize(chunk, r);
                PyObject *res = data ? PyObject_CallMethodOneArg(t->protocol, s_data_received, data) : NULL;
                Py_XDECREF(data);
                if (!res) lane_report(t->protocol);
                Py_XDECREF(res);
            }
            if ((size_t)r < sizeof chunk) break;
        }
        if (t->eof && !t->closed && lane_client_eof(t)) return;
    }
    if (!t->closed) lane_flush_client(t); /* writes what waits, re-arms interest */
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
    if (!buf_size(&t->out)) lane_transport_close_now(t);
    Py_RETURN_NONE;
}

static PyObject *tr_abort(Transport *t, PyObject *unused) {
    if (!t->closed) {
        t->out.off = t->out.len = 0; /* what was not written is dropped, as asyncio's abort does */
        lane_transport_close_now(t);
    }
    Py_RETURN_NONE;
}

static PyObject *tr_is_closing(Transport *t, PyObject *unused) {
    return PyBool_FromLong(t->closed || t->closing);
}

static PyObject *tr_pause_reading(Transport *t, PyObject *unused) {
    t->reading = 0;
    if (!t->closed) lane_flush_client(t);
    Py_RETURN_NONE;
}

static PyObject *tr_resume_reading(Transport *t, PyObject *unused) {
    if (!t->reading) {
        t->reading = 1;
        if (!t->closed) lane_flush_client(t);
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

static PyObject *tr_get_extra_info(Transport *t, PyObject *args) {
    PyObject *name, *dflt = Py_None;
    if (!PyArg_ParseTuple(args, "O|O", &name, &dflt)) return NULL;
    if (PyUnicode_Check(name)) {
        if (PyUnicode_Compare(name, s_peername) == 0 && t->peer) { Py_INCREF(t->peer); return t->peer; }
        if (PyUnicode_Compare(name, s_sockname) == 0) {
            if (!t->local && !t->closed) {
                struct sockaddr_storage ls;
                socklen_t llen = sizeof ls;
                if (getsockname(t->h.fd, (struct sockaddr *)&ls, &llen) == 0) t->local = lane_sockaddr_tuple(&ls);
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
            lane_defer(t);
        } else if (!t->closed) {
            lane_flush_client(t);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *tr_idle(Transport *t, PyObject *arg) { return lane_idle(t->lane, arg); }

static PyObject *tr_connecting(Transport *t, void *unused) {
    return PyBool_FromLong(t->up && t->up->state == U_CONNECTING);
}
static PyObject *tr_fast(Transport *t, void *unused) { return PyBool_FromLong(t->fast); }


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
    {"forward", (PyCFunction)lane_tr_forward, METH_VARARGS, NULL},
    {"cancel", (PyCFunction)lane_tr_cancel, METH_NOARGS, NULL},
    {"idle", (PyCFunction)tr_idle, METH_O, "Idle pooled sockets of a pool."},
    {NULL},
};

static PyGetSetDef transport_getset[] = {
    {"connecting", (getter)tr_connecting, NULL, NULL, NULL},
    {"fast", (getter)tr_fast, NULL, NULL, NULL},
    {NULL},
};

static void tr_dealloc(Transport *t) {
    if (!t->closed && t->h.fd >= 0) {
        if (t->up) { Upstream *u = t->up; t->up = NULL; u->client = NULL; lane_upstream_close(u); }
        close(t->h.fd);
    }
    lane_buf_free(&t->in);
    lane_buf_free(&t->out);
    Py_XDECREF(t->protocol);
    Py_XDECREF(t->peer);
    Py_XDECREF(t->local);
    Py_XDECREF((PyObject *)t->lane);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

PyTypeObject TransportType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gateway.http.native_lane.Transport",
    .tp_basicsize = sizeof(Transport),
    .tp_dealloc = (destructor)tr_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A client connection owned by a Lane: the asyncio transport subset HttpProxy uses.",
    .tp_methods = transport_methods,
    .tp_getset = transport_getset,
};

PyObject *lane_sockaddr_tuple(struct sockaddr_storage *ss) {
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
