# ruff: noqa: E501 (a table of test ids)
"""Every leaf of the config schema names the test that fails when the gateway ignores it.

A config field that is parsed, validated and read by nothing is a defect. This
table maps each leaf of `config/portway.schema.json` (as the model generates
it) to the test that holds the running gateway to it; a leaf under an entry of
`gateway.config.unsupported.NOT_SUPPORTED` needs none (`portway check` and the
gateway refuse it). So adding a field fails this suite until it gets either a
line here, with the test that fails when the field is ignored, or a line in
NOT_SUPPORTED. Enforcing a NOT_SUPPORTED field: delete its line there, add its
leaves here.

The table is checked mechanically as far as that goes: each test exists, and
its module names the field (camelCase or snake_case key); that the test fails
when the field is ignored is the reviewer's part.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import check_config_text
from gateway.config.schema import config_schema
from gateway.config.unsupported import NOT_SUPPORTED

TESTS = Path(__file__).resolve().parents[2]

ROUTING_LOCALITY = "gateway/routing/test_routing_locality.py"
ROUTING_EXPANSION = "gateway/routing/test_routing_expansion.py"
ROUTING_FIELDS = "gateway/routing/test_routing_config_fields.py"
HTTP_FIELDS = "gateway/http/test_http_config_fields.py"
HTTP_PROXY = "gateway/http/test_http_proxy.py"
SERVER_E2E = "gateway/runtime/test_server_e2e.py"
TELEMETRY_E2E = f"{SERVER_E2E}::test_access_log_metrics_and_traces_from_real_requests"
HEADER_FILTERS = f"{HTTP_PROXY}::test_header_filters_host_and_path_rewrite"
BACKEND_REF_FILTERS = (
    "gateway/http/test_http_filters.py::test_backend_ref_header_modifiers_apply_after_the_rules"
)
SPLIT = "gateway/routing/test_routing_split.py"
HEALTH_E2E = "gateway/upstream/test_resilience_enforced.py::test_a_failing_health_check_takes_the_endpoint_out_and_a_passing_one_back"
OUTLIER = "gateway/upstream/test_outlier.py"
UPSTREAM_TLS = "gateway/upstream/test_upstream_tls.py"
RATE_LIMIT = "gateway/http/filters/test_rate_limit.py"
AUTH = "gateway/http/filters/test_auth_filter.py"
EDGE_E2E = "gateway/http/filters/test_edge_filters_e2e.py"
SHARED_LIMIT_E2E = "gateway/http/filters/test_shared_rate_limit_e2e.py"
FILTER_UNITS = "gateway/http/filters/test_filter_units.py"
TCP_EDGE = "gateway/l4/test_tcp_edge.py"
BODY_LIMITS = "gateway/http/test_http_body_limits.py"
CORS_PREFLIGHT = f"{FILTER_UNITS}::test_cors_preflight_is_answered_with_the_policy"
REGISTRY_E2E = f"{SERVER_E2E}::test_registry_records_drive_routing_and_readiness"
ROUTES_ETCD = "registry/test_registry_routes_command.py::test_routes_list_reads_the_etcd_registry_the_config_names"
ROLLOUT = "gateway/rollout/test_rollout_runner.py"

COVERAGE: dict[str, str] = {
    "version": "gateway/config/test_config_coverage.py::test_version_other_than_1_is_refused",
    # gateway
    "gateway.region": f"{ROUTING_LOCALITY}::test_levels_follow_zone_then_region_then_rest",
    "gateway.zone": f"{ROUTING_LOCALITY}::test_levels_follow_zone_then_region_then_rest",
    "gateway.trustedProxies": f"{HTTP_PROXY}::test_forwarding_headers_from_trusted_proxies_are_appended",
    "gateway.maxRequestLineBytes": f"{HTTP_FIELDS}::test_max_request_line_bytes_answers_414",
    "gateway.maxHeaderBytes": f"{HTTP_FIELDS}::test_max_header_bytes_answers_431",
    "gateway.nativeSockets": "gateway/http/test_http_idle.py::"
    "test_an_idle_keep_alive_connection_sheds_its_parser_and_serves_the_next_request",
    "gateway.maxHeaders": "gateway/http/test_http_strict.py::test_limits_come_from_gateway_settings",
    "gateway.firstRequestTimeout": "gateway/http/test_http_idle.py::test_connection_that_never_sends_a_request_is_closed_after_first_request_timeout",
    "gateway.via": f"{HTTP_FIELDS}::test_via_names_the_gateway_in_the_via_header",
    # listeners
    "listeners[].name": "gateway/routing/test_routing_listener_index.py::test_route_attaches_only_to_named_listeners",
    "listeners[].protocol": "gateway/l4/test_tcp_proxy.py::test_tls_passthrough_routes_on_sni_without_terminating",
    "listeners[].port": "gateway/runtime/test_bind_addresses.py::test_listener_and_admin_bind_the_configured_addresses",
    "listeners[].address": "gateway/runtime/test_bind_addresses.py::test_listener_and_admin_bind_the_configured_addresses",
    "listeners[].hostnames": "gateway/l4/test_tcp_proxy.py::test_tls_passthrough_routes_on_sni_without_terminating",
    "listeners[].tls.certificates[].certFile": "gateway/l4/test_tcp_proxy.py::test_https_listener_terminates_tls_with_the_certificate_for_the_sni_name",
    "listeners[].tls.certificates[].keyFile": "gateway/l4/test_tcp_proxy.py::test_https_listener_terminates_tls_with_the_certificate_for_the_sni_name",
    "listeners[].tls.certificates[].hostnames": "gateway/l4/test_tcp_proxy.py::test_https_listener_terminates_tls_with_the_certificate_for_the_sni_name",
    "listeners[].tls.minVersion": f"{HTTP_FIELDS}::test_min_version_tls13_refuses_a_tls12_client",
    "listeners[].tls.alpn": f"{HTTP_FIELDS}::test_alpn_offers_the_configured_protocols",
    "listeners[].tls.clientAuth": "gateway/runtime/test_tls_lifecycle.py::test_mtls_passes_the_verified_subject_upstream_and_drops_a_forged_one",
    "listeners[].tls.clientCaFile": "gateway/runtime/test_tls_lifecycle.py::test_mtls_passes_the_verified_subject_upstream_and_drops_a_forged_one",
    "listeners[].tls.clientSubjectHeader": "gateway/runtime/test_tls_lifecycle.py::test_mtls_passes_the_verified_subject_upstream_and_drops_a_forged_one",
    "listeners[].proxyProtocol": f"{TCP_EDGE}::test_proxy_protocol_on_a_tcp_listener",
    "listeners[].access.rules[].action": f"{TCP_EDGE}::test_refused_by_listener_or_route_access_is_closed_and_nothing_is_connected",
    "listeners[].access.rules[].cidrs": f"{TCP_EDGE}::test_refused_by_listener_or_route_access_is_closed_and_nothing_is_connected",
    "listeners[].access.default": f"{TCP_EDGE}::test_refused_by_listener_or_route_access_is_closed_and_nothing_is_connected",
    "listeners[].access.rules[].countries": f"{TCP_EDGE}::test_listener_country_rules_use_the_maxmind_database",
    "listeners[].access.geoipDatabase": f"{TCP_EDGE}::test_listener_country_rules_use_the_maxmind_database",
    "listeners[].maxRequestBodyBytes": f"{BODY_LIMITS}::test_listener_limit_refuses_a_larger_content_length_before_forwarding",
    # routes
    "routes[].name": TELEMETRY_E2E,
    "routes[].listeners": "gateway/routing/test_routing_listener_index.py::test_route_attaches_only_to_named_listeners",
    "routes[].hostnames": "gateway/routing/test_routing_match.py::test_exact_host_then_longest_wildcard_then_no_hostnames",
    "routes[].allowedRegions": f"{ROUTING_LOCALITY}::test_route_allowed_regions_intersect_with_backend_ones",
    "routes[].rules[].name": "gateway/ops/test_admin.py::test_routes_lists_the_active_routes_in_config_vocabulary",
    "routes[].rules[].backendRefs[].name": "gateway/routing/test_routing_properties.py::test_weighted_split_converges_within_one_percent",
    "routes[].rules[].backendRefs[].weight": "gateway/routing/test_routing_properties.py::test_weighted_split_converges_within_one_percent",
    "routes[].rules[].matches[].path.type": "gateway/routing/test_routing_match.py::test_exact_path_beats_longer_prefix_and_regex",
    "routes[].rules[].matches[].path.value": "gateway/routing/test_routing_match.py::test_exact_path_beats_longer_prefix_and_regex",
    "routes[].rules[].matches[].headers[].name": "gateway/routing/test_routing_match.py::test_regex_header_match_uses_fullmatch",
    "routes[].rules[].matches[].headers[].value": "gateway/routing/test_routing_match.py::test_regex_header_match_uses_fullmatch",
    "routes[].rules[].matches[].headers[].type": "gateway/routing/test_routing_match.py::test_regex_header_match_uses_fullmatch",
    "routes[].rules[].matches[].queryParams[].name": "gateway/routing/test_routing_match.py::test_method_then_header_count_then_query_count_break_path_ties",
    "routes[].rules[].matches[].queryParams[].value": "gateway/routing/test_routing_match.py::test_method_then_header_count_then_query_count_break_path_ties",
    "routes[].rules[].matches[].queryParams[].type": "gateway/routing/test_routing_match.py::test_method_then_header_count_then_query_count_break_path_ties",
    "routes[].rules[].matches[].method": f"{ROUTING_FIELDS}::test_a_method_match_routes_only_that_method",
    "routes[].rules[].canary.backend": f"{SPLIT}::test_canary_percent_takes_its_share",
    "routes[].rules[].canary.percent": f"{ROUTING_FIELDS}::test_canary_percent_is_the_share_it_takes",
    "routes[].rules[].canary.header.name": f"{SPLIT}::test_canary_header_override_forces_canary_even_at_zero_percent",
    "routes[].rules[].canary.header.value": f"{SPLIT}::test_canary_header_override_forces_canary_even_at_zero_percent",
    "routes[].rules[].canary.cookie.name": f"{SPLIT}::test_canary_cookie_override_forces_canary",
    "routes[].rules[].canary.cookie.value": f"{SPLIT}::test_canary_cookie_override_forces_canary",
    "routes[].rules[].canary.sticky": "gateway/http/test_http_sticky_and_affinity.py::test_sticky_canary_sets_its_cookie_and_keeps_the_client_on_its_side",
    "routes[].rules[].canary.stickyCookie": "gateway/http/test_http_sticky_and_affinity.py::test_sticky_canary_sets_its_cookie_and_keeps_the_client_on_its_side",
    "routes[].rules[].canary.rollout.steps[].percent": f"{ROLLOUT}::test_a_healthy_canary_walks_the_steps_after_each_pause_and_is_promoted",
    "routes[].rules[].canary.rollout.steps[].pause": f"{ROLLOUT}::test_a_healthy_canary_walks_the_steps_after_each_pause_and_is_promoted",
    "routes[].rules[].canary.rollout.maxErrorRate": f"{ROLLOUT}::test_errors_over_max_error_rate_roll_back_at_once_and_a_higher_limit_passes_them",
    "routes[].rules[].canary.rollout.maxP99": f"{ROLLOUT}::test_a_canary_slower_than_max_p99_is_rolled_back",
    "routes[].rules[].canary.rollout.minRequests": f"{ROLLOUT}::test_a_step_with_fewer_than_min_requests_is_held_past_its_pause",
    "routes[].rules[].canary.rollout.rollbackOnFailure": f"{ROLLOUT}::test_rollback_on_failure_off_pauses_at_the_failing_weight",
    "routes[].rules[].filters.requestHeaders.set[].name": HEADER_FILTERS,
    "routes[].rules[].filters.requestHeaders.set[].value": HEADER_FILTERS,
    "routes[].rules[].filters.requestHeaders.add[].name": HEADER_FILTERS,
    "routes[].rules[].filters.requestHeaders.add[].value": HEADER_FILTERS,
    "routes[].rules[].filters.requestHeaders.remove": HEADER_FILTERS,
    "routes[].rules[].filters.responseHeaders.set[].name": HEADER_FILTERS,
    "routes[].rules[].filters.responseHeaders.set[].value": HEADER_FILTERS,
    "routes[].rules[].filters.responseHeaders.add[].name": f"{HTTP_FIELDS}::test_response_headers_add_appends_to_the_upstream_s_answer",
    "routes[].rules[].filters.responseHeaders.add[].value": f"{HTTP_FIELDS}::test_response_headers_add_appends_to_the_upstream_s_answer",
    "routes[].rules[].filters.responseHeaders.remove": HEADER_FILTERS,
    "routes[].rules[].filters.urlRewrite.hostname": HEADER_FILTERS,
    "routes[].rules[].filters.urlRewrite.replacePrefixMatch": HEADER_FILTERS,
    "routes[].rules[].filters.urlRewrite.replaceFullPath": f"{HTTP_FIELDS}::test_url_rewrite_replace_full_path_sends_the_whole_new_path",
    "routes[].rules[].filters.redirect.scheme": f"{HTTP_PROXY}::test_redirect_rule_answers_without_upstream",
    "routes[].rules[].filters.redirect.statusCode": f"{HTTP_PROXY}::test_redirect_rule_answers_without_upstream",
    "routes[].rules[].filters.redirect.hostname": "gateway/routing/test_routing_rule.py::test_redirect_with_host_port_and_path",
    "routes[].rules[].filters.redirect.port": "gateway/routing/test_routing_rule.py::test_redirect_with_host_port_and_path",
    "routes[].rules[].filters.redirect.path": "gateway/routing/test_routing_rule.py::test_redirect_with_host_port_and_path",
    "routes[].rules[].filters.redirect.replaceFullPath": f"{FILTER_UNITS}::test_redirect_hostname_port_and_paths",
    "routes[].rules[].filters.redirect.replacePrefixMatch": "gateway/http/test_http_filters.py::test_redirect_only_rule_with_prefix_replacement",
    "routes[].rules[].filters.mirrors[].backend": "gateway/http/test_http_filters.py::test_mirror_copies_reach_the_mirror_backend",
    "routes[].rules[].filters.mirrors[].percent": f"{FILTER_UNITS}::test_mirror_percent_skips_and_limits_without_touching_the_request",
    "routes[].rules[].filters.cors.allowOrigins": CORS_PREFLIGHT,
    "routes[].rules[].filters.cors.allowMethods": CORS_PREFLIGHT,
    "routes[].rules[].filters.cors.allowHeaders": CORS_PREFLIGHT,
    "routes[].rules[].filters.cors.maxAge": CORS_PREFLIGHT,
    "routes[].rules[].filters.cors.exposeHeaders": f"{FILTER_UNITS}::test_cors_actual_request_gets_response_headers_and_goes_on",
    "routes[].rules[].filters.cors.allowCredentials": f"{FILTER_UNITS}::test_cors_wildcards_echo_the_request_with_credentials",
    "routes[].rules[].filters.preserveHost": f"{HTTP_FIELDS}::test_preserve_host_off_sends_the_endpoint_s_address_as_host",
    "routes[].rules[].backendRefs[].filters.requestHeaders.set[].name": BACKEND_REF_FILTERS,
    "routes[].rules[].backendRefs[].filters.requestHeaders.set[].value": BACKEND_REF_FILTERS,
    "routes[].rules[].backendRefs[].filters.requestHeaders.add[].name": BACKEND_REF_FILTERS,
    "routes[].rules[].backendRefs[].filters.requestHeaders.add[].value": BACKEND_REF_FILTERS,
    "routes[].rules[].backendRefs[].filters.requestHeaders.remove": f"{FILTER_UNITS}::test_backend_modifier_applies_after_the_rule_and_wins_on_the_same_name",
    "routes[].rules[].backendRefs[].filters.responseHeaders.set[].name": BACKEND_REF_FILTERS,
    "routes[].rules[].backendRefs[].filters.responseHeaders.set[].value": BACKEND_REF_FILTERS,
    "routes[].rules[].backendRefs[].filters.responseHeaders.add[].name": BACKEND_REF_FILTERS,
    "routes[].rules[].backendRefs[].filters.responseHeaders.add[].value": BACKEND_REF_FILTERS,
    "routes[].rules[].backendRefs[].filters.responseHeaders.remove": f"{FILTER_UNITS}::test_backend_modifier_applies_after_the_rule_and_wins_on_the_same_name",
    "routes[].rules[].timeouts.request": f"{HTTP_PROXY}::test_request_timeout_is_504",
    "routes[].rules[].timeouts.backendRequest": f"{HTTP_FIELDS}::test_backend_request_timeout_bounds_one_try",
    "routes[].rules[].timeouts.connect": f"{HTTP_FIELDS}::test_connect_timeout_gives_up_on_a_black_holed_endpoint",
    "routes[].rules[].timeouts.idle": "gateway/http/test_http_idle.py::test_connection_idle_after_a_request_is_closed_after_the_rules_idle_timeout",
    "routes[].rules[].retry.attempts": f"{HTTP_PROXY}::test_retry_fails_over_when_one_endpoint_port_is_closed",
    "routes[].rules[].retry.on": f"{HTTP_PROXY}::test_per_try_timeout_retries_on_another_endpoint",
    "routes[].rules[].retry.perTryTimeout": f"{HTTP_PROXY}::test_per_try_timeout_retries_on_another_endpoint",
    "routes[].rules[].retry.backoffBase": "gateway/upstream/test_retry_policy.py::test_backoff_applies_to_the_same_endpoint_and_to_requests_an_upstream_saw",
    "routes[].rules[].retry.backoffMax": "gateway/upstream/test_retry_policy.py::test_backoff_applies_to_the_same_endpoint_and_to_requests_an_upstream_saw",
    "routes[].rules[].retry.budget.percent": "gateway/http/test_http_retry_budget.py::test_retries_beyond_the_budget_are_refused",
    "routes[].rules[].retry.budget.minConcurrency": "gateway/http/test_http_retry_budget.py::test_retries_beyond_the_budget_are_refused",
    "routes[].rules[].retry.idempotentOnly": f"{HTTP_FIELDS}::test_idempotent_only_off_retries_a_post_on_another_endpoint",
    "routes[].rules[].rateLimit.requests": f"{RATE_LIMIT}::test_refusal_is_429_with_retry_after_and_ratelimit_headers",
    "routes[].rules[].rateLimit.per": f"{EDGE_E2E}::test_rate_limit_answers_429_with_retry_after_and_forwards_nothing_past_the_limit",
    "routes[].rules[].rateLimit.burst": f"{RATE_LIMIT}::test_bucket_allows_requests_plus_burst_then_refills_at_the_rate",
    "routes[].rules[].rateLimit.key": f"{RATE_LIMIT}::test_header_and_identity_keys",
    "routes[].rules[].rateLimit.header": f"{RATE_LIMIT}::test_header_and_identity_keys",
    "routes[].rules[].rateLimit.maxKeys": f"{RATE_LIMIT}::test_a_flood_of_distinct_keys_stays_within_max_keys",
    "routes[].rules[].rateLimit.scope": f"{SHARED_LIMIT_E2E}::test_shared_scope_holds_the_limit_across_two_workers_and_worker_scope_does_not",
    "routes[].access.rules[].action": f"{EDGE_E2E}::test_route_cidr_deny_answers_403_access_and_forwards_nothing",
    "routes[].access.rules[].cidrs": f"{EDGE_E2E}::test_route_cidr_deny_answers_403_access_and_forwards_nothing",
    "routes[].access.default": f"{EDGE_E2E}::test_route_cidr_deny_answers_403_access_and_forwards_nothing",
    "routes[].access.rules[].countries": "gateway/http/filters/test_access_rules.py::test_countries_come_from_the_maxmind_database",
    "routes[].access.geoipDatabase": "gateway/http/filters/test_access_rules.py::test_countries_come_from_the_maxmind_database",
    "routes[].auth.apiKey.header": f"{AUTH}::test_wrong_or_missing_api_key_is_refused",
    "routes[].auth.apiKey.keysFile": f"{AUTH}::test_api_key_from_header_or_query_is_checked_by_hash_and_stripped",
    "routes[].auth.identityHeader": f"{AUTH}::test_identity_goes_up_in_the_configured_header_and_a_forged_one_is_dropped",
    "routes[].rules[].maxRequestBodyBytes": f"{BODY_LIMITS}::test_rule_limit_refuses_a_larger_content_length_before_forwarding",
    "routes[].auth.apiKey.queryParam": f"{AUTH}::test_api_key_from_header_or_query_is_checked_by_hash_and_stripped",
    "routes[].auth.apiKey.keys[].id": f"{AUTH}::test_api_key_from_header_or_query_is_checked_by_hash_and_stripped",
    "routes[].auth.apiKey.keys[].sha256": f"{AUTH}::test_api_key_from_header_or_query_is_checked_by_hash_and_stripped",
    "routes[].auth.jwt.issuer": f"{AUTH}::test_jwt_with_a_bad_claim_is_refused_with_invalid_token",
    "routes[].auth.jwt.audiences": f"{AUTH}::test_jwt_with_a_bad_claim_is_refused_with_invalid_token",
    "routes[].auth.jwt.jwksFile": f"{AUTH}::test_jwks_file_is_reloaded_when_it_changes",
    "routes[].auth.jwt.algorithms": f"{AUTH}::test_hmac_token_signed_with_the_public_rsa_key_is_refused",
    "routes[].auth.jwt.clockSkew": f"{AUTH}::test_clock_skew_tolerates_a_token_just_expired",
    "routes[].auth.jwt.claimHeaders[].claim": f"{AUTH}::test_valid_jwt_passes_without_the_token_and_with_the_identity",
    "routes[].auth.jwt.claimHeaders[].header": f"{AUTH}::test_valid_jwt_passes_without_the_token_and_with_the_identity",
    # backends
    "backends[].name": "gateway/routing/test_routing_properties.py::test_weighted_split_converges_within_one_percent",
    "backends[].service.namespace": f"{ROUTING_EXPANSION}::test_clusters_filter_and_port_by_number",
    "backends[].service.name": f"{ROUTING_EXPANSION}::test_clusters_filter_and_port_by_number",
    "backends[].service.port": f"{ROUTING_EXPANSION}::test_clusters_filter_and_port_by_number",
    "backends[].service.clusters": f"{ROUTING_EXPANSION}::test_clusters_filter_and_port_by_number",
    "backends[].endpoints[].address": "gateway/l4/test_tcp_proxy.py::test_tls_passthrough_routes_on_sni_without_terminating",
    "backends[].endpoints[].port": "gateway/l4/test_tcp_proxy.py::test_tls_passthrough_routes_on_sni_without_terminating",
    "backends[].endpoints[].cluster": f"{ROUTING_FIELDS}::test_static_endpoint_cluster_names_its_key_and_its_priority",
    "backends[].endpoints[].region": f"{ROUTING_FIELDS}::test_static_endpoint_region_and_zone_place_it_in_the_locality_levels",
    "backends[].endpoints[].zone": f"{ROUTING_FIELDS}::test_static_endpoint_region_and_zone_place_it_in_the_locality_levels",
    "backends[].endpoints[].weight": f"{ROUTING_FIELDS}::test_static_endpoint_weight_sets_its_share",
    "backends[].loadBalancer.policy": "gateway/routing/test_routing_pickers.py::test_ring_hash_is_sticky_per_client_and_falls_back_to_client_ip",
    "backends[].loadBalancer.hashOn.source": "gateway/http/test_http_sticky_and_affinity.py::test_cookie_hash_keeps_each_cookie_on_one_endpoint",
    "backends[].loadBalancer.hashOn.name": "gateway/http/test_http_sticky_and_affinity.py::test_header_hash_keeps_each_user_on_one_endpoint",
    "backends[].loadBalancer.choiceCount": f"{ROUTING_FIELDS}::test_choice_count_is_the_number_of_endpoints_least_request_compares",
    "backends[].loadBalancer.ringSize": f"{ROUTING_FIELDS}::test_ring_size_sets_the_points_on_the_ring",
    "backends[].loadBalancer.maglevTableSize": f"{ROUTING_FIELDS}::test_maglev_table_size_sets_the_lookup_table",
    "backends[].sessionAffinity.type": "gateway/routing/test_routing_pickers.py::test_client_ip_affinity_pins_until_timeout",
    "backends[].sessionAffinity.timeout": "gateway/routing/test_routing_pickers.py::test_client_ip_affinity_pins_until_timeout",
    "backends[].locality.prefer": f"{ROUTING_LOCALITY}::test_measured_spill_matches_the_rule",
    "backends[].locality.priorities[].regions": f"{ROUTING_FIELDS}::test_explicit_priorities_override_the_gateway_s_own_zone",
    "backends[].locality.priorities[].clusters": f"{ROUTING_FIELDS}::test_explicit_priorities_override_the_gateway_s_own_zone",
    "backends[].locality.priorities[].zones": f"{ROUTING_FIELDS}::test_priority_zones_pick_the_level_of_each_endpoint",
    "backends[].locality.overprovisioningFactor": "gateway/routing/test_routing_properties.py::test_measured_level_shares_follow_the_overprovisioning_rule",
    "backends[].locality.panicThreshold": "gateway/routing/test_routing_properties.py::test_measured_level_shares_follow_the_overprovisioning_rule",
    "backends[].allowedRegions": f"{ROUTING_LOCALITY}::test_allowed_regions_drop_endpoints_at_compile_time",
    "backends[].healthCheck.protocol": "gateway/upstream/test_health_checker.py::test_probe_specs_http_tcp_and_kube_proxy",
    "backends[].healthCheck.useHealthCheckNodePort": "gateway/upstream/test_health_checker.py::test_probe_specs_http_tcp_and_kube_proxy",
    "backends[].healthCheck.path": HEALTH_E2E,
    "backends[].healthCheck.host": HEALTH_E2E,
    "backends[].healthCheck.port": HEALTH_E2E,
    "backends[].healthCheck.interval": HEALTH_E2E,
    "backends[].healthCheck.timeout": HEALTH_E2E,
    "backends[].healthCheck.healthyThreshold": HEALTH_E2E,
    "backends[].healthCheck.unhealthyThreshold": HEALTH_E2E,
    "backends[].healthCheck.unhealthyInterval": "gateway/upstream/test_health_checker.py::test_an_unhealthy_endpoint_is_probed_faster",
    "backends[].healthCheck.expectedStatuses": "gateway/upstream/test_health_checker.py::test_expected_statuses_decide_what_passes",
    "backends[].locality.slowStart": "gateway/routing/test_routing_failover.py::test_a_returning_cluster_takes_its_traffic_back_gradually",
    "routes[].rules[].onEmpty": "gateway/routing/test_routing_failover.py::test_on_empty_fail_keeps_the_share_and_answers_503",
    "routes[].panic": "gateway/routing/test_routing_failover.py::test_panic_open_spreads_over_dead_endpoints_and_closed_keeps_to_live_ones",
    "backends[].healthCheck.jitterPercent": "gateway/upstream/test_health_checker.py::test_probes_are_spread_over_the_first_interval_and_not_synchronized",
    "backends[].outlierDetection.enabled": "gateway/upstream/test_resilience_enforced.py::test_outlier_detection_ejects_a_node_answering_502_unless_disabled",
    "backends[].outlierDetection.consecutiveGatewayErrors": "gateway/upstream/test_resilience_enforced.py::test_outlier_detection_ejects_a_node_answering_502_unless_disabled",
    "backends[].outlierDetection.consecutive5xx": f"{OUTLIER}::test_server_errors_eject_after_consecutive_5xx_and_break_the_gateway_run",
    "backends[].outlierDetection.baseEjectionTime": f"{OUTLIER}::test_ejection_time_grows_per_ejection_and_decays_while_serving",
    "backends[].outlierDetection.maxEjectionTime": f"{OUTLIER}::test_ejection_time_grows_per_ejection_and_decays_while_serving",
    "backends[].outlierDetection.maxEjectionPercent": f"{OUTLIER}::test_never_beyond_max_percent_and_always_one_left",
    "backends[].outlierDetection.interval": f"{OUTLIER}::test_success_rate_outliers_are_ejected_at_the_sweep",
    "backends[].circuitBreaker.maxConnections": "gateway/upstream/test_upstream.py::test_concurrent_requests_beyond_max_connections_wait_for_a_slot",
    "backends[].circuitBreaker.maxPendingRequests": "gateway/upstream/test_upstream.py::test_circuit_open_when_pending_queue_is_full",
    "backends[].circuitBreaker.maxRequests": "gateway/upstream/test_breakers.py::test_max_requests_answers_overflow_at_once",
    "backends[].circuitBreaker.maxRetries": "gateway/upstream/test_breakers.py::test_max_retries_caps_requests_retrying_at_once",
    "backends[].tls": f"{UPSTREAM_TLS}::test_upstream_certificate_signed_by_the_configured_ca_for_the_configured_name_passes",
    "backends[].tlsValidation.caFile": f"{UPSTREAM_TLS}::test_upstream_certificate_signed_by_the_configured_ca_for_the_configured_name_passes",
    "backends[].tlsValidation.hostname": f"{UPSTREAM_TLS}::test_upstream_certificate_signed_by_the_configured_ca_for_the_configured_name_passes",
    "backends[].tlsValidation.insecureSkipVerify": f"{UPSTREAM_TLS}::test_verification_is_off_only_when_written_out",
    # registry, admin, telemetry
    "registry.type": REGISTRY_E2E,
    "registry.path": REGISTRY_E2E,
    "registry.debounce": "gateway/runtime/test_registry_debounce.py::test_a_long_debounce_holds_a_new_record_back",
    "registry.endpoints": ROUTES_ETCD,
    "registry.prefix": ROUTES_ETCD,
    "admin.address": "gateway/runtime/test_bind_addresses.py::test_listener_and_admin_bind_the_configured_addresses",
    "admin.port": "gateway/runtime/test_bind_addresses.py::test_listener_and_admin_bind_the_configured_addresses",
    "telemetry.accessLog": TELEMETRY_E2E,
    "telemetry.otlpEndpoint": TELEMETRY_E2E,
    "telemetry.serviceName": "gateway/runtime/test_trace_sampling.py::test_ratio_one_traces_every_request_and_zero_none",
    "telemetry.traceSampleRatio": "gateway/runtime/test_trace_sampling.py::test_ratio_one_traces_every_request_and_zero_none",
}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    defs = config_schema()["$defs"]
    while "$ref" in node:
        ref = str(node["$ref"]).rsplit("/", 1)[-1]
        node = {**defs[ref], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _leaves(node: dict[str, Any], path: str) -> Iterator[str]:
    node = _resolve(node)
    branches = [_resolve(b) for b in node.get("anyOf", [node])]
    objects = [b for b in branches if "properties" in b]
    lists = [
        b
        for b in branches
        if b.get("type") == "array" and "properties" in _resolve(b.get("items", {}))
    ]
    if objects:
        for key, child in objects[0]["properties"].items():
            yield from _leaves(child, f"{path}.{key}" if path else key)
    elif lists:
        yield from _leaves(lists[0]["items"], f"{path}[]")
    else:
        yield path


def schema_leaves() -> list[str]:
    """Every leaf of the config schema, `routes[].rules[].retry.attempts` style."""
    return list(_leaves(config_schema(), ""))


def not_supported(leaf: str) -> bool:
    return any(leaf == p or leaf.startswith((f"{p}.", f"{p}[]")) for p in NOT_SUPPORTED)


@functools.cache
def _test_names(file: str) -> tuple[str, frozenset[str]]:
    """The module's source and the names of its functions."""
    source = (TESTS / file).read_text(encoding="utf-8")
    names = frozenset(
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    )
    return source, names


