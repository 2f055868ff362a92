//! `moq relay --config relay.toml`: every relay flag from a TOML file.
//!
//! Each key is a flag's long name, with `-` or `_` (`auth-public` or `auth_public`); a table
//! prefixes its keys (`[auth] public = …` is `--auth-public`). A string or number is the
//! flag's value, an array repeats the flag, `true` sets a switch (`false` leaves it off).
//! The file's values go in front of the command line's, so precedence is: command line, then
//! `MOQ_*` environment variables (a key whose variable is set is skipped), then the file,
//! then the defaults. Lists from the file and the command line add up.

use std::ffi::OsString;

use clap::CommandFactory;

/// The command line with `relay --config FILE` expanded into flags (unchanged otherwise).
pub(crate) fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(relay_at) = args.iter().position(|a| a == "relay") else {
        return Ok(args);
    };
    let mut path = None;
    let mut i = relay_at + 1;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        if arg == "--config" {
            path = args.get(i + 1).cloned();
            break;
        }
        if let Some(p) = arg.strip_prefix("--config=") {
            path = Some(OsString::from(p));
            break;
        }
        i += 1;
    }
    let Some(path) = path else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.to_string_lossy()))?;
    let flags = flags_from_toml(&text, &relay_flags(), |name| {
        std::env::var_os(name).is_some()
    })
    .map_err(|e| format!("{}: {e}", path.to_string_lossy()))?;
    let mut out = args[..=relay_at].to_vec();
    out.extend(flags);
    out.extend_from_slice(&args[relay_at + 1..]);
    Ok(out)
}

/// The relay's flags: long name and whether it takes a value.
fn relay_flags() -> Vec<(String, bool)> {
    let cli = crate::Cli::command();
    let mut flags = Vec::new();
    let relay = cli.find_subcommand("relay");
    for arg in cli
        .get_arguments()
        .chain(relay.into_iter().flat_map(|r| r.get_arguments()))
    {
        if let Some(long) = arg.get_long() {
            flags.push((long.to_string(), arg.get_action().takes_values()));
        }
    }
    flags
}

/// The flags a TOML document stands for. `env_set(MOQ_X)` says whether the environment
/// already gives flag `x` (then the file's value is skipped).
fn flags_from_toml(
    text: &str,
    known: &[(String, bool)],
    env_set: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut out = Vec::new();
    flatten("", &table, known, &env_set, &mut out)?;
    Ok(out)
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    known: &[(String, bool)],
    env_set: &impl Fn(&str) -> bool,
    out: &mut Vec<OsString>,
) -> Result<(), String> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.replace('_', "-")
        } else {
            format!("{prefix}-{}", key.replace('_', "-"))
        };
        if let toml::Value::Table(inner) = value {
            flatten(&name, inner, known, env_set, out)?;
            continue;
        }
        if name == "config" {
            return Err("`config` cannot be set from a config file".into());
        }
        let Some((_, takes_value)) = known.iter().find(|(long, _)| *long == name) else {
            return Err(format!("unknown key `{key}` (no flag --{name})"));
        };
        let env = format!("MOQ_{}", name.replace('-', "_").to_uppercase());
        if env_set(&env) {
            continue;
        }
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for value in values {
            match (value, takes_value) {
                (toml::Value::Boolean(true), false) => out.push(format!("--{name}").into()),
                (toml::Value::Boolean(false), false) => {}
                (toml::Value::Boolean(_), true) => {
                    return Err(format!("`{key}` takes a value, not true/false"));
                }
                (_, false) => return Err(format!("`{key}` is a switch: write true or false")),
                (toml::Value::String(s), true) => {
                    out.push(format!("--{name}").into());
                    out.push(s.into());
                }
                (toml::Value::Integer(n), true) => {
                    out.push(format!("--{name}").into());
                    out.push(n.to_string().into());
                }
                (toml::Value::Float(x), true) => {
                    out.push(format!("--{name}").into());
                    out.push(x.to_string().into());
                }
                (other, true) => {
                    return Err(format!("`{key}`: unsupported value {other}"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<(String, bool)> {
        [
            ("listen", true),
            ("auth-public", true),
            ("auth-key", true),
            ("no-websocket", false),
            ("drain", true),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect()
    }

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn keys_tables_arrays_and_switches() {
        let text = r#"
listen = "[::]:4443"
no_websocket = true
drain = 5
[auth]
public = ["anon/**", "demo/**"]
key = "k.jwk"
"#;
        // Keys come in the table's (sorted) order; an array's values keep theirs.
        let flags = strings(flags_from_toml(text, &known(), |_| false).unwrap());
        let want = [
            "--auth-key",
            "k.jwk",
            "--auth-public",
            "anon/**",
            "--auth-public",
            "demo/**",
            "--drain",
            "5",
            "--listen",
            "[::]:4443",
            "--no-websocket",
        ];
        assert_eq!(flags, want);
    }

    #[test]
    fn environment_wins_over_the_file_and_unknown_keys_fail() {
        let flags = strings(
            flags_from_toml("listen = \"x\"\ndrain = 3", &known(), |e| e == "MOQ_LISTEN").unwrap(),
        );
        assert_eq!(flags, ["--drain", "3"]);
        assert!(flags_from_toml("lisen = 1", &known(), |_| false).is_err());
        assert!(flags_from_toml("no_websocket = \"yes\"", &known(), |_| false).is_err());
        assert!(flags_from_toml("drain = true", &known(), |_| false).is_err());
        assert!(flags_from_toml("not toml [", &known(), |_| false).is_err());
    }
}
