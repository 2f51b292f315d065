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
use crate::index;
use crate::view::FileSystemView;
use crate::{Result, Table};

/// What the global index made of a batch.
pub(super) struct Routed {
    /// Rows to write: the surviving winners, then the added deletes.
    pub winners: Vec<usize>,
    /// Upserts dropped as older than the key's version in another partition.
    pub stale: u64,
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
        let mut moves: Vec<(usize, String)> = Vec::new();
        let mut stale = 0u64;
        for row in winners {
            let here = partitions[row].as_str();
            let elsewhere: Vec<&(String, usize)> = stored
                .found
                .get(p.keys[row].as_str())
                .map(|v| v.iter().filter(|(part, _)| part != here).collect())
                .unwrap_or_default();
            if !p.is_delete[row] && elsewhere.iter().any(|(_, at)| stored_newer(row, *at)) {
                stale += 1;
                continue;
            }
            moves.extend(elsewhere.iter().map(|(part, _)| (row, part.clone())));
            kept.push(row);
        }
        if !moves.is_empty() {
            let indices = UInt32Array::from_iter_values(moves.iter().map(|(r, _)| *r as u32));
            let added: RecordBatch = take_record_batch(&p.rows, &indices)?;
            let first = p.rows.num_rows();
            p.rows = concat_batches(&p.rows.schema(), [&p.rows, &added])?;
            for (i, (row, part)) in moves.into_iter().enumerate() {
                let key = p.keys[row].clone();
                p.keys.push(key);
                p.is_delete.push(true);
                partitions.push(part);
                kept.push(first + i);
            }
        }
        Ok(Routed {
            winners: kept,
            stale,
        })
    }
}
