"""The filter chain between route match and upstream (see `base` for the contract).

Request order (Gateway API / Envoy): CORS (preflight answered here) →
redirect → access rules → authentication → rate limit → request header
modifier → URL rewrite → mirrors; on the way back the response header
modifier. Each filter is one module here; the rule's chain is built once,
when the table is compiled, by `gateway.http.plan.build_plan` (the
`plan_rule` hook of `gateway.routing.compiler.compile_table`) and carried by
the rule (`CompiledRule.plan`, a `RulePlan`).

How to add a filter (access, auth, rate limit, ...):

1. Write `gateway/http/filters/<name>.py` with one class that has a `stage`
   (a `base.FilterStage`; add a member if none fits) and either
   `on_request(ex, facts, now) -> LocalAnswer | None` (may answer: 401, 403,
   429, ...) or `on_forward(ex, facts, ctx)` (sees the forwarded request,
   must not delay it). Build everything constant in `__init__` from the
   config (it runs once per rule at compile); keep per-request state out of
   the filter unless it is the filter's job (a rate limiter's buckets).
2. In `build_plan`, append an instance to `answering` (request filters) or
   `mirrors` (forward filters) when the rule's or route's config asks for it;
   `answering` is sorted by stage, so where you append does not matter.
3. Test it with plain values (an `Exchange` and `RequestFacts` built in the
   test, see tests/gateway/http/filters/) and once through a socket.

Nothing in the protocol core changes for a new filter: the proxy runs
`plan.request_filters` and `plan.forward_filters` whatever they hold.
"""
