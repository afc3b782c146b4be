//! The interactive flow, through a real pseudo-terminal, answering the real prompts.

use std::{process::Command, time::Duration};

use expectrl::{Eof, Expect, Session};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@example";
const ENTER: &str = "\r";

fn spawn_init(dir: &std::path::Path) -> expectrl::session::OsSession {
    spawn_init_named(dir, "cluster", None)
}

/// `flakesmith init <name> --no-git` in a pty; `path` replaces PATH (to hide openssl).
fn spawn_init_named(
    dir: &std::path::Path,
    name: &str,
    path: Option<&std::path::Path>,
) -> expectrl::session::OsSession {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut command = crate::support::flakesmith_command();
    if let Some(path) = path {
        command.env("PATH", path);
    }
    command
        .args(["init", name, "--no-git"])
        .current_dir(dir)
        .env("HOME", &home)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    let mut session = Session::spawn(command).expect("spawn in a pty");
    session.set_expect_timeout(Some(Duration::from_secs(30)));
    session
}

/// Typing at a person's pace: the prompt is drawn before it starts reading keys, and a key sent
/// in between can be lost when the terminal is switched to raw mode (seen on a loaded machine).
fn pause() {
    std::thread::sleep(Duration::from_millis(60));
}

/// Waits for a prompt, then types an answer (Enter alone takes the default).
fn answer(session: &mut expectrl::session::OsSession, prompt: &str, text: &str) {
    session
        .expect(prompt)
        .unwrap_or_else(|e| panic!("prompt {prompt:?} did not appear: {e}"));
    pause();
    session.send(text).unwrap();
    pause();
    session.send(ENTER).unwrap();
}

#[test]
fn enter_throughout_gives_a_working_repo() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn_init(dir.path());
    // The directory names the project, so the first question is the layout.
    for prompt in [
        "Layout",
        "Number of RK1 nodes",
        "Host names",
        "BMC host of board 1",
        "Admin user",
        "SSH public key",
        "Temporary console password",
        "Secrets",
        "Admin age recipients",
        "nixpkgs branch",
        "RK1 bootloader",
        "dots flake",
    ] {
        answer(&mut s, prompt, "");
    }
    s.expect("Created").expect("init finished");
    s.expect(Eof).unwrap();
    let status = s.get_process().wait().unwrap();
    assert!(
        matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 0)),
        "init exited with {status:?}"
    );
    let repo = dir.path().join("cluster");
    let text = std::fs::read_to_string(repo.join("flakesmith.yaml")).unwrap();
    let answers = flakesmith::model::Answers::from_yaml(&text).unwrap();
    // The defaults: a cluster named after its directory, four nodes.
    assert_eq!(answers.name, "cluster");
    assert_eq!(
        answers
            .nodes
            .iter()
            .map(|n| n.host.as_str())
            .collect::<Vec<_>>(),
        ["rk1-node1", "rk1-node2", "rk1-node3", "rk1-node4"]
    );
    // The repository on disk is what those answers render to, file for file.
    let tree = crate::support::Project::from_answers(answers).render();
    let differ: Vec<&str> = tree
        .iter()
        .filter(|(path, file)| std::fs::read(repo.join(path)).ok().as_ref() != Some(&file.contents))
        .map(|(path, _)| path)
        .collect();
    // .sops.yaml alone also carries what init made: each node's age identity (keys/<host>.age).
    assert_eq!(differ, [".sops.yaml"]);
    let sops = std::fs::read_to_string(repo.join(".sops.yaml")).unwrap();
    for host in ["rk1-node1", "rk1-node2", "rk1-node3", "rk1-node4"] {
        let recipient = crate::support::run_ok(
            Command::new("age-keygen")
                .arg("-y")
                .arg(repo.join(format!("keys/{host}.age"))),
        );
        let line = format!("  - &{host} {}", recipient.trim_end());
        assert!(sops.lines().any(|l| l == line), "no `{line}` in:\n{sops}");
    }
    // And flakesmith's own lint passes on it.
    let check = crate::support::flakesmith_command()
        .args(["check", "-C"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(tree.get("flake.nix").is_some() && tree.get("nodes/rk1-node4.nix").is_some());
}

#[test]
fn typed_answers_and_a_corrected_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn_init(dir.path());
    answer(&mut s, "Layout", "");
    answer(&mut s, "Number of RK1 nodes", "5");
    // A bad host name is refused at the prompt, which asks again.
    answer(&mut s, "Host names", "a,b,c,d,Bad_E");
    s.expect("not an RFC 1123 host name")
        .expect("the mistake is explained");
    pause();
    s.send("\u{15}a,b,c,d,e").unwrap(); // Ctrl-U clears the line first
    pause();
    s.send(ENTER).unwrap();
    answer(&mut s, "BMC host of board 1", "");
    answer(&mut s, "BMC host of board 2", "tp-b.local");
    answer(&mut s, "Admin user", "ops");
    answer(&mut s, "SSH public key", KEY);
    answer(&mut s, "Temporary console password", "");
    answer(&mut s, "Secrets", "");
    answer(&mut s, "Admin age recipients", "");
    answer(&mut s, "nixpkgs branch", "");
    answer(&mut s, "RK1 bootloader", "");
    answer(&mut s, "dots flake", "github:someone/dots");
    s.expect("Created").expect("init finished");
    s.expect(Eof).unwrap();

    let answers = std::fs::read_to_string(dir.path().join("cluster/flakesmith.yaml")).unwrap();
    for expected in [
        "admin-user: ops",
        "bmc-host: tp-b.local",
        "host: e",
        "board: tp2",
        "dots: github:someone/dots",
        "admin@example",
    ] {
        assert!(
            answers.contains(expected),
            "{expected} missing from\n{answers}"
        );
    }
}

