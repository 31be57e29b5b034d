/* HTTP/1.1 framing: request heads (the fast path's shape), response heads and response
 * bodies (length, chunked, to close), the rules the Python path's parsers also keep. */
#include "lane.h"

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

/* Whether p[0..n) is `lower` (a lowercase literal) in any case; the length is known at
 * compile time, so most names are told apart by it alone. */
#define name_is(p, n, lower) name_eq((p), (n), "" lower, sizeof(lower) - 1)
static int name_eq(const char *p, size_t n, const char *lower, size_t m) {
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
const char lane_bare_lf_mark;
const char *lane_find_end(const char *p, size_t n, size_t from) {
    const char *end = p + n;
    /* bytes before `from` were scanned by an earlier call: start 3 back, where a blank
     * line could have begun, so a head read one byte at a time costs linear time */
    const char *q = p + (from > 3 ? from - 3 : 0);
    for (; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++) {
        if (q == p || q[-1] != '\r') return BARE_LF;
        if (q + 2 < end && q[1] == '\r' && q[2] == '\n') return q + 3;
        if (q + 2 >= end) return NULL;
    }
    return NULL;
}

static const char *const METHOD_NAMES[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
#define NMETHODS 7
static PyObject *methods[8];

/* At module init: the common methods' bytes, shared by every request that names one. */
void lane_heads_init(void) {
    for (int i = 0; i < NMETHODS; i++) methods[i] = PyBytes_FromString(METHOD_NAMES[i]);
}

/* The index of a common method (case-sensitive, as RFC 9110 says), -1 for any other. */
static int known_method(const char *m, size_t n) {
    for (int i = 0; i < NMETHODS; i++)
        if (strlen(METHOD_NAMES[i]) == n && memcmp(METHOD_NAMES[i], m, n) == 0) return i;
    return -1;
}

typedef struct { const char *name, *value; size_t nlen, vlen; } Field;

/* The header field line at *q (lim: the head's final CRLF): its name and its value
 * without surrounding whitespace, *q moved past its CRLF. -1 when the line is not a
 * field: no token name, no colon, a control character, or (ascii_only) obs-text. */
static int scan_field(const char **q, const char *lim, int ascii_only, Field *f) {
    const char *s = *q;
    f->name = s;
    while (s < lim && TCHAR[(unsigned char)*s]) s++;
    if (s == f->name || s >= lim || *s != ':') return -1;
    f->nlen = (size_t)(s - f->name);
    s++;
    while (s < lim && (*s == ' ' || *s == '\t')) s++;
    const char *v = s;
    while (s < lim && *s != '\r') {
        unsigned char c = (unsigned char)*s;
        if (c == 0x7f || (c < 0x20 && c != '\t') || (ascii_only && c >= 0x80)) return -1;
        s++;
    }
    if (s >= lim || s[1] != '\n') return -1;
    const char *ve = s;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    f->value = v;
    f->vlen = (size_t)(ve - v);
    *q = s + 2;
    return 0;
}

/* The plain request shape, or H_SLOW for anything else (the Python parser then
 * answers it, refusing what is malformed), or H_INCOMPLETE. `h->headers` gets
 * the forwarded fields as (name, value) tuples, as RequestCore keeps them. */
int lane_parse_head(Listener *l, const char *p, size_t n, size_t from, Head *h) {
    const char *end = lane_find_end(p, n, from);
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
        Field f;
        if (scan_field(&q, lim, 1, &f) < 0) goto slow;
        const char *name = f.name, *v = f.value;
        size_t nlen = f.nlen, vlen = f.vlen;
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

PyObject *lane_method_bytes(const char *m, size_t n) {
    int i = known_method(m, n);
    if (i < 0) return PyBytes_FromStringAndSize(m, (Py_ssize_t)n);
    Py_INCREF(methods[i]);
    return methods[i];
}

/* ---------------------------------------------------------------- response framing */
/* Body bytes of the response; returns how many were used, -1 on a framing error. */
long lane_body(Upstream *u, const char *p, size_t n, int *complete) {
    size_t i = 0;
    *complete = 0;
    if (u->mode == M_NONE) { *complete = 1; return 0; }
    if (u->mode == M_CLOSE) { lane_emit(u, p, n); return (long)n; }
    if (u->mode == M_LENGTH) {
        size_t k = (long long)n < u->remaining ? n : (size_t)u->remaining;
        lane_emit(u, p, k);
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
            lane_emit(u, p + i, k);
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
/* A response head in u->in [0, end): parse, ask the protocol, relay what follows. */
int lane_response_head(Upstream *u, size_t end) {
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
        Field f;
        if (scan_field(&q, lim, 0, &f) < 0) goto bad;
        const char *name = f.name, *v = f.value;
        size_t nlen = f.nlen, vlen = f.vlen;
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
            PyObject *code = PyLong_FromLong(status);
            PyObject *r = code ? PyObject_CallMethodObjArgs(u->client->protocol, s_lane_interim,
                                                           code, lines, NULL)
                               : NULL;
            Py_XDECREF(code);
            if (!r) lane_report(u->client->protocol);
            Py_XDECREF(r);
        }
        Py_DECREF(lines);
        return 1; /* read the next head */
    }
    Transport *t = u->client;
    int gen = t->gen;
    PyObject *code = PyLong_FromLong(status);
    PyObject *r = code ? PyObject_CallMethodObjArgs(t->protocol, s_lane_head, code, lines,
                                                   has_length ? Py_True : Py_False, NULL)
                       : NULL;
    Py_XDECREF(code);
    Py_DECREF(lines);
    if (!r) { /* the protocol failed on it: the try fails as malformed, not left hanging */
        lane_report(t->protocol);
        if (t->up == u && !u->dead) lane_upstream_fail(u, F_PROTOCOL);
        return -2;
    }
    if (r == Py_None || t->gen != gen || t->up != u || t->closed) { Py_DECREF(r); return -2; }
    PyObject *head;
    int client_chunked;
    if (!PyArg_ParseTuple(r, "Sp", &head, &client_chunked)) {
        Py_DECREF(r);
        lane_report(t->protocol);
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
    lane_client_queue(t, PyBytes_AS_STRING(head), (size_t)PyBytes_GET_SIZE(head));
    Py_DECREF(head);
    return 0;
bad:
    Py_XDECREF(named);
    Py_DECREF(lines);
    return -1;
}
