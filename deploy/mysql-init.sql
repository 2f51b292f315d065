-- The scenario's source table (Olist orders), captured by Debezium.
CREATE DATABASE IF NOT EXISTS brazillian_ecommerce;
USE brazillian_ecommerce;
CREATE TABLE IF NOT EXISTS olist_orders_dataset (
  order_id varchar(32) PRIMARY KEY,
  customer_id varchar(32),
  order_status varchar(16),
  order_purchase_timestamp varchar(32),
  order_approved_at varchar(32),
  order_delivered_carrier_date varchar(32),
  order_delivered_customer_date varchar(32),
  order_estimated_delivery_date varchar(32)
);
GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'debezium'@'%';
-- The load generator (deploy/generate-orders.sh) writes as mysqluser.
GRANT SELECT, INSERT, UPDATE, DELETE ON brazillian_ecommerce.* TO 'mysqluser'@'%';
