//! The command line: the only module that knows clap. It turns raw
//! arguments into a validated [`Command`] that the rest of the crate runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, CommandFactory, Parser, Subcommand};

use crate::check::CheckOptions;
use crate::duration::parse as parse_duration;
use crate::grouping_key::GroupingKey;
use crate::server::{Limits, ServeOptions};
use crate::store::{PushMode, StoreOptions, Wait};
use crate::wrap::{Overlap, RunOptions, Spec};

/// Debian's textfile directory for node_exporter.
pub const DEFAULT_DIR: &str = "/var/lib/prometheus/node-exporter";

/// What to do, validated.
#[derive(Debug, Clone)]
pub enum Command {
    /// `promdrop check`
    Check(CheckOptions),
    /// `promdrop push`
    Push(PushOptions),
    /// `promdrop delete`
    Delete(StoreOptions, GroupingKey),
    /// `promdrop show`
    Show(StoreOptions, GroupingKey),
    /// `promdrop list`
    List(StoreOptions, ListFormat),
    /// `promdrop expire`
    Expire(StoreOptions, ExpireMode),
    /// `promdrop run`
    Run(RunOptions),
    /// `promdrop serve`
    Serve(ServeOptions),
    /// `promdrop completions`: the script, ready to print.
    Completions(Vec<u8>),
    /// `promdrop man`: the page in roff, ready to print.
    Man(Vec<u8>),
}

/// Options of `promdrop push`.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Where and how to write.
    pub store: StoreOptions,
    /// The group.
    pub key: GroupingKey,
    /// Replace the group or add to it.
    pub mode: PushMode,
    /// Time to live after this push.
    pub ttl: Option<Duration>,
    /// A file to read instead of standard input.
    pub file: Option<PathBuf>,
}

/// How `list` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// A table.
    Table,
    /// JSON.
    Json,
}

/// Whether `expire` removes or only reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireMode {
    /// Remove.
    Remove,
    /// Only report.
    DryRun,
}

#[derive(Debug, Parser)]
#[command(
    name = "promdrop",
    version,
    about = "Get metrics out of cron jobs safely: validated, atomic node_exporter textfiles",
    propagate_version = true
)]
struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, ClapArgs)]
struct StoreArgs {
    /// node_exporter's textfile directory.
    #[arg(long, global = true, env = "PROMDROP_DIR", default_value = DEFAULT_DIR, value_name = "DIR")]
    dir: PathBuf,
    /// Label that carries the job in every sample. `job` matches the
    /// Pushgateway; another name (e.g. `cron_job`) avoids `exported_job`
    /// when Prometheus scrapes node_exporter.
    #[arg(
        long,
        global = true,
        env = "PROMDROP_JOB_LABEL",
        default_value = "job",
        value_name = "NAME"
    )]
    job_label: String,
    /// Permission bits of group files, in octal.
    #[arg(long, global = true, env = "PROMDROP_MODE", default_value = "0644", value_parser = parse_mode)]
    mode: u32,
    /// How long to wait for a group's lock, e.g. `10s`, `2m`.
    #[arg(long, global = true, env = "PROMDROP_LOCK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    lock_timeout: Duration,
    /// Skip fsync (for tmpfs and tests only: a crash may then lose a write).
    #[arg(long, global = true, env = "PROMDROP_NO_FSYNC", value_parser = clap::builder::BoolishValueParser::new())]
    no_fsync: bool,
}

