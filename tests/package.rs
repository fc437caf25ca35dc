//! Packaging as a system packager checks it: `scripts/install` into a
//! temporary prefix (the installed binaries must find the installed library,
//! never the build tree) and the Debian package from `scripts/build-deb`
//! (installed and removed with dpkg when running as root in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command with no trace of the build tree in its environment.
fn clean(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env_remove("LD_LIBRARY_PATH")
        .env_remove("CTI_CORE_LIB")
        .current_dir("/");
    c
}

fn profile() -> String {
    cti::profile_dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn install(prefix: &Path) {
    run(Command::new(cti::workspace_root().join("scripts/install"))
        .arg("--no-build")
        .env("PREFIX", prefix)
        .env("PROFILE", profile())
        .env("CARGO_TARGET_DIR", cti::profile_dir().parent().unwrap()));
}

fn resolved_core(ldd: &str) -> PathBuf {
    let line = ldd
        .lines()
        .find(|l| l.contains("libcti_core"))
        .unwrap_or_else(|| panic!("no libcti_core in {ldd}"));
    let path = line
        .split("=>")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default();
    std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn installed_tree_uses_the_installed_library() {
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    install(p);
    let major = cti_ffi::abi_version().0;
    for rel in [
        "bin/cti-edge".to_string(),
        "bin/cti-server".into(),
        format!("lib/libcti_core.so.{major}"),
        "lib/libcti_core.so".into(),
        "include/cti_core.h".into(),
        "lib/pkgconfig/cti_core.pc".into(),
        "lib/systemd/system/cti-edge.service".into(),
        "lib/python3/dist-packages/cti_core.py".into(),
    ] {
        assert!(p.join(&rel).exists(), "{rel} not installed");
    }
    let real = std::fs::canonicalize(p.join("lib/libcti_core.so")).unwrap();
    assert!(real
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(&format!("libcti_core.so.{major}.")));
    let build_tree = cti::profile_dir().parent().unwrap().to_path_buf();
    for bin in ["cti-edge", "cti-server"] {
        let path = p.join("bin").join(bin);
        let lib = resolved_core(&run(clean("ldd").arg(&path)));
        assert!(
            lib.starts_with(std::fs::canonicalize(p).unwrap()),
            "{bin} resolves {}",
            lib.display()
        );
        assert!(!lib.starts_with(&build_tree));
        run(clean(&path).arg("--help"));
    }
    let unit = std::fs::read_to_string(p.join("lib/systemd/system/cti-edge.service")).unwrap();
    assert!(
        unit.contains(&format!("ExecStart={}/bin/cti-edge", p.display())),
        "{unit}"
    );
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=cti",
        "ExecReload=/bin/kill -HUP",
    ] {
        assert!(unit.contains(hardening), "unit lacks {hardening}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let verify = clean("systemd-analyze")
            .arg("verify")
            .arg(p.join("lib/systemd/system/cti-edge.service"))
            .output()
            .unwrap();
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    // The C example against the installed copy, through pkg-config only.
    let cflags = run(clean("pkg-config")
        .args(["--cflags", "--libs", "cti_core"])
        .env("PKG_CONFIG_PATH", p.join("lib/pkgconfig")));
    let exe = p.join("claim-example");
    run(clean("sh").arg("-c").arg(format!(
        "cc {} -pthread {} {} -Wl,-rpath,{}/lib -o {}",
        cti::workspace_root().join("examples/claim.c").display(),
        cflags.trim(),
        "-std=c11",
        p.display(),
        exe.display()
    )));
    let lib = resolved_core(&run(clean("ldd").arg(&exe)));
    assert!(
        lib.starts_with(std::fs::canonicalize(p).unwrap()),
        "example resolves {}",
        lib.display()
    );
    run(clean(&exe).arg(p.join("c.db")));
    // The installed Python module finds the installed library by itself.
    let py = run(clean("python3")
        .arg("-c")
        .arg("import cti_core, os; s = cti_core.Store(os.environ['DB']); print(s.claim('1.2.3.4', 'py')['name']); print(cti_core._lib._name)")
        .env("PYTHONPATH", p.join("lib/python3/dist-packages"))
        .env("DB", p.join("py.db")));
    assert!(
        py.starts_with(
            "py
"
        ),
        "{py}"
    );
    let loaded = std::fs::canonicalize(py.lines().nth(1).unwrap()).unwrap();
    assert!(
        loaded.starts_with(std::fs::canonicalize(p).unwrap()),
        "python loaded {}",
        loaded.display()
    );
    let pc = run(clean("pkg-config")
        .args(["--cflags", "--libs", "cti_core"])
        .env("PKG_CONFIG_PATH", p.join("lib/pkgconfig")));
    assert!(
        pc.contains(&format!("-I{}/include", p.display())) && pc.contains("-lcti_core"),
        "{pc}"
    );
}

#[test]
fn debian_package_installs_and_removes_cleanly() {
    let root = cti::workspace_root();
    let deb = run(Command::new(root.join("scripts/build-deb"))
        .args(["--profile", "debug"])
        .current_dir(root));
    let deb = root.join(deb.trim().lines().last().unwrap());
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains("libsqlite3-0"), "{info}");
    let files = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for f in [
        "./usr/bin/cti-edge",
        "./usr/include/cti_core.h",
        "./lib/systemd/system/cti-edge.service",
    ] {
        assert!(files.contains(f), "{f} missing from the package:\n{files}");
    }
    let readelf = run(Command::new("sh").arg("-c").arg(format!(
        "dir=$(mktemp -d) && dpkg-deb -x {} $dir && readelf -d $dir/usr/bin/cti-edge; rm -rf $dir",
        deb.display()
    )));
    assert!(
        !readelf.contains("RUNPATH") && !readelf.contains("RPATH"),
        "packaged binary has a RUNPATH"
    );

    let may_install =
        std::env::var_os("CI").is_some() || std::env::var_os("CTI_TEST_DPKG").is_some();
    let is_root = run(Command::new("id").arg("-u")).trim() == "0";
    if !(may_install && is_root) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run as root to install the package"
        );
        eprintln!("dpkg -i skipped: set CTI_TEST_DPKG=1 and run as root to install the package on this machine");
        return;
    }
    run(Command::new("dpkg").arg("-i").arg(&deb));
    let result = std::panic::catch_unwind(|| {
        let lib = resolved_core(&run(clean("ldd").arg("/usr/bin/cti-edge")));
        assert!(lib.starts_with("/usr/lib/"), "{}", lib.display());
        run(clean("/usr/bin/cti-edge").arg("--help"));
    });
    run(Command::new("dpkg").args(["-r", "cti"]));
    assert!(
        !Path::new("/usr/bin/cti-edge").exists(),
        "dpkg -r left /usr/bin/cti-edge"
    );
    let left = run(Command::new("sh")
        .arg("-c")
        .arg("ls /usr/lib/*/libcti_core* 2>/dev/null || true"));
    assert!(left.trim().is_empty(), "dpkg -r left {left}");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
