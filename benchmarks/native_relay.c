/* A measurement probe, not product code (benchmarks/native_relay.py builds and runs it).
 *
 * The question it answers: how fast is an HTTP/1.1 keep-alive relay whose sockets
 * and framing live in C and which calls into Python once per request for the
 * routing decision? serve(port, upstream_port, decide): decide is called with each
 * request's path (bytes) and returns an int, or is None (nothing called: the C
 * upper bound). One upstream connection per client connection, requests without
 * bodies, the request head forwarded with `X-Bench: 1` added (the header rewrite
 * every proxy in http.sh does), response bytes relayed as they come. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384
#define MAXFD 65536

typedef struct conn {
    int fd, peer;      /* peer: the other side's fd */
    int is_client;
    char in[BUF];
    size_t inlen;
} conn;

static conn *conns[MAXFD];

static int nonblock(int fd) { return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void drop(int ep, int fd) {
    conn *c = conns[fd];
    if (!c) return;
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    conns[fd] = NULL;
    int peer = c->peer;
    free(c);
    if (peer >= 0 && conns[peer]) { conns[peer]->peer = -1; drop(ep, peer); }
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) { if (errno == EINTR) continue; return -1; } /* EAGAIN: experiment keeps it simple */
        p += w; n -= (size_t)w;
    }
    return 0;
}

static PyObject *serve(PyObject *self, PyObject *args) {
    int port, upport;
    PyObject *decide;
    if (!PyArg_ParseTuple(args, "iiO", &port, &upport, &decide)) return NULL;
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) return PyErr_SetFromErrno(PyExc_OSError);
    nonblock(ls);
    struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons(upport)};
    inet_pton(AF_INET, "127.0.0.1", &up.sin_addr);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    printf("ready %d\n", getpid());
    fflush(stdout);
    char out[BUF + 64];
    for (;;) {
        int n;
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(ep, evs, 256, -1);
        Py_END_ALLOW_THREADS
        if (n < 0) { if (errno == EINTR) { if (PyErr_CheckSignals()) return NULL; continue; } return PyErr_SetFromErrno(PyExc_OSError); }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int cfd;
                while ((cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    nodelay(cfd);
                    int ufd = socket(AF_INET, SOCK_STREAM, 0);
                    nodelay(ufd);
                    if (connect(ufd, (struct sockaddr *)&up, sizeof up)) { close(cfd); close(ufd); continue; }
                    nonblock(ufd);
                    conn *c = calloc(1, sizeof *c), *u = calloc(1, sizeof *u);
                    c->fd = cfd; c->peer = ufd; c->is_client = 1;
                    u->fd = ufd; u->peer = cfd; u->is_client = 0;
                    conns[cfd] = c; conns[ufd] = u;
                    struct epoll_event e1 = {.events = EPOLLIN, .data.fd = cfd}, e2 = {.events = EPOLLIN, .data.fd = ufd};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &e1);
                    epoll_ctl(ep, EPOLL_CTL_ADD, ufd, &e2);
                }
                continue;
            }
            conn *c = conns[fd];
            if (!c) continue;
            ssize_t r = recv(fd, c->in + c->inlen, BUF - c->inlen, 0);
            if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; drop(ep, fd); continue; }
            if (!c->is_client) { /* response bytes: relay as they come */
                if (send_all(c->peer, c->in, (size_t)r)) drop(ep, fd);
                continue;
            }
            c->inlen += (size_t)r;
            for (;;) { /* every complete request head in the buffer */
                char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
                if (!end) break;
                size_t head = (size_t)(end - c->in) + 4;
                char *sp1 = memchr(c->in, ' ', head);
                char *sp2 = sp1 ? memchr(sp1 + 1, ' ', head - (size_t)(sp1 + 1 - c->in)) : NULL;
                if (!sp2) { drop(ep, fd); break; }
                if (decide != Py_None) {
                    PyObject *path = PyBytes_FromStringAndSize(sp1 + 1, sp2 - sp1 - 1);
                    PyObject *res = PyObject_CallOneArg(decide, path);
                    Py_DECREF(path);
                    if (!res) return NULL;
                    Py_DECREF(res);
                }
                size_t keep = head - 2; /* up to the last header's CRLF */
                memcpy(out, c->in, keep);
                memcpy(out + keep, "X-Bench: 1\r\n\r\n", 14);
                if (send_all(c->peer, out, keep + 14)) { drop(ep, fd); break; }
                memmove(c->in, c->in + head, c->inlen - head);
                c->inlen -= head;
            }
        }
    }
}

static PyMethodDef methods[] = {{"serve", serve, METH_VARARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "native_relay_probe", NULL, -1, methods};
PyMODINIT_FUNC PyInit_native_relay_probe(void) { return PyModule_Create(&mod); }
