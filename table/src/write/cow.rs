//! Copy-on-write: a touched file group's base file is read, merged with the incoming records by
//! the ordering field, and written as the group's next base file.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant as Clock;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow::compute::{concat_batches, interleave, take_record_batch};
use bytes::Bytes;
use lake_timeline::{InstantTime, WriteStat};

use super::prepare::{Prepared, ordering_rows};
use super::{GroupResult, GroupTask, WriteOperation};
use crate::commit::transaction::{MarkerKind, Transaction};
use crate::layout::{BaseFile, WRITE_TOKEN, join};
use crate::parquet_io::{encode_parquet, read_parquet};
use crate::schema::{COMMIT_SEQNO, COMMIT_TIME, RECORD_KEY, align_batch, with_meta_columns};
use crate::{Error, Result, Table};

impl Table {
    /// Rewrites one file group: its stored records merged with the incoming ones into a new base
    /// file.
    pub(super) async fn write_group(
        &self,
        tx: &Transaction,
        task: GroupTask,
        p: Arc<Prepared>,
        op: WriteOperation,
    ) -> Result<Option<GroupResult>> {
        let time = tx.time();
        let storage = self.storage();
        let started = Clock::now();
        let stored = match &task.prev {
            Some(prev) => {
                let path = prev.path();
                let bytes = storage.get(&path).await?;
                let (schema, batches) =
                    tokio::task::spawn_blocking(move || read_parquet(&path, bytes))
                        .await
                        .map_err(|e| Error::Task(e.to_string()))??;
                Some(concat_batches(&schema, &batches)?)
            }
            None => None,
        };
        let scan_ms = started.elapsed().as_millis() as i64;
        let has_new_rows = task.rows.iter().any(|r| !p.is_delete[*r]);
        if stored.is_none() && (!has_new_rows || op == WriteOperation::Delete) {
            return Ok(None);
        }
        let name = BaseFile::name_for(&task.file_id, WRITE_TOKEN, time);
        let rel = join(&task.partition, &name);
        let kind = if stored.is_some() {
            MarkerKind::Merge
        } else {
            MarkerKind::Create
        };
        let ordering = self.config().ordering_field.clone();
        let partition = task.partition.clone();
        let file_id = task.file_id.clone();
        let rel_for_encode = rel.clone();
        let merge_started = Clock::now();
        let (bytes, counts) = tokio::task::spawn_blocking(move || -> Result<(Bytes, [u64; 5])> {
            let merged = merge_group(
                &p,
                &task.rows,
                stored,
                ordering.as_deref(),
                op,
                time,
                &name,
                &partition,
                task.task_id,
            )?;
            let footer = vec![
                ("hoodie_min_record_key".to_owned(), merged.min_key.clone()),
                ("hoodie_max_record_key".to_owned(), merged.max_key.clone()),
            ];
            let bytes = encode_parquet(&rel_for_encode, &merged.batch, footer)?;
            Ok((
                bytes,
                [
                    merged.inserts,
                    merged.updates,
                    merged.deletes,
                    merged.stale,
                    merged.batch.num_rows() as u64,
                ],
            ))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        let size = bytes.len() as i64;
        tx.write_file(&rel, kind, bytes).await?;
        let [inserts, updates, deletes, stale, written] = counts;
        let stat = WriteStat {
            file_id,
            path: Some(rel),
            prev_commit: Some(
                task.prev
                    .as_ref()
                    .map_or("null".to_owned(), |b| b.instant.to_string()),
            ),
            num_writes: written as i64,
            num_deletes: deletes as i64,
            num_update_writes: updates as i64,
            num_inserts: inserts as i64,
            total_write_bytes: size,
            partition_path: Some(task.partition.clone()),
            file_size_in_bytes: size,
            runtime_stats: Some(lake_timeline::metadata_runtime(
                scan_ms,
                merge_started.elapsed().as_millis() as i64,
                task.prev.is_none(),
            )),
            ..Default::default()
        };
        Ok(Some(GroupResult {
            stat,
            inserts,
            updates,
            deletes,
            stale,
        }))
    }
}

struct Merged {
    batch: RecordBatch,
    inserts: u64,
    updates: u64,
    deletes: u64,
    stale: u64,
    min_key: String,
    max_key: String,
}

/// Merges the incoming rows of one file group with its stored records into the new base file's rows.
#[allow(clippy::too_many_arguments)]
fn merge_group(
    p: &Prepared,
    rows: &[usize],
    stored: Option<RecordBatch>,
    ordering: Option<&str>,
    op: WriteOperation,
    time: InstantTime,
    file_name: &str,
    partition: &str,
    task_id: usize,
) -> Result<Merged> {
    let idx = UInt32Array::from(rows.iter().map(|r| *r as u32).collect::<Vec<_>>());
    let incoming = take_record_batch(&p.rows, &idx)?;
    let keys: Vec<&str> = rows.iter().map(|r| p.keys[*r].as_str()).collect();
    let deletes: Vec<bool> = rows.iter().map(|r| p.is_delete[*r]).collect();
    let out_schema = with_meta_columns(&p.schema);
    let data_schema = p.schema.clone();

    let (stored_data, stored_meta) = match &stored {
        Some(s) => {
            let data = align_batch(s, &data_schema)?;
            let meta: Vec<StringArray> = [COMMIT_TIME, COMMIT_SEQNO, RECORD_KEY]
                .iter()
                .map(|c| {
                    s.column_by_name(c)
                        .and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned())
                        .ok_or_else(|| Error::Schema {
                            reason: format!("stored base file lacks meta column {c}"),
                        })
                })
                .collect::<Result<_>>()?;
            (Some(data), Some(meta))
        }
        None => (None, None),
    };
    let stored_rows = stored_data.as_ref().map_or(0, |b| b.num_rows());
    let stored_keys: Option<&StringArray> = stored_meta.as_ref().map(|m| &m[2]);

    let stored_order_col: Vec<ArrayRef> = match (&stored_data, ordering) {
        (Some(s), Some(f)) => s.column_by_name(f).cloned().into_iter().collect(),
        _ => Vec::new(),
    };
    let order = ordering_rows(&incoming, ordering, &stored_order_col)?;
    let inc_order = ordering.and_then(|f| incoming.column_by_name(f));

    let mut by_key: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        by_key.insert(k, i);
    }
    let mut consumed = vec![false; keys.len()];
    // (source, row): source 0 = stored, 1 = incoming.
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(stored_rows + keys.len());
    let (mut inserts, mut updates, mut deleted, mut stale) = (0u64, 0u64, 0u64, 0u64);
    if let Some(sk) = stored_keys {
        for s in 0..stored_rows {
            let key = if sk.is_valid(s) { sk.value(s) } else { "" };
            let hit = if op == WriteOperation::Insert {
                None
            } else {
                by_key.get(key).copied()
            };
            let Some(i) = hit.filter(|i| !consumed[*i]) else {
                picks.push((0, s));
                continue;
            };
            consumed[i] = true;
            // A delete without an ordering value wins by write order (a commit-time delete).
            let unordered_delete = deletes[i] && inc_order.is_some_and(|c| c.is_null(i));
            let incoming_wins = unordered_delete
                || match &order {
                    Some((inc, others)) => others.first().is_none_or(|st| inc.row(i) >= st.row(s)),
                    None => true,
                };
            if !incoming_wins {
                stale += 1;
                picks.push((0, s));
            } else if deletes[i] {
                deleted += 1;
            } else {
                updates += 1;
                picks.push((1, i));
            }
        }
    }
    for i in 0..keys.len() {
        if !consumed[i] && !deletes[i] {
            inserts += 1;
            picks.push((1, i));
        }
    }

