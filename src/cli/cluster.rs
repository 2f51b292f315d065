//! `lake scheduler` and `lake executor`: a DataFusion Ballista cluster that runs lake's SQL over
//! many machines, and the client session `lake sql --cluster` plans with.
//!
//! Every process carries lake's codecs ([`lake_query::codec`], falling back to Ballista's for its
//! shuffle plans): the client sends a plan whose scans name lake tables, the scheduler opens the
//! tables and plans the scans (file slices split into partitions), and executors run the tasks,
//! merging each merge-on-read slice where it is read. Object stores come from the environment of
//! each process (`AWS_*` for `s3://`), as for every other lake command.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use lake_query::datafusion::execution::SessionStateBuilder;
use lake_query::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use lake_query::datafusion::prelude::{SessionConfig, SessionContext};
use lake_query::{HudiTableFactory, LakeLogicalCodec, LakeObjectStores, LakePhysicalCodec};

/// Arguments of `lake scheduler`.
#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Address to listen on (gRPC for clients and executors).
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub bind: SocketAddr,
    /// Host name executors and clients reach this scheduler by (default: the bind address).
    #[arg(long)]
    pub external_host: Option<String>,
    /// Seconds without a heartbeat after which an executor is taken for dead and its tasks run
    /// elsewhere.
    #[arg(long, default_value_t = 30)]
    pub executor_timeout_secs: u64,
    /// Attempts of one task before its query fails.
    #[arg(long, default_value_t = 4)]
    pub task_max_failures: usize,
}

/// Arguments of `lake executor`.
#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// The scheduler's address, HOST:PORT.
    #[arg(long)]
    pub scheduler: String,
    /// Address of this executor's Arrow Flight service (shuffle data); its gRPC service listens on
    /// the next port unless `--grpc-port` says otherwise.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub bind: SocketAddr,
    /// Port of the executor's gRPC service.
    #[arg(long)]
    pub grpc_port: Option<u16>,
    /// Host name the scheduler and other executors reach this executor by (default: the bind
    /// address).
    #[arg(long)]
    pub external_host: Option<String>,
    /// Tasks run at once (default: the machine's cores).
    #[arg(long, default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Folder for shuffle files (default: a new temporary folder, removed on exit).
    #[arg(long)]
    pub work_dir: Option<std::path::PathBuf>,
    /// Seconds between heartbeats to the scheduler (keep it well under the scheduler's
    /// `--executor-timeout-secs`).
    #[arg(long, default_value_t = 5)]
    pub heartbeat_secs: u64,
}

/// The largest gRPC message any lake cluster process sends or takes (Ballista's default is 16 MiB):
/// a plan carries the rows of in-memory tables and change feeds, which the scheduler computes.
const MAX_MESSAGE: usize = 256 << 20;

/// lake's logical codec over Ballista's.
fn logical_codec() -> Arc<LakeLogicalCodec> {
    Arc::new(LakeLogicalCodec::new(Arc::new(
        BallistaLogicalExtensionCodec::default(),
    )))
}

/// lake's physical codec over Ballista's.
fn physical_codec() -> Arc<LakePhysicalCodec> {
    Arc::new(LakePhysicalCodec::new(Arc::new(
        BallistaPhysicalExtensionCodec::default(),
    )))
}

/// `host:port` → the scheduler URL Ballista's client takes.
fn scheduler_url(addr: &str) -> anyhow::Result<String> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("{addr:?}: expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("{addr:?}: {port:?} is not a port"))?;
    Ok(format!("http://{host}:{port}"))
}

/// The session of `lake sql --cluster ADDR`: lake's tables, table functions and `STORED AS HUDI`
/// as locally, with every query that reads a table planned and run by the cluster.
pub(crate) fn cluster_session(addr: &str) -> anyhow::Result<SessionContext> {
    let url = scheduler_url(addr)?;
    // Fail at once, and say where, when nothing answers there (the client connects lazily).
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .with_context(|| format!("resolving the scheduler address {addr}"))?
        .any(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)).is_ok()
        });
    if !reachable {
        anyhow::bail!(
            "cannot reach a lake scheduler at {addr} (start one with `lake scheduler --bind {addr}`)"
        );
    }
    let config = SessionConfig::new_with_ballista()
        .with_information_schema(true)
        .with_ballista_grpc_client_max_message_size(MAX_MESSAGE)
        .with_ballista_logical_extension_codec(logical_codec())
        .with_ballista_physical_extension_codec(physical_codec());
    let state = lake_query::session_state(config)
        .upgrade_for_ballista(url)
        .context("setting up the cluster session")?;
    Ok(lake_query::session_from_state(state))
}

