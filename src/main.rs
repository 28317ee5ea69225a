//! The `docket` binary: parses the command line, runs the command, reports errors for humans.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use docket::merge::files::{merge_files, Requested};

#[derive(Parser)]
#[command(
    name = "docket",
    version,
    about = "Streaming pcap gateway for Stenographer and capture directories"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file.
        #[arg(short = 'c', long = "config", default_value = "conf/docket.toml")]
        config: PathBuf,
        /// Listen address, overriding the file's `listen` (e.g. 127.0.0.1:0 for any port).
        #[arg(long)]
        listen: Option<String>,
        /// Spool directory, overriding the file's `spool_dir`.
        #[arg(long)]
        spool_dir: Option<PathBuf>,
        /// Log line format on standard error: `text` for people, `json` (one object per
        /// line) for journald or Elastic.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Make a self-signed TLS certificate and key for a first start (then point `[tls]` at them).
    GenCert {
        /// Certificate file to write (PEM).
        #[arg(long, default_value = "cert.pem")]
        cert: PathBuf,
        /// Key file to write (PEM, PKCS#8; created with mode 0600).
        #[arg(long, default_value = "key.pem")]
        key: PathBuf,
        /// Host names and IP addresses the certificate is for (repeatable); the first is the CN.
        #[arg(long = "name", default_values = ["localhost", "127.0.0.1", "::1"])]
        names: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Merge capture files by timestamp (a drop-in for `mergecap -w`).
    Merge {
        /// Output file, or `-` for standard output.
        #[arg(short = 'w', value_name = "OUT")]
        output: PathBuf,
        /// Output format; by default classic pcap when all packets share one link type,
        /// pcapng otherwise.
        #[arg(short = 'F', value_enum)]
        format: Option<Format>,
        /// Input capture files (pcap or pcapng, detected from their bytes).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (docket.1, docket-serve.1, …) into a directory (packaging).
    #[command(hide = true)]
    Man {
        /// The directory (created if missing).
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Pcap,
    Pcapng,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            spool_dir,
            log_format,
        } => serve(&config, listen, spool_dir, log_format),
        Command::Merge {
            output,
            format,
            inputs,
        } => merge(&output, format, &inputs),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "docket", &mut io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => man(&dir),
        Command::GenCert {
            cert,
            key,
            names,
            days,
            force,
        } => gen_cert(&cert, &key, &names, days, force),
    }
}

/// The manual pages from the command line's own definition (so they never disagree with
/// `--help`): `docket.1` and one page per visible subcommand.
fn man(dir: &std::path::Path) -> ExitCode {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut pages = vec![("docket".to_owned(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("docket-{}", sub.get_name());
        // The page is named `docket-serve` (as man-db expects); its synopsis says `docket serve`.
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("docket {}", sub.get_name()));
        pages.push((name, page));
    }
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        for (name, page) in pages {
            let mut out = Vec::new();
            clap_mangen::Man::new(page)
                .date(env!("CARGO_PKG_VERSION"))
                .render(&mut out)?;
            std::fs::write(dir.join(format!("{name}.1")), out)?;
        }
        Ok(())
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("docket man: {}: {e}", dir.display());
            ExitCode::from(2)
        }
    }
}

fn gen_cert(
    cert: &std::path::Path,
    key: &std::path::Path,
    names: &[String],
    days: u32,
    force: bool,
) -> ExitCode {
    use std::os::unix::fs::OpenOptionsExt;
    let (cert_pem, key_pem) = match docket::http::tls::self_signed(names, days) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("docket gen-cert: {e}");
            return ExitCode::from(2);
        }
    };
    // The key is written first and private from its creation (mode 0600, not chmod after).
    for (path, text, mode) in [(key, &key_pem, 0o600), (cert, &cert_pem, 0o644)] {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).mode(mode);
        if force {
            o.create(true).truncate(true);
        } else {
            o.create_new(true);
        }
        if let Err(e) = o.open(path).and_then(|mut f| f.write_all(text.as_bytes())) {
            eprintln!("docket gen-cert: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    println!(
        "wrote {} and {} for {} (valid {days} days)",
        cert.display(),
        key.display(),
        names.join(", ")
    );
    ExitCode::SUCCESS
}

