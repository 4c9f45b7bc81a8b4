// mimalloc instead of glibc's malloc: the server allocates and frees on
// tokio's threads and on SQLite's connection threads, and glibc's arenas
// spent about a sixth of the server's CPU per text (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    textdesk::cli::main()
}
