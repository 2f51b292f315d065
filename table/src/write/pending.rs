//! Writes into file groups under a pending compaction.
//!
//! A compaction merges the slice its plan names (the *planned* slice) into a new base file; writes
//! that arrive meanwhile append logs to the slice the compaction begins. A delete in the planned
//! slice leaves no trace in the new base file, so a record older than that delete, appended to the
//! new slice while the compaction is pending, would come back once the compaction completes. Such a
//! record is stale when it is written: its key's newest delete in the planned slice's logs carries
//! a higher ordering value. The writer drops it (counted as stale), as the merge would have.
//!
//! The planned slice never changes once planned, so its deletes are read once per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{Array, ArrayRef, new_null_array};
use arrow::compute::{cast, concat};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use lake_timeline::{InstantTime, Timeline};

use super::prepare::Prepared;
use crate::format::compaction_plan::CompactionOperation;
use crate::layout::join;
use crate::merge::{decode_logs, fetch_files};
use crate::schema::RECORD_KEY;
use crate::{Error, Result, Table};

/// The newest ordered delete of each key in a planned slice's logs.
#[derive(Debug)]
struct Tombstones {
    /// Key → index into `values`.
    at: HashMap<String, usize>,
    /// Ordering values, in the table's ordering type.
    values: ArrayRef,
}

impl Table {
    /// Drops from `rows` (row indexes of `p` bound for a group under the pending compaction at
    /// `compaction`, planned as `op`) every upsert older than its key's newest delete in the
    /// planned slice; returns how many were dropped.
    pub(super) async fn drop_stale_for_pending(
        &self,
        timeline: &Timeline,
        compaction: InstantTime,
        op: &CompactionOperation,
        p: &Prepared,
        rows: &mut Vec<usize>,
    ) -> Result<u64> {
        let Some(field) = self.config().ordering_field.as_deref() else {
            return Ok(0);
        };
        let Some(col) = p.rows.column_by_name(field) else {
            return Ok(0);
        };
        let dt = col.data_type().clone();
        let tomb = self
            .planned_tombstones(timeline, compaction, op, &dt)
            .await?;
        if tomb.at.is_empty() {
            return Ok(0);
        }
        let conv = RowConverter::new(vec![SortField::new(dt)])?;
        let incoming = conv.convert_columns(std::slice::from_ref(col))?;
        let stored = conv.convert_columns(std::slice::from_ref(&tomb.values))?;
        let before = rows.len();
        rows.retain(|&r| {
            if p.is_delete[r] || col.is_null(r) {
                return true;
            }
            match tomb.at.get(p.keys[r].as_str()) {
                Some(&i) => incoming.row(r) >= stored.row(i),
                None => true,
            }
        });
        Ok((before - rows.len()) as u64)
    }

    /// The planned slice's deletes (cached per process: a planned slice never changes).
    async fn planned_tombstones(
        &self,
        timeline: &Timeline,
        compaction: InstantTime,
        op: &CompactionOperation,
        dt: &DataType,
    ) -> Result<Arc<Tombstones>> {
        static CACHE: OnceLock<Mutex<HashMap<String, Arc<Tombstones>>>> = OnceLock::new();
        let key = format!(
            "{}|{compaction}|{}|{}|{dt}",
            self.storage().display(""),
            op.partition,
            op.file_id
        );
        let cache = CACHE.get_or_init(Default::default);
        if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        let storage = self.storage().clone();
        let paths: Vec<String> = op
            .delta_files
            .iter()
            .map(|f| join(&op.partition, f))
            .collect();
        let files = fetch_files(&storage, paths).await?;
        let timeline = timeline.clone();
        let dt = dt.clone();
        let tomb = tokio::task::spawn_blocking(move || -> Result<Tombstones> {
            let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
                RECORD_KEY,
                DataType::Utf8,
                true,
            )]));
            let records = decode_logs(&timeline, &files, &schema, None)?;
            let conv = RowConverter::new(vec![SortField::new(dt.clone())])?;
            let mut at: HashMap<String, usize> = HashMap::new();
            let mut values: Vec<ArrayRef> = Vec::new();
            for (_, deletes) in &records.deletes {
                for d in deletes {
                    // Commit-time deletes lose to anything written after them.
                    let Some(v) = d
                        .ordering
                        .to_array()
                        .and_then(|a| cast(&a, &dt).ok())
                        .filter(|a| a.null_count() == 0)
                    else {
                        continue;
                    };
                    match at.get(&d.key) {
                        Some(&i) => {
                            let pair = conv
                                .convert_columns(&[concat(&[values[i].as_ref(), v.as_ref()])?])?;
                            if pair.row(1) > pair.row(0) {
                                values[i] = v;
                            }
                        }
                        None => {
                            at.insert(d.key.clone(), values.len());
                            values.push(v);
                        }
                    }
                }
            }
            let values = if values.is_empty() {
                new_null_array(&dt, 0)
            } else {
                let refs: Vec<&dyn Array> = values.iter().map(|a| a.as_ref()).collect();
                concat(&refs)?
            };
            Ok(Tombstones { at, values })
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        let tomb = Arc::new(tomb);
        if let Ok(mut c) = cache.lock() {
            if c.len() >= 1024 {
                c.clear();
            }
            c.insert(key, tomb.clone());
        }
        Ok(tomb)
    }
}
