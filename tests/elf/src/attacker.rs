//! An unprivileged local user for the attack tests: created once (concurrent creations by
//! other test processes are fine), and commands run as that user through `setpriv`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{require_tool, run, run_ok, tool_path};

/// The attacker's user and group ids.
pub struct User {
    pub uid: String,
    pub gid: String,
}

/// The name of the user the attacks run as.
pub const NAME: &str = "ldcas-attacker";

/// The unprivileged user, created on first use (safe when other processes create users at
/// the same time). The tests that need it run as root (they create a user, set-user-ID
/// files, files owned by others).
pub fn user() -> &'static User {
    static USER: OnceLock<User> = OnceLock::new();
    USER.get_or_init(|| {
        require_tool("useradd");
        require_tool("setpriv");
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "these tests create a user and files owned by others: run them as root"
        );
        // Another process (another test binary, another checkout's tests) may be adding
        // this user or another one at the same moment: `useradd` then says the user exists
        // (9) or that the password files are locked (10). Retry until `id` knows it.
        let mut last = String::new();
        for _ in 0..50 {
            if run(Command::new("id").arg(NAME)).status.code() == Some(0) {
                break;
            }
            let out = run(Command::new("useradd").args([
                "--no-create-home",
                "--shell",
                "/bin/false",
                NAME,
            ]));
            if !out.status.success() {
                last = String::from_utf8_lossy(&out.stderr).into_owned();
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        assert_eq!(
            run(Command::new("id").arg(NAME)).status.code(),
            Some(0),
            "cannot create the user {NAME}: {last}"
        );
        let id = |flag: &str| {
            run_ok(Command::new("id").args([flag, NAME]))
                .trim()
                .to_owned()
        };
        User {
            uid: id("-u"),
            gid: id("-g"),
        }
    })
}

/// Adds `setpriv` arguments to `cmd` (a `Command::new("setpriv")` or a wrapper such as
/// `timeout` that then runs it) so that what follows runs as the attacker.
pub fn setpriv_args(cmd: &mut Command) -> &mut Command {
    let u = user();
    cmd.arg("setpriv")
        .arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.gid))
        .arg("--clear-groups")
}

/// `chown -R` of `path` to the attacker.
pub fn give_to_attacker(path: &std::path::Path) {
    let u = user();
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", u.uid, u.gid))
            .arg(path),
    );
}

/// Where [`install_setuid_qemu`] puts qemu, relative to its directory.
pub const SETUID_QEMU: &str = "setuid-qemu/qemu-aarch64";

/// Installs `qemu-aarch64` set-user-ID root at `dir/`[`SETUID_QEMU`], in a directory of
/// root's that only the attacker's group may enter (mode 0750), and returns its path.
/// qemu-user ignores a guest's set-user-ID bit; started set-user-ID itself by the
/// attacker, it runs the guest as root with the kernel's `AT_SECURE` (it hands the guest
/// its own), as the kernel starts a set-user-ID program: an aarch64 start in secure mode.
/// It lives as long as `dir` (a test's temporary directory).
pub fn install_setuid_qemu(dir: &Path) -> PathBuf {
    let found = tool_path("qemu-aarch64");
    let u = user();
    let qemu = dir.join(SETUID_QEMU);
    let home = qemu.parent().expect("a directory");
    fs::create_dir(home).unwrap();
    fs::copy(found, &qemu).unwrap();
    run_ok(
        Command::new("chown")
            .arg(format!("0:{}", u.gid))
            .arg(home)
            .arg(&qemu),
    );
    fs::set_permissions(home, fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(&qemu, fs::Permissions::from_mode(0o4750)).unwrap();
    qemu
}
