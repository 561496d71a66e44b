//! healctl: ask luminous-healing for a repair from the command line.
//! Speaks v2 by default (the signature covers the parameters), v1 on request,
//! or Varlink (`--varlink`: io.luminous.Healing, no secret).

use healing_auth::{sign, Secret};
use healing_protocol::{
    canonical_parameters, signing_message, uuid4, ErrorKind, Refusal, Request, Response, Version,
};
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod args;
mod commands;

const USAGE: &str = concat!(
    "usage: healctl [OPTIONS] COMMAND [ARGS]

Commands:
",
    commands::commands_usage!(),
    "
Options:
  --socket PATH        default /run/luminous-healing.sock
                       (with --varlink: /run/luminous-healing/io.luminous.Healing)
  --varlink            speak Varlink (io.luminous.Healing): no secret, the
                       socket's group and the policy decide
  --secret-file PATH   the shared secret (else $LUMINOUS_HEALING_SECRET)
  --protocol v1|v2     default v2
  --json               print the raw JSON reply
  --dry-run            check everything (signature, policy, the target's state,
                       limits) and say what would be done; nothing runs (v2)
  --timeout SECONDS    give up waiting after this long (default 660)

Exit status: 0 done, 1 the action failed, 2 usage, 3 refused (authentication,
policy, parameters, pause), 4 rate limited, 5 could not talk to the service
or the service could not vouch for the request (audit or state unavailable)."
);

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_REFUSED: u8 = 3;
const EXIT_RATE: u8 = 4;
const EXIT_TRANSPORT: u8 = 5;

const VARLINK_SOCKET: &str = "/run/luminous-healing/io.luminous.Healing";

struct Opts {
    socket: String,
    varlink: bool,
    secret_file: Option<String>,
    version: Version,
    json: bool,
    dry_run: bool,
    timeout: Duration,
    action: String,
    params: Map<String, Value>,
}

fn usage(msg: &str) -> Result<Opts, (u8, String)> {
    Err((EXIT_USAGE, format!("healctl: {msg}\n\n{USAGE}")))
}

fn parse(args: Vec<String>) -> Result<Opts, (u8, String)> {
    let mut socket = None;
    let mut o = Opts {
        socket: "/run/luminous-healing.sock".into(),
        varlink: false,
        secret_file: None,
        version: Version::V2,
        json: false,
        dry_run: false,
        timeout: Duration::from_secs(660),
        action: String::new(),
        params: Map::new(),
    };
    let mut positional = Vec::new();
    let mut flags = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .ok_or_else(|| (EXIT_USAGE, format!("healctl: {name} needs a value")))
        };
        match a.as_str() {
            "--socket" => socket = Some(val("--socket")?),
            "--varlink" => o.varlink = true,
            "--secret-file" => o.secret_file = Some(val("--secret-file")?),
            "--protocol" => {
                o.version = match val("--protocol")?.as_str() {
                    "v1" | "1" => Version::V1,
                    "v2" | "2" => Version::V2,
                    other => return usage(&format!("unknown protocol {other:?}")),
                }
            }
            "--json" => o.json = true,
            "--dry-run" => o.dry_run = true,
            "--timeout" => {
                let v = val("--timeout")?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| (EXIT_USAGE, format!("healctl: bad --timeout {v:?}")))?;
                o.timeout = Duration::from_secs(secs.max(1));
            }
            "--pid" => positional.push(val("--pid")?),
            "-h" | "--help" => return Err((0, USAGE.into())),
            s if args::is_command_flag(s) => flags.push((a.clone(), val(s)?)),
            s if s.starts_with("--") => return usage(&format!("unknown option {s}")),
            _ => positional.push(a),
        }
    }
    let Some(cmd) = positional.first().cloned() else {
        return usage("no command");
    };
    let (action, params) = args::build(&cmd, &positional[1..], &flags)
        .map_err(|e| (EXIT_USAGE, format!("healctl: {e}\n\n{USAGE}")))?;
    o.params = params;
    if o.dry_run && o.version == Version::V1 {
        return usage("--dry-run needs protocol v2");
    }
    if o.varlink && o.dry_run && action == "status" {
        return usage("status has no --dry-run over Varlink");
    }
    o.socket = match (socket, o.varlink) {
        (Some(s), _) => s,
        (None, true) => VARLINK_SOCKET.into(),
        (None, false) => o.socket,
    };
    o.action = action;
    Ok(o)
}

/// Shows elapsed time on a terminal while a long action runs.
fn spinner(action: String, done: Arc<AtomicBool>) -> Option<std::thread::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    std::thread::Builder::new()
        .spawn(move || {
            let frames = ['|', '/', '-', '\\'];
            let t0 = Instant::now();
            let mut i = 0;
            // Short actions finish before the spinner would flicker into view.
            std::thread::sleep(Duration::from_millis(300));
            while !done.load(Ordering::Relaxed) {
                eprint!(
                    "\r{} {action} … {:.1}s ",
                    frames[i % 4],
                    t0.elapsed().as_secs_f32()
                );
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            if i > 0 {
                eprint!("\r\x1b[K");
            }
        })
        .ok()
}

