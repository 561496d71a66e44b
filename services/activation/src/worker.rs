//! The action-side runtime: everything an action binary does except the
//! action itself. An action's `main` is one call:
//!
//! ```ignore
//! use healing_activation::worker::{run_worker, Env, Job};
//! use healing_policy::params::AdjustSwappiness;
//!
//! fn handle(job: &Job<AdjustSwappiness>, env: &Env) -> ActionReply {
//!     /* env.gate(job, &facts), then act on job.params.value */
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     run_worker(handle)
//! }
//! ```
//!
//! The handler's parameter type names the action; its capabilities and
//! landlock ruleset come from its entry in the table of actions
//! (`services/actions/src/table.rs`), the same entry its unit is generated
//! from, so the binary and the unit cannot declare different privileges.
//!
//! # What `run_worker` does, in order
//!
//! 1. Parses the command line: `--listen PATH` (bind PATH when not
//!    socket-activated), `--config PATH` (default
//!    `/etc/luminous-healing/config.toml`; a missing default means the
//!    defaults, a missing explicit file is an error), `--dispatcher-uid UID`
//!    (default: the uid of user `luminous-healing`, looked up now),
//!    `--self-test-landlock PATH`, `--describe`.
//! 2. Loads the config and resolves the dispatcher's uid. Both read files
//!    (the config, `/etc/passwd` or whatever NSS loads) that the landlock
//!    ruleset does not allow, so they happen before it.
//! 3. Asserts the capability sets against the table's `capabilities`
//!    ([`healing_sandbox::assert_capabilities`]: effective = permitted =
//!    bounding = declared, ambient and inheritable within it).
//! 4. Takes the listening socket (binding one needs the filesystem).
//! 5. Applies the table's `landlock` rules, resolved with the config, with
//!    [`healing_sandbox::Ruleset::restrict_self`], before any thread exists,
//!    so every connection and handler thread inherits it.
//! 6. With `--self-test-landlock PATH`: tries to open PATH, prints whether it
//!    was refused with EACCES, and exits (0 only for EACCES). Otherwise:
//! 7. Sends READY, then serves until idle for `Config::idle_timeout_secs`,
//!    sends STOPPING and exits 0. systemd starts it again on the next
//!    connection.
//!
//! `--describe` prints the declaration instead (one JSON object: action,
//! capabilities, landlock paths with their access, whether signals are
//! allowed) and exits, touching nothing: `scripts/check-privileges` compares
//! it with the units and `docs/privileges.md`.
//!
//! Any failure in 1-5 is one line on stderr (the journal) and exit status 1:
//! an action never runs with a bad config, extra capabilities or without its
//! landlock ruleset.
//!
//! # Per connection
//!
//! Connections are accepted and read by [`crate::serve`]'s poll loop; a
//! complete request runs on one of a few handler threads kept for the
//! process, never a thread per connection.
//!
//! * The peer's uid (SO_PEERCRED) must be the dispatcher's. Anyone else,
//!   root included, gets a failed [`ActionReply`] naming the refusal, and
//!   nothing is read.
//! * One [`ActionRequest`] JSON object, newline-terminated (the newline is
//!   optional: the object's end is the boundary), at most 64 KiB, complete
//!   within `Config::request_timeout_ms`.
//! * `request.action` must be this worker's action, and the parameters are
//!   validated again with [`Action::parse`]: the dispatcher already did, but a
//!   bug there must not reach a syscall. They reach the handler as its own
//!   [`Params`] type.
//! * The handler runs on the handler thread, limited to
//!   `Config::action_timeout_secs(action)` by one timeout thread for the
//!   whole process. On timeout that thread sends the caller a failed reply
//!   at once and closes the connection; the handler cannot be killed, but it
//!   dies with the process, and systemd stops any children it left when the
//!   service stops (KillMode=control-group).
//! * One [`ActionReply`] line back, output cut with
//!   [`healing_protocol::truncate_output`] so the dispatcher's v1 reply still
//!   fits one 64 KiB read; then the connection is closed.

use crate::serve::{Conn, Refusal, Refused};
use crate::{
    log_line, notify_ready, notify_status_throttled, notify_stopping, serve, take_listener,
    ServeOptions,
};
use healing_actions::{Access, RulePath, Service, Setting};
use healing_auth::Peer;
use healing_policy::{
    plan, Action, ActionName, CallerInfo, Config, Facts, Params, Plan, Policy, DEFAULT_CONFIG_PATH,
};
use healing_protocol::{truncate_output, ActionReply, ActionRequest, Caller, ReadError};
use std::io::Write;
use std::marker::PhantomData;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

