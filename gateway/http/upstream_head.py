"""The upstream request head of each request on a client connection.

Theory of operation. A request is forwarded as its request line (`ex.line`:
method, the rule's rewritten path, query) and a head (`ex.head`): the
client's header lines less the ones the rule, mTLS or tracing replace, the
rule's added lines, `X-Request-Id`, the forwarding headers, the verified
client subject, the body framing and upgrade, trace context and `Via`,
then the blank line. `UpstreamHeads.fill` builds both.

A keep-alive client usually repeats its request. A connection's
`UpstreamHeads` keeps the last plain head (HTTP/1.1, no body framing,
upgrade, trace, believed forwarding headers or client request id) split
around its request id, so the same request again costs two concatenations;
it keeps the forwarding lines of the last Host and the HTTP/1.1 `Via` line
too. The connection (`http.proxy.HttpProxy`) makes one when a request
starts and has none, from facts that stay the same for the connection's
life, and drops it while the connection idles (`shed`).
"""

from __future__ import annotations

from gateway.context import GatewayContext
from gateway.http import head as hh
from gateway.http.exchange import REQUEST_IDS, Exchange
from gateway.http.plan import (
    RulePlan,
    forwarding_lines,
    plain_forwarding_lines,
    shared,
    via_line,
)


class UpstreamHeads:
    """Builds one client connection's upstream request heads; see the module docstring.

    `ctx`, `client_ip`, `proto`, `trusted`, `subject_drop` and `subject_line` are
    the connection's (`subject_*`: the mTLS subject header's name to remove from
    what the client sent, and the line that carries the verified one). The
    memo of the last plain head is `plan` (None until there is one: the
    matched rule's plan, or its backendRef's), the request it was made for
    (`path`, `headers`, `host`, `method`, `query`), its `line`, and its head
    before and after the request id (`before_id`, `after_id`).
    """

    __slots__ = (
        "after_id",
        "before_id",
        "client_ip",
        "ctx",
        "fwd_host",
        "fwd_lines",
        "headers",
        "host",
        "line",
        "method",
        "path",
        "plan",
        "proto",
        "query",
        "subject_drop",
        "subject_line",
        "trusted",
        "via11",
    )

    def __init__(
        self,
        ctx: GatewayContext,
        client_ip: str,
        proto: bytes,
        trusted: bool,
        subject_drop: frozenset[bytes] | None,
        subject_line: bytes,
    ) -> None:
        self.ctx = ctx
        self.client_ip = client_ip
        self.proto = proto
        self.trusted = trusted
        self.subject_drop = subject_drop
        self.subject_line = subject_line
        self.plan: RulePlan | None = None
        self.path = b""
        self.headers: hh.Headers | None = None
        self.host = b""
        self.method = b""
        self.query = b""
        self.line = b""
        self.before_id = b""
        self.after_id = b""
        self.fwd_host: bytes | None = None
        """The Host `fwd_lines` were made for."""
        self.fwd_lines = b""
        self.via11 = b""

    def fill(self, ex: Exchange, plan: RulePlan) -> None:
        """Set `ex.line` (request line), `ex.head` (header lines and the blank line),
        `ex.request_id` (a new one unless the client sent one), `ex.via` and
        `ex.fixed_host` (the Host the rule sends, if it fixes one)."""
        if (
            self.plan is plan
            and self.path == ex.path
            and self.headers == ex.headers
            and self.host == ex.host
            and self.method == ex.method
            and self.query == ex.query
            and not ex.request_id
            and _plain(ex)
        ):
            ex.line = self.line
            ex.request_id = rid = REQUEST_IDS.next()
            ex.head = self.before_id + rid + self.after_id
            ex.via = self.via11
        else:
            self._build(ex, plan)
        if plan.host_rewrite:
            ex.fixed_host = plan.host_rewrite
        elif plan.preserve_host:
            ex.fixed_host = ex.host

    def _build(self, ex: Exchange, plan: RulePlan) -> None:
        """`fill` for a request unlike the last plain one; it becomes the memo if plain."""
        plain = not ex.request_id
        rewrite = plan.path_rewrite
        target = rewrite.target(ex.path) if rewrite is not None else ex.path
        if ex.query:
            target += b"?" + ex.query
        ex.line = ex.method + b" " + target + b" HTTP/1.1\r\n"
        trace: hh.Headers = []
        if ex.log is not None:
            trace = self.ctx.observer.upstream_headers(ex.token)
        drop = plan.request_drop
        if self.subject_drop is not None:
            drop = drop | self.subject_drop
        if trace:  # replaces the client's traceparent/tracestate, never duplicates them
            drop = drop | {name for name, _ in trace}
        if not ex.headers:
            lines = []
        elif drop:
            lines = [n + b": " + v + b"\r\n" for n, v in ex.headers if n.lower() not in drop]
        else:
            lines = [n + b": " + v + b"\r\n" for n, v in ex.headers]
        lines.append(plan.request_lines)
        split = len(lines)
        if not ex.request_id:
            ex.request_id = rid = REQUEST_IDS.next()
            lines.append(b"X-Request-Id: " + rid + b"\r\n")
        if ex.fwd is None:  # nothing believed from the client: the same lines per Host
            if ex.host != self.fwd_host or not self.fwd_lines:
                self.fwd_host = ex.host
                self.fwd_lines = plain_forwarding_lines(self.client_ip, self.proto, ex.host)
            lines.append(self.fwd_lines)
        else:
            lines.append(self._forwarding(ex))
        if self.subject_line:
            lines.append(self.subject_line)
        if ex.chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        if ex.upgrade:
            lines.append(b"Connection: upgrade\r\nUpgrade: " + ex.upgrade + b"\r\n")
        for name, value in trace:
            lines.append(name + b": " + value + b"\r\n")
        if ex.version == "1.1":
            via = self.via11
            if not via:
                via = self.via11 = via_line("1.1", self.ctx.settings.via)
        else:
            via = via_line(ex.version, self.ctx.settings.via)
        ex.via = via
        lines.append(via)
        lines.append(b"\r\n")
        ex.head = b"".join(lines)
        if plain and _plain(ex):
            self.plan = plan
            self.path = ex.path
            self.headers = ex.headers  # not copied: a new list is made for each request
            self.host = ex.host
            self.method = ex.method
            self.query = ex.query
            self.line = ex.line
            self.before_id = b"".join(lines[:split]) + b"X-Request-Id: "
            self.after_id = shared(b"\r\n" + b"".join(lines[split + 1 :]))

    def _forwarding(self, ex: Exchange) -> bytes:
        return forwarding_lines(
            ex.fwd,
            trusted=self.trusted,
            client_ip=self.client_ip.encode("ascii"),
            proto=self.proto,
            host=ex.host,
        )


def _plain(ex: Exchange) -> bool:
    """Whether `ex`'s head may be remembered: HTTP/1.1 without body framing, upgrade,
    trace context or believed forwarding headers (the request id is checked apart)."""
    return (
        ex.log is None
        and ex.fwd is None
        and not ex.chunked
        and not ex.upgrade
        and ex.version == "1.1"
    )
