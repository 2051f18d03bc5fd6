//! The committed C header must be what cbindgen generates from src/ffi today, and every
//! exported function must run inside the panic boundary.
//! Regenerate with `SWRTC_BLESS=1 cargo test --test header`.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn header_is_fresh() {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root())
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    let generated = String::from_utf8(out).unwrap();
    let path = root().join("include/smallwebrtc.h");
    if std::env::var_os("SWRTC_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/smallwebrtc.h is stale: run `SWRTC_BLESS=1 cargo test --test header`"
    );
}

#[test]
fn every_export_has_a_panic_boundary() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("src/ffi")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("#[no_mangle]") {
            rest = &rest[i + 12..];
            let open = rest.find('{').expect("function body");
            let sig = &rest[..open];
            let body = rest[open + 1..].trim_start();
            let name = sig
                .split("fn ")
                .nth(1)
                .and_then(|s| s.split('(').next())
                .unwrap_or("?");
            let guarded = body.starts_with("guard(")
                || body.starts_with("let _ = guard(")
                || body.starts_with("catch_unwind(");
            // Null checks before the guard are allowed only if they cannot panic.
            let guarded = guarded
                || (body.starts_with("if ") && body.contains("guard(") && {
                    let pre = &body[..body.find("guard(").unwrap()];
                    !pre.contains("unwrap") && !pre.contains("expect") && !pre.contains('[')
                });
            assert!(guarded, "{}: {name} has no panic boundary", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 15, "found only {checked} exports");
}