#[derive(Debug, ClapArgs)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(
        long,
        visible_alias = "web.listen-address",
        default_value = "127.0.0.1:9091",
        value_name = "ADDR"
    )]
    listen: std::net::SocketAddr,
    /// Remove groups this long after their last push, unless the push
    /// sets its own with the X-Promdrop-TTL header.
    #[arg(long, value_parser = crate::duration::parse_ttl)]
    ttl: Option<Duration>,
    /// Path of the scrape.
    #[arg(
        long = "web.telemetry-path",
        default_value = "/metrics",
        value_name = "PATH"
    )]
    telemetry_path: String,
    /// Prefix of every route, e.g. /pushgateway.
    #[arg(long = "web.route-prefix", default_value = "", value_name = "PREFIX")]
    route_prefix: String,
    /// Enable PUT /api/v1/admin/wipe, which deletes every group.
    #[arg(long = "web.enable-admin-api")]
    admin_api: bool,
    /// Enable PUT or POST /-/quit, which stops the server.
    #[arg(long = "web.enable-lifecycle")]
    lifecycle: bool,
    /// Accepted for the Pushgateway's unit files; unnecessary, as every
    /// push is already on disk when acknowledged.
    #[arg(long = "persistence.file", value_name = "FILE")]
    persistence_file: Option<String>,
    /// Accepted for the Pushgateway's unit files; see --persistence.file.
    #[arg(long = "persistence.interval", value_name = "DURATION")]
    persistence_interval: Option<String>,
    /// Largest request body accepted, in bytes, after decompression.
    #[arg(long, default_value_t = Limits::default().body, value_name = "BYTES")]
    max_body: usize,
    /// Largest gzip-compressed request body accepted, in bytes, as sent.
    #[arg(long, default_value_t = Limits::default().compressed_body, value_name = "BYTES")]
    max_compressed_body: usize,
    /// Most series one push may hold.
    #[arg(long, default_value_t = Limits::default().series, value_name = "N")]
    max_series_per_push: usize,
    /// Longest label name accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().label_name, value_name = "BYTES")]
    max_label_name_length: usize,
    /// Longest label value accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().label_value, value_name = "BYTES")]
    max_label_value_length: usize,
    /// Most groups (`.prom` files) the directory may hold; a push that would
    /// create one more is refused with 403.
    #[arg(long, default_value_t = Limits::default().groups, value_name = "N")]
    max_groups: usize,
    /// Connections served at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Basic auth and TLS, in the format of Prometheus' exporter toolkit
    /// (`basic_auth_users`, `tls_server_config`).
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config: Option<PathBuf>,
    /// How long a client may take to send a request's body (after the
    /// headers, which get 10s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    body_timeout: Duration,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OverlapArg {
    Wait,
    Skip,
    Fail,
}

#[derive(Debug, ClapArgs)]
struct KeyArgs {
    /// The job: the group's name.
    job: String,
    /// Further grouping labels, as NAME=VALUE.
    #[arg(value_name = "NAME=VALUE")]
    labels: Vec<String>,
}