pub use healing_sandbox::{Capability, PathAccess, PathRule, Ruleset};

/// The user the dispatcher runs as; its uid is the only one served.
pub const DISPATCHER_USER: &str = "luminous-healing";

/// Largest `output` an action returns: the dispatcher's v1 reply must fit one
/// 64 KiB read with the envelope around it.
pub const MAX_OUTPUT: usize = healing_protocol::MAX_MESSAGE - 4096;
/// Largest `error`.
pub const MAX_ERROR: usize = 4096;

/// The table's entry for an action performed by a service of its own.
pub fn service(action: ActionName) -> Result<&'static Service, String> {
    action
        .entry()
        .and_then(|a| a.service.as_ref())
        .ok_or_else(|| format!("{} has no service in the table of actions", action.as_str()))
}

/// The capabilities the table declares for a service.
pub fn capabilities(s: &Service) -> Result<Vec<Capability>, String> {
    s.capabilities
        .iter()
        .map(|c| {
            c.parse::<Capability>()
                .map_err(|e| format!("the table names capability {c:?}: {e}"))
        })
        .collect()
}

/// The landlock ruleset the table declares for a service, with the paths
/// the configuration (or, for tests, the environment) decides.
pub fn ruleset(s: &Service, config: &Config) -> Ruleset {
    let paths = s
        .landlock
        .iter()
        .filter_map(|r| {
            let path = match r.path {
                RulePath::Fixed(p) => PathBuf::from(p),
                RulePath::Env { var, default } => match std::env::var_os(var) {
                    Some(p) if !p.is_empty() => PathBuf::from(p),
                    _ => PathBuf::from(default),
                },
                RulePath::Setting(Setting::NixCollectGarbage) => config.nix_collect_garbage(),
                RulePath::Setting(Setting::NixProfilesDirOutsideNix) => {
                    let p = config.nix_profiles_dir();
                    if p.starts_with("/nix") {
                        return None;
                    }
                    p
                }
            };
            let rule = match r.access {
                Access::Read => PathRule::ro(path),
                Access::ReadExec => PathRule::rx(path),
                Access::ReadWrite => PathRule::rw(path),
                Access::Full => PathRule::full(path),
                Access::HeldWrite => PathRule::held_wo(path),
                Access::HeldReadWrite => PathRule::held_rw(path),
            };
            Some(if r.optional { rule.optional() } else { rule })
        })
        .collect();
    Ruleset {
        paths,
        allow_signals: s.signals,
    }
}

/// One request, as the action's handler sees it.
#[derive(Debug, Clone)]
pub struct Job<P> {
    pub id: String,
    /// The parameters, typed: this action's and no other's.
    pub params: P,
    /// The same request as the policy sees it (its rules take any action).
    pub action: Action,
    /// Who asked the dispatcher.
    pub caller: Caller,
    /// The peer of this connection: the dispatcher.
    pub dispatcher: Peer,
    pub dry_run: bool,
}

impl<P> Job<P> {
    pub fn caller_info(&self) -> CallerInfo {
        CallerInfo {
            uid: self.caller.uid,
            gid: self.caller.gid,
            groups: self.caller.groups.clone(),
        }
    }
}

/// What every handler may consult: the configuration and its compiled
/// authorization rules.
pub struct Env {
    pub config: Config,
    pub policy: Policy,
}

/// The authorize stage's answer inside an action.
pub enum Gate {
    /// Every rule agreed, and this is no dry run: carry the plan out.
    Act(Plan),
    /// A refusal, or a dry run's "would ...": send this and do nothing.
    Reply(ActionReply),
}

impl Env {
    /// Runs every authorization rule again, with the facts the action just
    /// read about its target; a dry run stops here with what would be done.
    pub fn gate<P>(&self, job: &Job<P>, facts: &Facts) -> Gate {
        match plan(&self.policy, &job.caller_info(), &job.action, facts) {
            Err(refusal) => Gate::Reply(ActionReply::failed(
                healing_protocol::Refusal::Policy {
                    text: refusal.to_string(),
                }
                .to_string(),
            )),
            Ok(p) if job.dry_run => Gate::Reply(ActionReply::ok(format!("would {p}"))),
            Ok(p) => Gate::Act(p),
        }
    }
}

