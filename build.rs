//! Copies the built web console (`web-ui/dist`) into `OUT_DIR/console` for `rust-embed`;
//! writes a placeholder page when the console was not built (`npm run build` in `web-ui/`).
//! Links the binary with packed relative relocations (`DT_RELR`, glibc 2.36 and binutils 2.38
//! or later): the dynamic loader reads some 30 KiB of them at start instead of 2 MiB of
//! `.rela.dyn`, which otherwise stays resident for the daemon's life.

use std::path::Path;

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

fn main() {
    println!("cargo:rerun-if-changed=web-ui/dist");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let dest = Path::new(&out).join("console");
    let _ = std::fs::remove_dir_all(&dest);
    let dist = Path::new("web-ui/dist");
    if dist.join("index.html").exists() {
        copy_dir(dist, &dest).expect("copying web-ui/dist");
    } else {
        std::fs::create_dir_all(&dest).expect("creating the console dir");
        std::fs::write(
            dest.join("index.html"),
            "<!doctype html><title>cloudlet</title><p>The console was not built. Run <code>npm ci &amp;&amp; npm run build</code> in <code>web-ui/</code> and rebuild.</p>\n",
        )
        .expect("writing the placeholder console");
    }
}