/// A bad answer is refused at its own prompt, with the rule that `flakesmith.yaml` and the flags
/// use, and asked again there: nothing typed before it is lost.
#[test]
fn bad_answers_are_asked_again_at_their_own_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn_init(dir.path());
    let retype = |s: &mut expectrl::session::OsSession, why: &str, text: &str| {
        s.expect(why)
            .unwrap_or_else(|e| panic!("{why:?} was not said: {e}"));
        pause();
        s.send(format!("\u{15}{text}")).unwrap(); // Ctrl-U clears the line first
        pause();
        s.send(ENTER).unwrap();
    };
    answer(&mut s, "Layout", "");
    answer(&mut s, "Number of RK1 nodes", "");
    answer(&mut s, "Host names", "");
    answer(&mut s, "BMC host of board 1", "bad host!");
    retype(&mut s, "neither a DNS name nor an IP address", "tp.lan");
    answer(&mut s, "Admin user", "Root User");
    retype(&mut s, "is not a user name", "ops");
    answer(&mut s, "SSH public key", KEY);
    answer(&mut s, "Temporary console password", "");
    answer(&mut s, "Secrets", "");
    answer(&mut s, "Admin age recipients", "");
    answer(&mut s, "nixpkgs branch", "nixos-24.05");
    retype(&mut s, "older than nixos-25.05", "nixos-25.11");
    // A blob is checked as rk-inject checks a loader, at its prompt.
    let not_a_loader = dir.path().join("notes.txt");
    std::fs::write(&not_a_loader, "not a bootloader\n").unwrap();
    let loader = crate::inject::fixtures::rk35_payloads(dir.path()).combined;
    keys(&mut s, "RK1 bootloader", &[DOWN]);
    answer(
        &mut s,
        "Path to the bootloader blob",
        not_a_loader.to_str().unwrap(),
    );
    retype(
        &mut s,
        "is not an RK1 loader: no RKNS header at byte 0",
        loader.to_str().unwrap(),
    );
    answer(&mut s, "dots flake", "my dots");
    retype(&mut s, "is not a flake URL", "");
    s.expect("Created").expect("init finished");
    s.expect(Eof).unwrap();
    let answers = std::fs::read_to_string(dir.path().join("cluster/flakesmith.yaml")).unwrap();
    for expected in [
        "admin-user: ops\n",
        "bmc-host: tp.lan\n",
        "nixpkgs-branch: nixos-25.11\n",
        "dots: null\n",
        "blob: rk1-bootloader.bin\n",
    ] {
        assert!(
            answers.contains(expected),
            "{expected} missing from\n{answers}"
        );
    }
    assert_eq!(
        std::fs::read(dir.path().join("cluster/rk1-bootloader.bin")).unwrap(),
        std::fs::read(&loader).unwrap()
    );
}

