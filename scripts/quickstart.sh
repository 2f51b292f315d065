#!/usr/bin/env bash
# Sets up a fresh machine (build packages), builds lake and runs the whole pipeline on the embedded
# defaults: an in-process Kafka cluster receives Debezium order events and a clickstream, `lake ingest`
# commits them into a copy-on-write and a merge-on-read table in ./lake-demo, the clickstream is
# compacted, and SQL answers questions about the tables (now, changes since an instant, as of it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet --bin lake
LAKE=target/debug/lake
DEMO=${LAKE_DEMO_DIR:-lake-demo}
$LAKE demo --dir "$DEMO"
# The tables stay: the timeline of the orders table, and one more question with `lake sql`.
$LAKE timeline "$DEMO/orders" | tail -5
$LAKE sql --table orders="$DEMO/orders" -c "SELECT customer, count(*) AS orders, sum(amount) AS spent FROM orders GROUP BY customer ORDER BY spent DESC LIMIT 5"
