//! Rebuilds the crate when anything under `web/` changes: the pages and assets are embedded, and
//! a file added there is not otherwise seen by cargo.

fn main() {
    println!("cargo:rerun-if-changed=web");
}