const DOWN: &str = "\u{1b}[B";
const SPACE: &str = " ";

/// Waits for a prompt, then sends keys as they are (arrows, space) and Enter.
fn keys(session: &mut expectrl::session::OsSession, prompt: &str, keys: &[&str]) -> String {
    let found = session
        .expect(prompt)
        .unwrap_or_else(|e| panic!("prompt {prompt:?} did not appear: {e}"));
    let before = String::from_utf8_lossy(found.before()).into_owned();
    pause();
    for k in keys {
        session.send(k).unwrap();
        pause();
    }
    session.send(ENTER).unwrap();
    before
}

#[test]
fn multi_cloud_asks_what_its_chosen_platforms_need() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn_init_named(dir.path(), "fleet", None);
    keys(&mut s, "Layout", &[DOWN]);
    // The list promises what the platform builds by default: the raw UEFI image is optional.
    let shown = s
        .expect(expectrl::Regex("generic-x86_64: [^\r\n]*"))
        .expect("the platform list");
    let line = String::from_utf8_lossy(shown.get(0).unwrap()).into_owned();
    assert!(
        line.contains("bootable ISO (a raw UEFI disk image is optional)"),
        "{line}"
    );
    // Every platform starts checked: uncheck rk1 (third) and generic-arm64 (fourth).
    pause();
    for k in [DOWN, DOWN, SPACE, DOWN, SPACE] {
        s.send(k).unwrap();
        pause();
    }
    s.send(ENTER).unwrap();
    let before = keys(&mut s, "Admin user", &[]);
    assert!(
        !before.contains("Number of RK1 nodes") && !before.contains("BMC host"),
        "no RK1 questions without rk1:\n{before}"
    );
    answer(&mut s, "SSH public key", KEY);
    answer(&mut s, "Temporary console password", "y");
    // openssl hashes it; the password itself is typed twice and never stored.
    answer(&mut s, "Temporary password", "temporary-example");
    answer(&mut s, "Repeat it", "temporary-example");
    answer(&mut s, "Secrets", "");
    answer(&mut s, "Admin age recipients", "");
    answer(&mut s, "nixpkgs branch", "");
    answer(&mut s, "Prometheus node exporter", "");
    answer(&mut s, "Open port 9100", "y");
    keys(&mut s, "AWS image format", &[DOWN]);
    answer(&mut s, "raw UEFI disk image", "y");
    answer(&mut s, "dots flake", "");
    s.expect("Created").expect("init finished");
    s.expect(Eof).unwrap();

    let text = std::fs::read_to_string(dir.path().join("fleet/flakesmith.yaml")).unwrap();
    let answers = flakesmith::model::Answers::from_yaml(&text).unwrap();
    use flakesmith::model::{answers::AwsImageFormat, Layout, Platform};
    assert_eq!(answers.layout, Layout::MultiCloud);
    assert_eq!(
        answers.platforms,
        [Platform::Aws, Platform::Gcp, Platform::GenericX86_64]
    );
    assert!(
        answers.monitoring.node_exporter && answers.monitoring.open_port,
        "{text}"
    );
    assert_eq!(answers.aws.image_format, AwsImageFormat::Raw);
    assert!(answers.generic_x86_64.raw_efi);
    assert!(
        !text.contains("temporary-example"),
        "the password itself is not stored"
    );
    // The stored hash is the typed password's, as openssl computes it with the same salt.
    let hash = answers.temporary_password_hash.expect("a hash");
    let salt = hash.split('$').nth(2).unwrap();
    let again = Command::new("openssl")
        .args(["passwd", "-6", "-salt", salt, "temporary-example"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), hash);
}

