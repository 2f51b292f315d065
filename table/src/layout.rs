//! File naming of the Hudi layout: file ids, write tokens, base files, log files, markers and the
//! `.hoodie_partition_metadata` file of every partition.

use lake_timeline::InstantTime;

/// The write token lake stamps on base and CDC files (`task-stage-attempt`); their names also
/// carry the writing instant, so they never collide.
pub const WRITE_TOKEN: &str = "0-0-0";

/// A fresh write token for the log files of one write, `0-<n>-0` with a random ten-digit `n`: a v6
/// log file is named by its slice and version, which concurrent writers of one file group may both
/// pick, so each write names its logs with its own token (Hudi orders logs of one version by token).
/// Rolling a write back then only ever deletes that write's own files.
pub fn new_log_write_token() -> String {
    let n = 1_000_000_000 + (uuid::Uuid::new_v4().as_u128() % 3_000_000_000) as u64;
    format!("0-{n}-0")
}

/// Whether lake wrote a log file with this token (lake writes each log file whole, in one put, so a
/// torn block in it is damage, not an interrupted append): `0-0-0`, or `0-<ten digits>-0`.
pub fn is_lake_write_token(token: &str) -> bool {
    if token == WRITE_TOKEN {
        return true;
    }
    let mut parts = token.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("0"), Some(n), Some("0"), None) if n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit())
    )
}
/// Name of the per-partition metadata file.
pub const PARTITION_METADATA: &str = ".hoodie_partition_metadata";
/// Root-relative folder of the write markers of in-progress instants.
pub const MARKERS_DIR: &str = ".hoodie/.temp";

/// A new file id: a random UUID with `-0`; for a bucket, its first 8 characters are the bucket id.
pub fn new_file_id(bucket: Option<u32>) -> String {
    let uuid = uuid::Uuid::new_v4().to_string();
    match bucket {
        Some(b) => format!("{b:08}{}-0", &uuid[8..]),
        None => format!("{uuid}-0"),
    }
}

/// The bucket a bucket-index file id belongs to.
pub fn bucket_of_file_id(file_id: &str) -> Option<u32> {
    file_id.get(..8).and_then(|p| p.parse().ok())
}

/// Joins a partition path and a file name into a root-relative path.
pub fn join(partition: &str, name: &str) -> String {
    if partition.is_empty() {
        name.to_owned()
    } else {
        format!("{partition}/{name}")
    }
}

/// A base (Parquet) file: `{fileId}_{writeToken}_{instant}.parquet`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseFile {
    /// Partition path.
    pub partition: String,
    /// File group id.
    pub file_id: String,
    /// The write token.
    pub write_token: String,
    /// The instant that wrote it.
    pub instant: InstantTime,
    /// The file name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

impl BaseFile {
    /// The file name of a new base file.
    pub fn name_for(file_id: &str, write_token: &str, instant: InstantTime) -> String {
        format!("{file_id}_{write_token}_{instant}.parquet")
    }

    /// Parses a base file name; `None` if the name is not one.
    pub fn parse(partition: &str, name: &str, size: u64) -> Option<Self> {
        let stem = name.strip_suffix(".parquet")?;
        let mut parts = stem.split('_');
        let (file_id, token, instant) = (parts.next()?, parts.next()?, parts.next()?);
        let ok =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if parts.next().is_some() || !ok(file_id) || !ok(token) {
            return None;
        }
        Some(Self {
            partition: partition.to_owned(),
            file_id: file_id.to_owned(),
            write_token: token.to_owned(),
            instant: instant.parse().ok()?,
            name: name.to_owned(),
            size,
        })
    }

    /// Root-relative path.
    pub fn path(&self) -> String {
        join(&self.partition, &self.name)
    }
}

/// A log file: `.{fileId}_{baseInstant}.log.{version}_{writeToken}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    /// Partition path.
    pub partition: String,
    /// File group id.
    pub file_id: String,
    /// The base instant of the slice (v6) or the deltacommit that wrote it (v8+).
    pub instant: InstantTime,
    /// Log version, from 1.
    pub version: u32,
    /// Write token.
    pub write_token: String,
    /// The file name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

impl LogFile {
    /// Parses a log file name; `None` if the name is not one (CDC logs are skipped).
    pub fn parse(partition: &str, name: &str, size: u64) -> Option<Self> {
        let rest = name.strip_prefix('.')?;
        let (head, tail) = rest.split_once(".log.")?;
        let (file_id, instant) = head.rsplit_once('_')?;
        let (version, token) = tail.split_once('_')?;
        // Hudi's write token is `<digits>-<digits>-<digits>`; anything else (CDC logs, a store's
        // staging file of an interrupted upload such as `…_0-0-0#1`) is not a log file.
        let parts: Vec<&str> = token.split('-').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
            || file_id.is_empty()
        {
            return None;
        }
        Some(Self {
            partition: partition.to_owned(),
            file_id: file_id.to_owned(),
            instant: instant.parse().ok()?,
            version: version.parse().ok()?,
            write_token: token.to_owned(),
            name: name.to_owned(),
            size,
        })
    }

    /// Root-relative path.
    pub fn path(&self) -> String {
        join(&self.partition, &self.name)
    }
}

/// A CDC log file: `.{fileId}_{instant}.log.{version}_{writeToken}.cdc`, written by the commit
/// `instant` next to the base file it rewrote (Hudi's supplemental change log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdcFile {
    /// Partition path.
    pub partition: String,
    /// File group id.
    pub file_id: String,
    /// The commit that wrote it (the base instant of the slice it describes).
    pub instant: InstantTime,
    /// The file name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