fn merge(output: &std::path::Path, format: Option<Format>, inputs: &[PathBuf]) -> ExitCode {
    let requested = match format {
        None => Requested::Auto,
        Some(Format::Pcap) => Requested::Pcap,
        Some(Format::Pcapng) => Requested::Pcapng,
    };
    let result = if output.as_os_str() == "-" {
        // A File on a duplicate of fd 1, not `io::stdout()`: its line buffering would copy
        // every vectored write.
        use std::os::fd::AsFd;
        match io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => {
                grow_pipe(&fd);
                merge_files(inputs, requested, &mut std::fs::File::from(fd))
            }
            Err(e) => Err(docket::merge::files::Error::Output(e)),
        }
    } else if std::fs::metadata(output).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        // A device or a FIFO (`-w /dev/null`, `-w pipe`): write into it. Renaming a temporary
        // file over it would replace the device node with a regular file.
        match std::fs::OpenOptions::new().write(true).open(output) {
            Ok(mut f) => merge_files(inputs, requested, &mut f),
            Err(e) => Err(docket::merge::files::Error::Output(e)),
        }
    } else {
        // Write beside the target and rename at the end, so a failed merge never leaves a
        // half-written file under the requested name.
        let tmp = output.with_extension("docket-partial");
        let result = std::fs::File::create(&tmp)
            .map_err(docket::merge::files::Error::Output)
            .and_then(|mut f| {
                let r = merge_files(inputs, requested, &mut f)?;
                f.flush().map_err(docket::merge::files::Error::Output)?;
                Ok(r)
            });
        match &result {
            Ok(_) => {
                if let Err(e) = std::fs::rename(&tmp, output) {
                    eprintln!(
                        "docket merge: cannot rename {} to {}: {e}",
                        tmp.display(),
                        output.display()
                    );
                    return ExitCode::from(2);
                }
            }
            Err(_) => {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        result
    };
    match result {
        Ok(report) => {
            for (path, e) in &report.failed {
                eprintln!("docket merge: {}: {e}", path.display());
            }
            if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(docket::merge::files::Error::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            // A reader that stops early (`| head`) is not a failure.
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("docket merge: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(
    path: &std::path::Path,
    listen: Option<String>,
    spool_dir: Option<PathBuf>,
    log_format: LogFormat,
) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    // Under systemd, the journal stamps every line itself (systemd sets JOURNAL_STREAM when
    // standard error is the journal): a second time stamp would only be noise.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    match log_format {
        LogFormat::Text if journal => logs.with_ansi(false).without_time().init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
            .init(),
        // One JSON object per line: the event's fields flattened beside `message`, the
        // spans it ran in (request, job) with their fields, no colour codes.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    let json = matches!(log_format, LogFormat::Json);
    if json {
        // A panic's message becomes one JSON line too, not text among the JSON lines.
        std::panic::set_hook(Box::new(|info| {
            tracing::error!(panic = %info, "panic");
        }));
    }
    // Why the gateway cannot start, in the log's own format (one JSON object under
    // `--log-format json`: a collector must not meet a line of text, nor one error over
    // several lines).
    let fatal = |message: String| {
        if json {
            tracing::error!(error = %message, "docket serve cannot start");
        } else {
            eprintln!("docket serve: {message}");
        }
        ExitCode::from(2)
    };
    let mut config = match docket::config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            return fatal(e.to_string());
        }
    };
    if let Some(l) = listen {
        match l.parse() {
            Ok(a) => config.listen = a,
            Err(e) => {
                return fatal(format!("--listen {l:?}: {e}"));
            }
        }
    }
    if let Some(d) = spool_dir {
        config.spool_dir = d;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            return fatal(format!("cannot start the runtime: {e}"));
        }
    };
    let result = runtime.block_on(async { docket::server::run(config, stop_signal()?).await });
    // A reader thread stuck in the kernel (a hung mount) must not hold the exit: blocking
    // threads get a moment, then the process leaves them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(e.to_string()),
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits the process at once (status
/// 0: the stop was asked for; jobs it leaves running are marked interrupted at the next start).
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, docket::server::Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(docket::server::Error::Serve)?;
    let mut int = signal(SignalKind::interrupt()).map_err(docket::server::Error::Serve)?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutdown: signal received; a second one exits at once"
        );
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::warn!(signal = name, "shutdown: second signal; exiting now");
            std::process::exit(0);
        });
    })
}

/// If `fd` is a pipe, asks for a 1 MiB pipe buffer (Linux `F_SETPIPE_SZ`; the default 64 KiB
/// means a wakeup of the reader every 64 KiB). Failure (not a pipe, over the system limit) is
/// harmless.
fn grow_pipe(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor we own; F_SETPIPE_SZ takes an int and touches no memory.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}
