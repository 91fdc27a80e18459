//! The `portcullis` command line: parse arguments, set up logs, load the config (failing before
//! any port is bound), run until SIGTERM/SIGINT, drain, exit 0.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use portcullis::config::Config;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A TLS-terminating reverse proxy that authenticates every request once, at the edge"
)]
struct Cli {
    /// Log format: human on a terminal, JSON lines otherwise (auto), or forced.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve: the TLS and HTTP listeners, the admin listener and, if configured, the demo upstream.
    #[command(after_help = "Example:\n  portcullis run -c config.example.toml")]
    Run {
        /// Config file [default: $PORTCULLIS_CONFIG, then portcullis.toml]
        #[arg(short, long, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
        config: PathBuf,
    },
    /// Validate a config file: exit 0, or print what is wrong and where.
    #[command(
        name = "check-config",
        after_help = "Example:\n  portcullis check-config -c config.example.toml"
    )]
    CheckConfig {
        #[arg(short, long, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
        config: PathBuf,
    },
    /// Mint active sessions for a configured user through the running gateway's admin API;
    /// prints one token a line (for load tests and scripts).
    #[command(
        after_help = "Example:\n  portcullis mint -c config.example.toml --user alice --count 1000 > tokens.txt"
    )]
    Mint {
        #[arg(short, long, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
        config: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Session lifetime, e.g. "1h" [default: sessions.ttl]
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List or revoke sessions through the running gateway's admin API.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Read a password on stdin (one line) and print its argon2id hash for [[users]] password_hash.
    #[command(
        name = "hash-password",
        after_help = "Example:\n  printf '%s' 'correct horse battery staple' | portcullis hash-password"
    )]
    HashPassword,
    /// Development certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// A demo upstream that answers with the request's method, path and headers as JSON.
    #[command(after_help = "Example:\n  portcullis whoami --listen 127.0.0.1:8081")]
    Whoami {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// A user's live sessions, one a line: id, device, created, last used, ends, address.
    #[command(after_help = "Example:\n  portcullis sessions list -c config.example.toml --user alice")]
    List {
        #[arg(short, long, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
        config: PathBuf,
        #[arg(long)]
        user: String,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End one session (by id) or every session of a user, on every instance.
    #[command(
        after_help = "Examples:\n  portcullis sessions revoke -c config.example.toml 3f2a…(32 hex digits)\n  portcullis sessions revoke -c config.example.toml --user alice"
    )]
    Revoke {
        #[arg(short, long, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
        config: PathBuf,
        /// The session id (32 hex digits, as `sessions list` shows it).
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// A development CA and a certificate for the given hosts (never for production).
    #[command(after_help = "Example:\n  portcullis cert generate --out certs --hosts localhost,127.0.0.1")]
    Generate {
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Comma-separated DNS names and IP addresses.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
        hosts: Vec<String>,
        /// File name of the certificate: NAME.pem and NAME-key.pem.
        #[arg(long, default_value = "localhost")]
        name: String,
    },
}

