#!/bin/sh
# A small clickstream: about ten JSON events a second, keyed by user id.
until rpk cluster info --brokers redpanda:29092 >/dev/null 2>&1; do sleep 1; done
i=0
while true; do
  i=$((i + 1))
  user=$((i * 7919 % 500))
  case $((i % 4)) in 0) ev=view ;; 1) ev=click ;; 2) ev=add_to_cart ;; *) ev=purchase ;; esac
  printf 'user-%s {"timestamp":%s000,"event_name":"%s","event_value":%s}\n' \
    "$user" "$(date +%s)" "$ev" "$((i % 100))"
  sleep 0.1
done | rpk topic produce clickstream_events --brokers redpanda:29092 -f '%k %v\n'