impl CdcFile {
    /// The name of the CDC log a commit writes for a file group.
    pub fn name_for(file_id: &str, instant: InstantTime, write_token: &str) -> String {
        format!(".{file_id}_{instant}.log.1_{write_token}.cdc")
    }

    /// Parses a CDC log file name; `None` if the name is not one.
    pub fn parse(partition: &str, name: &str, size: u64) -> Option<Self> {
        let log = LogFile::parse(partition, name.strip_suffix(".cdc")?, size)?;
        Some(Self {
            partition: log.partition,
            file_id: log.file_id,
            instant: log.instant,
            name: name.to_owned(),
            size,
        })
    }

    /// Root-relative path.
    pub fn path(&self) -> String {
        join(&self.partition, &self.name)
    }
}

/// The content of `.hoodie_partition_metadata` for a partition first written at `instant`.
pub fn partition_metadata(instant: InstantTime, partition: &str) -> String {
    let depth = if partition.is_empty() {
        0
    } else {
        partition.split('/').count()
    };
    let date = chrono::Utc::now().format("%a %b %d %H:%M:%S UTC %Y");
    format!("#partition metadata\n#{date}\ncommitTime={instant}\npartitionDepth={depth}\n")
}

/// Root-relative path of the marker of a data file written by `instant`.
pub fn marker_path(instant: InstantTime, file_path: &str, kind: &str) -> String {
    format!("{MARKERS_DIR}/{instant}/{file_path}.marker.{kind}")
}

/// The data file a marker names (the marker path relative to its instant's marker folder).
pub fn file_of_marker(relative_marker: &str) -> Option<&str> {
    let (file, _kind) = relative_marker.rsplit_once(".marker.")?;
    Some(file)
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_write_tokens_are_fresh_and_recognised_as_lake_s() {
        let (a, b) = (new_log_write_token(), new_log_write_token());
        assert_ne!(a, b);
        for t in [&a, &b, &WRITE_TOKEN.to_owned()] {
            assert!(is_lake_write_token(t), "{t}");
            let name = format!(".f-0_20250101000000000.log.3_{t}");
            assert_eq!(
                LogFile::parse("p", &name, 1).expect("parses").write_token,
                *t
            );
        }
        for other in [
            "1-0-1",
            "0-12-0",
            "0-1234567890-1",
            "0-12345678901-0",
            "0-0-0-0",
        ] {
            assert!(!is_lake_write_token(other), "{other}");
        }
    }

    use super::*;

    #[test]
    fn base_and_log_names_parse() {
        let b = BaseFile::parse(
            "10",
            "a079bdb3-731c-4894-b855-abfcd6921007-0_0-203-274_20240418173551906.parquet",
            5,
        )
        .expect("base");
        assert_eq!(b.file_id, "a079bdb3-731c-4894-b855-abfcd6921007-0");
        assert_eq!(b.instant.to_string(), "20240418173551906");
        assert_eq!(
            b.path(),
            "10/a079bdb3-731c-4894-b855-abfcd6921007-0_0-203-274_20240418173551906.parquet"
        );
        assert!(BaseFile::parse("", "._x-0_1-2-3_20240418173551906.parquet", 0).is_none());
        assert!(BaseFile::parse("", "part-0000.parquet", 0).is_none());
        let l = LogFile::parse("", ".0712b9f9-0_20250126040823628.log.2_1-0-1", 1).expect("log");
        assert_eq!(
            (l.file_id.as_str(), l.version, l.write_token.as_str()),
            ("0712b9f9-0", 2, "1-0-1")
        );
        for not_a_log in [
            ".0712b9f9-0_20250126040823628.log.2_1-0-1#1",
            ".0712b9f9-0_20250126040823628.log.2_1-0-1.cdc",
            ".0712b9f9-0_20250126040823628.log.2_x",
        ] {
            assert!(LogFile::parse("", not_a_log, 1).is_none(), "{not_a_log}");
        }
        let cdc =
            CdcFile::parse("p", ".0712b9f9-0_20250126040823628.log.2_1-0-1.cdc", 7).expect("cdc");
        assert_eq!(
            (cdc.file_id.as_str(), cdc.instant.to_string(), cdc.path()),
            (
                "0712b9f9-0",
                "20250126040823628".to_owned(),
                "p/.0712b9f9-0_20250126040823628.log.2_1-0-1.cdc".to_owned()
            )
        );
        let t = "20250126040823628".parse().expect("t");
        let name = CdcFile::name_for("f-0", t, WRITE_TOKEN);
        assert_eq!(name, ".f-0_20250126040823628.log.1_0-0-0.cdc");
        assert!(CdcFile::parse("", &name, 0).is_some());
        assert!(CdcFile::parse("", ".f-0_20250126040823628.log.1_0-0-0", 0).is_none());
    }

    #[test]
    fn bucket_file_ids_carry_the_bucket() {
        let id = new_file_id(Some(42));
        assert_eq!(id.len(), 38);
        assert!(id.starts_with("00000042-") && id.ends_with("-0"), "{id}");
        assert_eq!(bucket_of_file_id(&id), Some(42));
        let t = "20250101000000000".parse().expect("t");
        assert!(
            partition_metadata(t, "a=1/b=2")
                .ends_with("commitTime=20250101000000000\npartitionDepth=2\n")
        );
        assert_eq!(
            file_of_marker("p=1/f.parquet.marker.CREATE"),
            Some("p=1/f.parquet")
        );
    }
}
