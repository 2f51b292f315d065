//! Hudi's compaction plan (`HoodieCompactionPlan`, the content of `<t>.compaction.requested`): which
//! file slices a compaction merges into new base files at its instant.

use lake_timeline::InstantTime;
use lake_timeline::wire;

use crate::{Error, Result};

/// The plan schema, as Hudi 0.14 (table version 6) writes it.
pub use lake_timeline::wire::COMPACTION_PLAN_SCHEMA;

/// The plan version written (2: file names, not paths).
pub const PLAN_VERSION: i32 = 2;

/// One file slice to compact.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactionOperation {
    /// The slice's base instant.
    pub base_instant: String,
    /// Log file names (partition-relative).
    pub delta_files: Vec<String>,
    /// Base file name, if the slice has one.
    pub data_file: Option<String>,
    /// File group id.
    pub file_id: String,
    /// Partition path.
    pub partition: String,
    /// Metrics (e.g. `TOTAL_LOG_FILES_SIZE`).
    pub metrics: Vec<(String, f64)>,
}

/// A compaction plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompactionPlan {
    /// The operations, one per file group.
    pub operations: Vec<CompactionOperation>,
    /// Extra metadata.
    pub extra_metadata: Vec<(String, String)>,
}

impl CompactionPlan {
    /// The plan as an Avro container file.
    pub fn to_avro(&self) -> Vec<u8> {
        let plan = wire::CompactionPlan {
            operations: Some(
                self.operations
                    .iter()
                    .map(|o| wire::CompactionOperation {
                        base_instant_time: Some(o.base_instant.clone()),
                        delta_file_paths: Some(o.delta_files.clone()),
                        data_file_path: o.data_file.clone(),
                        file_id: Some(o.file_id.clone()),
                        partition_path: Some(o.partition.clone()),
                        metrics: Some(o.metrics.iter().cloned().collect()),
                        bootstrap_file_path: None,
                    })
                    .collect(),
            ),
            extra_metadata: Some(self.extra_metadata.iter().cloned().collect()),
            version: Some(PLAN_VERSION),
        };
        // Plain strings, maps and numbers always fit the schema they were typed after.
        wire::write_container(COMPACTION_PLAN_SCHEMA, &plan).unwrap_or_default()
    }

    /// Parses a plan (any writer schema with Hudi's field names).
    pub fn from_avro(bytes: &[u8], instant: InstantTime) -> Result<Self> {
        let bad = |r: &str| Error::Corrupt(format!("compaction plan {instant}: {r}"));
        let plan: wire::CompactionPlan = wire::read_container(COMPACTION_PLAN_SCHEMA, bytes)
            .map_err(|e| bad(&e))?
            .ok_or_else(|| bad("empty"))?;
        let mut operations = Vec::new();
        for op in plan.operations.unwrap_or_default() {
            operations.push(CompactionOperation {
                base_instant: op
                    .base_instant_time
                    .ok_or_else(|| bad("operation without baseInstantTime"))?,
                delta_files: op.delta_file_paths.unwrap_or_default(),
                data_file: op.data_file_path,
                file_id: op.file_id.ok_or_else(|| bad("operation without fileId"))?,
                partition: op.partition_path.unwrap_or_default(),
                metrics: op.metrics.unwrap_or_default().into_iter().collect(),
            });
        }
        Ok(CompactionPlan {
            operations,
            extra_metadata: plan
                .extra_metadata
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_round_trips() {
        let plan = CompactionPlan {
            operations: vec![CompactionOperation {
                base_instant: "20250101000000000".into(),
                delta_files: vec![".f-0_20250101000000000.log.1_0-0-0".into()],
                data_file: Some("f-0_0-0-0_20250101000000000.parquet".into()),
                file_id: "f-0".into(),
                partition: "p=a".into(),
                metrics: vec![("TOTAL_LOG_FILES_SIZE".into(), 1024.0)],
            }],
            extra_metadata: vec![],
        };
        let t: InstantTime = "20250102000000000".parse().expect("time");
        let back = CompactionPlan::from_avro(&plan.to_avro(), t).expect("parse");
        assert_eq!(back, plan);
    }
}