/// The whole handler of an action that writes one file held open from
/// before confinement (the sysctls, whose inodes a landlock rule cannot
/// follow): gate with no facts, then `act` on the held descriptor.
pub fn with_held_file<P>(
    job: &Job<P>,
    env: &Env,
    path: &str,
    act: impl FnOnce(&std::fs::File, &std::path::Path) -> Result<String, String>,
) -> ActionReply {
    if let Gate::Reply(r) = env.gate(job, &Facts::None) {
        return r;
    }
    let path = std::path::Path::new(path);
    Ruleset::held_file(path).and_then(|f| act(&f, path)).into()
}

/// Resolves the `[callers]` names of `config` with the system's user and
/// group databases (NSS): done before landlock, which would hide them.
pub fn resolve_policy(config: &Config) -> Result<Policy, healing_policy::ConfigError> {
    let user = |n: &str| {
        nix::unistd::User::from_name(n)
            .map(|u| u.map(|u| u.uid.as_raw()))
            .map_err(|e| e.to_string())
    };
    let group = |n: &str| {
        nix::unistd::Group::from_name(n)
            .map(|g| g.map(|g| g.gid.as_raw()))
            .map_err(|e| e.to_string())
    };
    Policy::from_config(config, &user, &group)
}

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerArgs {
    pub listen: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub dispatcher_uid: Option<u32>,
    pub self_test_landlock: Option<PathBuf>,
    pub describe: bool,
}

const USAGE: &str = "usage: luminous-healing-<action> [--listen PATH] [--config PATH] \
[--dispatcher-uid UID] [--self-test-landlock PATH] [--describe]
Normally started by its systemd socket unit; see docs/privileges.md.";

/// Parses the arguments after the program name. `Err` is the message to print.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<WorkerArgs, String> {
    let mut out = WorkerArgs::default();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => out.listen = Some(PathBuf::from(value("--listen")?)),
            "--config" => out.config = Some(PathBuf::from(value("--config")?)),
            "--dispatcher-uid" => {
                let v = value("--dispatcher-uid")?;
                let uid = v
                    .parse::<u32>()
                    .map_err(|_| format!("--dispatcher-uid {v:?} is not a uid"))?;
                out.dispatcher_uid = Some(uid);
            }
            "--self-test-landlock" => {
                out.self_test_landlock = Some(PathBuf::from(value("--self-test-landlock")?))
            }
            "--describe" if inline.is_none() => out.describe = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(out)
}

fn resolve_dispatcher_uid(flag: Option<u32>) -> Result<u32, String> {
    let uid = match flag {
        Some(u) => u,
        None => match nix::unistd::User::from_name(DISPATCHER_USER) {
            Ok(Some(u)) => u.uid.as_raw(),
            Ok(None) => {
                return Err(format!(
                    "user {DISPATCHER_USER} does not exist (installed by the sysusers.d file), \
                     and no --dispatcher-uid was given"
                ))
            }
            Err(e) => return Err(format!("cannot look up user {DISPATCHER_USER}: {e}")),
        },
    };
    if uid == 0 {
        return Err("the dispatcher never runs as root: refusing to serve uid 0".into());
    }
    Ok(uid)
}

