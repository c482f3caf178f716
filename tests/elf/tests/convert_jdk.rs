//! A whole JDK converted as a tree with no flags: `libattach.so` needs `libjvm.so`, which
//! lies outside its RUNPATH and which the launcher loads by path, so that name stays plain
//! (a note); `libjava.so`, opened by path by the launcher and needed by URI by the other
//! libraries, is one file. A program that resolves `localhost` and starts a child prints
//! what the original prints; `jshell` evaluates; `jcmd` attaches to a converted JVM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use elf_tests::conversion::{convert, init_store, needed};
use elf_tests::{fixture_dir, run_ok};

/// The JDK that `scripts/install-deps.sh` installs (openjdk-17-jdk-headless).
const JDK: &str = "/usr/lib/jvm/java-17-openjdk-amd64";

fn java_source(name: &str) -> PathBuf {
    fixture_dir().join("convert/java").join(name)
}

/// `jcmd PID VM.version` against a JVM of `jdk` running Sleep.java.
fn jcmd_version(jdk: &Path) -> String {
    let mut jvm = Command::new(jdk.join("bin/java"))
        .arg(java_source("Sleep.java"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start java");
    let mut line = String::new();
    BufReader::new(jvm.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("read java's output");
    assert_eq!(line, "ready\n");
    let out = run_ok(
        Command::new("timeout")
            .arg("60")
            .arg(jdk.join("bin/jcmd"))
            .arg(jvm.id().to_string())
            .arg("VM.version"),
    );
    let _ = jvm.kill();
    let _ = jvm.wait();
    // The first line is the process id.
    out.lines().skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_jdk_converts_with_no_flags_and_networking_jshell_and_jcmd_work() {
    let jdk = Path::new(JDK);
    assert!(
        jdk.join("bin/javac").is_file(),
        "{JDK} is missing: run scripts/install-deps.sh"
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    init_store(&store);
    let report = convert(&store, &[], &[jdk.to_path_buf()]);
    assert!(report["missing"].as_array().unwrap().is_empty(), "{report}");
    assert!(
        report["notes"].to_string().contains("libjvm.so"),
        "{report}"
    );
    let converted = store.join("bin/java-17-openjdk-amd64");
    let libnet = needed(&converted.join("lib/libnet.so"));
    assert!(
        libnet
            .iter()
            .all(|n| n.starts_with("uri:blake3:") || n == "libjvm.so"),
        "{libnet:?}"
    );
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().into());

    let net = |java_home: &Path| {
        run_ok(
            Command::new(java_home.join("bin/java"))
                .arg(java_source("Net.java"))
                .env_clear()
                .env("HOME", &home),
        )
    };
    let expected = net(jdk).replace("exit 0 true", "exit 0 home");
    let got = net(&converted).replace("exit 0 true", "exit 0 home");
    assert_eq!(got, expected);
    assert!(
        got.contains("localhost true") && got.contains("child ok"),
        "{got}"
    );

    let user_home = format!("-J-Duser.home={}", tmp.path().display());
    let jshell = |java_home: &Path| {
        let mut child = Command::new(java_home.join("bin/jshell"))
            .args(["-q", &user_home])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jshell");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(b"System.out.println(6 * 7)\n/exit\n")
            .expect("write to jshell");
        let out = child.wait_with_output().expect("jshell");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let expected = jshell(jdk);
    assert!(expected.contains("42"), "{expected}");
    assert_eq!(jshell(&converted), expected);

    let expected = jcmd_version(jdk);
    assert!(expected.contains("OpenJDK 64-Bit Server VM"), "{expected}");
    assert_eq!(jcmd_version(&converted), expected);
}