    let n = picks.len();
    let time_s = time.to_string();
    let mut seq = 0usize;
    let mut commit_time = Vec::with_capacity(n);
    let mut seqno = Vec::with_capacity(n);
    let mut rec_key = Vec::with_capacity(n);
    for &(src, r) in &picks {
        if src == 0 {
            let m = stored_meta.as_ref().map(|m| {
                (
                    m[0].value(r).to_owned(),
                    m[1].value(r).to_owned(),
                    m[2].value(r).to_owned(),
                )
            });
            let (c, s, k) = m.unwrap_or_default();
            commit_time.push(c);
            seqno.push(s);
            rec_key.push(k);
        } else {
            commit_time.push(time_s.clone());
            seqno.push(format!("{time_s}_{task_id}_{seq}"));
            seq += 1;
            rec_key.push(keys[r].to_owned());
        }
    }
    let min_key = rec_key.iter().min().cloned().unwrap_or_default();
    let max_key = rec_key.iter().max().cloned().unwrap_or_default();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(commit_time)),
        Arc::new(StringArray::from(seqno)),
        Arc::new(StringArray::from(rec_key)),
        Arc::new(StringArray::from(vec![partition; n])),
        Arc::new(StringArray::from(vec![file_name; n])),
    ];
    for (ci, _) in data_schema.fields().iter().enumerate() {
        let inc = incoming.column(ci).as_ref();
        let col = match &stored_data {
            Some(s) => interleave(&[s.column(ci).as_ref(), inc], &picks)?,
            None => interleave(
                &[inc],
                &picks.iter().map(|(_, r)| (0, *r)).collect::<Vec<_>>(),
            )?,
        };
        columns.push(col);
    }
    let out_schema = if columns
        .iter()
        .skip(5)
        .zip(data_schema.fields())
        .any(|(c, f)| !f.is_nullable() && c.null_count() > 0)
    {
        Arc::new(arrow::datatypes::Schema::new(
            out_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ))
    } else {
        out_schema
    };
    let batch = RecordBatch::try_new(out_schema, columns)?;
    Ok(Merged {
        batch,
        inserts,
        updates,
        deletes: deleted,
        stale,
        min_key,
        max_key,
    })
}
