//! Copy-on-write: a touched file group's base file is read, merged with the incoming records by
//! the ordering field, and written as the group's next base file.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant as Clock;

use arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, StructArray, UInt32Array, new_null_array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::{concat_batches, interleave, take, take_record_batch};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use lake_timeline::{InstantTime, WriteStat};

use super::prepare::{Prepared, ordering_rows};
use super::{GroupResult, GroupTask, WriteOperation};
use crate::cdc::{cdc_schema, encode_cdc_log, image_fields};
use crate::commit::transaction::{MarkerKind, Transaction};
use crate::config::CdcMode;
use crate::layout::{BaseFile, CdcFile, WRITE_TOKEN, join};
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
                // Gone since this write read the timeline: a newer slice of the group exists (a
                // concurrent write completed and a clean removed this one), so the write would
                // conflict anyway; it is retried against the newer state.
                let bytes = storage
                    .get_opt(&path)
                    .await?
                    .ok_or_else(|| Error::Changed {
                        reason: format!("{} was cleaned meanwhile", storage.display(&path)),
                    })?;
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
        // Hudi's CDC log: for a rewritten base file, what the rewrite did to each record.
        let cdc = self.config().cdc.filter(|_| stored.is_some());
        let table_name = self.config().name.clone();
        type Encoded = (Bytes, Option<Bytes>, [u64; 5]);
        let (bytes, cdc_bytes, counts) = tokio::task::spawn_blocking(move || -> Result<Encoded> {
            let data_schema = p.schema.clone();
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
                cdc,
            )?;
            let footer = vec![
                ("hoodie_min_record_key".to_owned(), merged.min_key.clone()),
                ("hoodie_max_record_key".to_owned(), merged.max_key.clone()),
            ];
            let bytes = encode_parquet(&rel_for_encode, &merged.batch, footer)?;
            let cdc_bytes = match (cdc, &merged.cdc) {
                (Some(mode), Some(rows)) => Some(Bytes::from(encode_cdc_log(
                    time,
                    mode,
                    &data_schema,
                    &table_name,
                    rows,
                )?)),
                _ => None,
            };
            Ok((
                bytes,
                cdc_bytes,
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
        let cdc_stats = match cdc_bytes {
            Some(b) => {
                let cdc_rel = join(
                    &task.partition,
                    &CdcFile::name_for(&task.file_id, time, WRITE_TOKEN),
                );
                let len = b.len();
                tx.write_file(&cdc_rel, MarkerKind::Create, b).await?;
                Some(serde_json::json!({ cdc_rel: len }))
            }
            None => None,
        };
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
            cdc_stats,
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
    /// The CDC log records of the rewrite (when asked for), in the CDC schema of its mode.
    cdc: Option<RecordBatch>,
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
    cdc: Option<CdcMode>,
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

    let mut by_key: HashMap<&str, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(keys.len(), Default::default());
    for (i, k) in keys.iter().enumerate() {
        by_key.insert(k, i);
    }
    let mut consumed = vec![false; keys.len()];
    // (source, row): source 0 = stored, 1 = incoming.
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(stored_rows + keys.len());
    // For the CDC log: (op, stored row, incoming row) in the order the rewrite met them.
    let mut changes: Vec<(&'static str, Option<u32>, Option<u32>)> = Vec::new();
    let track = cdc.is_some();
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
                if track {
                    changes.push(("d", Some(s as u32), None));
                }
            } else {
                updates += 1;
                picks.push((1, i));
                if track {
                    changes.push(("u", Some(s as u32), Some(i as u32)));
                }
            }
        }
    }
    for i in 0..keys.len() {
        if !consumed[i] && !deletes[i] {
            inserts += 1;
            picks.push((1, i));
            if track {
                changes.push(("i", None, Some(i as u32)));
            }
        }
    }

    let n = picks.len();
    let time_s = time.to_string();
    // Meta columns: stored rows keep theirs, incoming rows get this commit's (sequence numbers in
    // output order); both gathered by `picks` like the data columns, without a string per row.
    let mut seq_of: Vec<Option<usize>> = vec![None; keys.len()];
    let mut seq = 0usize;
    for &(src, r) in &picks {
        if src == 1 {
            seq_of[r] = Some(seq);
            seq += 1;
        }
    }
    let incoming_meta: [ArrayRef; 3] = [
        Arc::new(StringArray::from(vec![time_s.as_str(); keys.len()])),
        Arc::new(StringArray::from_iter(
            seq_of
                .iter()
                .map(|s| s.map(|s| format!("{time_s}_{task_id}_{s}"))),
        )),
        Arc::new(StringArray::from(keys.clone())),
    ];
    let meta_cols: Vec<ArrayRef> = (0..3)
        .map(|j| match &stored_meta {
            Some(m) => interleave(&[&m[j] as &dyn Array, incoming_meta[j].as_ref()], &picks),
            None => interleave(
                &[incoming_meta[j].as_ref()],
                &picks.iter().map(|(_, r)| (0, *r)).collect::<Vec<_>>(),
            ),
        })
        .collect::<std::result::Result<_, _>>()?;
    let rec_key = arrow::array::AsArray::as_string::<i32>(&meta_cols[2]);
    let min_key = rec_key
        .iter()
        .flatten()
        .min()
        .unwrap_or_default()
        .to_owned();
    let max_key = rec_key
        .iter()
        .flatten()
        .max()
        .unwrap_or_default()
        .to_owned();
    // commit time, sequence number, record key; then partition path and file name.
    let mut columns: Vec<ArrayRef> = meta_cols;
    columns.extend([
        Arc::new(StringArray::from(vec![partition; n])) as ArrayRef,
        Arc::new(StringArray::from(vec![file_name; n])),
    ]);
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
    let cdc = match cdc {
        Some(mode) => Some(cdc_rows(
            mode,
            time,
            &data_schema,
            &changes,
            stored_data.as_ref().zip(stored_keys),
            &incoming,
            &keys,
        )?),
        None => None,
    };
    Ok(Merged {
        batch,
        inserts,
        updates,
        deletes: deleted,
        stale,
        min_key,
        max_key,
        cdc,
    })
}

