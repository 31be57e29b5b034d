/* Growable byte buffers and the epoll plumbing every socket of the lane shares. */
#include "lane.h"

double lane_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- buffers */
int lane_buf_add(Buf *b, const char *p, size_t n) {
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
void lane_buf_free(Buf *b) { free(b->p); b->p = NULL; b->len = b->off = b->cap = 0; }

/* Once everything in it was used: freed (a client connection's buffers: thousands of
 * idle connections must not each keep one). */
void lane_buf_shrink(Buf *b) { if (b->off == b->len) lane_buf_free(b); }

/* Once everything in it was used: empty, keeping a small allocation (an upstream
 * socket's buffers: few, pooled, and used by every request that takes the socket). */
void lane_buf_clear(Buf *b) {
    if (b->off != b->len) return;
    if (b->cap > BUF_KEEP) lane_buf_free(b);
    else b->off = b->len = 0;
}

/* ---------------------------------------------------------------- epoll */
void lane_set_events(Lane *lane, Handle *h, unsigned *have, unsigned want) {
    if ((*have & ~REGISTERED) == want && (*have & REGISTERED)) return;
    struct epoll_event ev = {.events = want, .data.ptr = h};
    epoll_ctl(lane->ep, (*have & REGISTERED) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, h->fd, &ev);
    *have = want | REGISTERED;
}

void lane_kick(Lane *lane) {
    uint64_t one = 1;
    ssize_t r = write(lane->wake.fd, &one, sizeof one);
    (void)r;
}

void lane_defer(Transport *t) {
    if (t->deferred) return;
    if (PyList_Append(t->lane->deferred, (PyObject *)t) == 0) t->deferred = 1;
    lane_kick(t->lane);
}

void lane_report(PyObject *where) {
    if (PyErr_Occurred()) PyErr_WriteUnraisable(where);
}
