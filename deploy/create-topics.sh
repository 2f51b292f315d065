#!/bin/sh
# Creates the topics lake ingest reads (idempotent: existing topics are kept).
until rpk cluster info --brokers redpanda:29092 >/dev/null 2>&1; do sleep 1; done
set -e
topics="clickstream_events dbserver1.brazillian_ecommerce.olist_orders_dataset"
# An existing topic makes `create` fail; `describe` then checks that every topic is there.
rpk topic create $topics --partitions 4 --brokers redpanda:29092 ||
  rpk topic describe $topics --brokers redpanda:29092 >/dev/null
echo "topics ready"
