//! The interactive flow, through a real pseudo-terminal, answering the real prompts.

use std::{process::Command, time::Duration};

use expectrl::{Eof, Expect, Session};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@example";
const ENTER: &str = "\r";

fn spawn_init(dir: &std::path::Path) -> expectrl::session::OsSession {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("flakesmith"));
    command
        .args(["init", "cluster", "--no-git"])
        .current_dir(dir)
        .env("HOME", &home)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    let mut session = Session::spawn(command).expect("spawn in a pty");
    session.set_expect_timeout(Some(Duration::from_secs(30)));
    session
}

/// Waits for a prompt, then types an answer (Enter alone takes the default).
fn answer(session: &mut expectrl::session::OsSession, prompt: &str, text: &str) {
    session
        .expect(prompt)
        .unwrap_or_else(|e| panic!("prompt {prompt:?} did not appear: {e}"));
    session.send(text).unwrap();
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
    let answers = std::fs::read_to_string(dir.path().join("cluster/flakesmith.yaml")).unwrap();
    assert!(answers.contains("name: cluster") && answers.contains("host: rk1-node4"), "{answers}");
}

#[test]
fn typed_answers_and_a_corrected_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn_init(dir.path());
    answer(&mut s, "Layout", "");
    answer(&mut s, "Number of RK1 nodes", "5");
    // A bad host name is refused at the prompt, which asks again.
    answer(&mut s, "Host names", "a,b,c,d,Bad_E");
    s.expect("not an RFC 1123 host name").expect("the mistake is explained");
    s.send("\u{15}a,b,c,d,e").unwrap(); // Ctrl-U clears the line first
    s.send(ENTER).unwrap();
    answer(&mut s, "BMC host of board 1", "");
    answer(&mut s, "BMC host of board 2", "tp-b.local");
    answer(&mut s, "Admin user", "ops");
    answer(&mut s, "SSH public key", KEY);
    answer(&mut s, "Secrets", "");
    answer(&mut s, "Admin age recipients", "");
    answer(&mut s, "nixpkgs branch", "");
    answer(&mut s, "RK1 bootloader", "");
    answer(&mut s, "dots flake", "github:someone/dots");
    s.expect("Created").expect("init finished");
    s.expect(Eof).unwrap();

    let answers = std::fs::read_to_string(dir.path().join("cluster/flakesmith.yaml")).unwrap();
    for expected in ["admin-user: ops", "bmc-host: tp-b.local", "host: e", "board: tp2", "dots: github:someone/dots", "admin@example"] {
        assert!(answers.contains(expected), "{expected} missing from\n{answers}");
    }
}
