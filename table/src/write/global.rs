//! Table-wide record keys (the global index): a key lives in one partition of the whole table.
//!
//! The batch is resolved per record key alone (the latest version wins, whatever its partition),
//! then the live stored version of every key is looked up in every partition
//! ([`index::stored_versions`]):
//! - an upsert older (by the ordering field) than a stored version in another partition is stale
//!   and dropped — the key stays where it is;
//! - otherwise every stored copy in another partition gets a delete carrying the upsert's ordering
//!   value, written in the same commit as the upsert (a log delete block on merge-on-read);
//! - a delete applies to the key wherever it is stored (each copy is compared with the delete's
//!   ordering value as usual).
//!
//! This is Hudi's `GLOBAL_SIMPLE` index with `hoodie.simple.index.update.partition.path=true`.

use std::collections::HashMap;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use lake_timeline::Timeline;

use super::prepare::{Prepared, ordering_rows};
use crate::index::{self, StoredAt};
use crate::view::FileSystemView;
use crate::{Result, Table};

/// What the global index made of a batch.
pub(super) struct Routed {
    /// Rows to write: the surviving winners, then the added deletes.
    pub winners: Vec<usize>,
    /// Upserts dropped as older than the key's version in another partition.
    pub stale: u64,
    /// The file group of every added delete (row → file id).
    pub pinned: HashMap<usize, String>,
}

impl Table {
    /// The winning version of every record key in the batch, whatever its partition (ties go to the
    /// later row), in first-seen order.
    pub(super) fn dedupe_global(&self, p: &Prepared) -> Result<Vec<usize>> {
        let order = ordering_rows(&p.rows, self.config().ordering_field.as_deref(), &[])?;
        let mut winner: HashMap<&str, usize> = HashMap::with_capacity(p.keys.len());
        let mut first_seen: Vec<&str> = Vec::new();
        for (row, key) in p.keys.iter().enumerate() {
            match winner.get_mut(key.as_str()) {
                Some(w) => {
                    if order
                        .as_ref()
                        .is_none_or(|(rows, _)| rows.row(row) >= rows.row(*w))
                    {
                        *w = row;
                    }
                }
                None => {
                    winner.insert(key, row);
                    first_seen.push(key);
                }
            }
        }
        Ok(first_seen.into_iter().map(|k| winner[k]).collect())
    }