def test_every_enforced_leaf_names_its_test() -> None:
    missing = [leaf for leaf in schema_leaves() if not not_supported(leaf) and leaf not in COVERAGE]
    assert not missing, (
        "config fields with no test that fails when the gateway ignores them; add each to "
        "COVERAGE with that test, or to NOT_SUPPORTED in gateway/config/unsupported.py:\n  "
        + "\n  ".join(missing)
    )


def test_the_table_names_only_fields_that_exist_and_are_supported() -> None:
    leaves = set(schema_leaves())
    stale = sorted(set(COVERAGE) - leaves)
    unsupported = sorted(leaf for leaf in COVERAGE if not_supported(leaf))
    assert not stale, f"COVERAGE names fields the schema does not have: {stale}"
    assert not unsupported, f"COVERAGE names fields NOT_SUPPORTED refuses: {unsupported}"


GENERIC = frozenset({"claim", "header", "name", "value", "id"})
"""Keys too common to prove anything alone: the block they sit in is looked for too."""


def _snake(key: str) -> str:
    return re.sub(r"([A-Z0-9]+)", lambda m: "_" + m.group(1).lower(), key)


@pytest.mark.parametrize("leaf", sorted(COVERAGE))
def test_each_named_test_exists_and_writes_the_field(leaf: str) -> None:
    file, _, name = COVERAGE[leaf].partition("::")
    assert (TESTS / file).is_file(), f"{leaf}: no test file tests/{file}"
    source, names = _test_names(file)
    assert name in names, f"{leaf}: tests/{file} has no test {name}"
    parts = [part.removesuffix("[]") for part in leaf.split(".")]
    words: set[str] = set()
    for key in parts[-2:] if parts[-1] in GENERIC else parts[-1:]:
        snake = _snake(key).lstrip("_")
        words |= {key, snake, f"{snake}_s"}  # durations are held in `*_s` fields
    key = parts[-1]
    # the config may be built by a helper of the module, so the module is searched
    assert any(re.search(rf"\b{re.escape(w)}\b", source) for w in words), (
        f"{leaf}: tests/{file} never writes {key!r}"
    )


def test_version_other_than_1_is_refused() -> None:
    report = check_config_text("version: 2\n", "gw.yaml")
    assert report.config is None
    assert str(report.issues[0]).startswith("gw.yaml:1:10: version: 2 is not allowed")
