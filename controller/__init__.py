"""The per-cluster controller: Kubernetes objects in, registry records out.

`objects` (the fields derivation reads) <- `kube_objects` (the client's objects,
converted at the edge) -> `derive` (pure: records and a verdict per node) with
`nodeports` (range validation); `watch`/`cache` feed it, `publish` writes the
result under a `leader` Lease. `doctor`/`probes`/`network_policy` answer
"why is this Service (not) reachable?" for `portway doctor`.
"""