pub(crate) async fn run_scheduler(a: SchedulerArgs) -> anyhow::Result<()> {
    let config = SchedulerConfig {
        bind_host: a.bind.ip().to_string(),
        bind_port: a.bind.port(),
        external_host: a.external_host.unwrap_or_else(|| a.bind.ip().to_string()),
        executor_timeout_seconds: a.executor_timeout_secs,
        expire_dead_executor_interval_seconds: a.executor_timeout_secs.clamp(1, 15),
        no_executors_grace_period_seconds: a.executor_timeout_secs,
        task_max_failures: a.task_max_failures,
        grpc_server_max_decoding_message_size: MAX_MESSAGE as u32,
        grpc_server_max_encoding_message_size: MAX_MESSAGE as u32,
        grpc_client_max_message_size: MAX_MESSAGE as u32,
        override_logical_codec: Some(logical_codec()),
        override_physical_codec: Some(physical_codec()),
        override_session_builder: Some(Arc::new(|config: SessionConfig| {
            // Ballista's planning state, with lake's table factory and object stores.
            let state = ballista_core::utils::default_session_builder(config)?;
            let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
                .with_object_store_registry(Arc::new(LakeObjectStores::default()))
                .build_arc()?;
            let mut state = SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime)
                .build();
            state
                .table_factories_mut()
                .insert("HUDI".to_owned(), Arc::new(HudiTableFactory));
            Ok(state)
        })),
        ..SchedulerConfig::default()
    };
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .context("setting up the scheduler's state")?;
    eprintln!("lake scheduler listening on {}", a.bind);
    start_server(cluster, a.bind, config)
        .await
        .with_context(|| format!("scheduler on {}", a.bind))?;
    Ok(())
}

pub(crate) async fn run_executor(a: ExecutorArgs) -> anyhow::Result<()> {
    let (scheduler_host, scheduler_port) = {
        let url = scheduler_url(&a.scheduler)?;
        let rest = url.trim_start_matches("http://");
        let (h, p) = rest.rsplit_once(':').context("scheduler address")?;
        (h.to_owned(), p.parse::<u16>().context("scheduler port")?)
    };
    let grpc_port = match a.grpc_port {
        Some(p) => p,
        None => a
            .bind
            .port()
            .checked_add(1)
            .context("--bind port 65535 leaves no port for gRPC; set --grpc-port")?,
    };
    // The work folder holds shuffle files; a temporary one lives as long as the process.
    let temp = match &a.work_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("creating the executor's work folder")?),
    };
    let work_dir = match (&a.work_dir, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => anyhow::bail!("no work folder"),
    };
    let external_host = match a.external_host {
        Some(h) => h,
        None if a.bind.ip().is_unspecified() => anyhow::bail!(
            "--bind {} listens on every address: say which one the scheduler and other executors \
             reach this executor by with --external-host",
            a.bind
        ),
        None => a.bind.ip().to_string(),
    };
    let spill_dir = work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: a.bind.ip().to_string(),
        external_host: Some(external_host),
        port: a.bind.port(),
        grpc_port,
        scheduler_host,
        scheduler_port,
        vcores: a.concurrent_tasks,
        work_dir: Some(work_dir.display().to_string()),
        executor_heartbeat_interval_seconds: a.heartbeat_secs.max(1),
        grpc_max_decoding_message_size: MAX_MESSAGE as u32,
        grpc_max_encoding_message_size: MAX_MESSAGE as u32,
        override_logical_codec: Some(logical_codec()),
        override_physical_codec: Some(physical_codec()),
        override_runtime_producer: Some(Arc::new(move |_config: &SessionConfig| {
            RuntimeEnvBuilder::new()
                .with_temp_file_path(spill_dir.clone())
                .with_object_store_registry(Arc::new(LakeObjectStores::default()))
                .build_arc()
        })),
        ..ExecutorProcessConfig::default()
    };
    eprintln!(
        "lake executor on {} (gRPC port {grpc_port}), scheduler {}",
        a.bind, a.scheduler
    );
    start_executor_process(Arc::new(config))
        .await
        .with_context(|| format!("executor on {}", a.bind))?;
    drop(temp);
    Ok(())
}
