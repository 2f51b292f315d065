//! Partition pruning: the values of each partition path, evaluated against the query's filters that
//! reference only partition columns. Pruning is exact for partitions whose values are the columns'
//! own values (simple and complex key generators); others are never pruned.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::Expr;
use lake_table::TableConfig;
use lake_table::config::{DEFAULT_PARTITION, KeyGenerator};

/// The value of each partition field in a partition path (`None`: null or default partition).
pub(crate) fn partition_values(config: &TableConfig, partition: &str) -> Vec<Option<String>> {
    let parts: Vec<&str> = if partition.is_empty() {
        Vec::new()
    } else {
        partition.split('/').collect()
    };
    config
        .partition_fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let raw = if config.hive_style_partitioning {
                parts
                    .iter()
                    .find_map(|p| p.strip_prefix(&format!("{field}=")))
            } else {
                parts.get(i).copied()
            }?;
            (raw != DEFAULT_PARTITION && raw != "default").then(|| raw.to_owned())
        })
        .collect()
}

/// Whether partition values of this table can be compared with column values.
fn prunable(config: &TableConfig) -> bool {
    !config.partition_fields.is_empty()
        && !config.url_encode_partitions
        && matches!(
            config.key_generator,
            KeyGenerator::Simple | KeyGenerator::Complex
        )
}

/// The filters that only reference partition columns.
pub(crate) fn partition_filters<'a>(config: &TableConfig, filters: &'a [Expr]) -> Vec<&'a Expr> {
    if !prunable(config) {
        return Vec::new();
    }
    filters
        .iter()
        .filter(|f| {
            let cols = f.column_refs();
            !cols.is_empty()
                && cols
                    .iter()
                    .all(|c| config.partition_fields.contains(&c.name))
        })
        .collect()
}

/// For each partition, whether it may hold rows matching every partition filter.
pub(crate) fn keep_partitions(
    state: &dyn Session,
    config: &TableConfig,
    table_schema: &SchemaRef,
    partitions: &[String],
    filters: &[&Expr],
) -> Result<Vec<bool>> {
    let mut keep = vec![true; partitions.len()];
    if filters.is_empty() || partitions.is_empty() {
        return Ok(keep);
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let values: Vec<Vec<Option<String>>> = partitions
        .iter()
        .map(|p| partition_values(config, p))
        .collect();
    for (i, name) in config.partition_fields.iter().enumerate() {
        let Ok(field) = table_schema.field_with_name(name) else {
            return Ok(keep);
        };
        let strings: ArrayRef =
            Arc::new(StringArray::from_iter(values.iter().map(|v| v[i].clone())));
        // A value that does not parse as the column's type is unknown (null): never pruned.
        let typed = cast(&strings, field.data_type())?;
        fields.push(Field::new(name, field.data_type().clone(), true));
        columns.push(typed);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let df_schema = DFSchema::try_from(schema)?;
    for f in filters {
        let expr = state.create_physical_expr((*f).clone(), &df_schema)?;
        let result = expr.evaluate(&batch)?.into_array(batch.num_rows())?;
        let Some(mask) = result.as_any().downcast_ref::<BooleanArray>() else {
            continue;
        };
        for (i, k) in keep.iter_mut().enumerate() {
            // Null (unknown value) keeps the partition: pruning must never drop matching rows.
            if mask.is_valid(i) && !mask.value(i) {
                *k = false;
            }
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lake_table::TableType;

    #[test]
    fn values_come_from_hive_and_plain_paths() {
        let mut c = TableConfig::new(
            "t",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec!["a".into(), "b".into()],
            None,
            Some(1),
        )
        .expect("config");
        assert_eq!(
            partition_values(&c, "a=1/b=__HIVE_DEFAULT_PARTITION__"),
            [Some("1".into()), None]
        );
        c.hive_style_partitioning = false;
        assert_eq!(
            partition_values(&c, "1/x"),
            [Some("1".into()), Some("x".into())]
        );
    }
}