#[test]
fn without_openssl_the_password_question_takes_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-tools");
    std::fs::create_dir(&empty).unwrap();
    let mut s = spawn_init_named(dir.path(), "boards", Some(&empty));
    keys(&mut s, "Layout", &[DOWN]);
    // Only generic-arm64: uncheck aws, gcp, rk1 and generic-x86_64.
    keys(
        &mut s,
        "Platforms",
        &[SPACE, DOWN, SPACE, DOWN, SPACE, DOWN, DOWN, SPACE],
    );
    answer(&mut s, "Admin user", "");
    answer(&mut s, "SSH public key", KEY);
    answer(&mut s, "Temporary console password", "y");
    // A password typed where the hash belongs is refused, and the prompt asks again.
    answer(&mut s, "Hash of the temporary password", "hunter2");
    s.expect("not a password hash")
        .expect("the mistake is explained");
    pause();
    s.send(format!("\u{15}{}", crate::support::TEMPORARY_PASSWORD_HASH))
        .unwrap();
    pause();
    s.send(ENTER).unwrap();
    answer(&mut s, "Secrets", "");
    answer(&mut s, "Admin age recipients", "");
    answer(&mut s, "nixpkgs branch", "");
    // No exporter: the port question does not follow.
    answer(&mut s, "Prometheus node exporter", "n");
    let before = keys(&mut s, "dots flake", &[]);
    for absent in ["Open port", "AWS image format", "raw UEFI"] {
        assert!(
            !before.contains(absent),
            "{absent} asked without its platform:\n{before}"
        );
    }
    s.expect("Created").expect("init finished");
    s.expect(Eof).unwrap();

    let text = std::fs::read_to_string(dir.path().join("boards/flakesmith.yaml")).unwrap();
    let answers = flakesmith::model::Answers::from_yaml(&text).unwrap();
    assert_eq!(
        answers.platforms,
        [flakesmith::model::Platform::GenericArm64]
    );
    assert_eq!(
        answers.temporary_password_hash.as_deref(),
        Some(crate::support::TEMPORARY_PASSWORD_HASH)
    );
    assert!(!answers.monitoring.node_exporter && !answers.monitoring.open_port);
}

/// The error line of a refused answer, as a terminal shows it, with or without NO_COLOR.
fn error_in_a_terminal(no_color: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut command = crate::support::flakesmith_command();
    command
        .args(["init", "c", "--yes", "--hosts", "Bad_Host"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("TERM", "xterm-256color")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE");
    if no_color {
        command.env("NO_COLOR", "1");
    } else {
        command.env_remove("NO_COLOR");
    }
    let mut session = Session::spawn(command).expect("spawn in a pty");
    session.set_expect_timeout(Some(Duration::from_secs(30)));
    let captured = session.expect(Eof).expect("flakesmith exits");
    // Eof matches everything the program printed.
    let bytes: Vec<u8> = captured
        .before()
        .iter()
        .chain(captured.matches().flatten())
        .copied()
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    let coloured = error_in_a_terminal(false);
    assert!(coloured.contains("--hosts: 'Bad_Host'"), "{coloured:?}");
    assert!(
        coloured.contains('\u{1b}'),
        "a terminal gets colour: {coloured:?}"
    );
    let plain = error_in_a_terminal(true);
    assert!(plain.contains("--hosts: 'Bad_Host'"), "{plain:?}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR is honoured: {plain:?}");
    // Not a terminal: the other tests read stderr through a pipe and match it as plain text.
}
