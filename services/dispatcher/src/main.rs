//! luminous-healing: the dispatcher behind `luminous-healing.socket`.
//! See luminous-healing(8) in docs/man/luminous-healing.8.md.

mod conn;
mod fold;
mod forward;
#[cfg(test)]
mod golden;
mod handle;
mod identity;
mod pipeline;
mod state;
mod varlink;

use conn::Kind;
use handle::Ctx;
use healing_activation::{
    bind_path, notify_ready, notify_stopping, serve_all, start_watchdog, take_named_listeners,
    Framing, ListenerSource,
};
use healing_audit::Level;
use healing_auth::{Secret, SecretSource};
use healing_policy::{Config, DEFAULT_CONFIG_PATH};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const USAGE: &str =
    "usage: luminous-healing [--config PATH] [--listen PATH] [--varlink PATH] [--state-file PATH] [--action-dir DIR]

Normally started by luminous-healing.socket (the JSON protocol) and
luminous-healing-varlink.socket (io.luminous.Healing), told apart by their
FileDescriptorName= (json, varlink). Run by hand, --listen binds PATH for
the JSON protocol and --varlink PATH for Varlink (mode 0660) instead.
  --config PATH      configuration (default /etc/luminous-healing/config.toml)
  --state-file PATH  replay cache, rate-limit and pause state (default
                     $RUNTIME_DIRECTORY/state.log; in memory without either)
  --action-dir DIR   where the action sockets are (default /run/luminous-healing/actions)
  --check-config     load the configuration and the secret, then exit";