/// Each subcommand's arguments are built only when it is the one invoked
/// (help, completions and man pages build them all): a cron job's `push` or
/// `run` then does not pay for building `serve`'s dozens of options.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum Sub {
    /// Push metrics from stdin to a group, validated and atomically.
    ///
    /// Reads text exposition format, checks it with node_exporter's rules and
    /// against every other file in the directory, injects the grouping labels,
    /// and replaces the group's file in one atomic rename. A refused push
    /// changes nothing.
    ///
    /// Example: backup.sh | promdrop push backup instance=db1 --ttl 8d
    Push {
        #[command(flatten)]
        key: KeyArgs,
        /// Replace only the families pushed, keeping the group's others.
        #[arg(long)]
        add: bool,
        /// Remove the group this long after the push (`promdrop expire`).
        #[arg(long, value_parser = crate::duration::parse_ttl)]
        ttl: Option<Duration>,
        /// Read this file instead of standard input (`-` is standard input).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Delete a group.
    ///
    /// Example: promdrop delete backup instance=db1
    Delete {
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Print a group's file.
    ///
    /// Example: promdrop show backup instance=db1
    Show {
        #[command(flatten)]
        key: KeyArgs,
    },
    /// List the groups: key, file, last push, age, TTL and series.
    ///
    /// Example: promdrop list --json
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove groups past their TTL, and the temp and lock files left behind.
    ///
    /// Left behind, and removed: the temp files of writers that died, the
    /// metrics files of runs that were killed, and lock files that no group
    /// or run needs any more (removed without being listed).
    ///
    /// Example: promdrop expire --dry-run
    Expire {
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run a command and record how it ended, as a group of metrics.
    ///
    /// Records start and end time, duration, exit code, success, signal,
    /// timeout, last success, and counters of runs, failures, skipped and
    /// abandoned runs (metrics `promdrop_run_*`, see the README). Exits with
    /// the command's status, or 128+N when signal N ended it. The command may
    /// write its own metrics to the file named by PROMDROP_METRICS_FILE.
    ///
    /// Example: promdrop run backup --timeout 2h --ttl 8d -- /usr/local/bin/backup.sh
    Run {
        #[command(flatten)]
        key: KeyArgs,
        /// Stop the command after this long (SIGTERM, then SIGKILL).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// After the timeout's SIGTERM, send SIGKILL after this long.
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        kill_after: Duration,
        /// When another run of the group is in progress: wait for it, skip
        /// (exit 0) or fail (exit 4); skipped and failed runs are counted.
        #[arg(long, value_enum, default_value_t = OverlapArg::Wait)]
        overlap: OverlapArg,
        /// Exit 3 when the outcome cannot be recorded, instead of warning and
        /// passing the command's status through.
        #[arg(long)]
        strict: bool,
        /// Remove the group this long after its last write.
        #[arg(long, value_parser = crate::duration::parse_ttl)]
        ttl: Option<Duration>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Serve the group directory as a Pushgateway-compatible endpoint.
    ///
    /// PUT, POST and DELETE /metrics/job/JOB{/NAME/VALUE} push and delete
    /// groups through the same validated, atomic store as `promdrop push`;
    /// GET /metrics serves every group. Every push is on disk (fsynced)
    /// before it is acknowledged.
    ///
    /// Example: promdrop serve --dir /var/lib/promdrop --listen 127.0.0.1:9091
    Serve(ServeArgs),
    /// Check that node_exporter would serve metric files cleanly.
    ///
    /// Exits 0 when node_exporter 1.5.0's textfile collector would serve the
    /// inputs with no scrape error, no dropped series and no crash; otherwise
    /// prints one `path:line:column: message` line per problem and exits 1.
    /// A directory is checked as node_exporter reads it: its `*.prom` files,
    /// together.
    ///
    /// Example: promdrop check /var/lib/prometheus/node-exporter
    Check {
        /// Files or directories to check together; `-`, or none, is standard input.
        paths: Vec<PathBuf>,
        /// Print a JSON report instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script.
    ///
    /// Example: source <(promdrop completions bash)
    Completions {
        /// The shell.
        shell: ShellArg,
    },
    /// Print a manual page (roff), for promdrop or one of its commands.
    ///
    /// Example: promdrop man push | man -l -
    Man {
        /// A command, e.g. `push`; the overview page if none.
        command: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

/// Parses the process arguments; exits with usage help on error.
pub fn parse() -> Command {
    from_args(Args::parse()).unwrap_or_else(|message| {
        Args::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit()
    })
}

fn from_args(args: Args) -> Result<Command, String> {
    let store = StoreOptions {
        dir: args.store.dir,
        job_label: args.store.job_label,
        mode: args.store.mode,
        fsync: !args.store.no_fsync,
        wait: Wait::Up(args.store.lock_timeout),
    };
    if !crate::exposition::validate::is_label_name(&store.job_label)
        || store.job_label.starts_with("__")
    {
        return Err(format!(
            "--job-label {:?} is not a valid label name",
            store.job_label
        ));
    }
    let job_label = store.job_label.clone();
    let key = |k: KeyArgs| {
        let key = GroupingKey::from_args(&k.job, &k.labels).map_err(|e| e.to_string())?;
        // The job is written under this label: a grouping label of the same
        // name would be overwritten in every series.
        if key.labels().any(|(name, _)| name == job_label) {
            return Err(format!(
                "grouping label {job_label:?} is the label the job is written under (--job-label); the job name already sets it"
            ));
        }
        Ok(key)
    };
    Ok(match args.command {
        Sub::Push {
            key: k,
            add,
            ttl,
            file,
        } => Command::Push(PushOptions {
            store,
            key: key(k)?,
            mode: if add {
                PushMode::Add
            } else {
                PushMode::Replace
            },
            ttl,
            file: file.filter(|path| path.as_os_str() != "-"),
        }),
        Sub::Delete { key: k } => Command::Delete(store, key(k)?),
        Sub::Show { key: k } => Command::Show(store, key(k)?),
        Sub::List { json } => Command::List(
            store,
            if json {
                ListFormat::Json
            } else {
                ListFormat::Table
            },
        ),
        Sub::Expire { dry_run } => Command::Expire(
            store,
            if dry_run {
                ExpireMode::DryRun
            } else {
                ExpireMode::Remove
            },
        ),
        Sub::Check { paths, json } => Command::Check(CheckOptions { paths, json }),
        Sub::Completions { shell } => Command::Completions(completions(shell)),
        Sub::Man { command } => Command::Man(man_page(command.as_deref())?),
        Sub::Serve(serve) => Command::Serve(serve_options(store, serve)),
        Sub::Run {
            key: k,
            timeout,
            kill_after,
            overlap,
            strict,
            ttl,
            command,
        } => Command::Run(RunOptions {
            store,
            key: key(k)?,
            spec: Spec {
                command,
                env: Vec::new(),
                timeout,
                kill_after,
            },
            overlap: match overlap {
                OverlapArg::Wait => Overlap::Wait,
                OverlapArg::Skip => Overlap::Skip,
                OverlapArg::Fail => Overlap::Fail,
            },
            strict,
            ttl,
        }),
    })
}

fn serve_options(store: StoreOptions, args: ServeArgs) -> ServeOptions {
    if args.persistence_file.is_some() || args.persistence_interval.is_some() {
        eprintln!(
            "promdrop: note: --persistence.file and --persistence.interval are not needed: every push is on disk before it is acknowledged"
        );
    }
    let sweep_every = args.ttl.map_or(Duration::from_secs(10), |t| {
        (t / 2).clamp(Duration::from_millis(200), Duration::from_secs(10))
    });
    ServeOptions {
        store,
        listen: args.listen,
        limits: Limits {
            compressed_body: args.max_compressed_body,
            body: args.max_body,
            series: args.max_series_per_push,
            label_name: args.max_label_name_length,
            label_value: args.max_label_value_length,
            groups: args.max_groups,
        },
        max_connections: args.max_connections,
        prefix: args.route_prefix,
        telemetry_path: args.telemetry_path,
        admin_api: args.admin_api,
        lifecycle: args.lifecycle,
        default_ttl: args.ttl,
        sweep_every,
        body_timeout: args.body_timeout,
        web_config: args.web_config,
    }
}

fn completions(shell: ShellArg) -> Vec<u8> {
    let shell = match shell {
        ShellArg::Bash => clap_complete::Shell::Bash,
        ShellArg::Zsh => clap_complete::Shell::Zsh,
        ShellArg::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "promdrop", &mut script);
    script
}

/// The page of `promdrop` itself, or of one command as `promdrop-COMMAND(1)`.
fn man_page(command: Option<&str>) -> Result<Vec<u8>, String> {
    let mut top = Args::command();
    top.build();
    let page = match command {
        None => top,
        Some(name) => {
            let sub = top
                .find_subcommand(name)
                .ok_or_else(|| format!("no command {name:?}; `promdrop help` lists them"))?;
            sub.clone()
                .name(format!("promdrop-{name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .map_err(|e| e.to_string())?;
    Ok(roff)
}

/// Permission bits of group files: octal, at most 0777 (no setuid, setgid
/// or sticky bit on a data file), and readable and writable by the owner,
/// who must read a group back to rewrite it.
fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o777 && m & 0o600 == 0o600)
        .ok_or_else(|| {
            format!(
                "invalid mode {text:?}: expected octal permission bits such as 0644, at most 0777 and with the owner's read and write (0600)"
            )
        })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::{Args, parse_mode};

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("660"), Ok(0o660));
        for bad in ["0999", "17777", "2775", "0", "0200", "0444"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }
}