/// Runs the action service of `P`'s action. See the module documentation.
pub fn run_worker<P, H>(handler: H) -> ExitCode
where
    P: Params,
    H: Fn(&Job<P>, &Env) -> ActionReply + Send + Sync + 'static,
{
    let name = P::ACTION.as_str();
    let fail = |msg: String| {
        log_line(&format!("<3>luminous-healing-{name}: {msg}"));
        ExitCode::FAILURE
    };
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let (spec, declared) = match service(P::ACTION).and_then(|s| Ok((s, capabilities(s)?))) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };

    if args.describe {
        return describe(P::ACTION, &args);
    }
    let config = match &args.config {
        Some(p) => Config::load(p, true),
        None => Config::load(std::path::Path::new(DEFAULT_CONFIG_PATH), false),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail(format!("bad config: {e}")),
    };
    let dispatcher_uid = match resolve_dispatcher_uid(args.dispatcher_uid) {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let policy = match resolve_policy(&config) {
        Ok(p) => p,
        Err(e) => return fail(format!("bad config: {e}")),
    };

    let caps = match healing_sandbox::assert_capabilities(&declared) {
        Ok(c) => c,
        Err(e) => return fail(e.0),
    };

    let listener = if args.self_test_landlock.is_some() {
        None
    } else {
        match take_listener(args.listen.as_deref(), 0o600) {
            Ok((l, _)) => Some(l),
            Err(e) => return fail(format!("no socket: {e}")),
        }
    };

    // Landlock (below ABI 8) confines only the calling thread and what it
    // starts later: a thread that already exists would stay unconfined.
    match std::fs::read_dir("/proc/self/task").map(|d| d.count()) {
        Ok(1) => {}
        Ok(n) => {
            return fail(format!(
            "{n} threads exist before landlock is applied; all but this one would stay unconfined"
        ))
        }
        Err(e) => return fail(format!("cannot count this process's threads: {e}")),
    }
    let ruleset = ruleset(spec, &config);
    let report = match ruleset.restrict_self() {
        Ok(r) => r,
        Err(e) => return fail(e.0),
    };
    log_line(&format!(
        "luminous-healing-{name}: capabilities {} ; {report}; serving uid {dispatcher_uid}",
        healing_sandbox::cap_names(&caps.effective)
    ));

    if let Some(path) = &args.self_test_landlock {
        // READY first, so that a Type=notify unit started for the self-test
        // does not count the early exit as a protocol failure.
        notify_ready("landlock self-test");
        return match healing_sandbox::landlock_self_test(path) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(line) => {
                println!("{line}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(listener) = listener else {
        return fail("no socket".into());
    };

    let ctx = Arc::new(Context::<P, H>::new(
        dispatcher_uid,
        Env { config, policy },
        handler,
    ));
    let opts = ServeOptions {
        max_connections: ctx.env.config.max_connections.clamp(1, 16),
        // Only the dispatcher connects, and it holds one connection per
        // request it forwards: its own caps decide, not this one.
        max_connections_per_uid: ctx.env.config.max_connections.clamp(1, 16),
        workers: ACTION_WORKERS,
        only_uid: Some(dispatcher_uid),
        ..ServeOptions::from_config(&ctx.env.config)
    };
    notify_ready("waiting for the dispatcher");
    let c = Arc::clone(&ctx);
    let r = Arc::clone(&ctx);
    let served = serve(
        &listener,
        opts,
        move |conn| c.connection(conn),
        move |refused| r.refusal(refused),
    );
    notify_stopping("idle, exiting");
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("serving failed: {e}")),
    }
}

/// The declaration as JSON, for the privileges checker: what the binary
/// will hold and allow, resolved as at its start.
pub fn describe_json(action: ActionName, config: &Config) -> Result<serde_json::Value, String> {
    let spec = service(action)?;
    let rules = ruleset(spec, config);
    let caps: Vec<String> = capabilities(spec)?.iter().map(|c| c.to_string()).collect();
    let paths: Vec<serde_json::Value> = rules
        .paths
        .iter()
        .map(|r| {
            serde_json::json!({
                "path": r.path.display().to_string(),
                "access": r.access.as_str(),
                "optional": r.optional,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "action": action.as_str(),
        "capabilities": caps,
        "landlock": paths,
        "landlock_signals": rules.allow_signals,
        "timeout_secs": config.action_timeout_secs(action),
    }))
}

fn describe(action: ActionName, args: &WorkerArgs) -> ExitCode {
    let config = match &args.config {
        Some(p) => Config::load(p, true),
        None => Config::load(std::path::Path::new(DEFAULT_CONFIG_PATH), false),
    };
    match config
        .map_err(|e| format!("bad config: {e}"))
        .and_then(|c| describe_json(action, &c))
    {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log_line(&format!("luminous-healing-{}: {e}", action.as_str()));
            ExitCode::FAILURE
        }
    }
}

/// Handler threads of an action service: requests are rate limited far
/// below what one thread serves, but a slow one must not hold up the next.
const ACTION_WORKERS: usize = 4;

struct Context<P, H> {
    dispatcher_uid: u32,
    env: Env,
    handler: H,
    handled: AtomicU64,
    timeouts: Arc<Timeouts>,
    params: PhantomData<fn() -> P>,
}

/// What a running request's connection is doing, shared between the handler
/// thread and the timeout thread: whichever comes first answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Finished,
    TimedOut,
}

struct Running {
    deadline: Instant,
    stream: UnixStream,
    phase: Mutex<Phase>,
    timeout_reply: Vec<u8>,
    /// Given back once the timeout reply is out: a stuck handler must not
    /// keep the service from its idle exit.
    slot: crate::serve::Slot,
}