struct Args {
    config: Option<PathBuf>,
    listen: Option<PathBuf>,
    varlink: Option<PathBuf>,
    state_file: Option<PathBuf>,
    action_dir: PathBuf,
    check_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        config: None,
        listen: None,
        varlink: None,
        state_file: None,
        action_dir: PathBuf::from("/run/luminous-healing/actions"),
        check_only: false,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.to_str() {
            Some("--config") => a.config = Some(value("--config")?),
            Some("--listen") => a.listen = Some(value("--listen")?),
            Some("--varlink") => a.varlink = Some(value("--varlink")?),
            Some("--state-file") => a.state_file = Some(value("--state-file")?),
            Some("--action-dir") => a.action_dir = value("--action-dir")?,
            Some("--check-config") => a.check_only = true,
            Some("--help") | Some("-h") => return Err(USAGE.to_string()),
            Some("--version") => {
                return Err(format!("luminous-healing {}", env!("CARGO_PKG_VERSION")))
            }
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

/// Start-up errors go to the journal (with our identifier, so they sit next
/// to the audit records) and to stderr, which systemd also journals.
fn fatal(msg: &str) -> ExitCode {
    healing_audit::service(Level::Error, msg);
    eprintln!("luminous-healing: {msg}");
    ExitCode::FAILURE
}

/// EX_CONFIG: the unit's RestartPreventExitStatus= names it, so a missing
/// secret or a bad config fails the unit at once instead of restarting in a
/// loop that can never succeed until an admin acts.
fn fatal_config(msg: &str) -> ExitCode {
    let _ = fatal(msg);
    ExitCode::from(78)
}

/// The sockets to serve: those systemd passed, by FileDescriptorName=
/// (`json`, `varlink`; an unnamed or otherwise named single socket is the
/// JSON one, as before there were two), or, run by hand, `--listen` and
/// `--varlink` bound here.
type Sockets = Vec<(Kind, std::os::unix::net::UnixListener)>;

fn listeners(args: &Args) -> Result<(Sockets, ListenerSource), String> {
    let passed = take_named_listeners().map_err(|e| e.to_string())?;
    if !passed.is_empty() {
        let mut out: Sockets = Vec::new();
        for (name, l) in passed {
            let kind = match name.as_str() {
                "varlink" | "luminous-healing-varlink.socket" => Kind::Varlink,
                "json" | "luminous-healing.socket" | "0" => Kind::Json,
                _ if out.is_empty() => Kind::Json,
                other => {
                    return Err(format!(
                        "systemd passed a socket named {other:?}; expected json or varlink"
                    ))
                }
            };
            if out.iter().any(|(k, _)| *k == kind) {
                return Err(format!("systemd passed two {kind:?} sockets"));
            }
            out.push((kind, l));
        }
        return Ok((out, ListenerSource::Activated));
    }
    let mut out: Sockets = Vec::new();
    if let Some(p) = &args.listen {
        out.push((
            Kind::Json,
            bind_path(p, 0o660).map_err(|e| format!("{}: {e}", p.display()))?,
        ));
    }
    if let Some(p) = &args.varlink {
        out.push((
            Kind::Varlink,
            bind_path(p, 0o660).map_err(|e| format!("{}: {e}", p.display()))?,
        ));
    }
    if out.is_empty() {
        return Err("not socket-activated (no LISTEN_FDS) and neither --listen PATH nor --varlink PATH given".into());
    }
    Ok((out, ListenerSource::Bound))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let config = match &args.config {
        Some(p) => Config::load(p, true),
        None => Config::load(std::path::Path::new(DEFAULT_CONFIG_PATH), false),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => return fatal_config(&format!("bad configuration: {e}")),
    };
    let secret = match Secret::load() {
        Ok(s) => s,
        Err(e) => return fatal_config(&format!("cannot start: {e}")),
    };
    if secret.source == SecretSource::Environment {
        healing_audit::service(
            Level::Warning,
            "secret taken from LUMINOUS_HEALING_SECRET: the environment is visible to the service manager and its clients; use LoadCredential=secret:PATH",
        );
    }
    let allowed = match identity::Allowed::resolve(&config.allowed_groups, &config.allowed_users) {
        Ok(a) => a,
        Err(e) => return fatal_config(&format!("bad configuration: {e}")),
    };
    let policy = match healing_activation::worker::resolve_policy(&config) {
        Ok(p) => p,
        Err(e) => return fatal_config(&format!("bad configuration: {e}")),
    };
    let state_file = args.state_file.clone().or_else(|| {
        std::env::var_os("RUNTIME_DIRECTORY").map(|d| PathBuf::from(d).join("state.log"))
    });
    if state_file.is_none() {
        healing_audit::service(
            Level::Warning,
            "no --state-file and no RUNTIME_DIRECTORY: replay cache and rate limits are kept in memory only",
        );
    }
    // A corrupt state file is the admin's to look at (the message names
    // it): exit 78 so systemd does not restart into the same error.
    let store = match state::Store::open(state_file, handle::now_ms()) {
        Ok(s) => s,
        Err(e) => return fatal_config(&e),
    };
    if args.check_only {
        println!("configuration and secret OK");
        return ExitCode::SUCCESS;
    }
    let (sockets, source) = match listeners(&args) {
        Ok(l) => l,
        Err(e) => return fatal(&format!("no socket: {e}")),
    };
    let ctx = Arc::new(Ctx {
        policy,
        secret,
        allowed,
        store: Mutex::new(store),
        socket_dir: args.action_dir.clone(),
        handled: AtomicU64::new(0),
        denied: AtomicU64::new(0),
        audit_required: healing_audit::journal_present(),
        fold: fold::Fold::default(),
        config,
    });
    // One thread for the process, not per request: writes the folded
    // records of refusals before authentication once their second is over.
    let f = Arc::clone(&ctx);
    let flusher = std::thread::Builder::new()
        .name("audit-fold".into())
        .spawn(move || loop {
            f.fold.wait_and_flush();
        });
    if let Err(e) = flusher {
        return fatal(&format!("cannot start the audit flusher: {e}"));
    }
    let idle = if source == ListenerSource::Bound {
        // Run by hand: there is no socket unit to start us again.
        Duration::from_secs(u64::MAX / 4)
    } else {
        Duration::from_secs(ctx.config.idle_timeout_secs)
    };
    // Every request passes through the state lock; if it cannot be taken for
    // seconds, the dispatcher is wedged and systemd should restart it.
    let wd = Arc::clone(&ctx);
    start_watchdog(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match wd.store.try_lock() {
                Ok(_) | Err(std::sync::TryLockError::Poisoned(_)) => return true,
                Err(std::sync::TryLockError::WouldBlock)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(std::sync::TryLockError::WouldBlock) => return false,
            }
        }
    });
    notify_ready("waiting for requests");
    let kinds: Vec<Kind> = sockets.iter().map(|(k, _)| *k).collect();
    let lst: Vec<(&std::os::unix::net::UnixListener, Framing)> =
        sockets.iter().map(|(k, l)| (l, k.framing())).collect();
    let r = Arc::clone(&ctx);
    let rk = kinds.clone();
    let served = serve_all(
        &lst,
        conn::options(&ctx, idle),
        conn::handler(Arc::clone(&ctx), kinds),
        move |refused| conn::refusal(&r, &rk, refused),
    );
    notify_stopping("idle, exiting; the socket stays open");
    ctx.fold.flush_all();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&format!("accept failed: {e}")),
    }
}
