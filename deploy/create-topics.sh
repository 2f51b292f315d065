#!/bin/sh
# Creates the topics lake ingest reads (idempotent: existing topics are kept).
until rpk cluster info --brokers redpanda:29092 >/dev/null 2>&1; do sleep 1; done
for t in clickstream_events dbserver1.brazillian_ecommerce.olist_orders_dataset; do
  rpk topic create "$t" --partitions 4 --brokers redpanda:29092 || true
done
echo "topics ready"
