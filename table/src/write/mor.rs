//! Merge-on-read: a touched file group gets one new log file per deltacommit — an Avro data block
//! of its upserts and a delete block of its deletes — in its latest slice, or in the slice a pending
//! compaction begins. Log files are created only if absent, so two writers never share one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant as Clock;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow::compute::take_record_batch;
use bytes::Bytes;
use lake_timeline::{InstantTime, WriteStat};

use super::prepare::Prepared;
use super::{GroupResult, GroupTask};
use crate::avro_block::{DeletedRecord, encode_data_block, encode_delete_block};
use crate::commit::transaction::{MarkerKind, Transaction};
use crate::layout::join;
use crate::log_format::{self, BlockType, LogBlock};
use crate::schema::{self, with_meta_columns};
use crate::view::FileSlice;
use crate::{Error, Result, Table};

/// Where a merge-on-read write puts a file group's log blocks.
#[derive(Clone, Debug)]
pub(super) struct LogTarget {
    /// The base instant of the slice the log belongs to.
    pub(super) base_instant: InstantTime,
    /// The log version to write.
    pub(super) version: u32,
    /// The slice's base file name.
    pub(super) base_file: Option<String>,
}

impl LogTarget {
    /// A new log file after the slice's existing ones (object stores cannot append, so every write
    /// starts a new log version, as Hudi does where appends are impossible).
    /// `compaction`: a pending compaction of the group, whose instant begins the slice to write to.
    pub(super) fn after(slice: &FileSlice, compaction: Option<InstantTime>) -> Self {
        let base_instant = compaction.map_or(slice.base_instant, |c| c.max(slice.base_instant));
        let version = slice
            .log_files
            .iter()
            .filter(|l| l.instant == base_instant)
            .map(|l| l.version)
            .max()
            .unwrap_or(0)
            + 1;
        Self {
            base_instant,
            version,
            base_file: slice.base_file.as_ref().map(|b| b.name.clone()),
        }
    }
}

impl Table {
    /// Appends one merge-on-read log file to a file group: a data block with the group's upserts
    /// and a delete block with its deletes (each carrying its ordering value).
    pub(super) async fn write_log(
        &self,
        tx: &Transaction,
        task: GroupTask,
        p: Arc<Prepared>,
    ) -> Result<Option<GroupResult>> {
        let time = tx.time();
        let Some(target) = task.append.clone() else {
            return Ok(None);
        };
        let existed = target.base_instant != time || target.version > 1;
        if !existed && task.rows.iter().all(|r| p.is_delete[*r]) {
            // Deletes of keys a new file group never held.
            return Ok(None);
        }
        let name = format!(
            ".{}_{}.log.{}_{}",
            task.file_id,
            target.base_instant,
            target.version,
            tx.log_token()
        );
        let rel = join(&task.partition, &name);
        let started = Clock::now();
        let table_name = self.config().name.clone();
        let ordering = self.config().ordering_field.clone();
        let partition = task.partition.clone();
        let file_id = task.file_id.clone();
        let rows = task.rows.clone();
        let task_id = task.task_id;
        let (bytes, upserts, deletes) =
            tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, u64, u64)> {
                encode_log_file(
                    &p,
                    &rows,
                    time,
                    &partition,
                    &file_id,
                    task_id,
                    &table_name,
                    ordering.as_deref(),
                )
            })
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let size = bytes.len() as i64;
        if !tx
            .create_file(&rel, MarkerKind::Append, Bytes::from(bytes))
            .await?
        {
            return Err(Error::WriteConflict {
                instant: time.to_string(),
                other: "a concurrent writer".into(),
                file_ids: vec![task.file_id.clone()],
            });
        }
        let blocks = i64::from(upserts > 0) + i64::from(deletes > 0);
        let stat = WriteStat {
            file_id: task.file_id.clone(),
            path: Some(rel),
            prev_commit: Some(target.base_instant.to_string()),
            num_writes: upserts as i64,
            num_deletes: deletes as i64,
            num_update_writes: if existed { upserts as i64 } else { 0 },
            num_inserts: if existed { 0 } else { upserts as i64 },
            total_write_bytes: size,
            partition_path: Some(task.partition.clone()),
            total_log_records: (upserts + deletes) as i64,
            total_log_blocks: blocks,
            file_size_in_bytes: size,
            log_version: Some(i64::from(target.version)),
            log_offset: Some(0),
            base_file: Some(target.base_file.clone().unwrap_or_default()),
            log_files: Some(vec![name]),
            runtime_stats: Some(lake_timeline::metadata_runtime(
                0,
                started.elapsed().as_millis() as i64,
                !existed,
            )),
            ..Default::default()
        };
        Ok(Some(GroupResult {
            stat,
            inserts: if existed { 0 } else { upserts },
            updates: if existed { upserts } else { 0 },
            deletes,
            stale: 0,
        }))
    }
}

/// The bytes of one log file: a data block of the upserts among `rows` (meta columns filled, the
/// file name column holding the file id, as Hudi's log records do) and a delete block of the deletes.
/// Returns the bytes and the upsert and delete counts.
#[allow(clippy::too_many_arguments)]
fn encode_log_file(
    p: &Prepared,
    rows: &[usize],
    time: InstantTime,
    partition: &str,
    file_id: &str,
    task_id: usize,
    table_name: &str,
    ordering: Option<&str>,
) -> Result<(Vec<u8>, u64, u64)> {
    let upserts: Vec<u32> = rows
        .iter()
        .filter(|r| !p.is_delete[**r])
        .map(|r| *r as u32)
        .collect();
    let deletes: Vec<usize> = rows.iter().copied().filter(|r| p.is_delete[*r]).collect();
    let time_s = time.to_string();
    let mut out = Vec::new();
    let header = |schema: &str| {
        BTreeMap::from([
            (log_format::header::INSTANT_TIME, time_s.clone()),
            (log_format::header::SCHEMA, schema.to_owned()),
        ])
    };
    let full_schema = with_meta_columns(&p.rows.schema());
    let schema_json = schema::avro_schema_json(&full_schema, table_name)?;
    if !upserts.is_empty() {
        let data = take_record_batch(&p.rows, &UInt32Array::from(upserts.clone()))?;
        let n = data.num_rows();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![time_s.as_str(); n])),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("{time_s}_{task_id}_{i}")),
            )),
            Arc::new(StringArray::from_iter_values(
                upserts.iter().map(|r| p.keys[*r as usize].as_str()),
            )),
            Arc::new(StringArray::from(vec![partition; n])),
            Arc::new(StringArray::from(vec![file_id; n])),
        ];
        columns.extend(data.columns().iter().cloned());
        let batch = RecordBatch::try_new(full_schema.clone(), columns)?;
        let block = LogBlock {
            block_type: BlockType::AvroData,
            header: header(&schema_json),
            content: Bytes::from(encode_data_block(&batch)?),
            footer: BTreeMap::new(),
        };
        out.extend_from_slice(&block.encode());
    }
    if !deletes.is_empty() {
        let records: Vec<DeletedRecord> = deletes
            .iter()
            .map(|r| DeletedRecord {
                key: p.keys[*r].clone(),
                partition: partition.to_owned(),
                ordering: crate::merge::ordering_value(&p.rows, ordering, *r),
            })
            .collect();
        let block = LogBlock {
            block_type: BlockType::Delete,
            header: header(&schema_json),
            content: Bytes::from(encode_delete_block(&records)),
            footer: BTreeMap::new(),
        };
        out.extend_from_slice(&block.encode());
    }
    Ok((out, upserts.len() as u64, deletes.len() as u64))
}