impl Running {
    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One thread for the whole process that answers requests whose handler
/// overran its timeout. A request costs it a push and a removal under a
/// mutex; it is woken only when a deadline nearer than the one it sleeps
/// towards arrives (with one action's constant timeout: after a quiet spell).
#[derive(Default)]
struct Timeouts {
    state: Mutex<TimeoutState>,
    cv: Condvar,
    thread: OnceLock<bool>,
}

#[derive(Default)]
struct TimeoutState {
    running: Vec<Arc<Running>>,
    /// The deadline the thread sleeps towards; `None`: until notified.
    sleeping_until: Option<Instant>,
}

impl Timeouts {
    fn lock(&self) -> MutexGuard<'_, TimeoutState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches `r`; false when the timeout thread cannot be started (the
    /// caller then runs without a timeout rather than not at all).
    fn watch(self: &Arc<Self>, r: &Arc<Running>) -> bool {
        let started = *self.thread.get_or_init(|| {
            let me = Arc::clone(self);
            std::thread::Builder::new()
                .name("timeouts".into())
                .spawn(move || me.run())
                .map_err(|e| log_line(&format!("<4>cannot start the timeout thread: {e}")))
                .is_ok()
        });
        if !started {
            return false;
        }
        let mut st = self.lock();
        st.running.push(Arc::clone(r));
        let wake = match st.sleeping_until {
            None => true,
            Some(t) => r.deadline < t,
        };
        drop(st);
        if wake {
            self.cv.notify_one();
        }
        true
    }

    fn unwatch(&self, r: &Arc<Running>) {
        self.lock().running.retain(|x| !Arc::ptr_eq(x, r));
    }

