//! Packaging as a system packager checks it: `scripts/install` into a
//! temporary prefix (the installed binaries must find the installed library,
//! never the build tree) and the Debian packages from `scripts/build-deb`,
//! made from the build these tests run on: their contents, the dependencies
//! dpkg-shlibdeps found, the maintainer scripts, lintian, and (as root in CI)
//! installing and purging them with dpkg.

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
        "share/man/man1/cti-edge.1".into(),
        "share/man/man1/cti-server.1".into(),
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
        // The unit's Documentation= is the installed man page.
        let verify = clean("systemd-analyze")
            .env("MANPATH", p.join("share/man"))
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
    // The header needs nothing from SQLite: with only cti_core.pc on the
    // search path (no sqlite3.pc), the flags still come.
    let alone = run(clean("pkg-config")
        .args(["--cflags", "cti_core"])
        .env("PKG_CONFIG_LIBDIR", p.join("lib/pkgconfig")));
    assert_eq!(alone.trim(), format!("-I{}/include", p.display()));
    let static_libs = run(clean("pkg-config")
        .args(["--static", "--libs", "cti_core"])
        .env("PKG_CONFIG_LIBDIR", p.join("lib/pkgconfig")));
    assert!(static_libs.contains("-lsqlite3"), "{static_libs}");
}

/// The packages scripts/build-deb made from this build, by package name.
fn build_debs() -> Vec<(String, PathBuf)> {
    let root = cti::workspace_root();
    let out = run(Command::new(root.join("scripts/build-deb"))
        .arg("--prebuilt")
        .arg(cti::profile_dir())
        .current_dir(root));
    out.lines()
        .map(|l| {
            let name = run(Command::new("dpkg-deb").args(["-f", l, "Package"]));
            (name.trim().to_string(), PathBuf::from(l))
        })
        .collect()
}

fn field(deb: &Path, name: &str) -> String {
    run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim()
        .to_string()
}

/// Paths in the package, without the leading `.`.
fn contents(deb: &Path) -> Vec<String> {
    run(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

fn control_file(deb: &Path, name: &str) -> String {
    run(Command::new("dpkg-deb").arg("-I").arg(deb).arg(name))
}

fn multiarch() -> String {
    run(Command::new("dpkg-architecture").arg("-qDEB_HOST_MULTIARCH"))
        .trim()
        .to_string()
}

/// Lintian tags of warning level that may remain, each for a reason that
/// applies to every package of this source.
const ALLOWED_WARNINGS: &[&str] = &[
    // The changelog can name no ITP bug: cti is not (yet) filed with Debian.
    "initial-upload-closes-no-bugs",
];

#[test]
fn debian_packages_split_depend_pass_lintian_and_install() {
    let debs = build_debs();
    let deb = |name: &str| -> &Path {
        &debs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} package in {debs:?}"))
            .1
    };
    let names: Vec<&str> = debs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.len(),
        4,
        "expected exactly the four packages: {names:?}"
    );
    let lib = deb("libcti-core1");
    let dev = deb("libcti-core-dev");
    let edge = deb("cti-edge");
    let python = deb("python3-cti-core");
    let version = env!("CARGO_PKG_VERSION");
    for (_, d) in &debs {
        assert!(
            field(d, "Version").starts_with(&format!("{version}-")),
            "debian/changelog and Cargo.toml disagree on the version"
        );
    }

    // The split: the library by its SONAME, the link-time files, the programs.
    let ma = multiarch();
    let major = cti_ffi::abi_version().0;
    let has = |d: &Path, files: &[String]| {
        let c = contents(d);
        for f in files {
            assert!(c.contains(f), "{f} missing from {}:\n{c:#?}", d.display());
        }
        c
    };
    let lib_files = has(
        lib,
        &[
            format!("/usr/lib/{ma}/libcti_core.so.{major}"),
            "/usr/share/doc/libcti-core1/copyright".into(),
        ],
    );
    assert!(
        lib_files
            .iter()
            .all(|f| !f.ends_with("libcti_core.so") && !f.ends_with(".h")),
        "development files in the library package: {lib_files:#?}"
    );
    has(
        dev,
        &[
            "/usr/include/cti_core.h".into(),
            format!("/usr/lib/{ma}/libcti_core.so"),
            format!("/usr/lib/{ma}/pkgconfig/cti_core.pc"),
        ],
    );
    has(
        edge,
        &[
            "/usr/bin/cti-edge".into(),
            "/usr/bin/cti-server".into(),
            "/lib/systemd/system/cti-edge.service".into(),
            "/usr/share/doc/cti-edge/examples/haproxy.cfg".into(),
            "/usr/share/man/man1/cti-edge.1.gz".into(),
            "/usr/share/doc/cti-edge/copyright".into(),
        ],
    );
    has(
        python,
        &["/usr/lib/python3/dist-packages/cti_core.py".into()],
    );

    // Dependencies from dpkg-shlibdeps: SQLite is the library's, and the
    // programs need the library through its shlibs/symbols file.
    let lib_depends = field(lib, "Depends");
    assert!(
        lib_depends.contains("libsqlite3-0 (>= ") && lib_depends.contains("libc6 (>= "),
        "{lib_depends}"
    );
    let edge_depends = field(edge, "Depends");
    assert!(
        edge_depends.contains(&format!("libcti-core{major} (>= {version})"))
            && edge_depends.contains("libc6 (>= ")
            && !edge_depends.contains("sqlite"),
        "{edge_depends}"
    );
    assert!(field(dev, "Depends").contains(&format!("libcti-core{major} (= {version}-")));
    assert!(
        control_file(lib, "shlibs").contains(&format!("libcti_core {major} libcti-core{major}"))
    );
    assert!(control_file(lib, "triggers").contains("ldconfig"));
    assert!(control_file(edge, "postinst").contains("deb-systemd-helper"));

    // No RUNPATH in anything packaged: the library is on the loader's path.
    let unpacked = tempfile::tempdir().unwrap();
    for d in [lib, edge] {
        run(Command::new("dpkg-deb")
            .arg("-x")
            .arg(d)
            .arg(unpacked.path()));
    }
    for elf in [
        "usr/bin/cti-edge".to_string(),
        "usr/bin/cti-server".into(),
        format!("usr/lib/{ma}/libcti_core.so.{major}"),
    ] {
        let dynamic = run(Command::new("readelf")
            .arg("-d")
            .arg(unpacked.path().join(&elf)));
        assert!(
            !dynamic.contains("RUNPATH") && !dynamic.contains("RPATH"),
            "{elf} has a RUNPATH:\n{dynamic}"
        );
    }

    lintian(&debs);
    install_and_purge(&debs);
}

