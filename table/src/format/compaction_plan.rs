//! Hudi's compaction plan (`HoodieCompactionPlan`, the content of `<t>.compaction.requested`): which
//! file slices a compaction merges into new base files at its instant.

use lake_timeline::InstantTime;
use lake_timeline::avro::{self, Datum};

use crate::{Error, Result};

/// The plan schema, as Hudi 0.14 (table version 6) writes it.
pub const COMPACTION_PLAN_SCHEMA: &str = r#"{"namespace":"org.apache.hudi.avro.model","type":"record","name":"HoodieCompactionPlan","fields":[{"name":"operations","type":["null",{"type":"array","items":{"name":"HoodieCompactionOperation","type":"record","fields":[{"name":"baseInstantTime","type":["null","string"]},{"name":"deltaFilePaths","type":["null",{"type":"array","items":"string"}],"default":null},{"name":"dataFilePath","type":["null","string"],"default":null},{"name":"fileId","type":["null","string"]},{"name":"partitionPath","type":["null","string"],"default":null},{"name":"metrics","type":["null",{"type":"map","values":"double"}],"default":null},{"name":"bootstrapFilePath","type":["null","string"],"default":null}]}}],"default":null},{"name":"extraMetadata","type":["null",{"type":"map","values":"string"}],"default":null},{"name":"version","type":["int","null"],"default":1}]}"#;

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

fn opt_str(s: Option<&str>) -> Datum {
    match s {
        Some(s) => Datum::Union(1, Box::new(Datum::str(s))),
        None => Datum::Union(0, Box::new(Datum::Null)),
    }
}

fn get_str(d: &Datum) -> Option<String> {
    match d {
        Datum::Union(_, v) => get_str(v),
        Datum::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn unwrap_union(d: &Datum) -> &Datum {
    match d {
        Datum::Union(_, v) => v,
        other => other,
    }
}

impl CompactionPlan {
    /// The plan as an Avro container file.
    pub fn to_avro(&self) -> Vec<u8> {
        let ops = self
            .operations
            .iter()
            .map(|o| {
                Datum::Record(vec![
                    opt_str(Some(&o.base_instant)),
                    Datum::Union(1, Box::new(Datum::strings(o.delta_files.iter().cloned()))),
                    opt_str(o.data_file.as_deref()),
                    opt_str(Some(&o.file_id)),
                    opt_str(Some(&o.partition)),
                    Datum::Union(
                        1,
                        Box::new(Datum::Map(
                            o.metrics
                                .iter()
                                .map(|(k, v)| (k.clone(), Datum::Double(*v)))
                                .collect(),
                        )),
                    ),
                    opt_str(None),
                ])
            })
            .collect();
        let datum = Datum::Record(vec![
            Datum::Union(1, Box::new(Datum::Array(ops))),
            Datum::Union(
                1,
                Box::new(Datum::Map(
                    self.extra_metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), Datum::str(v.clone())))
                        .collect(),
                )),
            ),
            Datum::Union(0, Box::new(Datum::Int(PLAN_VERSION))),
        ]);
        avro::container_file(COMPACTION_PLAN_SCHEMA, &datum)
    }

    /// Parses a plan (any writer schema with Hudi's field names).
    pub fn from_avro(bytes: &[u8], instant: InstantTime) -> Result<Self> {
        let bad = |r: &str| Error::Corrupt(format!("compaction plan {instant}: {r}"));
        let (schema_json, data) = avro::read_container(bytes).map_err(|e| bad(&e))?;
        let schema = avro::Schema::parse(&schema_json).map_err(|e| bad(&e))?;
        let datum = data.into_iter().next().ok_or_else(|| bad("empty"))?;
        let avro::Schema::Record { fields, .. } = &schema else {
            return Err(bad("not a record"));
        };
        let Datum::Record(values) = &datum else {
            return Err(bad("not a record"));
        };
        let field = |name: &str| {
            fields
                .iter()
                .position(|(n, _)| n == name)
                .and_then(|i| values.get(i))
        };
        let op_fields: Vec<String> = fields
            .iter()
            .find(|(n, _)| n == "operations")
            .and_then(|(_, s)| op_field_names(s))
            .unwrap_or_default();
        let mut plan = CompactionPlan::default();
        if let Some(Datum::Array(ops)) = field("operations").map(unwrap_union) {
            for op in ops {
                let Datum::Record(v) = op else { continue };
                let f = |name: &str| {
                    op_fields
                        .iter()
                        .position(|n| n == name)
                        .and_then(|i| v.get(i))
                };
                let delta_files = match f("deltaFilePaths").map(unwrap_union) {
                    Some(Datum::Array(a)) => a.iter().filter_map(get_str).collect(),
                    _ => Vec::new(),
                };
                let metrics = match f("metrics").map(unwrap_union) {
                    Some(Datum::Map(m)) => m
                        .iter()
                        .filter_map(|(k, v)| match v {
                            Datum::Double(d) => Some((k.clone(), *d)),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                plan.operations.push(CompactionOperation {
                    base_instant: f("baseInstantTime")
                        .and_then(get_str)
                        .ok_or_else(|| bad("operation without baseInstantTime"))?,
                    delta_files,
                    data_file: f("dataFilePath").and_then(get_str),
                    file_id: f("fileId")
                        .and_then(get_str)
                        .ok_or_else(|| bad("operation without fileId"))?,
                    partition: f("partitionPath").and_then(get_str).unwrap_or_default(),
                    metrics,
                });
            }
        }
        if let Some(Datum::Map(m)) = field("extraMetadata").map(unwrap_union) {
            plan.extra_metadata = m
                .iter()
                .filter_map(|(k, v)| get_str(v).map(|v| (k.clone(), v)))
                .collect();
        }
        Ok(plan)
    }
}

fn op_field_names(s: &avro::Schema) -> Option<Vec<String>> {
    match s {
        avro::Schema::Union(b) => b.iter().find_map(op_field_names),
        avro::Schema::Array(items) => op_field_names(items),
        avro::Schema::Record { fields, .. } => {
            Some(fields.iter().map(|(n, _)| n.clone()).collect())
        }
        _ => None,
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
