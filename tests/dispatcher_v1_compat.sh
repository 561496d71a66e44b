#!/usr/bin/env bash
# The existing Python client must work byte for byte: one JSON object with no
# newline and no shutdown of its write side, one read of the reply, exactly
# five keys, and the error strings its users match on.
source "$(dirname "$0")/lib.sh"
boot
install_project

# tests/client.py writes exactly as the old client does (json.dumps, sendall,
# no newline, no shutdown, a single recv(65536)).
t_v1_status_round_trip() {
    local r; r=$(request --id v1-status status)
    assert_eq "$(jfield success <<<"$r")" true
    assert_eq "$(jfield request_id <<<"$r")" v1-status
    assert_eq "$(python3 -c 'import json,sys; print(",".join(json.loads(sys.stdin.read()).keys()))' <<<"$r")" \
        "request_id,success,output,error,duration_ms" "reply keys:"
    python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); assert isinstance(d["duration_ms"], int), d' <<<"$r"
    assert_one_decision v1-status success
}

t_reply_arrives_without_client_shutdown_and_fits_one_read() {
    # socat with a long -t keeps its write side open, as the old client does;
    # the reply must come back and the server must close the connection.
    local key id ts sig body r
    key=$(sb cat "$SECRET_IN"); id=socat-$$; ts=$(date +%Y-%m-%dT%H:%M:%S.%6N)
    sig=$(printf '%s' "$id:status:$ts" | openssl dgst -sha256 -hmac "$key" -r | cut -d' ' -f1)
    body=$(printf '{"id": "%s", "action": "status", "parameters": {}, "timestamp": "%s", "signature": "%s"}' "$id" "$ts" "$sig")
    r=$(printf '%s' "$body" | sb timeout 5 socat -t 30 - UNIX-CONNECT:/run/luminous-healing.sock)
    assert_eq "$(jfield success <<<"$r")" true
    [ "${#r}" -lt 65536 ]
}

t_error_invalid_signature() {
    local r; r=$(request --id v1-badsig --signature 00ff status)
    assert_eq "$(jfield success <<<"$r")" false
    assert_eq "$(jfield error <<<"$r")" "Invalid signature"
    assert_eq "$(jfield request_id <<<"$r")" v1-badsig
    assert_one_decision v1-badsig denied "signature does not match"
}

t_error_action_not_allowed() {
    local r; r=$(request --id v1-reboot reboot)
    assert_eq "$(jfield error <<<"$r")" "Action reboot not allowed"
    assert_one_decision v1-reboot denied "unknown action"
}

t_error_invalid_request_format_extra_field() {
    local r; r=$(request --raw '{"id": "x1", "action": "status", "parameters": {}, "timestamp": "2025-01-01T00:00:00", "signature": null, "extra": 1}')
    assert_eq "$(jfield error <<<"$r")" "Invalid request format"
    assert_eq "$(jfield request_id <<<"$r")" unknown
    assert_eq "$(jfield success <<<"$r")" false
}

t_error_invalid_request_format_missing_field() {
    local r; r=$(request --raw '{"id": "x2", "action": "status", "parameters": {}, "signature": null}')
    assert_eq "$(jfield error <<<"$r")" "Invalid request format"
    assert_eq "$(jfield request_id <<<"$r")" unknown
}

t_error_rate_limit_exceeded_on_the_11th() {
    # An action's 11th request in its window is refused with the old string.
    # The limit is counted before the action runs, so the first ten count
    # whether or not dropping caches works in this container.
    set_config '[actions.clear_system_cache]
rate_limit = { max = 10, window_secs = 300 }'
    local i r
    for i in $(seq 1 10); do
        r=$(request --id "rl-$i" clear_system_cache)
        assert_eq "$(jfield request_id <<<"$r")" "rl-$i" "request $i:"
        [ "$(jfield error <<<"$r")" != "Rate limit exceeded" ] || fail "request $i was rate limited: $r"
    done
    r=$(request --id rl-11 clear_system_cache)
    assert_eq "$(jfield error <<<"$r")" "Rate limit exceeded"
    assert_one_decision rl-11 denied "clear_system_cache allows 10 requests per 300 s"
}

t_v2_signature_covers_parameters() {
    # The same signed envelope with parameters changed must be refused in v2.
    local key ts sig r
    # Refused before authentication, so folded per uid into one record a
    # second that names the first id of its second: the malformed requests
    # of the cases before must be in an earlier second, or that id is theirs.
    sleep 1.1
    key=$(sb cat "$SECRET_IN"); ts=$(date +%Y-%m-%dT%H:%M:%S)
    sig=$(printf 'luminous-healing-v2\nv2-tamper\nadjust_swappiness\n%s\n{"value":10}' "$ts" | openssl dgst -sha256 -hmac "$key" -r | cut -d' ' -f1)
    r=$(request --raw "{\"version\": 2, \"id\": \"v2-tamper\", \"action\": \"adjust_swappiness\", \"parameters\": {\"value\": 90}, \"timestamp\": \"$ts\", \"signature\": \"$sig\"}")
    assert_eq "$(jfield error <<<"$r")" "Invalid signature"
    assert_one_decision v2-tamper denied "signature does not match"
}

t_v2_valid_request() {
    local r; r=$(request --v2 --id v2-ok status)
    assert_eq "$(jfield success <<<"$r")" true "v2 request: $r"
    assert_one_decision v2-ok success
    sb journalctl --no-pager -o json HEALING_REQUEST_ID=v2-ok HEALING_OUTCOME=success | grep -q '"HEALING_PROTOCOL":"v2"' \
        || fail "decision not marked as protocol v2"
}

run_case v1_status_round_trip t_v1_status_round_trip
run_case reply_without_client_shutdown t_reply_arrives_without_client_shutdown_and_fits_one_read
run_case error_invalid_signature t_error_invalid_signature
run_case error_action_not_allowed t_error_action_not_allowed
run_case error_invalid_format_extra_field t_error_invalid_request_format_extra_field
run_case error_invalid_format_missing_field t_error_invalid_request_format_missing_field
run_case v2_signature_covers_parameters t_v2_signature_covers_parameters
run_case v2_valid_request t_v2_valid_request
run_case error_rate_limit_on_11th t_error_rate_limit_exceeded_on_the_11th
finish