/// Lintian on every package: no error, and no warning but the allowed ones.
fn lintian(debs: &[(String, PathBuf)]) {
    let out = Command::new("lintian")
        .args([
            "--fail-on",
            "error",
            "--display-info",
            "--no-tag-display-limit",
        ])
        .args(debs.iter().map(|(_, d)| d))
        .output()
        .expect("lintian (scripts/install-deps installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian:\n{report}");
    assert!(out.status.success(), "lintian found errors:\n{report}");
    let unexpected: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("W: ") || l.starts_with("E: "))
        .filter(|l| {
            let tag = l.split_whitespace().nth(2).unwrap_or_default();
            !ALLOWED_WARNINGS.contains(&tag)
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "new lintian findings: {unexpected:#?}"
    );
}

/// `dpkg -i` of all four, then purge: only as root and only in CI (or when
/// CTI_TEST_DPKG is set), since it changes the machine.
fn install_and_purge(debs: &[(String, PathBuf)]) {
    let may_install =
        std::env::var_os("CI").is_some() || std::env::var_os("CTI_TEST_DPKG").is_some();
    let is_root = run(Command::new("id").arg("-u")).trim() == "0";
    if !(may_install && is_root) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run as root to install the packages"
        );
        eprintln!("dpkg -i skipped: set CTI_TEST_DPKG=1 and run as root to install the packages on this machine");
        return;
    }
    let names: Vec<&str> = debs.iter().map(|(n, _)| n.as_str()).collect();
    run(Command::new("dpkg")
        .arg("-i")
        .args(debs.iter().map(|(_, d)| d)));
    let result = std::panic::catch_unwind(installed_system_works);
    run(Command::new("dpkg").arg("--purge").args(&names));
    let left = run(Command::new("sh").arg("-c").arg(
        "ls -d /usr/bin/cti-edge /usr/bin/cti-server /usr/lib/*/libcti_core* /usr/include/cti_core.h \
         /usr/lib/python3/dist-packages/cti_core.py /usr/lib/python3/dist-packages/__pycache__/cti_core.* \
         /lib/systemd/system/cti-edge.service /etc/systemd/system/*/cti-edge.service \
         /var/lib/systemd/deb-systemd-helper-enabled/cti-edge.service 2>/dev/null || true",
    ));
    assert!(left.trim().is_empty(), "dpkg --purge left {left}");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// What a user of the installed packages does: run the programs, build the C
/// example with pkg-config alone, import the Python module.
fn installed_system_works() {
    let ma = multiarch();
    for bin in ["/usr/bin/cti-edge", "/usr/bin/cti-server"] {
        let lib = resolved_core(&run(clean("ldd").arg(bin)));
        assert!(
            lib.starts_with(format!("/usr/lib/{ma}/")),
            "{}",
            lib.display()
        );
        run(clean(bin).arg("--help"));
    }
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/cti-edge.service").exists(),
        "the unit is not enabled"
    );
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("claim");
    run(clean("sh").arg("-c").arg(format!(
        "cc -std=c11 -pthread {} $(pkg-config --cflags --libs cti_core) -o {}",
        cti::workspace_root().join("examples/claim.c").display(),
        exe.display()
    )));
    let lib = resolved_core(&run(clean("ldd").arg(&exe)));
    assert!(
        lib.starts_with(format!("/usr/lib/{ma}/")),
        "{}",
        lib.display()
    );
    run(clean(&exe).arg(dir.path().join("c.db")));
    // Debian's Python, the one the package is for.
    let py = run(clean("/usr/bin/python3")
        .arg("-c")
        .arg("import cti_core, os; s = cti_core.Store(os.environ['DB']); print(s.claim('1.2.3.4', 'py')['name']); print(cti_core.__file__)")
        .env("DB", dir.path().join("py.db")));
    assert_eq!(
        py.lines().collect::<Vec<_>>(),
        ["py", "/usr/lib/python3/dist-packages/cti_core.py"]
    );
}