/// The CDC log records of a rewrite's changes: (op, stored row, incoming row) each.
fn cdc_rows(
    mode: CdcMode,
    time: InstantTime,
    data_schema: &SchemaRef,
    changes: &[(&str, Option<u32>, Option<u32>)],
    stored: Option<(&RecordBatch, &StringArray)>,
    incoming: &RecordBatch,
    keys: &[&str],
) -> Result<RecordBatch> {
    let fields = image_fields(data_schema);
    let image = |batch: Option<&RecordBatch>, rows: UInt32Array| -> Result<ArrayRef> {
        let columns = match batch {
            Some(b) => b
                .columns()
                .iter()
                .map(|c| Ok(take(c.as_ref(), &rows, None)?))
                .collect::<Result<Vec<ArrayRef>>>()?,
            None => fields
                .iter()
                .map(|f| new_null_array(f.data_type(), rows.len()))
                .collect(),
        };
        let valid = NullBuffer::from(rows.iter().map(|r| r.is_some()).collect::<Vec<bool>>());
        Ok(Arc::new(StructArray::try_new(
            fields.clone(),
            columns,
            Some(valid),
        )?))
    };
    let ops: ArrayRef = Arc::new(StringArray::from_iter_values(changes.iter().map(|c| c.0)));
    // The stored and incoming keys of an update are equal; a delete has only the stored one.
    let key_of = |c: &(&str, Option<u32>, Option<u32>)| -> &str {
        match (c.2, c.1, stored.map(|s| s.1)) {
            (Some(i), _, _) => keys[i as usize],
            (None, Some(s), Some(sk)) if sk.is_valid(s as usize) => sk.value(s as usize),
            _ => "",
        }
    };
    let before = || image(stored.map(|s| s.0), changes.iter().map(|c| c.1).collect());
    let after = || image(Some(incoming), changes.iter().map(|c| c.2).collect());
    let columns: Vec<ArrayRef> = match mode {
        CdcMode::OpKeyOnly | CdcMode::DataBefore => {
            let k: ArrayRef = Arc::new(StringArray::from_iter_values(changes.iter().map(key_of)));
            let mut cols = vec![ops, k];
            if mode == CdcMode::DataBefore {
                cols.push(before()?);
            }
            cols
        }
        CdcMode::DataBeforeAfter => {
            let ts: ArrayRef = Arc::new(StringArray::from(vec![time.to_string(); changes.len()]));
            vec![ops, ts, before()?, after()?]
        }
    };
    Ok(RecordBatch::try_new(
        cdc_schema(mode, data_schema),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use crate::schema::{COMMIT_SEQNO, COMMIT_TIME, FILE_NAME, PARTITION_PATH, RECORD_KEY};
    use crate::{ChangeBatch, ReadOptions, Table, TableConfig, TableType, WriteOptions};

    fn rows(ids: &[i64], vs: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("p", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(vec!["a"; ids.len()])),
                Arc::new(Int64Array::from(vs.to_vec())),
            ],
        )
        .expect("batch")
    }

    /// (key, commit time, sequence number, partition path, file name, v) of every row, by key.
    async fn meta(t: &Table) -> Vec<[String; 6]> {
        let (_, batches) = t
            .read_snapshot(&ReadOptions {
                with_meta_columns: true,
                ..Default::default()
            })
            .await
            .expect("read");
        let mut out: Vec<[String; 6]> = batches
            .iter()
            .flat_map(|b| {
                let s = |c: &str| b.column_by_name(c).expect(c).as_string::<i32>().clone();
                let cols = [
                    RECORD_KEY,
                    COMMIT_TIME,
                    COMMIT_SEQNO,
                    PARTITION_PATH,
                    FILE_NAME,
                ]
                .map(s);
                let v = b
                    .column_by_name("v")
                    .expect("v")
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .clone();
                (0..b.num_rows())
                    .map(|i| {
                        let c = |j: usize| cols[j].value(i).to_owned();
                        [c(0), c(1), c(2), c(3), c(4), v.value(i).to_string()]
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    }

    /// A rewrite keeps the meta columns of untouched rows and gives updated and inserted rows the
    /// new commit's time and sequence numbers (in output order), and every row the new file name.
    #[tokio::test]
    async fn a_rewrite_keeps_untouched_meta_columns_and_numbers_new_rows() {
        let cfg = TableConfig::new(
            "m",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec!["p".into()],
            Some("v".into()),
            Some(1),
        )
        .expect("config");
        let t = Table::create("memory://cow_meta", cfg)
            .await
            .expect("create");
        let first = t
            .write(
                vec![ChangeBatch::upserts(rows(&[1, 2, 3], &[1, 1, 1]))],
                WriteOptions::default(),
            )
            .await
            .expect("first");
        let before = meta(&t).await;
        let t1 = first.instant.expect("committed").to_string();
        assert_eq!(
            before.iter().map(|r| r[2].clone()).collect::<Vec<_>>(),
            [
                format!("{t1}_0_0"),
                format!("{t1}_0_1"),
                format!("{t1}_0_2")
            ]
        );
        // 2 is updated, 9 and 4 are inserted, 1 and 3 are untouched.
        let second = t
            .write(
                vec![ChangeBatch::upserts(rows(&[2, 9, 4], &[2, 2, 2]))],
                WriteOptions::default(),
            )
            .await
            .expect("second");
        let t2 = second.instant.expect("committed").to_string();
        let after = meta(&t).await;
        let file = after[0][4].clone();
        assert_ne!(file, before[0][4], "a new file");
        assert!(
            after.iter().all(|r| r[4] == file && r[3] == before[0][3]),
            "{after:?}"
        );
        let untouched = |k: &str| before.iter().find(|r| r[0] == k).expect("row").clone();
        for k in ["1", "3"] {
            let mut want = untouched(k);
            want[4] = file.clone();
            assert_eq!(after.iter().find(|r| r[0] == k), Some(&want), "{k}");
        }
        let mut new: Vec<(String, String, String)> = after
            .iter()
            .filter(|r| r[1] == t2)
            .map(|r| (r[2].clone(), r[0].clone(), r[5].clone()))
            .collect();
        new.sort();
        // Sequence numbers follow the output order: stored rows in file order (2 replaced in
        // place), then inserts in batch order.
        assert_eq!(
            new,
            [
                (format!("{t2}_0_0"), "2".into(), "2".into()),
                (format!("{t2}_0_1"), "9".into(), "2".into()),
                (format!("{t2}_0_2"), "4".into(), "2".into()),
            ]
        );
    }
}