    /// Routes the winners of a table-wide resolution: drops stale upserts and appends a delete row
    /// (to `p` and `partitions`) for every stored copy of a key in a partition other than the
    /// winner's. `view` lists the whole table.
    pub(super) async fn route_global(
        &self,
        timeline: &Timeline,
        view: &FileSystemView,
        p: &mut Prepared,
        partitions: &mut Vec<String>,
        winners: Vec<usize>,
    ) -> Result<Routed> {
        let field = self.config().ordering_field.as_deref();
        let ordering =
            field.and_then(|f| p.rows.column_by_name(f).map(|c| (f, c.data_type().clone())));
        let wanted: Vec<&str> = winners.iter().map(|r| p.keys[*r].as_str()).collect();
        let stored = index::stored_versions(
            self,
            timeline,
            view,
            &wanted,
            ordering.as_ref().map(|(f, t)| (*f, t)),
        )
        .await?;
        let extra: Vec<_> = stored.ordering.iter().cloned().collect();
        let order = ordering_rows(&p.rows, field, &extra)?;
        // Whether the stored version `at` is newer than row `row` of the batch.
        let stored_newer = |row: usize, at: usize| match &order {
            Some((rows, stored)) => stored.first().is_some_and(|s| s.row(at) > rows.row(row)),
            None => false,
        };
        let mut kept = Vec::with_capacity(winners.len());
        let mut moves: Vec<(usize, &StoredAt)> = Vec::new();
        let mut stale = 0u64;
        for row in winners {
            let here = partitions[row].as_str();
            let elsewhere: Vec<&StoredAt> = stored
                .found
                .get(p.keys[row].as_str())
                .map(|v| v.iter().filter(|s| s.partition != here).collect())
                .unwrap_or_default();
            if !p.is_delete[row] && elsewhere.iter().any(|s| stored_newer(row, s.at)) {
                stale += 1;
                continue;
            }
            moves.extend(elsewhere.into_iter().map(|s| (row, s)));
            kept.push(row);
        }
        let mut pinned = HashMap::with_capacity(moves.len());
        if !moves.is_empty() {
            let indices = UInt32Array::from_iter_values(moves.iter().map(|(r, _)| *r as u32));
            let added: RecordBatch = take_record_batch(&p.rows, &indices)?;
            let first = p.rows.num_rows();
            p.rows = concat_batches(&p.rows.schema(), [&p.rows, &added])?;
            for (i, (row, at)) in moves.into_iter().enumerate() {
                let key = p.keys[row].clone();
                p.keys.push(key);
                p.is_delete.push(true);
                partitions.push(at.partition.clone());
                pinned.insert(first + i, at.file_id.clone());
                kept.push(first + i);
            }
        }
        Ok(Routed {
            winners: kept,
            stale,
            pinned,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, BooleanArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use bytes::Bytes;

    use crate::config::PROPERTIES_PATH;
    use crate::{ChangeBatch, ReadOptions, Table, TableConfig, TableType, WriteOptions};

    fn rows(ids: &[i64], parts: &[&str], vs: &[Option<i64>]) -> arrow::array::RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("p", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]));
        arrow::array::RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(parts.to_vec())),
                Arc::new(Int64Array::from(vs.to_vec())),
            ],
        )
        .expect("batch")
    }

    async fn snapshot(t: &Table) -> Vec<(i64, String, i64)> {
        let (_, batches) = t
            .read_snapshot(&ReadOptions::default())
            .await
            .expect("read");
        let mut out: Vec<(i64, String, i64)> = batches
            .iter()
            .flat_map(|b| {
                let id = b
                    .column_by_name("id")
                    .expect("id")
                    .as_primitive::<Int64Type>()
                    .clone();
                let p = b.column_by_name("p").expect("p").as_string::<i32>().clone();
                let v = b
                    .column_by_name("v")
                    .expect("v")
                    .as_primitive::<Int64Type>()
                    .clone();
                (0..b.num_rows())
                    .map(move |i| (id.value(i), p.value(i).to_owned(), v.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    }

    fn config(table_type: TableType, buckets: Option<u32>) -> TableConfig {
        TableConfig::new(
            "g",
            table_type,
            vec!["id".into()],
            vec!["p".into()],
            Some("v".into()),
            buckets,
        )
        .expect("config")
    }

    /// A key whose records are only in a log file (no base file holds it): the delete of its old
    /// copy still reaches that file group, found by the global lookup.
    #[tokio::test]
    async fn a_move_deletes_a_copy_that_only_a_log_holds() {
        // Merge-on-read with the bucket index writes new keys into logs only.
        let uri = "memory://global_log_only";
        let t = Table::create(uri, config(TableType::MergeOnRead, Some(1)))
            .await
            .expect("create");
        t.write(
            vec![ChangeBatch::upserts(rows(
                &[1, 2],
                &["a", "a"],
                &[Some(1), Some(1)],
            ))],
            WriteOptions::default(),
        )
        .await
        .expect("write");
        // The same table, now with table-wide keys and the simple index.
        let mut global = config(TableType::MergeOnRead, None);
        global.global_index = true;
        t.storage()
            .put(PROPERTIES_PATH, Bytes::from(global.render()))
            .await
            .expect("properties");
        let t = Table::open_storage(t.storage().clone())
            .await
            .expect("open");
        let s = t
            .write(
                vec![ChangeBatch::upserts(rows(&[1], &["b"], &[Some(2)]))],
                WriteOptions::default(),
            )
            .await
            .expect("move");
        assert_eq!(s.deletes, 1, "{s:?}");
        assert_eq!(snapshot(&t).await, [(1, "b".into(), 2), (2, "a".into(), 1)]);
    }

    /// A delete without an ordering value wins by write order on copy-on-write too, wherever the
    /// key lives.
    #[tokio::test]
    async fn an_unordered_delete_removes_the_key_wherever_it_lives() {
        let mut cfg = config(TableType::CopyOnWrite, None);
        cfg.global_index = true;
        let t = Table::create("memory://global_unordered_delete", cfg)
            .await
            .expect("create");
        t.write(
            vec![ChangeBatch::upserts(rows(
                &[1, 2],
                &["a", "b"],
                &[Some(5), Some(5)],
            ))],
            WriteOptions::default(),
        )
        .await
        .expect("write");
        let delete = rows(&[1, 2], &["z", "b"], &[None, None]);
        let flags = BooleanArray::from(vec![true; delete.num_rows()]);
        assert_eq!(flags.len(), 2);
        let s = t
            .write(
                vec![ChangeBatch::new(delete, flags)],
                WriteOptions::default(),
            )
            .await
            .expect("delete");
        assert_eq!((s.deletes, s.stale), (2, 0), "{s:?}");
        assert!(snapshot(&t).await.is_empty());
    }
}
