#!/usr/bin/env bash
# Builds lake and runs it end to end on the embedded default (a local folder): Debezium change
# events in, a Hudi copy-on-write table out, its timeline printed and SQL questions answered.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet --bin lake
LAKE=target/debug/lake
DEMO=${LAKE_DEMO_DIR:-lake-demo}
rm -rf "$DEMO" && mkdir -p "$DEMO"
TABLE="$DEMO/orders"
set -x
$LAKE create "$TABLE" --type cow --key order_id --partition-by region --buckets 2
# Batch 1: inserts and two out-of-order updates of a1 (binlog position 400 wins over 300).
$LAKE write "$TABLE" --format debezium --input examples/debezium/orders-1.jsonl
# Batch 2: a delete, a tombstone, a replay of a1's old insert (ignored), a new column, out-of-order a4.
$LAKE write "$TABLE" --format debezium --input examples/debezium/orders-2.jsonl
$LAKE timeline "$TABLE"
# Query it with SQL: the current orders by status, and the changes of the second commit only.
$LAKE sql --table orders="$TABLE" -c "SELECT status, count(*) AS orders, sum(amount) AS amount FROM orders GROUP BY status ORDER BY status"
FIRST=$($LAKE timeline "$TABLE" | awk '$2 == "commit" {print $1; exit}')
$LAKE sql -c "SELECT order_id, status, amount FROM lake_changes('$TABLE', '$FIRST') ORDER BY order_id"
