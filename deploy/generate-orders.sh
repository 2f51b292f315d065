#!/bin/sh
# A small order workload in MySQL: a new order every second, a status change for an earlier one,
# and every 20th order cancelled and deleted. Debezium turns each into a change event.
export MYSQL_PWD=mysqlpw
SQL="mysql -h mysql -u mysqluser brazillian_ecommerce"
until $SQL -e "SELECT 1" >/dev/null 2>&1; do sleep 2; done
# Continue after the highest order number (a restart must not reuse the key of a live order).
i=$($SQL -N -e "SELECT COALESCE(MAX(CAST(SUBSTRING(order_id, 7) AS UNSIGNED)), 0) FROM olist_orders_dataset WHERE order_id LIKE 'order-%'")
while true; do
  i=$((i + 1))
  now=$(date -u '+%Y-%m-%d %H:%M:%S')
  $SQL -e "INSERT INTO olist_orders_dataset VALUES ('order-$i', 'customer-$((i % 97))', 'created', '$now', NULL, NULL, NULL, NULL)"
  $SQL -e "UPDATE olist_orders_dataset SET order_status = 'approved', order_approved_at = '$now' WHERE order_id = 'order-$((i - 3))'"
  if [ $((i % 20)) -eq 0 ]; then
    $SQL -e "DELETE FROM olist_orders_dataset WHERE order_id = 'order-$((i - 10))'"
  fi
  sleep 1
done
