//! The `ringcast` binary.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version" | "-V") => println!("ringcast {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!(
                "ringcast {}: the protocol core is in place; the server runtime lands with the \
                 relay-server milestone. Run with --version to print the version.",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