/// The io.luminous.Healing method of a wire action, and its parameters
/// renamed to the interface's.
fn varlink_call(o: &Opts) -> Value {
    let command = commands::COMMANDS.iter().find(|c| c.action == o.action);
    let method = command.map_or("Status", |c| c.varlink);
    let mut params: Map<String, Value> = o
        .params
        .iter()
        .map(|(k, v)| {
            let name = command
                .and_then(|c| c.args.iter().find(|a| a.param == k))
                .map_or(k.as_str(), |a| a.varlink);
            (name.to_string(), v.clone())
        })
        .collect();
    if o.dry_run {
        params.insert("dryRun".into(), json!(true));
    }
    json!({"method": format!("io.luminous.Healing.{method}"), "parameters": params})
}

/// Exit status of a Varlink error, as for the JSON protocol's strings.
fn varlink_exit(error: &str) -> u8 {
    match error.strip_prefix("io.luminous.Healing.") {
        Some("RateLimited") => EXIT_RATE,
        Some("NotAllowed" | "InvalidParameter" | "Refused" | "Paused") => EXIT_REFUSED,
        Some("AuditUnavailable" | "StateUnavailable") => EXIT_TRANSPORT,
        Some(_) => EXIT_FAILED,
        None if error.starts_with("org.varlink.service.") => EXIT_REFUSED,
        None => EXIT_FAILED,
    }
}

fn run_varlink(o: Opts) -> Result<u8, (u8, String)> {
    let transport = |e: std::io::Error| (EXIT_TRANSPORT, format!("healctl: {}: {e}", o.socket));
    let mut s = UnixStream::connect(&o.socket).map_err(transport)?;
    s.set_read_timeout(Some(o.timeout)).map_err(transport)?;
    let mut msg = varlink_call(&o).to_string().into_bytes();
    msg.push(0);
    s.write_all(&msg).map_err(transport)?;
    let done = Arc::new(AtomicBool::new(false));
    let spin = spinner(o.action.clone(), Arc::clone(&done));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = loop {
        match s.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&0) || buf.len() > 1 << 20 {
                    break Ok(());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    done.store(true, Ordering::Relaxed);
    if let Some(h) = spin {
        let _ = h.join();
    }
    read.map_err(transport)?;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let reply: Value = serde_json::from_slice(&buf[..end]).map_err(|e| {
        (
            EXIT_TRANSPORT,
            format!("healctl: the reply is not a Varlink reply: {e}"),
        )
    })?;
    if o.json {
        println!("{reply}");
    }
    let params = &reply["parameters"];
    let id = params["id"].as_str().unwrap_or("");
    if let Some(err) = reply["error"].as_str() {
        if !o.json {
            match params["reason"].as_str() {
                Some(reason) => eprintln!("healctl: {reason} ({err}, request {id})"),
                None => eprintln!("healctl: {err} {params}"),
            }
        }
        return Ok(varlink_exit(err));
    }
    if !o.json {
        print_output(params["output"].as_str().unwrap_or(""));
    }
    Ok(0)
}

/// status answers with JSON: show it readably.
fn print_output(out: &str) {
    match serde_json::from_str::<Value>(out) {
        Ok(v @ Value::Object(_)) => println!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| out.to_string())
        ),
        _ => println!("{out}"),
    }
}

fn run(o: Opts) -> Result<u8, (u8, String)> {
    if o.varlink {
        return run_varlink(o);
    }
    let secret = match &o.secret_file {
        Some(f) => Secret::from_file(std::path::Path::new(f)),
        None => Secret::load(),
    }
    .map_err(|e| (EXIT_USAGE, format!("healctl: {e}; pass --secret-file PATH")))?;
    if o.version == Version::V2 {
        canonical_parameters(&o.params).map_err(|e| (EXIT_USAGE, format!("healctl: {e}")))?;
    }
    let mut req = Request {
        version: o.version,
        id: uuid4().map_err(|e| (EXIT_TRANSPORT, e))?,
        action: o.action.clone(),
        parameters: o.params.clone(),
        timestamp: chrono::Local::now()
            .format("%Y-%m-%dT%H:%M:%S%.6f")
            .to_string(),
        signature: None,
        dry_run: o.dry_run,
    };
    let msg = signing_message(&req).map_err(|e| (EXIT_USAGE, e))?;
    req.signature = Some(sign(secret.key(), &msg));
    let mut body = json!({
        "id": req.id, "action": req.action, "parameters": req.parameters,
        "timestamp": req.timestamp, "signature": req.signature,
    });
    if o.version == Version::V2 {
        body["version"] = json!(2);
    }
    if o.dry_run {
        body["dry_run"] = json!(true);
    }
    let transport = |e: std::io::Error| (EXIT_TRANSPORT, format!("healctl: {}: {e}", o.socket));
    let mut s = UnixStream::connect(&o.socket).map_err(transport)?;
    s.set_read_timeout(Some(o.timeout)).map_err(transport)?;
    s.write_all(body.to_string().as_bytes())
        .map_err(transport)?;
    let done = Arc::new(AtomicBool::new(false));
    let spin = spinner(o.action.clone(), Arc::clone(&done));
    let mut buf = Vec::new();
    let read = s.take(1 << 20).read_to_end(&mut buf);
    done.store(true, Ordering::Relaxed);
    if let Some(h) = spin {
        let _ = h.join();
    }
    read.map_err(transport)?;
    let reply: Response = serde_json::from_slice(&buf).map_err(|e| {
        (
            EXIT_TRANSPORT,
            format!("healctl: the reply is not a luminous-healing reply: {e}"),
        )
    })?;
    if o.json {
        println!("{}", String::from_utf8_lossy(&buf));
    }
    if reply.success {
        if !o.json {
            print_output(reply.output.as_deref().unwrap_or(""));
        }
        return Ok(0);
    }
    let err = reply.error.unwrap_or_else(|| "unknown error".into());
    if !o.json {
        eprintln!("healctl: {} (request {})", err, reply.request_id);
    }
    Ok(classify(&err))
}

