//! The compose stack (docker-compose.yml + Dockerfile) is valid: Compose itself parses and
//! validates the file, and the stack has every service the README describes. No Docker engine is
//! needed for this; `scripts/test` installs Compose when it is missing.

use std::path::Path;
use std::process::Command;

/// `docker compose` (v2 plugin) when the docker CLI has it, else the standalone `docker-compose`.
fn compose(args: &[&str]) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = root.join("docker-compose.yml");
    let file = file.to_str().unwrap();
    let plugin = Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success());
    let mut command = if plugin {
        let mut c = Command::new("docker");
        c.args(["compose", "-f", file]);
        c
    } else {
        let mut c = Command::new("docker-compose");
        c.args(["-f", file]);
        c
    };
    command
        .current_dir(root)
        .args(args)
        .output()
        .expect("neither `docker compose` nor `docker-compose` is installed (scripts/test installs docker-compose)")
}

#[test]
fn compose_file_validates() {
    let out = compose(&["config", "-q"]);
    assert!(out.status.success(), "compose config failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn compose_stack_has_the_demo_services() {
    let out = compose(&["config", "--services"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let services = String::from_utf8(out.stdout).unwrap();
    let services: Vec<&str> = services.lines().collect();
    for wanted in ["redpanda", "postgres", "setup", "diffmart", "producer"] {
        assert!(services.contains(&wanted), "service {wanted} missing from {services:?}");
    }
}

/// Every command line the stack gives the diffmart image is one the binary accepts.
#[test]
fn compose_commands_parse_with_the_cli() {
    use clap::Parser;
    let out = compose(&["config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let commands = command_lists(&text);
    // redpanda and postgres run their own images; the rest run diffmart's (options or `produce`).
    let mut checked = 0;
    for args in commands.iter().filter(|args| args.first().is_some_and(|a| a == "produce" || a.starts_with("--"))) {
        let argv = std::iter::once("diffmart".to_string()).chain(args.iter().cloned());
        if let Err(e) = diffmart::cli::Cli::try_parse_from(argv) {
            panic!("compose command {args:?} is rejected by diffmart: {e}");
        }
        checked += 1;
    }
    assert_eq!(checked, 3, "setup, diffmart and producer commands: {commands:?}");
}

/// The `command:` lists of the normalised compose file, as printed by `compose config`
/// (block sequences of plain or quoted scalars).
fn command_lists(yaml: &str) -> Vec<Vec<String>> {
    let mut lists = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "command:" {
            let indent = line.len() - line.trim_start().len();
            let mut args = Vec::new();
            while let Some(next) = lines.peek() {
                let item_indent = next.len() - next.trim_start().len();
                let item = next.trim_start();
                if item_indent < indent || !item.starts_with("- ") {
                    break;
                }
                args.push(item[2..].trim_matches(|c| c == '\'' || c == '"').to_string());
                lines.next();
            }
            lists.push(args);
        }
    }
    lists
}