    fn run(&self) {
        let mut st = self.lock();
        loop {
            let now = Instant::now();
            let mut i = 0;
            while i < st.running.len() {
                if st.running[i].deadline > now {
                    i += 1;
                    continue;
                }
                let r = st.running.swap_remove(i);
                let mut phase = r.phase();
                if *phase == Phase::Running {
                    *phase = Phase::TimedOut;
                    let _ = (&r.stream).write_all(&r.timeout_reply);
                    // EOF for the dispatcher now, although the handler
                    // thread still holds the socket.
                    let _ = r.stream.shutdown(Shutdown::Both);
                    r.slot.release();
                }
            }
            st.sleeping_until = st.running.iter().map(|r| r.deadline).min();
            st = match st.sleeping_until {
                None => self.cv.wait(st).unwrap_or_else(PoisonError::into_inner),
                Some(t) => {
                    self.cv
                        .wait_timeout(st, t.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

fn reply_line(reply: ActionReply) -> Vec<u8> {
    let reply = ActionReply {
        success: reply.success,
        output: reply.output.map(|o| truncate_output(&o, MAX_OUTPUT)),
        error: reply.error.map(|e| truncate_output(&e, MAX_ERROR)),
    };
    let mut line = serde_json::to_vec(&reply).unwrap_or_else(|_| {
        br#"{"success":false,"output":null,"error":"cannot encode the reply"}"#.to_vec()
    });
    line.push(b'\n');
    line
}

/// What one request came to before (or instead of) running the handler.
enum Prepared<P> {
    Reply(ActionReply),
    Run(P, Action, ActionRequest, Peer),
}

impl<P, H> Context<P, H>
where
    P: Params,
    H: Fn(&Job<P>, &Env) -> ActionReply + Send + Sync + 'static,
{
    /// This service's action.
    const ACTION: ActionName = P::ACTION;

    fn new(dispatcher_uid: u32, env: Env, handler: H) -> Context<P, H> {
        Context {
            dispatcher_uid,
            env,
            handler,
            handled: AtomicU64::new(0),
            timeouts: Arc::new(Timeouts::default()),
            params: PhantomData,
        }
    }

    /// Refusals from the accept loop, as action replies.
    fn refusal(&self, r: &Refused<'_>) -> Vec<u8> {
        let name = Self::ACTION.as_str();
        let reply = match r.reason {
            Refusal::NotAllowed => {
                let uid = r.peer.map_or_else(|| "?".into(), |p| p.uid.to_string());
                let pid = r.peer.map_or_else(|| "?".into(), |p| p.pid.to_string());
                log_line(&format!(
                    "<4>luminous-healing-{name}: refused a connection from uid {uid} pid {pid}: \
                     only the dispatcher (uid {}) may connect",
                    self.dispatcher_uid
                ));
                ActionReply::failed(format!(
                    "connection refused: uid {uid} is not the dispatcher's"
                ))
            }
            Refusal::TooManyFromUid { limit } => ActionReply::failed(format!(
                "connection refused: {limit} connections are already open"
            )),
            Refusal::Timeout => {
                ActionReply::failed(format!("bad action request: {}", ReadError::Timeout))
            }
        };
        reply_line(reply)
    }

    fn connection(self: &Arc<Self>, conn: Conn) {
        let name = Self::ACTION.as_str();
        let stream = conn.stream;
        let slot = conn.slot;
        let (params, action, req, peer) = match self.prepare(conn.peer, conn.request) {
            Prepared::Reply(r) => return self.send(&stream, reply_line(r)),
            Prepared::Run(params, a, r, p) => (params, a, r, p),
        };
        let secs = self.env.config.action_timeout_secs(Self::ACTION);
        let started = Instant::now();
        let running = Arc::new(Running {
            deadline: started + Duration::from_secs(secs),
            stream,
            phase: Mutex::new(Phase::Running),
            timeout_reply: reply_line(ActionReply::failed(format!(
                "{name} timed out after {secs} s"
            ))),
            slot,
        });
        let watched = self.timeouts.watch(&running);
        let dry = req.dry_run;
        let job = Job {
            id: req.id.clone(),
            params,
            action,
            caller: req.caller.clone(),
            dispatcher: peer,
            dry_run: dry,
        };
        let reply = (self.handler)(&job, &self.env);
        if watched {
            self.timeouts.unwatch(&running);
        }
        let timed_out = {
            let mut phase = running.phase();
            let was = *phase == Phase::TimedOut;
            *phase = Phase::Finished;
            was
        };
        log_line(&format!(
            "luminous-healing-{name}: request {} from uid {} pid {}{}: {} in {} ms{}",
            req.id,
            req.caller.uid,
            req.caller.pid,
            if dry { " (dry run)" } else { "" },
            if timed_out {
                "timed out, finished late"
            } else if reply.success {
                "success"
            } else {
                "failure"
            },
            started.elapsed().as_millis(),
            reply
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
        if !timed_out {
            self.send(&running.stream, reply_line(reply));
        }
    }

    fn send(&self, mut stream: &UnixStream, line: Vec<u8>) {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        if let Err(e) = stream.write_all(&line) {
            log_line(&format!(
                "<4>luminous-healing-{}: cannot send the reply: {e}",
                Self::ACTION.as_str()
            ));
        }
        let n = self.handled.fetch_add(1, Ordering::Relaxed) + 1;
        notify_status_throttled(|| format!("{n} connection(s) handled"));
    }

    fn prepare(
        &self,
        peer: Option<Peer>,
        request: Option<Result<serde_json::Value, ReadError>>,
    ) -> Prepared<P> {
        let name = Self::ACTION.as_str();
        let Some(peer) = peer else {
            return Prepared::Reply(ActionReply::failed("cannot read peer credentials"));
        };
        if peer.uid != self.dispatcher_uid || peer.uid == 0 {
            log_line(&format!(
                "<4>luminous-healing-{name}: refused a connection from uid {} pid {}: only the \
                 dispatcher (uid {}) may connect",
                peer.uid, peer.pid, self.dispatcher_uid
            ));
            return Prepared::Reply(ActionReply::failed(format!(
                "connection refused: uid {} is not the dispatcher's",
                peer.uid
            )));
        }
        let value = match request {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Prepared::Reply(ActionReply::failed(format!("bad action request: {e}")))
            }
            None => return Prepared::Reply(ActionReply::failed("bad action request: not read")),
        };
        let req: ActionRequest = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                return Prepared::Reply(ActionReply::failed(format!("bad action request: {e}")))
            }
        };
        if req.action != name {
            return Prepared::Reply(ActionReply::failed(format!(
                "this is the {name} service, not {:?}",
                req.action
            )));
        }
        let action = match Action::parse(Self::ACTION, &req.parameters) {
            Ok(a) => a,
            Err(e) => return Prepared::Reply(ActionReply::failed(e)),
        };
        // Cannot fail: parsed as this action, it is this action's. The one
        // place that says so, instead of an arm in every handler.
        match P::from_action(action.clone()) {
            Ok(params) => Prepared::Run(params, action, req, peer),
            Err(other) => Prepared::Reply(ActionReply::failed(format!(
                "{name} cannot perform {:?}",
                other.name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<WorkerArgs, String> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn command_line() {
        let a = args(&[
            "--listen",
            "/tmp/x.sock",
            "--config=/c.toml",
            "--dispatcher-uid",
            "990",
            "--self-test-landlock",
            "/etc/hostname",
        ])
        .unwrap();
        assert_eq!(a.listen.unwrap(), PathBuf::from("/tmp/x.sock"));
        assert_eq!(a.config.unwrap(), PathBuf::from("/c.toml"));
        assert_eq!(a.dispatcher_uid, Some(990));
        assert_eq!(
            a.self_test_landlock.unwrap(),
            PathBuf::from("/etc/hostname")
        );
        assert!(args(&["--listen"]).is_err());
        assert!(args(&["--dispatcher-uid", "-1"]).is_err());
        assert!(args(&["--bogus"]).is_err());
        assert_eq!(args(&[]).unwrap(), WorkerArgs::default());
        assert!(args(&["--describe"]).unwrap().describe);
        assert!(args(&["--describe=1"]).is_err());
    }

    #[test]
    fn describe_lists_the_declaration_of_the_table() {
        let v = describe_json(ActionName::KillProcess, &Config::default()).unwrap();
        assert_eq!(v["capabilities"], serde_json::json!(["CAP_KILL"]));
        assert_eq!(v["landlock"][0]["path"], "/proc");
        assert_eq!(v["landlock"][0]["access"], "ro");
        assert_eq!(v["landlock_signals"], true);
        assert_eq!(v["timeout_secs"], 10);
        let v = describe_json(ActionName::AdjustSwappiness, &Config::default()).unwrap();
        assert_eq!(
            v["landlock"][0]["access"],
            "rw (fd opened before landlock, no rule)"
        );
        assert!(describe_json(ActionName::Status, &Config::default()).is_err());
    }

    /// Every capability the table names is one the kernel has, and every
    /// access maps to the sandbox's string the docs were generated with.
    #[test]
    fn the_tables_declarations_resolve() {
        for (a, s) in healing_actions::services() {
            assert_eq!(
                capabilities(s).unwrap().len(),
                s.capabilities.len(),
                "{}",
                a.name
            );
            let rules = ruleset(s, &Config::default());
            for (r, t) in rules.paths.iter().zip(s.landlock) {
                assert_eq!(r.access.as_str(), t.access.as_str(), "{}", a.name);
            }
        }
    }

    /// The defaults the docs show for configured paths are the config's.
    #[test]
    fn configured_paths_follow_the_config() {
        let nix = service(ActionName::CleanNixStore).unwrap();
        let paths = |c: &Config| -> Vec<PathBuf> {
            ruleset(nix, c).paths.into_iter().map(|r| r.path).collect()
        };
        let defaults = paths(&Config::default());
        assert!(defaults.contains(&PathBuf::from(Setting::NixCollectGarbage.default_path())));
        assert_eq!(
            Config::default().nix_profiles_dir(),
            PathBuf::from(Setting::NixProfilesDirOutsideNix.default_path())
        );
        assert!(!defaults.iter().any(|p| p.starts_with("/nix/var")));
        let moved = Config {
            nix_profiles_dir: Some("/srv/profiles".into()),
            ..Default::default()
        };
        assert!(paths(&moved).contains(&PathBuf::from("/srv/profiles")));
    }

    #[test]
    fn root_is_never_the_dispatcher() {
        assert!(resolve_dispatcher_uid(Some(0)).is_err());
        assert_eq!(resolve_dispatcher_uid(Some(990)), Ok(990));
    }

    use healing_policy::params::AdjustSwappiness;

    fn ctx<H>(handler: H, uid: u32) -> Arc<Context<AdjustSwappiness, H>>
    where
        H: Fn(&Job<AdjustSwappiness>, &Env) -> ActionReply + Send + Sync + 'static,
    {
        let mut config = Config {
            request_timeout_ms: 500,
            ..Default::default()
        };
        config.actions.insert(
            "adjust_swappiness".into(),
            healing_policy::ActionConfig {
                timeout_secs: Some(1),
                ..Default::default()
            },
        );
        Arc::new(Context::new(
            uid,
            Env {
                policy: resolve_policy(&config).unwrap(),
                config,
            },
            handler,
        ))
    }

    fn exchange<H>(c: Arc<Context<AdjustSwappiness, H>>, request: &str) -> ActionReply
    where
        H: Fn(&Job<AdjustSwappiness>, &Env) -> ActionReply + Send + Sync + 'static,
    {
        use std::io::BufRead;
        let (a, b) = pair_as(DISPATCHER_UID_IN_TESTS);
        let t = std::thread::spawn(move || {
            let mut b = b;
            let accepted = Instant::now();
            let peer = healing_auth::peer_credentials(&b).ok();
            let request = Some(healing_protocol::read_one_object(
                &mut b,
                healing_protocol::MAX_MESSAGE,
                Duration::from_millis(500),
            ));
            c.connection(Conn {
                stream: b,
                peer,
                request,
                accepted,
                slot: crate::serve::Slot::uncounted(),
                listener: 0,
                rest: Vec::new(),
            })
        });
        let mut a2 = a.try_clone().unwrap();
        a2.write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        std::io::BufReader::new(a).read_line(&mut line).unwrap();
        // Not joined: after a timeout the handler is still running.
        drop(t);
        assert!(line.ends_with('\n'));
        serde_json::from_str(&line).unwrap()
    }

    /// The uid the test "dispatcher" runs as: not root, which is refused.
    const DISPATCHER_UID_IN_TESTS: u32 = 65534;

    /// A socket pair whose SO_PEERCRED says `uid`. As root, it is created on
    /// a thread that changed only its own uid (the raw syscall, unlike
    /// glibc's setresuid, does not touch the other threads); as anyone else,
    /// it is our own uid, and the tests below use that instead.
    fn pair_as(uid: u32) -> (UnixStream, UnixStream) {
        if me() != 0 {
            return UnixStream::pair().unwrap();
        }
        std::thread::spawn(move || {
            // SAFETY: changes this short-lived thread's credentials only.
            let rc = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
            assert_eq!(rc, 0);
            UnixStream::pair().unwrap()
        })
        .join()
        .unwrap()
    }

    fn me() -> u32 {
        // SAFETY: getuid cannot fail.
        unsafe { libc::getuid() }
    }

    /// The uid `pair_as` really produces.
    fn dispatcher() -> u32 {
        if me() == 0 {
            DISPATCHER_UID_IN_TESTS
        } else {
            me()
        }
    }

    const REQ: &str = r#"{"id":"r1","action":"adjust_swappiness","parameters":{"value":30},"caller":{"uid":1000,"gid":1000,"pid":42}}"#;

    #[test]
    fn request_reaches_the_handler_validated() {
        let c = ctx(
            |job: &Job<AdjustSwappiness>, _: &Env| {
                ActionReply::ok(format!(
                    "{:?} for {} via pid {}{}",
                    job.params,
                    job.caller.pid,
                    job.dispatcher.pid,
                    if job.dry_run { " (dry run)" } else { "" }
                ))
            },
            dispatcher(),
        );
        let r = exchange(Arc::clone(&c), &format!("{REQ}\n"));
        assert!(r.success, "{r:?}");
        assert!(r
            .output
            .unwrap()
            .contains("AdjustSwappiness { value: 30 } for 42"));
        let bad = REQ.replace("30", "300");
        let r = exchange(Arc::clone(&c), &bad);
        assert!(r.error.unwrap().contains("outside 0-100"));
        let other = REQ.replace(
            "\"action\":\"adjust_swappiness\"",
            "\"action\":\"kill_process\"",
        );
        let r = exchange(Arc::clone(&c), &other);
        assert!(r.error.unwrap().contains("not \"kill_process\""));
        let r = exchange(c, "{\"id\":\"x\"}");
        assert!(r.error.unwrap().contains("bad action request"));
    }

    #[test]
    fn other_uid_is_refused_without_running_anything() {
        let c = ctx(
            |_: &Job<AdjustSwappiness>, _: &Env| ActionReply::ok("ran"),
            dispatcher() + 1,
        );
        let r = exchange(c, REQ);
        assert!(!r.success);
        assert!(r.error.unwrap().contains("connection refused: uid"));
    }

    #[test]
    fn slow_handler_times_out_and_long_output_is_cut() {
        let c = ctx(
            |_: &Job<AdjustSwappiness>, _: &Env| {
                std::thread::sleep(Duration::from_secs(3));
                ActionReply::ok("late")
            },
            dispatcher(),
        );
        let t0 = Instant::now();
        let r = exchange(c, REQ);
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(r.error.unwrap().contains("timed out after 1 s"));
        let c = ctx(
            |_: &Job<AdjustSwappiness>, _: &Env| ActionReply::ok("x".repeat(200_000)),
            dispatcher(),
        );
        let r = exchange(c, REQ);
        let out = r.output.unwrap();
        assert!(out.len() <= MAX_OUTPUT && out.ends_with("[output truncated by luminous-healing]"));
    }
}