/// Refusals say nothing ran; failures say the action ran and did not
/// succeed. The dispatcher's refusal strings are decoded into their kind by
/// the protocol crate, the one place that writes them.
fn classify(err: &str) -> u8 {
    if err == Refusal::RateLimited.to_string() {
        return EXIT_RATE;
    }
    match Refusal::classify(err) {
        ErrorKind::Rejected | ErrorKind::Refused => EXIT_REFUSED,
        ErrorKind::Unavailable => EXIT_TRANSPORT,
        ErrorKind::Failed => EXIT_FAILED,
    }
}

fn main() -> ExitCode {
    let result = parse(std::env::args().skip(1).collect()).and_then(run);
    match result {
        Ok(code) => ExitCode::from(code),
        Err((code, msg)) => {
            if code == 0 {
                println!("{msg}");
            } else {
                eprintln!("{msg}");
            }
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Opts, (u8, String)> {
        parse(a.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn commands_map_to_wire_actions_and_parameters() {
        let o = p(&["kill-process", "42", "--signal", "KILL"]).ok().unwrap();
        assert_eq!(o.action, "kill_process");
        assert_eq!(
            Value::Object(o.params),
            json!({"pid": 42, "signal": "KILL"})
        );
        let o = p(&["--protocol", "v1", "restart-service", "nginx"])
            .ok()
            .unwrap();
        assert_eq!(o.version, Version::V1);
        assert_eq!(Value::Object(o.params), json!({"service": "nginx"}));
        assert_eq!(p(&["adjust-swappiness", "x"]).err().unwrap().0, EXIT_USAGE);
        assert_eq!(p(&["reboot"]).err().unwrap().0, EXIT_USAGE);
        assert_eq!(p(&["status", "extra"]).err().unwrap().0, EXIT_USAGE);
        assert_eq!(p(&[]).err().unwrap().0, EXIT_USAGE);
        let o = p(&["--dry-run", "restart-service", "a"]).ok().unwrap();
        assert!(o.dry_run);
        assert!(p(&["--protocol", "v1", "--dry-run", "status"]).is_err());
        let o = p(&["pause", "--reason", "upgrade"]).ok().unwrap();
        assert_eq!(Value::Object(o.params), json!({"reason": "upgrade"}));
        assert!(p(&["status", "--reason", "x"]).is_err());
    }

    #[test]
    fn varlink_calls_use_the_interface_names() {
        let o = p(&["--varlink", "--dry-run", "restart-service", "a.service"])
            .ok()
            .unwrap();
        assert_eq!(o.socket, VARLINK_SOCKET);
        assert_eq!(
            varlink_call(&o),
            json!({"method": "io.luminous.Healing.RestartService",
                   "parameters": {"unit": "a.service", "dryRun": true}})
        );
        let o = p(&["--varlink", "kill-process", "42"]).ok().unwrap();
        assert_eq!(
            varlink_call(&o)["parameters"],
            json!({"pid": 42, "signal": "TERM"})
        );
        assert!(p(&["--varlink", "--dry-run", "status"]).is_err());
        assert_eq!(varlink_exit("io.luminous.Healing.RateLimited"), EXIT_RATE);
        assert_eq!(varlink_exit("io.luminous.Healing.Refused"), EXIT_REFUSED);
        assert_eq!(
            varlink_exit("org.varlink.service.InvalidParameter"),
            EXIT_REFUSED
        );
        assert_eq!(
            varlink_exit("io.luminous.Healing.ActionFailed"),
            EXIT_FAILED
        );
    }

    #[test]
    fn exit_codes_follow_the_error_strings() {
        assert_eq!(classify("Invalid signature"), EXIT_REFUSED);
        assert_eq!(classify("Action reboot not allowed"), EXIT_REFUSED);
        assert_eq!(classify("Rate limit exceeded"), EXIT_RATE);
        assert_eq!(
            classify("Refused: luminous-healing is paused: maintenance"),
            EXIT_REFUSED
        );
        assert_eq!(classify("Audit unavailable: journal"), EXIT_TRANSPORT);
        assert_eq!(
            classify("Action kill_process timed out after 15 s"),
            EXIT_FAILED
        );
    }
}