fn main() {
    let cli = Cli::parse();
    let log = init_logs(cli.log_format);
    let result = run(cli.command);
    // Every line logged so far is written before the process ends (`exit` runs no destructors).
    drop(log);
    if let Err(e) = result {
        eprintln!("portcullis: {e:#}");
        std::process::exit(1);
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Run { config } => serve(&config),
        Command::CheckConfig { config } => {
            let cfg = Config::load(&config)?;
            println!(
                "{}: ok ({} route{})",
                config.display(),
                cfg.routes.len(),
                if cfg.routes.len() == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Command::Mint {
            config,
            user,
            count,
            ttl,
        } => {
            let cfg = Config::load(&config)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let tokens = rt.block_on(portcullis::cli::mint(&cfg, &user, count, ttl.as_deref()))?;
            let mut out = std::io::stdout().lock();
            for t in tokens {
                std::io::Write::write_all(&mut out, format!("{t}\n").as_bytes())?;
            }
            Ok(())
        }
        Command::Sessions(SessionsCommand::List { config, user, json }) => {
            let cfg = Config::load(&config)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let list = rt.block_on(portcullis::cli::list_sessions(&cfg, &user))?;
            if json {
                println!("{list}");
            } else {
                print!("{}", portcullis::cli::sessions_table(&list));
            }
            Ok(())
        }
        Command::Sessions(SessionsCommand::Revoke { config, id, user }) => {
            let cfg = Config::load(&config)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let revoked = rt.block_on(portcullis::cli::revoke(&cfg, id.as_deref(), user.as_deref()))?;
            println!(
                "revoked {} session{}",
                revoked,
                if revoked == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Command::HashPassword => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            // The line as typed, without the newline that ends it.
            let password = line
                .strip_suffix('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .unwrap_or(&line);
            if password.is_empty() {
                anyhow::bail!("no password on stdin");
            }
            println!(
                "{}",
                portcullis::auth::password::hash(password).map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
        Command::Cert(CertCommand::Generate { out, hosts, name }) => {
            let files = portcullis::certgen::generate(&out, &name, &hosts).map_err(anyhow::Error::msg)?;
            println!(
                "wrote {} and {} (CA: {}); for development only",
                files.cert.display(),
                files.key.display(),
                files.ca_cert.display()
            );
            Ok(())
        }
        Command::Whoami { listen } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let stop_signal = shutdown_signal();
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                tracing::info!(%listen, "whoami: serving");
                let cancel = tokio_util::sync::CancellationToken::new();
                let stop = cancel.clone();
                tokio::spawn(async move {
                    stop_signal.await;
                    stop.cancel();
                });
                portcullis::whoami::serve(listener, cancel).await;
                Ok(())
            })
        }
    }
}

fn serve(path: &std::path::Path) -> Result<()> {
    let config = Config::load(path)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Installed before anything starts: the default actions of SIGHUP and SIGTERM would end
    // the process, and a port that listens must already mean "a stop drains".
    let (mut hup, stop) = {
        let _context = rt.enter();
        (
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
            shutdown_signal(),
        )
    };
    let running = portcullis::start(&config)?;
    let routes: Vec<String> = config
        .routes
        .iter()
        .map(|r| {
            format!(
                "{}={}{} ({})",
                r.name,
                r.host.as_deref().unwrap_or("*"),
                r.path_prefix,
                policy_text(&r.policy)
            )
        })
        .collect();
    // Plain values (an address or "off"), as an operator would write them.
    let addr = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
    tracing::info!(
        tls = %addr(running.tls_addr),
        http = %addr(running.http_addr),
        admin = %running.admin_addr,
        demo_whoami = %addr(running.whoami_addr),
        workers = config.server.workers,
        routes = %routes.join(", "),
        store = %store_summary(&config.store),
        cache_max_entries = config.cache.max_entries,
        users = config.users.len(),
        oidc = %config.oidc.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
        mode = if config.mode == portcullis::config::Mode::MultiUser { "multi-user" } else { "single-user" },
        "portcullis is serving"
    );
    let reloader = running.reloader.clone();
    rt.block_on(async move {
        tokio::pin!(stop);
        loop {
            let reload = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = reload => {
                    tracing::info!(file = %path.display(), "SIGHUP: reloading the configuration");
                    // Logs its own outcome; a refused file leaves the running one in place.
                    let _ = reloader.reload().await;
                }
            }
        }
    });
    tracing::info!(grace = %humantime_secs(config.server.shutdown_grace), "stopping: no new connections, draining in-flight requests");
    running.shutdown();
    running.join();
    tracing::info!("stopped");
    Ok(())
}

/// A duration as the config file writes it ("30s", "1.5s").
fn humantime_secs(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// A route's policy for the startup line, as the config file spells it.
fn policy_text(policy: &portcullis::config::Policy) -> String {
    use portcullis::config::Policy;
    match policy {
        Policy::Public => "public".into(),
        Policy::Authenticated => "authenticated".into(),
        Policy::Jwt => "jwt".into(),
        Policy::Roles(roles) => format!("roles {}", roles.join("|")),
    }
}

/// The store for the startup line, without credentials (a redis URL's user and password).
fn store_summary(store: &portcullis::config::StoreConfig) -> String {
    use portcullis::config::StoreConfig;
    match store {
        StoreConfig::Memory => "memory".into(),
        StoreConfig::Embedded { path } => format!("embedded {}", path.display()),
        StoreConfig::Redis {
            url,
            prefix,
            replicas,
        } => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("redis {scheme}://{host} prefix {prefix} replicas {replicas}")
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled: called before any port is bound, a signal that arrives while the
/// gateway is still starting waits for the drain instead of killing the process mid-request.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Ok(mut only), Err(_)) | (Err(_), Ok(mut only)) => {
                only.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending().await,
        }
    }
}

fn init_logs(format: LogFormat) -> Option<portcullis::access_log::Guard> {
    use portcullis::access_log::{self, Format};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let format = if json { Format::Json } else { Format::Human };
    // One writer thread for every line: access-log batches and the other lines never interleave.
    let guard = access_log::init(format, Box::new(std::io::stdout()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(access_log::MakeWriter);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_ansi(std::io::stdout().is_terminal()).try_init()
    };
    if let Err(e) = result {
        eprintln!("portcullis: cannot set up logging: {e}");
        return guard;
    }
    access_log::set_access_enabled(tracing::enabled!(
        target: "portcullis::access",
        tracing::Level::INFO
    ));
    guard
}
