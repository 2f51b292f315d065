#!/bin/sh
# Registers Debezium's MySQL connector with Kafka Connect (the scenario's settings).
set -e
until curl -fs http://connect:8083/connectors >/dev/null; do sleep 2; done
curl -fs -X PUT -H 'Content-Type: application/json' http://connect:8083/connectors/orders/config -d '{
  "connector.class": "io.debezium.connector.mysql.MySqlConnector",
  "database.hostname": "mysql", "database.port": "3306",
  "database.user": "debezium", "database.password": "dbz",
  "database.server.id": "184054", "topic.prefix": "dbserver1",
  "database.include.list": "brazillian_ecommerce",
  "schema.history.internal.kafka.bootstrap.servers": "redpanda:29092",
  "schema.history.internal.kafka.topic": "schema-changes.brazillian_ecommerce",
  "key.converter": "org.apache.kafka.connect.json.JsonConverter",
  "value.converter": "org.apache.kafka.connect.json.JsonConverter"
}'
echo "connector registered"
