//! A command's arguments, read the way the table of actions says
//! (`commands.rs`, generated from it): positional parameters in order, the
//! command's own `--flag VALUE` options, integers parsed here so that a typo
//! is a usage error rather than a refusal from the dispatcher.

use serde_json::{Map, Value};

/// One healctl command: one action of the table.
#[derive(Debug)]
pub struct Command {
    pub name: &'static str,
    /// The wire name.
    pub action: &'static str,
    /// Its io.luminous.Healing method (`--varlink`).
    pub varlink: &'static str,
    pub args: &'static [Arg],
}

/// One parameter of a command.
#[derive(Debug)]
pub struct Arg {
    /// Its name in the request's `parameters`.
    pub param: &'static str,
    /// Its name in the Varlink method's parameters.
    pub varlink: &'static str,
    /// `None`: positional; else the option that gives it.
    pub flag: Option<&'static str>,
    /// Sent as a JSON number.
    pub integer: bool,
    /// Sent when the option is absent; `None`: not sent at all.
    pub default: Option<&'static str>,
}

/// Whether `flag` is some command's own option, which takes a value.
pub fn is_command_flag(flag: &str) -> bool {
    crate::commands::COMMANDS
        .iter()
        .flat_map(|c| c.args)
        .any(|a| a.flag == Some(flag))
}

/// The wire action and parameters of `name ARGS...` with the command
/// options `flags` (in the order given). `Err` is the usage error.
pub fn build(
    name: &str,
    positional: &[String],
    flags: &[(String, String)],
) -> Result<(String, Map<String, Value>), String> {
    // The wire name works too: healctl has always accepted it.
    let Some(cmd) = crate::commands::COMMANDS
        .iter()
        .find(|c| c.name == name || c.action == name)
    else {
        return Err(format!("unknown command {name:?}"));
    };
    if let Some((f, _)) = flags
        .iter()
        .find(|(f, _)| !cmd.args.iter().any(|a| a.flag == Some(f.as_str())))
    {
        let owners: Vec<&str> = crate::commands::COMMANDS
            .iter()
            .filter(|c| c.args.iter().any(|a| a.flag == Some(f.as_str())))
            .map(|c| c.name)
            .collect();
        return Err(format!("{f} goes with {}", owners.join(", ")));
    }
    let wanted = cmd.args.iter().filter(|a| a.flag.is_none()).count();
    if positional.len() != wanted {
        return Err(format!("{name} takes {wanted} argument(s)"));
    }
    let mut params = Map::new();
    let mut next = positional.iter();
    for a in cmd.args {
        let given = match a.flag {
            None => next.next().map(String::as_str),
            // The last one given wins, as with the global options.
            Some(flag) => flags
                .iter()
                .rev()
                .find(|(f, _)| f == flag)
                .map(|(_, v)| v.as_str()),
        };
        let Some(text) = given.or(a.default) else {
            continue;
        };
        let value = if a.integer {
            text.parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("{text:?} is not an integer"))?
        } else {
            Value::from(text)
        };
        params.insert(a.param.to_string(), value);
    }
    Ok((cmd.action.to_string(), params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b(name: &str, pos: &[&str], flags: &[(&str, &str)]) -> Result<Value, String> {
        let pos: Vec<String> = pos.iter().map(|s| s.to_string()).collect();
        let flags: Vec<(String, String)> = flags
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect();
        build(name, &pos, &flags).map(|(a, p)| json!({"action": a, "parameters": p}))
    }

    #[test]
    fn defaults_flags_and_integers() {
        assert_eq!(
            b("kill-process", &["42"], &[]).unwrap(),
            json!({"action": "kill_process", "parameters": {"pid": 42, "signal": "TERM"}})
        );
        assert_eq!(
            b(
                "kill-process",
                &["42"],
                &[("--signal", "HUP"), ("--signal", "INT")]
            )
            .unwrap()["parameters"]["signal"],
            "INT"
        );
        assert_eq!(
            b("pause", &[], &[]).unwrap()["parameters"],
            json!({}),
            "a flag without a default sends nothing"
        );
        assert!(b("adjust-swappiness", &["ten"], &[])
            .unwrap_err()
            .contains("not an integer"));
    }

    #[test]
    fn misuse_is_named() {
        assert_eq!(
            b("status", &[], &[("--signal", "KILL")]).unwrap_err(),
            "--signal goes with kill-process"
        );
        assert_eq!(
            b("restart-service", &[], &[]).unwrap_err(),
            "restart-service takes 1 argument(s)"
        );
        assert_eq!(
            b("reboot", &[], &[]).unwrap_err(),
            "unknown command \"reboot\""
        );
        assert_eq!(
            b("restart_service", &["a"], &[]).unwrap()["action"],
            "restart_service"
        );
        assert!(is_command_flag("--reason"));
        assert!(!is_command_flag("--json"));
    }

    #[test]
    fn every_command_is_its_action_with_dashes() {
        for c in crate::commands::COMMANDS {
            assert_eq!(c.name.replace('-', "_"), c.action);
            let pos: Vec<String> = c
                .args
                .iter()
                .filter(|a| a.flag.is_none())
                .map(|a| if a.integer { "7" } else { "x" }.to_string())
                .collect();
            assert_eq!(build(c.name, &pos, &[]).unwrap().0, c.action);
        }
    }
}
