#!/usr/bin/env bash
# Sets up a fresh machine (build packages), builds lake and runs the whole pipeline on the embedded
# defaults: an in-process Kafka cluster receives Debezium order events and a clickstream, `lake ingest`
# commits them into a copy-on-write and a merge-on-read table in ./lake-demo, the clickstream is
# compacted, and SQL answers questions about the tables (now, changes since an instant, as of it).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> [1/3] installing the build packages the Kafka client needs (scripts/setup.sh)" >&2
scripts/setup.sh
echo "==> [2/3] building lake (the first build compiles ~400 crates: about 12 minutes on 2 cores)" >&2
cargo build --bin lake
echo "==> [3/3] running lake demo: events into Kafka, lake ingest into tables, SQL answers" >&2
LAKE=target/debug/lake
DEMO=${LAKE_DEMO_DIR:-lake-demo}
$LAKE demo --dir "$DEMO"
# The tables stay: the timeline of the orders table, and one more question with `lake sql`.
$LAKE timeline "$DEMO/orders" | tail -5
$LAKE sql --table orders="$DEMO/orders" -c "SELECT customer, count(*) AS orders, sum(amount) AS spent FROM orders GROUP BY customer ORDER BY spent DESC LIMIT 5"
