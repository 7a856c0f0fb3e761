//! The `flowscribe` binary: command line, configuration, and the pipeline
//! wiring in [`pipeline`]. Only this crate touches env vars, files, sockets,
//! signals and threads; the stage crates are libraries.
#![forbid(unsafe_code)]

mod audit_cmd;
mod audit_trail;
mod config;
mod explain_cmd;
mod identity;
mod metrics;
mod output;
mod pipeline;
mod redact;
mod sinks;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Exit code for bad configuration or an unsuitable host: the user must act.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "flowscribe",
    version,
    about = "Per-node network-flow exporter and SIEM feeder"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture flows on this node and write them out (JSON lines).
    Run(RunArgs),
    /// Print the configuration reference (Markdown), as in docs/config.md.
    ConfigReference,
    /// Print an output schema's field mapping (Markdown) or its JSON Schema.
    Schema(SchemaArgs),
    /// Which policy and rule allow or deny traffic between two endpoints,
    /// enforced and staged (from a manifests directory).
    Explain(explain_cmd::ExplainArgs),
    /// Verify exported archives: sequences, hash chain, signed checkpoints.
    Verify(verify::VerifyArgs),
    /// Audit-trail tools (`public-key`).
    Audit(audit_cmd::AuditArgs),
}

#[derive(Debug, Args)]
struct SchemaArgs {
    /// ecs, otlp-json, ocsf or cef.
    name: String,
    /// Print the JSON Schema of one record instead of the mapping table.
    #[arg(long)]
    json_schema: bool,
}

/// Flags of `flowscribe run`; each overrides the same field of the config file.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// YAML configuration file (see docs/config.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Capture on interfaces matching GLOB (repeatable; default: all but lo).
    #[arg(long = "interface", value_name = "GLOB")]
    pub interfaces: Vec<String>,
    /// Never capture on interfaces matching GLOB (repeatable; default: lo).
    #[arg(long = "exclude-interface", value_name = "GLOB")]
    pub exclude_interfaces: Vec<String>,
    /// Active timeout: a live connection gets a record at least this often (e.g. 10s).
    #[arg(long, value_name = "DURATION")]
    pub active_timeout: Option<String>,
    /// Idle timeout: a connection without packets for this long ends (e.g. 15s).
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Where records go: stdout or file:PATH.
    #[arg(long, value_name = "stdout|file:PATH")]
    pub output: Option<String>,
    /// Deliver to a sink (repeatable): stdout, file:PATH, syslog+tcp|tls|udp://HOST:PORT[?format=…&queue=disk&queue_dir=DIR].
    #[arg(long = "sink", value_name = "URL")]
    pub sinks: Vec<String>,
    /// Record format: ecs (default), otlp-json, ocsf, cef or minimal.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Resolve identities from a directory of Kubernetes manifests (re-read on change).
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOWSCRIBE_LOG")
                // kube-runtime warns at every retry of a failing watch; the
                // exporter reports each failure once itself.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime=error")),
        )
        .with_ansi(false)
        .init();
    match cli.command {
        Command::ConfigReference => {
            print!("{}", config::reference_markdown());
            ExitCode::SUCCESS
        }
        Command::Schema(args) => match args.name.parse::<flowscribe_normalize::Schema>() {
            Ok(s) if args.json_schema => {
                print!("{}", flowscribe_normalize::json_schema(s));
                ExitCode::SUCCESS
            }
            Ok(s) => {
                print!("{}", flowscribe_normalize::mapping_markdown(s));
                ExitCode::SUCCESS
            }
            Err(_) => {
                eprintln!(
                    "flowscribe: unknown schema {:?}; use ecs, otlp-json, ocsf or cef",
                    args.name
                );
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Explain(args) => match explain_cmd::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(explain_cmd::ExplainError::Usage(e)) => {
                eprintln!("flowscribe explain: {e}");
                ExitCode::from(EXIT_USAGE)
            }
            Err(explain_cmd::ExplainError::Unanswered(n)) => {
                eprintln!(
                    "flowscribe explain: {n} question(s) could not be answered (see their error lines)"
                );
                ExitCode::FAILURE
            }
            Err(explain_cmd::ExplainError::Io(e)) => {
                eprintln!("flowscribe explain: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Verify(args) => ExitCode::from(verify::command(&args)),
        Command::Audit(args) => ExitCode::from(audit_cmd::command(&args)),
        Command::Run(args) => match pipeline::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(pipeline::RunError::Usage(lines)) => {
                for line in lines {
                    eprintln!("flowscribe: {line}");
                }
                ExitCode::from(EXIT_USAGE)
            }
            Err(pipeline::RunError::Failed(e)) => {
                eprintln!("flowscribe: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
